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

// ValidNodeID reports whether id follows the node id rule of the API
// ([A-Za-z0-9._-]{1,64}); a node id becomes a file name on every peer.
func ValidNodeID(id string) bool { return nodeIDPattern.MatchString(id) }

// join adds a node. It needs the cluster's join token as the bearer
// secret (and, with mutual TLS, a client certificate from cluster-ca),
// whatever the configuration; a refusal is 401 and is logged with the
// caller's socket address, never with the secret.
func (s *Server) join(c echo.Context) error {
	r := c.Request()
	refuse := func(msg string) error {
		s.log.Warn("join refused", "remote", r.RemoteAddr, "reason", msg)
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="hookswitch-join"`)
		return fail(c, http.StatusUnauthorized, "", msg)
	}
	if s.cfg.MutualTLS && !s.peerCert(r) {
		return refuse("joining needs a client certificate from the cluster's CA (cluster-ca)")
	}
	presented := headerToken(r)
	if presented == "" {
		return refuse("missing join token: send the cluster's join token (Authorization: Bearer <join-token>; hookswitch join --join-token)")
	}
	if jc, ok := s.in.(interface{ CheckJoinToken(string) error }); ok {
		// A wrong token is refused before the body is looked at.
		if err := jc.CheckJoinToken(presented); err != nil {
			return refuse(err.Error())
		}
	}
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
	case !printable(req.RaftAddr):
		return fail(c, http.StatusBadRequest, "raft-addr", notPrintable)
	case !printable(req.HTTPAddr):
		return fail(c, http.StatusBadRequest, "http-addr", notPrintable)
	case req.RaftAddr == "":
		return fail(c, http.StatusBadRequest, "raft-addr", "is required")
	case req.HTTPAddr == "":
		return fail(c, http.StatusBadRequest, "http-addr", "is required")
	case len(req.TokenHash) != 64:
		return fail(c, http.StatusBadRequest, "token-hash", "must be the hex SHA-256 of the node's token")
	}
	if err := s.in.Join(r.Context(), req, presented); err != nil {
		if errors.Is(err, ErrJoinRefused) {
			s.log.Warn("join refused", "remote", r.RemoteAddr, "node", req.ID, "reason", err.Error())
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="hookswitch-join"`)
			return fail(c, http.StatusUnauthorized, "", err.Error())
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
	// The socket's address only (the server's IP extractor is direct):
	// X-Real-IP and X-Forwarded-For do not make a caller local.
	if ip := net.ParseIP(c.RealIP()); ip == nil || !ip.IsLoopback() {
		return fail(c, http.StatusForbidden, "", "only callers on this machine may read this")
	}
	return c.JSON(http.StatusOK, s.in.Self())
}
