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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
)

// Helpers of the event mesh tests (mesh_test.go): a three-node cluster of
// real agents on loopback with short timings, a webhook receiver that
// records every delivery with its source node and per-node sequence
// number, and ingest that numbers events per node.

// meshFlags are the short timings of every node of a mesh test cluster.
var meshFlags = []string{
	"--report-interval", "100ms", "--lease", "400ms", "--down-after", "800ms", "--stable-after", "1s",
	"--raft-heartbeat-timeout", "200ms", "--raft-election-timeout", "200ms", "--trim-interval", "200ms",
}

// meshCallTimeout bounds one API call of the helpers.
const meshCallTimeout = 5 * time.Second

// meshCluster is three agents: n1 bootstrapped the cluster, n2 and n3
// joined it through n1.
type meshCluster struct {
	t     *testing.T
	nodes []*meshNode
	root  string   // n1's root token
	extra []string // flags every node gets besides meshFlags
}

// meshNode is one agent of a meshCluster.
type meshNode struct {
	*agent
	id string
	cl *meshCluster
}

// startMeshCluster starts n1 (--bootstrap), n2 and n3 (--join n1) with
// meshFlags and extra, and waits until every node sees all three up. On
// failure every node's output is printed; at the end the nodes are stopped
// (together, so that the last one still has a quorum for its final report).
func startMeshCluster(t *testing.T, extra ...string) *meshCluster {
	t.Helper()
	skipShort(t)
	dir := t.TempDir()
	ports := freeLoopbackPorts(t, 6)
	cl := &meshCluster{t: t, extra: extra}
	for i := range 3 {
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
		cl.nodes = append(cl.nodes, &meshNode{agent: a, id: id, cl: cl})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range cl.nodes {
				t.Logf("======== node %s (%s) ========", nd.id, nd.httpAddr)
				nd.dumpOutput()
			}
		}
	})
	t.Cleanup(cl.stopAll)
	n1 := cl.nodes[0]
	n1.args = n1.argsWith("--bootstrap")
	n1.start()
	cl.root = n1.rootToken()
	for _, nd := range cl.nodes[1:] {
		nd.args = nd.argsWith("--join", n1.httpAddr)
		nd.start()
	}
	cl.waitAllUp()
	return cl
}

// stopAll sends SIGTERM to every running node at once and waits for them;
// a node that does not exit 0 within stopTimeout fails the test.
func (cl *meshCluster) stopAll() {
	var wg sync.WaitGroup
	for _, nd := range cl.nodes {
		wg.Go(nd.cleanup)
	}
	wg.Wait()
}

func (nd *meshNode) argsWith(extra ...string) []string {
	args := []string{"agent", "--config", "/dev/null", "--node-id", nd.id, "--data-dir", nd.dataDir,
		"--http-addr", nd.httpAddr, "--raft-addr", nd.raftAddr}
	args = append(args, meshFlags...)
	args = append(args, nd.cl.extra...)
	return append(args, extra...)
}

// others returns the nodes other than nd.
func (nd *meshNode) others() []*meshNode {
	var out []*meshNode
	for _, o := range nd.cl.nodes {
		if o != nd {
			out = append(out, o)
		}
	}
	return out
}

// restart starts a stopped node on its data dir and ports, joining
// through the other nodes, and waits until it is ready.
func (nd *meshNode) restart() {
	nd.cl.t.Helper()
	var addrs []string
	for _, o := range nd.others() {
		addrs = append(addrs, o.httpAddr)
	}
	nd.args = nd.argsWith("--join", strings.Join(addrs, ","))
	nd.start()
}

// api is a client of the node with the cluster's root token.
func (nd *meshNode) api() *client.Client { return client.New(nd.baseURL(), nd.cl.root) }

func (nd *meshNode) cluster() (httpapi.ClusterView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), meshCallTimeout)
	defer cancel()
	return nd.api().Cluster(ctx)
}

func (nd *meshNode) getSub(id string) (httpapi.SubView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), meshCallTimeout)
	defer cancel()
	return nd.api().GetSub(ctx, id)
}

// node returns the node with that id.
func (cl *meshCluster) node(id string) *meshNode {
	cl.t.Helper()
	for _, nd := range cl.nodes {
		if nd.id == id {
			return nd
		}
	}
	cl.t.Fatalf("no node %q", id)
	return nil
}

// running returns the nodes whose process runs.
func (cl *meshCluster) running() []*meshNode {
	var out []*meshNode
	for _, nd := range cl.nodes {
		if nd.running() {
			out = append(out, nd)
		}
	}
	return out
}

// waitAllUp waits until every running node sees all three nodes as up
// voters with a leader.
func (cl *meshCluster) waitAllUp() {
	cl.t.Helper()
	waitFor(cl.t, func() (bool, string, string) {
		const want = "every node to see n1, n2, n3 up with a leader"
		for _, nd := range cl.running() {
			v, err := nd.cluster()
			if err != nil {
				return false, want, nd.id + ": " + err.Error()
			}
			up := 0
			for _, n := range v.Nodes {
				if n.Health == "up" && n.Suffrage == "voter" {
					up++
				}
			}
			if v.Leader == "" || up != 3 || len(v.Nodes) != 3 {
				return false, want, nd.id + " sees " + meshClusterSummary(v)
			}
		}
		return true, "", ""
	}, 20*time.Second)
}

func meshClusterSummary(v httpapi.ClusterView) string {
	parts := []string{"leader=" + v.Leader}
	for _, n := range v.Nodes {
		parts = append(parts, fmt.Sprintf("%s(%s %s stable=%v subs=%d)", n.ID, n.RaftRole, n.Health, n.Stable, n.ActiveSub))
	}
	return strings.Join(parts, " ")
}

// createSub creates a subscription through nd.
func (nd *meshNode) createSub(f client.Fields) httpapi.SubView {
	nd.cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), meshCallTimeout)
	defer cancel()
	v, err := nd.api().CreateSub(ctx, f)
	if err != nil {
		nd.cl.t.Fatalf("create subscription through %s: %v", nd.id, err)
	}
	return v
}

// waitSubOn polls the subscription through nd until ok accepts it.
func (nd *meshNode) waitSubOn(id, want string, ok func(httpapi.SubView) bool, timeout time.Duration) httpapi.SubView {
	nd.cl.t.Helper()
	var last httpapi.SubView
	waitFor(nd.cl.t, func() (bool, string, string) {
		v, err := nd.getSub(id)
		if err != nil {
			return false, want, err.Error()
		}
		last = v
		return ok(v), want, fmt.Sprintf("owner=%s %s", v.CurrentActiveServer, meshSubSummary(v))
	}, timeout)
	return last
}

func meshSubSummary(v httpapi.SubView) string {
	return fmt.Sprintf("status=%s posts=%d errors=%d events=%d dropped=%d lag=%d last-error=%q",
		v.Status, v.PostsCount, v.ErrorCount, v.EventsCount, v.DroppedCount, v.Lag, v.LastError)
}

// waitOwned waits until the subscription has an owner every running node
// agrees on, and returns that node.
func (cl *meshCluster) waitOwned(id string, ok func(owner string) bool) *meshNode {
	cl.t.Helper()
	var owner string
	waitFor(cl.t, func() (bool, string, string) {
		owner = ""
		for _, nd := range cl.running() {
			v, err := nd.getSub(id)
			if err != nil {
				return false, "an owner of " + id, nd.id + ": " + err.Error()
			}
			if v.CurrentActiveServer == "" || (owner != "" && v.CurrentActiveServer != owner) || !ok(v.CurrentActiveServer) {
				return false, "an agreed owner of " + id, nd.id + " says " + strconv.Quote(v.CurrentActiveServer)
			}
			owner = v.CurrentActiveServer
		}
		return true, "", ""
	}, 15*time.Second)
	return cl.node(owner)
}

// meshEvent is the body of an event of the mesh tests: src names the
// node it is sent to, mseq numbers the events sent to that node, sent is
// when it was sent (unix ns).
func meshEvent(domain, src string, mseq int) map[string]any {
	return map[string]any{
		"model": "call", "domain": domain, "user": "u" + strconv.Itoa(mseq%5),
		"src": src, "mseq": mseq, "sent": time.Now().UnixNano(),
		"orig_callid": src + "-" + strconv.Itoa(mseq),
	}
}

// meshIngestHTTP is the client of ingest requests: a killed node makes a
// request fail, it never hangs.
var meshIngestHTTP = &http.Client{Timeout: 10 * time.Second}

// ingest posts events to nd's /v1/events and returns the event-ids of a
// 202; any other answer or a transport error is an error.
func (nd *meshNode) ingest(events []map[string]any) ([]string, error) {
	body, err := json.Marshal(events)
	if err != nil {
		return nil, err
	}
	resp, err := meshIngestHTTP.Post(nd.baseURL()+"/v1/events", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("ingest on %s: %s: %s", nd.id, resp.Status, b)
	}
	var res client.IngestResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("ingest on %s: %v: %s", nd.id, err, b)
	}
	if res.Accepted != len(events) || len(res.EventIDs) != len(events) {
		return nil, fmt.Errorf("ingest on %s: %d events sent, answer %s", nd.id, len(events), b)
	}
	return res.EventIDs, nil
}

// mustIngestSeq posts events mseq from..from+n-1 to nd and fails the test
// unless they are accepted.
func (nd *meshNode) mustIngestSeq(domain string, from, n int) []string {
	nd.cl.t.Helper()
	evs := make([]map[string]any, n)
	for i := range evs {
		evs[i] = meshEvent(domain, nd.id, from+i)
	}
	ids, err := nd.ingest(evs)
	if err != nil {
		nd.cl.t.Fatal(err)
	}
	return ids
}

// meshDelivery is one event of an accepted POST.
type meshDelivery struct {
	id    string
	node  string // the event's "node" (set by hookswitch: where it was ingested)
	src   string // the test's "src" (where the test sent it)
	mseq  int64  // the test's per-node number
	sent  int64  // unix ns when the test sent it
	at    time.Time
	post  int
	raw   []byte
	ingMs int64
}

// meshReceiver is a webhook endpoint on 127.0.0.1 for json-array posts.
// It answers 503 while down, else 200, and records every delivered event.
type meshReceiver struct {
	t       testing.TB
	srv     *httptest.Server
	down    atomic.Bool
	closing atomic.Bool // the test is over: cut POSTs are no problem

	mu       sync.Mutex
	posts    int
	refused  int
	got      []meshDelivery
	times    map[string]int
	first    map[string][]byte
	problems []string
}

func newMeshReceiver(t testing.TB) *meshReceiver {
	t.Helper()
	r := &meshReceiver{t: t, times: map[string]int{}, first: map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.closing.Store(true)
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			t.Errorf("receiver: %s", p)
		}
	})
	return r
}

func (r *meshReceiver) url() string { return r.srv.URL + "/hook" }

func (r *meshReceiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.posts
	r.posts++
	if err != nil {
		if !r.closing.Load() {
			r.problems = append(r.problems, fmt.Sprintf("POST %d: reading the body: %v", n, err))
		}
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if r.down.Load() {
		r.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		r.problems = append(r.problems, fmt.Sprintf("POST %d: not a JSON array: %v", n, err))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, raw := range raws {
		var f struct {
			ID     string `json:"event-id"`
			Node   string `json:"node"`
			Src    string `json:"src"`
			Mseq   int64  `json:"mseq"`
			Sent   int64  `json:"sent"`
			Ingest int64  `json:"ingest-time"`
		}
		if err := json.Unmarshal(raw, &f); err != nil || f.ID == "" {
			r.problems = append(r.problems, fmt.Sprintf("POST %d: bad event %s: %v", n, raw, err))
			continue
		}
		if prev, ok := r.first[f.ID]; ok && !bytes.Equal(prev, raw) {
			r.problems = append(r.problems, fmt.Sprintf("event %s delivered again with another body:\nfirst %s\nagain %s", f.ID, prev, raw))
		} else if !ok {
			r.first[f.ID] = append([]byte(nil), raw...)
		}
		r.times[f.ID]++
		r.got = append(r.got, meshDelivery{id: f.ID, node: f.Node, src: f.Src, mseq: f.Mseq, sent: f.Sent, at: at, post: n,
			raw: append([]byte(nil), raw...), ingMs: f.Ingest})
	}
	w.WriteHeader(http.StatusOK)
}

// deliveries returns a copy of every meshDelivery so far, in arrival order.
func (r *meshReceiver) deliveries() []meshDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]meshDelivery(nil), r.got...)
}

func (r *meshReceiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times)
}

func (r *meshReceiver) refusedPosts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// missing counts the ids never delivered.
func (r *meshReceiver) missing(ids []string) (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, example := 0, ""
	for _, id := range ids {
		if r.times[id] == 0 {
			if n == 0 {
				example = id
			}
			n++
		}
	}
	return n, example
}

// waitIDs waits until every id has been delivered at least once.
func (r *meshReceiver) waitIDs(t testing.TB, what string, ids []string, timeout time.Duration) {
	t.Helper()
	waitFor(t, func() (bool, string, string) {
		n, ex := r.missing(ids)
		return n == 0, fmt.Sprintf("all %d %s delivered", len(ids), what), fmt.Sprintf("%d missing (e.g. %s)", n, ex)
	}, timeout)
}

// meshCheckOrder fails the test unless, for each source node, the
// first deliveries of its events come in its mseq order. It returns the
// number of events first delivered per source.
func meshCheckOrder(t testing.TB, got []meshDelivery) map[string]int {
	t.Helper()
	last := map[string]int64{}
	count := map[string]int{}
	seen := map[string]bool{}
	bad := 0
	for _, d := range got {
		if seen[d.id] {
			continue
		}
		seen[d.id] = true
		if d.node != d.src {
			t.Errorf("event %s sent to %s says node %q", d.id, d.src, d.node)
		}
		if prev, ok := last[d.src]; ok && d.mseq <= prev {
			if bad++; bad <= 5 {
				t.Errorf("event %s (%s #%d) first delivered after %s #%d: out of order per source node", d.id, d.src, d.mseq, d.src, prev)
			}
		}
		last[d.src] = d.mseq
		count[d.src]++
	}
	if bad > 5 {
		t.Errorf("... %d events out of order in all", bad)
	}
	return count
}

// meshIncarnation is the log incarnation part of an event-id.
func meshIncarnation(id string) string { return id[:strings.LastIndexByte(id, '-')] }

// percentile of sorted durations.
func meshPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func meshSortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}
