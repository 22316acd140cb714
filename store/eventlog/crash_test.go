package eventlog

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

const (
	// crashChildEnv switches the test binary into the crash child: its value
	// is the path of the log to append to.
	crashChildEnv = "EVENTLOG_CRASH_CHILD_PATH"
	// crashAcks is how many acknowledged appends the parent waits for before the kill.
	crashAcks = 300
	// crashKillAfter bounds the time before the kill however few acks came.
	crashKillAfter = 10 * time.Second
	// crashChildWriters is the number of concurrent appenders in the child.
	crashChildWriters = 4
	// crashChildLifetime stops an orphaned child that was never killed.
	crashChildLifetime = time.Minute
)

// crashBody is the body of entry k of call i of writer w in the crash child.
func crashBody(w, i, k int) string { return fmt.Sprintf(`{"w":%d,"i":%d,"k":%d}`, w, i, k) }

// TestCrashDurability runs a child process that appends in a loop and
// prints every acknowledged append, SIGKILLs it mid-stream, reopens the log
// and checks that every acknowledged record is there.
func TestCrashDurability(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := testPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()

	type ack struct {
		first   uint64
		n, w, i int
	}
	var acks []ack
	parse := func(line string) {
		var a ack
		if _, err := fmt.Sscanf(line, "ack %d %d %d %d", &a.first, &a.n, &a.w, &a.i); err == nil {
			acks = append(acks, a)
		}
	}
	timer := time.NewTimer(crashKillAfter)
	defer timer.Stop()
	killed := false
	for !killed {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("child exited before the kill; stderr:\n%s", stderr.String())
			}
			parse(line)
			if len(acks) >= crashAcks {
				killed = true
			}
		case <-timer.C:
			killed = true
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
		t.Fatal(err)
	}
	// Acks printed before the kill landed are acknowledged too.
	for line := range lines {
		parse(line)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("child exited cleanly: it was not killed mid-stream")
	}
	if len(acks) == 0 {
		t.Fatalf("no acknowledged appends within %v; stderr:\n%s", crashKillAfter, stderr.String())
	}

	l, err := Open(Options{Path: path, Logger: testLogger()})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer l.Close()
	var maxSeq uint64
	for _, a := range acks {
		recs, err := l.Read(a.first, a.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != a.n {
			t.Fatalf("ack first=%d n=%d: only %d records after reopen", a.first, a.n, len(recs))
		}
		for k, r := range recs {
			if r.Seq != a.first+uint64(k) || string(r.Body) != crashBody(a.w, a.i, k) {
				t.Fatalf("ack first=%d: record %d = seq %d %s, want seq %d %s",
					a.first, k, r.Seq, r.Body, a.first+uint64(k), crashBody(a.w, a.i, k))
			}
		}
		maxSeq = max(maxSeq, a.first+uint64(a.n)-1)
	}
	if l.LastSeq() < maxSeq {
		t.Fatalf("LastSeq %d below the highest acknowledged seq %d", l.LastSeq(), maxSeq)
	}
	// The reopened log keeps working.
	first, _ := mustAppend(t, l, ev("call", `{}`))
	if first != l.LastSeq() || first <= maxSeq {
		t.Fatalf("append after reopen got seq %d (last %d, acked up to %d)", first, l.LastSeq(), maxSeq)
	}
	t.Logf("%d acknowledged appends (up to seq %d) survived kill -9; %d records stored", len(acks), maxSeq, l.Stats().Records)
}

// crashChild appends forever from several goroutines, printing each
// acknowledged append as "ack firstSeq count writer call".
func crashChild(path string) {
	l, err := Open(Options{Path: path, Logger: testLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), crashChildLifetime)
	defer cancel()
	var outMu sync.Mutex
	var wg sync.WaitGroup
	for w := range crashChildWriters {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				n := 1 + (w+i)%5
				entries := make([]Entry, n)
				for k := range entries {
					entries[k] = Entry{Model: "call", Body: []byte(crashBody(w, i, k))}
				}
				first, _, err := l.Append(ctx, entries)
				if err != nil {
					return
				}
				outMu.Lock()
				fmt.Fprintf(os.Stdout, "ack %d %d %d %d\n", first, n, w, i)
				outMu.Unlock()
			}
		})
	}
	wg.Wait()
	_ = l.Close()
	os.Exit(3) // never a clean exit: the parent expects to kill it
}
