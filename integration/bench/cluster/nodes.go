package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
)

const modulePath = "github.com/hookswitch/hookswitch"

// timingSet is one set of the cluster's timing settings.
type timingSet struct {
	Name      string   `json:"name"`
	Flags     []string `json:"flags"`
	DownAfter string   `json:"down-after"`
	downAfter time.Duration
}

var timingSets = map[string]timingSet{
	// DESIGN.md's defaults: no timing flags (report 1s, lease 3s,
	// down-after 5s, stable-after 60s, raft heartbeat and election 1s,
	// trim every 5s).
	"default": {Name: "default", DownAfter: "5s", downAfter: 5 * time.Second},
	"short": {Name: "short", DownAfter: "800ms", downAfter: 800 * time.Millisecond, Flags: []string{
		"--report-interval", "100ms", "--lease", "400ms", "--down-after", "800ms", "--stable-after", "1s",
		"--raft-heartbeat-timeout", "200ms", "--raft-election-timeout", "200ms", "--trim-interval", "200ms"}},
}

// proc is one `hookswitch agent` child process, in its own process group.
type proc struct {
	id, dir, dataDir, httpAddr, raftAddr string
	args                                 []string
	cmd                                  *exec.Cmd
	done                                 chan struct{}
	stderr                               *os.File
}

func (p *proc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) start(bin string) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(p.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = p.dir
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C is the bench's, not the node's
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	p.cmd, p.stderr, p.done = cmd, f, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); f.Close(); close(done) }(p.done)
	c := client.New(p.httpAddr, "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited during start: %s\n%s", p.id, cmd.ProcessState, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30s: %v\n%s", p.id, err, p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	if p.running() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stop sends SIGTERM, then SIGKILL after 20s.
func (p *proc) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

// tail is the end of the node's log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "agent.log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// cluster is three agents (n1 bootstrapped, n2 and n3 joined) or one dev
// agent.
type cluster struct {
	bin    string
	timing timingSet
	nodes  []*proc
	root   string
}

func (c *cluster) node(id string) *proc {
	for _, p := range c.nodes {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (c *cluster) api(p *proc) *client.Client { return client.New(p.httpAddr, c.root) }

func (c *cluster) stop() {
	done := make(chan struct{}, len(c.nodes))
	for _, p := range c.nodes {
		go func() { p.stop(); done <- struct{}{} }()
	}
	for range c.nodes {
		<-done
	}
}

// startCluster starts n nodes under dir: n == 1 is `agent --dev`.
func startCluster(bin, dir string, n int, ts timingSet) (*cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, timing: ts}
	for i := range n {
		id := "n" + strconv.Itoa(i+1)
		p := &proc{id: id, dir: filepath.Join(dir, id)}
		p.dataDir = filepath.Join(p.dir, "data")
		p.httpAddr = "127.0.0.1:" + strconv.Itoa(ports[2*i])
		p.raftAddr = "127.0.0.1:" + strconv.Itoa(ports[2*i+1])
		c.nodes = append(c.nodes, p)
	}
	for i, p := range c.nodes {
		switch {
		case n == 1:
			p.args = append([]string{"agent", "--dev", "--config", "/dev/null", "--node-id", p.id, "--data-dir", p.dataDir,
				"--http-addr", p.httpAddr, "--raft-addr", p.raftAddr}, ts.Flags...)
		case i == 0:
			p.args = c.args(p, "--bootstrap")
		default:
			p.args = c.args(p, "--join", c.nodes[0].httpAddr)
		}
		if err := p.start(bin); err != nil {
			c.stop()
			return nil, err
		}
		if i == 0 {
			b, err := os.ReadFile(filepath.Join(p.dataDir, "root-token"))
			if err != nil {
				c.stop()
				return nil, err
			}
			c.root = strings.TrimSpace(string(b))
		}
	}
	if err := c.waitUp(60 * time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) args(p *proc, extra ...string) []string {
	args := []string{"agent", "--config", "/dev/null", "--node-id", p.id, "--data-dir", p.dataDir,
		"--http-addr", p.httpAddr, "--raft-addr", p.raftAddr}
	args = append(args, c.timing.Flags...)
	return append(args, extra...)
}

// restart starts a stopped node again on its data dir, joining the others.
func (c *cluster) restart(p *proc) error {
	var others []string
	for _, o := range c.nodes {
		if o != p {
			others = append(others, o.httpAddr)
		}
	}
	p.args = c.args(p, "--join", strings.Join(others, ","))
	return p.start(c.bin)
}

// waitUp waits until every running node sees every node up with a leader.
func (c *cluster) waitUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := true, ""
		for _, p := range c.nodes {
			if !p.running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := c.api(p).Cluster(ctx)
			cancel()
			if err != nil {
				ok, why = false, p.id+": "+err.Error()
				break
			}
			up := 0
			for _, nd := range v.Nodes {
				if nd.Health == "up" {
					up++
				}
			}
			if v.Leader == "" || up != len(c.nodes) {
				ok, why = false, fmt.Sprintf("%s sees leader %q and %d of %d up", p.id, v.Leader, up, len(c.nodes))
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("cluster not up: " + why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader is the leader's id as the first running node sees it.
func (c *cluster) leader() string {
	for _, p := range c.nodes {
		if p.running() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := c.api(p).Cluster(ctx)
			cancel()
			if err == nil {
				return v.Leader
			}
		}
	}
	return ""
}

// owner polls the subscription through a running node until ok accepts
// its current-active-server.
func (c *cluster) owner(sub string, ok func(string) bool, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range c.nodes {
			if !p.running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := c.api(p).GetSub(ctx, sub)
			cancel()
			if err == nil && v.CurrentActiveServer != "" && ok(v.CurrentActiveServer) {
				return v.CurrentActiveServer, nil
			}
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("subscription %s: no suitable owner after %s", sub, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// cleanEnv drops HOOKSWITCH_* so a developer's settings do not leak in.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKSWITCH_") {
			env = append(env, kv)
		}
	}
	// The bench clusters' join token: the bootstrap node takes it from
	// the environment, the others present it.
	return append(env, "HOOKSWITCH_JOIN_TOKEN=bench-cluster-join-token")
}

// buildBinary builds hookswitch from the repository this runs in.
func buildBinary(dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := findRepoRoot(wd)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hookswitch")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out.String())
	}
	return bin, nil
}

func findRepoRoot(dir string) (string, error) {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module "+modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the repository of %s", modulePath)
		}
		dir = parent
	}
}
