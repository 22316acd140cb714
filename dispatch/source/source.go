package source

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// Appender is where a source's events go (implemented by *eventlog.Log):
// Append stores all entries atomically and returns once they are durable.
type Appender interface {
	Append(ctx context.Context, entries []eventlog.Entry) (firstSeq uint64, ingestMs int64, err error)
}

// Source is one running PBX adapter.
type Source interface {
	// Run connects, reads and reconnects until ctx is done.
	Run(ctx context.Context)
	// Status is the source's state now.
	Status() Status
}

// Status is what a source reports about itself (GET
// /v1/cluster/self/sources, hookswitch status, /metrics).
type Status struct {
	Name           string `json:"name"` // the source URL without its password
	Kind           string `json:"kind"` // kamailio, ami
	Connected      bool   `json:"connected"`
	ConnectedSince string `json:"connected-since,omitempty"` // RFC 3339
	Connects       uint64 `json:"connects"`                  // connections established (after login, for AMI)
	EventsRead     uint64 `json:"events-read"`               // PBX events read off the socket
	EventsAppended uint64 `json:"events-appended"`           // hookswitch events made durable in the log
	EventsDropped  uint64 `json:"events-dropped"`            // hookswitch events lost: queue full or append failed
	Errors         uint64 `json:"errors"`                    // connection, protocol and append errors
	LastError      string `json:"last-error,omitempty"`
	LastErrorTime  string `json:"last-error-time,omitempty"` // RFC 3339
}

// View is the body of GET /v1/cluster/self/sources: one node's PBX
// sources. HTTP ingest is always on and not listed.
type View struct {
	Node    string   `json:"node"`
	Sources []Status `json:"sources"`
}

// ViewPath is where a node serves its View (local callers and super
// tokens, like /metrics).
const ViewPath = "/v1/cluster/self/sources"

// State is a Status updated concurrently by an adapter and its Sink.
type State struct {
	eventsRead, appended, dropped, errors, connects atomic.Uint64

	mu        sync.Mutex
	name      string
	kind      string
	connected time.Time // zero while disconnected
	lastErr   string
	lastErrAt time.Time
}

// NewState returns the state of a source named name (already redacted)
// of kind.
func NewState(kind, name string) *State { return &State{kind: kind, name: name} }

// Connected records that a connection is up (or, with false, down).
func (s *State) Connected(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if up {
		s.connected = time.Now()
		s.connects.Add(1)
		return
	}
	s.connected = time.Time{}
}

// Read counts n events read off the socket.
func (s *State) Read(n int) { s.eventsRead.Add(uint64(n)) }

// Fail records an error: counted, and kept as the last error. msg must
// not contain secrets.
func (s *State) Fail(msg string) {
	s.errors.Add(1)
	s.mu.Lock()
	s.lastErr, s.lastErrAt = msg, time.Now()
	s.mu.Unlock()
}

// Snapshot returns the status now.
func (s *State) Snapshot() Status {
	st := Status{
		Kind: s.kind, Name: s.name,
		Connects: s.connects.Load(), EventsRead: s.eventsRead.Load(),
		EventsAppended: s.appended.Load(), EventsDropped: s.dropped.Load(), Errors: s.errors.Load(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.connected.IsZero() {
		st.Connected = true
		st.ConnectedSince = s.connected.UTC().Format(time.RFC3339)
	}
	st.LastError = s.lastErr
	if !s.lastErrAt.IsZero() {
		st.LastErrorTime = s.lastErrAt.UTC().Format(time.RFC3339)
	}
	return st
}

// Redact returns u as text without its password (user:pass@ becomes
// user@), fit for logs and status.
func Redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	c.RawQuery = ""
	c.ForceQuery = false
	return c.String()
}

// Backoff is the wait between reconnects: it starts at Min, doubles up to
// Max, with ±20% jitter so that the nodes of a cluster do not reconnect in
// step. The zero value uses DefaultBackoffMin and DefaultBackoffMax.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Default reconnect waits.
const (
	DefaultBackoffMin = 200 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
)

// Next returns the next wait.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultBackoffMin
	}
	if hi < lo {
		hi = max(lo, DefaultBackoffMax)
	}
	switch {
	case b.cur == 0:
		b.cur = lo
	default:
		b.cur = min(b.cur*2, hi)
	}
	jitter := time.Duration((rand.Float64()*0.4 - 0.2) * float64(b.cur))
	return b.cur + jitter
}

// Reset starts over at Min (after a connection that worked).
func (b *Backoff) Reset() { b.cur = 0 }

// Wait sleeps for the next backoff, or until ctx is done (false).
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Sink limits.
const (
	// DefaultQueue is how many events a Sink holds while the log is busy.
	DefaultQueue = 16384
	// MaxBatch is the most events one Append carries.
	MaxBatch = 1000
	// AppendTimeout bounds one Append: a log that takes longer is treated
	// as failed and the batch is dropped (and counted), so a stalled disk
	// cannot make the queue, and then the socket, back up forever.
	AppendTimeout = 10 * time.Second
	// drainTimeout bounds appending what is queued when the source stops.
	drainTimeout = 2 * time.Second
)

// Sink appends the events of one source to the log from its own
// goroutine, so that reading the PBX socket never waits on an fsync.
type Sink struct {
	app    Appender
	state  *State
	log    *slog.Logger
	ch     chan eventlog.Entry
	logged atomic.Uint64 // drops logged, to log the first and then every 1000th
}

// NewSink returns a sink appending to app, counting into state. queue is
// the queue size (0: DefaultQueue).
func NewSink(app Appender, state *State, queue int, logger *slog.Logger) *Sink {
	if queue <= 0 {
		queue = DefaultQueue
	}
	return &Sink{app: app, state: state, log: logger, ch: make(chan eventlog.Entry, queue)}
}

// Offer validates obj as ingest does (dispatch.ParseIngest) and queues
// it without blocking. It returns false when the event was invalid or the
// queue was full: the event is then dropped, logged and counted.
func (s *Sink) Offer(obj []byte) bool {
	model, body, err := dispatch.ParseIngest(obj)
	if err != nil {
		s.state.dropped.Add(1)
		s.state.Fail("an event was invalid: " + err.Error())
		s.log.Warn("dropped an invalid event", "err", err)
		return false
	}
	select {
	case s.ch <- eventlog.Entry{Model: model, Body: body}:
		return true
	default:
		s.drop(1, "the queue to the event log is full (the log is slower than the PBX)")
		return false
	}
}

func (s *Sink) drop(n int, why string) {
	s.state.dropped.Add(uint64(n))
	s.state.Fail("events dropped: " + why)
	if c := s.logged.Add(1); c == 1 || c%1000 == 0 {
		s.log.Error("events from the PBX dropped: they are not in the event log and will not be delivered",
			"events", n, "reason", why, "dropped-total", s.state.dropped.Load())
	}
}

// Run appends queued events until ctx is done, then appends what is still
// queued (for up to two seconds) and returns.
func (s *Sink) Run(ctx context.Context) {
	batch := make([]eventlog.Entry, 0, 64)
	for {
		select {
		case e := <-s.ch:
			batch = s.collect(append(batch[:0], e))
			s.append(context.Background(), batch)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			defer cancel()
			for len(s.ch) > 0 && dctx.Err() == nil {
				batch = s.collect(batch[:0])
				s.append(dctx, batch)
			}
			return
		}
	}
}

// collect adds what is queued to batch, up to MaxBatch.
func (s *Sink) collect(batch []eventlog.Entry) []eventlog.Entry {
	for len(batch) < MaxBatch {
		select {
		case e := <-s.ch:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

func (s *Sink) append(ctx context.Context, batch []eventlog.Entry) {
	if len(batch) == 0 {
		return
	}
	actx, cancel := context.WithTimeout(ctx, AppendTimeout)
	defer cancel()
	if _, _, err := s.app.Append(actx, batch); err != nil {
		// The outcome of a timed-out append is unknown (eventlog.Append):
		// the events may be stored after all. Counted as dropped either
		// way; never retried, which could store them twice.
		s.drop(len(batch), "appending to the event log failed: "+err.Error())
		return
	}
	s.state.appended.Add(uint64(len(batch)))
}
