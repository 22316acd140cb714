package backup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hookswitch/hookswitch/fsm"
)

func testState() *fsm.State {
	st := fsm.NewState()
	fsm.Apply(st, 1, &fsm.RegisterNode{Node: fsm.Node{ID: "n1", HTTPAddr: "h1", RaftAddr: "r1"}, TokenHash: "nh1"})
	fsm.Apply(st, 2, &fsm.RegisterNode{Node: fsm.Node{ID: "n2", HTTPAddr: "h2", RaftAddr: "r2"}, TokenHash: "nh2"})
	for _, id := range []string{"sub_b", "sub_a"} {
		fsm.Apply(st, 3, &fsm.CreateSub{Sub: fsm.Subscription{ID: id, Owner: "n1", SubSpec: fsm.SubSpec{
			Model: "call", PostURL: "http://127.0.0.1:9/", Secret: "whsec_" + id, Domain: "d1",
			Filters: []fsm.Filter{{Property: "term-user", Value: "100"}},
		}}})
	}
	fsm.Apply(st, 4, &fsm.NodeReport{Node: "n1", Seq: 1, Subs: []fsm.SubReport{{ID: "sub_a", Generation: 1,
		Cursors: []fsm.Cursor{{Node: "n2", Incarnation: "inc2", Seq: 17}}}}})
	fsm.Apply(st, 5, &fsm.CreateToken{Token: fsm.Token{ID: "root", Role: fsm.RoleSuper, Hash: "rh"}})
	return st
}

func encode(t *testing.T, s *Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	in := FromState(testState(), Header{CreatedMs: 77, SourceNode: "n1", Applied: 5})
	if in.Header.Subs != 2 || in.Header.Tokens != 3 || in.Header.Nodes != 2 {
		t.Fatalf("header counts %+v, want 2 subs, 3 tokens, 2 nodes", in.Header)
	}
	if in.Subs[0].ID != "sub_a" {
		t.Fatalf("subs not in id order: %s first", in.Subs[0].ID)
	}
	b := encode(t, in)
	var calls [][2]int
	out, err := Read(bytes.NewReader(b), func(done, total int) { calls = append(calls, [2]int{done, total}) })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
	if out.Subs[0].Secret != "whsec_sub_a" || out.Subs[0].Cursors["n2"].Seq != 17 {
		t.Fatalf("secret or cursor lost: %+v", out.Subs[0])
	}
	if len(calls) < 2 || calls[0] != [2]int{0, 7} || calls[len(calls)-1] != [2]int{7, 7} {
		t.Fatalf("progress calls %v, want 0/7 first and 7/7 last", calls)
	}
	// Deterministic: the same state gives the same bytes.
	if again := encode(t, FromState(testState(), Header{CreatedMs: 77, SourceNode: "n1", Applied: 5})); !bytes.Equal(b, again) {
		t.Fatal("the same state encoded differently")
	}
}

func TestReadRefusesBadFiles(t *testing.T) {
	good := encode(t, FromState(testState(), Header{Applied: 5}))
	lines := strings.SplitAfter(string(good), "\n")
	lines = lines[:len(lines)-1] // the empty string after the last newline
	header, records, end := lines[0], lines[1:len(lines)-1], lines[len(lines)-1]
	join := func(parts ...[]string) []byte {
		var s string
		for _, p := range parts {
			s += strings.Join(p, "")
		}
		return []byte(s)
	}
	tampered := strings.Replace(string(good), "whsec_sub_a", "whsec_sub_x", 1)
	dupHeader := strings.Replace(header, `"subs":2`, `"subs":3`, 1)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"not json", []byte("hello\n"), ErrFormat},
		{"other format", []byte(`{"format":"other","version":1}` + "\n"), ErrFormat},
		{"newer version", []byte(strings.Replace(string(good), `"version":1`, `"version":2`, 1)), ErrVersion},
		{"no end line", join([]string{header}, records), ErrTruncated},
		{"cut mid line", good[:len(good)-10], ErrTruncated},
		{"tampered record", []byte(tampered), ErrChecksum},
		{"record removed", join([]string{header}, records[1:], []string{end}), ErrChecksum},
		{"header count wrong", join([]string{dupHeader}, records, []string{end}), ErrChecksum},
		{"bbolt file", []byte("\x00\x00\x00\x00\xed\xda\x0c\xed"), ErrFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.in), nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReadChecksCounts(t *testing.T) {
	// A file whose checksum is right but whose records disagree with the
	// header (written by a buggy or hostile writer) is refused.
	s := FromState(testState(), Header{})
	s.Header.Subs = 3
	if _, err := Read(bytes.NewReader(encode(t, s)), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid", err)
	}
	s = FromState(testState(), Header{})
	s.Tokens[1].Hash = s.Tokens[0].Hash
	if _, err := Read(bytes.NewReader(encode(t, s)), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("repeated token hash: err %v, want ErrInvalid", err)
	}
	s = FromState(testState(), Header{})
	s.Subs[1].ID = s.Subs[0].ID
	if _, err := Read(bytes.NewReader(encode(t, s)), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("repeated subscription id: err %v, want ErrInvalid", err)
	}
}

func TestWriteFileIsPrivateAndDoesNotOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap.json")
	s := FromState(testState(), Header{})
	if err := WriteFile(path, s, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600: the file holds secrets", fi.Mode().Perm())
	}
	if err := WriteFile(path, s, false); err == nil {
		t.Fatal("overwrote an existing file without overwrite")
	}
	if err := WriteFile(path, s, true); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := ReadFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatal("file content differs")
	}
	// A bad stream leaves no file behind.
	bad := filepath.Join(filepath.Dir(path), "bad.json")
	if _, err := CopyToFile(bad, strings.NewReader("nope\n"), false, nil); !errors.Is(err, ErrFormat) {
		t.Fatalf("err %v, want ErrFormat", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries after a failed copy, want only the good file", len(ents))
	}
}
