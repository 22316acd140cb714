package integration

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// The event mesh tests run three real agents on loopback (n1 bootstraps,
// n2 and n3 join; report 100ms, lease 400ms, down-after 800ms,
// stable-after 1s, raft 200ms, trim 200ms) and real webhook receivers.
// Events carry the node the test sent them to ("src") and a per-node
// number ("mseq"), so order per source node and loss are checked per
// event.

// TestMeshAllNodesToOneSubscription: events ingested on all three nodes
// reach a subscription sent by one of them, each once, in order per source
// node, with the ingesting node in "node"; the subscription's counters
// (cluster-wide) agree.
func TestMeshAllNodesToOneSubscription(t *testing.T) {
	cl := startMeshCluster(t)
	recv := newMeshReceiver(t)
	n2 := cl.Node("n2")
	sub := createSubOn(t, n2, client.Fields{"model": "call", "domain": "mesh.example", "post-url": recv.URL()})
	owner := waitOwned(t, cl, sub.ID, func(string) bool { return true })
	t.Logf("subscription created through n2, sent by %s", owner.ID)

	const rounds, perReq = 10, 25
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	for _, nd := range cl.Nodes {
		wg.Go(func() {
			for r := range rounds {
				got, err := meshIngest(nd, meshEvents("mesh.example", nd.ID, r*perReq, perReq))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, got...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	total := len(ids)
	waitIDs(t, recv, "events", ids, 20*time.Second)
	got := recv.deliveries()
	perSource := meshCheckOrder(t, got)
	for _, nd := range cl.Nodes {
		if perSource[nd.ID] != rounds*perReq {
			t.Errorf("%d events of %s delivered, want %d", perSource[nd.ID], nd.ID, rounds*perReq)
		}
	}
	if len(got) != total {
		t.Errorf("%d deliveries of %d events: duplicates without any failure", len(got), total)
	}
	v := waitSubOn(t, n2, sub.ID, fmt.Sprintf("events-count %d, lag 0", total), func(v httpapi.SubView) bool {
		return v.EventsCount == uint64(total) && v.Lag == 0
	}, 10*time.Second)
	if v.DroppedCount != 0 || v.ErrorCount != 0 || v.Status != "active" {
		t.Errorf("subscription: %s, want active with nothing dropped", meshSubSummary(v))
	}
	lat := make([]time.Duration, 0, len(got))
	for _, d := range got {
		lat = append(lat, d.at.Sub(time.Unix(0, d.sent)))
	}
	meshSortDurations(lat)
	t.Logf("%d events from 3 nodes delivered by %s: latency p50 %s p99 %s; %s", total, owner.ID,
		meshPercentile(lat, 0.5).Round(time.Millisecond), meshPercentile(lat, 0.99).Round(time.Millisecond), meshSubSummary(v))
}

// meshEvents returns events mseq from..from+n-1 sent to node src.
func meshEvents(domain, src string, from, n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = meshEvent(domain, src, from+i)
	}
	return out
}

// meshIngester sends events to each of the given nodes, numbered per node,
// perReq per request, one request per node every pace, until stop is
// closed or total accepted events reach max. A node whose request fails
// after it was killed (dead says so) stops; another failure fails the
// test.
type meshIngester struct {
	t      *testing.T
	domain string

	mu       sync.Mutex
	accepted map[string][]string // node → event-ids answered 202
	total    int
	failed   map[string]error // node → the error that stopped its loop
	wg       sync.WaitGroup
	stop     chan struct{}
	stopOnce sync.Once
}

func startMeshIngest(t *testing.T, domain string, nodes []*harness.Node, perReq, max int, pace time.Duration, dead func(*harness.Node) bool) *meshIngester {
	in := &meshIngester{t: t, domain: domain, accepted: map[string][]string{}, failed: map[string]error{}, stop: make(chan struct{})}
	for _, nd := range nodes {
		in.wg.Go(func() {
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for next := 0; ; next += perReq {
				in.mu.Lock()
				full := in.total >= max
				in.mu.Unlock()
				if full {
					return
				}
				ids, err := meshIngest(nd, meshEvents(domain, nd.ID, next, perReq))
				in.mu.Lock()
				if err != nil {
					in.failed[nd.ID] = err
					in.mu.Unlock()
					if !dead(nd) {
						t.Errorf("ingest on %s: %v", nd.ID, err)
					}
					return
				}
				in.accepted[nd.ID] = append(in.accepted[nd.ID], ids...)
				in.total += len(ids)
				in.mu.Unlock()
				select {
				case <-in.stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	return in
}

// count is the number of events accepted so far.
func (in *meshIngester) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.total
}

// finish stops the loops and waits for them; it returns what each node
// accepted.
func (in *meshIngester) finish() map[string][]string {
	in.stopOnce.Do(func() { close(in.stop) })
	in.wg.Wait()
	in.mu.Lock()
	defer in.mu.Unlock()
	out := map[string][]string{}
	for k, v := range in.accepted {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// wait waits until the loops end by themselves (max reached or a failure)
// or timeout passes, then stops them.
func (in *meshIngester) wait(timeout time.Duration) map[string][]string {
	done := make(chan struct{})
	go func() { in.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
	return in.finish()
}

// TestMeshOwnerKill9UnderIngest: the node that sends the subscription is
// killed with SIGKILL while all three nodes ingest. Every event accepted
// by a surviving node is delivered while the dead node is still down;
// the events the dead node had accepted are delivered once it is back on
// its data dir. A duplicate is only an event first delivered shortly
// before the kill, after the last committed cursor: for each source node
// the duplicates are the tail of what was delivered before the kill, and
// each comes again with its event-id and body. The gap (kill → first
// delivery by the new owner) and the duplicates are logged.
func TestMeshOwnerKill9UnderIngest(t *testing.T) {
	cl := startMeshCluster(t)
	recv := newMeshReceiver(t)
	sub := createSubOn(t, cl.Node("n1"), client.Fields{"model": "call", "domain": "kill.example", "post-url": recv.URL()})
	owner := waitOwned(t, cl, sub.ID, func(string) bool { return true })

	const (
		perReq    = 20
		target    = 6000
		killAfter = 1500
		maxIngest = 20 * time.Second
		// dupWindow bounds how long before the kill a duplicated event
		// may have been first delivered: the committed cursor trails
		// delivery by about one report interval (100ms) plus a commit.
		dupWindow = time.Second
	)
	var killed sync.Map
	isDead := func(nd *harness.Node) bool { _, ok := killed.Load(nd.ID); return ok }
	ingestStart := time.Now()
	in := startMeshIngest(t, "kill.example", cl.Nodes, perReq, target, 30*time.Millisecond, isDead)
	waitFor(t, func() (bool, string, string) {
		n, d := in.count(), recv.Distinct()
		return n >= killAfter && d > 0, fmt.Sprintf("%d events accepted and some delivered", killAfter), fmt.Sprintf("%d accepted, %d delivered", n, d)
	}, maxIngest)

	killed.Store(owner.ID, true)
	acceptedAtKill, deliveredAtKill := in.count(), recv.Distinct()
	killStart := time.Now()
	owner.Kill()
	// A POST the old owner had sent before it died may still be read by
	// the receiver a moment later; nobody can take over before
	// down-after (800ms), so what begins 100ms after the death is the
	// new owner's.
	oldOwnerUntil := time.Now().Add(100 * time.Millisecond)
	newOwner := waitOwned(t, cl, sub.ID, func(o string) bool { return o != owner.ID })
	t.Logf("SIGKILL of owner %s with %d accepted, %d delivered; %s took over %s after the kill",
		owner.ID, acceptedAtKill, deliveredAtKill, newOwner.ID, time.Since(killStart).Round(time.Millisecond))

	accepted := in.wait(maxIngest - time.Since(ingestStart))
	var survivorIDs, deadIDs []string
	for node, ids := range accepted {
		if node == owner.ID {
			deadIDs = append(deadIDs, ids...)
		} else {
			survivorIDs = append(survivorIDs, ids...)
		}
	}
	t.Logf("ingest ended after %s: %d accepted by the survivors, %d by %s before its death",
		time.Since(ingestStart).Round(time.Millisecond), len(survivorIDs), len(deadIDs), owner.ID)
	waitIDs(t, recv, "events accepted by the survivors (the dead node still down)", survivorIDs, 20*time.Second)
	survivorsDone := time.Since(killStart)

	restartAt := time.Now()
	owner.Restart()
	cl.WaitAllUp()
	waitIDs(t, recv, "events accepted by the restarted node", deadIDs, 20*time.Second)
	t.Logf("the restarted %s's events all delivered %s after the kill", owner.ID, time.Since(killStart).Round(time.Millisecond))

	got := recv.deliveries()
	meshCheckOrder(t, got)

	// The gap: the first POST by the new owner.
	var gap time.Duration = -1
	for _, d := range got {
		if d.at.After(oldOwnerUntil) {
			gap = d.at.Sub(killStart)
			break
		}
	}
	if gap < 0 {
		t.Fatal("nothing delivered after the kill")
	}

	// Duplicates: where, when, and what they look like. "Before the kill"
	// is before oldOwnerUntil: by the old owner.
	firstPost := map[string]int{}
	times := map[string]int{}
	for _, d := range got {
		if _, ok := firstPost[d.ID]; !ok {
			firstPost[d.ID] = d.post
		}
		times[d.ID]++
	}
	dups, badDups := 0, 0
	type srcDup struct {
		before   []int64 // mseqs first delivered before the kill
		dup      map[int64]bool
		earliest time.Time // first delivery of the earliest duplicate
	}
	bySrc := map[string]*srcDup{}
	for _, d := range got {
		s := bySrc[d.src]
		if s == nil {
			s = &srcDup{dup: map[int64]bool{}}
			bySrc[d.src] = s
		}
		if firstPost[d.ID] != d.post {
			continue // a repeated delivery
		}
		if d.at.Before(oldOwnerUntil) {
			s.before = append(s.before, d.mseq)
		}
		if times[d.ID] > 1 {
			dups += times[d.ID] - 1
			s.dup[d.mseq] = true
			if !d.at.Before(oldOwnerUntil) {
				var where []string
				afterRestart := false
				for _, e := range got {
					if e.ID == d.ID {
						where = append(where, fmt.Sprintf("POST %d at kill%+v", e.post, e.at.Sub(killStart).Round(time.Millisecond)))
						afterRestart = afterRestart || (e.post != d.post && e.at.After(restartAt))
					}
				}
				why := "a duplicate not caused by the failover"
				if afterRestart {
					why = "delivered again after the old owner restarted: it sent the subscription from the state it died with " +
						"(its lease renewed before its own state applied the reassignment), while the new owner sent it too"
				}
				if badDups++; badDups <= 3 {
					t.Errorf("event %s (%s #%d) first delivered by the new owner, delivered %d times (%s): %s",
						d.ID, d.src, d.mseq, times[d.ID], strings.Join(where, ", "), why)
				}
			}
			if s.earliest.IsZero() || d.at.Before(s.earliest) {
				s.earliest = d.at
			}
		}
	}
	if badDups > 3 {
		t.Errorf("... %d such duplicates in all", badDups)
	}
	worst := time.Duration(0)
	for src, s := range bySrc {
		if len(s.dup) == 0 {
			continue
		}
		// The duplicates of a source are a tail of what it had delivered
		// before the kill: the new owner resumed at a committed cursor.
		sort.Slice(s.before, func(i, j int) bool { return s.before[i] < s.before[j] })
		inTail := false
		for _, m := range s.before {
			if s.dup[m] {
				inTail = true
			} else if inTail {
				t.Errorf("source %s: #%d was not redelivered but an earlier event was: the new owner did not resume at a cursor", src, m)
				break
			}
		}
		if w := killStart.Sub(s.earliest); w > worst {
			worst = w
		}
	}
	if worst > dupWindow {
		t.Errorf("an event first delivered %s before the kill was delivered again: more than %s, before the last committed cursor", worst, dupWindow)
	}
	t.Logf("kill -9 of the owner: gap %s (kill → first delivery by %s), %d duplicates (earliest first delivered %s before the kill), "+
		"survivors' %d events all delivered %s after the kill, %d deliveries in all",
		gap.Round(time.Millisecond), newOwner.ID, dups, worst.Round(time.Millisecond), len(survivorIDs), survivorsDone.Round(time.Millisecond), len(got))
	if gap > 800*time.Millisecond+2*time.Second {
		t.Errorf("gap %s: more than down-after + 2s", gap)
	}
}

// TestMeshWipedPeerNewIncarnation: a node that is neither the owner nor the
// leader is killed, its data dir wiped, and it comes back with the same
// node id and address (its old entry removed first with DELETE
// /v1/cluster/nodes/{id}): its log is a new incarnation, seqs starting at
// 1 again. Events ingested on
// it afterwards are delivered, in order; nothing of the other nodes, nor
// of its old log, is delivered again. Then the subscription moves to the
// wiped node (preferred-server): it resumes every other node's log from
// the committed cursors, from copies it made from scratch, and again
// nothing is delivered twice.
func TestMeshWipedPeerNewIncarnation(t *testing.T) {
	cl := startMeshCluster(t)
	recv := newMeshReceiver(t)
	n1 := cl.Node("n1")
	sub := createSubOn(t, n1, client.Fields{"model": "call", "domain": "wipe.example", "post-url": recv.URL()})
	owner := waitOwned(t, cl, sub.ID, func(string) bool { return true })
	// The wiped node is neither the owner nor the raft leader: its loss
	// costs no takeover and no election (the kill test covers those), so
	// whatever is delivered twice is the new incarnation's doing.
	v, err := owner.View()
	if err != nil {
		t.Fatal(err)
	}
	var wiped, other *harness.Node
	for _, nd := range owner.Others() {
		if wiped == nil && nd.ID != v.Leader {
			wiped = nd
		} else {
			other = nd
		}
	}
	t.Logf("owner %s, leader %s; %s will be wiped", owner.ID, v.Leader, wiped.ID)

	next := map[string]int{}
	var all []string
	ingestRound := func(nodes ...*harness.Node) []string {
		var ids []string
		for _, nd := range nodes {
			ids = append(ids, mustIngestSeq(t, nd, "wipe.example", next[nd.ID], 40)...)
			next[nd.ID] += 40
		}
		all = append(all, ids...)
		return ids
	}
	// settled waits until every event so far is delivered and counted
	// (so the committed cursors are past them).
	settled := func(what string) {
		t.Helper()
		waitIDs(t, recv, what, all, 15*time.Second)
		waitSubOn(t, owner, sub.ID, fmt.Sprintf("events-count %d, lag 0", len(all)), func(v httpapi.SubView) bool {
			return v.EventsCount == uint64(len(all)) && v.Lag == 0
		}, 10*time.Second)
	}
	before := ingestRound(cl.Nodes...)
	settled("events before the wipe")
	oldInc := ""
	for _, id := range before {
		if recvNode(recv, id) == wiped.ID {
			oldInc = meshIncarnation(id)
		}
	}

	wiped.Kill()
	if err := os.RemoveAll(wiped.DataDir); err != nil {
		t.Fatal(err)
	}
	// A wiped node has lost its raft state: it must not come back as the
	// voter it was (same id and address), so its old entry goes first.
	waitFor(t, func() (bool, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), meshCallTimeout)
		err := other.API().RemoveNode(ctx, wiped.ID)
		cancel()
		return err == nil, "DELETE /v1/cluster/nodes/" + wiped.ID + " to succeed", fmt.Sprint(err)
	}, 15*time.Second)
	ingestRound(owner, other) // while it is away
	wiped.Restart()
	cl.WaitAllUp()
	next[wiped.ID] = 1000 // its new log: numbered apart from the old one
	afterIDs := ingestRound(cl.Nodes...)
	settled("events after the wipe")

	var newInc string
	for _, id := range afterIDs {
		if recvNode(recv, id) == wiped.ID {
			if newInc == "" {
				newInc = meshIncarnation(id)
				if !strings.HasSuffix(id, "-1") {
					t.Errorf("first event of the wiped node's new log is %s, want seq 1", id)
				}
			}
		}
	}
	if newInc == "" || newInc == oldInc {
		t.Errorf("wiped node's events: incarnation %q, old %q: want a new one", newInc, oldInc)
	}

	// Move the subscription to the wiped node: it sends from its fresh
	// copies of the others' logs and its new log.
	ctx, cancel := context.WithTimeout(context.Background(), meshCallTimeout)
	_, err = other.API().UpdateSub(ctx, sub.ID, client.Fields{"preferred-server": wiped.ID}, true)
	cancel()
	if err != nil {
		t.Fatalf("PATCH preferred-server: %v", err)
	}
	waitOwned(t, cl, sub.ID, func(o string) bool { return o == wiped.ID })
	ingestRound(cl.Nodes...)
	settled("events sent by the wiped node")

	got := recv.deliveries()
	meshCheckOrder(t, got)
	if len(got) != len(all) {
		times := map[string]int{}
		for _, d := range got {
			times[d.ID]++
		}
		n := 0
		for id, c := range times {
			if c > 1 {
				if n++; n <= 5 {
					t.Errorf("event %s (node %s) delivered %d times", id, recvNode(recv, id), c)
				}
			}
		}
		t.Errorf("%d deliveries of %d events: a wiped peer made someone deliver again", len(got), len(all))
	}
	vs, _ := getSub(owner, sub.ID)
	t.Logf("wiped %s: old incarnation %s, new %s; %d events delivered once each; %s", wiped.ID, oldInc, newInc, len(all), meshSubSummary(vs))
}

// recvNode is the "node" of a delivered event ("" if not delivered).
func recvNode(r *meshReceiver, id string) string {
	for _, e := range r.Events() {
		if e.ID == id {
			n, _ := e.Fields["node"].(string)
			return n
		}
	}
	return ""
}

// TestMeshRetentionDropsCounted: with --retention 2s, a subscription whose
// endpoint answers 503 for longer than that loses the events ingested on
// all three nodes meanwhile, and its dropped-count (summed over the
// nodes) is exactly their number; none of them arrives after the
// endpoint recovers, while later events do. A second subscription with a
// healthy endpoint gets every event and drops none.
func TestMeshRetentionDropsCounted(t *testing.T) {
	cl := startMeshCluster(t, "--retention", "2s")
	down := newMeshReceiver(t)
	down.down.Store(true)
	healthy := newMeshReceiver(t)
	n3 := cl.Node("n3")
	subD := createSubOn(t, n3, client.Fields{"model": "call", "domain": "ret.example", "post-url": down.URL()})
	subH := createSubOn(t, n3, client.Fields{"model": "call", "domain": "ret.example", "post-url": healthy.URL()})
	owner := waitOwned(t, cl, subD.ID, func(string) bool { return true })
	waitOwned(t, cl, subH.ID, func(string) bool { return true })
	// Events of another domain: not matched, so never counted as dropped.
	for _, nd := range cl.Nodes {
		mustIngestSeq(t, nd, "other.example", 0, 10)
	}

	const perNode = 30
	var lost []string
	for _, nd := range cl.Nodes {
		lost = append(lost, mustIngestSeq(t, nd, "ret.example", 0, perNode)...)
	}
	total := uint64(len(lost))
	waitIDs(t, healthy, "events at the healthy endpoint", lost, 15*time.Second)
	waitFor(t, func() (bool, string, string) {
		n := down.Refused()
		return n >= 1, "a POST refused by the down endpoint", fmt.Sprint(n)
	}, 10*time.Second)

	// Retention drops them everywhere; every node counts its own. Nothing
	// is held for delivery any more (lag 0).
	v := waitSubOn(t, n3, subD.ID, fmt.Sprintf("dropped-count %d and lag 0", total), func(v httpapi.SubView) bool {
		return v.DroppedCount >= total && v.Lag == 0
	}, 15*time.Second)
	t.Logf("down endpoint (owner %s): %s after %d refused POSTs", owner.ID, meshSubSummary(v), down.Refused())

	// The endpoint recovers; events after that are delivered, the dropped
	// ones never.
	down.down.Store(false)
	var later []string
	for _, nd := range cl.Nodes {
		later = append(later, mustIngestSeq(t, nd, "ret.example", 1000, 5)...)
	}
	waitIDs(t, down, "events after the recovery", later, 15*time.Second)
	waitIDs(t, healthy, "events after the recovery at the healthy endpoint", later, 15*time.Second)
	lostSet := map[string]bool{}
	for _, id := range lost {
		lostSet[id] = true
	}
	for _, d := range down.deliveries() {
		if lostSet[d.ID] {
			t.Errorf("event %s (%s #%d) was counted as dropped but delivered after the recovery", d.ID, d.src, d.mseq)
		}
	}
	vD := waitSubOn(t, n3, subD.ID, "the recovery counted", func(v httpapi.SubView) bool {
		return v.EventsCount == uint64(len(later)) && v.Lag == 0 && v.Status == "active"
	}, 10*time.Second)
	if vD.DroppedCount != total {
		t.Errorf("down endpoint: dropped-count %d, want %d (the matching events retention dropped)", vD.DroppedCount, total)
	}
	vH := waitSubOn(t, n3, subH.ID, "everything delivered", func(v httpapi.SubView) bool {
		return v.EventsCount == total+uint64(len(later)) && v.Lag == 0
	}, 10*time.Second)
	if vH.DroppedCount != 0 {
		t.Errorf("healthy endpoint: dropped-count %d, want 0", vH.DroppedCount)
	}
	meshCheckOrder(t, healthy.deliveries())
	t.Logf("down endpoint: %s; healthy: %s", meshSubSummary(vD), meshSubSummary(vH))
}
