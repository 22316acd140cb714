package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
)

// Timeouts of the process helpers.
const (
	// readyTimeout bounds an agent's start until /readyz answers 200
	// (process start, raft election, the node's own registration).
	readyTimeout = 20 * time.Second
	// stopTimeout is how long a SIGTERM'd agent may take to exit.
	stopTimeout = 15 * time.Second
	// cliTimeout bounds one CLI invocation.
	cliTimeout = 30 * time.Second
	// pollEvery is waitFor's polling period.
	pollEvery = 20 * time.Millisecond
)

// hookswitchBin is the binary TestMain built for this run.
var hookswitchBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if testing.Short() {
		// The process tests skip themselves; do not pay for the build.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "hookswitch-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	hookswitchBin = filepath.Join(dir, "hookswitch")
	args := []string{"build", "-o", hookswitchBin}
	if raceEnabled() {
		// A race-built test run also runs the agent under the race
		// detector: a data race makes it exit non-zero, which the tests
		// see.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "..")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: go %s: %v\n", strings.Join(args, " "), err)
		return 1
	}
	return m.Run()
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// skipShort skips process tests under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real hookswitch processes; skipped with -short")
	}
}

// waitFor polls cond every pollEvery until it reports ok, or fails the test
// after timeout with what cond expected and the last thing it saw.
func waitFor(t testing.TB, cond func() (ok bool, want, seen string), timeout time.Duration) {
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

// freeLoopbackPorts returns n distinct TCP ports that were free on
// 127.0.0.1 a moment ago. It holds all n listeners before closing any, so
// the ports differ from each other.
func freeLoopbackPorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// raceExitSleep replaces the race detector's default pause of 1 s at every
// process exit (GORACE atexit_sleep_ms), which would add a second to each
// CLI run and each agent stop. A GORACE set by the caller is kept.
const raceExitSleep = "GORACE=atexit_sleep_ms=100"

// cleanEnv is the test process's environment without HOOKSWITCH_*
// variables, so a developer's own settings (HOOKSWITCH_TOKEN, …) never
// leak into the agents and CLI runs under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKSWITCH_") {
			env = append(env, kv)
		}
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, raceExitSleep)
	}
	// Every agent and CLI run knows the test clusters' join token.
	return append(env, "HOOKSWITCH_JOIN_TOKEN="+testJoinToken)
}

// testJoinToken is the join token of every test cluster (a bootstrapping
// agent takes it from the environment instead of generating one).
const testJoinToken = "integration-test-join-token"

// agent is a hookswitch agent running as a child process. It can be
// stopped and started again on the same data dir and ports.
type agent struct {
	t        testing.TB
	dataDir  string
	httpAddr string
	raftAddr string
	args     []string
	stdout   string // path of the file stdout goes to
	stderr   string // path of the file stderr goes to
	starts   int
	// tls, when set, makes the agent's URLs https and its clients verify
	// it (and present a certificate) with this configuration.
	tls *tls.Config

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited; cmd.ProcessState is set
}

// startDevAgent starts `hookswitch agent --dev` on free loopback ports with
// its data in a new temporary dir, waits until it is ready, and stops it
// when the test ends. stdout and stderr are printed if the test fails.
func startDevAgent(t *testing.T, extraArgs ...string) *agent {
	t.Helper()
	skipShort(t)
	dir := t.TempDir()
	ports := freeLoopbackPorts(t, 2)
	a := &agent{
		t:        t,
		dataDir:  filepath.Join(dir, "data"),
		httpAddr: "127.0.0.1:" + strconv.Itoa(ports[0]),
		raftAddr: "127.0.0.1:" + strconv.Itoa(ports[1]),
		stdout:   filepath.Join(dir, "agent.stdout"),
		stderr:   filepath.Join(dir, "agent.stderr"),
	}
	a.args = append([]string{"agent", "--dev", "--data-dir", a.dataDir, "--http-addr", a.httpAddr, "--raft-addr", a.raftAddr}, extraArgs...)
	// Cleanups run last-in first-out: the process is stopped first, then
	// its output is printed.
	t.Cleanup(func() {
		if t.Failed() {
			a.dumpOutput()
		}
	})
	t.Cleanup(a.cleanup)
	a.start()
	return a
}

// start (re)starts the agent process and waits until /readyz answers 200.
func (a *agent) start() {
	a.t.Helper()
	if a.running() {
		a.t.Fatalf("agent already running (pid %d)", a.cmd.Process.Pid)
	}
	a.starts++
	stdout := a.openLog(a.stdout)
	stderr := a.openLog(a.stderr)
	defer stdout.Close()
	defer stderr.Close()
	cmd := exec.Command(hookswitchBin, a.args...)
	cmd.Env = cleanEnv()
	cmd.Dir = filepath.Dir(a.dataDir)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("start agent: %v", err)
	}
	a.cmd, a.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(a.done)
	c := a.anonClient()
	waitFor(a.t, func() (bool, string, string) {
		if !a.running() {
			return true, "", "" // reported below
		}
		err := c.Ready(context.Background())
		return err == nil, "GET /readyz to answer 200 within " + readyTimeout.String(), fmt.Sprint(err)
	}, readyTimeout)
	if !a.running() {
		a.t.Fatalf("agent exited during start: %s", a.cmd.ProcessState)
	}
}

// openLog opens an output file for appending, marking where this start
// begins.
func (a *agent) openLog(path string) *os.File {
	a.t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.t.Fatalf("agent output file: %v", err)
	}
	if a.starts > 1 {
		fmt.Fprintf(f, "\n===== start %d =====\n", a.starts)
	}
	return f
}

func (a *agent) running() bool {
	if a.done == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// terminate sends SIGTERM and waits for the process to exit within
// stopTimeout, failing the test if it does not.
func (a *agent) terminate() *os.ProcessState {
	a.t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		a.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-a.done:
		return a.cmd.ProcessState
	case <-time.After(stopTimeout):
		_ = a.cmd.Process.Kill()
		<-a.done
		a.t.Fatalf("agent did not exit within %s of SIGTERM", stopTimeout)
		return nil
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (a *agent) kill() *os.ProcessState {
	a.t.Helper()
	if err := a.cmd.Process.Kill(); err != nil {
		a.t.Fatalf("SIGKILL: %v", err)
	}
	<-a.done
	return a.cmd.ProcessState
}

// cleanup stops a still-running agent at the end of the test: gracefully,
// and a failed graceful stop fails the test.
func (a *agent) cleanup() {
	if !a.running() {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		if code := a.cmd.ProcessState.ExitCode(); code != 0 {
			a.t.Errorf("agent exited with %s after SIGTERM at the end of the test", a.cmd.ProcessState)
		}
	case <-time.After(stopTimeout):
		_ = a.cmd.Process.Kill()
		<-a.done
		a.t.Errorf("agent did not exit within %s of SIGTERM at the end of the test", stopTimeout)
	}
}

func (a *agent) dumpOutput() {
	for _, f := range []struct{ name, path string }{{"stdout", a.stdout}, {"stderr", a.stderr}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			a.t.Logf("agent %s: %v", f.name, err)
			continue
		}
		a.t.Logf("agent %s (%s):\n%s", f.name, a.args, b)
	}
}

// baseURL is the agent's HTTP API base URL.
func (a *agent) baseURL() string {
	if a.tls != nil {
		return "https://" + a.httpAddr
	}
	return "http://" + a.httpAddr
}

// rootToken reads the super token the dev agent wrote at bootstrap.
func (a *agent) rootToken() string {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dataDir, "root-token"))
	if err != nil {
		a.t.Fatalf("root token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// client returns an API client authenticated with the root token.
func (a *agent) client() *client.Client {
	return client.New(a.baseURL(), a.rootToken()).WithTLS(a.tls)
}

// anonClient returns an API client without a token (health endpoints).
func (a *agent) anonClient() *client.Client { return client.New(a.baseURL(), "").WithTLS(a.tls) }

// output returns what the agent has written to stdout so far.
func (a *agent) output() string {
	b, _ := os.ReadFile(a.stdout)
	return string(b)
}

// cliResult is the outcome of one CLI run.
type cliResult struct {
	stdout, stderr string
	exitCode       int
}

// cli runs the hookswitch command line against the agent: --addr is the
// agent and --client-data-dir its data dir (so the CLI finds the root
// token itself unless args carry --token). It fails the test if the
// command cannot be run at all, not if it exits non-zero.
func (a *agent) cli(args ...string) cliResult {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	full := append([]string{"--addr", a.baseURL(), "--client-data-dir", a.dataDir}, args...)
	cmd := exec.CommandContext(ctx, hookswitchBin, full...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		a.t.Fatalf("hookswitch %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), exitCode: cmd.ProcessState.ExitCode()}
}

// mustCLI is cli that fails the test unless the command exits 0.
func (a *agent) mustCLI(args ...string) string {
	a.t.Helper()
	r := a.cli(args...)
	if r.exitCode != 0 {
		a.t.Fatalf("hookswitch %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.exitCode, r.stdout, r.stderr)
	}
	return r.stdout
}
