package engine

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// behindReaderPoll is how often a subscription whose position is ahead of
// its source's reader (right after start) looks again.
const behindReaderPoll = 10 * time.Millisecond

// subState is one running subscription. Its fields are guarded by the
// engine's mutex, except sub, own, e (immutable) and the channels.
type subState struct {
	e         *Engine
	sub       Sub
	own       *match.Index // this subscription alone, for catching up
	collapser *match.OrigIDCollapser
	domainLit []byte // `"domain"` for mayMatch; nil when it cannot be used
	notify    chan struct{}
	done      chan struct{}
	cancel    context.CancelFunc
	abort     context.CancelFunc // ends the current worker only (events it holds were trimmed)
	prev      *subState
	resume    bool // continue from prev's positions
	stoppedAt time.Time

	srcs      map[string]*subSrc
	started   bool
	stopped   bool
	suspended bool

	// Counter deltas since the last report, and status.
	posts, errs, events uint64
	status              webhook.State
	lastPostMs          int64
	lastError           string
	lastErrorMs         int64
	failingSinceMs      int64
	last                SubReport // the last report handed out
}

// subSrc is a subscription's position in one source log.
type subSrc struct {
	inc string
	// attached: the source's reader queues matches for it, and its
	// position is the reader's. Otherwise it has examined every event up
	// to readPos and reads the log itself from there.
	attached bool
	readPos  uint64
	queue    []*dispatch.Event // matched, not handed out yet
	handed   []*dispatch.Event // handed to the worker, not acknowledged
}

func newSubState(e *Engine, s Sub) *subState {
	ss := &subState{
		e: e, sub: s, own: match.NewIndex(),
		notify: make(chan struct{}, 1), done: make(chan struct{}),
		srcs: map[string]*subSrc{}, status: webhook.StatePending,
	}
	if s.Status != "" {
		ss.status = s.Status
	}
	if !s.FailingSince.IsZero() {
		ss.failingSinceMs = s.FailingSince.UnixMilli()
	}
	if d := s.Match.Domain; d != "" && d != "*" && !strings.ContainsAny(d, "\"\\") && isASCII(d) {
		ss.domainLit = []byte(`"` + d + `"`)
	}
	if s.Match.Model == dispatch.ModelCallOrigID {
		ss.collapser = match.NewOrigIDCollapser(origIDCalls)
	}
	return ss
}

// offer is called by a source reader, with the engine's mutex held, for an
// event that matches this subscription.
func (ss *subState) offer(node string, ev *dispatch.Event, derived string, queueMax int) {
	sp := ss.srcs[node]
	if sp == nil || !sp.attached || ss.stopped {
		return
	}
	if len(sp.queue) >= queueMax {
		// Too far behind to keep in memory: read the log from here.
		sp.attached = false
		sp.readPos = ev.Seq - 1
		return
	}
	if d := ss.deliverable(ev, derived); d != nil {
		sp.queue = append(sp.queue, d)
		ss.wake()
	}
}

// deliverable returns the form of ev this subscription receives, or nil.
func (ss *subState) deliverable(ev *dispatch.Event, derived string) *dispatch.Event {
	if derived == dispatch.ModelCallOrigID && ss.collapser != nil && !ss.collapser.Pass(ev) {
		return nil
	}
	d, err := match.Derive(ev, derived)
	if err != nil {
		ss.e.log.Warn("event cannot be derived; passed over", "sub", ss.sub.ID(), "event", ev.ID, "err", err)
		return nil
	}
	return d
}

func (ss *subState) wake() {
	select {
	case ss.notify <- struct{}{}:
	default:
	}
}

// stop ends the subscription's worker. Called with the engine's mutex held.
func (ss *subState) stop() {
	ss.stopped = true
	if ss.cancel != nil {
		ss.cancel()
	}
	if !ss.started {
		ss.started = true // never to start now
		close(ss.done)
	}
	ss.wake()
}

// freeze detaches a stopping run from the source readers: from now on no
// reader offers it events, so its position in each source must stop at
// what the reader had offered it so far. An attached position is the
// reader's, which keeps moving; left attached, a stopped run would claim
// (in its final report, and to a run that resumes from it) every event the
// reader passes after the stop, delivered or not. Called with the engine's
// mutex held, so no reader is between an offer and its position update.
func (ss *subState) freeze() {
	for node, sp := range ss.srcs {
		if sp.attached {
			sp.attached = false
			sp.readPos = ss.e.sources[node].pos
		}
	}
}

// cursor is the position up to which the subscription has consumed a
// source: every event up to it is delivered or passed over. An attached
// source's position is its reader's: every event up to it was offered to
// this run (freeze keeps that true once the run stops).
func (ss *subState) cursor(node string) uint64 {
	sp := ss.srcs[node]
	switch {
	case len(sp.handed) > 0:
		return sp.handed[0].Seq - 1
	case len(sp.queue) > 0:
		return sp.queue[0].Seq - 1
	case sp.attached:
		return ss.e.sources[node].pos
	}
	return sp.readPos
}

// report builds the subscription's report; with reset, deltas restart.
func (ss *subState) report(reset bool) SubReport {
	r := SubReport{
		ID: ss.sub.ID(), Generation: ss.sub.Generation, Status: ss.status,
		Posts: ss.posts, Errors: ss.errs, Events: ss.events,
		LastPostMs: ss.lastPostMs, LastError: ss.lastError, LastErrorMs: ss.lastErrorMs,
		FailingSinceMs: ss.failingSinceMs,
	}
	for node, sp := range ss.srcs {
		r.Cursors = append(r.Cursors, Cursor{Node: node, Incarnation: sp.inc, Seq: ss.cursor(node)})
		r.Lag += uint64(len(sp.queue) + len(sp.handed))
		if src := ss.e.sources[node]; !sp.attached && src.pos > sp.readPos {
			// Not examined yet: an upper bound of what may match.
			r.Lag += src.pos - sp.readPos
		}
	}
	if reset {
		ss.posts, ss.errs, ss.events = 0, 0, 0
	}
	return r
}

// changedSince reports whether r says more than the last report did.
func (ss *subState) changedSince(r *SubReport) bool {
	l := &ss.last
	return r.Posts+r.Errors+r.Events > 0 || l.ID == "" || r.Status != l.Status || r.Lag != l.Lag ||
		r.LastErrorMs != l.LastErrorMs || r.FailingSinceMs != l.FailingSinceMs || len(r.Cursors) != len(l.Cursors)
}

// run is the subscription's goroutine: it runs a worker until ctx is done
// or the subscription is suspended, restarting it after other failures.
func (ss *subState) run(ctx context.Context) {
	defer func() {
		e := ss.e
		e.mu.Lock()
		e.retired = append(e.retired, ss.report(true))
		e.mu.Unlock()
		close(ss.done)
	}()
	e := ss.e
	opts := e.opts.Worker
	for ctx.Err() == nil {
		opts.FailingSince = time.Time{}
		e.mu.Lock()
		if ss.failingSinceMs != 0 {
			opts.FailingSince = time.UnixMilli(ss.failingSinceMs)
		}
		e.mu.Unlock()
		w := webhook.NewWorker(ss.sub.Target, ss, e.opts.Poster, ss, opts)
		wctx, abort := context.WithCancel(ctx)
		e.mu.Lock()
		ss.abort = abort
		e.mu.Unlock()
		err := w.Run(wctx)
		e.mu.Lock()
		ss.abort = nil
		e.mu.Unlock()
		aborted := wctx.Err() != nil
		abort()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, webhook.ErrSuspended) {
			return
		}
		if aborted {
			// Retention trimmed events the worker held (a batch being
			// retried): go on at once without them (Engine.Trimmed).
			ss.requeue()
			continue
		}
		e.log.Error("subscription worker failed; restarting", "sub", ss.sub.ID(), "err", err, "after", e.opts.RestartDelay)
		ss.requeue()
		if sleepCtx(ctx, e.opts.RestartDelay) != nil {
			return
		}
	}
}

// requeue puts events handed to a failed worker back in front of the queue,
// except those retention has trimmed from their log meanwhile.
func (ss *subState) requeue() {
	ss.e.mu.Lock()
	defer ss.e.mu.Unlock()
	for node, sp := range ss.srcs {
		sp.queue = append(sp.handed, sp.queue...)
		sp.handed = nil
		ss.dropTrimmed(node)
	}
}

// dropTrimmed forgets the queued events of a source that are no longer in
// its log (retention dropped them; the trimmer counts them as dropped), and
// reports whether the worker holds such events. Called with the engine's
// mutex held.
func (ss *subState) dropTrimmed(node string) (handedTrimmed bool) {
	sp, src := ss.srcs[node], ss.e.sources[node]
	if sp == nil || src == nil || sp.inc != src.log.Incarnation() {
		return false
	}
	first := src.log.FirstSeq()
	i := 0
	for i < len(sp.queue) && sp.queue[i].Seq < first {
		i++
	}
	if i > 0 {
		clear(sp.queue[:i])
		sp.queue = sp.queue[i:]
	}
	return len(sp.handed) > 0 && sp.handed[0].Seq < first
}

// Next implements webhook.Source.
func (ss *subState) Next(ctx context.Context, max int) ([]*dispatch.Event, error) {
	e := ss.e
	for {
		e.mu.Lock()
		if evs := ss.take(max); len(evs) > 0 {
			e.mu.Unlock()
			return evs, nil
		}
		job, wait := ss.plan()
		e.mu.Unlock()
		if job != nil {
			if err := job(); err != nil {
				return nil, err
			}
			continue
		}
		var poll <-chan time.Time
		var t *time.Timer
		if wait {
			t = time.NewTimer(behindReaderPoll)
			poll = t.C
		}
		select {
		case <-ctx.Done():
		case <-ss.notify:
		case <-poll:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// take hands out up to max queued events. Called with the mutex held.
func (ss *subState) take(max int) []*dispatch.Event {
	var out []*dispatch.Event
	for _, sp := range ss.srcs {
		n := min(len(sp.queue), max-len(out))
		if n <= 0 {
			continue
		}
		out = append(out, sp.queue[:n]...)
		sp.handed = append(sp.handed, sp.queue[:n]...)
		sp.queue = sp.queue[n:]
		if len(sp.queue) == 0 {
			sp.queue = nil
		}
	}
	return out
}

// plan decides the next step of a subscription with nothing queued: start
// reading a source it has no position in yet, catch up with a source's
// reader, or wait (wait is true when it must poll for a reader that is
// behind it). Called with the mutex held.
func (ss *subState) plan() (job func() error, wait bool) {
	e := ss.e
	if ss.stopped {
		return nil, false // its worker is ending: positions stay frozen
	}
	for node, src := range e.sources {
		sp := ss.srcs[node]
		if sp != nil && sp.inc != src.inc {
			delete(ss.srcs, node) // the log was recreated
			sp = nil
		}
		if sp == nil {
			if src.inc != src.log.Incarnation() {
				// The reader has not switched to the new log yet.
				wait = true
				continue
			}
			return func() error { return ss.initSource(node, src) }, false
		}
		if sp.attached {
			continue
		}
		switch {
		case sp.readPos == src.pos:
			sp.attached = true
		case sp.readPos < src.pos:
			from, to := sp.readPos+1, src.pos
			return func() error { return ss.catchUp(node, src, from, to) }, false
		default:
			wait = true
		}
	}
	return nil, wait
}

// inherit takes the final positions of the previous run of the same
// generation, which has ended: this run continues exactly where that one
// stopped (which may be ahead of the committed cursors, whose report may
// not be committed yet). It takes them before it starts, not when it first
// plans a source, so that a run stopped before it ever ran (a lease that
// flaps while a POST of the run before is in flight) still hands them on
// in its final report and to the next run; with them, nothing delivered
// is sent again from an older committed cursor. Called with the engine's
// mutex held.
func (ss *subState) inherit(prev *subState) {
	for node, psp := range prev.srcs {
		if ss.srcs[node] == nil {
			ss.srcs[node] = &subSrc{inc: psp.inc, readPos: prev.cursor(node)}
		}
	}
}

// initSource sets the subscription's position in a source log it has none
// in (inherit gives it those of a previous run): its committed cursor for
// this incarnation of the log, else the first event at or after its start
// time.
func (ss *subState) initSource(node string, src *source) error {
	l := src.log
	inc := l.Incarnation()
	var pos uint64
	var known bool
	e := ss.e
	if c, ok := ss.sub.Cursors[node]; ok && c.Incarnation == inc {
		pos, known = c.Seq, true
	}
	if !known {
		seq, err := l.SeqAtOrAfter(time.UnixMilli(ss.sub.StartMs))
		if err != nil {
			return err
		}
		pos = seq - 1
	}
	if first := l.FirstSeq(); pos+1 < first {
		pos = first - 1 // trimmed (retention): counted as dropped when trimmed
	}
	// A position past the log's end (a copy of a peer's log that lags the
	// cursor the previous owner committed) is kept: the subscription
	// waits for the copy to pass it rather than deliver again what the
	// cursor covers.
	e.mu.Lock()
	defer e.mu.Unlock()
	if ss.srcs[node] == nil {
		ss.srcs[node] = &subSrc{inc: inc, readPos: pos}
	}
	return nil
}

// catchUp reads events from..to of a source log itself and queues those
// that match this subscription.
func (ss *subState) catchUp(node string, src *source, from, to uint64) error {
	e := ss.e
	n := int(min(to-from+1, uint64(e.opts.ReadChunk)))
	recs, err := src.log.Read(from, n)
	if err != nil {
		return err
	}
	inc := src.log.Incarnation()
	var hits []match.Hit
	var queued []*dispatch.Event
	last := from - 1
	for i := range recs {
		if recs[i].Seq > to {
			break
		}
		if !ss.mayMatch(&recs[i]) {
			last = recs[i].Seq
			continue
		}
		ev := toEvent(node, inc, &recs[i])
		hits = ss.own.Match(ev, hits[:0])
		for _, h := range hits {
			if d := ss.deliverable(ev, h.Derived); d != nil {
				queued = append(queued, d)
			}
		}
		last = recs[i].Seq
	}
	if len(recs) == 0 {
		last = to // nothing stored in the range any more
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	sp := ss.srcs[node]
	if sp == nil || sp.attached || sp.readPos != from-1 || sp.inc != inc {
		return nil // moved on meanwhile (restart): drop this read
	}
	sp.queue = append(sp.queue, queued...)
	sp.readPos = last
	if sp.readPos == src.pos && !ss.stopped {
		sp.attached = true
	}
	return nil
}

// mayMatch is a cheap test that rules out most records a catching-up
// subscription cannot match, before the body is parsed: the model (or the
// model it is derived from), and a named domain that must appear in the
// body as a JSON string (unless the body has escapes, which could spell it
// otherwise).
func (ss *subState) mayMatch(r *eventlog.Record) bool {
	m := ss.sub.Match
	switch m.Model {
	case "*", r.Model:
	case dispatch.ModelPresence:
		if r.Model != dispatch.ModelSubscriber {
			return false
		}
	case dispatch.ModelAuditlogLite:
		if r.Model != dispatch.ModelAuditlog {
			return false
		}
	case dispatch.ModelCallOrigID:
		if r.Model != dispatch.ModelCall {
			return false
		}
	default:
		return false
	}
	if ss.domainLit == nil || bytes.IndexByte(r.Body, '\\') >= 0 {
		return true
	}
	return bytes.Contains(r.Body, ss.domainLit)
}

// Ack implements webhook.Source.
func (ss *subState) Ack(evs []*dispatch.Event) {
	ss.e.mu.Lock()
	defer ss.e.mu.Unlock()
	for _, ev := range evs {
		sp := ss.srcs[ev.Node]
		if sp != nil && len(sp.handed) > 0 && sp.handed[0] == ev {
			sp.handed[0] = nil
			sp.handed = sp.handed[1:]
		}
	}
}

// Delivered implements webhook.Observer.
func (ss *subState) Delivered(_ string, n int, r webhook.Result) {
	ss.e.mu.Lock()
	defer ss.e.mu.Unlock()
	ss.posts++
	ss.events += uint64(n)
	ss.e.totals.Posts++
	ss.e.totals.Events += uint64(n)
	ss.e.opts.Stats.Delivered(ss.sub.ID(), n)
	if f := ss.e.opts.OnPost; f != nil {
		f(ss.sub.ID(), n, r)
	}
	ss.status = webhook.StateActive
	ss.lastPostMs = time.Now().UnixMilli()
	ss.failingSinceMs = 0
}

// Failed implements webhook.Observer.
func (ss *subState) Failed(_ string, r webhook.Result, _ int) {
	ss.e.mu.Lock()
	defer ss.e.mu.Unlock()
	now := time.Now().UnixMilli()
	ss.posts++ // posts-count counts every attempt (NetSapiens' definition)
	ss.errs++
	ss.e.totals.Errors++
	ss.e.opts.Stats.Failed(ss.sub.ID())
	if f := ss.e.opts.OnPost; f != nil {
		f(ss.sub.ID(), 0, r)
	}
	ss.status = webhook.StateError
	ss.lastError, ss.lastErrorMs = errorText(r), now
	if ss.failingSinceMs == 0 {
		ss.failingSinceMs = now
	}
}

// Suspended implements webhook.Observer.
func (ss *subState) Suspended(_ string, r webhook.Result) {
	ss.e.mu.Lock()
	defer ss.e.mu.Unlock()
	ss.status = webhook.StateSuspended
	ss.suspended = true
	if r.Err != nil {
		ss.lastError, ss.lastErrorMs = errorText(r), time.Now().UnixMilli()
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// maxLastError bounds last-error.
const maxLastError = 300

func errorText(r webhook.Result) string {
	s := "request failed"
	if r.Err != nil {
		s = r.Err.Error()
	}
	if r.BodySnippet != "" {
		s += ": " + r.BodySnippet
	}
	if len(s) > maxLastError {
		s = s[:maxLastError]
	}
	return s
}
