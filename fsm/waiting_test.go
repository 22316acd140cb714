package fsm_test

import (
	"errors"
	"testing"

	"github.com/hookswitch/hookswitch/fsm"
)

// waitingState: n1 up, n2 down (last report 7), w a witness; "p" is geo
// "no" pinned to n2 (generation 3, active, lag 2), "y" geo "yes" owned by
// n2.
func waitingState() *fsm.State {
	st := fsm.NewState()
	st.Nodes["n1"] = &fsm.Node{ID: "n1", Health: fsm.HealthUp, LastReportSeq: 5}
	st.Nodes["n2"] = &fsm.Node{ID: "n2", Health: fsm.HealthDown, LastReportSeq: 7}
	st.Nodes["w"] = &fsm.Node{ID: "w", Health: fsm.HealthUp, Witness: true, LastReportSeq: 9}
	st.Subs["p"] = &fsm.Subscription{ID: "p", HomeNode: "n2", Owner: "n2", Generation: 3, Status: fsm.StatusActive,
		SubSpec: fsm.SubSpec{Model: "call", GeoSupport: fsm.GeoNo, PreferredServer: "n2"}, Counters: fsm.Counters{Lag: 2}}
	st.Subs["y"] = &fsm.Subscription{ID: "y", HomeNode: "n1", Owner: "n2", Generation: 1, Status: fsm.StatusActive,
		SubSpec: fsm.SubSpec{Model: "call", GeoSupport: "yes"}}
	return st
}

func TestHomeDown(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(st *fsm.State, s *fsm.Subscription)
		sub        string
		want       bool
		wantReason bool
	}{
		{name: "home down", sub: "p", want: true},
		{name: "home never reported: not judged yet", sub: "p",
			setup: func(st *fsm.State, _ *fsm.Subscription) { st.Nodes["n2"].Health, st.Nodes["n2"].LastReportSeq = "", 0 }},
		{name: "home up", sub: "p",
			setup: func(st *fsm.State, _ *fsm.Subscription) { st.Nodes["n2"].Health = fsm.HealthUp }},
		{name: "home draining still sends", sub: "p",
			setup: func(st *fsm.State, _ *fsm.Subscription) {
				st.Nodes["n2"].Health, st.Nodes["n2"].Draining = fsm.HealthUp, true
			}},
		{name: "home not a member", sub: "p", want: true, wantReason: true,
			setup: func(st *fsm.State, _ *fsm.Subscription) { delete(st.Nodes, "n2") }},
		{name: "home a witness", sub: "p", want: true, wantReason: true,
			setup: func(_ *fsm.State, s *fsm.Subscription) { s.HomeNode, s.Owner = "w", "w" }},
		{name: "paused", sub: "p", setup: func(_ *fsm.State, s *fsm.Subscription) { s.Paused = true }},
		{name: "suspended", sub: "p", setup: func(_ *fsm.State, s *fsm.Subscription) { s.Status = fsm.StatusSuspended }},
		{name: "a move to its home is pending", sub: "p", setup: func(_ *fsm.State, s *fsm.Subscription) { s.Owner = "n1" }},
		{name: "geo yes never waits", sub: "y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := waitingState()
			s := st.Subs[tc.sub]
			if tc.setup != nil {
				tc.setup(st, s)
			}
			down, reason := fsm.HomeDown(st, s)
			if down != tc.want || (reason != "") != tc.wantReason {
				t.Fatalf("HomeDown = %v, %q; want %v, reason given %v", down, reason, tc.want, tc.wantReason)
			}
		})
	}
}

func lagOf(n uint64) *uint64 { return &n }

func TestApplySetWaiting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(st *fsm.State)
		w       fsm.Waiting
		applied bool
		lag     uint64
	}{
		{name: "home down: waiting with the counted lag", w: fsm.Waiting{Sub: "p", Generation: 3, HomeSeq: 7, Lag: lagOf(40)},
			applied: true, lag: 40},
		{name: "no lag counted: the last one stays", w: fsm.Waiting{Sub: "p", Generation: 3, HomeSeq: 7},
			applied: true, lag: 2},
		{name: "old generation (moved or rewound since)", w: fsm.Waiting{Sub: "p", Generation: 2, HomeSeq: 7, Lag: lagOf(40)}, lag: 2},
		{name: "the home node reported since", w: fsm.Waiting{Sub: "p", Generation: 3, HomeSeq: 6, Lag: lagOf(40)}, lag: 2},
		{name: "the home node is up again", w: fsm.Waiting{Sub: "p", Generation: 3, HomeSeq: 7, Lag: lagOf(40)}, lag: 2,
			setup: func(st *fsm.State) { st.Nodes["n2"].Health = fsm.HealthUp }},
		{name: "paused since", w: fsm.Waiting{Sub: "p", Generation: 3, HomeSeq: 7, Lag: lagOf(40)}, lag: 2,
			setup: func(st *fsm.State) { st.Subs["p"].Paused = true }},
		{name: "geo yes", w: fsm.Waiting{Sub: "y", Generation: 1, HomeSeq: 7}},
		{name: "deleted", w: fsm.Waiting{Sub: "gone", Generation: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := waitingState()
			if tc.setup != nil {
				tc.setup(st)
			}
			var before fsm.Subscription
			if s, ok := st.Subs[tc.w.Sub]; ok {
				before = *s
			}
			res, ch := fsm.Apply(st, 10, &fsm.SetWaiting{Subs: []fsm.Waiting{tc.w}, AtMs: 5000})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if got := len(ch) == 1; got != tc.applied {
				t.Fatalf("applied %v (changes %d), want %v", got, len(ch), tc.applied)
			}
			s, ok := st.Subs[tc.w.Sub]
			if !ok {
				return
			}
			wantStatus := before.Status
			if tc.applied {
				wantStatus = fsm.StatusWaiting
			}
			if s.Status != wantStatus || (tc.w.Sub == "p" && s.Counters.Lag != tc.lag) {
				t.Fatalf("status %q lag %d, want %q lag %d", s.Status, s.Counters.Lag, wantStatus, tc.lag)
			}
			if s.Generation != before.Generation || s.Owner != before.Owner {
				t.Fatalf("generation/owner changed: %d %q", s.Generation, s.Owner)
			}
		})
	}
}

// TestSetWaitingThenHomeReports: the home node's own report after its
// return sets status and lag again; a waiting verdict made before that
// report is refused.
func TestSetWaitingThenHomeReports(t *testing.T) {
	st := waitingState()
	fsm.Apply(st, 10, &fsm.SetWaiting{Subs: []fsm.Waiting{{Sub: "p", Generation: 3, HomeSeq: 7, Lag: lagOf(40)}}})
	if s := st.Subs["p"]; s.Status != fsm.StatusWaiting || s.Counters.Lag != 40 {
		t.Fatalf("status %q lag %d, want waiting 40", s.Status, s.Counters.Lag)
	}
	fsm.Apply(st, 11, &fsm.NodeReport{Node: "n2", Seq: 8, Subs: []fsm.SubReport{{ID: "p", Generation: 3, Status: fsm.StatusActive, Lag: 0, Posts: 1}}})
	stale := &fsm.SetWaiting{Subs: []fsm.Waiting{{Sub: "p", Generation: 3, HomeSeq: 7, Lag: lagOf(40)}}}
	if _, ch := fsm.Apply(st, 12, stale); len(ch) != 0 {
		t.Fatalf("a verdict made before the home node's report applied: %v", ch)
	}
	if s := st.Subs["p"]; s.Status != fsm.StatusActive || s.Counters.Lag != 0 {
		t.Fatalf("after the home node's report: status %q lag %d, want active 0", s.Status, s.Counters.Lag)
	}
}

func TestApplySetWaitingReason(t *testing.T) {
	st := waitingState()
	delete(st.Nodes, "n2")
	_, reason := fsm.HomeDown(st, st.Subs["p"])
	w := fsm.Waiting{Sub: "p", Generation: 3, Reason: reason}
	if _, ch := fsm.Apply(st, 10, &fsm.SetWaiting{Subs: []fsm.Waiting{w}, AtMs: 5000}); len(ch) != 1 {
		t.Fatalf("changes %d, want 1", len(ch))
	}
	c := st.Subs["p"].Counters
	if st.Subs["p"].Status != fsm.StatusWaiting || c.LastError != reason || c.LastErrorMs != 5000 {
		t.Fatalf("status %q last error %q at %d, want waiting, %q at 5000", st.Subs["p"].Status, c.LastError, c.LastErrorMs, reason)
	}
	// The same verdict again changes nothing.
	if _, ch := fsm.Apply(st, 11, &fsm.SetWaiting{Subs: []fsm.Waiting{w}, AtMs: 6000}); len(ch) != 0 {
		t.Fatalf("a repeated verdict wrote %d records", len(ch))
	}
}

// TestUpdateSubHome: a changed pin moves a geo "no" subscription's home
// node and owner, with a new generation so reports of the old owner are
// ignored; without Home the home node stays.
func TestUpdateSubHome(t *testing.T) {
	st := waitingState()
	spec := st.Subs["p"].SubSpec
	spec.PreferredServer = "n1"
	res, _ := fsm.Apply(st, 20, &fsm.UpdateSub{ID: "p", Spec: spec, Home: "n1"})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	s := st.Subs["p"]
	if s.HomeNode != "n1" || s.Owner != "n1" || s.Generation != 4 {
		t.Fatalf("home %q owner %q generation %d, want n1 n1 4", s.HomeNode, s.Owner, s.Generation)
	}
	// The old owner's report no longer sets status or cursors.
	fsm.Apply(st, 21, &fsm.NodeReport{Node: "n2", Seq: 8, Subs: []fsm.SubReport{{ID: "p", Generation: 3, Status: fsm.StatusError,
		Cursors: []fsm.Cursor{{Node: "n2", Incarnation: "i", Seq: 99}}}}})
	if s := st.Subs["p"]; s.Status == fsm.StatusError || s.Cursors["n2"].Seq == 99 {
		t.Fatalf("a report of the old owner applied: %+v", s)
	}
	// An update without Home (the pin did not change) keeps it.
	spec.PostURL = "http://other"
	fsm.Apply(st, 22, &fsm.UpdateSub{ID: "p", Spec: spec})
	if s := st.Subs["p"]; s.HomeNode != "n1" || s.Owner != "n1" || s.Generation != 4 {
		t.Fatalf("home %q owner %q generation %d after an unrelated update, want n1 n1 4", s.HomeNode, s.Owner, s.Generation)
	}
	// A geo "yes" subscription's owner is the reconciler's business.
	yspec := st.Subs["y"].SubSpec
	fsm.Apply(st, 23, &fsm.UpdateSub{ID: "y", Spec: yspec, Home: "n1"})
	if s := st.Subs["y"]; s.Owner != "n2" || s.Generation != 1 {
		t.Fatalf("geo yes: owner %q generation %d, want n2 1", s.Owner, s.Generation)
	}
}

// TestUpdateSubEndsWaiting: a waiting subscription that no longer waits
// for that node (it moved, or became geo "yes") shows what its counters
// say until its sending node reports; an unrelated update keeps waiting.
func TestUpdateSubEndsWaiting(t *testing.T) {
	for _, tc := range []struct {
		name     string
		change   func(spec *fsm.SubSpec) string // returns Home
		counters fsm.Counters
		want     string
	}{
		{name: "unrelated change", change: func(spec *fsm.SubSpec) string { spec.PostURL = "http://x"; return "" },
			want: fsm.StatusWaiting},
		{name: "moved, never posted", change: func(spec *fsm.SubSpec) string { spec.PreferredServer = "n1"; return "n1" },
			want: fsm.StatusPending},
		{name: "moved, last post failed", change: func(spec *fsm.SubSpec) string { spec.PreferredServer = "n1"; return "n1" },
			counters: fsm.Counters{LastPostMs: 10, LastErrorMs: 20}, want: fsm.StatusError},
		{name: "geo yes now", change: func(spec *fsm.SubSpec) string { spec.GeoSupport = "yes"; return "" },
			counters: fsm.Counters{LastPostMs: 30, LastErrorMs: 20}, want: fsm.StatusActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := waitingState()
			s := st.Subs["p"]
			s.Status, s.Counters = fsm.StatusWaiting, tc.counters
			spec := s.SubSpec
			home := tc.change(&spec)
			if res, _ := fsm.Apply(st, 20, &fsm.UpdateSub{ID: "p", Spec: spec, Home: home}); res.Err != nil {
				t.Fatal(res.Err)
			}
			if got := st.Subs["p"].Status; got != tc.want {
				t.Fatalf("status %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPinnedHome(t *testing.T) {
	for _, tc := range []struct{ preferred, origin, current, want string }{
		{"n2", "n1", "n3", "n2"},
		{"", "n1", "n3", "n1"},
		{"", "", "n3", "n3"},
	} {
		if got := fsm.PinnedHome(&fsm.SubSpec{PreferredServer: tc.preferred}, tc.origin, tc.current); got != tc.want {
			t.Errorf("PinnedHome(%q, %q, %q) = %q, want %q", tc.preferred, tc.origin, tc.current, got, tc.want)
		}
	}
}

func TestSetWaitingIsSkippable(t *testing.T) {
	c := &fsm.SetWaiting{Subs: []fsm.Waiting{{Sub: "p", Generation: 3, HomeSeq: 7, Lag: lagOf(5)}}, AtMs: 1}
	b, err := fsm.EncodeSkippable(c)
	if err != nil {
		t.Fatal(err)
	}
	if b[0]&fsm.FlagSkippable == 0 {
		t.Fatal("skippable flag not set")
	}
	got, err := fsm.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := got.(*fsm.SetWaiting)
	if !ok || len(w.Subs) != 1 || w.Subs[0].Lag == nil || *w.Subs[0].Lag != 5 || w.Subs[0].HomeSeq != 7 {
		t.Fatalf("decoded %#v", got)
	}
	// An older node that does not know the type skips it.
	b[0] = 0x7f | fsm.FlagSkippable
	if _, err := fsm.Decode(b); !errors.Is(err, fsm.ErrUnknownSkippable) {
		t.Fatalf("unknown skippable type: %v", err)
	}
}
