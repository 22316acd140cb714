package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/fsm"
)

// fakeBackend is a Backend and Internal over a fixed state, for the
// middleware tests that need no node.
type fakeBackend struct {
	st       *fsm.State
	notReady error // what Ready returns
}

func (f *fakeBackend) NodeID() string { return "n1" }
func (f *fakeBackend) Apply(context.Context, fsm.Command) (fsm.Result, error) {
	return fsm.Result{}, nil
}
func (f *fakeBackend) Read(fn func(st *fsm.State)) { fn(f.st) }
func (f *fakeBackend) Ready() error                { return f.notReady }
func (f *fakeBackend) ApplyEncoded(context.Context, []byte) (fsm.Result, error) {
	return fsm.Result{}, nil
}
func (f *fakeBackend) Cluster() ClusterView                            { return ClusterView{} }
func (f *fakeBackend) Join(context.Context, JoinRequest, string) error { return ErrJoinRefused }
func (f *fakeBackend) RemoveNode(context.Context, string) error        { return nil }
func (f *fakeBackend) Leave(context.Context) error                     { return nil }
func (f *fakeBackend) Self() JoinRequest                               { return JoinRequest{ID: "n1"} }

// fakeServer is a Server over a state with a super and a domain token.
func fakeServer(t *testing.T, cfg Config) (*Server, map[string]string) {
	t.Helper()
	st := fsm.NewState()
	toks := map[string]string{"super": "hs_super_secret", "domain": "hs_domain_secret", "domain2": "hs_domain2_secret"}
	for id, role := range map[string]string{"super": fsm.RoleSuper, "domain": fsm.RoleDomain, "domain2": fsm.RoleDomain} {
		tok := fsm.Token{ID: id, Role: role, Hash: HashToken(toks[id])}
		if role == fsm.RoleDomain {
			tok.Domain = "d1"
		}
		if res, _ := fsm.Apply(st, 1, &fsm.CreateToken{Token: tok}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	fb := &fakeBackend{st: st}
	return New(cfg, fb, fb), toks
}

// TestUnknownTokenOnUnreadyNode: a node that is not ready (joining,
// catching up, no leader) may not hold a token yet, so an unknown token is
// 503 with the reason and Retry-After there, not "invalid API token"; a
// ready node answers 401; a token the node knows works either way.
func TestUnknownTokenOnUnreadyNode(t *testing.T) {
	cases := []struct {
		name     string
		notReady error
		token    string
		want     int
	}{
		{"ready, unknown token", nil, "hs_nobody", http.StatusUnauthorized},
		{"ready, known token", nil, "hs_super_secret", http.StatusOK},
		{"not ready, unknown token", errors.New("not yet a registered member of the cluster"), "hs_nobody", http.StatusServiceUnavailable},
		{"not ready, known token", errors.New("not yet a registered member of the cluster"), "hs_super_secret", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := fakeServer(t, Config{})
			s.b.(*fakeBackend).notReady = tc.notReady

			req := httptest.NewRequest(http.MethodGet, "/v1/subscriptions", nil)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("admin API: %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			switch tc.want {
			case http.StatusServiceUnavailable:
				if rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "not ready (not yet a registered member") {
					t.Fatalf("admin API 503 without Retry-After or the reason: %v %s", rec.Header(), rec.Body)
				}
				if strings.Contains(rec.Body.String(), tc.token) {
					t.Fatalf("the answer echoes the token: %s", rec.Body)
				}
			case http.StatusUnauthorized:
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Fatalf("401 without WWW-Authenticate")
				}
			}

			ing := httptest.NewRequest(http.MethodPost, "/v1/events?authkey="+tc.token, nil)
			ing.RemoteAddr = "192.0.2.7:5000" // outside ingest-allow: the token decides
			code, msg, ok := s.AuthorizeIngest(ing)
			wantIngest := tc.want
			if tc.want == http.StatusOK {
				wantIngest = 0
			}
			if code != wantIngest || ok != (tc.want == http.StatusOK) {
				t.Fatalf("ingest: %d %q ok=%v, want %d", code, msg, ok, wantIngest)
			}
		})
	}
}

// TestSelfIgnoresForwardingHeaders: /v1/cluster/self is for callers on
// this machine by the socket's address; X-Real-IP or X-Forwarded-For
// naming loopback do not make a remote caller local.
func TestSelfIgnoresForwardingHeaders(t *testing.T) {
	s, _ := fakeServer(t, Config{})
	cases := []struct {
		name, remote string
		hdr          map[string]string
		want         int
	}{
		{"loopback", "127.0.0.1:5000", nil, http.StatusOK},
		{"remote", "192.0.2.7:5000", nil, http.StatusForbidden},
		{"remote with X-Real-IP loopback", "192.0.2.7:5000", map[string]string{"X-Real-IP": "127.0.0.1"}, http.StatusForbidden},
		{"remote with X-Forwarded-For loopback", "192.0.2.7:5000", map[string]string{"X-Forwarded-For": "127.0.0.1"}, http.StatusForbidden},
		{"remote with both", "192.0.2.7:5000", map[string]string{"X-Real-IP": "::1", "X-Forwarded-For": "::1"}, http.StatusForbidden},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(http.MethodGet, "/v1/cluster/self", nil)
		req.RemoteAddr = tc.remote
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.want)
		}
	}
}

// TestAllowListsIgnoreForwardingHeaders: ingest-allow (and so /metrics'
// local check) decides by the socket's address only.
func TestAllowListsIgnoreForwardingHeaders(t *testing.T) {
	s, _ := fakeServer(t, Config{IngestAllow: mustCIDRs(t, "127.0.0.0/8")})
	req := httptest.NewRequest(http.MethodPost, "/v1/events", nil)
	req.RemoteAddr = "192.0.2.7:5000"
	req.Header.Set("X-Real-IP", "127.0.0.1")
	req.Header.Set("X-Forwarded-For", "127.0.0.1")
	if code, _, ok := s.AuthorizeIngest(req); ok || code != http.StatusUnauthorized {
		t.Fatalf("remote caller with loopback forwarding headers: ok=%v code=%d, want 401", ok, code)
	}
}

// TestAPIRateLimitsPerToken: a non-super token gets 429 with Retry-After
// once its burst is spent; another token and the super token are not
// affected.
func TestAPIRateLimitsPerToken(t *testing.T) {
	s, toks := fakeServer(t, Config{APIRate: Rate{PerSecond: 0.01, Burst: 3}})
	get := func(tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/v1/subscriptions", nil)
		req.RemoteAddr = "192.0.2.7:5000"
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec
	}
	for i := range 3 {
		if r := get(toks["domain"]); r.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, r.Code, r.Body)
		}
	}
	r := get(toks["domain"])
	if r.Code != http.StatusTooManyRequests {
		t.Fatalf("request past the burst: %d %s, want 429", r.Code, r.Body)
	}
	if ra, err := strconv.Atoi(r.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds >= 1", r.Header().Get("Retry-After"))
	}
	if strings.Contains(r.Body.String(), toks["domain"]) {
		t.Fatalf("429 body shows the token: %s", r.Body)
	}
	if r := get(toks["domain2"]); r.Code != http.StatusOK {
		t.Fatalf("another token: %d, want 200", r.Code)
	}
	for i := range 10 {
		if r := get(toks["super"]); r.Code != http.StatusOK {
			t.Fatalf("super request %d: %d, want 200 (super tokens are not limited)", i, r.Code)
		}
	}
}

// TestIngestRateLimitsPerSourceAddress: sources outside ingest-allow are
// limited per address with 429 and Retry-After; allow-listed ones never.
func TestIngestRateLimitsPerSourceAddress(t *testing.T) {
	s, _ := fakeServer(t, Config{IngestAllow: mustCIDRs(t, "127.0.0.0/8"), IngestRate: Rate{PerSecond: 0.01, Burst: 2}})
	h := s.LimitIngest(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	post := func(remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for i := range 2 {
		if r := post("192.0.2.7:1000"); r.Code != http.StatusAccepted {
			t.Fatalf("request %d within the burst: %d", i, r.Code)
		}
	}
	if r := post("192.0.2.7:1001"); r.Code != http.StatusTooManyRequests || r.Header().Get("Retry-After") == "" {
		t.Fatalf("past the burst (another port, same address): %d Retry-After %q, want 429 with Retry-After", r.Code, r.Header().Get("Retry-After"))
	}
	if r := post("192.0.2.8:1000"); r.Code != http.StatusAccepted {
		t.Fatalf("another address: %d, want 202", r.Code)
	}
	for i := range 10 {
		if r := post("127.0.0.1:1000"); r.Code != http.StatusAccepted {
			t.Fatalf("loopback request %d: %d, want 202 (allow-listed sources are not limited)", i, r.Code)
		}
	}
}

// TestKeyedLimiterIsBounded: the per-key map never grows past its bound;
// idle keys (full buckets) go first.
func TestKeyedLimiterIsBounded(t *testing.T) {
	k := newKeyedLimiter(Rate{PerSecond: 1000, Burst: 1})
	now := time.Unix(1000, 0)
	k.now = func() time.Time { return now }
	for i := range maxLimiterKeys + 500 {
		k.allow("a" + strconv.Itoa(i))
		if i%1000 == 0 {
			now = now.Add(time.Millisecond)
		}
	}
	if n := k.size(); n > maxLimiterKeys {
		t.Fatalf("%d keys tracked, bound %d", n, maxLimiterKeys)
	}
	now = now.Add(time.Hour) // everything idle
	k.allow("fresh")
	if n := k.size(); n != 1 {
		t.Fatalf("after all keys went idle and the map was full, %d keys remain, want 1", n)
	}
}

// TestWebsocketRepliesAreValidUTF8: a client message with invalid UTF-8
// (here in the correlationId that replies echo) gets an error reply that
// is valid UTF-8 and echoes nothing of it; an event with invalid UTF-8
// from any source is sent with U+FFFD in its place.
func TestWebsocketRepliesAreValidUTF8(t *testing.T) {
	set := func([]match.Filter) error { return nil }
	for _, msg := range []string{
		"{\"type\":\"filter\",\"correlationId\":\"\xff\xfe\",\"filters\":[]}",
		"{\"type\":\"nope\",\"correlationId\":\"c\xc3\",\"filters\":[]}",
		"{\"type\":\"filter\",\"correlationId\":\"c1\",\"filters\":[{\"property\":\"\xff\",\"value\":\"x\"}]}",
	} {
		reply := handleClientMessage([]byte(msg), set)
		if !utf8.Valid(reply) {
			t.Fatalf("reply to %q is not valid UTF-8: %q", msg, reply)
		}
		var r wsReply
		if err := json.Unmarshal(reply, &r); err != nil || r.Type != "error" || !strings.Contains(r.Error, "UTF-8") {
			t.Fatalf("reply to %q: %s, want an error naming UTF-8", msg, reply)
		}
	}
	ev := []byte("{\"model\":\"call\",\"x\":\"a\xffb\"}")
	out := validText(ev)
	if !utf8.Valid(out) || !json.Valid(out) || !strings.Contains(string(out), "a\uFFFDb") {
		t.Fatalf("validText(%q) = %q", ev, out)
	}
	if ok := []byte(`{"model":"call"}`); &validText(ok)[0] != &ok[0] {
		t.Fatal("validText copies valid text")
	}
}

func mustCIDRs(t *testing.T, s string) []*net.IPNet {
	t.Helper()
	var out []*net.IPNet
	for _, part := range strings.Split(s, ",") {
		_, n, err := net.ParseCIDR(part)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}
