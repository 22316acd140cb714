package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/engine"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// The delivery engine reads a Mirror as a source log, as the node wires
// it: these tests run a real engine on a mirror filled by a real tailer,
// and a webhook receiver, to check what the mesh promises the engine.

// hookRecv is a webhook endpoint recording the event-ids it accepted, in
// order; while down it answers 503.
type hookRecv struct {
	srv  *httptest.Server
	down atomic.Bool

	mu  sync.Mutex
	ids []string
}

func newHookRecv(t *testing.T) *hookRecv {
	r := &hookRecv{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		if r.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var evs []struct {
			ID string `json:"event-id"`
		}
		if err := json.Unmarshal(b, &evs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, ev := range evs {
			r.ids = append(r.ids, ev.ID)
		}
		r.mu.Unlock()
	}))
	t.Cleanup(func() {
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
	return r
}

func (r *hookRecv) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// waitGot waits until the receiver has exactly want, in order.
func (r *hookRecv) waitGot(t *testing.T, want []string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("deliveries %v", want), func() (bool, string) {
		got := r.got()
		return strings.Join(got, " ") == strings.Join(want, " "), fmt.Sprint(got)
	})
}

// startEngine runs a delivery engine with the mirror as the source of
// node "peer-1" until the test ends.
func startEngine(t *testing.T, m *Mirror) *engine.Engine {
	e := engine.New(engine.Options{
		Poster: webhook.NewPoster(webhook.PosterOptions{Version: "test", Logger: quietLogger()}),
		Logger: quietLogger(), RestartDelay: 50 * time.Millisecond,
	})
	e.AddSource("peer-1", m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// engineSub is a subscription to every call of domain d at r, with a
// committed cursor in the peer's log when inc is set.
func engineSub(r *hookRecv, inc string, seq uint64) engine.Sub {
	s := engine.Sub{
		Match:      match.Sub{ID: "s1", Model: "call", Domain: "d.example"},
		Target:     webhook.Target{SubID: "s1", URL: r.srv.URL, Secret: webhook.NewSecret(), Encoding: "json-array", BatchMax: 100},
		Generation: 1,
		Cursors:    map[string]engine.Cursor{},
	}
	if inc != "" {
		s.Cursors["peer-1"] = engine.Cursor{Node: "peer-1", Incarnation: inc, Seq: seq}
	}
	return s
}

// appendCalls appends n call events of d.example, one per Append.
func appendCalls(t *testing.T, l *eventlog.Log, n int) {
	t.Helper()
	for range n {
		body := fmt.Appendf(nil, `{"model":"call","domain":"d.example","k":%d}`, l.LastSeq()+1)
		if _, _, err := l.Append(context.Background(), []eventlog.Entry{{Model: "call", Body: body}}); err != nil {
			t.Fatal(err)
		}
	}
}

func ids(inc string, from, to uint64) []string {
	var out []string
	for s := from; s <= to; s++ {
		out = append(out, dispatch.EventID(inc, s))
	}
	return out
}

// TestEngineOnMirrorResumesAtCursorAndSwitchesIncarnation: a subscription
// resumes the peer's log after its committed cursor (a new owner), and
// when the peer's log is recreated the engine delivers the new log's
// events (event-ids of the new incarnation) and nothing of the old one
// again.
func TestEngineOnMirrorResumesAtCursorAndSwitchesIncarnation(t *testing.T) {
	old := openLog(t, nil)
	appendCalls(t, old, 10)
	p := newTestPeer(t, old)
	m := openTestMirror(t)
	startTailer(t, p, m, nil)
	waitMirrored(t, m, old)
	r := newHookRecv(t)
	e := startEngine(t, m)
	e.Sync([]engine.Sub{engineSub(r, old.Incarnation(), 7)})
	r.waitGot(t, ids(old.Incarnation(), 8, 10))
	appendCalls(t, old, 2)
	r.waitGot(t, ids(old.Incarnation(), 8, 12))

	wiped := openLog(t, nil)
	appendCalls(t, wiped, 4)
	p.serve(wiped)
	p.dropConnections()
	want := append(ids(old.Incarnation(), 8, 12), ids(wiped.Incarnation(), 1, 4)...)
	r.waitGot(t, want)
	appendCalls(t, wiped, 1)
	r.waitGot(t, append(want, dispatch.EventID(wiped.Incarnation(), 5)))
}

// TestEngineOnLaggingMirrorStartsAtCursor: a new owner's copy of a peer's
// log is behind the subscription's committed cursor (the old owner had
// read further): it waits for the copy to pass the cursor instead of
// delivering again what the cursor covers.
func TestEngineOnLaggingMirrorStartsAtCursor(t *testing.T) {
	src := openLog(t, nil)
	appendCalls(t, src, 10)
	p := newTestPeer(t, src)
	m := openTestMirror(t)
	stop := startTailer(t, p, m, nil)
	waitMirrored(t, m, src)
	stop()
	appendCalls(t, src, 10) // 11..20: not copied yet

	r := newHookRecv(t)
	e := startEngine(t, m)
	e.Sync([]engine.Sub{engineSub(r, src.Incarnation(), 15)})
	startTailer(t, p, m, nil)
	waitMirrored(t, m, src)
	r.waitGot(t, ids(src.Incarnation(), 16, 20))
}

// TestEngineForgetsWhatPeerTrimmed: events held for a failing endpoint
// (in a batch being retried, and queued) that the peer's retention drops
// (the peer counts them as dropped) are not delivered from memory once
// the endpoint recovers; later events are.
func TestEngineForgetsWhatPeerTrimmed(t *testing.T) {
	src := openLog(t, nil)
	p := newTestPeer(t, src)
	m := openTestMirror(t)
	r := newHookRecv(t)
	e := startEngine(t, m)
	startTailerWith(t, p, m, nil, func() { e.Trimmed("peer-1") })
	appendCalls(t, src, 1)
	waitMirrored(t, m, src)
	e.Sync([]engine.Sub{engineSub(r, src.Incarnation(), 0)})
	r.waitGot(t, ids(src.Incarnation(), 1, 1))

	r.down.Store(true)
	appendCalls(t, src, 30) // 2..31
	waitMirrored(t, m, src)
	waitUntil(t, "the subscription to hold the events", func() (bool, string) {
		st, _ := e.Status("s1")
		return st.Lag == 30 && st.Status == webhook.StateError, fmt.Sprintf("%+v", st)
	})
	if _, err := src.Trim(32, nil); err != nil { // retention dropped them at the peer
		t.Fatal(err)
	}
	waitUntil(t, "the subscription to let them go", func() (bool, string) {
		st, _ := e.Status("s1")
		return st.Lag == 0 && m.FirstSeq() == 32, fmt.Sprintf("%+v, mirror from %d", st, m.FirstSeq())
	})
	r.down.Store(false)
	appendCalls(t, src, 1) // 32
	r.waitGot(t, append(ids(src.Incarnation(), 1, 1), dispatch.EventID(src.Incarnation(), 32)))
}
