package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
)

// Source is where a Worker gets its subscription's events: the event log
// read through the subscription's cursors and matching, events already in the
// form to deliver (derived forms, call_origid collapse applied).
type Source interface {
	// Next blocks until at least one event is available or ctx is done, then
	// returns, without waiting for more, the available events in delivery
	// order, at most max. Events handed out are not handed out again by this
	// Source, acknowledged or not (a Worker retries a batch itself).
	Next(ctx context.Context, max int) ([]*dispatch.Event, error)
	// Ack is called, in order, after a batch succeeded: its events are
	// delivered and the cursors may advance past them.
	Ack(evs []*dispatch.Event)
}

// Observer receives a Worker's outcomes (for counters, status and
// last-error). Calls come from the Worker's goroutine, one at a time.
type Observer interface {
	Delivered(subID string, n int, r Result)    // a POST of n events succeeded
	Failed(subID string, r Result, attempt int) // attempt (1, 2, …) of a batch failed; it will be retried
	Suspended(subID string, r Result)           // the subscription is suspended; the Worker has stopped
}

// State is a subscription's delivery status as the Worker sees it.
type State string

// States (DESIGN.md "Subscriptions"; paused and waiting are decided outside
// the Worker, which simply is not running then).
const (
	StatePending   State = "pending"   // nothing posted yet
	StateActive    State = "active"    // the last POST succeeded
	StateError     State = "error"     // POSTs are failing
	StateSuspended State = "suspended" // 410 Gone, or failing for SuspendAfter
)

// ErrSuspended is returned by Run when the subscription got suspended.
var ErrSuspended = errors.New("subscription suspended")

// WorkerOptions tunes a Worker. Zero values are the defaults.
type WorkerOptions struct {
	Logger *slog.Logger
	// Sleep waits d or until ctx is done (returning ctx's error). Tests
	// replace it to observe and skip retry delays. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand is the jitter source of Backoff, in [0,1). Default: math/rand/v2.
	Rand func() float64
	// Now is the clock for SuspendAfter and status times. Default: time.Now.
	Now func() time.Time
	// SuspendAfter suspends the subscription once its POSTs have been failing
	// continuously for this long (the suspend-after setting). 0 = never.
	SuspendAfter time.Duration
	// FailingSince, when not zero, is when the current failure streak began
	// (known from replicated state after a restart or failover), so
	// SuspendAfter counts from then.
	FailingSince time.Time
	// AbortInFlight cancels a POST in flight when Run's ctx is done. By
	// default the POST runs to its end (bounded by the target's timeout) and
	// its outcome is acknowledged/reported, so a graceful stop does not
	// produce a duplicate.
	AbortInFlight bool
	// InFlight, when not nil, bounds that wait: once it is done, a POST
	// still in flight is cancelled and its batch is not acknowledged (a
	// shutdown's deadline). It is meant to end after Run's ctx.
	InFlight context.Context
}

// Status is a snapshot of a Worker's state and counters since it started.
type Status struct {
	State       State
	Posts       uint64 // successful POSTs
	Errors      uint64 // failed attempts
	Events      uint64 // events delivered
	LastPost    time.Time
	LastError   string
	LastErrorAt time.Time
	Attempt     int // failed attempts of the batch being retried now, 0 if none
}

// Worker delivers batches for one subscription: one POST in flight; natural
// batching (when idle, an event is posted at once; events that arrive during
// a POST accumulate, up to the batch size, into the next one); a failed batch
// is retried identically (same body, same webhook-id) after Backoff or the
// receiver's Retry-After, until it succeeds, ctx is done (pause, lost
// ownership, shutdown), or the subscription is suspended (410 Gone, or
// failing for SuspendAfter). Later events wait behind a failing batch.
type Worker struct {
	t     Target
	src   Source
	post  *Poster
	obs   Observer
	opts  WorkerOptions
	log   *slog.Logger
	batch int

	mu           sync.Mutex
	status       Status
	failingSince time.Time
}

// NewWorker returns a Worker for target t; call Run to start it.
func NewWorker(t Target, src Source, p *Poster, obs Observer, opts WorkerOptions) *Worker {
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if obs == nil {
		obs = nopObserver{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Worker{
		t: t, src: src, post: p, obs: obs, opts: opts,
		log:          log.With("component", "webhook", "sub", t.SubID),
		batch:        EffectiveBatchMax(t.Encoding, t.BatchMax),
		status:       Status{State: StatePending},
		failingSince: opts.FailingSince,
	}
}

// Status returns a snapshot of the Worker's state and counters.
func (w *Worker) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// errStopped ends Run quietly when ctx is done.
var errStopped = errors.New("stopped")

// Run delivers until ctx is done (returning nil), the subscription is
// suspended (ErrSuspended), or the Source fails (its error). A batch being
// retried when ctx is done is abandoned unacknowledged: the Source hands it
// out again after a restart.
func (w *Worker) Run(ctx context.Context) error {
	if !ValidEncoding(w.t.Encoding) {
		return fmt.Errorf("webhook %s: unknown encoding %q", w.t.SubID, w.t.Encoding)
	}
	if _, err := parsePostURL(w.t.URL); err != nil {
		return fmt.Errorf("webhook %s: %w", w.t.SubID, err)
	}
	w.log.Debug("worker started", "batch-max", w.batch, "encoding", w.t.Encoding)
	for {
		evs, err := w.src.Next(ctx, w.batch)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("webhook %s: source: %w", w.t.SubID, err)
		}
		if len(evs) == 0 {
			return fmt.Errorf("webhook %s: source returned no events and no error", w.t.SubID)
		}
		for len(evs) > 0 {
			n := min(len(evs), w.batch)
			if err := w.deliver(ctx, evs[:n]); err != nil {
				if errors.Is(err, errStopped) {
					return nil
				}
				return err
			}
			evs = evs[n:]
		}
	}
}

// deliver posts one batch until it succeeds, returning errStopped or
// ErrSuspended otherwise.
func (w *Worker) deliver(ctx context.Context, evs []*dispatch.Event) error {
	payloads, err := Encode(w.t.Encoding, evs)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.t.SubID, err)
	}
	for _, pl := range payloads {
		if err := w.deliverPayload(ctx, pl); err != nil {
			return err
		}
	}
	return nil
}

func (w *Worker) deliverPayload(ctx context.Context, pl Payload) error {
	id := BatchID(w.t.SubID, pl.Events)
	postCtx := ctx
	if !w.opts.AbortInFlight {
		postCtx = context.WithoutCancel(ctx) // still bounded by the target's timeout
		if w.opts.InFlight != nil {
			var cancel context.CancelFunc
			postCtx, cancel = context.WithCancel(postCtx)
			defer cancel()
			defer context.AfterFunc(w.opts.InFlight, cancel)()
		}
	}
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return errStopped
		}
		r := w.post.Post(postCtx, w.t, id, pl.Body, pl.ContentType)
		if r.OK() {
			w.src.Ack(pl.Events)
			w.succeeded(len(pl.Events), r)
			w.obs.Delivered(w.t.SubID, len(pl.Events), r)
			w.log.Debug("delivered", "events", len(pl.Events), "webhook-id", id, "status", r.Status, "duration", r.Duration)
			return nil
		}
		if (ctx.Err() != nil || postCtx.Err() != nil) && errors.Is(r.Err, context.Canceled) {
			return errStopped // aborted by our own cancel: not the receiver's failure
		}
		failingFor := w.failed(r, attempt)
		w.obs.Failed(w.t.SubID, r, attempt) // a 410 too: it is a failed attempt
		if r.Gone {
			return w.suspend(r, "receiver answered 410 Gone")
		}
		if w.opts.SuspendAfter > 0 && failingFor >= w.opts.SuspendAfter {
			return w.suspend(r, "failing for "+failingFor.Round(time.Second).String())
		}
		delay := r.RetryAfter
		if delay <= 0 {
			delay = Backoff(attempt, w.opts.Rand)
		}
		w.log.Warn("delivery failed; will retry", "attempt", attempt, "webhook-id", id,
			"status", r.Status, "err", r.Err, "retry-in", delay)
		if err := w.opts.Sleep(ctx, delay); err != nil {
			return errStopped
		}
	}
}

func (w *Worker) succeeded(n int, r Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failingSince = time.Time{}
	w.status.State = StateActive
	w.status.Posts++
	w.status.Events += uint64(n)
	w.status.LastPost = w.opts.Now()
	w.status.Attempt = 0
}

// failed records a failed attempt and returns how long POSTs have been
// failing continuously.
func (w *Worker) failed(r Result, attempt int) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.opts.Now()
	if w.failingSince.IsZero() {
		w.failingSince = now
	}
	w.status.State = StateError
	w.status.Errors++
	w.status.LastError = errorText(r)
	w.status.LastErrorAt = now
	w.status.Attempt = attempt
	return now.Sub(w.failingSince)
}

func (w *Worker) suspend(r Result, why string) error {
	w.mu.Lock()
	w.status.State = StateSuspended
	w.status.LastError = errorText(r)
	w.status.LastErrorAt = w.opts.Now()
	w.mu.Unlock()
	w.log.Warn("subscription suspended", "reason", why, "status", r.Status, "err", r.Err)
	w.obs.Suspended(w.t.SubID, r)
	return ErrSuspended
}

// errorText is a Result as last-error shows it.
func errorText(r Result) string {
	s := ""
	if r.Err != nil {
		s = r.Err.Error()
	}
	if r.BodySnippet != "" {
		s += ": " + r.BodySnippet
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

type nopObserver struct{}

func (nopObserver) Delivered(string, int, Result) {}
func (nopObserver) Failed(string, Result, int)    {}
func (nopObserver) Suspended(string, Result)      {}
