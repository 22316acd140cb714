package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// receiver records the events posted to it, per subscription.
type receiver struct {
	mu     sync.Mutex
	events map[string][]map[string]any // by X-Correlation-ID
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver { return newHoldingReceiver(t, nil) }

// newHoldingReceiver is a receiver that calls before (when not nil) at the
// start of every request: a test holds POSTs in flight with it.
func newHoldingReceiver(t *testing.T, before func()) *receiver {
	r := &receiver{events: map[string][]map[string]any{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if before != nil {
			before()
		}
		b, _ := io.ReadAll(req.Body)
		var evs []map[string]any
		if err := json.Unmarshal(b, &evs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		id := req.Header.Get("X-Correlation-ID")
		r.events[id] = append(r.events[id], evs...)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got(sub string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.events[sub]...)
}

func waitFor(t *testing.T, what string, cond func() (bool, string), timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; seen: %s", timeout, what, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openLog(t *testing.T) *eventlog.Log {
	t.Helper()
	l, err := eventlog.Open(eventlog.Options{Path: filepath.Join(t.TempDir(), "events.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendEvents(t *testing.T, l *eventlog.Log, from, n int, domain string) {
	t.Helper()
	entries := make([]eventlog.Entry, n)
	for i := range entries {
		entries[i] = eventlog.Entry{Model: "call", Body: fmt.Appendf(nil, `{"model":"call","domain":%q,"n":%d}`, domain, from+i)}
	}
	if _, _, err := l.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
}

func testSub(id, domain, url string) Sub {
	return Sub{
		Match:  match.Sub{ID: id, Model: "call", Domain: domain},
		Target: webhook.Target{SubID: id, URL: url, Secret: webhook.NewSecret(), Encoding: "json-array", BatchMax: 50},
	}
}

func startEngine(t *testing.T, opts Options, l *eventlog.Log) *Engine {
	t.Helper()
	if opts.Poster == nil {
		opts.Poster = webhook.NewPoster(webhook.PosterOptions{Version: "test"})
	}
	e := New(opts)
	e.AddSource("n1", l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// wantSequence checks that the events are n = 0..count-1 in order.
func wantSequence(evs []map[string]any, count int) (bool, string) {
	if len(evs) != count {
		return false, fmt.Sprintf("%d events", len(evs))
	}
	for i, ev := range evs {
		if n, _ := ev["n"].(float64); int(n) != i {
			return false, fmt.Sprintf("event %d has n=%v", i, ev["n"])
		}
	}
	return true, ""
}

func TestEngineDeliversInOrderAcrossCatchUpAndOverflow(t *testing.T) {
	l := openLog(t)
	rcv := newReceiver(t)
	// Events exist before the engine starts: the subscription starts behind
	// the reader and catches up from the log; a tiny queue forces it to
	// fall back to the log again while live events stream in.
	appendEvents(t, l, 0, 300, "d1")
	e := startEngine(t, Options{QueueMax: 7, ReadChunk: 64}, l)
	e.Sync([]Sub{testSub("a", "d1", rcv.srv.URL), testSub("b", "d2", rcv.srv.URL)})
	for i := 300; i < 1000; i += 50 {
		appendEvents(t, l, i, 50, "d1")
	}
	waitFor(t, "1000 events in order for sub a", func() (bool, string) { return wantSequence(rcv.got("a"), 1000) }, 20*time.Second)
	if got := rcv.got("b"); len(got) != 0 {
		t.Fatalf("sub b (domain d2) got %d events of domain d1", len(got))
	}
	waitFor(t, "cursor at the end", func() (bool, string) {
		r, ok := e.Status("a")
		if !ok || len(r.Cursors) != 1 {
			return false, fmt.Sprintf("%+v", r)
		}
		return r.Cursors[0].Seq == 1000 && r.Lag == 0, fmt.Sprintf("cursor %+v lag %d", r.Cursors[0], r.Lag)
	}, 5*time.Second)
}

func TestEngineResumesFromCommittedCursor(t *testing.T) {
	l := openLog(t)
	rcv := newReceiver(t)
	appendEvents(t, l, 0, 100, "d1")
	e := startEngine(t, Options{}, l)
	s := testSub("a", "d1", rcv.srv.URL)
	s.Cursors = map[string]Cursor{"n1": {Node: "n1", Incarnation: l.Incarnation(), Seq: 60}}
	e.Sync([]Sub{s})
	waitFor(t, "the 40 events after the cursor", func() (bool, string) {
		got := rcv.got("a")
		if len(got) != 40 {
			return false, fmt.Sprintf("%d events", len(got))
		}
		first, _ := got[0]["n"].(float64)
		return first == 60, fmt.Sprintf("first n=%v", first)
	}, 10*time.Second)
}

func TestEngineCursorOfAnotherIncarnationStartsAtStartTime(t *testing.T) {
	l := openLog(t)
	rcv := newReceiver(t)
	appendEvents(t, l, 0, 10, "d1")
	e := startEngine(t, Options{}, l)
	s := testSub("a", "d1", rcv.srv.URL)
	// A cursor of a wiped log (other incarnation) must not skip events of
	// the new one.
	s.Cursors = map[string]Cursor{"n1": {Node: "n1", Incarnation: "old", Seq: 8}}
	e.Sync([]Sub{s})
	waitFor(t, "all 10 events", func() (bool, string) { return wantSequence(rcv.got("a"), 10) }, 10*time.Second)
}

func TestEngineReportCountsAndResets(t *testing.T) {
	l := openLog(t)
	rcv := newReceiver(t)
	e := startEngine(t, Options{}, l)
	e.Sync([]Sub{testSub("a", "d1", rcv.srv.URL)})
	// The subscription must have a position before live events arrive.
	waitFor(t, "subscription attached", func() (bool, string) {
		r, _ := e.Status("a")
		return len(r.Cursors) == 1, fmt.Sprintf("%+v", r)
	}, 5*time.Second)
	appendEvents(t, l, 0, 30, "d1")
	waitFor(t, "30 events", func() (bool, string) { return wantSequence(rcv.got("a"), 30) }, 10*time.Second)
	var events, posts uint64
	waitFor(t, "counters", func() (bool, string) {
		for _, r := range e.Report(true) {
			events += r.Events
			posts += r.Posts
		}
		return events == 30, fmt.Sprintf("events %d posts %d", events, posts)
	}, 5*time.Second)
	if posts == 0 || posts > 30 {
		t.Fatalf("posts = %d, want 1..30", posts)
	}
	for _, r := range e.Report(true) {
		if r.Events != 0 || r.Posts != 0 {
			t.Fatalf("deltas not reset: %+v", r)
		}
		if r.Status != webhook.StateActive {
			t.Fatalf("status = %s, want active", r.Status)
		}
	}
}

func TestEngineStopKeepsFinalReport(t *testing.T) {
	l := openLog(t)
	rcv := newReceiver(t)
	e := startEngine(t, Options{}, l)
	e.Sync([]Sub{testSub("a", "d1", rcv.srv.URL)})
	waitFor(t, "subscription attached", func() (bool, string) {
		r, _ := e.Status("a")
		return len(r.Cursors) == 1, fmt.Sprintf("%+v", r)
	}, 5*time.Second)
	appendEvents(t, l, 0, 5, "d1")
	waitFor(t, "5 events", func() (bool, string) { return wantSequence(rcv.got("a"), 5) }, 10*time.Second)
	e.Sync(nil) // paused, say
	var final []SubReport
	waitFor(t, "a final report", func() (bool, string) {
		final = append(final, e.Report(true)...)
		for _, r := range final {
			if r.ID == "a" && len(r.Cursors) == 1 && r.Cursors[0].Seq == 5 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", final)
	}, 5*time.Second)
	if _, ok := e.Status("a"); ok {
		t.Fatal("stopped subscription still running")
	}
}

func TestEngineStopAndRestartContinuesWithoutDuplicates(t *testing.T) {
	l := openLog(t)
	rcv := newReceiver(t)
	e := startEngine(t, Options{}, l)
	s := testSub("a", "d1", rcv.srv.URL)
	e.Sync([]Sub{s})
	waitFor(t, "subscription attached", func() (bool, string) {
		r, _ := e.Status("a")
		return len(r.Cursors) == 1, fmt.Sprintf("%+v", r)
	}, 5*time.Second)
	appendEvents(t, l, 0, 5, "d1")
	waitFor(t, "5 events", func() (bool, string) { return wantSequence(rcv.got("a"), 5) }, 10*time.Second)
	// Paused and resumed (or lease lost and renewed) before any report
	// committed its cursor: the new run continues where the old one was.
	e.Sync(nil)
	e.Sync([]Sub{s})
	appendEvents(t, l, 5, 5, "d1")
	waitFor(t, "10 events, none twice", func() (bool, string) { return wantSequence(rcv.got("a"), 10) }, 10*time.Second)
}

func TestMayMatchPrefilter(t *testing.T) {
	tests := []struct {
		sub   match.Sub
		model string
		body  string
		want  bool
	}{
		{match.Sub{Model: "call", Domain: "d1"}, "call", `{"domain":"d1"}`, true},
		{match.Sub{Model: "call", Domain: "d1"}, "call", `{"domain":"d2"}`, false},
		{match.Sub{Model: "call", Domain: "d1"}, "cdr", `{"domain":"d1"}`, false},
		{match.Sub{Model: "call", Domain: "d1"}, "call", `{"domain":"\u0064\u0031"}`, true}, // escapes: parse it
		{match.Sub{Model: "call", Domain: "*"}, "call", `{"domain":"x"}`, true},
		{match.Sub{Model: "*", Domain: "d1"}, "cdr", `{"domain":["d0","d1"]}`, true},
		{match.Sub{Model: "presence", Domain: "d1"}, "subscriber", `{"domain":"d1"}`, true},
		{match.Sub{Model: "presence", Domain: "d1"}, "presence", `{"domain":"d1"}`, true},
		{match.Sub{Model: "auditlog_lite", Domain: "d1"}, "auditlog", `{"target_domain":"d1"}`, true},
		{match.Sub{Model: "call_origid", Domain: "d1"}, "call", `{"domain":"d1"}`, true},
		{match.Sub{Model: "call_origid", Domain: "d1"}, "cdr", `{"domain":"d1"}`, false},
	}
	for i, tc := range tests {
		tc.sub.ID = "s"
		ss := newSubState(New(Options{}), Sub{Match: tc.sub})
		r := eventlog.Record{Model: tc.model, Body: []byte(tc.body)}
		if got := ss.mayMatch(&r); got != tc.want {
			t.Errorf("%d: mayMatch(%+v, %s %s) = %v, want %v", i, tc.sub, tc.model, tc.body, got, tc.want)
		}
	}
}
