package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hookswitch/hookswitch/fsm"
)

// Tester sends one synthetic event to a subscription's post-url now.
type Tester interface {
	TestDelivery(ctx context.Context, sub *fsm.Subscription) TestResult
}

// TestResult is the answer of POST /v1/subscriptions/{id}/test: what the
// receiver answered to one synthetic event.
type TestResult struct {
	OK         bool   `json:"ok"`
	Status     int    `json:"status"`
	DurationMs int64  `json:"duration-ms"`
	Error      string `json:"error,omitempty"`
	Response   string `json:"response,omitempty"`
	EventID    string `json:"event-id"`
}

// ReplayRequest is the body of POST /v1/subscriptions/{id}/replay.
type ReplayRequest struct {
	From string `json:"from"`
}

func (s *Server) testSub(c echo.Context) error {
	sub, ok := s.lookup(c, c.Param("id"))
	if !ok {
		return notFound(c)
	}
	if s.tester == nil {
		return fail(c, http.StatusServiceUnavailable, "", "this node cannot deliver")
	}
	return c.JSON(http.StatusOK, s.tester.TestDelivery(c.Request().Context(), sub))
}

func (s *Server) replaySub(c echo.Context) error {
	id := c.Param("id")
	if _, ok := s.lookup(c, id); !ok {
		return notFound(c)
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req ReplayRequest
	if err := strictJSON(body, &req); err != nil {
		return fail(c, http.StatusBadRequest, "", `body must be {"from":"<RFC 3339 time>"}: `+err.Error())
	}
	from, err := time.Parse(time.RFC3339, req.From)
	if err != nil {
		return fail(c, http.StatusBadRequest, "from", "must be an RFC 3339 time, like 2027-01-02T15:04:05Z")
	}
	now := s.cfg.Now()
	if from.After(now) {
		return fail(c, http.StatusBadRequest, "from", "is in the future")
	}
	res, err := s.b.Apply(c.Request().Context(), &fsm.RewindSub{ID: id, FromMs: from.UnixMilli(), AtMs: now.UnixMilli()})
	if err != nil {
		return s.applyErr(c, err)
	}
	if errors.Is(res.Err, fsm.ErrNotFound) {
		return notFound(c)
	}
	v := viewOf(res.Sub)
	return c.JSON(http.StatusOK, struct {
		SubView
		From string `json:"from"`
	}{v, from.UTC().Format(time.RFC3339Nano)})
}
