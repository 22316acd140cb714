package webhook

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
)

// testWait bounds every wait in these tests; a healthy run needs far less.
const testWait = 10 * time.Second

// mkEvent builds a stored event from a source object.
func mkEvent(t testing.TB, seq int, body string) *dispatch.Event {
	t.Helper()
	model, b, err := dispatch.ParseIngest([]byte(body))
	if err != nil {
		t.Fatalf("ParseIngest(%s): %v", body, err)
	}
	return &dispatch.Event{ID: dispatch.EventID("inc", uint64(seq)), Node: "n1", Seq: uint64(seq),
		IngestMs: 1_700_000_000_000 + int64(seq), Model: model, Body: b}
}

func mkEvents(t testing.TB, from, n int) []*dispatch.Event {
	t.Helper()
	out := make([]*dispatch.Event, n)
	for i := range n {
		out[i] = mkEvent(t, from+i, fmt.Sprintf(`{"model":"call","domain":"d","n":%d}`, from+i))
	}
	return out
}

// received is one request as the test receiver saw it.
type received struct {
	n      int
	path   string
	header http.Header
	body   []byte
}

// receiver is an httptest.Server on 127.0.0.1 whose answers a test scripts.
// Every request is reported on reqs before it is answered.
type receiver struct {
	*httptest.Server
	reqs chan received
	done chan struct{} // closed at cleanup: unblocks handlers that wait

	mu      sync.Mutex
	n       int
	respond func(n int, w http.ResponseWriter, r *http.Request)
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{reqs: make(chan received, 1000), done: make(chan struct{}), respond: respond}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.handle))
	t.Cleanup(rc.Close)
	t.Cleanup(func() { close(rc.done) }) // runs before Close
	return rc
}

func (rc *receiver) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	n := rc.n
	rc.n++
	respond := rc.respond
	rc.mu.Unlock()
	rc.reqs <- received{n: n, path: r.URL.Path, header: r.Header.Clone(), body: body}
	if respond != nil {
		respond(n, w, r)
	}
}

// next returns the next request, failing the test after testWait.
func (rc *receiver) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-rc.reqs:
		return r
	case <-time.After(testWait):
		t.Fatal("timed out waiting for a request")
		return received{}
	}
}

// none asserts no request is pending right now (used after a worker stopped).
func (rc *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-rc.reqs:
		t.Fatalf("unexpected request %d: %s", r.n, r.body)
	default:
	}
}

// block makes a handler wait until gate is closed, the client gives up, or
// the test ends.
func (rc *receiver) block(r *http.Request, gate <-chan struct{}) {
	select {
	case <-gate:
	case <-r.Context().Done():
	case <-rc.done:
	}
}

// fakeSource is an in-memory Source.
type fakeSource struct {
	mu     sync.Mutex
	queue  []*dispatch.Event
	acked  []*dispatch.Event
	maxes  []int
	err    error
	wake   chan struct{}
	ackedN chan int
}

func newFakeSource(evs ...*dispatch.Event) *fakeSource {
	s := &fakeSource{wake: make(chan struct{}, 1), ackedN: make(chan int, 1000)}
	s.push(evs...)
	return s
}

func (s *fakeSource) push(evs ...*dispatch.Event) {
	s.mu.Lock()
	s.queue = append(s.queue, evs...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *fakeSource) Next(ctx context.Context, max int) ([]*dispatch.Event, error) {
	for {
		s.mu.Lock()
		if s.err != nil {
			s.mu.Unlock()
			return nil, s.err
		}
		if len(s.queue) > 0 {
			n := min(max, len(s.queue))
			out := s.queue[:n:n]
			s.queue = s.queue[n:]
			s.maxes = append(s.maxes, max)
			s.mu.Unlock()
			return out, nil
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.wake:
		}
	}
}

func (s *fakeSource) Ack(evs []*dispatch.Event) {
	s.mu.Lock()
	s.acked = append(s.acked, evs...)
	s.mu.Unlock()
	s.ackedN <- len(evs)
}

func (s *fakeSource) ackedIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, len(s.acked))
	for i, ev := range s.acked {
		ids[i] = ev.ID
	}
	return ids
}

// waitAcked waits until n events in total have been acknowledged.
func (s *fakeSource) waitAcked(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(testWait)
	for {
		if len(s.ackedIDs()) >= n {
			return
		}
		select {
		case <-s.ackedN:
		case <-deadline:
			t.Fatalf("timed out waiting for %d acks, have %d", n, len(s.ackedIDs()))
		}
	}
}

// observed is one Observer call.
type observed struct {
	kind    string // delivered | failed | suspended
	subID   string
	n       int
	attempt int
	r       Result
}

type recObserver struct {
	mu    sync.Mutex
	calls []observed
}

func (o *recObserver) add(c observed) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, c)
}

func (o *recObserver) Delivered(subID string, n int, r Result) {
	o.add(observed{kind: "delivered", subID: subID, n: n, r: r})
}
func (o *recObserver) Failed(subID string, r Result, attempt int) {
	o.add(observed{kind: "failed", subID: subID, attempt: attempt, r: r})
}
func (o *recObserver) Suspended(subID string, r Result) {
	o.add(observed{kind: "suspended", subID: subID, r: r})
}

func (o *recObserver) all() []observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observed(nil), o.calls...)
}

// sleepRecorder replaces WorkerOptions.Sleep: it records each delay and
// returns at once (or with ctx's error), optionally advancing a fake clock.
type sleepRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
	clock  *fakeClock
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	if s.clock != nil {
		s.clock.advance(d)
	}
	return ctx.Err()
}

func (s *sleepRecorder) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.delays...)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// running is a Worker.Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, once done is closed
}

// runWorker starts w.Run; the test's cleanup stops it.
func runWorker(t *testing.T, w *Worker) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = w.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// wait waits for Run to end by itself and returns its error.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(testWait):
		t.Fatal("worker did not end")
		return nil
	}
}

// stop cancels Run, waits for it and returns its error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// ended reports whether Run has returned.
func (r *running) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func halfRand() float64 { return 0.5 }
