package node

import (
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/engine"
	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// waitingPlanState: n1 up, n2 down; "p" geo "no" pinned to n2, "q" pinned
// to n1, "y" geo "yes" owned by n2.
func waitingPlanState() *fsm.State {
	st := fsm.NewState()
	st.Nodes["n1"] = &fsm.Node{ID: "n1", Health: fsm.HealthUp, LastReportSeq: 4}
	st.Nodes["n2"] = &fsm.Node{ID: "n2", Health: fsm.HealthDown, LastReportSeq: 9}
	pin := func(id, home string) *fsm.Subscription {
		return &fsm.Subscription{ID: id, HomeNode: home, Owner: home, Generation: 2, Status: fsm.StatusActive,
			SubSpec: fsm.SubSpec{Model: "call", GeoSupport: fsm.GeoNo}}
	}
	st.Subs["p"], st.Subs["q"] = pin("p", "n2"), pin("q", "n1")
	st.Subs["y"] = &fsm.Subscription{ID: "y", HomeNode: "n1", Owner: "n2", Generation: 1, Status: fsm.StatusActive,
		SubSpec: fsm.SubSpec{Model: "call", GeoSupport: "yes"}}
	return st
}

func TestPlanWaiting(t *testing.T) {
	judged := map[string]uint64{"n1": 4, "n2": 9}
	for _, tc := range []struct {
		name   string
		setup  func(st *fsm.State)
		lags   map[string]uint64
		judged map[string]uint64
		want   []string // "sub lag" (lag "-" when not set)
	}{
		{name: "home down: waiting", want: []string{"p -"}},
		{name: "home down, counted", lags: map[string]uint64{"p": 12}, want: []string{"p 12"}},
		{name: "already waiting, same lag: nothing to commit", lags: map[string]uint64{"p": 12},
			setup: func(st *fsm.State) { st.Subs["p"].Status, st.Subs["p"].Counters.Lag = fsm.StatusWaiting, 12 }},
		{name: "already waiting, not counted this round: nothing to commit",
			setup: func(st *fsm.State) { st.Subs["p"].Status = fsm.StatusWaiting }},
		{name: "already waiting, lag moved", lags: map[string]uint64{"p": 13},
			setup: func(st *fsm.State) { st.Subs["p"].Status, st.Subs["p"].Counters.Lag = fsm.StatusWaiting, 12 },
			want:  []string{"p 13"}},
		{name: "home up again: the home node's reports decide",
			setup: func(st *fsm.State) { st.Nodes["n2"].Health = fsm.HealthUp }},
		{name: "home reported since its health was judged: passed over",
			judged: map[string]uint64{"n1": 4, "n2": 8}},
		{name: "home removed: waiting with a reason",
			setup: func(st *fsm.State) { delete(st.Nodes, "n2") }, want: []string{"p - reason"}},
		{name: "paused: not waiting",
			setup: func(st *fsm.State) { st.Subs["p"].Paused = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := waitingPlanState()
			if tc.setup != nil {
				tc.setup(st)
			}
			j := judged
			if tc.judged != nil {
				j = tc.judged
			}
			var got []string
			for _, w := range planWaiting(st, tc.lags, j) {
				s := w.Sub + " -"
				if w.Lag != nil {
					s = fmt.Sprintf("%s %d", w.Sub, *w.Lag)
				}
				if w.Reason != "" {
					s += " reason"
				}
				if w.Generation != st.Subs[w.Sub].Generation || w.HomeSeq != fsm.HomeSeq(st, st.Subs[w.Sub]) {
					t.Fatalf("verdict %+v not made on the current generation and home report", w)
				}
				got = append(got, s)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("verdicts %v, want %v", got, tc.want)
			}
			// Committed, the verdicts leave nothing to do.
			if len(got) > 0 {
				fsm.Apply(st, 100, &fsm.SetWaiting{Subs: planWaiting(st, tc.lags, j), AtMs: 1})
				if again := planWaiting(st, tc.lags, j); len(again) != 0 {
					t.Fatalf("after commit: verdicts %+v, want none", again)
				}
			}
		})
	}
}

// memLog is an in-memory engine.Log whose reads are counted.
type memLog struct {
	inc   string
	recs  []eventlog.Record // contiguous seqs
	reads int               // records returned by Read
}

func (l *memLog) Incarnation() string { return l.inc }
func (l *memLog) FirstSeq() uint64 {
	if len(l.recs) == 0 {
		return 1
	}
	return l.recs[0].Seq
}
func (l *memLog) LastSeq() uint64 {
	if len(l.recs) == 0 {
		return 0
	}
	return l.recs[len(l.recs)-1].Seq
}
func (l *memLog) Read(from uint64, max int) ([]eventlog.Record, error) {
	var out []eventlog.Record
	for _, r := range l.recs {
		if r.Seq >= from && len(out) < max {
			out = append(out, r)
		}
	}
	l.reads += len(out)
	return out, nil
}
func (l *memLog) Changed() <-chan struct{} { return make(chan struct{}) }
func (l *memLog) SeqAtOrAfter(t time.Time) (uint64, error) {
	for _, r := range l.recs {
		if r.IngestMs >= t.UnixMilli() {
			return r.Seq, nil
		}
	}
	return l.LastSeq() + 1, nil
}

// add appends n events of domain, ingested at ms.
func (l *memLog) add(n int, domain string, ms int64) {
	for range n {
		seq := l.LastSeq() + 1
		l.recs = append(l.recs, eventlog.Record{Seq: seq, IngestMs: ms, Model: "call",
			Body: []byte(fmt.Sprintf(`{"model":"call","domain":%q,"n":%d}`, domain, seq))})
	}
}

func (l *memLog) trim(through uint64) {
	for len(l.recs) > 0 && l.recs[0].Seq <= through {
		l.recs = l.recs[1:]
	}
}

// TestLagCounter: the events after the committed cursors (or, without one,
// from the start time) that match, in every log; a count within budget
// resumes where it stopped; a new generation starts again; retention that
// drops the start is followed.
func TestLagCounter(t *testing.T) {
	n1 := &memLog{inc: "i1"}
	n2 := &memLog{inc: "i2"}
	n1.add(10, "a.example", 1000) // seqs 1-10: delivered (cursor 10)
	n1.add(5, "b.example", 2000)  // 11-15: not its domain
	n1.add(7, "a.example", 3000)  // 16-22: waiting
	n2.add(4, "a.example", 500)   // 1-4: before its start, no cursor
	n2.add(6, "a.example", 2500)  // 5-10: waiting
	logs := map[string]engine.Log{"n1": n1, "n2": n2}
	lc := newLagCounter(func() map[string]engine.Log { return logs })
	sub := &fsm.Subscription{ID: "p", Generation: 2, StartMs: 1000, HomeNode: "n2", Owner: "n2",
		SubSpec: fsm.SubSpec{Model: "call", Reseller: "*", Domain: "a.example", User: "*", GeoSupport: fsm.GeoNo},
		Cursors: map[string]fsm.Cursor{"n1": {Node: "n1", Incarnation: "i1", Seq: 10}}}
	subs := []*fsm.Subscription{sub}

	// A small budget: the count is a lower bound that grows, never above
	// the truth, and each round reads at most the budget.
	var last uint64
	for round := 0; ; round++ {
		before := n1.reads + n2.reads
		got := lc.count(subs, 4)["p"]
		if read := n1.reads + n2.reads - before; read > 4 {
			t.Fatalf("round %d read %d records, budget 4", round, read)
		}
		if got < last || got > 13 {
			t.Fatalf("round %d: lag %d after %d, want growing to 13", round, got, last)
		}
		last = got
		if got == 13 {
			break
		}
		if round > 10 {
			t.Fatalf("lag %d after %d rounds, want 13", got, round)
		}
	}
	// Nothing new: nothing read again.
	before := n1.reads + n2.reads
	if got := lc.count(subs, lagScanMax)["p"]; got != 13 || n1.reads+n2.reads != before {
		t.Fatalf("lag %d, %d records read again; want 13 without reading", got, n1.reads+n2.reads-before)
	}
	// New events are added to the count.
	n2.add(2, "a.example", 4000)
	n2.add(1, "c.example", 4000)
	if got := lc.count(subs, lagScanMax)["p"]; got != 15 {
		t.Fatalf("lag %d, want 15", got)
	}
	// Retention drops the start in n2's log: what is left counts.
	n2.trim(6)
	if got := lc.count(subs, lagScanMax)["p"]; got != 7+6 {
		t.Fatalf("after trimming: lag %d, want 13", got)
	}
	// A new generation (a rewind) counts from its cursors again.
	sub2 := sub.Clone()
	sub2.Generation, sub2.Cursors = 3, map[string]fsm.Cursor{"n1": {Node: "n1", Incarnation: "i1", Seq: 20}, "n2": {Node: "n2", Incarnation: "i2", Seq: 11}}
	if got := lc.count([]*fsm.Subscription{sub2}, lagScanMax)["p"]; got != 2+1 {
		t.Fatalf("new generation: lag %d, want 3", got)
	}
	// A cursor of an older incarnation counts from the start time.
	sub3 := sub2.Clone()
	sub3.Generation = 4
	sub3.Cursors["n1"] = fsm.Cursor{Node: "n1", Incarnation: "old", Seq: 20}
	if got := lc.count([]*fsm.Subscription{sub3}, lagScanMax)["p"]; got != 17+1 {
		t.Fatalf("cursor of another incarnation: lag %d, want 18", got)
	}
	// Subscriptions no longer waiting are forgotten.
	lc.count(nil, lagScanMax)
	if len(lc.subs) != 0 {
		t.Fatalf("counts kept: %v", keys(lc.subs))
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestLagCounterDue(t *testing.T) {
	lc := newLagCounter(nil)
	now := time.Unix(1000, 0)
	if !lc.due(now, time.Second) {
		t.Fatal("first count not due")
	}
	if lc.due(now.Add(999*time.Millisecond), time.Second) {
		t.Fatal("count due before the interval")
	}
	if !lc.due(now.Add(time.Second), time.Second) {
		t.Fatal("count not due after the interval")
	}
}
