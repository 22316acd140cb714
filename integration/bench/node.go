package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const modulePath = "github.com/hookswitch/hookswitch"

// findRepoRoot walks up from dir to the directory whose go.mod declares
// hookswitch's module.
func findRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for range 64 {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if modOf(b) == modulePath {
				return dir, nil
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("no go.mod of module %s above the working directory; run from inside the repository", modulePath)
}

// modOf returns the module path a go.mod declares.
func modOf(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// goTool is the go command: $GOROOT/bin/go of the toolchain that `go run`
// used when set, else go on PATH.
func goTool() string {
	if r := os.Getenv("GOROOT"); r != "" {
		if p := filepath.Join(r, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// buildNode runs `go build -o out .` in the repository root.
func buildNode(ctx context.Context, root, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", out, ".")
	cmd.Dir = root
	cmd.Env = cleanEnv()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build -o %s . (in %s): %v\n%s", out, root, err, buf.String())
	}
	return nil
}

// cleanEnv is the environment without HOOKSWITCH_* variables, so a
// developer's settings never leak into the node under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKSWITCH_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePorts returns n distinct TCP ports free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// nodeProc is a hookswitch agent running as a child process.
type nodeProc struct {
	bin, dataDir       string
	httpAddr, raftAddr string
	stdoutPath         string
	stderrPath         string
	cmd                *exec.Cmd
	done               chan struct{} // closed when the process has exited
	waitErr            error         // set before done is closed
	stopping           atomic.Bool
	stopOnce           sync.Once
}

// startNode starts `bin agent --dev` with its data under dir on free
// loopback ports. onDeath is called (once, from another goroutine) if the
// process exits before stop is called.
func startNode(bin, dir string, extra []string, onDeath func(error)) (*nodeProc, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	n := &nodeProc{
		bin:        bin,
		dataDir:    filepath.Join(dir, "data"),
		httpAddr:   "127.0.0.1:" + strconv.Itoa(ports[0]),
		raftAddr:   "127.0.0.1:" + strconv.Itoa(ports[1]),
		stdoutPath: filepath.Join(dir, "node.stdout"),
		stderrPath: filepath.Join(dir, "node.stderr"),
		done:       make(chan struct{}),
	}
	args := append([]string{"agent", "--dev", "--data-dir", n.dataDir, "--http-addr", n.httpAddr, "--raft-addr", n.raftAddr}, extra...)
	stdout, err := os.OpenFile(n.stdoutPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(n.stderrPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	n.cmd = exec.Command(bin, args...)
	n.cmd.Dir = dir
	n.cmd.Env = cleanEnv()
	n.cmd.Stdout, n.cmd.Stderr = stdout, stderr
	n.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a Ctrl-C in the terminal reaches the
		// bench only, which then stops the node itself (SIGTERM, then
		// SIGKILL) after printing what it has.
		Setpgid: true,
		// If the bench is killed outright, the kernel kills the node.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	logf("node started: pid %d, http %s, raft %s, data %s", n.cmd.Process.Pid, n.httpAddr, n.raftAddr, n.dataDir)
	go func() {
		n.waitErr = n.cmd.Wait()
		close(n.done)
		if !n.stopping.Load() {
			err := fmt.Errorf("hookswitch node (pid %d) exited unexpectedly: %v", n.cmd.Process.Pid, exitDesc(n.cmd.ProcessState, n.waitErr))
			logf("%v; last lines of its stderr:\n%s", err, n.stderrTail(40))
			if onDeath != nil {
				onDeath(err)
			}
		}
	}()
	return n, nil
}

func exitDesc(ps *os.ProcessState, err error) string {
	if ps != nil {
		return ps.String()
	}
	if err != nil {
		return err.Error()
	}
	return "unknown"
}

func (n *nodeProc) baseURL() string { return "http://" + n.httpAddr }

func (n *nodeProc) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// waitReady polls GET /readyz until it answers 200.
func (n *nodeProc) waitReady(ctx context.Context, client *http.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no answer"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if n.exited() {
			// Its stderr's tail was printed when it exited.
			return fmt.Errorf("hookswitch node exited before it was ready (%s)", exitDesc(n.cmd.ProcessState, n.waitErr))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.baseURL()+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("node not ready after %s (last /readyz: %s); last lines of its stderr:\n%s", timeout, last, n.stderrTail(40))
			}
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// rootToken waits for <data-dir>/root-token and returns it.
func (n *nodeProc) rootToken(ctx context.Context, timeout time.Duration) (string, error) {
	path := filepath.Join(n.dataDir, "root-token")
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(bytes.TrimSpace(b)), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no root token in %s after %s: %v", path, timeout, err)
		}
		select {
		case <-ctx.Done():
			return "", context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the node: SIGTERM to its process group, SIGKILL after grace.
// Safe to call more than once and after the process exited.
func (n *nodeProc) stop(grace time.Duration) {
	n.stopOnce.Do(func() {
		n.stopping.Store(true)
		if n.exited() {
			return
		}
		pgid := n.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-n.done:
			logf("node stopped (%s)", exitDesc(n.cmd.ProcessState, n.waitErr))
			return
		case <-time.After(grace):
		}
		logf("node did not stop within %s of SIGTERM; killing it", grace)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
			logf("node (pid %d) still not reaped after SIGKILL", pgid)
		}
	})
}

// stderrTail returns the last lines of the node's stderr.
func (n *nodeProc) stderrTail(lines int) string {
	return fileTail(n.stderrPath, lines)
}

func fileTail(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	const maxRead = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	off := max(0, st.Size()-maxRead)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return "(" + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "  | " + strings.Join(all, "\n  | ")
}

// commandOutput runs a short command and returns its trimmed output, or ""
// on any error.
func commandOutput(dir string, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
