package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every poll and wait in the tests.
const waitTimeout = 10 * time.Second

// pollInterval is how often waitFor re-checks its condition.
const pollInterval = time.Millisecond

func testPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "events.db")
}

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openTest opens a log with the test logger and closes it at cleanup.
func openTest(t testing.TB, opts Options, h hooks) *Log {
	t.Helper()
	if opts.Path == "" {
		opts.Path = testPath(t)
	}
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	l, err := open(opts, h)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollInterval)
	}
}

// mustAppend appends and fails the test on error.
func mustAppend(t testing.TB, l *Log, entries ...Entry) (uint64, int64) {
	t.Helper()
	first, ms, err := l.Append(context.Background(), entries)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return first, ms
}

// ev builds an entry with a JSON-ish body.
func ev(model string, format string, args ...any) Entry {
	return Entry{Model: model, Body: fmt.Appendf(nil, format, args...)}
}

// readAll reads every stored record.
func readAll(t testing.TB, l *Log) []Record {
	t.Helper()
	recs, err := l.Read(0, 1<<30)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return recs
}

func seqs(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// fakeClock is a settable Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// gate stalls the committer's first transaction until released, and
// records the size of every transaction.
type gate struct {
	release chan struct{}
	held    chan struct{} // closed when the first transaction is being held

	mu      sync.Mutex
	first   bool
	batches []batchSize
}

type batchSize struct{ events, calls int }

func newGate() *gate {
	return &gate{release: make(chan struct{}), held: make(chan struct{})}
}

func (g *gate) hook(events, calls int) {
	g.mu.Lock()
	g.batches = append(g.batches, batchSize{events, calls})
	hold := !g.first
	g.first = true
	g.mu.Unlock()
	if hold {
		close(g.held)
		<-g.release
	}
}

func (g *gate) sizes() []batchSize {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]batchSize(nil), g.batches...)
}

// appendAsync runs Append in a goroutine and returns its result channel.
type appendOut struct {
	first uint64
	ms    int64
	err   error
}

func appendAsync(ctx context.Context, l *Log, entries []Entry) <-chan appendOut {
	ch := make(chan appendOut, 1)
	go func() {
		first, ms, err := l.Append(ctx, entries)
		ch <- appendOut{first, ms, err}
	}()
	return ch
}

// await waits for an async append's result.
func await(t testing.TB, ch <-chan appendOut) appendOut {
	t.Helper()
	select {
	case out := <-ch:
		return out
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for Append")
		return appendOut{}
	}
}
