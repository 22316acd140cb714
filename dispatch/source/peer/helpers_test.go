package peer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/store/eventlog"
)

// Bounds of the tests' waits.
const (
	waitTimeout = 15 * time.Second
	pollEvery   = 2 * time.Millisecond
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// waitUntil polls cond until it holds, failing the test after waitTimeout
// with what it waited for and what it saw last.
func waitUntil(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last seen: %s", waitTimeout, what, seen)
		}
		time.Sleep(pollEvery)
	}
}

// clock is a settable eventlog Options.Now, so ingest times are known.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// openLog opens a real event log (a peer's events.db) in a new temporary
// dir; it is closed when the test ends.
func openLog(t testing.TB, now func() time.Time) *eventlog.Log {
	t.Helper()
	l, err := eventlog.Open(eventlog.Options{
		Path: filepath.Join(t.TempDir(), "events.db"), Logger: quietLogger(), Now: now,
	})
	if err != nil {
		t.Fatalf("open event log: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// openTestMirror opens a mirror in a new temporary dir, closed at cleanup.
func openTestMirror(t testing.TB) *Mirror {
	t.Helper()
	m, err := OpenMirror(filepath.Join(t.TempDir(), "peer.db"), eventlog.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open mirror: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// appendEvents appends n events, one Append each, numbered from first
// (the number is in the body), and returns the seq of the last one.
func appendEvents(t testing.TB, l *eventlog.Log, first, n int) uint64 {
	t.Helper()
	var last uint64
	for i := first; i < first+n; i++ {
		body := fmt.Appendf(nil, `{"model":"call","n":%d,"pad":%q}`, i, strings.Repeat("x", i%50))
		seq, _, err := l.Append(context.Background(), []eventlog.Entry{{Model: "call", Body: body}})
		if err != nil {
			t.Fatalf("append event %d: %v", i, err)
		}
		last = seq
	}
	return last
}

// appendBatch appends n events in one Append (one transaction).
func appendBatch(t testing.TB, l *eventlog.Log, first, n int) {
	t.Helper()
	entries := make([]eventlog.Entry, n)
	for i := range entries {
		entries[i] = eventlog.Entry{Model: "cdr", Body: fmt.Appendf(nil, `{"model":"cdr","n":%d}`, first+i)}
	}
	if _, _, err := l.Append(context.Background(), entries); err != nil {
		t.Fatalf("append batch: %v", err)
	}
}

// readAll returns every stored record of a log-like reader.
func readAll(t testing.TB, r interface {
	Read(uint64, int) ([]eventlog.Record, error)
}) []eventlog.Record {
	t.Helper()
	recs, err := r.Read(0, 1<<30)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return recs
}

// sameRecords fails the test unless got and want are the same records:
// seqs, ingest times, models and bodies.
func sameRecords(t testing.TB, what string, got, want []eventlog.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d (got seqs %s, want %s)", what, len(got), len(want), seqSpan(got), seqSpan(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.IngestMs != w.IngestMs || g.Model != w.Model || !bytes.Equal(g.Body, w.Body) {
			t.Fatalf("%s: record %d is seq=%d ingest=%d model=%q body=%s, want seq=%d ingest=%d model=%q body=%s",
				what, i, g.Seq, g.IngestMs, g.Model, g.Body, w.Seq, w.IngestMs, w.Model, w.Body)
		}
	}
}

func seqSpan(recs []eventlog.Record) string {
	if len(recs) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d..%d", recs[0].Seq, recs[len(recs)-1].Seq)
}

// testPeer is a peer's HTTP server on 127.0.0.1 serving Handler of a log
// that the test can replace (a wiped peer), requiring a bearer token, and
// recording every request's query.
type testPeer struct {
	t     testing.TB
	srv   *httptest.Server
	token string
	h     atomic.Pointer[http.Handler]

	mu    sync.Mutex
	reqs  []url.Values
	auths []string
}

func newTestPeer(t testing.TB, src Source) *testPeer {
	t.Helper()
	p := &testPeer{t: t, token: "node-token-of-the-tailer"}
	p.serve(src)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.reqs = append(p.reqs, r.URL.Query())
		p.auths = append(p.auths, r.Header.Get("Authorization"))
		p.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+p.token {
			http.Error(w, `{"error":"a node token is required"}`, http.StatusUnauthorized)
			return
		}
		(*p.h.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	return p
}

// serve makes the peer serve src from the next request on.
func (p *testPeer) serve(src Source) {
	h := Handler(src, quietLogger())
	p.h.Store(&h)
}

// dropConnections closes every connection to the peer (a network cut).
func (p *testPeer) dropConnections() { p.srv.CloseClientConnections() }

func (p *testPeer) addr() string { return p.srv.Listener.Addr().String() }

func (p *testPeer) requests() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]url.Values(nil), p.reqs...)
}

// startTailer runs a Tailer of the peer into m until the test ends (or
// stop is called) and returns stop, which waits for Run to return.
func startTailer(t testing.TB, p *testPeer, m *Mirror, logger *slog.Logger) (stop func()) {
	t.Helper()
	return startTailerWith(t, p, m, logger, nil)
}

// startTailerWith is startTailer with a Trimmed callback.
func startTailerWith(t testing.TB, p *testPeer, m *Mirror, logger *slog.Logger, trimmed func()) (stop func()) {
	t.Helper()
	if logger == nil {
		logger = quietLogger()
	}
	tl := &Tailer{
		Node: "peer-1", Mirror: m, Token: p.token, Logger: logger,
		Client:  &http.Client{Transport: &http.Transport{}},
		Addr:    func() (string, bool) { return p.addr(), true },
		Trimmed: trimmed,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tl.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(waitTimeout):
				t.Errorf("Tailer.Run did not return within %s of its context's end", waitTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitMirrored waits until m holds exactly the records of src.
func waitMirrored(t testing.TB, m *Mirror, src *eventlog.Log) {
	t.Helper()
	waitUntil(t, "the mirror to catch up with the peer's log", func() (bool, string) {
		return m.Incarnation() == src.Incarnation() && m.LastSeq() == src.LastSeq() && m.FirstSeq() == src.FirstSeq(),
			fmt.Sprintf("mirror %s [%d..%d], peer %s [%d..%d]", m.Incarnation(), m.FirstSeq(), m.LastSeq(),
				src.Incarnation(), src.FirstSeq(), src.LastSeq())
	})
	sameRecords(t, "mirror", readAll(t, m), readAll(t, src))
}

// stream is one raw GET /internal/v1/log, read frame by frame.
type stream struct {
	resp   *http.Response
	br     *bufio.Reader
	cancel context.CancelFunc
}

// openStream GETs the log from p with the given query.
func openStream(t testing.TB, p *testPeer, query string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.srv.URL+"/internal/v1/log?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /internal/v1/log?%s: %v", query, err)
	}
	s := &stream{resp: resp, br: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// next reads frames until a record (keepalives and trim notices are
// skipped).
func (s *stream) next(t testing.TB) eventlog.Record {
	t.Helper()
	for {
		rec, _, err := readFrame(s.br)
		if err != nil {
			t.Fatalf("reading a frame: %v", err)
		}
		if rec.Seq != 0 {
			return rec
		}
	}
}

// records reads n records.
func (s *stream) records(t testing.TB, n int) []eventlog.Record {
	t.Helper()
	out := make([]eventlog.Record, 0, n)
	for range n {
		out = append(out, s.next(t))
	}
	return out
}

// header returns the response header's first seq.
func (s *stream) firstSeq(t testing.TB) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s.resp.Header.Get(HeaderFirstSeq), 10, 64)
	if err != nil {
		t.Fatalf("%s header %q: %v", HeaderFirstSeq, s.resp.Header.Get(HeaderFirstSeq), err)
	}
	return v
}

// logBuffer is a slog handler target that tests can search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var _ io.Writer = (*logBuffer)(nil)
