package httpsource

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// newLog opens a real event log in a temporary directory.
func newLog(t testing.TB) *eventlog.Log {
	t.Helper()
	l, err := eventlog.Open(eventlog.Options{
		Path:   filepath.Join(t.TempDir(), "events.db"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("eventlog.Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// logBuffer collects log output safely from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newServer serves New(opts) on 127.0.0.1 (httptest.NewServer's loopback
// listener) and returns the URL of /v1/events. A nil Authorize is AllowAll.
func newServer(t testing.TB, opts Options) string {
	t.Helper()
	if opts.Authorize == nil {
		opts.Authorize = AllowAll
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/events", New(opts))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server not on 127.0.0.1: %s", srv.URL)
	}
	return srv.URL + "/v1/events"
}

// reply is a response read in full.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; ct "" sends no Content-Type. A body of type
// io.Reader (not *bytes.Reader / *strings.Reader) goes out chunked.
func do(t testing.TB, method, url, ct string, body io.Reader) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return reply{status: res.StatusCode, header: res.Header, body: b}
}

func post(t testing.TB, url, ct, body string) reply {
	t.Helper()
	return do(t, http.MethodPost, url, ct, strings.NewReader(body))
}

// accepted is the 202 body.
type accepted struct {
	Accepted int      `json:"accepted"`
	EventIDs []string `json:"event-ids"`
}

// apiErr is the JSON error body.
type apiErr struct {
	Code    int     `json:"code"`
	Message *string `json:"message"`
	Error   string  `json:"error"`
	Field   *string `json:"field"`
	Index   *int    `json:"index"`
}

// wantAccepted checks a 202 for n events and returns the sequence number of
// the first; ids must be "<incarnation>-<seq>" with consecutive seqs.
func wantAccepted(t testing.TB, r reply, n int, incarnation string) uint64 {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var a accepted
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("202 body %s: %v", r.body, err)
	}
	if a.Accepted != n || len(a.EventIDs) != n {
		t.Fatalf("accepted %d with %d ids, want %d: %s", a.Accepted, len(a.EventIDs), n, r.body)
	}
	var first uint64
	for i, id := range a.EventIDs {
		inc, seq, err := dispatch.ParseEventID(id)
		if err != nil || inc != incarnation {
			t.Fatalf("id %d %q: incarnation %q err %v, want incarnation %q", i, id, inc, err, incarnation)
		}
		if i == 0 {
			first = seq
		} else if seq != first+uint64(i) {
			t.Fatalf("id %d %q: seq %d, want %d (contiguous)", i, id, seq, first+uint64(i))
		}
		if id != dispatch.EventID(incarnation, seq) {
			t.Fatalf("id %q differs from dispatch.EventID", id)
		}
	}
	return first
}

// wantError checks a JSON error reply. field "" and index -1 mean absent.
func wantError(t testing.TB, r reply, status int, msgPart, field string, index int) apiErr {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var e apiErr
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if e.Error == "" || !strings.Contains(e.Error, msgPart) {
		t.Fatalf("error %q, want it to contain %q", e.Error, msgPart)
	}
	if e.Field == nil || *e.Field != field {
		t.Fatalf("field %v, want %q (body %s)", e.Field, field, r.body)
	}
	wantMsg := e.Error
	if field != "" {
		wantMsg = field + ": " + e.Error
	}
	if e.Code != status || e.Message == nil || *e.Message != wantMsg {
		t.Fatalf("code %d message %v, want %d %q (body %s)", e.Code, e.Message, status, wantMsg, r.body)
	}
	switch {
	case index < 0 && e.Index != nil:
		t.Fatalf("index %d, want none (error %q)", *e.Index, e.Error)
	case index >= 0 && (e.Index == nil || *e.Index != index):
		t.Fatalf("index %v, want %d (error %q)", e.Index, index, e.Error)
	case index >= 0 && !strings.HasPrefix(e.Error, "event "+strconv.Itoa(index)+": "):
		t.Fatalf("error %q does not start with event %d", e.Error, index)
	}
	return e
}

// wantStored reads the records from seq first on and checks their models
// and bodies.
func wantStored(t testing.TB, l *eventlog.Log, first uint64, models, bodies []string) {
	t.Helper()
	recs, err := l.Read(first, len(bodies)+1)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(recs) != len(bodies) {
		t.Fatalf("%d records from seq %d, want %d", len(recs), first, len(bodies))
	}
	for i, rec := range recs {
		if rec.Seq != first+uint64(i) || rec.Model != models[i] || string(rec.Body) != bodies[i] {
			t.Fatalf("record %d: seq %d model %q body %s, want seq %d model %q body %s",
				i, rec.Seq, rec.Model, rec.Body, first+uint64(i), models[i], bodies[i])
		}
	}
}

// arrayOf builds a JSON array of n events {"model":"call","i":<i>}.
func arrayOf(n int) string {
	var b strings.Builder
	b.Grow(n * 24)
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"model":"call","i":`)
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.String()
}

// fakeLog is an Appender that counts and returns what it is told.
type fakeLog struct {
	mu      sync.Mutex
	next    uint64
	calls   int
	entries int
	err     error
}

func (f *fakeLog) Append(ctx context.Context, e []eventlog.Entry) (uint64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return 0, 0, f.err
	}
	f.entries += len(e)
	first := f.next + 1
	f.next += uint64(len(e))
	return first, 1, nil
}

func (f *fakeLog) Incarnation() string { return "0123456789abcdef" }
