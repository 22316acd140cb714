package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/hookswitch/hookswitch/dispatch/hub"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/fsm"
)

// Websocket paths (DESIGN.md "Websocket API"): the canonical one and the
// iSymphony and Enswitch aliases.
const (
	WSPath          = "/v1/events/ws"
	WSPathEnswitch  = "/events/websocket/"
	WSPathISymphony = "/communication_manager/ws/event"
)

// WSPaths are the paths the websocket endpoint is served at.
var WSPaths = []string{WSPath, WSPathEnswitch, WSPathISymphony}

// Defaults of WSOptions.
const (
	DefaultWSPingInterval = 30 * time.Second
	DefaultWSWriteTimeout = 10 * time.Second
	// wsPingTimeout bounds the wait for the pong of a keepalive ping.
	wsPingTimeout = 15 * time.Second
	// wsReadLimit bounds one client message (a filter message).
	wsReadLimit = 64 << 10
	// wsBatch is how many events the writer takes from the hub at once;
	// filter replies go out between batches.
	wsBatch = 64
	// wsReplies is how many filter replies may wait for the writer before
	// the connection stops reading the client's messages.
	wsReplies = 16
)

// Close codes and reasons the endpoint uses.
const (
	wsReasonSlow     = "too slow: more events waiting than the queue holds"
	wsReasonStopped  = "server shutting down"
	wsReasonTrimmed  = "replay overtaken by log retention; reconnect with ?since="
	wsReasonInternal = "internal error"
	wsReasonRevoked  = "token revoked"
)

// WSHub is what the websocket endpoint needs of the event hub
// (*hub.Hub implements it).
type WSHub interface {
	// ParseSince resolves a ?since= value to start positions.
	ParseSince(since string) (hub.Start, error)
	// Subscribe opens one connection's subscription.
	Subscribe(o hub.SubOptions) (*hub.Sub, error)
}

// WSOptions configure the websocket endpoint.
type WSOptions struct {
	Hub WSHub
	// Allow lists who may open a websocket at all (ws-allow); empty lets
	// nobody in.
	Allow []*net.IPNet
	// PingInterval is the keepalive ping period (0: 30s; < 0: none). A
	// client that does not answer a ping within 15s (or PingInterval, if
	// shorter) is disconnected.
	PingInterval time.Duration
	// WriteTimeout bounds writing one frame (0: 10s).
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// WebsocketHandler returns the websocket event endpoint (mount it on
// WSPaths with GET). Refusals happen before the upgrade, as JSON errors:
// 403 for an address outside ws-allow or a token that may not watch
// events, 401 for a missing or unknown token (503 for an unknown one while
// this node is not ready), 400 for a bad ?since= or
// ?model=, 426 for a request that is not a websocket upgrade.
func (s *Server) WebsocketHandler(o WSOptions) http.Handler {
	if o.Hub == nil {
		panic("httpapi: WSOptions.Hub is nil")
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultWSPingInterval
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWSWriteTimeout
	}
	if o.Logger == nil {
		o.Logger = s.log
	}
	return &wsHandler{s: s, o: o, log: o.Logger.With("component", "websocket")}
}

type wsHandler struct {
	s   *Server
	o   WSOptions
	log *slog.Logger
}

func wsFail(w http.ResponseWriter, code int, msg string) { wsFailField(w, code, "", msg) }

// wsFailField is wsFail naming the query parameter at fault.
func wsFailField(w http.ResponseWriter, code int, field, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(newAPIError(code, field, msg))
}

// allowed reports whether the remote address is in ws-allow.
func (h *wsHandler) allowed(r *http.Request) (string, bool) { return remoteIn(r, h.o.Allow) }

func (h *wsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		wsFail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if host, ok := h.allowed(r); !ok {
		wsFail(w, http.StatusForbidden, "websocket connections are not allowed from "+host+" (ws-allow)")
		return
	}
	tok := TokenFromRequest(r)
	if tok == "" {
		w.Header().Add("WWW-Authenticate", `Basic realm="hookswitch"`)
		w.Header().Add("WWW-Authenticate", `Bearer realm="hookswitch"`)
		wsFail(w, http.StatusUnauthorized, "missing token: pass ?authkey=<token>, HTTP Basic with the token as password, or Authorization: Bearer <token>")
		return
	}
	p, ok := h.s.Authenticate(tok)
	if !ok {
		if code, msg := h.s.unknownToken(); code != http.StatusUnauthorized {
			w.Header().Set("Retry-After", "1")
			wsFail(w, code, msg)
			return
		}
		w.Header().Add("WWW-Authenticate", `Basic realm="hookswitch"`)
		w.Header().Add("WWW-Authenticate", `Bearer realm="hookswitch"`)
		wsFail(w, http.StatusUnauthorized, "invalid token")
		return
	}
	scope, ok := wsScope(p)
	if !ok {
		wsFail(w, http.StatusForbidden, "this token's role ("+p.Role+") may not watch events")
		return
	}
	if crossOriginBasic(r) {
		// A browser may attach cached Basic credentials to a page's
		// websocket on another site; authkey and bearer tokens are never
		// ambient.
		wsFail(w, http.StatusForbidden, "a cross-origin websocket cannot use HTTP Basic credentials; pass the token as ?authkey=")
		return
	}
	q := r.URL.Query()
	filters, err := modelFilters(q)
	if err != nil {
		wsFailField(w, http.StatusBadRequest, "model", strings.TrimPrefix(err.Error(), "model: "))
		return
	}
	start, err := h.o.Hub.ParseSince(strings.TrimSpace(q.Get("since")))
	if err != nil {
		if errors.Is(err, hub.ErrBadSince) {
			wsFailField(w, http.StatusBadRequest, "since", strings.TrimPrefix(err.Error(), hub.ErrBadSince.Error()+": "))
			return
		}
		h.log.Error("resolving since failed", "err", err)
		wsFail(w, http.StatusInternalServerError, "cannot read the event log")
		return
	}
	if !isUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		wsFail(w, http.StatusUpgradeRequired, "this endpoint speaks websocket: send a GET with Upgrade: websocket")
		return
	}
	sub, err := h.o.Hub.Subscribe(hub.SubOptions{Scope: scope, Filters: filters, Start: start})
	if err != nil {
		if errors.Is(err, hub.ErrStopped) {
			wsFail(w, http.StatusServiceUnavailable, "the node is shutting down")
			return
		}
		wsFail(w, http.StatusForbidden, err.Error())
		return
	}
	defer sub.Close()
	// Origins are not checked: the token is the credential, and the
	// Basic-from-another-origin case is refused above.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered
	}
	c.SetReadLimit(wsReadLimit)
	h.serve(c, sub, p, tok)
}

func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// crossOriginBasic reports a request from a browser page of another origin
// whose token comes from HTTP Basic (the header wins over ?authkey=, see
// TokenFromRequest).
func crossOriginBasic(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	if scheme, _, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return false
	}
	if _, _, ok := r.BasicAuth(); !ok {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// wsScope maps a token to what its connections may see.
func wsScope(p Principal) (hub.Scope, bool) {
	switch p.Role {
	case fsm.RoleSuper:
		return hub.Scope{Role: hub.RoleSuper}, true
	case fsm.RoleReseller:
		return hub.Scope{Role: hub.RoleReseller, Reseller: p.Reseller}, true
	case fsm.RoleDomain:
		return hub.Scope{Role: hub.RoleDomain, Reseller: p.Reseller, Domain: p.Domain}, true
	case fsm.RoleUser:
		return hub.Scope{Role: hub.RoleUser, Reseller: p.Reseller, Domain: p.Domain, User: p.User}, true
	}
	return hub.Scope{}, false
}

// modelFilters is the initial filter set of ?model=a,b (repeating the
// parameter works too).
func modelFilters(q url.Values) ([]match.Filter, error) {
	var fs []match.Filter
	for _, v := range q["model"] {
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m != "" {
				fs = append(fs, match.Filter{Property: "model", Value: m})
			}
		}
	}
	if _, err := match.NewFilterSet(fs); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	return fs, nil
}

// serve runs one upgraded connection: this goroutine writes (events from
// the hub, filter replies) and keeps the connection alive; another reads
// the client's filter messages. (Two goroutines per connection: with
// thousands of connections each one counts.)
func (h *wsHandler) serve(c *websocket.Conn, sub *hub.Sub, p Principal, tok string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replies := make(chan []byte, wsReplies)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer cancel()
		h.readLoop(ctx, c, sub, replies)
	}()
	code, reason := h.writeLoop(ctx, c, sub, replies, tok)
	if code != 0 {
		if code != websocket.StatusGoingAway {
			h.log.Info("websocket closed by the server", "token", p.TokenID, "code", int(code), "reason", reason)
		}
		_ = c.Close(code, reason) // waits for the client's close (bounded)
	} else {
		_ = c.CloseNow()
	}
	cancel()
	<-readDone
}

// writeLoop sends events and replies until the connection ends; it returns
// the close code and reason to end it with (0 when the client is gone).
// Every PingInterval it checks that the token is still valid (a revoked
// one ends the connection with 1008) and pings the client (in a short-lived
// goroutine: the pong comes through the reader; no pong in time ends the
// connection).
func (h *wsHandler) writeLoop(ctx context.Context, c *websocket.Conn, sub *hub.Sub, replies <-chan []byte, tok string) (websocket.StatusCode, string) {
	var buf []*hub.Message
	write := func(b []byte) bool {
		wctx, cancel := context.WithTimeout(ctx, h.o.WriteTimeout)
		defer cancel()
		return c.Write(wctx, websocket.MessageText, b) == nil
	}
	// A batch of events shares one deadline (WriteTimeout per batch of at
	// most wsBatch frames): a timer per frame costs more than the frame.
	writeBatch := func(msgs []*hub.Message) bool {
		wctx, cancel := context.WithTimeout(ctx, h.o.WriteTimeout)
		defer cancel()
		for i, m := range msgs {
			if c.Write(wctx, websocket.MessageText, validText(m.JSON)) != nil {
				return false
			}
			msgs[i] = nil
		}
		return true
	}
	var tick <-chan time.Time
	if h.o.PingInterval > 0 {
		t := time.NewTicker(h.o.PingInterval)
		defer t.Stop()
		tick = t.C
	}
	var pinging atomic.Bool
	keepalive := func() bool {
		if _, ok := h.s.Authenticate(tok); !ok {
			return false
		}
		if pinging.CompareAndSwap(false, true) {
			go func() {
				defer pinging.Store(false)
				pctx, cancel := context.WithTimeout(ctx, min(wsPingTimeout, h.o.PingInterval))
				defer cancel()
				if c.Ping(pctx) != nil && ctx.Err() == nil {
					_ = c.CloseNow() // no pong: the reader fails and ends the connection
				}
			}()
		}
		return true
	}
	for {
		// Replies first, between batches: every event sent after a
		// success reply passes the filters it confirms.
		for drained := false; !drained; {
			select {
			case r := <-replies:
				if !write(r) {
					return 0, ""
				}
			case <-tick:
				if !keepalive() {
					return websocket.StatusPolicyViolation, wsReasonRevoked
				}
			default:
				drained = true
			}
		}
		var err error
		buf, err = sub.Next(buf[:0], wsBatch)
		switch {
		case errors.Is(err, hub.ErrSlow):
			return websocket.StatusPolicyViolation, wsReasonSlow
		case errors.Is(err, hub.ErrStopped):
			return websocket.StatusGoingAway, wsReasonStopped
		case errors.Is(err, hub.ErrReplayTrimmed):
			return websocket.StatusTryAgainLater, wsReasonTrimmed
		case errors.Is(err, hub.ErrClosed):
			return 0, ""
		case err != nil:
			h.log.Error("websocket event stream failed", "err", err)
			return websocket.StatusInternalError, wsReasonInternal
		}
		if !writeBatch(buf) {
			return 0, ""
		}
		if len(buf) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return 0, ""
		case <-sub.Ready():
		case r := <-replies:
			if !write(r) {
				return 0, ""
			}
		case <-tick:
			if !keepalive() {
				return websocket.StatusPolicyViolation, wsReasonRevoked
			}
		}
	}
}

// readLoop reads the client's messages and answers each one.
func (h *wsHandler) readLoop(ctx context.Context, c *websocket.Conn, sub *hub.Sub, replies chan<- []byte) {
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		reply := handleClientMessage(data, sub.SetFilters)
		select {
		case replies <- reply:
		case <-ctx.Done():
			return
		}
	}
}

// wsReply answers a client message. correlationId echoes the message's
// (any JSON value; null when absent). Members in alphabetical order, as
// iSymphony sends them.
type wsReply struct {
	CorrelationID json.RawMessage `json:"correlationId"`
	Error         string          `json:"error,omitempty"`
	Time          int64           `json:"time"`
	Type          string          `json:"type"`
}

// handleClientMessage applies a filter message
// ({"type":"filter","correlationId":...,"filters":[...]}) through set and
// returns the reply: success, or an error (the filters in place stay).
func handleClientMessage(data []byte, set func([]match.Filter) error) []byte {
	var corr json.RawMessage
	fail := func(msg string) []byte {
		return encodeReply(wsReply{Type: "error", CorrelationID: corr, Error: msg})
	}
	if !utf8.Valid(data) {
		// Nothing of it is echoed: a text frame must be valid UTF-8
		// (RFC 6455, 5.6).
		return fail("message is not valid UTF-8")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		var probe any
		if json.Unmarshal(data, &probe) == nil {
			return fail("message is not a JSON object")
		}
		return fail("message is not valid JSON: " + jsonErrText(err))
	}
	if obj == nil {
		return fail("message is not a JSON object")
	}
	corr = obj["correlationId"]
	rawType, ok := obj["type"]
	if !ok {
		return fail(`message has no "type" (send {"type":"filter","filters":[...]})`)
	}
	var typ string
	if err := json.Unmarshal(rawType, &typ); err != nil {
		return fail(`"type" must be a string`)
	}
	if typ != "filter" {
		return fail(fmt.Sprintf("unknown message type %q (only \"filter\" is supported)", typ))
	}
	filters, errMsg := parseWSFilters(obj["filters"])
	if errMsg != "" {
		return fail(errMsg)
	}
	if err := set(filters); err != nil {
		return fail(strings.TrimPrefix(err.Error(), match.ErrBadFilter.Error()+": "))
	}
	return encodeReply(wsReply{Type: "success", CorrelationID: corr})
}

// parseWSFilters reads the "filters" member: a list of {"property":P,
// "value":V} objects; V a string (numbers and booleans are taken by their
// JSON text).
func parseWSFilters(raw json.RawMessage) ([]match.Filter, string) {
	if len(raw) == 0 {
		return nil, `"filters" is missing (an empty list lets every event in)`
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, `"filters" must be a list of {"property":...,"value":...} objects`
	}
	out := make([]match.Filter, 0, len(items))
	for i, it := range items {
		var f map[string]json.RawMessage
		if err := json.Unmarshal(it, &f); err != nil || f == nil {
			return nil, fmt.Sprintf("filter %d is not an object", i)
		}
		var prop string
		if err := json.Unmarshal(f["property"], &prop); err != nil || prop == "" {
			return nil, fmt.Sprintf(`filter %d has no "property" (a non-empty string)`, i)
		}
		v, ok := f["value"]
		if !ok {
			return nil, fmt.Sprintf(`filter %d has no "value" ("*" matches any value)`, i)
		}
		val, ok := filterValue(v)
		if !ok {
			return nil, fmt.Sprintf(`filter %d: "value" must be a string, a number or a boolean`, i)
		}
		out = append(out, match.Filter{Property: prop, Value: val})
	}
	return out, ""
}

func filterValue(v json.RawMessage) (string, bool) {
	if string(bytes.TrimSpace(v)) == "null" {
		return "", false // json.Unmarshal takes null for a string
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, true
	}
	t := string(bytes.TrimSpace(v))
	if t == "true" || t == "false" {
		return t, true
	}
	var n json.Number
	if err := json.Unmarshal(v, &n); err == nil {
		return n.String(), true
	}
	return "", false
}

// validText returns b, with any invalid UTF-8 replaced by U+FFFD: every
// text frame must be valid UTF-8 (RFC 6455, 5.6). Ingest refuses invalid
// UTF-8 already; this guards what other sources (peers' logs, PBX
// adapters) could carry. Invalid bytes can only sit inside JSON strings,
// so the event stays valid JSON.
func validText(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return bytes.ToValidUTF8(b, []byte("\uFFFD"))
}

func encodeReply(r wsReply) []byte {
	if len(r.CorrelationID) == 0 {
		r.CorrelationID = json.RawMessage("null")
	}
	r.Time = time.Now().UnixMilli()
	b, err := json.Marshal(r)
	if err != nil {
		// Only a broken correlationId can fail; answer without it.
		r.CorrelationID = json.RawMessage("null")
		b, _ = json.Marshal(r)
	}
	return b
}

// jsonErrText shortens encoding/json's errors for a reply.
func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10)
	}
	return err.Error()
}
