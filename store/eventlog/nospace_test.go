package eventlog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a log sink safe for the committer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mountTmpfs mounts a tmpfs of size (e.g. "4m") on a new directory for the
// test. It needs root (CI and scripts/test run as root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs: run it as root (scripts/test does)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestAppendDiskFull: on a full file system an append fails with
// ErrNoSpace and stores nothing; the episode is logged once however many
// appends fail; when space returns, appends succeed again by themselves
// and every record stored before and after is there, in sequence.
func TestAppendDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	var logs syncBuffer
	l := openTest(t, Options{Path: filepath.Join(dir, "events.db"), Logger: slog.New(slog.NewTextHandler(&logs, nil))}, hooks{})
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 1000)
	entries := []Entry{{Model: "call", Body: body}}
	if _, _, err := l.Append(ctx, entries); err != nil {
		t.Fatal(err)
	}
	// Fill the file system.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{1}, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	stored := l.LastSeq()
	failed := 0
	for i := 0; i < 200 && failed < 5; i++ {
		_, _, err := l.Append(ctx, []Entry{{Model: "call", Body: bytes.Repeat([]byte("y"), 8000)}})
		switch {
		case err == nil:
			stored++ // bbolt had free pages left
		case errors.Is(err, ErrNoSpace):
			failed++
		default:
			t.Fatalf("append on a full disk: %v, want ErrNoSpace", err)
		}
	}
	if failed < 5 {
		t.Fatalf("200 appends of 8 KB on a full 4 MiB file system: only %d failed", failed)
	}
	if l.LastSeq() != stored {
		t.Fatalf("last seq %d after failed appends, want %d (nothing of a failed append is stored)", l.LastSeq(), stored)
	}
	if n := strings.Count(logs.String(), "disk under the event log is full"); n != 1 {
		t.Fatalf("%d log lines for one full-disk episode, want 1:\n%s", n, logs.String())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	first, _, err := l.Append(ctx, entries)
	if err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	if first != stored+1 {
		t.Fatalf("first seq after recovery %d, want %d", first, stored+1)
	}
	if !strings.Contains(logs.String(), "space returned") {
		t.Fatalf("recovery not logged:\n%s", logs.String())
	}
	recs, err := l.Read(1, int(first)+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != int(first) {
		t.Fatalf("%d records after recovery, want %d", len(recs), first)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
	}
}
