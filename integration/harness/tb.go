package harness

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// TB is what the harness needs of a test: *testing.T and *testing.B
// satisfy it, and MainTB adapts a main program.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// errorf reports a failure that must not stop the caller (cleanups, other
// goroutines): t.Errorf when t has it, else a log line.
func errorf(t TB, format string, args ...any) {
	if e, ok := t.(interface{ Errorf(string, ...any) }); ok {
		e.Errorf(format, args...)
		return
	}
	t.Logf("ERROR: "+format, args...)
}

// pollEvery is WaitFor's polling period.
const pollEvery = 20 * time.Millisecond

// WaitFor polls cond every 20ms until it reports ok, or fails t after
// timeout with what cond expected and the last thing it saw.
func WaitFor(t TB, cond func() (ok bool, want, seen string), timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		ok, want, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s: expected %s; last seen: %s", timeout, want, seen)
		}
		<-tick.C
	}
}

// Main is the TB of a main program (a benchmark): Logf writes to stderr,
// Fatalf runs the cleanups and exits 1, Close runs the cleanups.
type Main struct {
	// Keep keeps the temporary directory at Close (it is kept anyway
	// when the run failed), and says where it is.
	Keep bool

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	tmp      string
}

// MainTB returns a TB for a main program. Call Close before returning
// from main (defer it); Fatalf closes it itself.
func MainTB() *Main { return &Main{} }

// Helper does nothing.
func (m *Main) Helper() {}

// Logf prints a line to stderr.
func (m *Main) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// Errorf prints a line to stderr and marks the run failed.
func (m *Main) Errorf(format string, args ...any) {
	m.mu.Lock()
	m.failed = true
	m.mu.Unlock()
	m.Logf(format, args...)
}

// Fatalf prints a line, runs the cleanups and exits 1.
func (m *Main) Fatalf(format string, args ...any) {
	m.Errorf(format, args...)
	m.Close()
	os.Exit(1)
}

// Cleanup registers f to run at Close, last registered first.
func (m *Main) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

// TempDir returns a new directory under one temporary directory that
// Close removes.
func (m *Main) TempDir() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tmp == "" {
		dir, err := os.MkdirTemp("", "hookswitch-harness-")
		if err != nil {
			m.mu.Unlock()
			m.Fatalf("temp dir: %v", err)
		}
		m.tmp = dir
	}
	dir, err := os.MkdirTemp(m.tmp, "")
	if err != nil {
		m.mu.Unlock()
		m.Fatalf("temp dir: %v", err)
	}
	return dir
}

// Failed reports whether Errorf or Fatalf was called.
func (m *Main) Failed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

// Close runs the cleanups (last registered first) and removes the temp
// dirs unless Keep is set or the run failed. It can be called more than
// once.
func (m *Main) Close() {
	for {
		m.mu.Lock()
		if len(m.cleanups) == 0 {
			tmp, keep := m.tmp, m.Keep || m.failed
			m.tmp = ""
			m.mu.Unlock()
			switch {
			case tmp == "":
			case keep:
				m.Logf("kept %s (data dirs, node logs)", tmp)
			default:
				_ = os.RemoveAll(tmp)
			}
			return
		}
		f := m.cleanups[len(m.cleanups)-1]
		m.cleanups = m.cleanups[:len(m.cleanups)-1]
		m.mu.Unlock()
		f()
	}
}
