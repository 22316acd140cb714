package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/node"
)

// testWait bounds every wait for something that should happen promptly.
const testWait = 20 * time.Second

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", testWait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLog passes a node's log to t.Log until the test ends.
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

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBootstrapped starts a bootstrapped single-node cluster on dir (raft on
// raftAddr, so a restart on the same dir finds its own address) and
// returns it with a root client once the root token is accepted.
func startBootstrapped(t *testing.T, dir, raftAddr string) (*node.Node, *client.Client) {
	t.Helper()
	cfg := node.Default()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RaftAddr = raftAddr
	cfg.Bootstrap = true
	cfg.RaftHeartbeatTimeout = 200 * time.Millisecond
	cfg.RaftElectionTimeout = 200 * time.Millisecond
	lw := &testLog{t: t}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	n, err := node.Start(cfg, "test", slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx) // no-op when the test shut it down
	})
	b, err := os.ReadFile(filepath.Join(dir, node.RootTokenFile))
	if err != nil {
		t.Fatalf("root token file: %v", err)
	}
	c := client.New(n.HTTPAddr(), strings.TrimSpace(string(b)))
	waitFor(t, "the node to be ready and the root token accepted", func() bool {
		_, err := c.ListSubs(context.Background(), nil)
		return c.Ready(context.Background()) == nil && err == nil
	})
	return n, c
}

// hangingReceiver holds every POST until the client gives up while hang
// is set, and answers 204 otherwise; it records the bodies it answered 2xx
// and counts the POSTs it received.
type hangingReceiver struct {
	*httptest.Server
	hang     atomic.Bool
	received atomic.Int64
	mu       sync.Mutex
	ok       [][]byte
}

func newHangingReceiver(t *testing.T) *hangingReceiver {
	rc := &hangingReceiver{}
	done := make(chan struct{})
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.received.Add(1)
		if rc.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		rc.mu.Lock()
		rc.ok = append(rc.ok, body)
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() { close(done); rc.Close() })
	return rc
}

func (rc *hangingReceiver) delivered(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, b := range rc.ok {
		if bytes.Contains(b, []byte(id)) {
			return true
		}
	}
	return false
}

// Shutdown honours its deadline: a POST in flight to a receiver that never
// answers (timeout-ms 30 s) is cancelled when the context ends, the final
// report keeps the cursor before its events, and they are delivered after a
// restart.
func TestShutdownCancelsPostsInFlightAtDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node twice")
	}
	dir, raftAddr := t.TempDir(), freeAddr(t)
	rc := newHangingReceiver(t)
	rc.hang.Store(true)

	n, c := startBootstrapped(t, dir, raftAddr)
	ctx := context.Background()
	sub, err := c.CreateSub(ctx, client.Fields{
		"model": "call", "domain": "example.com", "post-url": rc.URL + "/hook", "timeout-ms": 30000,
	})
	if err != nil {
		t.Fatalf("create subscription: %v", err)
	}
	waitFor(t, "the subscription to run", func() bool {
		v, err := c.GetSub(ctx, sub.ID)
		return err == nil && v.CurrentActiveServer == n.ID()
	})
	res, err := c.Ingest(ctx, map[string]any{"model": "call", "domain": "example.com", "orig_callid": "c1"})
	if err != nil || len(res.EventIDs) != 1 {
		t.Fatalf("ingest: %+v, %v", res, err)
	}
	id := res.EventIDs[0]
	waitFor(t, "the POST to reach the receiver", func() bool { return rc.received.Load() > 0 })

	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	if err := n.Shutdown(sctx); err != nil {
		t.Logf("shutdown: %v", err) // the deadline passing is no error of the test's
	}
	// Generous: the bound that matters is far below timeout-ms (30 s).
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Shutdown with a 1s context took %s: the POST in flight was awaited", took)
	}
	if rc.delivered(id) {
		t.Fatal("the receiver answered a POST while hanging")
	}

	rc.hang.Store(false)
	_, c2 := startBootstrapped(t, dir, raftAddr)
	waitFor(t, fmt.Sprintf("event %s to be delivered after the restart", id), func() bool { return rc.delivered(id) })
	v, err := c2.GetSub(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.ID != sub.ID {
		t.Fatalf("subscription %q after restart, want %q", v.ID, sub.ID)
	}
}
