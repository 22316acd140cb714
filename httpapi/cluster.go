package httpapi

import (
	"errors"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/hookswitch/hookswitch/fsm"
)

func (s *Server) cluster(c echo.Context) error {
	return c.JSON(http.StatusOK, s.in.Cluster())
}

func (s *Server) join(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req JoinRequest
	if err := strictJSON(body, &req); err != nil {
		return fail(c, http.StatusBadRequest, "", "body is not a valid join request: "+err.Error())
	}
	switch {
	case !nodeIDPattern.MatchString(req.ID):
		return fail(c, http.StatusBadRequest, "id", "must be a node id [A-Za-z0-9._-]{1,64}")
	case req.RaftAddr == "":
		return fail(c, http.StatusBadRequest, "raft-addr", "is required")
	case req.HTTPAddr == "":
		return fail(c, http.StatusBadRequest, "http-addr", "is required")
	case len(req.TokenHash) != 64:
		return fail(c, http.StatusBadRequest, "token-hash", "must be the hex SHA-256 of the node's token")
	}
	presented := headerToken(c.Request())
	p, ok := s.Authenticate(presented)
	err = s.in.Join(c.Request().Context(), req, presented, ok && isSuper(p))
	if err != nil {
		if errors.Is(err, ErrJoinRefused) {
			return fail(c, http.StatusForbidden, "", err.Error())
		}
		return fail(c, http.StatusServiceUnavailable, "", "join failed: "+err.Error())
	}
	return c.JSON(http.StatusOK, map[string]string{"joined": req.ID})
}

func (s *Server) removeNode(c echo.Context) error {
	id := c.Param("id")
	if err := s.in.RemoveNode(c.Request().Context(), id); err != nil {
		return fail(c, http.StatusServiceUnavailable, "id", "removing the node failed: "+err.Error())
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) leave(c echo.Context) error {
	if err := s.in.Leave(c.Request().Context()); err != nil {
		return fail(c, http.StatusServiceUnavailable, "", "leaving failed: "+err.Error())
	}
	return c.JSON(http.StatusOK, map[string]string{"left": s.b.NodeID()})
}

func (s *Server) drain(draining bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		res, err := s.b.Apply(c.Request().Context(), &fsm.SetDraining{Node: id, Draining: draining})
		if err != nil {
			return s.applyErr(c, err)
		}
		if errors.Is(res.Err, fsm.ErrNotFound) {
			return fail(c, http.StatusNotFound, "id", "no such node")
		}
		return c.JSON(http.StatusOK, map[string]any{"node": id, "draining": draining})
	}
}

func (s *Server) self(c echo.Context) error {
	if ip := net.ParseIP(c.RealIP()); ip == nil || !ip.IsLoopback() || c.Request().Header.Get("X-Forwarded-For") != "" {
		return fail(c, http.StatusForbidden, "", "only callers on this machine may read this")
	}
	return c.JSON(http.StatusOK, s.in.Self())
}
