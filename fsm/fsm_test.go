package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"sort"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

func sub(id string) Subscription {
	return Subscription{
		ID: id,
		SubSpec: SubSpec{
			Model: "call", PostURL: "http://127.0.0.1:9/hook", Reseller: "*", Domain: "d1", User: "*",
			GeoSupport: "yes", Encoding: "json-array", BatchMax: 100, TimeoutMs: 15000, Secret: "whsec_x",
		},
		CreatedMs: 1000, UpdatedMs: 1000, HomeNode: "n1", Owner: "n1", Status: StatusPending,
	}
}

func stateWith(subs ...Subscription) *State {
	st := NewState()
	for i := range subs {
		s := subs[i]
		s.Version, s.Generation = 1, 1
		st.Subs[s.ID] = &s
	}
	return st
}

func TestApply(t *testing.T) {
	withCounters := sub("a")
	withCounters.Counters = Counters{Posts: 7, Errors: 3, Events: 9}
	suspended := sub("a")
	suspended.Status = StatusSuspended
	newSpec := sub("a").SubSpec
	newSpec.Domain, newSpec.BatchMax = "d2", 10

	tests := []struct {
		name    string
		st      *State
		cmd     Command
		wantErr error
		check   func(t *testing.T, st *State, res Result, ch []Change)
	}{
		{
			name: "create", st: NewState(), cmd: &CreateSub{Sub: sub("a")},
			check: func(t *testing.T, st *State, res Result, ch []Change) {
				got := st.Subs["a"]
				if got == nil || got.Version != 5 || got.Generation != 1 || got.Status != StatusPending {
					t.Fatalf("created sub = %+v, want version 5, generation 1, pending", got)
				}
				if res.Sub == nil || res.Sub.ID != "a" || res.Sub == got {
					t.Fatalf("result must be a copy of the new sub, got %+v", res.Sub)
				}
				wantChanges(t, ch, BucketSubs, "a", true)
			},
		},
		{name: "create existing", st: stateWith(sub("a")), cmd: &CreateSub{Sub: sub("a")}, wantErr: ErrExists},
		{name: "create existing id wins over duplicate", st: stateWith(sub("a")), cmd: &CreateSub{Sub: sub("a"), Unique: true}, wantErr: ErrExists},
		{
			name: "create duplicate parameters", st: stateWith(sub("c"), sub("a")), cmd: &CreateSub{Sub: sub("b"), Unique: true}, wantErr: ErrDuplicate,
			check: func(t *testing.T, _ *State, res Result, _ []Change) {
				if res.Sub == nil || res.Sub.ID != "a" {
					t.Fatalf("duplicate result names %+v, want the smallest id a", res.Sub)
				}
			},
		},
		{
			// Logs written before the rule existed replay as they did.
			name: "create duplicate parameters without Unique", st: stateWith(sub("a")), cmd: &CreateSub{Sub: sub("b")},
			check: func(t *testing.T, st *State, _ Result, _ []Change) {
				if len(st.Subs) != 2 {
					t.Fatalf("subs = %d, want 2", len(st.Subs))
				}
			},
		},
		{
			name: "create unique with one parameter different", st: stateWith(sub("a")),
			cmd: &CreateSub{Sub: func() Subscription { s := sub("b"); s.User = "u1"; return s }(), Unique: true},
			check: func(t *testing.T, st *State, _ Result, _ []Change) {
				if st.Subs["b"] == nil {
					t.Fatal("a subscription differing in user was not created")
				}
			},
		},
		{
			name: "update replaces spec and keeps counters", st: stateWith(withCounters),
			cmd: &UpdateSub{ID: "a", Spec: newSpec, AtMs: 2000},
			check: func(t *testing.T, st *State, _ Result, ch []Change) {
				got := st.Subs["a"]
				if got.Domain != "d2" || got.BatchMax != 10 || got.UpdatedMs != 2000 || got.Version != 5 {
					t.Fatalf("updated sub = %+v", got)
				}
				if got.Counters.Posts != 7 || got.Counters.Errors != 3 {
					t.Fatalf("counters changed without reset: %+v", got.Counters)
				}
				wantChanges(t, ch, BucketSubs, "a", true)
			},
		},
		{
			name: "update resets counters", st: stateWith(withCounters),
			cmd: &UpdateSub{ID: "a", Spec: newSpec, ResetPosts: true, ResetErrors: true},
			check: func(t *testing.T, st *State, _ Result, _ []Change) {
				if c := st.Subs["a"].Counters; c.Posts != 0 || c.Errors != 0 || c.Events != 9 {
					t.Fatalf("counters after reset = %+v, want posts 0 errors 0 events 9", c)
				}
			},
		},
		{name: "update compare-and-set mismatch", st: stateWith(sub("a")), cmd: &UpdateSub{ID: "a", Spec: newSpec, ExpectVersion: 4}, wantErr: ErrConflict},
		{
			name: "update compare-and-set match", st: stateWith(sub("a")), cmd: &UpdateSub{ID: "a", Spec: newSpec, ExpectVersion: 1},
			check: func(t *testing.T, st *State, _ Result, _ []Change) {
				if st.Subs["a"].Domain != "d2" {
					t.Fatal("update with matching version did not apply")
				}
			},
		},
		{name: "update missing", st: NewState(), cmd: &UpdateSub{ID: "a", Spec: newSpec}, wantErr: ErrNotFound},
		{
			name: "delete", st: stateWith(sub("a"), sub("b")), cmd: &DeleteSub{ID: "a"},
			check: func(t *testing.T, st *State, _ Result, ch []Change) {
				if _, ok := st.Subs["a"]; ok || len(st.Subs) != 1 {
					t.Fatalf("after delete subs = %v", st.Subs)
				}
				wantChanges(t, ch, BucketSubs, "a", false)
			},
		},
		{name: "delete missing", st: NewState(), cmd: &DeleteSub{ID: "a"}, wantErr: ErrNotFound},
		{
			name: "pause", st: stateWith(sub("a")), cmd: &SetPaused{ID: "a", Paused: true, AtMs: 3000},
			check: func(t *testing.T, st *State, _ Result, _ []Change) {
				if s := st.Subs["a"]; !s.Paused || s.UpdatedMs != 3000 {
					t.Fatalf("paused sub = %+v", s)
				}
			},
		},
		{
			name: "resume a suspended sub makes it pending", st: stateWith(suspended), cmd: &SetPaused{ID: "a", Paused: false},
			check: func(t *testing.T, st *State, _ Result, _ []Change) {
				if s := st.Subs["a"]; s.Paused || s.Status != StatusPending {
					t.Fatalf("resumed sub = %+v, want pending", s)
				}
			},
		},
		{name: "pause missing", st: NewState(), cmd: &SetPaused{ID: "a", Paused: true}, wantErr: ErrNotFound},
		{
			name: "create token", st: NewState(), cmd: &CreateToken{Token: Token{ID: "t1", Role: RoleSuper, Hash: "h1"}},
			check: func(t *testing.T, st *State, _ Result, ch []Change) {
				if tok, ok := st.TokenByHash("h1"); !ok || tok.ID != "t1" {
					t.Fatalf("token by hash = %v %v", tok, ok)
				}
				wantChanges(t, ch, BucketTokens, "t1", true)
			},
		},
		{
			name: "create token with an existing hash", st: func() *State {
				st := NewState()
				Apply(st, 1, &CreateToken{Token: Token{ID: "t1", Hash: "h1"}})
				return st
			}(),
			cmd: &CreateToken{Token: Token{ID: "t2", Hash: "h1"}}, wantErr: ErrExists,
		},
		{
			name: "revoke token", st: func() *State {
				st := NewState()
				Apply(st, 1, &CreateToken{Token: Token{ID: "t1", Hash: "h1"}})
				return st
			}(),
			cmd: &RevokeToken{ID: "t1"},
			check: func(t *testing.T, st *State, _ Result, ch []Change) {
				if _, ok := st.TokenByHash("h1"); ok || len(st.Tokens) != 0 {
					t.Fatal("revoked token still resolves")
				}
				wantChanges(t, ch, BucketTokens, "t1", false)
			},
		},
		{name: "revoke missing token", st: NewState(), cmd: &RevokeToken{ID: "t1"}, wantErr: ErrNotFound},
		{
			name: "register node keeps first join time", st: func() *State {
				st := NewState()
				Apply(st, 1, &RegisterNode{Node: Node{ID: "n1", HTTPAddr: "a:1", JoinedMs: 10}})
				return st
			}(),
			cmd: &RegisterNode{Node: Node{ID: "n1", HTTPAddr: "a:2", JoinedMs: 20}},
			check: func(t *testing.T, st *State, _ Result, _ []Change) {
				if n := st.Nodes["n1"]; n.HTTPAddr != "a:2" || n.JoinedMs != 10 {
					t.Fatalf("node = %+v, want new address and joined 10", n)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshotOf(t, tc.st)
			res, ch := Apply(tc.st, 5, tc.cmd)
			if !errors.Is(res.Err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", res.Err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if tc.check != nil {
					tc.check(t, tc.st, res, ch)
				}
				if len(ch) != 0 {
					t.Fatalf("a failed command returned changes: %v", ch)
				}
				if after := snapshotOf(t, tc.st); after != before {
					t.Fatalf("a failed command changed the state:\nbefore %s\nafter  %s", before, after)
				}
				return
			}
			if tc.check != nil {
				tc.check(t, tc.st, res, ch)
			}
		})
	}
}

func wantChanges(t *testing.T, ch []Change, bucket, key string, put bool) {
	t.Helper()
	if len(ch) != 1 || ch[0].Bucket != bucket || ch[0].Key != key || (ch[0].Value != nil) != put {
		t.Fatalf("changes = %+v, want one %s of %s/%s", ch, map[bool]string{true: "put", false: "delete"}[put], bucket, key)
	}
}

// snapshotOf renders a state canonically, for comparisons.
func snapshotOf(t *testing.T, st *State) string {
	t.Helper()
	b, err := json.Marshal(struct {
		S map[string]*Subscription
		T map[string]*Token
		N map[string]*Node
	}{st.Subs, st.Tokens, st.Nodes})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApplyIsDeterministic(t *testing.T) {
	cmds := []Command{
		&CreateSub{Sub: sub("a")}, &CreateSub{Sub: sub("b")}, &SetPaused{ID: "a", Paused: true, AtMs: 5},
		&UpdateSub{ID: "b", Spec: sub("b").SubSpec, AtMs: 6}, &DeleteSub{ID: "a"},
		&CreateToken{Token: Token{ID: "t", Hash: "h"}}, &RegisterNode{Node: Node{ID: "n1"}},
	}
	run := func() string {
		st := NewState()
		for i, c := range cmds {
			Apply(st, uint64(i+1), c)
		}
		return snapshotOf(t, st)
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("same commands gave different states:\n%s\n%s", a, b)
	}
}

func TestEncodeDecode(t *testing.T) {
	cmds := []Command{
		&CreateSub{Sub: sub("a")}, &UpdateSub{ID: "a", Spec: sub("a").SubSpec, ExpectVersion: 3, ResetPosts: true},
		&DeleteSub{ID: "a"}, &SetPaused{ID: "a", Paused: true}, &CreateToken{Token: Token{ID: "t", Hash: "h"}},
		&RevokeToken{ID: "t"}, &RegisterNode{Node: Node{ID: "n", RaftAddr: "r", HTTPAddr: "h"}},
	}
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if CommandType(b[0]) != c.Type() {
			t.Fatalf("%s: type byte %d", c.Type(), b[0])
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", c.Type(), err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("%s: round trip gave %+v, want %+v", c.Type(), got, c)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrUndecodable},
		{"unknown type", []byte{99, '{', '}'}, ErrUndecodable},
		{"unknown skippable type", []byte{99 | FlagSkippable, '{', '}'}, ErrUnknownSkippable},
		{"bad payload", []byte{byte(CmdCreateSub), '{'}, ErrUndecodable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// memPersister is an in-memory Persister for unit tests of the adapter.
type memPersister struct {
	mu      sync.Mutex
	data    map[string]map[string][]byte
	applied uint64
	commits int
}

func newMem() *memPersister { return &memPersister{data: map[string]map[string][]byte{}} }

func (m *memPersister) Applied() uint64 { m.mu.Lock(); defer m.mu.Unlock(); return m.applied }

func (m *memPersister) Load(visit func(b, k string, v []byte) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for b, kv := range m.data {
		for k, v := range kv {
			if err := visit(b, k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memPersister) Commit(applied uint64, ch []Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range ch {
		if m.data[c.Bucket] == nil {
			m.data[c.Bucket] = map[string][]byte{}
		}
		if c.Value == nil {
			delete(m.data[c.Bucket], c.Key)
		} else {
			m.data[c.Bucket][c.Key] = c.Value
		}
	}
	m.applied = applied
	m.commits++
	return nil
}

type memSnap struct{ b []byte }

func (s memSnap) WriteTo(w io.Writer) (int64, error) { n, err := w.Write(s.b); return int64(n), err }
func (memSnap) Release()                             {}

func (m *memPersister) Snapshot() (PersistedSnapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := json.Marshal(struct {
		Applied uint64
		Data    map[string]map[string][]byte
	}{m.applied, m.data})
	return memSnap{b}, err
}

func (m *memPersister) Restore(r io.Reader) (bool, error) {
	var s struct {
		Applied uint64
		Data    map[string]map[string][]byte
	}
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.Applied <= m.applied {
		return false, nil
	}
	m.applied, m.data = s.Applied, s.Data
	return true, nil
}

func cmdLog(t *testing.T, idx uint64, c Command) *raft.Log {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: idx, Type: raft.LogCommand, Data: b}
}

func TestFSMBatchSkipsAppliedAndUnknown(t *testing.T) {
	p := newMem()
	f, err := New(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen [][]Change
	f.AddObserver(func(ch []Change, reset bool) { seen = append(seen, ch) })
	changed := f.Changed()

	out := f.ApplyBatch([]*raft.Log{
		cmdLog(t, 1, &CreateSub{Sub: sub("a")}),
		{Index: 2, Type: raft.LogCommand, Data: []byte{77 | FlagSkippable, '{', '}'}},
		{Index: 3, Type: raft.LogConfiguration},
		cmdLog(t, 4, &CreateSub{Sub: sub("b")}),
	})
	if r, ok := out[0].(Result); !ok || r.Err != nil || r.Sub.ID != "a" {
		t.Fatalf("result 0 = %#v", out[0])
	}
	if out[1] != nil {
		t.Fatalf("skipped entry has a result: %#v", out[1])
	}
	if p.applied != 4 || p.commits != 1 || f.Applied() != 4 {
		t.Fatalf("applied=%d commits=%d, want one commit at 4", p.applied, p.commits)
	}
	if len(seen) != 1 || len(seen[0]) != 2 {
		t.Fatalf("observer saw %v, want one batch of 2 changes", seen)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed channel not closed after apply")
	}

	// A replay after restart (entries at or below applied) changes nothing.
	out = f.ApplyBatch([]*raft.Log{cmdLog(t, 4, &DeleteSub{ID: "b"})})
	if out[0] != nil || p.commits != 1 {
		t.Fatalf("re-applied an old entry: %#v, commits %d", out[0], p.commits)
	}
	f.Read(func(st *State) {
		if len(st.Subs) != 2 {
			t.Fatalf("subs = %d, want 2", len(st.Subs))
		}
	})
}

func TestFSMUnknownCommandWithoutSkipFlagIsFatal(t *testing.T) {
	f, err := New(newMem(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("an undecodable entry did not stop the FSM")
		}
	}()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{77, '{', '}'}})
}

type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

func TestSnapshotRestoreGivesIdenticalState(t *testing.T) {
	src, err := New(newMem(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i, c := range []Command{
		&CreateSub{Sub: sub("a")}, &CreateSub{Sub: sub("b")}, &SetPaused{ID: "b", Paused: true},
		&CreateToken{Token: Token{ID: "t", Role: RoleDomain, Domain: "d1", Hash: "h"}},
		&RegisterNode{Node: Node{ID: "n1", HTTPAddr: "x"}},
	} {
		logs = append(logs, cmdLog(t, uint64(i+1), c))
	}
	src.ApplyBatch(logs)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst, err := New(newMem(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var resets int
	dst.AddObserver(func(_ []Change, reset bool) {
		if reset {
			resets++
		}
	})
	if err := dst.Restore(io.NopCloser(&s)); err != nil {
		t.Fatal(err)
	}
	var a, b string
	src.Read(func(st *State) { a = snapshotOf(t, st) })
	dst.Read(func(st *State) { b = snapshotOf(t, st) })
	if a != b {
		t.Fatalf("restored state differs:\nsource   %s\nrestored %s", a, b)
	}
	if dst.Applied() != 5 || resets != 1 {
		t.Fatalf("applied=%d resets=%d, want 5 and 1", dst.Applied(), resets)
	}
	dst.Read(func(st *State) {
		if _, ok := st.TokenByHash("h"); !ok {
			t.Fatal("token hash index not rebuilt on restore")
		}
	})
}

func TestResultWireKeepsSentinels(t *testing.T) {
	for _, e := range []error{nil, ErrNotFound, ErrExists, ErrConflict, ErrDuplicate, ErrLimit} {
		s := sub("a")
		b, err := json.Marshal(Result{Err: e, Sub: &s})
		if err != nil {
			t.Fatal(err)
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(r.Err, e) || (e == nil && r.Err != nil) || r.Sub.ID != "a" {
			t.Fatalf("round trip of %v gave %v", e, r.Err)
		}
	}
}

func TestSortedSubs(t *testing.T) {
	st := stateWith(sub("c"), sub("a"), sub("b"))
	var ids []string
	for _, s := range st.SortedSubs() {
		ids = append(ids, s.ID)
	}
	if !sort.StringsAreSorted(ids) || len(ids) != 3 {
		t.Fatalf("ids = %v", ids)
	}
}
