package integration

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/integration/harness"
)

var (
	demoTempDir = regexp.MustCompile(`hookswitch demo: temp dir (\S+) `)
	demoLine    = regexp.MustCompile(`(?m)^\S+ delivered (\d+) in (\d+) POSTs, (\d+) bad signatures.*, lag (\d+) \| sub (\S+) posts (\d+) errors (\d+) \| calls (\d+) \(\d+ live\) ingested (\d+)`)
)

// demoStats is the last status line of a demo's output.
type demoStats struct {
	lines                                      int
	calls, ingested, delivered, posts, badSigs int
	status                                     string
	subPosts                                   int
}

func lastDemoLine(out string) demoStats {
	all := demoLine.FindAllStringSubmatch(out, -1)
	if len(all) == 0 {
		return demoStats{}
	}
	m := all[len(all)-1]
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	return demoStats{lines: len(all), delivered: n(1), posts: n(2), badSigs: n(3), status: m[5], subPosts: n(6), calls: n(8), ingested: n(9)}
}

// TestDemo runs `hookswitch demo` as a process: it starts a dev node, a
// receiver and synthetic traffic, the receiver verifies what it gets, and
// a signal (or --duration) stops it with exit 0, its temp dir removed.
func TestDemo(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name string
		args []string
		stop func(t *testing.T, p *harness.Node)
	}{
		{"SIGINT", nil, func(t *testing.T, p *harness.Node) {
			if err := p.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
		}},
		{"SIGTERM", nil, func(t *testing.T, p *harness.Node) {
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}},
		{"duration", []string{"--duration", "8s"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The demo's temp dir goes under a dir of the test's own, so
			// "nothing left behind" is: that dir is empty again.
			tmp := t.TempDir()
			p := harness.StartProcess(t, []string{"TMPDIR=" + tmp}, append([]string{"demo", "--rate", "5"}, tc.args...)...)

			var dir string
			waitFor(t, func() (bool, string, string) {
				m := demoTempDir.FindStringSubmatch(p.Stdout())
				if m != nil {
					dir = m[1]
				}
				return dir != "" || !p.Running(), "the demo to print its temp dir", p.Stdout()
			}, 10*time.Second)
			if dir == "" {
				t.Fatalf("demo exited before printing its temp dir: %s\n%s", p.ExitState(), p.Stderr())
			}
			if !strings.HasPrefix(dir, tmp+string(os.PathSeparator)) {
				t.Fatalf("demo temp dir %s is not under TMPDIR %s", dir, tmp)
			}
			if _, err := os.Stat(dir); err != nil {
				t.Fatalf("demo temp dir while it runs: %v", err)
			}

			// It delivers: the receiver has verified events, and the
			// node's counters of the subscription show the POSTs.
			waitFor(t, func() (bool, string, string) {
				s := lastDemoLine(p.Stdout())
				return s.delivered >= 10 && s.subPosts > 0 && s.status == "active",
					"a status line with 10 events delivered and the subscription active with posts", p.Stdout()
			}, harness.ReadyTimeout+20*time.Second)

			if tc.stop != nil {
				tc.stop(t, p)
			}
			st := p.Wait(harness.StopTimeout)
			out := p.Stdout()
			if st.ExitCode() != 0 {
				t.Fatalf("demo exited with %s\nstdout: %s\nstderr: %s", st, out, p.Stderr())
			}
			s := lastDemoLine(out)
			if s.delivered == 0 || s.ingested == 0 || s.calls == 0 {
				t.Errorf("last status line: %+v, want calls, ingested and delivered events", s)
			}
			for _, m := range demoLine.FindAllStringSubmatch(out, -1) {
				if m[3] != "0" {
					t.Errorf("a status line counts bad signatures: %s", m[0])
				}
			}
			// Stdout is no terminal: plain lines, no carriage returns.
			if strings.Contains(out, "\r") {
				t.Errorf("output to a pipe has carriage returns:\n%q", out)
			}
			if !strings.Contains(out, "stopped; removed "+dir) {
				t.Errorf("the demo does not say it removed %s:\n%s", dir, out)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("demo temp dir %s after exit: %v (want it gone)", dir, err)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("TMPDIR holds %d entries after the demo, e.g. %s", len(left), left[0].Name())
			}
		})
	}
}

// TestDemoBadFlags: a bad flag is refused before anything starts.
func TestDemoBadFlags(t *testing.T) {
	skipShort(t)
	tmp := t.TempDir()
	for _, args := range [][]string{{"--rate", "0"}, {"--duration", "-1s"}, {"--rate", "x"}} {
		r := harness.Run(t, []string{"TMPDIR=" + tmp}, append([]string{"demo"}, args...)...)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "rate") && !strings.Contains(r.Stderr, "duration") {
			t.Errorf("demo %v: exit %d, stderr %q: want a failure naming the flag", args, r.ExitCode, r.Stderr)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("TMPDIR holds %d entries after refused demos", len(left))
	}
}
