package httpapi_test

// The API tests run against a real node: node.Start with a single-node raft
// cluster on loopback, driven over real HTTP. They live in the external test
// package because node imports httpapi.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/node"
)

const (
	// readyTimeout bounds a node's start until it serves the API.
	readyTimeout = 20 * time.Second
	pollEvery    = 10 * time.Millisecond
	// hookURL is a valid post-url nothing listens on (the discard port);
	// no test ingests events, so nothing is ever posted to it.
	hookURL = "http://127.0.0.1:9/hook"
)

// waitFor polls cond until it reports true, and fails the test when timeout
// passes first. cond's string says what it expected and what it saw.
func waitFor(t testing.TB, cond func() (bool, string), timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
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

// testLog sends the node's warnings and errors to the test log until the
// test ends (a log call after that would panic).
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

func (l *testLog) close() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

// testNode is a running single-node cluster and an HTTP client for it.
type testNode struct {
	t       testing.TB
	n       *node.Node
	dataDir string
	base    string
	root    string
	hc      *http.Client
}

// mustStartNode starts a bootstrapped single-node cluster on loopback and
// returns once /readyz answers 200 and the root token authenticates.
func mustStartNode(t testing.TB) *testNode {
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
	t.Cleanup(lw.close) // runs after the shutdown below
	logger := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.Start(cfg, "test", logger)
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	tn := &testNode{t: t, n: n, dataDir: cfg.DataDir, base: "http://" + n.HTTPAddr(), hc: &http.Client{Timeout: 15 * time.Second}}
	t.Cleanup(func() {
		tn.hc.CloseIdleConnections()
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
	tn.root = strings.TrimSpace(string(b))
	if tn.root == "" {
		t.Fatal("root token file is empty")
	}
	waitFor(t, func() (bool, string) {
		if r := tn.tryDo(http.MethodGet, "/readyz", "", nil); r.Code != http.StatusOK {
			return false, fmt.Sprintf("GET /readyz: want 200, got %d %s", r.Code, r.Body)
		}
		if r := tn.tryDo(http.MethodGet, "/v1/subscriptions", tn.root, nil); r.Code != http.StatusOK {
			return false, fmt.Sprintf("GET /v1/subscriptions with the root token: want 200, got %d %s", r.Code, r.Body)
		}
		return true, ""
	}, readyTimeout)
	return tn
}

// reply is an HTTP answer; Code 0 means the request failed (Body says why).
type reply struct {
	Code   int
	Body   []byte
	Header http.Header
}

// rawBody is a request body sent as is (not JSON-encoded).
type rawBody string

// tryDo sends a request; body is nil, a rawBody, an io.Reader (sent with
// unknown length, chunked) or a value to encode as JSON.
func (tn *testNode) tryDo(method, path, token string, body any) reply {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case rawBody:
		rd = strings.NewReader(string(b))
	case io.Reader:
		rd = b
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return reply{Body: []byte("encode body: " + err.Error())}
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, tn.base+path, rd)
	if err != nil {
		return reply{Body: []byte(err.Error())}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := tn.hc.Do(req)
	if err != nil {
		return reply{Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{Body: []byte("read answer: " + err.Error())}
	}
	return reply{Code: resp.StatusCode, Body: data, Header: resp.Header}
}

// do is tryDo that fails the test when the request gets no answer.
func (tn *testNode) do(method, path, token string, body any) reply {
	tn.t.Helper()
	r := tn.tryDo(method, path, token, body)
	if r.Code == 0 {
		tn.t.Fatalf("%s %s: %s", method, path, r.Body)
	}
	return r
}

// want fails the test unless r has the given status.
func want(t testing.TB, what string, r reply, code int) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("%s: want %d, got %d %s", what, code, r.Code, r.Body)
	}
}

// apiErr is DESIGN.md's error body.
type apiErr struct {
	Code    int     `json:"code"`
	Message string  `json:"message"`
	Error   string  `json:"error"`
	Field   *string `json:"field"`
}

// wantErr fails the test unless r is a JSON error with the given status
// and field ("" for none).
func wantErr(t testing.TB, what string, r reply, code int, field string) apiErr {
	t.Helper()
	if r.Code != code {
		t.Fatalf("%s: want %d (field %q), got %d %s", what, code, field, r.Code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: error Content-Type = %q, want application/json (body %s)", what, ct, r.Body)
	}
	var e apiErr
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%s: error body %s is not {\"error\",\"field\"}: %v", what, r.Body, err)
	}
	if e.Error == "" {
		t.Fatalf("%s: error body %s has no message", what, r.Body)
	}
	if e.Field == nil || *e.Field != field {
		t.Fatalf("%s: error field = %v, want %q (body %s)", what, e.Field, field, r.Body)
	}
	wantMsg := e.Error
	if field != "" {
		wantMsg = field + ": " + e.Error
	}
	if e.Code != code || e.Message != wantMsg {
		t.Fatalf("%s: error code %d message %q, want %d %q (body %s)", what, e.Code, e.Message, code, wantMsg, r.Body)
	}
	return e
}

func decode[T any](t testing.TB, what string, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("%s: decode %s: %v", what, r.Body, err)
	}
	return v
}

// fields is a subscription request body.
type fields map[string]any

// hookSeq numbers the post-urls of sub, so that no two of its bodies
// collide under the (model, post-url, reseller, domain, user) rule.
var hookSeq atomic.Int64

// nextHookURL returns a fresh post-url on the discard port each call.
func nextHookURL() string { return fmt.Sprintf("%s/%d", hookURL, hookSeq.Add(1)) }

// sub returns a minimal valid subscription body plus extra fields (a nil
// value removes a field). Its post-url is unique (nextHookURL).
func sub(extra fields) fields {
	f := fields{"model": "call", "post-url": nextHookURL()}
	for k, v := range extra {
		if v == nil {
			delete(f, k)
		} else {
			f[k] = v
		}
	}
	return f
}

// createSub creates a subscription and expects 201.
func (tn *testNode) createSub(token string, body any) httpapi.SubView {
	tn.t.Helper()
	r := tn.do(http.MethodPost, "/v1/subscriptions", token, body)
	want(tn.t, "POST /v1/subscriptions", r, http.StatusCreated)
	return decode[httpapi.SubView](tn.t, "POST /v1/subscriptions", r)
}

// getSub reads a subscription with the root token and expects 200.
func (tn *testNode) getSub(id string) httpapi.SubView {
	tn.t.Helper()
	r := tn.do(http.MethodGet, "/v1/subscriptions/"+url.PathEscape(id), tn.root, nil)
	want(tn.t, "GET /v1/subscriptions/"+id, r, http.StatusOK)
	return decode[httpapi.SubView](tn.t, "GET /v1/subscriptions/"+id, r)
}

// listIDs lists the subscriptions token sees (query may be "") and returns
// their ids in the order of the answer.
func (tn *testNode) listIDs(token, query string) []string {
	tn.t.Helper()
	path := "/v1/subscriptions"
	if query != "" {
		path += "?" + query
	}
	r := tn.do(http.MethodGet, path, token, nil)
	want(tn.t, "GET "+path, r, http.StatusOK)
	ids := []string{}
	for _, v := range decode[[]httpapi.SubView](tn.t, "GET "+path, r) {
		ids = append(ids, v.ID)
	}
	return ids
}

// wantIDs fails unless got and want hold the same ids in the same order.
func wantIDs(t testing.TB, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: ids = %q, want %q", what, got, want)
	}
}

// newToken creates a token with the root token and returns its string.
func (tn *testNode) newToken(role, reseller, domain, user string) string {
	tn.t.Helper()
	r := tn.do(http.MethodPost, "/v1/tokens", tn.root, httpapi.TokenRequest{Role: role, Reseller: reseller, Domain: domain, User: user})
	want(tn.t, "POST /v1/tokens", r, http.StatusCreated)
	v := decode[httpapi.TokenView](tn.t, "POST /v1/tokens", r)
	if v.Token == "" {
		tn.t.Fatalf("POST /v1/tokens: no token string in %s", r.Body)
	}
	return v.Token
}
