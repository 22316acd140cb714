package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// Defaults of Options.
const (
	// DefaultQueueMax is how many events a connection may have waiting
	// before it is disconnected as too slow.
	DefaultQueueMax = 1024
	// DefaultReadChunk is how many records one log read returns at most
	// (the reader's and a replaying connection's).
	DefaultReadChunk = 256
	// DefaultRetryDelay is the pause after a failed log read.
	DefaultRetryDelay = 1 * time.Second
	// SinceSkew is how much earlier than the event named by an event-id
	// ?since= the other source logs are replayed from (clock skew between
	// nodes).
	SinceSkew = 1 * time.Second
)

// Errors a Sub fails with (Next returns them); compare with errors.Is.
var (
	// ErrSlow: the connection's queue overflowed; it must be closed.
	ErrSlow = errors.New("hub: connection too slow")
	// ErrClosed: the Sub was closed by its owner.
	ErrClosed = errors.New("hub: subscription closed")
	// ErrStopped: the hub stopped (node shutting down).
	ErrStopped = errors.New("hub: stopped")
	// ErrReplayTrimmed: events a replaying Sub had yet to read were
	// trimmed from the log (retention) before it read them.
	ErrReplayTrimmed = errors.New("hub: replay overtaken by log retention")
	// ErrBadSince is wrapped by ParseSince's errors.
	ErrBadSince = errors.New("invalid since")
)

// Log is what the hub reads of one source node's event log (*eventlog.Log
// for the local node); the same interface as dispatch/engine's.
type Log interface {
	Incarnation() string
	FirstSeq() uint64
	LastSeq() uint64
	Read(from uint64, max int) ([]eventlog.Record, error)
	Changed() <-chan struct{}
	SeqAtOrAfter(t time.Time) (uint64, error)
}

// Options configure a Hub.
type Options struct {
	QueueMax   int
	ReadChunk  int
	RetryDelay time.Duration
	Logger     *slog.Logger
}

// Message is one event as a connection receives it: the event and its JSON
// object (dispatch.Event.JSON), rendered once and shared by every
// connection it goes to. Both are read-only.
type Message struct {
	Event *dispatch.Event
	JSON  []byte
}

func newMessage(ev *dispatch.Event) *Message {
	return &Message{Event: ev, JSON: ev.JSON()}
}

// Stats are the hub's counters.
type Stats struct {
	Connections     int64  // open now
	Opened          uint64 // since the hub was created
	Sent            uint64 // events handed to connections
	SlowDisconnects uint64 // connections failed with ErrSlow
	Replayed        uint64 // of Sent, read by replaying connections themselves
}

// Hub fans events out to connections; see the package documentation.
type Hub struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex // guards the fields below; taken before a source's mu
	sources map[string]*source
	subs    map[*Sub]struct{}
	ctx     context.Context
	stopped bool
	wg      sync.WaitGroup

	open     atomic.Int64
	opened   atomic.Uint64
	sent     atomic.Uint64
	slow     atomic.Uint64
	replayed atomic.Uint64
}

// source is one source log and its reader.
type source struct {
	node   string
	log    Log
	cancel context.CancelFunc
	gone   atomic.Bool // removed from the hub

	mu  sync.Mutex // guards pos and ix; taken before a Sub's mu
	pos uint64     // every event up to pos has been offered to ix
	ix  index      // the attached connections
	n   atomic.Int64
}

// New returns a hub; add sources and call Run.
func New(opts Options) *Hub {
	if opts.QueueMax <= 0 {
		opts.QueueMax = DefaultQueueMax
	}
	if opts.ReadChunk <= 0 {
		opts.ReadChunk = DefaultReadChunk
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = DefaultRetryDelay
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Hub{
		opts:    opts,
		log:     opts.Logger.With("component", "hub"),
		sources: map[string]*source{},
		subs:    map[*Sub]struct{}{},
	}
}

// AddSource registers a source node's log; its reader starts with Run (at
// once if Run is running) from the log's end. Open connections join it
// live from there. Adding the same log again does nothing; another log
// under the same node replaces the first.
func (h *Hub) AddSource(node string, l Log) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.sources[node]; old != nil {
		if old.log == l {
			return
		}
		h.removeLocked(old)
	}
	src := &source{node: node, log: l, pos: l.LastSeq()}
	h.sources[node] = src
	for s := range h.subs {
		ss := &subSrc{sub: s, src: src}
		src.mu.Lock()
		ss.live = true
		ss.after = src.pos
		if !s.closed.Load() {
			src.attach(ss)
		}
		src.mu.Unlock()
		s.mu.Lock()
		s.srcs = append(s.srcs, ss)
		s.mu.Unlock()
	}
	if h.ctx != nil && !h.stopped {
		h.start(src)
	}
}

// RemoveSource stops reading a source node's log; connections keep the
// events they were given.
func (h *Hub) RemoveSource(node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if src := h.sources[node]; src != nil {
		h.removeLocked(src)
	}
}

func (h *Hub) removeLocked(src *source) {
	delete(h.sources, src.node)
	src.gone.Store(true)
	if src.cancel != nil {
		src.cancel()
	}
	src.mu.Lock()
	for _, list := range src.ix.keyed {
		for _, l := range list {
			for _, ss := range l {
				ss.attached = false
			}
		}
	}
	for _, ss := range src.ix.scan {
		ss.attached = false
	}
	src.ix = index{}
	src.n.Store(0)
	src.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		for i, ss := range s.srcs {
			if ss.src == src {
				s.srcs = append(s.srcs[:i:i], s.srcs[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
	}
}

// start runs src's reader. Called with h.mu held.
func (h *Hub) start(src *source) {
	ctx, cancel := context.WithCancel(h.ctx)
	src.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.readLoop(ctx, src)
	}()
}

// Run runs the source readers until ctx is done; then every open Sub fails
// with ErrStopped and new ones are refused.
func (h *Hub) Run(ctx context.Context) {
	h.mu.Lock()
	h.ctx = ctx
	for _, src := range h.sources {
		h.start(src)
	}
	h.mu.Unlock()
	<-ctx.Done()
	h.mu.Lock()
	h.stopped = true
	subs := make([]*Sub, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	h.wg.Wait()
	for _, s := range subs {
		s.fail(ErrStopped)
	}
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	return Stats{
		Connections:     h.open.Load(),
		Opened:          h.opened.Load(),
		Sent:            h.sent.Load(),
		SlowDisconnects: h.slow.Load(),
		Replayed:        h.replayed.Load(),
	}
}

// readLoop is the reader of one source log.
func (h *Hub) readLoop(ctx context.Context, src *source) {
	for {
		changed := src.log.Changed()
		from := src.pos + 1 // only this goroutine writes pos
		last := src.log.LastSeq()
		if last < from {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		recs, err := src.log.Read(from, h.opts.ReadChunk)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Error("reading the event log failed; retrying", "source", src.node, "err", err)
			if sleepCtx(ctx, h.opts.RetryDelay) != nil {
				return
			}
			continue
		}
		if len(recs) == 0 {
			// Everything from `from` to last was trimmed before it was read.
			h.log.Warn("events were trimmed before the websocket hub read them", "source", src.node, "from", from, "to", last)
			src.mu.Lock()
			src.pos = last
			src.mu.Unlock()
			continue
		}
		if recs[0].Seq != from {
			h.log.Warn("events were trimmed before the websocket hub read them", "source", src.node, "from", from, "first", recs[0].Seq)
		}
		h.fanOut(src, recs)
	}
}

// fanOut offers a chunk of records to the attached connections and advances
// the source's position, atomically with respect to attaching.
func (h *Hub) fanOut(src *source, recs []eventlog.Record) {
	inc := src.log.Incarnation()
	evs := make([]*dispatch.Event, len(recs))
	msgs := make([]*Message, len(recs))
	prepared := src.n.Load() > 0
	for i := range recs {
		evs[i] = toEvent(src.node, inc, &recs[i])
		if prepared {
			// Parse and render outside the lock: attaching waits less.
			_, _ = evs[i].Fields()
			msgs[i] = newMessage(evs[i])
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.n.Load() > 0 {
		var texts []string
		for i, ev := range evs {
			texts = src.ix.candidates(ev, texts, func(ss *subSrc) {
				if ev.Seq <= ss.after {
					return // before its start, or already visited
				}
				ss.after = ev.Seq
				s := ss.sub
				gen, ok := s.admit(ev)
				if !ok {
					return
				}
				if msgs[i] == nil {
					msgs[i] = newMessage(ev)
				}
				s.offer(msgs[i], gen, h)
			})
		}
	}
	src.pos = recs[len(recs)-1].Seq
}

// attach adds ss to the connections the reader offers to, filed under
// its Sub's current index key. Called with src.mu held.
func (src *source) attach(ss *subSrc) {
	if ss.attached {
		return
	}
	ss.attached = true
	src.ix.add(ss, ss.sub.filters.Load().key)
	src.n.Add(1)
}

// detach removes ss from them. Called with src.mu held.
func (src *source) detach(ss *subSrc) {
	if !ss.attached {
		return
	}
	ss.attached = false
	src.ix.remove(ss)
	src.n.Add(-1)
}

func toEvent(node, inc string, r *eventlog.Record) *dispatch.Event {
	return &dispatch.Event{
		ID: dispatch.EventID(inc, r.Seq), Node: node, Seq: r.Seq,
		IngestMs: r.IngestMs, Model: r.Model, Body: r.Body,
	}
}

// Start is where a Sub starts in each source log: the first sequence
// number to deliver, by source node. Sources it does not name are joined
// live.
type Start map[string]uint64

// SubOptions configure a Sub.
type SubOptions struct {
	Scope Scope
	// Filters are the initial filters (none: everything).
	Filters []match.Filter
	// Start replays from these positions before going live; nil: live only.
	Start Start
}

// Subscribe opens a connection's subscription. The caller must Close it.
func (h *Hub) Subscribe(o SubOptions) (*Sub, error) {
	if err := o.Scope.Validate(); err != nil {
		return nil, err
	}
	fs, err := match.NewFilterSet(o.Filters)
	if err != nil {
		return nil, err
	}
	s := &Sub{h: h, scope: o.Scope, notify: make(chan struct{}, 1), queueMax: h.opts.QueueMax}
	s.filters.Store(&filterState{set: fs, key: chooseKey(o.Filters)})
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil, ErrStopped
	}
	for _, src := range h.sources {
		ss := &subSrc{sub: s, src: src}
		first, replay := o.Start[src.node]
		if replay {
			if f := src.log.FirstSeq(); first < f {
				first = f // replay within retention
			}
			if l := src.log.LastSeq(); first > l+1 {
				first = l + 1
			}
			ss.readPos = first - 1
		}
		src.mu.Lock()
		if !replay || ss.readPos >= src.pos {
			ss.live = true
			ss.after = max(ss.readPos, src.pos)
			src.attach(ss)
		}
		src.mu.Unlock()
		s.srcs = append(s.srcs, ss)
	}
	h.subs[s] = struct{}{}
	h.open.Add(1)
	h.opened.Add(1)
	return s, nil
}

// ParseSince resolves a ?since= value (an RFC3339 time or an event-id; see
// the package documentation) to start positions; "" is live only (nil).
func (h *Hub) ParseSince(since string) (Start, error) {
	if since == "" {
		return nil, nil
	}
	h.mu.Lock()
	srcs := make([]*source, 0, len(h.sources))
	for _, src := range h.sources {
		srcs = append(srcs, src)
	}
	h.mu.Unlock()
	start := Start{}
	if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
		for _, src := range srcs {
			seq, err := src.log.SeqAtOrAfter(t)
			if err != nil {
				return nil, err
			}
			start[src.node] = seq
		}
		return start, nil
	}
	inc, seq, err := dispatch.ParseEventID(since)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is neither an RFC3339 time nor an event-id", ErrBadSince, since)
	}
	var own *source
	for _, src := range srcs {
		if src.log.Incarnation() == inc {
			own = src
		}
	}
	if own == nil {
		return nil, fmt.Errorf("%w: event-id %q is from no event log this node reads (wiped, or its node left)", ErrBadSince, since)
	}
	start[own.node] = seq + 1
	var ref time.Time
	recs, err := own.log.Read(seq, 1)
	if err != nil {
		return nil, err
	}
	known := len(recs) == 1 && recs[0].Seq == seq
	if known {
		ref = time.UnixMilli(recs[0].IngestMs).Add(-SinceSkew)
	}
	for _, src := range srcs {
		if src == own {
			continue
		}
		if !known {
			start[src.node] = 0 // whatever is still stored
			continue
		}
		s, err := src.log.SeqAtOrAfter(ref)
		if err != nil {
			return nil, err
		}
		start[src.node] = s
	}
	return start, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
