package engine

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/dispatch/stats"
	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// Defaults of Options.
const (
	// DefaultQueueMax is how many matched events a subscription may hold in
	// memory before it falls back to reading the log itself.
	DefaultQueueMax = 10000
	// DefaultReadChunk is how many records one log read returns at most.
	DefaultReadChunk = 1024
	// DefaultRestartDelay is the pause before a worker that failed (not
	// suspended) is started again.
	DefaultRestartDelay = 1 * time.Second
	// keepStoppedRuns is how long a stopped run's positions are kept; by
	// then its final report is long committed.
	keepStoppedRuns = 2 * time.Minute
	// origIDCalls bounds the calls a call_origid subscription remembers.
	origIDCalls = 10000
)

// Log is what the engine reads of one source node's event log
// (*eventlog.Log for the local node).
type Log interface {
	Incarnation() string
	FirstSeq() uint64
	LastSeq() uint64
	Read(from uint64, max int) ([]eventlog.Record, error)
	Changed() <-chan struct{}
	SeqAtOrAfter(t time.Time) (uint64, error)
}

// Cursor is how far a subscription has consumed one source node's log.
type Cursor struct {
	Node        string
	Incarnation string
	Seq         uint64
}

// Sub is a subscription this node is to send, as the replicated state
// describes it.
type Sub struct {
	Match        match.Sub
	Target       webhook.Target
	Generation   uint64
	StartMs      int64
	Cursors      map[string]Cursor // by source node
	FailingSince time.Time
	// Status is the replicated status the run starts with (pending,
	// active or error; empty means pending): a node that restarts, or
	// takes the subscription over, does not show it pending again until
	// it posts.
	Status webhook.State
}

// ID is the subscription id.
func (s *Sub) ID() string { return s.Match.ID }

// Options configure an Engine.
type Options struct {
	Poster       *webhook.Poster
	Logger       *slog.Logger
	QueueMax     int
	ReadChunk    int
	SuspendAfter time.Duration
	RestartDelay time.Duration
	// Worker is passed to every worker (tests set Sleep to skip backoff).
	Worker webhook.WorkerOptions
	// Stats counts outcomes per minute for the dashboard (nil: not kept).
	Stats *stats.Minutes
	// OnPost, when set, is called after every POST attempt with its
	// outcome (metrics). It runs under the engine's lock: it must not
	// block or call the engine.
	OnPost func(subID string, n int, r webhook.Result)
}

// Engine delivers the events of the source logs to the subscriptions this
// node sends. One reader per source log matches every new event once
// against an index of the running subscriptions and queues it for each
// subscription it reaches; a subscription that is behind (new, rewound, or
// whose queue overflowed) reads the log itself until it has caught up with
// the reader, then joins it again. Each subscription has one webhook.Worker.
type Engine struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	sources map[string]*source
	subs    map[string]*subState
	// stopping holds stopped runs for keepStoppedRuns after they were
	// stopped: a run started again meanwhile (paused and resumed, lease
	// lost and renewed) waits for the old one's POST in flight and
	// continues from where it was, which may be ahead of the committed
	// cursors (its final report may not be committed yet).
	stopping map[string]*subState
	index    *match.Index // the running subscriptions
	retired  []SubReport  // final reports of stopped subscriptions
	filtered int          // running subscriptions with filters
	totals   Totals
	wg       sync.WaitGroup
	ctx      context.Context
}

type source struct {
	node    string
	log     Log
	inc     string // the incarnation pos is of
	pos     uint64 // every event up to pos has been matched and queued
	started bool
}

// New returns an engine; call Run to start it.
func New(opts Options) *Engine {
	if opts.QueueMax <= 0 {
		opts.QueueMax = DefaultQueueMax
	}
	if opts.ReadChunk <= 0 {
		opts.ReadChunk = DefaultReadChunk
	}
	if opts.RestartDelay <= 0 {
		opts.RestartDelay = DefaultRestartDelay
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Worker.Logger = opts.Logger
	opts.Worker.SuspendAfter = opts.SuspendAfter
	return &Engine{
		opts:     opts,
		log:      opts.Logger.With("component", "engine"),
		sources:  map[string]*source{},
		subs:     map[string]*subState{},
		stopping: map[string]*subState{},
		index:    match.NewIndex(),
	}
}

// AddSource registers a source node's log. Its reader starts with Run (or
// at once if Run is already running) from the log's end: subscriptions
// with older cursors catch up by reading the log themselves.
func (e *Engine) AddSource(node string, l Log) {
	e.mu.Lock()
	defer e.mu.Unlock()
	src := &source{node: node, log: l, inc: l.Incarnation(), pos: l.LastSeq()}
	e.sources[node] = src
	if e.ctx != nil {
		e.startSource(src)
	}
}

func (e *Engine) startSource(src *source) {
	if src.started {
		return
	}
	src.started = true
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.readLoop(e.ctx, src)
	}()
}

// Run runs the source readers until ctx is done, then stops every worker
// and waits for them (a POST in flight runs to its end).
func (e *Engine) Run(ctx context.Context) {
	e.mu.Lock()
	e.ctx = ctx
	for _, src := range e.sources {
		e.startSource(src)
	}
	for _, ss := range e.subs {
		e.startWorker(ss)
	}
	e.mu.Unlock()
	<-ctx.Done()
	e.wg.Wait()
}

// readLoop is the reader of one source log.
func (e *Engine) readLoop(ctx context.Context, src *source) {
	var hits []match.Hit
	var evs []*dispatch.Event
	for {
		changed := src.log.Changed()
		inc := src.log.Incarnation()
		e.mu.Lock()
		if inc != src.inc {
			e.newIncarnation(src, inc)
		}
		from := src.pos + 1
		e.mu.Unlock()
		if src.log.LastSeq() < from {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		recs, err := src.log.Read(from, e.opts.ReadChunk)
		if src.log.Incarnation() != inc {
			continue // the log was replaced under the read
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Error("reading the event log failed; retrying", "source", src.node, "err", err)
			if sleepCtx(ctx, e.opts.RestartDelay) != nil {
				return
			}
			continue
		}
		if len(recs) == 0 {
			continue
		}
		if recs[0].Seq != from {
			e.log.Warn("events were trimmed before they were read", "source", src.node, "from", from, "first", recs[0].Seq)
		}
		// Parse outside the lock what matching needs (the scope), so
		// workers are not held up by it.
		e.mu.Lock()
		fields := e.filtered > 0
		e.mu.Unlock()
		evs = evs[:0]
		for i := range recs {
			ev := toEvent(src.node, inc, &recs[i])
			ev.Scope()
			if fields || ev.Model == dispatch.ModelAuditlog {
				// Filters, and the auditlog_lite test, read the fields.
				_, _ = ev.Fields()
			}
			evs = append(evs, ev)
		}
		e.mu.Lock()
		if src.inc != inc {
			e.mu.Unlock()
			continue
		}
		for _, ev := range evs {
			hits = e.index.Match(ev, hits[:0])
			for _, h := range hits {
				if ss := e.subs[h.SubID]; ss != nil {
					ss.offer(src.node, ev, h.Derived, e.opts.QueueMax)
				}
			}
		}
		src.pos = recs[len(recs)-1].Seq
		e.mu.Unlock()
	}
}

// newIncarnation restarts a source whose log was recreated (a peer wiped
// its data dir): the reader starts at its beginning, and every
// subscription takes a new position in it. Called with e.mu held.
func (e *Engine) newIncarnation(src *source, inc string) {
	e.log.Info("source log is a new incarnation", "source", src.node, "old", src.inc, "new", inc)
	src.inc = inc
	src.pos = src.log.FirstSeq() - 1
	for _, ss := range e.subs {
		if _, ok := ss.srcs[src.node]; ok {
			delete(ss.srcs, src.node)
			ss.wake()
		}
	}
}

func toEvent(node, inc string, r *eventlog.Record) *dispatch.Event {
	return &dispatch.Event{
		ID: dispatch.EventID(inc, r.Seq), Node: node, Seq: r.Seq,
		IngestMs: r.IngestMs, Model: r.Model, Body: r.Body,
	}
}

// Sync makes the set of running subscriptions the given one: new ones
// start, missing ones stop, and a changed one restarts (from its committed
// cursors when its generation changed, else from where it is).
func (e *Engine) Sync(want []Sub) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	for id, ss := range e.stopping {
		if now.Sub(ss.stoppedAt) > keepStoppedRuns {
			delete(e.stopping, id)
		}
	}
	seen := make(map[string]bool, len(want))
	for i := range want {
		s := want[i]
		seen[s.ID()] = true
		cur := e.subs[s.ID()]
		switch {
		case cur == nil:
			// A run stopped moments ago (paused and resumed, lease lost
			// and renewed) ends first, and is continued from when the
			// generation is the same.
			prev := e.stopping[s.ID()]
			delete(e.stopping, s.ID())
			e.addSub(s, prev, prev != nil && prev.sub.Generation == s.Generation)
		case cur.sub.Generation != s.Generation:
			// Rewound or reassigned: start from the committed cursors, once
			// the previous run's POST in flight has ended.
			e.stopSub(cur)
			e.addSub(s, cur, false)
		case !sameConfig(&cur.sub, &s):
			// Same generation: continue from where it is, not from the
			// (older) committed cursors.
			e.stopSub(cur)
			e.addSub(s, cur, true)
		}
	}
	for id, ss := range e.subs {
		if !seen[id] {
			e.stopSub(ss)
		}
	}
}

func sameConfig(a, b *Sub) bool {
	return a.Target == b.Target && reflect.DeepEqual(a.Match, b.Match)
}

// addSub starts a subscription; prev, when not nil, is a stopped previous
// run of it, which ends before this one posts; with resume, this run
// continues from prev's positions.
func (e *Engine) addSub(s Sub, prev *subState, resume bool) {
	ss := newSubState(e, s)
	if err := ss.own.Upsert(s.Match); err != nil {
		e.log.Error("subscription cannot be matched; not sending it", "sub", s.ID(), "err", err)
		return
	}
	if err := e.index.Upsert(s.Match); err != nil {
		e.log.Error("subscription cannot be matched; not sending it", "sub", s.ID(), "err", err)
		return
	}
	e.subs[s.ID()] = ss
	ss.prev, ss.resume = prev, resume
	if len(s.Match.Filters) > 0 {
		e.filtered++
	}
	if e.ctx != nil {
		e.startWorker(ss)
	}
}

// stopSub stops a subscription's worker; its final report is kept for the
// next Report once the worker has ended.
func (e *Engine) stopSub(ss *subState) {
	delete(e.subs, ss.sub.ID())
	if len(ss.sub.Match.Filters) > 0 {
		e.filtered--
	}
	e.index.Remove(ss.sub.ID())
	ss.freeze()
	if ss.started && !ss.stopped {
		ss.stoppedAt = time.Now()
		e.stopping[ss.sub.ID()] = ss
	}
	ss.stop()
}

// startWorker runs the subscription's worker in a goroutine owned by the
// engine. Called with e.mu held.
func (e *Engine) startWorker(ss *subState) {
	if ss.started {
		return
	}
	ss.started = true
	ctx, cancel := context.WithCancel(e.ctx)
	ss.cancel = cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer cancel()
		if prev := ss.prev; prev != nil {
			// One POST in flight per subscription: the previous run
			// finishes first, and this one continues from its positions.
			<-prev.done
			e.mu.Lock()
			if ss.resume {
				ss.inherit(prev)
			}
			ss.prev = nil // no chain of runs kept alive
			e.mu.Unlock()
		}
		ss.run(ctx)
	}()
}

// Trimmed tells the engine that retention trimmed a source's log: queued
// events no longer in it are forgotten, and a worker holding some (a batch
// being retried to a failing receiver) stops and goes on without them, so
// events counted as dropped are not delivered later from memory.
func (e *Engine) Trimmed(node string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ss := range e.subs {
		if ss.dropTrimmed(node) && ss.abort != nil {
			ss.abort()
		}
	}
}

// SubReport is one subscription's report: counter deltas since the last
// Report, and its current status, lag and cursors.
type SubReport struct {
	ID             string
	Generation     uint64
	Cursors        []Cursor
	Status         webhook.State
	Posts          uint64
	Errors         uint64
	Events         uint64
	Lag            uint64
	LastPostMs     int64
	LastError      string
	LastErrorMs    int64
	FailingSinceMs int64
}

// Report returns the reports of the running subscriptions that changed
// since their last report (they posted or failed, or their status or lag
// moved), or of all of them with full; and the final reports of
// subscriptions stopped since the last call. Deltas are reset: the caller
// must deliver what it got (retrying the same report until committed).
// An idle subscription's cursor only moves past events it does not match,
// so committing it now and then (full) bounds nothing but the work of a
// new owner.
func (e *Engine) Report(full bool) []SubReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.retired
	e.retired = nil
	for _, ss := range e.subs {
		r := ss.report(true)
		if full || ss.changedSince(&r) {
			ss.last = r
			out = append(out, r)
		}
	}
	return out
}

// Totals are the engine's cumulative counters since it started.
type Totals struct {
	Posts, Errors, Events uint64
	Running               int // subscriptions running now
}

// Totals returns the cumulative counters (for metrics).
func (e *Engine) Totals() Totals {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.totals
	t.Running = len(e.subs)
	return t
}

// Status returns the delivery status of a running subscription.
func (e *Engine) Status(id string) (SubReport, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ss, ok := e.subs[id]
	if !ok {
		return SubReport{}, false
	}
	return ss.report(false), true
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
