package integration

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/integration/harness"
)

// readyTimeout bounds a node's start until /readyz answers 200.
var readyTimeout = harness.ReadyTimeout

// Timeouts of the tests, beside the harness's own.
const (
	// stopTimeout is how long a SIGTERM'd node may take to exit.
	stopTimeout = harness.StopTimeout
	// pollEvery is the period of the tests' own polling loops.
	pollEvery = 20 * time.Millisecond
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	harness.RemoveBinary()
	os.Exit(code)
}

// skipShort skips process tests under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real hookswitch processes; skipped with -short")
	}
}

// waitFor is harness.WaitFor.
func waitFor(t testing.TB, cond func() (ok bool, want, seen string), timeout time.Duration) {
	t.Helper()
	harness.WaitFor(t, cond, timeout)
}

// startDevAgent starts `hookswitch agent --dev` (harness.StartDev) unless
// the tests run with -short.
func startDevAgent(t *testing.T, extraArgs ...string) *harness.Node {
	t.Helper()
	skipShort(t)
	return harness.StartDev(t, extraArgs...)
}
