package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hookswitch/hookswitch/fsm"
)

func mustOpenState(t *testing.T, dir string) *StateDB {
	t.Helper()
	s, err := OpenState(dir)
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	return s
}

func records(t *testing.T, s *StateDB) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := s.Load(func(b, k string, v []byte) error {
		out[b+"/"+k] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStateCommitSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenState(t, dir)
	if err := s.Commit(3, []fsm.Change{
		{Bucket: fsm.BucketSubs, Key: "a", Value: []byte(`{"id":"a"}`)},
		{Bucket: fsm.BucketSubs, Key: "b", Value: []byte(`{"id":"b"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(4, []fsm.Change{{Bucket: fsm.BucketSubs, Key: "a"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = mustOpenState(t, dir)
	defer s.Close()
	if s.Applied() != 4 {
		t.Fatalf("applied after reopen = %d, want 4", s.Applied())
	}
	got := records(t, s)
	if len(got) != 1 || got["subs/b"] != `{"id":"b"}` {
		t.Fatalf("records after reopen = %v, want only subs/b", got)
	}
}

func TestStateSnapshotRestore(t *testing.T) {
	src := mustOpenState(t, t.TempDir())
	defer src.Close()
	if err := src.Commit(10, []fsm.Change{{Bucket: fsm.BucketTokens, Key: "t", Value: []byte(`{"id":"t"}`)}}); err != nil {
		t.Fatal(err)
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// A commit after the snapshot opened is not in it.
	if err := src.Commit(11, []fsm.Change{{Bucket: fsm.BucketTokens, Key: "u", Value: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	data := buf.Bytes()

	tests := []struct {
		name         string
		localApplied uint64
		wantReplaced bool
		wantApplied  uint64
	}{
		{"behind: replaced", 5, true, 10},
		{"equal: kept", 10, false, 10},
		{"ahead: kept", 12, false, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := mustOpenState(t, t.TempDir())
			defer dst.Close()
			if err := dst.Commit(tc.localApplied, []fsm.Change{{Bucket: fsm.BucketSubs, Key: "local", Value: []byte(`{}`)}}); err != nil {
				t.Fatal(err)
			}
			replaced, err := dst.Restore(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if replaced != tc.wantReplaced || dst.Applied() != tc.wantApplied {
				t.Fatalf("replaced=%v applied=%d, want %v %d", replaced, dst.Applied(), tc.wantReplaced, tc.wantApplied)
			}
			got := records(t, dst)
			if tc.wantReplaced {
				if len(got) != 1 || got["tokens/t"] != `{"id":"t"}` {
					t.Fatalf("restored records = %v, want exactly tokens/t", got)
				}
			} else if _, ok := got["subs/local"]; !ok {
				t.Fatalf("kept state lost its records: %v", got)
			}
			// The restored file keeps working.
			if err := dst.Commit(tc.wantApplied+1, nil); err != nil {
				t.Fatalf("commit after restore: %v", err)
			}
		})
	}
}

func TestStateRestoreRejectsGarbage(t *testing.T) {
	s := mustOpenState(t, t.TempDir())
	defer s.Close()
	if err := s.Commit(2, []fsm.Change{{Bucket: fsm.BucketSubs, Key: "a", Value: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Restore(strings.NewReader("this is not a bbolt file"))
	if !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("err = %v, want ErrBadSnapshot", err)
	}
	if s.Applied() != 2 || len(records(t, s)) != 1 {
		t.Fatal("a rejected restore changed the state")
	}
}
