package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// memLog is an in-memory Log: appends are immediate, IngestMs comes from
// a settable clock, and Trim drops records from the front.
type memLog struct {
	inc string

	mu      sync.Mutex
	recs    []eventlog.Record // contiguous seqs from first
	first   uint64
	last    uint64
	nowMs   int64
	changed chan struct{}
	// readHook, when set, runs at the start of every Read (outside mu).
	readHook func(from uint64)
}

func newMemLog(inc string) *memLog {
	return &memLog{inc: inc, first: 1, nowMs: 1_700_000_000_000, changed: make(chan struct{})}
}

func (l *memLog) Incarnation() string { return l.inc }

func (l *memLog) FirstSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

func (l *memLog) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

func (l *memLog) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// setNow sets the ingest time of the next appends.
func (l *memLog) setNow(ms int64) {
	l.mu.Lock()
	l.nowMs = ms
	l.mu.Unlock()
}

// append stores bodies (JSON objects with a "model") and returns the seq
// of the first.
func (l *memLog) append(bodies ...string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.last + 1
	for _, b := range bodies {
		var m struct {
			Model string `json:"model"`
		}
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			panic(fmt.Sprintf("memLog: bad body %s: %v", b, err))
		}
		l.last++
		l.recs = append(l.recs, eventlog.Record{Seq: l.last, IngestMs: l.nowMs, Model: m.Model, Body: []byte(b)})
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return first
}

// trim drops every record below keepFrom.
func (l *memLog) trim(keepFrom uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.first < keepFrom && len(l.recs) > 0 {
		l.recs = l.recs[1:]
		l.first++
	}
}

func (l *memLog) Read(from uint64, max int) ([]eventlog.Record, error) {
	l.mu.Lock()
	hook := l.readHook
	l.mu.Unlock()
	if hook != nil {
		hook(from)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if from < l.first {
		from = l.first
	}
	var out []eventlog.Record
	for i := int(from - l.first); i >= 0 && i < len(l.recs) && len(out) < max; i++ {
		out = append(out, l.recs[i])
	}
	return out, nil
}

func (l *memLog) SeqAtOrAfter(t time.Time) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ms := t.UnixMilli()
	for _, r := range l.recs {
		if r.IngestMs >= ms {
			return r.Seq, nil
		}
	}
	return l.last + 1, nil
}

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// runHub starts h.Run until the test ends.
func runHub(t testing.TB, h *Hub) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func mustSubscribe(t testing.TB, h *Hub, o SubOptions) *Sub {
	t.Helper()
	s, err := h.Subscribe(o)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func filters(t testing.TB, kv ...string) []match.Filter {
	t.Helper()
	var fs []match.Filter
	for i := 0; i+1 < len(kv); i += 2 {
		fs = append(fs, match.Filter{Property: kv[i], Value: kv[i+1]})
	}
	if _, err := match.NewFilterSet(fs); err != nil {
		t.Fatal(err)
	}
	return fs
}

// collect calls Next until n messages arrived or timeout passes.
func collect(t testing.TB, s *Sub, n int, timeout time.Duration) []*Message {
	t.Helper()
	var out []*Message
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for len(out) < n {
		var err error
		before := len(out)
		out, err = s.Next(out, 0)
		if err != nil {
			t.Fatalf("Next after %d of %d messages: %v", len(out), n, err)
		}
		if len(out) > before {
			continue
		}
		select {
		case <-s.Ready():
		case <-deadline.C:
			t.Fatalf("got %d of %d messages within %s", len(out), n, timeout)
		}
	}
	return out
}

// quiet asserts that Next hands out nothing for a while.
func quiet(t testing.TB, s *Sub, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		got, err := s.Next(nil, 0)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(got) > 0 {
			t.Fatalf("expected nothing, got %s", got[0].JSON)
		}
		select {
		case <-s.Ready():
		case <-time.After(time.Until(deadline)):
		}
	}
}

func seqsOf(msgs []*Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Event.Seq
	}
	return out
}

func field(t testing.TB, m *Message, name string) any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(m.JSON, &v); err != nil {
		t.Fatalf("message JSON %s: %v", m.JSON, err)
	}
	return v[name]
}

// posLocked is the source's reader position.
func (src *source) posLocked() uint64 {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.pos
}
