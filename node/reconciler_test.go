package node

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/fsm"
)

// planState returns a state with the given subscriptions (id → owner),
// each geo "yes" at generation 1 unless changed by the caller.
func planState(owners map[string]string) *fsm.State {
	st := fsm.NewState()
	for id, owner := range owners {
		st.Subs[id] = &fsm.Subscription{ID: id, Owner: owner, HomeNode: "n1", Generation: 1,
			SubSpec: fsm.SubSpec{Model: "call", GeoSupport: "yes"}}
	}
	return st
}

func planCandidates(spec map[string]string) []fsm.Candidate {
	var out []fsm.Candidate
	for _, id := range []string{"n1", "n2", "n3", "w"} {
		switch spec[id] {
		case "stable":
			out = append(out, fsm.Candidate{ID: id, Up: true, Stable: true})
		case "up":
			out = append(out, fsm.Candidate{ID: id, Up: true})
		case "down":
			out = append(out, fsm.Candidate{ID: id})
		case "draining":
			out = append(out, fsm.Candidate{ID: id, Up: true, Stable: true, Draining: true})
		case "witness":
			out = append(out, fsm.Candidate{ID: id, Up: true, Stable: true, Witness: true})
		}
	}
	return out
}

func movesByOwner(moves []fsm.Move) map[string]string {
	out := map[string]string{}
	for _, m := range moves {
		out[m.Sub] = m.Owner
	}
	return out
}

// TestPlanFailoverSpreadsLoad: the subscriptions of a dead node are spread
// over the survivors by the fewest-active rule, counting the moves planned
// in the same round, and each move carries the generation it was decided
// on.
func TestClusterPlanFailoverSpreadsLoad(t *testing.T) {
	owners := map[string]string{}
	for i := range 6 {
		owners[fmt.Sprintf("s%d", i)] = "n1"
	}
	owners["on2"] = "n2"
	st := planState(owners)
	st.Subs["s3"].Generation = 7
	moves, expired := plan(st, planCandidates(map[string]string{"n1": "down", "n2": "stable", "n3": "stable"}), 1000)
	if len(expired) != 0 {
		t.Fatalf("expired %v", expired)
	}
	if len(moves) != 6 {
		t.Fatalf("moves %+v, want the 6 subscriptions of n1", moves)
	}
	load := map[string]int{"n2": 1}
	for _, m := range moves {
		if m.Owner != "n2" && m.Owner != "n3" {
			t.Fatalf("move %+v to a node that is not a survivor", m)
		}
		if want := st.Subs[m.Sub].Generation; m.Generation != want {
			t.Fatalf("move %+v: generation %d, want the current %d", m, m.Generation, want)
		}
		load[m.Owner]++
	}
	if d := load["n2"] - load["n3"]; d < -1 || d > 1 || load["n2"]+load["n3"] != 7 {
		t.Fatalf("load after failover %v, want 7 spread evenly (3 and 4)", load)
	}
	// Planning again on the result moves nothing.
	for _, m := range moves {
		st.Subs[m.Sub].Owner = m.Owner
	}
	if again, _ := plan(st, planCandidates(map[string]string{"n1": "down", "n2": "stable", "n3": "stable"}), 1000); len(again) != 0 {
		t.Fatalf("second plan moves %+v, want none", again)
	}
}

func TestClusterPlanRules(t *testing.T) {
	tests := []struct {
		name  string
		setup func(st *fsm.State)
		subs  map[string]string
		nodes map[string]string
		want  map[string]string // sub → new owner
	}{
		{name: "all owners up: nothing moves",
			subs: map[string]string{"a": "n1", "b": "n2"}, nodes: map[string]string{"n1": "up", "n2": "stable", "n3": "stable"},
			want: map[string]string{}},
		{name: "unassigned subscriptions are assigned",
			subs: map[string]string{"a": "", "b": ""}, nodes: map[string]string{"n1": "stable", "n2": "stable"},
			want: map[string]string{"a": fsmWinner("a", "n1", "n2"), "b": otherThan(fsmWinner("a", "n1", "n2"), "n1", "n2")}},
		{name: "preferred server stable: fails back",
			setup: func(st *fsm.State) { st.Subs["a"].PreferredServer = "n1" },
			subs:  map[string]string{"a": "n2"}, nodes: map[string]string{"n1": "stable", "n2": "stable"},
			want: map[string]string{"a": "n1"}},
		{name: "preferred server up but not stable: stays",
			setup: func(st *fsm.State) { st.Subs["a"].PreferredServer = "n1" },
			subs:  map[string]string{"a": "n2"}, nodes: map[string]string{"n1": "up", "n2": "stable"},
			want: map[string]string{}},
		{name: "draining owner: moves off",
			subs: map[string]string{"a": "n1"}, nodes: map[string]string{"n1": "draining", "n2": "up"},
			want: map[string]string{"a": "n2"}},
		{name: "witness never gets one",
			subs: map[string]string{"a": "n1"}, nodes: map[string]string{"n1": "down", "n2": "up", "w": "witness"},
			want: map[string]string{"a": "n2"}},
		{name: "nobody can send it: stays where it is",
			subs: map[string]string{"a": "n1"}, nodes: map[string]string{"n1": "down", "n2": "down", "w": "witness"},
			want: map[string]string{}},
		{name: "geo no: pinned to its home node even when it is down",
			setup: func(st *fsm.State) { st.Subs["a"].GeoSupport = "no" },
			subs:  map[string]string{"a": "n1"}, nodes: map[string]string{"n1": "down", "n2": "stable"},
			want: map[string]string{}},
		{name: "geo no: back to its home node",
			setup: func(st *fsm.State) { st.Subs["a"].GeoSupport = "no" },
			subs:  map[string]string{"a": "n2"}, nodes: map[string]string{"n1": "down", "n2": "stable"},
			want: map[string]string{"a": "n1"}},
		{name: "paused subscriptions do not count as active",
			setup: func(st *fsm.State) {
				st.Subs["p1"].Paused, st.Subs["p2"].Paused = true, true
			},
			subs:  map[string]string{"p1": "n2", "p2": "n2", "x": "n3", "a": ""},
			nodes: map[string]string{"n2": "stable", "n3": "stable"},
			want:  map[string]string{"a": "n2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := planState(tc.subs)
			if tc.setup != nil {
				tc.setup(st)
			}
			moves, _ := plan(st, planCandidates(tc.nodes), 1000)
			if got := movesByOwner(moves); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("moves %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClusterPlanExpiry(t *testing.T) {
	st := planState(map[string]string{"old": "n1", "new": "n1", "never": "n1"})
	st.Subs["old"].ExpiresMs = 999
	st.Subs["new"].ExpiresMs = 5000
	moves, expired := plan(st, planCandidates(map[string]string{"n1": "down", "n2": "stable"}), 1000)
	if !reflect.DeepEqual(expired, []string{"old"}) {
		t.Fatalf("expired %v, want [old]", expired)
	}
	if got := movesByOwner(moves); !reflect.DeepEqual(got, map[string]string{"new": "n2", "never": "n2"}) {
		t.Fatalf("moves %v: an expired subscription must not be moved", got)
	}
}

func fsmWinner(sub string, ids ...string) string {
	nodes := make([]fsm.Candidate, len(ids))
	for i, id := range ids {
		nodes[i] = fsm.Candidate{ID: id, Up: true, Stable: true}
	}
	return fsm.Assign(sub, "", "", nodes, map[string]int{})
}

func otherThan(id string, ids ...string) string {
	for _, x := range ids {
		if x != id {
			return x
		}
	}
	return ""
}

// TestJudgeNewLeaderGivesEveryNodeDownAfter: a new leader's reconciler
// (fresh bookkeeping) sees reports that were committed long before its
// election. It must not mark any node down before down-after has passed
// since it started judging, and then only the nodes whose reports did not
// move; a node that reports again is up.
func TestJudgeNewLeaderGivesEveryNodeDownAfter(t *testing.T) {
	const downAfter = 1200 * time.Millisecond
	r := newReconciler(&Node{cfg: Config{DownAfter: downAfter, StableAfter: time.Second}})
	st := fsm.NewState()
	for _, id := range []string{"n1", "n2", "n3"} {
		// Up and stable for an hour; their last reports are a minute old.
		st.Nodes[id] = &fsm.Node{ID: id, Health: fsm.HealthUp, LastReportSeq: 7, UpSinceMs: time.Now().Add(-time.Hour).UnixMilli()}
	}
	elected := time.Now()
	verdicts := func(now time.Time) map[string]bool {
		out := map[string]bool{}
		h, _ := r.judge(st, now)
		for _, v := range h {
			out[v.Node] = v.Up
		}
		return out
	}
	for _, tc := range []struct {
		after  time.Duration
		report string // a node whose report moves before this round
		want   map[string]bool
	}{
		{0, "", map[string]bool{}},
		{downAfter / 2, "n2", map[string]bool{}},
		{downAfter - time.Millisecond, "", map[string]bool{}},
		// n1 and n3 said nothing since the election; n2 reported at
		// downAfter/2, so it has until 1.5×downAfter.
		{downAfter, "", map[string]bool{"n1": false, "n3": false}},
	} {
		if tc.report != "" {
			st.Nodes[tc.report].LastReportSeq++
		}
		if got := verdicts(elected.Add(tc.after)); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("%s after the election: verdicts %v, want %v", tc.after, got, tc.want)
		}
	}
	// Stable candidates right after the election: nobody is moved for
	// want of a stable node.
	r2 := newReconciler(&Node{cfg: Config{DownAfter: downAfter, StableAfter: time.Second}})
	_, nodes := r2.judge(st, elected)
	for _, c := range nodes {
		if !c.Up || !c.Stable {
			t.Fatalf("candidate %+v right after the election: want up and stable", c)
		}
	}
}

// TestRunStatus: a run starts with the replicated status, so a restarted
// node or a new owner does not show the subscription pending again; a
// status that is not a delivery status (waiting) is derived from the
// replicated counters.
func TestRunStatus(t *testing.T) {
	for _, tc := range []struct {
		status            string
		lastPost, lastErr int64
		want              webhook.State
	}{
		{fsm.StatusActive, 10, 0, webhook.StateActive},
		{fsm.StatusError, 10, 20, webhook.StateError},
		{fsm.StatusPending, 0, 0, webhook.StatePending},
		{"", 0, 0, webhook.StatePending},
		{fsm.StatusWaiting, 0, 0, webhook.StatePending},
		{fsm.StatusWaiting, 30, 20, webhook.StateActive},
		{fsm.StatusWaiting, 10, 20, webhook.StateError},
	} {
		s := &fsm.Subscription{Status: tc.status}
		s.Counters.LastPostMs, s.Counters.LastErrorMs = tc.lastPost, tc.lastErr
		if got := runStatus(s); got != tc.want {
			t.Errorf("runStatus(status %q, last post %d, last error %d) = %s, want %s", tc.status, tc.lastPost, tc.lastErr, got, tc.want)
		}
	}
}
