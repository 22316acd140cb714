package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
)

// Helpers of the cluster tests (cluster_test.go): a cluster of real
// `hookswitch agent` processes on loopback TCP, with short timings.

// clusterTimings are the timing settings every node of a test cluster gets.
type clusterTimings struct {
	report, lease, downAfter, stableAfter time.Duration
	raftHeartbeat, raftElection           time.Duration
}

// shortClusterTimings make failure detection take about a second. The
// raft timeouts stay at 500ms (the leader lease is as long): shorter ones
// make leadership flap when the machine is busy (a race-enabled build on
// two cores, other test runs), and every new leader gives each node a
// full down-after again.
var shortClusterTimings = clusterTimings{
	report: 100 * time.Millisecond, lease: 500 * time.Millisecond,
	downAfter: 1200 * time.Millisecond, stableAfter: time.Second,
	raftHeartbeat: 500 * time.Millisecond, raftElection: 500 * time.Millisecond,
}

func (ct clusterTimings) flags() []string {
	return []string{
		"--report-interval", ct.report.String(), "--lease", ct.lease.String(),
		"--down-after", ct.downAfter.String(), "--stable-after", ct.stableAfter.String(),
		"--raft-heartbeat-timeout", ct.raftHeartbeat.String(), "--raft-election-timeout", ct.raftElection.String(),
	}
}

// Bounds of the cluster helpers.
const (
	// clusterFormTimeout bounds a cluster's start until every node is up.
	clusterFormTimeout = 20 * time.Second
	// clusterCallTimeout bounds one API call of a helper.
	clusterCallTimeout = 5 * time.Second
)

// testCluster is a cluster of agent processes: node i is "n<i+1>"; n1
// bootstrapped it and the others joined through n1.
type testCluster struct {
	t      *testing.T
	timing clusterTimings
	nodes  []*clusterNode
	root   string // the super token n1 wrote at bootstrap
}

// clusterNode is one agent of a testCluster.
type clusterNode struct {
	*agent
	id     string
	c      *testCluster
	frozen bool // SIGSTOPped
}

// mustStartCluster starts an n-node cluster with shortClusterTimings and
// waits until every node is a member and up.
func mustStartCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	return mustStartClusterWith(t, n, shortClusterTimings)
}

// mustStartClusterWith is mustStartCluster with other timings.
func mustStartClusterWith(t *testing.T, n int, timing clusterTimings) *testCluster {
	t.Helper()
	skipShort(t)
	dir := t.TempDir()
	ports := freeLoopbackPorts(t, 2*n)
	cl := &testCluster{t: t, timing: timing}
	for i := range n {
		id := "n" + strconv.Itoa(i+1)
		a := &agent{
			t:        t,
			dataDir:  filepath.Join(dir, id, "data"),
			httpAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i]),
			raftAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			stdout:   filepath.Join(dir, id, "agent.stdout"),
			stderr:   filepath.Join(dir, id, "agent.stderr"),
		}
		if err := os.MkdirAll(filepath.Dir(a.dataDir), 0o700); err != nil {
			t.Fatal(err)
		}
		cl.nodes = append(cl.nodes, &clusterNode{agent: a, id: id, c: cl})
	}
	// Cleanups run last-in first-out: frozen nodes are thawed, then every
	// node is stopped, then (on failure) the logs are printed.
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range cl.nodes {
				t.Logf("======== node %s (%s) ========", nd.id, nd.httpAddr)
				nd.dumpOutput()
			}
		}
	})
	for _, nd := range cl.nodes {
		t.Cleanup(nd.cleanup)
	}
	t.Cleanup(func() {
		for _, nd := range cl.nodes {
			nd.thaw()
		}
	})
	first := cl.nodes[0]
	first.args = first.agentArgs("--bootstrap")
	first.start()
	cl.root = first.rootToken()
	for _, nd := range cl.nodes[1:] {
		nd.args = nd.agentArgs("--join", first.httpAddr)
		nd.start()
	}
	cl.waitMembers(clusterFormTimeout, cl.nodes...)
	// Every test starts from the same place: all nodes stable, so new
	// subscriptions spread over all of them (the assignment rule prefers
	// stable nodes to less loaded unstable ones).
	waitFor(t, func() (bool, string, string) {
		v, err := first.view()
		if err != nil {
			return false, "all nodes stable", err.Error()
		}
		for _, m := range v.Nodes {
			if !m.Stable {
				return false, "all nodes stable", clusterSummary(v)
			}
		}
		return len(v.Nodes) == n, "all nodes stable", clusterSummary(v)
	}, timing.stableAfter+clusterFormTimeout)
	// What an operator sees: `hookswitch members` lists them all up.
	var members httpapi.ClusterView
	if err := json.Unmarshal([]byte(first.clusterCLI("members", "--json")), &members); err != nil {
		t.Fatalf("members --json: %v", err)
	}
	if len(members.Nodes) != n {
		t.Fatalf("members: %s, want %d nodes", clusterSummary(members), n)
	}
	for _, m := range members.Nodes {
		if m.Health != "up" {
			t.Fatalf("members: %s, want all up", clusterSummary(members))
		}
	}
	return cl
}

// agentArgs are the node's agent command line with extra flags.
func (nd *clusterNode) agentArgs(extra ...string) []string {
	args := []string{"agent", "--config", "/dev/null", "--node-id", nd.id, "--data-dir", nd.dataDir,
		"--http-addr", nd.httpAddr, "--raft-addr", nd.raftAddr}
	args = append(args, nd.c.timing.flags()...)
	return append(args, extra...)
}

// restart starts a stopped node again on the same data dir and ports,
// joining through every other node, and waits until /readyz answers.
func (nd *clusterNode) restart() {
	nd.c.t.Helper()
	var others []string
	for _, o := range nd.c.nodes {
		if o != nd {
			others = append(others, o.httpAddr)
		}
	}
	nd.args = nd.agentArgs("--join", strings.Join(others, ","))
	nd.start()
}

// freeze stops the process with SIGSTOP: it is alive but does nothing.
func (nd *clusterNode) freeze() {
	nd.c.t.Helper()
	if err := nd.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		nd.c.t.Fatalf("SIGSTOP %s: %v", nd.id, err)
	}
	nd.frozen = true
}

// thaw resumes a frozen process with SIGCONT.
func (nd *clusterNode) thaw() {
	if !nd.frozen || !nd.running() {
		return
	}
	if err := nd.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		nd.c.t.Errorf("SIGCONT %s: %v", nd.id, err)
	}
	nd.frozen = false
}

// api returns a client of the node with the cluster's root token.
func (nd *clusterNode) api() *client.Client { return client.New(nd.baseURL(), nd.c.root) }

// clusterCLI runs the hookswitch command line against the node with the
// root token; it fails the test unless the command exits 0.
func (nd *clusterNode) clusterCLI(args ...string) string {
	nd.c.t.Helper()
	return nd.mustCLI(append([]string{"--token", nd.c.root}, args...)...)
}

// view reads GET /v1/cluster from the node.
func (nd *clusterNode) view() (httpapi.ClusterView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	return nd.api().Cluster(ctx)
}

// sub reads a subscription from the node.
func (nd *clusterNode) sub(id string) (httpapi.SubView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	return nd.api().GetSub(ctx, id)
}

// node returns the node with the given id.
func (cl *testCluster) node(id string) *clusterNode {
	cl.t.Helper()
	for _, nd := range cl.nodes {
		if nd.id == id {
			return nd
		}
	}
	cl.t.Fatalf("no node %q in the cluster", id)
	return nil
}

// others returns the nodes other than the given ones.
func (cl *testCluster) others(not ...*clusterNode) []*clusterNode {
	var out []*clusterNode
	for _, nd := range cl.nodes {
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

func nodeIDs(nodes []*clusterNode) []string {
	out := make([]string, len(nodes))
	for i, nd := range nodes {
		out[i] = nd.id
	}
	return out
}

// clusterSummary renders a cluster view in one line.
func clusterSummary(v httpapi.ClusterView) string {
	parts := []string{"leader=" + v.Leader}
	for _, n := range v.Nodes {
		parts = append(parts, fmt.Sprintf("%s(%s %s stable=%v draining=%v subs=%d)", n.ID, n.RaftRole, n.Health, n.Stable, n.Draining, n.ActiveSub))
	}
	return strings.Join(parts, " ")
}

// waitMembers waits until the cluster, as seen by every given node, has
// exactly the given nodes as voters, all up, and a leader among them.
func (cl *testCluster) waitMembers(timeout time.Duration, members ...*clusterNode) httpapi.ClusterView {
	cl.t.Helper()
	want := map[string]bool{}
	for _, nd := range members {
		want[nd.id] = true
	}
	var last httpapi.ClusterView
	waitFor(cl.t, func() (bool, string, string) {
		expect := fmt.Sprintf("members %v, all up, with a leader among them", nodeIDs(members))
		for _, nd := range members {
			v, err := nd.view()
			if err != nil {
				return false, expect, nd.id + ": " + err.Error()
			}
			last = v
			if len(v.Nodes) != len(members) || !want[v.Leader] {
				return false, expect, nd.id + " sees " + clusterSummary(v)
			}
			for _, n := range v.Nodes {
				if !want[n.ID] || n.Health != "up" || n.Suffrage != "voter" {
					return false, expect, nd.id + " sees " + clusterSummary(v)
				}
			}
		}
		return true, "", ""
	}, timeout)
	return last
}

// leader returns the node that all the given (running) nodes agree leads,
// waiting until they agree on one of themselves.
func (cl *testCluster) leader(among ...*clusterNode) *clusterNode {
	cl.t.Helper()
	if len(among) == 0 {
		among = cl.nodes
	}
	expect := fmt.Sprintf("%v to agree on a leader among themselves", nodeIDs(among))
	var id string
	waitFor(cl.t, func() (bool, string, string) {
		id = ""
		for _, nd := range among {
			v, err := nd.view()
			if err != nil {
				return false, expect, nd.id + ": " + err.Error()
			}
			if v.Leader == "" || (id != "" && v.Leader != id) || !isOneOf(among...)(v.Leader) {
				return false, expect, nd.id + " sees " + clusterSummary(v)
			}
			id = v.Leader
		}
		return true, "", ""
	}, 10*time.Second)
	return cl.node(id)
}

// follower returns a running node that does not lead.
func (cl *testCluster) follower() *clusterNode {
	cl.t.Helper()
	l := cl.leader()
	return cl.others(l)[0]
}

// createSub creates a subscription through the node and returns it.
func (nd *clusterNode) createSub(f client.Fields) httpapi.SubView {
	nd.c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	if _, ok := f["model"]; !ok {
		f["model"] = "call"
	}
	if _, ok := f["post-url"]; !ok {
		// One post-url per subscription: equal parameters are a 409.
		f["post-url"] = fmt.Sprintf("http://127.0.0.1:9/unused/%v", f["id"])
	}
	v, err := nd.api().CreateSub(ctx, f)
	if err != nil {
		nd.c.t.Fatalf("create subscription through %s: %v", nd.id, err)
	}
	return v
}

// waitOwner polls the node every pollEvery until the subscription's
// current-active-server satisfies ok, and returns it and when it was seen.
func (nd *clusterNode) waitOwner(sub, want string, ok func(owner string) bool, timeout time.Duration) (string, time.Time) {
	nd.c.t.Helper()
	var owner string
	waitFor(nd.c.t, func() (bool, string, string) {
		v, err := nd.sub(sub)
		if err != nil {
			return false, want, nd.id + ": " + err.Error()
		}
		owner = v.CurrentActiveServer
		return ok(owner), want, fmt.Sprintf("%s says current-active-server of %s is %q", nd.id, sub, owner)
	}, timeout)
	return owner, time.Now()
}

// isOneOf says whether owner is one of the nodes.
func isOneOf(nodes ...*clusterNode) func(string) bool {
	return func(owner string) bool {
		for _, nd := range nodes {
			if owner == nd.id {
				return true
			}
		}
		return false
	}
}

// owners reads every subscription through the node: id → owner.
func (nd *clusterNode) owners() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	subs, err := nd.api().ListSubs(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range subs {
		out[s.ID] = s.CurrentActiveServer
	}
	return out, nil
}

// waitAllOwners waits until every subscription seen through nd has an
// owner satisfying ok, and returns the owners.
func (nd *clusterNode) waitAllOwners(want string, ok func(owner string) bool, timeout time.Duration) map[string]string {
	nd.c.t.Helper()
	var last map[string]string
	waitFor(nd.c.t, func() (bool, string, string) {
		o, err := nd.owners()
		if err != nil {
			return false, want, err.Error()
		}
		last = o
		for _, owner := range o {
			if !ok(owner) {
				return false, want, fmt.Sprint(o)
			}
		}
		return true, "", ""
	}, timeout)
	return last
}

// ingestEvent posts one event to the node's ingest endpoint (loopback
// needs no token).
func (nd *clusterNode) ingestEvent(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nd.baseURL()+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ingest: %s: %s", resp.Status, msg)
	}
	return nil
}

// hookSink is a webhook receiver that answers 200 and records when each
// POST arrived and how many events it carried.
type hookSink struct {
	srv *httptest.Server
	mu  sync.Mutex
	at  []time.Time
	n   int // events received
}

func newHookSink(t *testing.T) *hookSink {
	t.Helper()
	h := &hookSink{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		body, _ := io.ReadAll(r.Body)
		var evs []json.RawMessage
		_ = json.Unmarshal(body, &evs)
		h.mu.Lock()
		h.at = append(h.at, now)
		h.n += len(evs)
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookSink) url() string { return h.srv.URL + "/hook" }

// posts returns the arrival times of the POSTs so far.
func (h *hookSink) posts() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.at...)
}

// events returns how many events the POSTs carried so far.
func (h *hookSink) events() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
