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
	"syscall"
	"time"
)

const modulePath = "github.com/hookswitch/hookswitch"

// findRepoRoot walks up from the working directory to hookswitch's go.mod.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("no go.mod of %s above the working directory; run from inside the repository", modulePath)
}

// node is the hookswitch agent under test, a child process.
type node struct {
	cmd     *exec.Cmd
	dir     string
	addr    string // host:port of the HTTP API
	token   string
	stderr  *tailBuffer
	exited  chan struct{}
	waitErr error
}

// startNode builds (unless bin is given) and starts `hookswitch agent
// --dev` on free loopback ports, in its own process group, and waits until
// its root token is accepted.
func startNode(ctx context.Context, bin string) (*node, error) {
	dir, err := os.MkdirTemp("", "hookswitch-ws-bench-")
	if err != nil {
		return nil, err
	}
	if bin == "" {
		root, err := findRepoRoot()
		if err != nil {
			return nil, err
		}
		bin = filepath.Join(dir, "hookswitch")
		logf("building %s", bin)
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
		build.Dir = root
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("go build: %w", err)
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	n := &node{dir: dir, addr: "127.0.0.1:" + strconv.Itoa(ports[0]), stderr: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	n.cmd = exec.Command(bin, "agent", "--dev", "--config", "/dev/null", "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", n.addr, "--raft-addr", "127.0.0.1:"+strconv.Itoa(ports[1]))
	n.cmd.Dir = dir
	n.cmd.Stdout = io.Discard
	n.cmd.Stderr = n.stderr
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKSWITCH_") {
			env = append(env, kv)
		}
	}
	n.cmd.Env = env
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { n.waitErr = n.cmd.Wait(); close(n.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("node not ready in 30s; stderr:\n%s", n.stderr)
		}
		select {
		case <-n.exited:
			return nil, fmt.Errorf("node exited: %v; stderr:\n%s", n.waitErr, n.stderr)
		case <-time.After(100 * time.Millisecond):
		}
		if n.token == "" {
			b, err := os.ReadFile(filepath.Join(dir, "data", "root-token"))
			if err != nil {
				continue
			}
			n.token = strings.TrimSpace(string(b))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.addr+"/v1/subscriptions", nil)
		req.Header.Set("Authorization", "Bearer "+n.token)
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return n, nil
		}
	}
}

// stop sends SIGTERM to the node's process group, then SIGKILL.
func (n *node) stop() {
	if n.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
	_ = os.RemoveAll(n.dir)
}

func freePorts(k int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// procSample is a process's CPU time and memory at one moment.
type procSample struct {
	at      time.Time
	cpu     time.Duration // user + system
	rssKiB  int64
	threads int64
}

var clockTicks = 100 // USER_HZ on Linux

// sampleProc reads /proc/<pid>/stat and /proc/<pid>/status.
func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name (in parentheses, may hold spaces).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, errors.New("short /proc stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpu = time.Duration(utime+stime) * time.Second / time.Duration(clockTicks)
	st, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			s.rssKiB, _ = strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		case strings.HasPrefix(line, "Threads:"):
			s.threads, _ = strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		}
	}
	return s, nil
}
