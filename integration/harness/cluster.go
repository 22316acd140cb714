package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
)

// FormTimeout bounds a cluster's start until every node is up and stable.
const FormTimeout = 20 * time.Second

// JoinTokenEnv is the environment variable that gives a joining node the
// cluster's join token.
const JoinTokenEnv = "HOOKSWITCH_JOIN_TOKEN"

// Options say how to start a cluster.
type Options struct {
	// Nodes is the number of nodes (n1…); at least 1.
	Nodes int
	// Timings of every node; the zero value means ShortTimings.
	Timings Timings
	// Extra flags for every node.
	Extra []string
	// NodeExtra, when set, gives a node's own flags (after Extra) by its
	// id, e.g. PKI.AgentFlags.
	NodeExtra func(id string) []string
	// TLS, when set, is how the harness's clients reach nodes that serve
	// HTTPS (NodeExtra gives them --tls-cert and --tls-key): node URLs are
	// https, and the API clients, readiness checks and command lines
	// verify (and present) certificates with it.
	TLS *ClientTLS
	// Hosts are optional per-node listen IPs (default 127.0.0.1), e.g.
	// 127.0.0.11, 127.0.0.12, 127.0.0.13 inside a NetNS.
	Hosts []string
	// NetNS, when set, runs the nodes inside that network namespace; the
	// cluster's clients reach them through it.
	NetNS *NetNS
	// DataDirs are optional per-node data dirs (e.g. a small tmpfs);
	// default a new dir under t.TempDir().
	DataDirs []string
	// Env is added to every node's environment.
	Env []string
	// NoWaitStable skips the wait for every node to be stable (with the
	// default stable-after of 60s it would take a minute); StartCluster
	// still waits until every node is up.
	NoWaitStable bool
	// Restore, when set, is a snapshot file n1 bootstraps the cluster
	// from (`agent --bootstrap --restore`); Root must then be a super
	// token of the saved cluster (no root-token file is written).
	Restore string
	Root    string
}

// Cluster is a cluster of agent processes: node i is "n<i+1>"; n1
// bootstrapped it and the others joined through n1.
type Cluster struct {
	Nodes []*Node
	Root  string // the super token n1 wrote at bootstrap

	t         TB
	opts      Options
	dir       string // holds the nodes' dirs
	joinToken string
	hclient   *http.Client
}

// StartCluster starts o.Nodes nodes (n1 with --bootstrap, the others with
// --join n1), waits until every node sees all of them as up members (voters,
// and non-voters past the voters setting) with a leader, and (unless o.NoWaitStable) all stable, and that `hookswitch
// members` lists them all up. If n1's data dir holds a join-token file
// after it starts, the joining nodes get it in HOOKSWITCH_JOIN_TOKEN. At
// the end of the test every node is thawed and stopped (all at once, so
// the last ones keep a quorum for their final report); if the test
// failed, every node's output is printed.
func StartCluster(t TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes < 1 {
		t.Fatalf("harness: StartCluster with %d nodes", o.Nodes)
	}
	if o.Timings == (Timings{}) {
		o.Timings = ShortTimings
	}
	Binary(t)
	dir := t.TempDir()
	cl := &Cluster{t: t, opts: o, dir: dir, hclient: &http.Client{Timeout: client.DefaultTimeout}}
	if o.NetNS != nil {
		cl.hclient = o.NetNS.HTTPClient()
	}
	cl.hclient = o.TLS.httpClient(t, cl.hclient)
	ports := map[string][]int{}
	next := map[string]int{}
	for i := range o.Nodes {
		h := cl.host(i)
		if _, ok := ports[h]; !ok {
			n := 0
			for j := range o.Nodes {
				if cl.host(j) == h {
					n += 2
				}
			}
			ports[h] = FreePorts(t, h, n)
		}
		hp, rp := ports[h][next[h]], ports[h][next[h]+1]
		next[h] += 2
		cl.Nodes = append(cl.Nodes, cl.newNode(i, h, hp, rp))
	}
	// Cleanups run last-in first-out: frozen nodes are thawed and every
	// node is stopped, then (on failure) the logs are printed.
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range cl.Nodes {
				t.Logf("======== node %s (%s) ========", nd.ID, nd.HTTPAddr)
				nd.dumpOutput()
			}
		}
	})
	t.Cleanup(cl.stopAll)
	first := cl.Nodes[0]
	first.args = first.agentArgs("--bootstrap")
	if o.Restore != "" {
		first.args = first.agentArgs("--bootstrap", "--restore", o.Restore)
	}
	first.Start()
	if o.Root != "" {
		cl.Root = o.Root
	} else {
		cl.Root = first.readRootToken()
	}
	if b, err := os.ReadFile(filepath.Join(first.DataDir, "join-token")); err == nil {
		cl.joinToken = strings.TrimSpace(string(b))
	}
	for _, nd := range cl.Nodes[1:] {
		nd.args = nd.agentArgs("--join", first.HTTPAddr)
		nd.env = cl.joinEnv()
		nd.Start()
	}
	timeout := FormTimeout
	if !o.NoWaitStable {
		timeout += o.Timings.StableAfter
	}
	cl.WaitMembers(timeout, cl.Nodes...)
	if !o.NoWaitStable {
		// Every test starts from the same place: all nodes stable, so new
		// subscriptions spread over all of them (the assignment rule
		// prefers stable nodes to less loaded unstable ones).
		WaitFor(t, func() (bool, string, string) {
			v, err := first.view()
			if err != nil {
				return false, "all nodes stable", err.Error()
			}
			for _, m := range v.Nodes {
				if !m.Stable {
					return false, "all nodes stable", Summary(v)
				}
			}
			return len(v.Nodes) == o.Nodes, "all nodes stable", Summary(v)
		}, timeout)
	}
	// What an operator sees: `hookswitch members` lists them all up. It is
	// polled: on a busy machine a node can miss down-after for a moment
	// (a new leader also gives every node a full down-after again), and
	// the listing must then come back to all up by itself.
	WaitFor(t, func() (bool, string, string) {
		want := fmt.Sprintf("`hookswitch members --json` to list %d nodes, all up", o.Nodes)
		out, err := first.CLI("members", "--json")
		if err != nil {
			return false, want, err.Error()
		}
		var members httpapi.ClusterView
		if err := json.Unmarshal([]byte(out), &members); err != nil {
			return false, want, fmt.Sprintf("not JSON: %v: %s", err, out)
		}
		if len(members.Nodes) != o.Nodes {
			return false, want, Summary(members)
		}
		for _, m := range members.Nodes {
			if m.Health != "up" {
				return false, want, Summary(members)
			}
		}
		return true, "", ""
	}, FormTimeout)
	return cl
}

// newNode is node i ("n<i+1>") on host's ports hp (HTTP) and rp (raft),
// with its dir under the cluster's; it is not started.
func (cl *Cluster) newNode(i int, host string, hp, rp int) *Node {
	cl.t.Helper()
	id := "n" + strconv.Itoa(i+1)
	ndir := filepath.Join(cl.dir, id)
	if err := os.MkdirAll(ndir, 0o700); err != nil {
		cl.t.Fatalf("harness: %v", err)
	}
	data := filepath.Join(ndir, "data")
	if i < len(cl.opts.DataDirs) && cl.opts.DataDirs[i] != "" {
		data = cl.opts.DataDirs[i]
	}
	return &Node{
		ID: id, t: cl.t, cl: cl, dir: ndir, ns: cl.opts.NetNS, hclient: cl.hclient, tls: cl.opts.TLS,
		DataDir:  data,
		HTTPAddr: net.JoinHostPort(host, strconv.Itoa(hp)),
		RaftAddr: net.JoinHostPort(host, strconv.Itoa(rp)),
		stdout:   filepath.Join(ndir, "agent.stdout"),
		stderr:   filepath.Join(ndir, "agent.stderr"),
		extra:    cl.opts.Extra,
		env:      cl.opts.Env,
	}
}

// NewNode adds a node to the cluster without starting it: the next id,
// on free ports of its host (Options.Hosts, default 127.0.0.1), with the
// cluster's flags and the join token in its environment, but neither
// --bootstrap nor --join on its command line (SetArgs changes it). Launch
// starts it; a node that is no member is healthy (WaitHealthy) but never
// ready until it joins. It is stopped with the others at the end of the
// test, and counts as one of the cluster's nodes (WaitAllUp, Restart)
// from now on.
func (cl *Cluster) NewNode() *Node {
	cl.t.Helper()
	i := len(cl.Nodes)
	h := cl.host(i)
	ports := FreePorts(cl.t, h, 2)
	nd := cl.newNode(i, h, ports[0], ports[1])
	nd.args = nd.agentArgs()
	nd.env = cl.joinEnv()
	cl.Nodes = append(cl.Nodes, nd)
	return nd
}

func (cl *Cluster) host(i int) string {
	if i < len(cl.opts.Hosts) && cl.opts.Hosts[i] != "" {
		return cl.opts.Hosts[i]
	}
	return "127.0.0.1"
}

// joinEnv is the environment of a joining node: the cluster's options and
// the join token, if n1 wrote one.
func (cl *Cluster) joinEnv() []string {
	env := append([]string(nil), cl.opts.Env...)
	if cl.joinToken != "" {
		env = append(env, JoinTokenEnv+"="+cl.joinToken)
	}
	return env
}

// JoinToken is the join token n1 wrote at bootstrap ("" when none).
func (cl *Cluster) JoinToken() string { return cl.joinToken }

// NetNS is the namespace the nodes run in (nil when none).
func (cl *Cluster) NetNS() *NetNS { return cl.opts.NetNS }

// HTTPClient is the HTTP client that reaches the nodes.
func (cl *Cluster) HTTPClient() *http.Client { return cl.hclient }

// stopAll thaws every node, then sends SIGTERM to every running node at
// once and waits for them; a node that does not exit 0 within StopTimeout
// fails the test.
func (cl *Cluster) stopAll() {
	for _, nd := range cl.Nodes {
		nd.thaw()
	}
	var wg sync.WaitGroup
	for _, nd := range cl.Nodes {
		wg.Go(nd.cleanup)
	}
	wg.Wait()
}

// Node returns the node with the given id, failing the test if none.
func (cl *Cluster) Node(id string) *Node {
	cl.t.Helper()
	for _, nd := range cl.Nodes {
		if nd.ID == id {
			return nd
		}
	}
	cl.t.Fatalf("no node %q in the cluster", id)
	return nil
}

// Running returns the nodes whose process runs.
func (cl *Cluster) Running() []*Node {
	var out []*Node
	for _, nd := range cl.Nodes {
		if nd.Running() {
			out = append(out, nd)
		}
	}
	return out
}

// Others returns the nodes other than the given ones.
func (cl *Cluster) Others(not ...*Node) []*Node {
	var out []*Node
	for _, nd := range cl.Nodes {
		skip := false
		for _, x := range not {
			skip = skip || x == nd
		}
		if !skip {
			out = append(out, nd)
		}
	}
	return out
}

// IDs returns the ids of the nodes.
func IDs(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, nd := range nodes {
		out[i] = nd.ID
	}
	return out
}

// IsOneOf returns whether a node id is one of the nodes'.
func IsOneOf(nodes ...*Node) func(id string) bool {
	return func(id string) bool {
		for _, nd := range nodes {
			if id == nd.ID {
				return true
			}
		}
		return false
	}
}

// Summary renders a cluster view in one line.
func Summary(v httpapi.ClusterView) string {
	parts := []string{"leader=" + v.Leader}
	for _, n := range v.Nodes {
		role := n.RaftRole
		if n.Suffrage != "voter" {
			role += " " + n.Suffrage
		}
		parts = append(parts, fmt.Sprintf("%s(%s %s stable=%v draining=%v subs=%d)", n.ID, role, n.Health, n.Stable, n.Draining, n.ActiveSub))
	}
	return strings.Join(parts, " ")
}

// View reads GET /v1/cluster from the node.
func (nd *Node) View() (httpapi.ClusterView, error) { return nd.view() }

func (nd *Node) view() (httpapi.ClusterView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	return nd.API().Cluster(ctx)
}

// View reads GET /v1/cluster from the first running node that answers.
func (cl *Cluster) View() (httpapi.ClusterView, error) {
	var errs []error
	for _, nd := range cl.Running() {
		v, err := nd.view()
		if err == nil {
			return v, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", nd.ID, err))
	}
	if len(errs) == 0 {
		return httpapi.ClusterView{}, errors.New("no node runs")
	}
	return httpapi.ClusterView{}, errors.Join(errs...)
}

// Summary is the cluster as a running node sees it, in one line.
func (cl *Cluster) Summary() string {
	v, err := cl.View()
	if err != nil {
		return "no view: " + err.Error()
	}
	return Summary(v)
}

// member says whether a node of a cluster view is in the raft
// configuration: a voter, or a non-voter beyond the voters setting.
func member(n httpapi.NodeView) bool {
	return n.Suffrage == "voter" || n.Suffrage == "nonvoter"
}

// WaitMembers waits until the cluster, as seen by every given node, has
// exactly the given nodes as members (voters, or non-voters beyond the
// voters setting), all up, and a leader among them; it returns the last
// view.
func (cl *Cluster) WaitMembers(timeout time.Duration, members ...*Node) httpapi.ClusterView {
	cl.t.Helper()
	want := map[string]bool{}
	for _, nd := range members {
		want[nd.ID] = true
	}
	var last httpapi.ClusterView
	WaitFor(cl.t, func() (bool, string, string) {
		expect := fmt.Sprintf("members %v, all up, with a leader among them", IDs(members))
		for _, nd := range members {
			v, err := nd.view()
			if err != nil {
				return false, expect, nd.ID + ": " + err.Error()
			}
			last = v
			if len(v.Nodes) != len(members) || !want[v.Leader] {
				return false, expect, nd.ID + " sees " + Summary(v)
			}
			for _, n := range v.Nodes {
				if !want[n.ID] || n.Health != "up" || !member(n) {
					return false, expect, nd.ID + " sees " + Summary(v)
				}
			}
		}
		return true, "", ""
	}, timeout)
	return last
}

// WaitAllUp waits (up to FormTimeout) until every running node sees every
// node of the cluster as an up member, with a leader.
func (cl *Cluster) WaitAllUp() {
	cl.t.Helper()
	n := len(cl.Nodes)
	WaitFor(cl.t, func() (bool, string, string) {
		want := fmt.Sprintf("every running node to see all %d nodes up with a leader", n)
		for _, nd := range cl.Running() {
			v, err := nd.view()
			if err != nil {
				return false, want, nd.ID + ": " + err.Error()
			}
			up := 0
			for _, m := range v.Nodes {
				if m.Health == "up" && member(m) {
					up++
				}
			}
			if v.Leader == "" || up != n || len(v.Nodes) != n {
				return false, want, nd.ID + " sees " + Summary(v)
			}
		}
		return true, "", ""
	}, UpTimeout)
}

// UpTimeout bounds WaitAllUp: a restarted node rejoins, catches up and
// commits a report. Beside stress-ng on two cores an election or two can
// come first, so it is longer than a start on a quiet machine needs.
const UpTimeout = time.Minute

// Leader returns the node that all the given nodes (default: every
// running node) agree leads, waiting up to 10s until they agree on one of
// themselves.
func (cl *Cluster) Leader(among ...*Node) *Node {
	cl.t.Helper()
	if len(among) == 0 {
		among = cl.Running()
	}
	expect := fmt.Sprintf("%v to agree on a leader among themselves", IDs(among))
	var id string
	WaitFor(cl.t, func() (bool, string, string) {
		id = ""
		for _, nd := range among {
			v, err := nd.view()
			if err != nil {
				return false, expect, nd.ID + ": " + err.Error()
			}
			if v.Leader == "" || (id != "" && v.Leader != id) || !IsOneOf(among...)(v.Leader) {
				return false, expect, nd.ID + " sees " + Summary(v)
			}
			id = v.Leader
		}
		return true, "", ""
	}, 10*time.Second)
	return cl.Node(id)
}

// FreePorts returns n distinct TCP ports that were free on host a moment
// ago. They are taken below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range): nodes dial each other from
// their advertised address, so an outgoing connection's ephemeral port
// could otherwise be one a stopped node needs again when it restarts on
// the same ports (a crash loop restarts on the same ports).
func FreePorts(t TB, host string, n int) []int {
	t.Helper()
	if host == "" {
		host = "127.0.0.1"
	}
	lo, hi := portsBelowEphemeral()
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	seen := map[int]bool{}
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			t.Fatalf("no %d free ports on %s in %d-%d", n, host, lo, hi)
		}
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	return ports
}

// portsBelowEphemeral is the range FreePorts picks from: from 10000 up to
// the start of the ephemeral range.
func portsBelowEphemeral() (lo, hi int) {
	lo, hi = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > lo+1000 {
				hi = v
			}
		}
	}
	return lo, hi
}

// Timings are the cluster's timing settings.
func (cl *Cluster) Timings() Timings { return cl.opts.Timings }

// Options are the options the cluster was started with (defaults filled
// in).
func (cl *Cluster) Options() Options { return cl.opts }

// Others returns the other nodes of the node's cluster (none for a dev
// node).
func (nd *Node) Others() []*Node {
	if nd.cl == nil {
		return nil
	}
	return nd.cl.Others(nd)
}
