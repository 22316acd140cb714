package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// arrayIDs returns the event-ids of a json-array body.
func arrayIDs(t *testing.T, body []byte) []string {
	t.Helper()
	var objs []map[string]any
	if err := json.Unmarshal(body, &objs); err != nil {
		t.Fatalf("body is not a JSON array: %v: %s", err, body)
	}
	ids := make([]string, len(objs))
	for i, o := range objs {
		ids[i], _ = o["event-id"].(string)
	}
	return ids
}

func idsOf(evs []*dispatch.Event) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

type workerSetup struct {
	target Target
	opts   WorkerOptions
	src    *fakeSource
	obs    *recObserver
	sleeps *sleepRecorder
	poster *Poster
}

func newSetup(t *testing.T, rc *receiver, enc string, batchMax int) *workerSetup {
	t.Helper()
	s := &workerSetup{
		target: Target{SubID: "sub-1", URL: rc.URL + "/hook", Secret: NewSecret(), Encoding: enc, BatchMax: batchMax, Timeout: 5 * time.Second},
		src:    newFakeSource(),
		obs:    &recObserver{},
		sleeps: &sleepRecorder{},
		poster: newTestPoster(PosterOptions{}),
	}
	s.opts = WorkerOptions{Logger: quietLogger(), Sleep: s.sleeps.sleep, Rand: halfRand}
	return s
}

func (s *workerSetup) start(t *testing.T) (*Worker, *running) {
	t.Helper()
	w := NewWorker(s.target, s.src, s.poster, s.obs, s.opts)
	return w, runWorker(t, w)
}

func (s *workerSetup) verify(t *testing.T, r received) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(s.target.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.body, r.header); err != nil {
		t.Fatalf("request %d fails verification: %v", r.n, err)
	}
	if got := r.header.Get(HeaderCorrelationID); got != s.target.SubID {
		t.Fatalf("X-Correlation-ID = %q", got)
	}
}

func TestWorkerNaturalBatching(t *testing.T) {
	gate := make(chan struct{})
	var rc *receiver
	rc = newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			rc.block(r, gate) // the first POST stays in flight until released
		}
	})
	s := newSetup(t, rc, EncodingJSONArray, 3)
	evs := mkEvents(t, 1, 8)
	s.src.push(evs[0])
	w, run := s.start(t)

	first := rc.next(t) // an idle subscription posts at once, alone
	if got := arrayIDs(t, first.body); !reflect.DeepEqual(got, idsOf(evs[:1])) {
		t.Fatalf("first batch = %v", got)
	}
	s.src.push(evs[1:]...) // arrive while the POST is in flight
	close(gate)

	var got [][]string
	ids := map[string]bool{first.header.Get(HeaderWebhookID): true}
	for _, want := range [][]string{idsOf(evs[1:4]), idsOf(evs[4:7]), idsOf(evs[7:8])} {
		r := rc.next(t)
		s.verify(t, r)
		b := arrayIDs(t, r.body)
		got = append(got, b)
		if !reflect.DeepEqual(b, want) {
			t.Fatalf("batches so far %v; batch %d = %v, want %v", got, len(got), b, want)
		}
		id := r.header.Get(HeaderWebhookID)
		if ids[id] {
			t.Fatalf("webhook-id %s reused for a different batch", id)
		}
		ids[id] = true
		if id != BatchID(s.target.SubID, evs[slices.Index(idsOf(evs), b[0]):][:len(b)]) {
			t.Fatalf("webhook-id %s is not BatchID of the batch", id)
		}
	}
	s.src.waitAcked(t, len(evs))
	if !reflect.DeepEqual(s.src.ackedIDs(), idsOf(evs)) {
		t.Fatalf("acked out of order: %v", s.src.ackedIDs())
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	st := w.Status()
	if st.State != StateActive || st.Posts != 4 || st.Events != 8 || st.Errors != 0 {
		t.Fatalf("status = %+v", st)
	}
	var delivered []int
	for _, c := range s.obs.all() {
		if c.kind != "delivered" || c.subID != "sub-1" {
			t.Fatalf("unexpected observer call %+v", c)
		}
		delivered = append(delivered, c.n)
	}
	if !reflect.DeepEqual(delivered, []int{1, 3, 3, 1}) {
		t.Fatalf("Delivered sizes = %v", delivered)
	}
	for _, max := range s.src.maxes {
		if max != 3 {
			t.Fatalf("Next asked for %d events, want BatchMax 3", max)
		}
	}
}

func TestWorkerRetries(t *testing.T) {
	tests := []struct {
		name       string
		fail       func(n int, w http.ResponseWriter, r *http.Request) // answer to the first failing requests
		failures   int
		wantDelays []time.Duration
		wantStatus int
	}{
		{"500 backs off 1s 2s 4s", func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) },
			3, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, 500},
		{"302 is a failure", func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
		}, 2, []time.Duration{time.Second, 2 * time.Second}, 302},
		{"429 honours Retry-After", func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", strconv.Itoa(7*(n+1)))
			w.WriteHeader(429)
		}, 2, []time.Duration{7 * time.Second, 14 * time.Second}, 429},
		{"503 Retry-After date", func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(2*time.Minute+500*time.Millisecond).UTC().Format(http.TimeFormat))
			w.WriteHeader(503)
		}, 1, nil, 503},
		{"hanging receiver times out", func(n int, w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, 1, []time.Duration{time.Second}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					t.Error("redirect followed")
					return
				}
				if n < tt.failures {
					tt.fail(n, w, r)
				}
			})
			s := newSetup(t, rc, EncodingJSONArray, 10)
			s.target.Timeout = 200 * time.Millisecond
			evs := mkEvents(t, 1, 2)
			s.src.push(evs...)
			w, run := s.start(t)

			var reqs []received
			for range tt.failures + 1 {
				reqs = append(reqs, rc.next(t))
			}
			s.src.waitAcked(t, 2)
			if err := run.stop(t); err != nil {
				t.Fatal(err)
			}
			for _, r := range reqs {
				s.verify(t, r)
				if string(r.body) != string(reqs[0].body) {
					t.Fatalf("retry body differs:\n%s\n%s", r.body, reqs[0].body)
				}
				if r.header.Get(HeaderWebhookID) != reqs[0].header.Get(HeaderWebhookID) {
					t.Fatal("retry changed webhook-id")
				}
			}
			if got := arrayIDs(t, reqs[0].body); !reflect.DeepEqual(got, idsOf(evs)) {
				t.Fatalf("batch = %v", got)
			}
			delays := s.sleeps.all()
			if tt.wantDelays == nil { // Retry-After date: about 2 minutes
				if len(delays) != 1 || delays[0] < 2*time.Minute-2*time.Second || delays[0] > 2*time.Minute+2*time.Second {
					t.Fatalf("delays = %v, want ~2m", delays)
				}
			} else if !reflect.DeepEqual(delays, tt.wantDelays) {
				t.Fatalf("delays = %v, want %v", delays, tt.wantDelays)
			}
			calls := s.obs.all()
			if len(calls) != tt.failures+1 {
				t.Fatalf("observer calls = %+v", calls)
			}
			for i, c := range calls[:tt.failures] {
				if c.kind != "failed" || c.attempt != i+1 || c.r.Status != tt.wantStatus || c.r.Err == nil {
					t.Fatalf("call %d = %+v", i, c)
				}
			}
			if last := calls[tt.failures]; last.kind != "delivered" || last.n != 2 {
				t.Fatalf("last call = %+v", last)
			}
			st := w.Status()
			if st.State != StateActive || st.Errors != uint64(tt.failures) || st.Posts != 1 || st.Attempt != 0 || st.LastError == "" {
				t.Fatalf("status = %+v", st)
			}
		})
	}
}

func TestWorkerGoneSuspends(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "subscription removed", http.StatusGone)
	})
	s := newSetup(t, rc, EncodingJSONArray, 10)
	s.src.push(mkEvents(t, 1, 2)...)
	w, run := s.start(t)
	rc.next(t)
	if err := run.wait(t); !errors.Is(err, ErrSuspended) {
		t.Fatalf("Run = %v, want ErrSuspended", err)
	}
	s.src.push(mkEvents(t, 3, 1)...)
	rc.none(t)
	if len(s.src.ackedIDs()) != 0 {
		t.Fatal("a 410 batch was acknowledged")
	}
	// A 410 is a failed attempt (error-count counts it), then the
	// suspension.
	calls := s.obs.all()
	if len(calls) != 2 || calls[0].kind != "failed" || calls[1].kind != "suspended" ||
		calls[1].r.Status != 410 || !calls[1].r.Gone {
		t.Fatalf("observer calls = %+v, want failed then suspended", calls)
	}
	if st := w.Status(); st.State != StateSuspended || st.LastError == "" || st.Errors != 1 {
		t.Fatalf("status = %+v", st)
	}
	if len(s.sleeps.all()) != 0 {
		t.Fatal("slept before suspending")
	}
}

func TestWorkerSuspendAfter(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	s := newSetup(t, rc, EncodingJSONArray, 10)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s.sleeps.clock = clock
	s.opts.Now = clock.Now
	s.opts.SuspendAfter = 10 * time.Second
	s.src.push(mkEvents(t, 1, 1)...)
	w, run := s.start(t)
	if err := run.wait(t); !errors.Is(err, ErrSuspended) {
		t.Fatalf("Run = %v, want ErrSuspended", err)
	}
	// Failures at t=0, 1, 3, 7, 15: the fifth is 15s into the streak.
	if got := s.sleeps.all(); !reflect.DeepEqual(got, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}) {
		t.Fatalf("delays = %v", got)
	}
	calls := s.obs.all()
	if n := len(calls); n != 6 || calls[n-1].kind != "suspended" || calls[n-2].attempt != 5 {
		t.Fatalf("observer calls = %+v", calls)
	}
	if w.Status().State != StateSuspended {
		t.Fatalf("status = %+v", w.Status())
	}

	// A streak known to have begun before the worker started counts too.
	s2 := newSetup(t, rc, EncodingJSONArray, 10)
	s2.sleeps.clock = clock
	s2.opts.Now = clock.Now
	s2.opts.SuspendAfter = 10 * time.Second
	s2.opts.FailingSince = clock.Now().Add(-time.Minute)
	s2.src.push(mkEvents(t, 1, 1)...)
	_, run2 := s2.start(t)
	if err := run2.wait(t); !errors.Is(err, ErrSuspended) {
		t.Fatalf("Run = %v, want ErrSuspended", err)
	}
	if got := s2.sleeps.all(); len(got) != 0 {
		t.Fatalf("delays = %v, want suspension at the first failure", got)
	}
}

func TestWorkerEncodings(t *testing.T) {
	tests := []struct {
		enc   string
		ct    string
		check func(t *testing.T, ev *dispatch.Event, body []byte)
	}{
		{EncodingJSON, ContentTypeJSON, func(t *testing.T, ev *dispatch.Event, body []byte) {
			if string(body) != string(ev.JSON()) {
				t.Fatalf("json body = %s, want %s", body, ev.JSON())
			}
		}},
		{EncodingForm, ContentTypeForm, func(t *testing.T, ev *dispatch.Event, body []byte) {
			v, err := url.ParseQuery(string(body))
			if err != nil {
				t.Fatal(err)
			}
			want := url.Values{
				"model": {"call"}, "domain": {"d"}, "n": {strconv.Itoa(int(ev.Seq))},
				"ok": {"true"}, "tags": {`["a","b"]`}, "o": {`{"k":1}`}, "s": {"x=y&z"},
				"event-id": {ev.ID}, "node": {"n1"}, "ingest-time": {strconv.FormatInt(ev.IngestMs, 10)},
			}
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("form = %v\nwant %v", v, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.enc, func(t *testing.T) {
			rc := newReceiver(t, nil)
			s := newSetup(t, rc, tt.enc, 50) // BatchMax is ignored: one event per POST
			var evs []*dispatch.Event
			for i := 1; i <= 3; i++ {
				evs = append(evs, mkEvent(t, i, fmt.Sprintf(
					`{"model":"call","domain":"d","n":%d,"ok":true,"tags":["a","b"],"o":{"k":1},"s":"x=y&z"}`, i)))
			}
			s.src.push(evs...)
			_, run := s.start(t)
			for i, ev := range evs {
				r := rc.next(t)
				s.verify(t, r)
				if ct := r.header.Get("Content-Type"); ct != tt.ct {
					t.Fatalf("Content-Type = %q", ct)
				}
				if id := r.header.Get(HeaderWebhookID); id != BatchID("sub-1", evs[i:i+1]) {
					t.Fatalf("webhook-id %s", id)
				}
				tt.check(t, ev, r.body)
			}
			s.src.waitAcked(t, 3)
			if err := run.stop(t); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.src.ackedIDs(), idsOf(evs)) {
				t.Fatalf("acked %v", s.src.ackedIDs())
			}
			for _, m := range s.src.maxes {
				if m != 1 {
					t.Fatalf("Next asked for %d events, want 1", m)
				}
			}
		})
	}
}

func TestWorkerStop(t *testing.T) {
	tests := []struct {
		name      string
		abort     bool
		wantAcked int
	}{
		{"in-flight POST finishes and is acknowledged", false, 1},
		{"AbortInFlight cancels the POST", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := make(chan struct{})
			var rc *receiver
			rc = newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { rc.block(r, gate) })
			s := newSetup(t, rc, EncodingJSONArray, 10)
			s.opts.AbortInFlight = tt.abort
			s.src.push(mkEvents(t, 1, 1)...)
			w, run := s.start(t)
			rc.next(t) // in flight
			run.cancel()
			if !tt.abort {
				if run.ended() {
					t.Fatal("Run returned with a POST in flight")
				}
				close(gate)
			}
			if err := run.wait(t); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if got := len(s.src.ackedIDs()); got != tt.wantAcked {
				t.Fatalf("acked %d, want %d", got, tt.wantAcked)
			}
			for _, c := range s.obs.all() {
				if c.kind != "delivered" {
					t.Fatalf("a stop is reported as %+v", c)
				}
			}
			wantState := StateActive
			if tt.abort {
				wantState = StatePending
			}
			if st := w.Status(); st.State != wantState || st.Errors != 0 {
				t.Fatalf("status = %+v", st)
			}
		})
	}
}

func TestWorkerStopDuringBackoff(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	s := newSetup(t, rc, EncodingJSONArray, 10)
	slept := make(chan struct{}, 1)
	s.opts.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case slept <- struct{}{}:
		default:
		}
		<-ctx.Done() // a real wait: only the cancel ends it
		return ctx.Err()
	}
	s.src.push(mkEvents(t, 1, 1)...)
	w, run := s.start(t)
	select {
	case <-slept:
	case <-time.After(testWait):
		t.Fatal("worker never backed off")
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if st := w.Status(); st.State != StateError || st.Attempt != 1 {
		t.Fatalf("status = %+v", st)
	}
	if len(s.src.ackedIDs()) != 0 {
		t.Fatal("failed batch acknowledged")
	}
}

func TestWorkerBadTargetOrSource(t *testing.T) {
	rc := newReceiver(t, nil)
	srcErr := errors.New("retention dropped the cursor")
	tests := []struct {
		name   string
		mutate func(s *workerSetup)
		errIs  error
	}{
		{"unknown encoding", func(s *workerSetup) { s.target.Encoding = "xml" }, nil},
		{"bad url", func(s *workerSetup) { s.target.URL = "ftp://x" }, ErrBadURL},
		{"source error", func(s *workerSetup) { s.src.err = srcErr }, srcErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, rc, EncodingJSONArray, 10)
			tt.mutate(s)
			_, run := s.start(t)
			err := run.wait(t)
			if err == nil || (tt.errIs != nil && !errors.Is(err, tt.errIs)) {
				t.Fatalf("Run = %v, want %v", err, tt.errIs)
			}
		})
	}
}

func TestWorkerPending(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newSetup(t, rc, "", 0)
	w, run := s.start(t)
	if st := w.Status(); st.State != StatePending || st.Posts != 0 {
		t.Fatalf("status = %+v", st)
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
}

// A graceful stop waits for the POST in flight only until InFlight is done
// (a shutdown's deadline): then the POST is cancelled, its batch is not
// acknowledged and nothing is counted as the receiver's failure.
func TestWorkerStopInFlightDeadline(t *testing.T) {
	var rc *receiver
	rc = newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { rc.block(r, nil) })
	s := newSetup(t, rc, EncodingJSONArray, 10)
	s.target.Timeout = time.Hour // only the deadline ends the POST
	deadline, expire := context.WithCancel(context.Background())
	defer expire()
	s.opts.InFlight = deadline
	s.src.push(mkEvents(t, 1, 1)...)
	w, run := s.start(t)
	rc.next(t) // in flight
	run.cancel()
	if run.ended() {
		t.Fatal("Run returned with a POST in flight before the deadline")
	}
	expire()
	if err := run.wait(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := s.src.ackedIDs(); len(got) != 0 {
		t.Fatalf("a cancelled POST's batch was acknowledged: %v", got)
	}
	if c := s.obs.all(); len(c) != 0 {
		t.Fatalf("a cancelled POST is reported as %+v", c)
	}
	if st := w.Status(); st.State != StatePending || st.Errors != 0 {
		t.Fatalf("status = %+v", st)
	}
}
