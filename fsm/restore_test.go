package fsm

import (
	"reflect"
	"testing"
)

// runningState is a cluster of n1 and n2 (with node tokens), two
// subscriptions and two API tokens.
func runningState() *State {
	st := NewState()
	Apply(st, 1, &RegisterNode{Node: Node{ID: "n1", HTTPAddr: "h1"}, TokenHash: "node-hash-1"})
	Apply(st, 2, &RegisterNode{Node: Node{ID: "n2", HTTPAddr: "h2"}, TokenHash: "node-hash-2"})
	Apply(st, 3, &CreateSub{Sub: sub("keep")})
	Apply(st, 4, &CreateSub{Sub: sub("gone")})
	Apply(st, 5, &CreateToken{Token: Token{ID: "root", Role: RoleSuper, Hash: "running-root"}})
	Apply(st, 6, &CreateToken{Token: Token{ID: "old", Role: RoleDomain, Domain: "d1", Hash: "running-old"}})
	for range 3 { // bump keep's generation to 4
		Apply(st, 7, &RewindSub{ID: "keep"})
	}
	// keep's running cursors: n1 at the file's incarnation, n2 at another.
	Apply(st, 8, &NodeReport{Node: "n1", Seq: 1, Subs: []SubReport{{ID: "keep", Generation: 4, Cursors: []Cursor{
		{Node: "n1", Incarnation: "inc1", Seq: 90}, {Node: "n2", Incarnation: "inc2-now", Seq: 60},
	}}}})
	return st
}

func restoreCmd() *RestoreState {
	keep := sub("keep")
	keep.Generation = 2
	keep.Secret = "whsec_from_file"
	keep.Cursors = map[string]Cursor{
		"n1":   {Node: "n1", Incarnation: "inc1", Seq: 40},
		"n2":   {Node: "n2", Incarnation: "inc2-old", Seq: 500},
		"gone": {Node: "gone", Incarnation: "incg", Seq: 7},
	}
	fresh := sub("fresh")
	fresh.Generation = 9
	fresh.Owner = "n9" // not a member
	return &RestoreState{
		Subs: []Subscription{keep, fresh},
		Tokens: []Token{
			{ID: "root", Role: RoleSuper, Hash: "file-root"},
			{ID: "tok_a", Role: RoleReseller, Reseller: "r1", Hash: "file-a"},
			{ID: "node-n9", Role: RoleNode, Hash: "file-node"}, // another cluster's node
			{ID: "dup", Role: RoleUser, Hash: "node-hash-1"},   // collides with a node token
		},
		AtMs: 12345,
	}
}

func TestApplyRestoreStateReplacesSubsAndTokens(t *testing.T) {
	st := runningState()
	res, changes := Apply(st, 20, restoreCmd())
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := sortedKeys(st.Subs); !reflect.DeepEqual(got, []string{"fresh", "keep"}) {
		t.Fatalf("subs %v, want fresh and keep", got)
	}
	keep := st.Subs["keep"]
	if keep.Secret != "whsec_from_file" {
		t.Errorf("keep's secret %q, want the file's", keep.Secret)
	}
	if keep.Generation != 5 { // above the running 4 (and the file's 2)
		t.Errorf("keep's generation %d, want 5", keep.Generation)
	}
	if keep.Version != 20 || keep.UpdatedMs != 12345 {
		t.Errorf("keep's version/updated %d/%d, want 20/12345", keep.Version, keep.UpdatedMs)
	}
	// n1: the file's (same incarnation: back to the saved position); n2:
	// the running one (the file's is of a log n2 no longer has); gone: not
	// a member.
	want := map[string]Cursor{"n1": {Node: "n1", Incarnation: "inc1", Seq: 40}, "n2": {Node: "n2", Incarnation: "inc2-now", Seq: 60}}
	if !reflect.DeepEqual(keep.Cursors, want) {
		t.Errorf("keep's cursors %v, want %v", keep.Cursors, want)
	}
	if keep.Owner != "n1" {
		t.Errorf("keep's owner %q, want n1 (a member)", keep.Owner)
	}
	fresh := st.Subs["fresh"]
	if fresh.Owner != "" || fresh.Generation != 10 || fresh.Cursors != nil {
		t.Errorf("fresh: owner %q generation %d cursors %v, want no owner, 10, none", fresh.Owner, fresh.Generation, fresh.Cursors)
	}

	if got := sortedKeys(st.Tokens); !reflect.DeepEqual(got, []string{"node-n1", "node-n2", "root", "tok_a"}) {
		t.Fatalf("tokens %v, want the node tokens, root and tok_a", got)
	}
	for hash, want := range map[string]string{"file-root": "root", "file-a": "tok_a", "node-hash-1": "node-n1", "node-hash-2": "node-n2"} {
		if tok, ok := st.TokenByHash(hash); !ok || tok.ID != want {
			t.Errorf("token by hash %s: %v %v, want %s", hash, tok, ok, want)
		}
	}
	for _, hash := range []string{"running-root", "running-old", "file-node"} {
		if _, ok := st.TokenByHash(hash); ok {
			t.Errorf("token hash %s still authenticates", hash)
		}
	}
	if len(st.Nodes) != 2 {
		t.Errorf("nodes %v: membership changed", sortedKeys(st.Nodes))
	}

	// The changes, stored and loaded again, give the same state.
	stored := NewState()
	for _, c := range persist(t, runningState(), changes) {
		if err := stored.Load(c.Bucket, c.Key, c.Value); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := snapshotOf(t, st), snapshotOf(t, stored); a != b {
		t.Fatalf("state from the changes differs:\n%s\n%s", b, a)
	}
}

// persist applies changes to the records of st, as a Persister would, and
// returns the records.
func persist(t *testing.T, st *State, changes []Change) []Change {
	t.Helper()
	recs := map[[2]string][]byte{}
	for id, s := range st.Subs {
		recs[[2]string{BucketSubs, id}] = subChange(s).Value
	}
	for id, tok := range st.Tokens {
		recs[[2]string{BucketTokens, id}] = record(BucketTokens, id, tok).Value
	}
	for id, n := range st.Nodes {
		recs[[2]string{BucketNodes, id}] = record(BucketNodes, id, n).Value
	}
	for _, c := range changes {
		if c.Value == nil {
			delete(recs, [2]string{c.Bucket, c.Key})
		} else {
			recs[[2]string{c.Bucket, c.Key}] = c.Value
		}
	}
	var out []Change
	for k, v := range recs {
		out = append(out, Change{Bucket: k[0], Key: k[1], Value: v})
	}
	return out
}

func TestApplyRestoreStateBootstrapAddsFileMembers(t *testing.T) {
	st := NewState()
	c := restoreCmd()
	c.Nodes = []Node{
		{ID: "n1", HTTPAddr: "old1", LastReportSeq: 99, Health: HealthUp, UpSinceMs: 5, Draining: true},
		{ID: "gone", HTTPAddr: "oldg", LastReportSeq: 7, Health: HealthDown},
	}
	c.Subs[0].Owner = "n1"
	if res, _ := Apply(st, 1, c); res.Err != nil {
		t.Fatal(res.Err)
	}
	n1 := st.Nodes["n1"]
	if n1 == nil || n1.LastReportSeq != 0 || n1.Health != "" || n1.UpSinceMs != 0 || !n1.Draining {
		t.Fatalf("n1 %+v: want the file's record with its reports cleared, draining kept", n1)
	}
	keep := st.Subs["keep"]
	if _, ok := keep.Cursors["gone"]; !ok || len(keep.Cursors) != 2 || keep.Owner != "n1" {
		t.Fatalf("keep: cursors %v owner %q, want the cursors of the file's members n1 and gone, and owner n1", keep.Cursors, keep.Owner)
	}
	// Registering the node again (it starts) keeps the restored record's
	// identity and takes the new addresses.
	Apply(st, 2, &RegisterNode{Node: Node{ID: "n1", HTTPAddr: "new1"}, TokenHash: "nh"})
	if st.Nodes["n1"].HTTPAddr != "new1" {
		t.Fatalf("n1 after registration: %+v", st.Nodes["n1"])
	}
	// A member's own record is never overwritten by the file's.
	st2 := runningState()
	c2 := restoreCmd()
	c2.Nodes = []Node{{ID: "n1", HTTPAddr: "old1"}}
	Apply(st2, 30, c2)
	if st2.Nodes["n1"].HTTPAddr != "h1" {
		t.Fatalf("member n1 overwritten: %+v", st2.Nodes["n1"])
	}
}

func TestApplyRestoreStateIsDeterministicAndRoundTrips(t *testing.T) {
	c := restoreCmd()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if CommandType(b[0]) != CmdRestoreState || b[0]&FlagSkippable != 0 {
		t.Fatalf("type byte %#x, want %d without the skippable flag", b[0], CmdRestoreState)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip gave %+v, want %+v", got, c)
	}
	run := func() string {
		st := runningState()
		Apply(st, 20, got)
		return snapshotOf(t, st)
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("same restore gave different states:\n%s\n%s", a, b)
	}
}
