package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi/ui"
)

// Limits of the admin API.
const (
	// MaxAdminBody is the largest admin API request body (1 MiB); larger
	// bodies get 413. (echo reads "1M" as 10^6 bytes; "1MiB" is 2^20.)
	MaxAdminBody = "1MiB"
	// applyRetries bounds compare-and-set retries of an update that raced
	// with another change.
	applyRetries = 5
)

// Backend is what the API needs of a node.
type Backend interface {
	NodeID() string
	// Apply commits a command through raft (forwarding to the leader when
	// this node is not leader) and returns the FSM's result.
	Apply(ctx context.Context, c fsm.Command) (fsm.Result, error)
	// Read runs fn under the FSM's read lock.
	Read(fn func(st *fsm.State))
	// Ready returns nil when the node is joined, has a leader and can write
	// its log, else the reason it is not.
	Ready() error
}

// Internal is what the node-to-node endpoints need.
type Internal interface {
	// ApplyEncoded applies an encoded command if this node is the leader;
	// it returns ErrNotLeader otherwise.
	ApplyEncoded(ctx context.Context, data []byte) (fsm.Result, error)
	// Cluster describes the cluster for GET /v1/cluster.
	Cluster() ClusterView
	// Join adds a node; presented is the request's bearer secret, which
	// must be the cluster's join token (ErrJoinRefused otherwise).
	Join(ctx context.Context, req JoinRequest, presented string) error
	// RemoveNode removes a node from the cluster.
	RemoveNode(ctx context.Context, id string) error
	// Leave makes this node drain, leave the cluster and stop.
	Leave(ctx context.Context) error
	// Self is this node's join request, for `hookswitch join`.
	Self() JoinRequest
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID        string `json:"id"`
	RaftAddr  string `json:"raft-addr"`
	HTTPAddr  string `json:"http-addr"`
	Witness   bool   `json:"witness,omitempty"`
	TokenHash string `json:"token-hash"`
	// Fresh says the node has no raft state (new, or its data dir was
	// wiped): an entry with its id is replaced even at the same address.
	Fresh bool `json:"fresh,omitempty"`
}

// ErrNotLeader is returned by Internal.ApplyEncoded on a follower.
var ErrNotLeader = errors.New("not the leader")

// ErrJoinRefused is returned by Internal.Join to a node that presented no
// valid join token (401).
var ErrJoinRefused = errors.New("join refused: wrong or missing join token")

// Config configures the server.
type Config struct {
	Version     string
	IngestAllow []*net.IPNet
	Logger      *slog.Logger
	// Now stamps times on proposed commands; time.Now when nil.
	Now func() time.Time
	// Tester serves POST /v1/subscriptions/{id}/test (nil: 503).
	Tester Tester
	// MutualTLS says the HTTP server verifies client certificates against
	// cluster-ca: node-to-node endpoints then need such a certificate (it
	// suffices without a node token), and a node token is not accepted
	// without one.
	MutualTLS bool
	// APIRate limits admin API requests per token (super and node tokens
	// are not limited); the zero Rate does not limit.
	APIRate Rate
	// IngestRate limits ingest requests per source address outside
	// IngestAllow; the zero Rate does not limit.
	IngestRate Rate
	// SubStats serves GET /v1/subscriptions/{id}/stats (nil: 503).
	SubStats SubStats

	// PostURLGuard refuses, at create and update, a post-url whose host is
	// a literal address the connect-time guard would refuse (the same
	// rules: post-url-deny, post-url-allow); nil applies the defaults.
	PostURLGuard *webhook.Guard
	// SecretOverlap is how long after a rotation every POST carries the
	// old secret's signature too; 0: none.
	SecretOverlap time.Duration
	// MaxSubsPerToken is max-subs-per-token: subscriptions one token other
	// than a super token may create; 0: no limit.
	MaxSubsPerToken int
}

// Server is hookswitch's HTTP API on echo.
type Server struct {
	e      *echo.Echo
	b      Backend
	in     Internal
	cfg    Config
	log    *slog.Logger
	tester Tester

	apiLimit    *keyedLimiter
	ingestLimit *keyedLimiter
}

// New builds the server and its routes.
func New(cfg Config, b Backend, in Internal) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{e: echo.New(), b: b, in: in, cfg: cfg, log: cfg.Logger.With("component", "httpapi"), tester: cfg.Tester,
		apiLimit: newKeyedLimiter(cfg.APIRate), ingestLimit: newKeyedLimiter(cfg.IngestRate)}
	s.e.HideBanner, s.e.HidePort = true, true
	// Only the socket's address is the caller's: forwarding headers
	// (X-Forwarded-For, X-Real-IP) never count.
	s.e.IPExtractor = echo.ExtractIPDirect()
	s.e.HTTPErrorHandler = s.errorHandler
	s.e.Use(middleware.Recover())

	s.e.GET("/healthz", s.healthz)
	s.e.GET("/readyz", s.readyz)

	// Middleware is attached per route, not to groups: echo registers a
	// catch-all route for a group with middleware, which turned every
	// wrong method under the group into 404 (or 401/403) instead of 405.
	admin := []echo.MiddlewareFunc{middleware.BodyLimit(MaxAdminBody), s.authenticate}
	subMW := slices.Concat(admin, []echo.MiddlewareFunc{s.require(Principal.isAdmin)})
	subs := s.e.Group("/v1/subscriptions")
	subs.POST("", s.createSub, subMW...)
	subs.GET("", s.listSubs, subMW...)
	subs.GET("/:id", s.getSub, subMW...)
	subs.PUT("/:id", s.putSub, subMW...)
	subs.PATCH("/:id", s.patchSub, subMW...)
	subs.DELETE("/:id", s.deleteSub, subMW...)
	subs.POST("/:id/pause", s.pauseSub(true), subMW...)
	subs.POST("/:id/resume", s.pauseSub(false), subMW...)
	subs.GET("/:id/secret", s.getSecret, subMW...)
	subs.POST("/:id/secret/rotate", s.rotateSecret, subMW...)
	subs.POST("/:id/replay", s.replaySub, subMW...)
	subs.POST("/:id/test", s.testSub, subMW...)
	subs.GET("/:id/stats", s.subStats, subMW...)

	superMW := slices.Concat(admin, []echo.MiddlewareFunc{s.require(isSuper)})
	super := s.e.Group("/v1")
	super.POST("/tokens", s.createToken, superMW...)
	super.GET("/tokens", s.listTokens, superMW...)
	super.DELETE("/tokens/:id", s.revokeToken, superMW...)
	super.GET("/cluster", s.cluster, superMW...)
	super.POST("/cluster/leave", s.leave, superMW...)
	super.POST("/cluster/nodes/:id/drain", s.drain(true), superMW...)
	super.POST("/cluster/nodes/:id/undrain", s.drain(false), superMW...)
	super.DELETE("/cluster/nodes/:id", s.removeNode, slices.Concat(admin, []echo.MiddlewareFunc{s.require(func(p Principal) bool { return isSuper(p) || isNode(p) })})...)
	// Self is served to loopback callers only, without a token: the CLI
	// on this machine reads it to ask another cluster to add this node.
	s.e.GET("/v1/cluster/self", s.self)
	// Join is authenticated by the join token, which is no API token (and,
	// with mutual TLS, by the caller's certificate).
	super.POST("/cluster/join", s.join, middleware.BodyLimit(MaxAdminBody))

	s.nsRoutes(admin) // NetSapiens v2 drop-in: nsapi.go

	internal := s.e.Group("/internal/v1")
	internal.POST("/apply", s.internalApply, s.authenticate, s.require(isNode))
	ui.Register(s.e)
	return s
}

// Mount serves a handler of another package (ingest, websocket, metrics)
// at method and path; it does its own authorization.
func (s *Server) Mount(method, path string, h http.Handler) {
	s.e.Add(method, path, echo.WrapHandler(h))
}

// MountInternal serves a node-to-node handler of another package at
// method and path, for callers with a node token only.
func (s *Server) MountInternal(method, path string, h http.Handler) {
	s.e.Add(method, path, echo.WrapHandler(h), s.authenticate, s.require(isNode))
}

// MountLocal serves a handler for callers in the ingest-allow CIDRs
// (loopback by default) or with a super token: /metrics.
func (s *Server) MountLocal(method, path string, h http.Handler) {
	s.e.Add(method, path, echo.WrapHandler(h), func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.allowed(c.Request()) {
				return next(c)
			}
			p, ok := s.Authenticate(headerToken(c.Request()))
			if !ok || !isSuper(p) {
				return fail(c, http.StatusForbidden, "", "only local callers or a super token may read this")
			}
			return next(c)
		}
	})
}

// allowed reports whether the request comes from the ingest-allow CIDRs.
func (s *Server) allowed(r *http.Request) bool {
	_, ok := remoteIn(r, s.cfg.IngestAllow)
	return ok
}

// remoteIn reports whether the request's remote address is in one of nets,
// and returns that address.
func remoteIn(r *http.Request, nets []*net.IPNet) (string, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host, false
	}
	for _, n := range nets {
		if n.Contains(ip) {
			return host, true
		}
	}
	return host, false
}

// LimitIngest wraps the ingest handler with the ingest-rate limit per
// source address; callers in ingest-allow are not limited.
func (s *Server) LimitIngest(h http.Handler) http.Handler {
	if s.ingestLimit == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, ok := remoteIn(r, s.cfg.IngestAllow)
		if !ok {
			if pass, wait := s.ingestLimit.allow(host); !pass {
				tooMany(w, wait, "ingest-rate for this source address")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// peerCert reports whether the request came over mutual TLS with a client
// certificate that chains to cluster-ca (the TLS handshake verified it).
func (s *Server) peerCert(r *http.Request) bool {
	return s.cfg.MutualTLS && r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// AuthorizeIngest decides whether a request may ingest events: callers in
// the ingest-allow CIDRs (loopback by default) need no token; others need a
// token with the ingest or super role, as a bearer header (or Basic
// password) or as ?authkey=<token> (Enswitch's "Send events to URL").
func (s *Server) AuthorizeIngest(r *http.Request) (status int, msg string, ok bool) {
	if s.allowed(r) {
		return 0, "", true
	}
	tok := TokenFromRequest(r)
	if tok == "" {
		return http.StatusUnauthorized, "an API token with the ingest role is needed from this address (Authorization: Bearer <token>, or ?authkey=<token>)", false
	}
	p, ok := s.Authenticate(tok)
	if !ok {
		code, msg := s.unknownToken()
		return code, msg, false
	}
	if p.Role != fsm.RoleIngest && p.Role != fsm.RoleSuper {
		return http.StatusForbidden, "this token's role (" + p.Role + ") may not ingest events", false
	}
	return 0, "", true
}

// Handler returns the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

// Echo exposes the router so the node can mount more routes (ingest,
// websocket, metrics) that live in other packages.
func (s *Server) Echo() *echo.Echo { return s.e }

func isSuper(p Principal) bool { return p.Role == fsm.RoleSuper }
func isNode(p Principal) bool  { return p.Role == fsm.RoleNode }

// apiError is the JSON error body of DESIGN.md, on every path:
// {"code":<status>,"message":"<field>: <reason>","error":"<reason>","field":"<field>"}
// (message is the reason alone, and field "", when no field is at fault).
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Error   string `json:"error"`
	Field   string `json:"field"`
}

func newAPIError(code int, field, msg string) apiError {
	e := apiError{Code: code, Message: msg, Error: msg, Field: field}
	if field != "" {
		e.Message = field + ": " + msg
	}
	return e
}

func fail(c echo.Context, code int, field, msg string) error {
	return c.JSON(code, newAPIError(code, field, msg))
}

func failField(c echo.Context, code int, fe *fieldError) error {
	return fail(c, code, fe.Field, fe.Msg)
}

// errorHandler renders echo's own errors (unknown route, 405, 413 from the
// body limit, panics) in the API's JSON error shape.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code = he.Code
		if m, ok := he.Message.(string); ok {
			msg = m
		} else {
			msg = http.StatusText(code)
		}
		msg = strings.ToLower(msg)
	}
	if code == http.StatusRequestEntityTooLarge {
		msg = "request body is larger than " + MaxAdminBody
	}
	if code >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "url", RedactURL(c.Request().URL), "err", err)
	}
	_ = fail(c, code, "", msg)
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok", "node": s.b.NodeID()})
}

func (s *Server) readyz(c echo.Context) error {
	if err := s.b.Ready(); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready", "node": s.b.NodeID()})
}

const principalKey = "hookswitch.principal"

// headerToken finds a token in the Authorization header: a bearer token,
// or HTTP Basic with the token as password (iSymphony realm auth).
func headerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	// The auth scheme is case-insensitive (RFC 9110, 11.1).
	if scheme, t, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(t)
	}
	if _, pw, ok := r.BasicAuth(); ok {
		return pw
	}
	return ""
}

// TokenFromRequest finds the token of a websocket or ingest request: the
// Authorization header, or the authkey query parameter (Enswitch, whose
// "Send events to URL" setting carries only a URL). The admin API takes the
// header only, so its tokens stay out of URLs and access logs.
func TokenFromRequest(r *http.Request) string {
	if t := headerToken(r); t != "" {
		return t
	}
	return r.URL.Query().Get(authKeyParam)
}

// Authenticate resolves a token string to a principal.
func (s *Server) Authenticate(token string) (Principal, bool) {
	if token == "" {
		return Principal{}, false
	}
	hash := HashToken(token)
	var p Principal
	var ok bool
	s.b.Read(func(st *fsm.State) {
		var t *fsm.Token
		if t, ok = st.TokenByHash(hash); ok {
			p = principalOf(t)
		}
	})
	return p, ok
}

// unknownToken is the answer to a token this node's state does not hold:
// 401, unless the node is not ready (joining, catching up with the log, no
// leader). Then its state may simply not have the token yet, so the answer
// is 503 with the reason, which a client can retry or take to another node.
func (s *Server) unknownToken() (int, string) {
	if err := s.b.Ready(); err != nil {
		return http.StatusServiceUnavailable, "this node is not ready (" + err.Error() + "), so it cannot check the token yet; try again in a moment or ask another node"
	}
	return http.StatusUnauthorized, "invalid API token"
}

func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		tok := headerToken(c.Request())
		if tok == "" && s.peerCert(c.Request()) {
			// With mutual TLS a certificate from cluster-ca is a node's
			// credential by itself.
			c.Set(principalKey, Principal{TokenID: "cluster-certificate", Role: fsm.RoleNode})
			return next(c)
		}
		if tok == "" {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="hookswitch"`)
			return fail(c, http.StatusUnauthorized, "", "missing API token (Authorization: Bearer <token>)")
		}
		p, ok := s.Authenticate(tok)
		if !ok {
			code, msg := s.unknownToken()
			if code == http.StatusUnauthorized {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="hookswitch"`)
			} else {
				c.Response().Header().Set("Retry-After", "1")
			}
			return fail(c, code, "", msg)
		}
		if isNode(p) && s.cfg.MutualTLS && !s.peerCert(c.Request()) {
			return fail(c, http.StatusForbidden, "", "a node token is accepted only with a client certificate from cluster-ca")
		}
		if !isSuper(p) && !isNode(p) {
			if pass, wait := s.apiLimit.allow(p.TokenID); !pass {
				tooMany(c.Response(), wait, "api-rate for this token")
				return nil
			}
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

func principal(c echo.Context) Principal {
	p, _ := c.Get(principalKey).(Principal)
	return p
}

func (s *Server) require(allowed func(Principal) bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !allowed(principal(c)) {
				return fail(c, http.StatusForbidden, "", "this token's role ("+principal(c).Role+") may not use this endpoint")
			}
			return next(c)
		}
	}
}

// applyErr maps an Apply failure (not a business error) to a response.
func (s *Server) applyErr(c echo.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fail(c, http.StatusServiceUnavailable, "", "the cluster did not commit the change in time: "+err.Error())
	}
	s.log.Warn("apply failed", "path", c.Path(), "err", err)
	return fail(c, http.StatusServiceUnavailable, "", "the cluster cannot commit changes now: "+err.Error())
}

func (s *Server) internalApply(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	res, err := s.in.ApplyEncoded(c.Request().Context(), body)
	if errors.Is(err, ErrNotLeader) {
		return fail(c, http.StatusServiceUnavailable, "", err.Error())
	}
	if err != nil {
		return fail(c, http.StatusBadRequest, "", err.Error())
	}
	return c.JSON(http.StatusOK, res)
}

// ClusterView is the body of GET /v1/cluster.
type ClusterView struct {
	Leader string     `json:"leader"`
	Nodes  []NodeView `json:"nodes"`
}

// NodeView is one node in ClusterView.
type NodeView struct {
	ID        string `json:"id"`
	HTTPAddr  string `json:"http-addr"`
	RaftAddr  string `json:"raft-addr"`
	Suffrage  string `json:"suffrage"`
	RaftRole  string `json:"raft-role"`
	Health    string `json:"health"`
	UpSince   string `json:"up-since,omitempty"`
	Stable    bool   `json:"stable"`
	Draining  bool   `json:"draining"`
	Witness   bool   `json:"witness"`
	ActiveSub int    `json:"active-subscriptions"`
}

// Route is one registered method and path (echo's syntax: ":id", "*").
type Route struct {
	Method string
	Path   string
}

// Routes lists the routes registered on the server, including those other
// packages mounted, sorted by path then method (for the OpenAPI check).
func (s *Server) Routes() []Route {
	rs := s.e.Routes()
	out := make([]Route, 0, len(rs))
	for _, r := range rs {
		out = append(out, Route{Method: r.Method, Path: r.Path})
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return out
}
