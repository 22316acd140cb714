package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// Helpers of the event mesh tests (mesh_test.go): a three-node cluster of
// real agents on loopback with short timings, a webhook receiver that
// records every delivery with its source node and per-node sequence
// number, and ingest that numbers events per node.

// meshTimings are the short timings of every node of a mesh test cluster
// (with meshFlags).
var meshTimings = harness.Timings{
	Report: 100 * time.Millisecond, Lease: 400 * time.Millisecond, DownAfter: 800 * time.Millisecond, StableAfter: time.Second,
	RaftHeartbeat: 200 * time.Millisecond, RaftElection: 200 * time.Millisecond,
}

// meshFlags are the flags of every mesh test node beside meshTimings.
var meshFlags = []string{"--trim-interval", "200ms"}

// meshCallTimeout bounds one API call of the helpers.
const meshCallTimeout = harness.CallTimeout

// startMeshCluster starts n1 (--bootstrap), n2 and n3 (--join n1) with
// meshTimings, meshFlags and extra, and waits until every node sees all
// three up.
func startMeshCluster(t *testing.T, extra ...string) *harness.Cluster {
	t.Helper()
	skipShort(t)
	return harness.StartCluster(t, harness.Options{Nodes: 3, Timings: meshTimings, Extra: append(append([]string(nil), meshFlags...), extra...)})
}

// waitSubOn polls the subscription through nd until ok accepts it.
func waitSubOn(t testing.TB, nd *harness.Node, id, want string, ok func(httpapi.SubView) bool, timeout time.Duration) httpapi.SubView {
	t.Helper()
	var last httpapi.SubView
	waitFor(t, func() (bool, string, string) {
		v, err := getSub(nd, id)
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
func waitOwned(t testing.TB, cl *harness.Cluster, id string, ok func(owner string) bool) *harness.Node {
	t.Helper()
	var owner string
	waitFor(t, func() (bool, string, string) {
		owner = ""
		for _, nd := range cl.Running() {
			v, err := getSub(nd, id)
			if err != nil {
				return false, "an owner of " + id, nd.ID + ": " + err.Error()
			}
			if v.CurrentActiveServer == "" || (owner != "" && v.CurrentActiveServer != owner) || !ok(v.CurrentActiveServer) {
				return false, "an agreed owner of " + id, nd.ID + " says " + strconv.Quote(v.CurrentActiveServer)
			}
			owner = v.CurrentActiveServer
		}
		return true, "", ""
	}, 15*time.Second)
	return cl.Node(owner)
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

// meshIngest posts events to nd's /v1/events and returns the event-ids of
// a 202; any other answer or a transport error is an error. A killed node
// makes a request fail, it never hangs.
func meshIngest(nd *harness.Node, events []map[string]any) ([]string, error) {
	return harness.Ingest(context.Background(), nd, 10*time.Second, events)
}

// mustIngestSeq posts events mseq from..from+n-1 to nd and fails the test
// unless they are accepted.
func mustIngestSeq(t testing.TB, nd *harness.Node, domain string, from, n int) []string {
	t.Helper()
	evs := make([]map[string]any, n)
	for i := range evs {
		evs[i] = meshEvent(domain, nd.ID, from+i)
	}
	ids, err := meshIngest(nd, evs)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// meshReceiver is a harness.Receiver that answers 503 while down, else
// 200.
type meshReceiver struct {
	*harness.Receiver
	down atomic.Bool
}

func newMeshReceiver(t testing.TB) *meshReceiver {
	t.Helper()
	r := &meshReceiver{}
	r.Receiver = harness.NewReceiver(t, harness.ReceiverOptions{Answer: func(int, *http.Request) (int, bool) {
		if r.down.Load() {
			return http.StatusServiceUnavailable, false
		}
		return http.StatusOK, false
	}})
	return r
}

// meshDelivery is one event of an accepted POST.
type meshDelivery struct {
	ID    string
	node  string // the event's "node" (set by hookswitch: where it was ingested)
	src   string // the test's "src" (where the test sent it)
	mseq  int64  // the test's per-node number
	sent  int64  // unix ns when the test sent it
	at    time.Time
	post  int
	raw   []byte
	ingMs int64
}

// deliveries returns every meshDelivery so far, in arrival order.
func (r *meshReceiver) deliveries() []meshDelivery {
	evs := r.Events()
	out := make([]meshDelivery, 0, len(evs))
	for _, e := range evs {
		d := meshDelivery{ID: e.ID, at: e.At, post: e.Post, raw: e.Raw}
		d.node, _ = e.Fields["node"].(string)
		d.src, _ = e.Fields["src"].(string)
		d.mseq = numField(e.Fields, "mseq")
		d.sent = numField(e.Fields, "sent")
		d.ingMs = numField(e.Fields, "ingest-time")
		out = append(out, d)
	}
	return out
}

// numField is an integer field of a received event (0 when absent).
func numField(f map[string]any, name string) int64 {
	if n, ok := f[name].(json.Number); ok {
		v, _ := n.Int64()
		return v
	}
	return 0
}

// waitIDs waits until every id has been delivered at least once.
func waitIDs(t testing.TB, r *meshReceiver, what string, ids []string, timeout time.Duration) {
	t.Helper()
	waitFor(t, func() (bool, string, string) {
		n, ex := r.Missing(ids)
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
		if seen[d.ID] {
			continue
		}
		seen[d.ID] = true
		if d.node != d.src {
			t.Errorf("event %s sent to %s says node %q", d.ID, d.src, d.node)
		}
		if prev, ok := last[d.src]; ok && d.mseq <= prev {
			if bad++; bad <= 5 {
				t.Errorf("event %s (%s #%d) first delivered after %s #%d: out of order per source node", d.ID, d.src, d.mseq, d.src, prev)
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
