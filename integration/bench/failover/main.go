// Command failover measures how long a subscription stays without a sender
// when the node that sends it dies: it starts a real three-node cluster of
// `hookswitch agent` processes on loopback TCP, creates a subscription,
// kills its owner with SIGKILL, and measures the time from the kill to the
// reassignment being committed (seen by polling GET /v1/subscriptions/{id}
// on a survivor every 20 ms until current-active-server changes). It then
// restarts the killed node on its data dir, waits until it is up again,
// and repeats.
//
//	go run ./integration/bench/failover -runs 10 -timings default
//	go run ./integration/bench/failover -runs 10 -timings short
//	go run ./integration/bench/failover -runs 10 -timings both
//
// default: the product defaults (report 1s, lease 3s, down-after 5s,
// stable-after 60s, raft heartbeat and election 1s). short: report 100ms,
// lease 400ms, down-after 800ms, stable-after 1s, raft 200ms. The result
// is printed as JSON on stdout; progress goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
)

const modulePath = "github.com/hookswitch/hookswitch"

// pollEvery is how often the survivor is asked for the owner.
const pollEvery = 20 * time.Millisecond

// keep is -keep: do not remove the data dirs and logs.
var keep bool

// timings is one set of the cluster's timing settings.
type timings struct {
	Name           string `json:"timings"`
	ReportInterval string `json:"report-interval"`
	Lease          string `json:"lease"`
	DownAfter      string `json:"down-after"`
	StableAfter    string `json:"stable-after"`
	RaftHeartbeat  string `json:"raft-heartbeat-timeout"`
	RaftElection   string `json:"raft-election-timeout"`
	flags          []string
	downAfter      time.Duration
}

var timingSets = map[string]timings{
	// The defaults of DESIGN.md: no timing flags at all.
	"default": {Name: "default", ReportInterval: "1s", Lease: "3s", DownAfter: "5s", StableAfter: "60s",
		RaftHeartbeat: "1s", RaftElection: "1s", downAfter: 5 * time.Second},
	"short": {Name: "short", ReportInterval: "100ms", Lease: "400ms", DownAfter: "800ms", StableAfter: "1s",
		RaftHeartbeat: "200ms", RaftElection: "200ms", downAfter: 800 * time.Millisecond,
		flags: []string{"--report-interval", "100ms", "--lease", "400ms", "--down-after", "800ms", "--stable-after", "1s",
			"--raft-heartbeat-timeout", "200ms", "--raft-election-timeout", "200ms"}},
}

// run is one kill and its measured reassignment.
type run struct {
	Run            int     `json:"run"`
	Sub            string  `json:"sub"`
	Killed         string  `json:"killed"`
	KilledWasLead  bool    `json:"killed-was-leader"`
	LeaderAfter    string  `json:"leader-after"`
	NewOwner       string  `json:"new-owner"`
	KillToReassign float64 `json:"kill-to-reassign-ms"`
	KilledAt       string  `json:"killed-at"` // UTC, to find the run in the logs
	// Elections counts the leaderships gained (by any node, the same one
	// included) between the kill and the reassignment: a new leader gives
	// every node a full down-after again, so each one delays failover.
	Elections int `json:"elections-meanwhile"`
}

// result is one timing set's measurements.
type result struct {
	timings
	Runs int `json:"runs"`
	// LoadBefore and LoadAfter are /proc/loadavg around the runs: the
	// machine's load explains outliers (a starved leader steps down, and
	// a new leader waits a full down-after before it marks a node down).
	LoadBefore string  `json:"loadavg-before"`
	LoadAfter  string  `json:"loadavg-after"`
	MedianMs   float64 `json:"median-ms"`
	MaxMs      float64 `json:"max-ms"`
	MinMs      float64 `json:"min-ms"`
	Each       []run   `json:"each"`
}

func main() {
	runs := flag.Int("runs", 10, "kills per timing set")
	which := flag.String("timings", "both", "default, short or both")
	bin := flag.String("bin", "", "hookswitch binary (default: build it)")
	owner := flag.String("owner", "follower", "whose death is measured: follower (the owner is not the raft leader) or any")
	flag.BoolVar(&keep, "keep", false, "keep the nodes' data dirs and logs (printed on stderr)")
	flag.Parse()
	if err := mainErr(*runs, *which, *bin, *owner); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

func mainErr(runs int, which, bin, owner string) (err error) {
	var sets []timings
	switch which {
	case "default", "short":
		sets = []timings{timingSets[which]}
	case "both":
		sets = []timings{timingSets["default"], timingSets["short"]}
	default:
		return fmt.Errorf("-timings %q: want default, short or both", which)
	}
	if owner != "follower" && owner != "any" {
		return fmt.Errorf("-owner %q: want follower or any", owner)
	}
	if runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	tmp, err := os.MkdirTemp("", "hookswitch-failover-")
	if err != nil {
		return err
	}
	defer func() {
		if err == nil && !keep {
			os.RemoveAll(tmp)
		} else {
			logf("the nodes' data and logs are kept in %s", tmp)
		}
	}()
	if bin == "" {
		bin = filepath.Join(tmp, "hookswitch")
		logf("building %s", modulePath)
		cmd := exec.Command("go", "build", "-o", bin, modulePath)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	}
	out := struct {
		Command string   `json:"command"`
		Results []result `json:"results"`
	}{Command: "go run ./integration/bench/failover " + strings.Join(os.Args[1:], " ")}
	for _, ts := range sets {
		r, err := measure(bin, filepath.Join(tmp, ts.Name), ts, runs, owner == "follower")
		if err != nil {
			return fmt.Errorf("%s timings: %w", ts.Name, err)
		}
		out.Results = append(out.Results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

// ---- the cluster ----

type proc struct {
	id, dir, httpAddr, raftAddr, stderr string
	cl                                  *cluster
	cmd                                 *exec.Cmd
	done                                chan struct{}
}

type cluster struct {
	bin   string
	ts    timings
	nodes []*proc
	root  string
}

func (p *proc) start(extra ...string) error {
	args := []string{"agent", "--config", "/dev/null", "--node-id", p.id, "--data-dir", filepath.Join(p.dir, "data"),
		"--http-addr", p.httpAddr, "--raft-addr", p.raftAddr}
	args = append(append(args, p.cl.ts.flags...), extra...)
	f, err := os.OpenFile(p.stderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(p.cl.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	return p.waitReady(30 * time.Second)
}

func (p *proc) waitReady(timeout time.Duration) error {
	c := client.New(p.httpAddr, "")
	return poll(timeout, func() error {
		select {
		case <-p.done:
			return stop(fmt.Errorf("%s exited during start (%s); see %s", p.id, p.cmd.ProcessState, p.stderr))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.Ready(ctx)
	})
}

// otherAddrs are the HTTP addresses of the other nodes.
func (p *proc) otherAddrs() string {
	var out []string
	for _, o := range p.cl.nodes {
		if o != p {
			out = append(out, o.httpAddr)
		}
	}
	return strings.Join(out, ",")
}

func (p *proc) api() *client.Client { return client.New(p.httpAddr, p.cl.root) }

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

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) terminate() {
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

// cleanEnv drops HOOKSWITCH_* settings of the caller's environment.
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

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
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

func startCluster(bin, dir string, ts timings) (*cluster, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	cl := &cluster{bin: bin, ts: ts}
	for i := range 3 {
		id := "n" + strconv.Itoa(i+1)
		p := &proc{id: id, dir: filepath.Join(dir, id), cl: cl,
			httpAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i]), raftAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i+1])}
		p.stderr = filepath.Join(p.dir, "agent.log")
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			return nil, err
		}
		cl.nodes = append(cl.nodes, p)
	}
	if err := cl.nodes[0].start("--bootstrap"); err != nil {
		return cl, err
	}
	b, err := os.ReadFile(filepath.Join(cl.nodes[0].dir, "data", "root-token"))
	if err != nil {
		return cl, err
	}
	cl.root = strings.TrimSpace(string(b))
	for _, p := range cl.nodes[1:] {
		if err := p.start("--join", cl.nodes[0].httpAddr); err != nil {
			return cl, err
		}
	}
	return cl, cl.waitAllUp(30 * time.Second)
}

func (cl *cluster) stop() {
	for _, p := range cl.nodes {
		p.terminate()
	}
}

// view reads GET /v1/cluster from the first running node.
func (cl *cluster) view() (httpapi.ClusterView, error) {
	for _, p := range cl.nodes {
		if !p.running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := p.api().Cluster(ctx)
		cancel()
		if err == nil {
			return v, nil
		}
	}
	return httpapi.ClusterView{}, errors.New("no node answers GET /v1/cluster")
}

// waitAllUp waits until the cluster has all three nodes up and a leader.
func (cl *cluster) waitAllUp(timeout time.Duration) error {
	return poll(timeout, func() error {
		v, err := cl.view()
		if err != nil {
			return err
		}
		up := 0
		for _, n := range v.Nodes {
			if n.Health == "up" {
				up++
			}
		}
		if v.Leader == "" || up != len(cl.nodes) || len(v.Nodes) != len(cl.nodes) {
			return fmt.Errorf("not all up yet: leader %q, %d of %d up", v.Leader, up, len(cl.nodes))
		}
		return nil
	})
}

func (cl *cluster) node(id string) *proc {
	for _, p := range cl.nodes {
		if p.id == id {
			return p
		}
	}
	return nil
}

// errStop ends a poll at once.
type errStop struct{ error }

func stop(err error) error { return errStop{err} }

// poll calls f every pollEvery until it returns nil, an errStop, or the
// timeout passes.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var s errStop
		if errors.As(err, &s) {
			return s.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s: %w", timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

// ---- the measurement ----

func measure(bin, dir string, ts timings, runs int, followerOnly bool) (res result, err error) {
	logf("%s timings: starting a 3-node cluster in %s", ts.Name, dir)
	cl, err := startCluster(bin, dir, ts)
	if cl != nil {
		defer cl.stop()
	}
	if err != nil {
		return res, fmt.Errorf("start cluster: %w (logs in %s)", err, dir)
	}
	res.timings, res.Runs, res.LoadBefore = ts, runs, loadavg()
	defer func() { res.LoadAfter = loadavg() }()
	for i := range runs {
		r, err := once(cl, i, followerOnly)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i+1, err)
		}
		logf("%s run %d: killed %s (leader: %v); %s took %s over after %.0f ms; leader now %s; elections meanwhile: %d",
			ts.Name, i+1, r.Killed, r.KilledWasLead, r.NewOwner, r.Sub, r.KillToReassign, r.LeaderAfter, r.Elections)
		res.Each = append(res.Each, r)
	}
	ms := make([]float64, len(res.Each))
	for i, r := range res.Each {
		ms[i] = r.KillToReassign
	}
	slices.Sort(ms)
	res.MinMs, res.MaxMs = ms[0], ms[len(ms)-1]
	if n := len(ms); n%2 == 1 {
		res.MedianMs = ms[n/2]
	} else {
		res.MedianMs = (ms[n/2-1] + ms[n/2]) / 2
	}
	return res, nil
}

// once creates a subscription, kills its owner and measures the time until
// a survivor is its committed owner; then deletes the subscription (so
// every node is back to no subscriptions, and the next one is placed by the
// rendezvous hash alone) and restarts the killed node.
func once(cl *cluster, i int, followerOnly bool) (run, error) {
	r := run{Run: i + 1}
	if err := cl.waitAllUp(60 * time.Second); err != nil {
		return r, err
	}
	v, err := cl.view()
	if err != nil {
		return r, err
	}
	leader := cl.node(v.Leader)
	// With no other subscription, the new one goes to the node its id
	// hashes highest with: a few ids give one owned by a follower when
	// that is asked for.
	var owner *proc
	for try := 0; try < 20 && owner == nil; try++ {
		id := fmt.Sprintf("failover-%d-%d", i+1, try)
		if err := call(func(ctx context.Context) error {
			_, err := leader.api().CreateSub(ctx, client.Fields{"id": id, "model": "call", "post-url": "http://127.0.0.1:9/unused"})
			return err
		}); err != nil {
			return r, fmt.Errorf("create subscription: %w", err)
		}
		var o string
		err = poll(10*time.Second, func() error {
			return call(func(ctx context.Context) error {
				s, err := leader.api().GetSub(ctx, id)
				if err == nil && s.CurrentActiveServer == "" {
					err = errors.New("not assigned yet")
				}
				o = s.CurrentActiveServer
				return err
			})
		})
		if err != nil {
			return r, fmt.Errorf("assignment of %s: %w", id, err)
		}
		if !followerOnly || o != leader.id {
			owner, r.Sub = cl.node(o), id
			break
		}
		if err := call(func(ctx context.Context) error { return leader.api().DeleteSub(ctx, id) }); err != nil {
			return r, fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if owner == nil {
		return r, errors.New("no new subscription went to a follower in 20 tries")
	}
	r.Killed, r.KilledWasLead = owner.id, owner.id == leader.id
	// Poll a survivor: the leader when it survives.
	watcher := leader
	if watcher == owner {
		for _, p := range cl.nodes {
			if p != owner {
				watcher = p
				break
			}
		}
	}
	c := watcher.api()
	elections := cl.elections()
	killed := time.Now()
	owner.kill()
	var newOwner string
	var seen time.Time
	err = poll(cl.ts.downAfter+60*time.Second, func() error {
		return call(func(ctx context.Context) error {
			s, err := c.GetSub(ctx, r.Sub)
			if err != nil {
				return err
			}
			if s.CurrentActiveServer == owner.id || s.CurrentActiveServer == "" {
				return fmt.Errorf("still on %q", s.CurrentActiveServer)
			}
			newOwner, seen = s.CurrentActiveServer, time.Now()
			return nil
		})
	})
	if err != nil {
		return r, fmt.Errorf("reassignment after killing %s: %w", owner.id, err)
	}
	r.KillToReassign = float64(seen.Sub(killed).Microseconds()) / 1000
	r.KilledAt = killed.UTC().Format("15:04:05.000")
	r.Elections = cl.elections() - elections
	r.NewOwner = newOwner
	if v, err := cl.view(); err == nil {
		r.LeaderAfter = v.Leader
	}
	if err := call(func(ctx context.Context) error { return c.DeleteSub(ctx, r.Sub) }); err != nil {
		return r, fmt.Errorf("delete %s: %w", r.Sub, err)
	}
	// Back to three nodes for the next run.
	if err := owner.start("--join", owner.otherAddrs()); err != nil {
		return r, fmt.Errorf("restart %s: %w", owner.id, err)
	}
	return r, nil
}

// elections counts the "gained leadership" lines in the nodes' logs.
func (cl *cluster) elections() int {
	n := 0
	for _, p := range cl.nodes {
		b, _ := os.ReadFile(p.stderr)
		n += strings.Count(string(b), `msg="gained leadership"`)
	}
	return n
}

// call runs one API call with a timeout.
func call(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f(ctx)
}

// loadavg is the first line of /proc/loadavg ("" where there is none).
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
