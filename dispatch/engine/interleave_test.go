package engine

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Regression tests of issue 9: a run that is stopped (lease expired, pause,
// a configuration change) must not claim events the source reader passes
// after the stop. Each drives the interleaving on purpose: the reader is
// made to pass new events while the subscription is stopped, before the
// stopped run's final report is taken or a new run resumes from it.

// readerPos is how far the engine's reader of a source has matched.
func readerPos(e *Engine, node string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sources[node].pos
}

// waitReader waits until the reader of node has matched up to seq.
func waitReader(t *testing.T, e *Engine, node string, seq uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("reader of %s at %d", node, seq), func() (bool, string) {
		p := readerPos(e, node)
		return p >= seq, fmt.Sprintf("reader at %d", p)
	}, 10*time.Second)
}

// waitAttached waits until sub has a position in every source.
func waitAttached(t *testing.T, e *Engine, sub string) {
	t.Helper()
	waitFor(t, "subscription attached", func() (bool, string) {
		r, _ := e.Status(sub)
		return len(r.Cursors) == 1, fmt.Sprintf("%+v", r)
	}, 5*time.Second)
}

// finalCursor collects reports until the final one of a stopped sub comes.
func finalCursor(t *testing.T, e *Engine, sub string) uint64 {
	t.Helper()
	var got []SubReport
	var seq uint64
	waitFor(t, "the final report of "+sub, func() (bool, string) {
		got = append(got, e.Report(true)...)
		if _, running := e.Status(sub); running {
			return false, "still running"
		}
		for _, r := range got {
			if r.ID == sub && len(r.Cursors) == 1 {
				seq = r.Cursors[0].Seq
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", got)
	}, 10*time.Second)
	return seq
}

// TestEngineLeaseLostAndRenewedDeliversTheWindow: the lease expires (Sync
// with nothing), events arrive and the reader matches them while the
// subscription is out of the index, the lease is renewed (Sync with the
// same generation). The stopped run's final report must not claim the
// window, and the resumed run must deliver it.
func TestEngineLeaseLostAndRenewedDeliversTheWindow(t *testing.T) {
	l := openLog(t)
	rcv := newReceiver(t)
	e := startEngine(t, Options{}, l)
	s := testSub("a", "d1", rcv.srv.URL)
	e.Sync([]Sub{s})
	waitAttached(t, e, "a")
	appendEvents(t, l, 0, 10, "d1")
	waitFor(t, "10 events", func() (bool, string) { return wantSequence(rcv.got("a"), 10) }, 10*time.Second)

	e.Sync(nil) // lease expired
	appendEvents(t, l, 10, 10, "d1")
	waitReader(t, e, "n1", 20) // the window is behind the reader
	if c := finalCursor(t, e, "a"); c != 10 {
		t.Fatalf("final report of the stopped run claims seq %d; only 10 were delivered", c)
	}

	e.Sync([]Sub{s}) // lease renewed, same generation: resume
	waitFor(t, "all 20 events once, in order", func() (bool, string) { return wantSequence(rcv.got("a"), 20) }, 10*time.Second)
}

// TestEngineStopDuringPostDoesNotClaimLaterEvents: the subscription is
// stopped while a POST is in flight (held by the receiver), the reader
// matches more events before the POST ends; the final report, taken when
// the worker ends, covers the POST's events and nothing after them.
func TestEngineStopDuringPostDoesNotClaimLaterEvents(t *testing.T) {
	l := openLog(t)
	release := make(chan struct{})
	var inFlight atomic.Int32
	rcv := newHoldingReceiver(t, func() {
		inFlight.Add(1)
		<-release
	})
	e := startEngine(t, Options{}, l)
	s := testSub("a", "d1", rcv.srv.URL)
	e.Sync([]Sub{s})
	waitAttached(t, e, "a")
	appendEvents(t, l, 0, 5, "d1")
	waitFor(t, "a POST in flight", func() (bool, string) {
		n := inFlight.Load()
		return n == 1, fmt.Sprintf("%d in flight", n)
	}, 10*time.Second)

	e.Sync(nil) // stopped mid-POST
	appendEvents(t, l, 5, 10, "d1")
	waitReader(t, e, "n1", 15)
	close(release)
	if c := finalCursor(t, e, "a"); c != 5 {
		t.Fatalf("final report claims seq %d; the POST in flight carried 5 events and nothing else was delivered", c)
	}
	e.Sync([]Sub{s})
	waitFor(t, "all 15 events once, in order", func() (bool, string) { return wantSequence(rcv.got("a"), 15) }, 10*time.Second)
}

// TestEngineConfigChangeKeepsTheWindow: a same-generation configuration
// change (a PATCH of the post-url's path, say) restarts the run and
// resumes it; events the reader matched in between are delivered.
func TestEngineConfigChangeKeepsTheWindow(t *testing.T) {
	l := openLog(t)
	rcv := newReceiver(t)
	e := startEngine(t, Options{}, l)
	s := testSub("a", "d1", rcv.srv.URL)
	e.Sync([]Sub{s})
	waitAttached(t, e, "a")
	appendEvents(t, l, 0, 10, "d1")
	waitFor(t, "10 events", func() (bool, string) { return wantSequence(rcv.got("a"), 10) }, 10*time.Second)

	// Take the run out (lease), let the reader pass the window, and come
	// back with another batch size: a restart with resume.
	e.Sync(nil)
	appendEvents(t, l, 10, 10, "d1")
	waitReader(t, e, "n1", 20)
	s.Target.BatchMax = 3
	e.Sync([]Sub{s})
	waitFor(t, "all 20 events once, in order", func() (bool, string) { return wantSequence(rcv.got("a"), 20) }, 10*time.Second)
}

// TestEngineLeaseFlapsTwiceDuringOnePost: the lease is lost and renewed
// twice while one POST is in flight. The second run is stopped before it
// ever ran (it waits for the first one's POST); the third must still
// continue from where the first stopped, not from the older committed
// cursor (which would send the first run's deliveries again), and nothing
// is skipped either.
func TestEngineLeaseFlapsTwiceDuringOnePost(t *testing.T) {
	l := openLog(t)
	release := make(chan struct{})
	var posts atomic.Int32
	rcv := newHoldingReceiver(t, func() {
		if posts.Add(1) == 2 {
			<-release // hold the second POST
		}
	})
	e := startEngine(t, Options{}, l)
	s := testSub("a", "d1", rcv.srv.URL)
	// The committed cursor is at the start: nothing was ever reported.
	s.Cursors = map[string]Cursor{"n1": {Node: "n1", Incarnation: l.Incarnation(), Seq: 0}}
	e.Sync([]Sub{s})
	waitAttached(t, e, "a")
	appendEvents(t, l, 0, 10, "d1")
	waitFor(t, "10 events", func() (bool, string) { return wantSequence(rcv.got("a"), 10) }, 10*time.Second)
	appendEvents(t, l, 10, 5, "d1")
	waitFor(t, "the second POST in flight", func() (bool, string) {
		n := posts.Load()
		return n == 2, fmt.Sprintf("%d POSTs", n)
	}, 10*time.Second)

	e.Sync(nil)      // lease lost: run 1 stops with its POST in flight
	e.Sync([]Sub{s}) // renewed: run 2 waits for run 1
	e.Sync(nil)      // lost again: run 2 stops before it ran
	appendEvents(t, l, 15, 5, "d1")
	waitReader(t, e, "n1", 20)
	close(release)
	if c := finalCursor(t, e, "a"); c != 15 {
		t.Fatalf("final report of the run that never ran claims seq %d, want 15 (where run 1 stopped)", c)
	}
	e.Sync([]Sub{s}) // renewed: run 3
	waitFor(t, "all 20 events once, in order", func() (bool, string) { return wantSequence(rcv.got("a"), 20) }, 10*time.Second)
}
