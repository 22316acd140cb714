package fsm

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzState is a small state for commands to act on: two nodes, a
// subscription and a token.
func fuzzState() *State {
	st := NewState()
	for i, id := range []string{"n1", "n2"} {
		Apply(st, uint64(1+i), &RegisterNode{Node: Node{ID: id, RaftAddr: id + ":7481", HTTPAddr: id + ":7480", JoinedMs: 10}})
	}
	Apply(st, 3, &CreateSub{Sub: Subscription{ID: "s1", Owner: "n1", HomeNode: "n1", Generation: 1,
		SubSpec: SubSpec{Model: "call", Domain: "d", PostURL: "http://127.0.0.1:9/", GeoSupport: "yes"}}})
	Apply(st, 4, &CreateToken{Token: Token{ID: "t1", Role: "super", Hash: "h"}})
	return st
}

// FuzzDecodeCommand feeds arbitrary raft log entries to the FSM command
// decoder. Invariants: no panic; a refusal is ErrUndecodable or, for an
// unknown type with FlagSkippable, ErrUnknownSkippable (never both, never
// another error); a decoded command has the entry's type, encodes back and
// decodes to an equal command (round trip), and applying it to a state
// that has objects for it to act on does not panic.
func FuzzDecodeCommand(f *testing.F) {
	seeds := []Command{
		&CreateSub{Sub: Subscription{ID: "s2", SubSpec: SubSpec{Model: "call", PostURL: "http://x/"}}},
		&UpdateSub{ID: "s1", Spec: SubSpec{Model: "cdr", Domain: "d"}, ExpectVersion: 1, AtMs: 5},
		&DeleteSub{ID: "s1"}, &SetPaused{ID: "s1", Paused: true, AtMs: 5},
		&CreateToken{Token: Token{ID: "t2", Role: "domain", Domain: "d", Hash: "x"}}, &RevokeToken{ID: "t1"},
		&RegisterNode{Node: Node{ID: "n3", RaftAddr: "n3:1"}, TokenHash: "ab"},
		&NodeReport{Node: "n1", Seq: 1, AtMs: 5},
		&RewindSub{ID: "s1"}, &SetHealth{Node: "n2", Up: true, AtMs: 5},
		&SetDraining{Node: "n2", Draining: true}, &RemoveNode{Node: "n2"}, &Reassign{},
	}
	for _, c := range seeds {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "\x01", "\x01null", "\x01{}", "\x08{\"reports\":[{\"cursors\":[{}]}]}", "\x63{}", "\xe3{}", "\x02{\"id\":1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Decode(in)
		if err != nil {
			undecodable, skippable := errors.Is(err, ErrUndecodable), errors.Is(err, ErrUnknownSkippable)
			if undecodable == skippable {
				t.Fatalf("Decode(%q) = %v: want exactly one of ErrUndecodable, ErrUnknownSkippable", in, err)
			}
			if skippable && in[0]&FlagSkippable == 0 {
				t.Fatalf("Decode(%q): skippable without the flag", in)
			}
			return
		}
		if c.Type() != CommandType(in[0]&^FlagSkippable) {
			t.Fatalf("Decode(%q) gave a %s", in, c.Type())
		}
		enc, err := Encode(c)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", c, err)
		}
		// The encoding is canonical: what decodes re-encodes to the same
		// bytes (a value may differ only where JSON cannot tell, such as
		// an empty list and none: every replica decodes the same bytes).
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("round trip of %q: %#v -> %s does not decode: %v", in, c, enc, err)
		}
		if enc2, err := Encode(again); err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip of %q: %#v -> %s -> %#v -> %s, %v", in, c, enc, again, enc2, err)
		}
		Apply(fuzzState(), 10, c)
	})
}
