package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
)

// ReadyTimeout bounds a node's start until /readyz answers 200 (process
// start, raft election, the node's own registration). A main program may
// change it before starting nodes.
var ReadyTimeout = 20 * time.Second

// Bounds of the node helpers.
const (
	// StopTimeout is how long a SIGTERM'd node may take to exit.
	StopTimeout = 40 * time.Second // the node's shutdown-timeout (15s), raft's own bound (10s), exit
	// CLITimeout bounds one command-line run.
	CLITimeout = 30 * time.Second
	// CallTimeout bounds one API call of a helper.
	CallTimeout = 5 * time.Second
)

// Node is one `hookswitch agent` child process. It can be stopped, killed,
// frozen and started again on the same data dir and ports.
type Node struct {
	ID       string // node id ("n1"…; a dev node's is read from its data dir)
	HTTPAddr string // host:port of the HTTP API
	RaftAddr string // host:port of raft
	DataDir  string

	t       TB
	cl      *Cluster // nil for a dev node
	dev     bool
	dir     string // holds the data dir and the output files
	extra   []string
	env     []string
	ns      *NetNS
	tls     *ClientTLS // nil: the node serves plain HTTP
	args    []string   // the command line of the last start
	stdout  string     // path of the file stdout goes to
	stderr  string     // path of the file stderr goes to
	hclient *http.Client

	mu     sync.Mutex
	starts int
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited; cmd.ProcessState is set
	frozen bool
}

// StartDev starts one `hookswitch agent --dev` on free loopback ports with
// its data in a new temporary dir, waits until it is ready and its root
// token is accepted, and stops it when the test ends (printing its output
// if the test failed). extra flags are added to the command line.
func StartDev(t TB, extra ...string) *Node {
	t.Helper()
	return StartDevWith(t, DevOptions{Extra: extra})
}

// DevOptions say how to start a --dev node.
type DevOptions struct {
	// Extra flags of the agent.
	Extra []string
	// Env is added to the agent's environment.
	Env []string
	// TLS, when set, is how the harness's clients reach a node that
	// serves HTTPS (Extra gives it --tls-cert and --tls-key).
	TLS *ClientTLS
}

// StartDevWith is StartDev with options.
func StartDevWith(t TB, o DevOptions) *Node {
	t.Helper()
	Binary(t)
	dir := t.TempDir()
	ports := FreePorts(t, "127.0.0.1", 2)
	nd := &Node{
		t: t, dev: true, dir: dir,
		DataDir:  filepath.Join(dir, "data"),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		stdout:   filepath.Join(dir, "agent.stdout"),
		stderr:   filepath.Join(dir, "agent.stderr"),
		extra:    append([]string(nil), o.Extra...),
		env:      append([]string(nil), o.Env...),
		tls:      o.TLS,
		hclient:  o.TLS.httpClient(t, &http.Client{Timeout: client.DefaultTimeout}),
	}
	nd.args = append([]string{"agent", "--dev", "--data-dir", nd.DataDir, "--http-addr", nd.HTTPAddr, "--raft-addr", nd.RaftAddr}, o.Extra...)
	// Cleanups run last-in first-out: the process is stopped first, then
	// its output is printed.
	t.Cleanup(func() {
		if t.Failed() {
			nd.dumpOutput()
		}
	})
	t.Cleanup(func() { nd.thaw(); nd.cleanup() })
	nd.Start()
	c := nd.API()
	WaitFor(t, func() (bool, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
		defer cancel()
		_, err := c.ListSubs(ctx, nil)
		return err == nil, "the root token to be accepted", fmt.Sprint(err)
	}, ReadyTimeout)
	if id, err := os.ReadFile(filepath.Join(nd.DataDir, "node-id")); err == nil {
		nd.ID = strings.TrimSpace(string(id))
	}
	return nd
}

// Args is the node's command line of its last start (without the binary).
func (nd *Node) Args() []string { return append([]string(nil), nd.args...) }

// SetArgs replaces the command line of the next Start (without the
// binary). Restart builds its own.
func (nd *Node) SetArgs(args ...string) { nd.args = append([]string(nil), args...) }

// Start starts the process with the command line of its last start and
// waits until GET /readyz answers 200; it fails the test if the node
// exits or is not ready within ReadyTimeout.
func (nd *Node) Start() {
	nd.t.Helper()
	nd.Launch()
	nd.WaitReady(ReadyTimeout)
}

// Launch starts the process with the command line of its last start (see
// SetArgs) and returns at once: for a node that will not be ready by
// itself (one that is no member yet; see WaitHealthy).
func (nd *Node) Launch() {
	nd.t.Helper()
	if nd.Running() {
		nd.t.Fatalf("node %s already running (pid %d)", nd.name(), nd.cmd.Process.Pid)
	}
	bin := Binary(nd.t)
	nd.mu.Lock()
	nd.starts++
	nd.mu.Unlock()
	stdout := nd.openLog(nd.stdout)
	stderr := nd.openLog(nd.stderr)
	defer stdout.Close()
	defer stderr.Close()
	var cmd *exec.Cmd
	if nd.ns != nil {
		cmd = nd.ns.Command(bin, nd.args...)
	} else {
		cmd = exec.Command(bin, nd.args...)
	}
	cmd.Env = append(CleanEnv(), nd.env...)
	cmd.Dir = nd.dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a Ctrl-C in the terminal reaches the
		// test or bench only, which then stops the node itself.
		Setpgid: true,
		// If the test process dies outright, the kernel kills the node.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		nd.t.Fatalf("start node %s: %v", nd.name(), err)
	}
	done := make(chan struct{})
	nd.mu.Lock()
	nd.cmd, nd.done, nd.frozen = cmd, done, false
	nd.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
}

// WaitReady waits until GET /readyz answers 200, failing the test if the
// process exits first or timeout passes.
func (nd *Node) WaitReady(timeout time.Duration) {
	nd.t.Helper()
	c := nd.anon()
	WaitFor(nd.t, func() (bool, string, string) {
		if !nd.Running() {
			return true, "", "" // reported below
		}
		ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
		defer cancel()
		err := c.Ready(ctx)
		return err == nil, "node " + nd.name() + ": GET /readyz to answer 200 within " + timeout.String(), fmt.Sprint(err)
	}, timeout)
	if !nd.Running() {
		nd.t.Fatalf("node %s exited during start: %s\n%s", nd.name(), nd.ExitState(), tail(nd.stderr, 40))
	}
}

// WaitHealthy waits until GET /healthz answers 200 (the process serves its
// API, member or not), failing the test if the process exits first or
// timeout passes.
func (nd *Node) WaitHealthy(timeout time.Duration) {
	nd.t.Helper()
	c := nd.anon()
	WaitFor(nd.t, func() (bool, string, string) {
		if !nd.Running() {
			return true, "", "" // reported below
		}
		ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
		defer cancel()
		err := c.Do(ctx, http.MethodGet, "/healthz", nil, nil)
		return err == nil, "node " + nd.name() + ": GET /healthz to answer 200 within " + timeout.String(), fmt.Sprint(err)
	}, timeout)
	if !nd.Running() {
		nd.t.Fatalf("node %s exited during start: %s\n%s", nd.name(), nd.ExitState(), tail(nd.stderr, 40))
	}
}

// openLog opens an output file for appending, marking where this start
// begins.
func (nd *Node) openLog(path string) *os.File {
	nd.t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		nd.t.Fatalf("node output file: %v", err)
	}
	if nd.starts > 1 {
		fmt.Fprintf(f, "\n===== start %d =====\n", nd.starts)
	}
	return f
}

func (nd *Node) name() string {
	if nd.ID != "" {
		return nd.ID
	}
	return nd.HTTPAddr
}

// Running reports whether the process runs (a frozen one does).
func (nd *Node) Running() bool {
	nd.mu.Lock()
	done := nd.done
	nd.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Done is closed when the process of the last start has exited (nil
// before the first start).
func (nd *Node) Done() <-chan struct{} {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.done
}

// Wait waits up to timeout for the process to exit by itself and returns
// its state; it fails the test if it does not exit.
func (nd *Node) Wait(timeout time.Duration) *os.ProcessState {
	nd.t.Helper()
	select {
	case <-nd.Done():
		return nd.ExitState()
	case <-time.After(timeout):
		nd.t.Fatalf("node %s did not exit within %s", nd.name(), timeout)
		return nil
	}
}

// ExitState is the exit state of the last start's process (nil while it
// runs or before the first start).
func (nd *Node) ExitState() *os.ProcessState {
	if nd.Running() || nd.cmd == nil {
		return nil
	}
	return nd.cmd.ProcessState
}

// Pid is the process id of the last start (0 before the first).
func (nd *Node) Pid() int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil || nd.cmd.Process == nil {
		return 0
	}
	return nd.cmd.Process.Pid
}

// Stop sends SIGTERM (thawing a frozen node first) and waits for the
// process to exit within StopTimeout, failing the test if it does not. It
// returns the exit state.
func (nd *Node) Stop() *os.ProcessState {
	nd.t.Helper()
	if !nd.Running() {
		nd.t.Fatalf("stop node %s: not running", nd.name())
	}
	nd.thaw()
	if err := nd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		nd.t.Fatalf("SIGTERM %s: %v", nd.name(), err)
	}
	select {
	case <-nd.done:
		return nd.cmd.ProcessState
	case <-time.After(StopTimeout):
		_ = nd.cmd.Process.Kill()
		<-nd.done
		nd.t.Fatalf("node %s did not exit within %s of SIGTERM", nd.name(), StopTimeout)
		return nil
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (nd *Node) Kill() *os.ProcessState {
	nd.t.Helper()
	if !nd.Running() {
		nd.t.Fatalf("kill node %s: not running", nd.name())
	}
	if err := nd.cmd.Process.Kill(); err != nil {
		nd.t.Fatalf("SIGKILL %s: %v", nd.name(), err)
	}
	<-nd.done
	nd.mu.Lock()
	nd.frozen = false
	nd.mu.Unlock()
	return nd.cmd.ProcessState
}

// Signal sends sig to the process.
func (nd *Node) Signal(sig os.Signal) error {
	if !nd.Running() {
		return fmt.Errorf("node %s: not running", nd.name())
	}
	return nd.cmd.Process.Signal(sig)
}

// Restart starts the node again on the same data dir and ports (stopping
// it first if it runs): a cluster node joins through every other node, a
// dev node starts as before. It waits until /readyz answers.
func (nd *Node) Restart() {
	nd.t.Helper()
	if nd.Running() {
		nd.Stop()
	}
	if nd.cl != nil {
		var others []string
		for _, o := range nd.cl.Nodes {
			if o != nd {
				others = append(others, o.HTTPAddr)
			}
		}
		nd.args = nd.agentArgs("--join", strings.Join(others, ","))
		nd.env = nd.cl.joinEnv()
	}
	nd.Start()
}

// Freeze stops the process with SIGSTOP: it is alive but does nothing.
// The harness thaws it at the end of the test.
func (nd *Node) Freeze() {
	nd.t.Helper()
	if err := nd.Signal(syscall.SIGSTOP); err != nil {
		nd.t.Fatalf("SIGSTOP %s: %v", nd.name(), err)
	}
	nd.mu.Lock()
	nd.frozen = true
	nd.mu.Unlock()
}

// Thaw resumes a frozen process with SIGCONT.
func (nd *Node) Thaw() {
	nd.t.Helper()
	if err := nd.Signal(syscall.SIGCONT); err != nil {
		nd.t.Fatalf("SIGCONT %s: %v", nd.name(), err)
	}
	nd.mu.Lock()
	nd.frozen = false
	nd.mu.Unlock()
}

// thaw resumes the process if the harness froze it (cleanups).
func (nd *Node) thaw() {
	nd.mu.Lock()
	frozen := nd.frozen
	nd.frozen = false
	nd.mu.Unlock()
	if frozen && nd.Running() {
		_ = nd.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// cleanup stops a still-running node at the end of the test: gracefully,
// and a failed graceful stop fails the test.
func (nd *Node) cleanup() {
	if !nd.Running() {
		return
	}
	_ = nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-nd.done:
		if code := nd.cmd.ProcessState.ExitCode(); code != 0 {
			errorf(nd.t, "node %s exited with %s after SIGTERM at the end of the test", nd.name(), nd.cmd.ProcessState)
		}
	case <-time.After(StopTimeout):
		_ = nd.cmd.Process.Kill()
		<-nd.done
		errorf(nd.t, "node %s did not exit within %s of SIGTERM at the end of the test", nd.name(), StopTimeout)
	}
}

func (nd *Node) dumpOutput() {
	nd.mu.Lock()
	starts := nd.starts
	nd.mu.Unlock()
	if starts == 0 {
		nd.t.Logf("node %s: never started", nd.name())
		return
	}
	for _, f := range []struct{ name, path string }{{"stdout", nd.stdout}, {"stderr", nd.stderr}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			nd.t.Logf("node %s %s: %v", nd.name(), f.name, err)
			continue
		}
		nd.t.Logf("node %s %s (%s):\n%s", nd.name(), f.name, nd.args, b)
	}
}

// BaseURL is the node's HTTP API base URL: https when the harness's
// clients reach it with a ClientTLS.
func (nd *Node) BaseURL() string { return nd.tls.scheme() + "://" + nd.HTTPAddr }

// TLS is how the harness's clients reach the node over HTTPS (nil: plain
// HTTP).
func (nd *Node) TLS() *ClientTLS { return nd.tls }

// HTTPClient is the HTTP client that reaches the node (through its
// network namespace when it runs in one; verifying the node's certificate
// with its ClientTLS when it serves HTTPS).
func (nd *Node) HTTPClient() *http.Client { return nd.hclient }

// RootToken is the cluster's super token (a dev node's, read from its
// data dir's root-token).
func (nd *Node) RootToken() string {
	if nd.cl != nil {
		return nd.cl.Root
	}
	// Read each time: a test checks that the file stays valid across
	// restarts.
	return nd.readRootToken()
}

func (nd *Node) readRootToken() string {
	nd.t.Helper()
	b, err := os.ReadFile(filepath.Join(nd.DataDir, "root-token"))
	if err != nil {
		nd.t.Fatalf("root token of %s: %v", nd.name(), err)
	}
	return strings.TrimSpace(string(b))
}

// API returns a client of the node with the root token.
func (nd *Node) API() *client.Client {
	return client.New(nd.BaseURL(), nd.RootToken()).WithHTTPClient(nd.hclient)
}

// anon is a client without a token (health endpoints).
func (nd *Node) anon() *client.Client {
	return client.New(nd.BaseURL(), "").WithHTTPClient(nd.hclient)
}

// Anon returns a client of the node without a token.
func (nd *Node) Anon() *client.Client { return nd.anon() }

// Logs returns what the node has written to stderr and stdout so far.
func (nd *Node) Logs() string {
	e, _ := os.ReadFile(nd.stderr)
	o, _ := os.ReadFile(nd.stdout)
	return string(e) + string(o)
}

// Stderr returns what the node has written to stderr (its log) so far.
func (nd *Node) Stderr() string {
	b, _ := os.ReadFile(nd.stderr)
	return string(b)
}

// Stdout returns what the node has written to stdout so far.
func (nd *Node) Stdout() string {
	b, _ := os.ReadFile(nd.stdout)
	return string(b)
}

// CLIResult is the outcome of one command-line run.
type CLIResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// ErrCLI is wrapped by CLI's error when the command exits non-zero.
var ErrCLI = errors.New("hookswitch command failed")

// RunCLI runs the hookswitch command line against the node: --addr is the
// node, --client-data-dir its data dir, the --ca, --cert and --key of its
// ClientTLS if it serves HTTPS and, in a cluster, --token the root token
// (args may carry their own --token, which wins). It fails the test only
// if the command cannot be run at all.
func (nd *Node) RunCLI(args ...string) CLIResult {
	nd.t.Helper()
	full := []string{"--addr", nd.BaseURL(), "--client-data-dir", nd.DataDir}
	if nd.tls != nil {
		full = append(full, nd.tls.Flags()...)
	}
	if nd.cl != nil {
		full = append(full, "--token", nd.cl.Root)
	}
	// Messages name the caller's args only: the rest holds the root token.
	return run(nd.t, nd.ns, nil, append(full, args...), strings.Join(args, " "))
}

// Run runs the binary with exactly args (no node address, no token) in
// CleanEnv plus env, and returns its output and exit status: for command
// lines of no node (`hookswitch tls init`), or an agent expected to refuse
// to start. It fails the test only if the binary cannot be run at all or
// has not exited within CLITimeout.
func Run(t TB, env []string, args ...string) CLIResult {
	t.Helper()
	return run(t, nil, env, args, strings.Join(args, " "))
}

// MustRun is Run that fails the test unless the command exits 0; it
// returns the command's stdout.
func MustRun(t TB, env []string, args ...string) string {
	t.Helper()
	r := Run(t, env, args...)
	if r.ExitCode != 0 {
		t.Fatalf("hookswitch %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// run runs the binary (inside ns when set) with args in CleanEnv plus env;
// its failure messages call the command "hookswitch "+what.
func run(t TB, ns *NetNS, env, args []string, what string) CLIResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	bin := Binary(t)
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(bin, args...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Env = append(CleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("hookswitch %s: %v", what, err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	var err error
	select {
	case err = <-waitErr:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-waitErr
		t.Fatalf("hookswitch %s: still running after %s", what, CLITimeout)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("hookswitch %s: %v", what, err)
	}
	return CLIResult{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: cmd.ProcessState.ExitCode()}
}

// CLI runs the command line against the node (see RunCLI) and returns its
// stdout; a non-zero exit is an error (wrapping ErrCLI) with its stderr.
func (nd *Node) CLI(args ...string) (string, error) {
	nd.t.Helper()
	r := nd.RunCLI(args...)
	if r.ExitCode != 0 {
		return r.Stdout, fmt.Errorf("%w: hookswitch %s: exit %d: %s", ErrCLI, strings.Join(args, " "), r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	return r.Stdout, nil
}

// MustCLI is CLI that fails the test unless the command exits 0.
func (nd *Node) MustCLI(args ...string) string {
	nd.t.Helper()
	out, err := nd.CLI(args...)
	if err != nil {
		nd.t.Fatalf("%v\nstdout: %s", err, out)
	}
	return out
}

// agentArgs is a cluster node's agent command line with extra flags.
func (nd *Node) agentArgs(extra ...string) []string {
	args := []string{"agent", "--config", "/dev/null", "--node-id", nd.ID, "--data-dir", nd.DataDir,
		"--http-addr", nd.HTTPAddr, "--raft-addr", nd.RaftAddr}
	args = append(args, nd.cl.opts.Timings.Flags()...)
	args = append(args, nd.extra...)
	if f := nd.cl.opts.NodeExtra; f != nil {
		args = append(args, f(nd.ID)...)
	}
	return append(args, extra...)
}

// tail returns the last lines of a file.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "  | " + strings.Join(all, "\n  | ")
}

// Tail returns the last lines of the node's stderr.
func (nd *Node) Tail(lines int) string { return tail(nd.stderr, lines) }
