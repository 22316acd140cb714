package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/hookswitch/hookswitch/dispatch/stats"
	"github.com/hookswitch/hookswitch/fsm"
)

// SubStats serves GET /v1/subscriptions/{id}/stats: per-minute delivery
// counts, kept in memory by the node that sends the subscription.
type SubStats interface {
	// SubStats returns sub's counts for the last hour, from the node that
	// sends it (asking that node when it is another), or this node's own
	// counts with a note saying why the owner's are not there.
	SubStats(ctx context.Context, sub *fsm.Subscription) StatsView
}

// StatsView is the body of GET /v1/subscriptions/{id}/stats.
type StatsView struct {
	ID string `json:"id"`
	// Node is the node whose counters these are.
	Node string `json:"node"`
	// Minutes are the last 60 minutes, oldest first, ending with the
	// current one: delivered events, successful POSTs and failed POST
	// attempts.
	Minutes []stats.Minute `json:"minutes"`
	// Note explains a partial answer (the owner could not be asked).
	Note string `json:"note,omitempty"`
}

func (s *Server) subStats(c echo.Context) error {
	sub, ok := s.lookup(c, c.Param("id"))
	if !ok {
		return notFound(c)
	}
	if s.cfg.SubStats == nil {
		return fail(c, http.StatusServiceUnavailable, "", "this node keeps no delivery statistics")
	}
	return c.JSON(http.StatusOK, s.cfg.SubStats.SubStats(c.Request().Context(), sub))
}
