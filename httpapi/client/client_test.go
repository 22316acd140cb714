package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/node"
)

const hookURL = "http://127.0.0.1:9/hook"

// waitFor polls cond until it reports true, and fails the test when timeout
// passes first. cond's string says what it expected and what it saw.
func waitFor(t testing.TB, cond func() (bool, string), timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %s", timeout, seen)
		}
		<-tick.C
	}
}

type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// mustStartNode starts a bootstrapped single-node cluster on loopback and
// returns it with a client holding the root token, once the node is ready
// and the root token authenticates.
func mustStartNode(t testing.TB) (*node.Node, *client.Client) {
	t.Helper()
	cfg := node.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.Bootstrap = true
	cfg.RaftHeartbeatTimeout = 200 * time.Millisecond
	cfg.RaftElectionTimeout = 200 * time.Millisecond
	if cfg.Lease >= cfg.DownAfter {
		t.Fatalf("config: lease %s must be < down-after %s", cfg.Lease, cfg.DownAfter)
	}
	lw := &testLog{t: t}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	n, err := node.Start(cfg, "test", slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, node.RootTokenFile))
	if err != nil {
		t.Fatalf("root token file: %v", err)
	}
	c := client.New(n.HTTPAddr(), strings.TrimSpace(string(b)))
	waitFor(t, func() (bool, string) {
		ctx := context.Background()
		if err := c.Ready(ctx); err != nil {
			return false, fmt.Sprintf("GET /readyz: want 200, got %v", err)
		}
		if _, err := c.ListSubs(ctx, nil); err != nil {
			return false, fmt.Sprintf("GET /v1/subscriptions with the root token: want 200, got %v", err)
		}
		return true, ""
	}, 20*time.Second)
	return n, c
}

// wantAPIError fails unless err is an *client.Error with the status and field.
func wantAPIError(t testing.TB, what string, err error, status int, field string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: err = %v, want an API error %d", what, err, status)
	}
	if e.Status != status || e.Field != field || e.Message == "" || client.StatusOf(err) != status {
		t.Fatalf("%s: error %+v, want status %d field %q and a message", what, e, status, field)
	}
}

func TestClientSubscriptions(t *testing.T) {
	t.Parallel()
	_, c := mustStartNode(t)
	ctx := context.Background()

	v, err := c.CreateSub(ctx, client.Fields{"id": "s1", "model": "call", "post-url": hookURL, "domain": "D1"})
	if err != nil {
		t.Fatal(err)
	}
	// Unassigned until the reconciler assigns it, moments later.
	if v.ID != "s1" || v.Domain != "D1" || !strings.HasPrefix(v.Secret, "whsec_") || v.CurrentActiveServer != "" {
		t.Fatalf("CreateSub = %+v", v)
	}
	if _, err := c.CreateSub(ctx, client.Fields{"model": "cdr", "post-url": hookURL}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateSub(ctx, client.Fields{"id": "s1", "model": "call", "post-url": hookURL})
	wantAPIError(t, "CreateSub of an existing id", err, http.StatusConflict, "id")
	_, err = c.CreateSub(ctx, client.Fields{"model": "call", "post-url": hookURL, "domain": "D1"})
	wantAPIError(t, "CreateSub with the parameters of s1", err, http.StatusConflict, "")
	if !strings.Contains(err.Error(), "s1") {
		t.Fatalf("409 %q does not name s1", err)
	}
	_, err = c.CreateSub(ctx, client.Fields{"model": "call", "post-url": "ftp://x"})
	wantAPIError(t, "CreateSub with a bad post-url", err, http.StatusBadRequest, "post-url")
	if got := err.Error(); !strings.Contains(got, "400") || !strings.Contains(got, "post-url") {
		t.Fatalf("Error() = %q, want the status and the field", got)
	}

	all, err := c.ListSubs(ctx, nil)
	if err != nil || len(all) != 2 {
		t.Fatalf("ListSubs = %d subs, %v; want 2", len(all), err)
	}
	some, err := c.ListSubs(ctx, url.Values{"model": {"call"}, "domain": {"D1"}})
	if err != nil || len(some) != 1 || some[0].ID != "s1" {
		t.Fatalf("ListSubs(model=call, domain=D1) = %+v, %v", some, err)
	}

	got, err := c.GetSub(ctx, "s1")
	if err != nil || got.ID != "s1" || got.Secret != "" {
		t.Fatalf("GetSub = %+v, %v", got, err)
	}
	_, err = c.GetSub(ctx, "nope")
	wantAPIError(t, "GetSub of an unknown id", err, http.StatusNotFound, "id")
	// Ids are path-escaped: this one cannot exist, and must not reach another route.
	_, err = c.GetSub(ctx, "s1/secret")
	wantAPIError(t, "GetSub of an id with a slash", err, http.StatusNotFound, "id")

	u, err := c.UpdateSub(ctx, "s1", client.Fields{"batch-max": 9}, true)
	if err != nil || u.BatchMax != 9 || u.Domain != "D1" {
		t.Fatalf("PATCH = %+v, %v", u, err)
	}
	u, err = c.UpdateSub(ctx, "s1", client.Fields{"model": "cdr", "post-url": hookURL}, false)
	if err != nil || u.Model != "cdr" || u.BatchMax != httpapi.DefaultBatchMax || u.Domain != "*" {
		t.Fatalf("PUT = %+v, %v", u, err)
	}

	p, err := c.PauseSub(ctx, "s1", true)
	if err != nil || p.Status != fsm.StatusPaused {
		t.Fatalf("pause = %q, %v", p.Status, err)
	}
	p, err = c.PauseSub(ctx, "s1", false)
	if err != nil || p.Status != fsm.StatusPending {
		t.Fatalf("resume = %q, %v", p.Status, err)
	}

	s, err := c.Secret(ctx, "s1")
	if err != nil || s != v.Secret {
		t.Fatalf("Secret = %q, %v; want the create answer's %q", s, err, v.Secret)
	}

	if err := c.DeleteSub(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, "DeleteSub again", c.DeleteSub(ctx, "s1"), http.StatusNotFound, "id")
	_, err = c.Secret(ctx, "s1")
	wantAPIError(t, "Secret after delete", err, http.StatusNotFound, "id")
}

func TestClientTokensAndCluster(t *testing.T) {
	t.Parallel()
	n, c := mustStartNode(t)
	ctx := context.Background()

	tv, err := c.CreateToken(ctx, httpapi.TokenRequest{Name: "d1", Role: fsm.RoleDomain, Domain: "D1"})
	if err != nil || tv.Token == "" || tv.Role != fsm.RoleDomain {
		t.Fatalf("CreateToken = %+v, %v", tv, err)
	}
	_, err = c.CreateToken(ctx, httpapi.TokenRequest{Role: "wizard"})
	wantAPIError(t, "CreateToken with a bad role", err, http.StatusBadRequest, "role")

	// A bare host:port works, and so does a trailing slash.
	dc := client.New("http://"+n.HTTPAddr()+"/", tv.Token)
	v, err := dc.CreateSub(ctx, client.Fields{"model": "call", "post-url": hookURL})
	if err != nil || v.Domain != "D1" {
		t.Fatalf("CreateSub with the domain token = %+v, %v", v, err)
	}
	_, err = dc.ListTokens(ctx)
	wantAPIError(t, "ListTokens with a domain token", err, http.StatusForbidden, "")
	_, err = dc.Cluster(ctx)
	wantAPIError(t, "Cluster with a domain token", err, http.StatusForbidden, "")

	list, err := c.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range list {
		if x.Token != "" {
			t.Fatalf("ListTokens shows a token string: %+v", x)
		}
		found = found || x.ID == tv.ID
	}
	if !found {
		t.Fatalf("ListTokens = %+v, lacks %s", list, tv.ID)
	}

	if err := c.RevokeToken(ctx, tv.ID); err != nil {
		t.Fatal(err)
	}
	_, err = dc.ListSubs(ctx, nil)
	wantAPIError(t, "ListSubs with a revoked token", err, http.StatusUnauthorized, "")
	wantAPIError(t, "RevokeToken again", c.RevokeToken(ctx, tv.ID), http.StatusNotFound, "id")

	cv, err := c.Cluster(ctx)
	if err != nil || cv.Leader != n.ID() || len(cv.Nodes) != 1 {
		t.Fatalf("Cluster = %+v, %v", cv, err)
	}
	_, err = client.New(n.HTTPAddr(), "").ListSubs(ctx, nil)
	wantAPIError(t, "ListSubs without a token", err, http.StatusUnauthorized, "")
	if err := client.New(n.HTTPAddr(), "").Ready(ctx); err != nil {
		t.Fatalf("Ready without a token: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	if got := client.StatusOf(errors.New("x")); got != 0 {
		t.Fatalf("StatusOf(plain error) = %d, want 0", got)
	}
	if got := client.StatusOf(fmt.Errorf("wrapped: %w", &client.Error{Status: 418})); got != 418 {
		t.Fatalf("StatusOf(wrapped) = %d, want 418", got)
	}
	e := &client.Error{Status: 404, Message: "no such subscription"}
	if got := e.Error(); got != "404 Not Found: no such subscription" {
		t.Fatalf("Error() = %q", got)
	}
	e.Field = "id"
	if got := e.Error(); got != "404 Not Found: id: no such subscription" {
		t.Fatalf("Error() = %q", got)
	}
	// A node that is not there: a transport error, not an API error.
	c := client.New("127.0.0.1:1", "x").WithHTTPClient(&http.Client{Timeout: 2 * time.Second})
	err := c.Ready(context.Background())
	if err == nil || client.StatusOf(err) != 0 {
		t.Fatalf("Ready against a closed port = %v", err)
	}
}
