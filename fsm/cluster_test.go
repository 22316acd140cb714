package fsm_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hookswitch/hookswitch/fsm"
)

// Node candidates of the assignment rule tests.
func stable(id string) fsm.Candidate { return fsm.Candidate{ID: id, Up: true, Stable: true} }
func upOnly(id string) fsm.Candidate { return fsm.Candidate{ID: id, Up: true} }
func down(id string) fsm.Candidate   { return fsm.Candidate{ID: id} }
func draining(c fsm.Candidate) fsm.Candidate {
	c.Draining = true
	return c
}
func witness(c fsm.Candidate) fsm.Candidate {
	c.Witness = true
	return c
}

// hashWinner is the node the rendezvous tie-break picks for sub among ids:
// the highest RendezvousHash(sub, id), the smaller id on an equal hash.
func hashWinner(sub string, ids ...string) string {
	best := ""
	var bestH uint64
	for _, id := range ids {
		h := fsm.RendezvousHash(sub, id)
		if best == "" || h > bestH || (h == bestH && id < best) {
			best, bestH = id, h
		}
	}
	return best
}

func TestAssignRule(t *testing.T) {
	const s = "sub-1"
	tests := []struct {
		name               string
		preferred, current string
		nodes              []fsm.Candidate
		active             map[string]int
		want               string
	}{
		// 1. The preferred server, when stable and not draining.
		{name: "preferred stable wins over an up current", preferred: "p", current: "c",
			nodes: []fsm.Candidate{stable("p"), stable("c"), stable("x")}, active: map[string]int{"p": 9}, want: "p"},
		{name: "preferred stable wins over an unassigned sub", preferred: "p", current: "",
			nodes: []fsm.Candidate{stable("p"), stable("x")}, active: map[string]int{"p": 5}, want: "p"},
		// 2. Else the current owner, when up and not draining.
		{name: "preferred up but not stable: current keeps it", preferred: "p", current: "c",
			nodes: []fsm.Candidate{upOnly("p"), upOnly("c"), stable("x")}, want: "c"},
		{name: "preferred down: current keeps it", preferred: "p", current: "c",
			nodes: []fsm.Candidate{down("p"), upOnly("c"), stable("x")}, want: "c"},
		{name: "preferred unknown: current keeps it", preferred: "gone", current: "c",
			nodes: []fsm.Candidate{stable("c"), stable("x")}, want: "c"},
		{name: "current up, not stable, keeps it over less loaded stable nodes (no rebalancing)", current: "c",
			nodes: []fsm.Candidate{upOnly("c"), stable("x")}, active: map[string]int{"c": 10}, want: "c"},
		// 3. Else the stable node with the fewest active subscriptions.
		{name: "current down: fewest active among stable", current: "c",
			nodes:  []fsm.Candidate{down("c"), stable("a"), stable("b"), upOnly("u")},
			active: map[string]int{"a": 3, "b": 1, "u": 0}, want: "b"},
		{name: "current down, preferred not stable: fewest active among stable", preferred: "p", current: "c",
			nodes:  []fsm.Candidate{down("c"), upOnly("p"), stable("a"), stable("b")},
			active: map[string]int{"a": 1, "b": 2, "p": 0}, want: "a"},
		{name: "unassigned: fewest active among stable", current: "",
			nodes: []fsm.Candidate{stable("a"), stable("b")}, active: map[string]int{"a": 2, "b": 1}, want: "b"},
		{name: "current unknown (removed): fewest active among stable", current: "removed",
			nodes: []fsm.Candidate{stable("a"), stable("b")}, active: map[string]int{"a": 0, "b": 4}, want: "a"},
		{name: "tie among stable: rendezvous hash", current: "c",
			nodes: []fsm.Candidate{down("c"), stable("a"), stable("b")}, active: map[string]int{"a": 2, "b": 2},
			want: hashWinner(s, "a", "b")},
		{name: "tie of three among stable: rendezvous hash", current: "",
			nodes: []fsm.Candidate{stable("n1"), stable("n2"), stable("n3")},
			want:  hashWinner(s, "n1", "n2", "n3")},
		{name: "the tie-break applies only among the least loaded", current: "",
			nodes:  []fsm.Candidate{stable("a"), stable("b"), stable("c")},
			active: map[string]int{hashWinner(s, "a", "b", "c"): 1},
			want: func() string {
				w := hashWinner(s, "a", "b", "c")
				var rest []string
				for _, id := range []string{"a", "b", "c"} {
					if id != w {
						rest = append(rest, id)
					}
				}
				return hashWinner(s, rest...)
			}()},
		// 4. No stable node: the same among up nodes.
		{name: "no stable node: fewest active among up", current: "c",
			nodes:  []fsm.Candidate{down("c"), upOnly("a"), upOnly("b"), down("d")},
			active: map[string]int{"a": 2, "b": 1, "d": 0}, want: "b"},
		{name: "no stable node: tie among up by rendezvous hash", current: "c",
			nodes: []fsm.Candidate{down("c"), upOnly("a"), upOnly("b")}, want: hashWinner(s, "a", "b")},
		{name: "a stable node is preferred to less loaded up nodes", current: "",
			nodes: []fsm.Candidate{upOnly("a"), stable("b")}, active: map[string]int{"b": 7}, want: "b"},
		// Nobody can send it.
		{name: "nobody up", preferred: "p", current: "c",
			nodes: []fsm.Candidate{down("p"), down("c"), down("x")}, want: ""},
		{name: "no nodes at all", current: "c", want: ""},
		// Draining nodes are excluded in every role.
		{name: "draining preferred is skipped", preferred: "p", current: "c",
			nodes: []fsm.Candidate{draining(stable("p")), upOnly("c")}, want: "c"},
		{name: "draining current is moved off", current: "c",
			nodes: []fsm.Candidate{draining(stable("c")), stable("a")}, active: map[string]int{"a": 5}, want: "a"},
		{name: "draining candidate is never chosen, even least loaded", current: "c",
			nodes:  []fsm.Candidate{down("c"), draining(stable("a")), stable("b")},
			active: map[string]int{"a": 0, "b": 9}, want: "b"},
		{name: "draining up candidate is never chosen when none is stable", current: "",
			nodes: []fsm.Candidate{draining(upOnly("a")), upOnly("b")}, active: map[string]int{"b": 9}, want: "b"},
		{name: "every node draining: nobody", current: "c",
			nodes: []fsm.Candidate{draining(stable("c")), draining(stable("a"))}, want: ""},
		// Witness nodes vote but never send.
		{name: "witness preferred is skipped", preferred: "w", current: "c",
			nodes: []fsm.Candidate{witness(stable("w")), upOnly("c")}, want: "c"},
		{name: "witness current is moved off", current: "w",
			nodes: []fsm.Candidate{witness(stable("w")), upOnly("a")}, want: "a"},
		{name: "witness is never a candidate, even least loaded", current: "",
			nodes: []fsm.Candidate{witness(stable("w")), stable("a")}, active: map[string]int{"a": 9}, want: "a"},
		{name: "only a witness is up: nobody", current: "c",
			nodes: []fsm.Candidate{down("c"), witness(stable("w"))}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			active := tc.active
			if active == nil {
				active = map[string]int{}
			}
			if got := fsm.Assign(s, tc.preferred, tc.current, tc.nodes, active); got != tc.want {
				t.Fatalf("Assign(%q, preferred %q, current %q, %+v, %v) = %q, want %q",
					s, tc.preferred, tc.current, tc.nodes, active, got, tc.want)
			}
		})
	}
}

// TestAssignTieBreakIsPredictable: on a tie the next owner is the node with
// the highest RendezvousHash(sub id, node id), whatever the order the nodes
// are listed in, so every node can compute it; and the tie-break spreads
// subscriptions over the nodes.
func TestAssignTieBreakIsPredictable(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	orders := [][]string{{"n1", "n2", "n3"}, {"n3", "n2", "n1"}, {"n2", "n3", "n1"}}
	wins := map[string]int{}
	for i := range 300 {
		sub := fmt.Sprintf("sub_%d", i)
		want := hashWinner(sub, ids...)
		wins[want]++
		for _, order := range orders {
			for _, mk := range []func(string) fsm.Candidate{stable, upOnly} {
				var nodes []fsm.Candidate
				for _, id := range order {
					nodes = append(nodes, mk(id))
				}
				if got := fsm.Assign(sub, "", "", nodes, map[string]int{}); got != want {
					t.Fatalf("sub %s, nodes %v: got %q, want the rendezvous winner %q", sub, order, got, want)
				}
			}
		}
		// The hash is a function of (sub, node) only.
		if h1, h2 := fsm.RendezvousHash(sub, "n1"), fsm.RendezvousHash(sub, "n1"); h1 != h2 {
			t.Fatal("RendezvousHash is not deterministic")
		}
	}
	for _, id := range ids {
		if wins[id] < 50 {
			t.Errorf("rendezvous tie-break gives %s only %d of 300 subscriptions: %v", id, wins[id], wins)
		}
	}
	// The hash separates the two inputs: (a, bc) and (ab, c) differ.
	if fsm.RendezvousHash("a", "bc") == fsm.RendezvousHash("ab", "c") {
		t.Error("RendezvousHash(a, bc) == RendezvousHash(ab, c)")
	}
}

// TestAssignFailback walks a subscription with a preferred server through
// that server's failure and return: it moves away when the server goes
// down, stays away while the server is up but not stable, and goes back
// once it is stable again.
func TestAssignFailback(t *testing.T) {
	const sub = "sub-fb"
	other := hashWinner(sub, "b", "c")
	steps := []struct {
		name  string
		nodes []fsm.Candidate
		want  string
	}{
		{"preferred stable", []fsm.Candidate{stable("p"), stable("b"), stable("c")}, "p"},
		{"preferred down: the tie-break picks a survivor", []fsm.Candidate{down("p"), stable("b"), stable("c")}, other},
		{"preferred up again, not yet stable: stays", []fsm.Candidate{upOnly("p"), stable("b"), stable("c")}, other},
		{"preferred stable again: fails back", []fsm.Candidate{stable("p"), stable("b"), stable("c")}, "p"},
		{"preferred draining: moves off", []fsm.Candidate{draining(stable("p")), stable("b"), stable("c")}, other},
		{"preferred undrained: back", []fsm.Candidate{stable("p"), stable("b"), stable("c")}, "p"},
	}
	owner := ""
	for _, st := range steps {
		got := fsm.Assign(sub, "p", owner, st.nodes, map[string]int{})
		if got != st.want {
			t.Fatalf("%s: owner %q → %q, want %q", st.name, owner, got, st.want)
		}
		owner = got
	}
}

// ---- apply of the cluster commands ----

func clusterState() *fsm.State {
	st := fsm.NewState()
	for _, id := range []string{"n1", "n2"} {
		fsm.Apply(st, 1, &fsm.RegisterNode{
			Node:      fsm.Node{ID: id, RaftAddr: id + ":7481", HTTPAddr: id + ":7480", JoinedMs: 10},
			TokenHash: fmt.Sprintf("%064d", len(id)+int(id[1])),
		})
	}
	for _, id := range []string{"a", "b", "c"} {
		fsm.Apply(st, 2, &fsm.CreateSub{Sub: fsm.Subscription{ID: id, Owner: "n1", HomeNode: "n1",
			SubSpec: fsm.SubSpec{Model: "call", PostURL: "http://127.0.0.1:9/", GeoSupport: "yes"}}})
	}
	return st
}

func changed(ch []fsm.Change, bucket, key string) (found, deleted bool) {
	for _, c := range ch {
		if c.Bucket == bucket && c.Key == key {
			return true, c.Value == nil
		}
	}
	return false, false
}

func TestClusterApplySetHealth(t *testing.T) {
	st := clusterState()
	res, ch := fsm.Apply(st, 3, &fsm.SetHealth{Node: "n1", Up: true, AtMs: 1000})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if n := st.Nodes["n1"]; n.Health != fsm.HealthUp || n.UpSinceMs != 1000 {
		t.Fatalf("after up: %+v, want up since 1000", n)
	}
	if ok, del := changed(ch, fsm.BucketNodes, "n1"); !ok || del {
		t.Fatalf("up: changes %v lack the node record", ch)
	}
	// Up again while up: up-since stays (it measures continuous up time).
	res, ch = fsm.Apply(st, 4, &fsm.SetHealth{Node: "n1", Up: true, AtMs: 5000})
	if res.Err != nil || len(ch) != 0 {
		t.Fatalf("up while up: err %v, changes %v; want a no-op", res.Err, ch)
	}
	if n := st.Nodes["n1"]; n.UpSinceMs != 1000 {
		t.Fatalf("up while up moved up-since to %d", n.UpSinceMs)
	}
	// Down clears up-since; up again starts a new up-since.
	fsm.Apply(st, 5, &fsm.SetHealth{Node: "n1", Up: false, AtMs: 6000})
	if n := st.Nodes["n1"]; n.Health != fsm.HealthDown || n.UpSinceMs != 0 {
		t.Fatalf("after down: %+v", n)
	}
	fsm.Apply(st, 6, &fsm.SetHealth{Node: "n1", Up: true, AtMs: 7000})
	if n := st.Nodes["n1"]; n.Health != fsm.HealthUp || n.UpSinceMs != 7000 {
		t.Fatalf("after up again: %+v, want up since 7000", n)
	}
	// Other nodes are untouched; an unknown node is not found.
	if n := st.Nodes["n2"]; n.Health != "" {
		t.Fatalf("n2 changed: %+v", n)
	}
	if res, _ := fsm.Apply(st, 7, &fsm.SetHealth{Node: "nx", Up: true}); !errors.Is(res.Err, fsm.ErrNotFound) {
		t.Fatalf("unknown node: err %v, want ErrNotFound", res.Err)
	}
	// A re-registration (new addresses) keeps the health verdict.
	fsm.Apply(st, 8, &fsm.RegisterNode{Node: fsm.Node{ID: "n1", RaftAddr: "new:1", HTTPAddr: "new:2"}})
	if n := st.Nodes["n1"]; n.Health != fsm.HealthUp || n.UpSinceMs != 7000 || n.RaftAddr != "new:1" {
		t.Fatalf("after re-registration: %+v", n)
	}
}

func TestClusterApplySetDraining(t *testing.T) {
	st := clusterState()
	fsm.Apply(st, 3, &fsm.SetHealth{Node: "n2", Up: true, AtMs: 100})
	res, ch := fsm.Apply(st, 4, &fsm.SetDraining{Node: "n2", Draining: true})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if n := st.Nodes["n2"]; !n.Draining || n.Health != fsm.HealthUp || n.UpSinceMs != 100 {
		t.Fatalf("after drain: %+v (health must stay)", n)
	}
	if ok, _ := changed(ch, fsm.BucketNodes, "n2"); !ok {
		t.Fatalf("drain: changes %v lack the node record", ch)
	}
	// Draining does not touch subscriptions: the reconciler moves them.
	if s := st.Subs["a"]; s.Owner != "n1" || s.Generation != 1 {
		t.Fatalf("drain changed a subscription: %+v", s)
	}
	fsm.Apply(st, 5, &fsm.SetDraining{Node: "n2", Draining: false})
	if st.Nodes["n2"].Draining {
		t.Fatal("undrain did not apply")
	}
	if res, _ := fsm.Apply(st, 6, &fsm.SetDraining{Node: "nx", Draining: true}); !errors.Is(res.Err, fsm.ErrNotFound) {
		t.Fatalf("unknown node: err %v, want ErrNotFound", res.Err)
	}
}

func TestClusterApplyRemoveNode(t *testing.T) {
	st := clusterState()
	tok := st.Tokens[fsm.NodeTokenID("n2")]
	if tok == nil || tok.Role != fsm.RoleNode {
		t.Fatalf("setup: n2's node token missing: %v", st.Tokens)
	}
	if _, ok := st.TokenByHash(tok.Hash); !ok {
		t.Fatal("setup: n2's node token not found by hash")
	}
	fsm.Apply(st, 3, &fsm.CreateToken{Token: fsm.Token{ID: "t1", Role: fsm.RoleSuper, Hash: "h1"}})

	res, ch := fsm.Apply(st, 4, &fsm.RemoveNode{Node: "n2"})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, ok := st.Nodes["n2"]; ok {
		t.Fatal("n2 still in the state")
	}
	if _, ok := st.Tokens[fsm.NodeTokenID("n2")]; ok {
		t.Fatal("n2's node token still stored")
	}
	if _, ok := st.TokenByHash(tok.Hash); ok {
		t.Fatal("n2's node token still authenticates")
	}
	if ok, del := changed(ch, fsm.BucketNodes, "n2"); !ok || !del {
		t.Fatalf("changes %v lack the deletion of the node record", ch)
	}
	if ok, del := changed(ch, fsm.BucketTokens, fsm.NodeTokenID("n2")); !ok || !del {
		t.Fatalf("changes %v lack the deletion of the node token", ch)
	}
	// The other node, its token and other tokens stay.
	if _, ok := st.Nodes["n1"]; !ok {
		t.Fatal("n1 removed too")
	}
	if _, ok := st.TokenByHash(st.Tokens[fsm.NodeTokenID("n1")].Hash); !ok {
		t.Fatal("n1's node token removed too")
	}
	if _, ok := st.TokenByHash("h1"); !ok {
		t.Fatal("an API token was removed")
	}
	if res, _ := fsm.Apply(st, 5, &fsm.RemoveNode{Node: "n2"}); !errors.Is(res.Err, fsm.ErrNotFound) {
		t.Fatalf("removing again: err %v, want ErrNotFound", res.Err)
	}
	// A node without a token (registered without one) is removed too.
	fsm.Apply(st, 6, &fsm.RegisterNode{Node: fsm.Node{ID: "n3"}})
	if res, _ := fsm.Apply(st, 7, &fsm.RemoveNode{Node: "n3"}); res.Err != nil {
		t.Fatalf("removing a node without a token: %v", res.Err)
	}
}

func TestClusterApplyReassign(t *testing.T) {
	st := clusterState()
	// a and b are at generation 1.
	res, ch := fsm.Apply(st, 3, &fsm.Reassign{AtMs: 5000, Moves: []fsm.Move{
		{Sub: "a", Generation: 1, Owner: "n2"},
		{Sub: "b", Generation: 1, Owner: "n2"},
	}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, id := range []string{"a", "b"} {
		s := st.Subs[id]
		if s.Owner != "n2" || s.Generation != 2 || s.UpdatedMs != 5000 {
			t.Fatalf("%s after reassign: owner %q generation %d updated %d; want n2, 2, 5000", id, s.Owner, s.Generation, s.UpdatedMs)
		}
		if ok, _ := changed(ch, fsm.BucketSubs, id); !ok {
			t.Fatalf("changes %v lack %s", ch, id)
		}
	}
	if s := st.Subs["c"]; s.Owner != "n1" || s.Generation != 1 {
		t.Fatalf("c changed: %+v", s)
	}

	// A move decided on the old generation is refused; a current one in
	// the same entry applies; the entry succeeds.
	res, ch = fsm.Apply(st, 4, &fsm.Reassign{AtMs: 6000, Moves: []fsm.Move{
		{Sub: "a", Generation: 1, Owner: "n1"}, // stale
		{Sub: "c", Generation: 1, Owner: "n2"},
		{Sub: "deleted", Generation: 1, Owner: "n2"}, // no such sub
	}})
	if res.Err != nil {
		t.Fatalf("partly stale entry: %v", res.Err)
	}
	if s := st.Subs["a"]; s.Owner != "n2" || s.Generation != 2 {
		t.Fatalf("stale move applied: %+v", s)
	}
	if s := st.Subs["c"]; s.Owner != "n2" || s.Generation != 2 {
		t.Fatalf("current move not applied: %+v", s)
	}
	if len(ch) != 1 {
		t.Fatalf("changes %v, want only c", ch)
	}

	// Every move stale: ErrConflict and nothing changes.
	before := *st.Subs["a"]
	res, ch = fsm.Apply(st, 5, &fsm.Reassign{AtMs: 7000, Moves: []fsm.Move{
		{Sub: "a", Generation: 1, Owner: "n1"},
		{Sub: "b", Generation: 7, Owner: "n1"},
	}})
	if !errors.Is(res.Err, fsm.ErrConflict) || len(ch) != 0 {
		t.Fatalf("all stale: err %v, changes %v; want ErrConflict and none", res.Err, ch)
	}
	if s := st.Subs["a"]; s.Owner != before.Owner || s.Generation != before.Generation || s.UpdatedMs != before.UpdatedMs {
		t.Fatalf("a changed by a refused entry: %+v", s)
	}

	// Moving to "" (unassigning) is a move like any other.
	res, _ = fsm.Apply(st, 6, &fsm.Reassign{Moves: []fsm.Move{{Sub: "b", Generation: 2, Owner: ""}}})
	if res.Err != nil || st.Subs["b"].Owner != "" || st.Subs["b"].Generation != 3 {
		t.Fatalf("unassign: err %v, sub %+v", res.Err, st.Subs["b"])
	}

	// An empty entry is not a conflict.
	if res, _ := fsm.Apply(st, 7, &fsm.Reassign{}); res.Err != nil {
		t.Fatalf("empty reassign: %v", res.Err)
	}
}

// TestReassignFencesOldOwnerReports: a reassignment bumps the generation,
// so a late report of the old owner counts its deltas but cannot move the
// cursors or the status any more; the new owner's report can.
func TestReassignFencesOldOwnerReports(t *testing.T) {
	st := clusterState()
	fsm.Apply(st, 3, &fsm.Reassign{Moves: []fsm.Move{{Sub: "a", Generation: 1, Owner: "n2"}}})
	fsm.Apply(st, 4, &fsm.NodeReport{Node: "n1", Seq: 1, AtMs: 100, Subs: []fsm.SubReport{{
		ID: "a", Generation: 1, Posts: 2, Status: fsm.StatusError,
		Cursors: []fsm.Cursor{{Node: "n1", Incarnation: "i", Seq: 50}},
	}}})
	s := st.Subs["a"]
	if s.Counters.Posts != 2 {
		t.Fatalf("old owner's deltas lost: %+v", s.Counters)
	}
	if len(s.Cursors) != 0 || s.Status == fsm.StatusError {
		t.Fatalf("old owner's report moved cursors or status: cursors %v status %q", s.Cursors, s.Status)
	}
	fsm.Apply(st, 5, &fsm.NodeReport{Node: "n2", Seq: 1, AtMs: 200, Subs: []fsm.SubReport{{
		ID: "a", Generation: 2, Posts: 1, Status: fsm.StatusActive,
		Cursors: []fsm.Cursor{{Node: "n1", Incarnation: "i", Seq: 40}},
	}}})
	s = st.Subs["a"]
	if s.Counters.Posts != 3 || s.Status != fsm.StatusActive || s.Cursors["n1"].Seq != 40 {
		t.Fatalf("new owner's report not applied: %+v", s)
	}
}
