package httpapi

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/fsm/backup"
)

// MaxSnapshotBody is the largest snapshot POST /v1/snapshot/restore
// accepts (64 MiB: about 100 000 subscriptions). The restore is one raft
// entry, so the bound also keeps that entry of a size raft ships easily.
const MaxSnapshotBody = "64MiB"

// SnapshotContentType is the media type of a snapshot file.
const SnapshotContentType = "application/x-ndjson"

// Backups is what the snapshot endpoints need of a node.
type Backups interface {
	// SaveSnapshot returns the replicated state as this node has applied
	// it (the leader's, after a barrier, when this node leads).
	SaveSnapshot(ctx context.Context) (*backup.Snapshot, error)
	// RestoreSnapshot replaces the running cluster's subscriptions and
	// API tokens with the snapshot's through raft.
	RestoreSnapshot(ctx context.Context, s *backup.Snapshot) (RestoreResult, error)
}

// RestoreResult is the body of a successful POST /v1/snapshot/restore.
type RestoreResult struct {
	Subs   int `json:"subs"`
	Tokens int `json:"tokens"`
	// From is the header of the file restored.
	From backup.Header `json:"from"`
}

// MountSnapshot serves GET /v1/snapshot and POST /v1/snapshot/restore for
// super tokens only: the file holds every subscription's secret.
func (s *Server) MountSnapshot(b Backups) {
	auth := []echo.MiddlewareFunc{s.authenticate, s.require(isSuper)}
	s.e.GET("/v1/snapshot", func(c echo.Context) error { return s.saveSnapshot(c, b) },
		slices.Concat([]echo.MiddlewareFunc{middleware.BodyLimit(MaxAdminBody)}, auth)...)
	s.e.POST("/v1/snapshot/restore", func(c echo.Context) error { return s.restoreSnapshot(c, b) },
		slices.Concat([]echo.MiddlewareFunc{middleware.BodyLimit(MaxSnapshotBody)}, auth)...)
}

func (s *Server) saveSnapshot(c echo.Context, b Backups) error {
	snap, err := b.SaveSnapshot(c.Request().Context())
	if err != nil {
		return fail(c, http.StatusServiceUnavailable, "", "cannot read the state now: "+err.Error())
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, SnapshotContentType)
	h.Set("Cache-Control", "no-store")
	h.Set(echo.HeaderContentDisposition, `attachment; filename="hookswitch-snapshot.ndjson"`)
	c.Response().WriteHeader(http.StatusOK)
	if err := backup.Write(c.Response(), snap); err != nil {
		// The status is sent: the client sees a file without its end
		// line, which it refuses as truncated.
		s.log.Warn("snapshot stream failed", "err", err)
	}
	s.log.Info("snapshot saved", "subs", snap.Header.Subs, "tokens", snap.Header.Tokens, "nodes", snap.Header.Nodes)
	return nil
}

func (s *Server) restoreSnapshot(c echo.Context, b Backups) error {
	snap, err := backup.Read(c.Request().Body, func(done, total int) {
		if done > 0 && done%10000 == 0 {
			s.log.Info("reading snapshot", "records", done, "of", total)
		}
	})
	if err != nil {
		var mbe *http.MaxBytesError
		var he *echo.HTTPError
		switch {
		case errors.As(err, &mbe), errors.As(err, &he) && he.Code == http.StatusRequestEntityTooLarge:
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge)
		case errors.Is(err, backup.ErrFormat), errors.Is(err, backup.ErrVersion), errors.Is(err, backup.ErrTruncated),
			errors.Is(err, backup.ErrChecksum), errors.Is(err, backup.ErrInvalid):
			return fail(c, http.StatusBadRequest, "", err.Error())
		}
		return fail(c, http.StatusBadRequest, "", "cannot read the snapshot: "+err.Error())
	}
	if !slices.ContainsFunc(snap.Tokens, func(t fsm.Token) bool { return t.Role == fsm.RoleSuper }) {
		// The tokens are replaced: nobody could manage the cluster after.
		return fail(c, http.StatusBadRequest, "", "the snapshot holds no super token: restoring it would leave the cluster without one")
	}
	res, err := b.RestoreSnapshot(c.Request().Context(), snap)
	if err != nil {
		return s.applyErr(c, err)
	}
	s.log.Info("snapshot restored", "subs", res.Subs, "tokens", res.Tokens)
	return c.JSON(http.StatusOK, res)
}
