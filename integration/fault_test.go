package integration

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// The fault suite: real processes, real kill -9, partitions and a lossy
// link in a network namespace the test makes, a full disk on a tmpfs; and
// exact accounting of every accepted event-id (lost, duplicated, out of
// order per source node). Each test runs in under two minutes; -fault-scale
// N makes its kills and durations N times larger (docs/reliability.md).
// .ci/run runs the suite twice: in scripts/test, and again beside
// stress-ng's CPU and disk load.

var faultScale = flag.Int("fault-scale", 1, "multiply the fault suite's kills and durations")

// faultTimings are the cluster timings of the fault suite: failure
// detection in about two seconds, and raft timeouts long enough not to
// flap beside stress-ng on two cores (an election gives every node a whole
// down-after again, so a flapping leader delays failover).
var faultTimings = harness.Timings{
	Report: 100 * time.Millisecond, Lease: 700 * time.Millisecond,
	DownAfter: 2 * time.Second, StableAfter: time.Second,
	RaftHeartbeat: 700 * time.Millisecond, RaftElection: 700 * time.Millisecond,
}

// faultPostTimeout is the subscriptions' request timeout (timeout-ms).
const faultPostTimeout = 2 * time.Second

// faultDeliverTimeout bounds the wait for every accepted event after the
// faults end: a failover, a catch-up from the mirrors, retries with
// backoff.
const faultDeliverTimeout = 60 * time.Second

// createFaultSubs creates n call subscriptions of domain, each with its own
// path on the receiver, and waits until each has an owner.
func createFaultSubs(t *testing.T, cl *harness.Cluster, recv *harness.Receiver, domain string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
		v, err := cl.Nodes[0].API().CreateSub(ctx, client.Fields{
			"model": "call", "domain": domain, "post-url": fmt.Sprintf("%s/hook/%d", recv.Base(), i),
			"timeout-ms": faultPostTimeout.Milliseconds(),
		})
		cancel()
		if err != nil {
			t.Fatalf("create subscription %d: %v", i, err)
		}
		ids = append(ids, v.ID)
		waitOwned(t, cl, v.ID, func(string) bool { return true })
	}
	return ids
}

// faultEvent is the event of the fault suite's load.
func faultEvent(domain string) func(node string, i int) map[string]any {
	return func(node string, i int) map[string]any {
		return map[string]any{"model": "call", "domain": domain, "src": node, "lseq": i, "orig_callid": node + "-" + strconv.Itoa(i)}
	}
}

// checkAccount fails the test unless every accepted event reached every
// subscription, in order per source node; it logs the figures.
func checkAccount(t *testing.T, recv *harness.Receiver, accepted map[string][]string, subs []string, what string) []harness.Account {
	t.Helper()
	var out []harness.Account
	for _, s := range subs {
		a := recv.WaitDelivered(t, accepted, s, faultDeliverTimeout)
		t.Logf("%s, subscription %s: %s", what, s, a)
		if a.OutOfOrder > 0 {
			t.Errorf("%s: subscription %s got %d events out of order (per source node)", what, s, a.OutOfOrder)
		}
		out = append(out, a)
	}
	return out
}

// checkOneLiveOwner fails the test unless every running node agrees that
// each subscription has one owner, and that owner is running.
func checkOneLiveOwner(t *testing.T, cl *harness.Cluster, subs []string) {
	t.Helper()
	live := harness.IsOneOf(cl.Running()...)
	for _, s := range subs {
		waitOwned(t, cl, s, live)
	}
}

// TestFaultCrashLoop: 20 kills -9 of a random node (leader, owner or
// other), each restarted on its data dir, under about 300 events/s sent
// to the live nodes, with three subscriptions. At the end every accepted
// event reached every subscription, and each has exactly one owner, a live
// node.
func TestFaultCrashLoop(t *testing.T) {
	skipShort(t)
	cl := harness.StartCluster(t, harness.Options{Nodes: 3, Timings: faultTimings})
	recv := harness.NewReceiver(t, harness.ReceiverOptions{})
	subs := createFaultSubs(t, cl, recv, "crash.example", 3)
	kills := 20 * *faultScale
	load := harness.StartLoad(t, cl.Running, harness.LoadOptions{
		Rate: 300, PerRequest: 10, Max: 1_000_000, Duration: time.Duration(kills) * 10 * time.Second,
		Event: faultEvent("crash.example"), Timeout: 5 * time.Second,
	})
	start := time.Now()
	roles := map[string]int{}
	for k := range kills {
		nd := cl.Nodes[rand.IntN(len(cl.Nodes))]
		roles[faultRole(t, cl, nd, subs)]++
		nd.Kill()
		// Down for less than down-after, or for longer: both happen.
		waitOrStop(time.Duration(200+rand.IntN(2500)) * time.Millisecond)
		nd.Restart()
		cl.WaitAllUp()
		if k%5 == 4 {
			t.Logf("%d kills after %s, %d events accepted", k+1, time.Since(start).Round(time.Millisecond), load.Count())
		}
	}
	accepted := load.Stop()
	errs, lastErr := load.Errors()
	t.Logf("crash loop: %d kills (%v) in %s; %d events accepted, %d requests refused or cut (last: %s)",
		kills, roles, time.Since(start).Round(time.Millisecond), countIDs(accepted), errs, lastErr)
	checkAccount(t, recv, accepted, subs, "crash loop")
	checkOneLiveOwner(t, cl, subs)
}

// waitOrStop waits d: the pause a crashed node stays down. (Not a
// synchronisation: nothing waits for something to happen here.)
func waitOrStop(d time.Duration) { <-time.After(d) }

// faultRole says what the node is for the log: leader, owner, or other.
func faultRole(t *testing.T, cl *harness.Cluster, nd *harness.Node, subs []string) string {
	v, err := cl.View()
	if err == nil && v.Leader == nd.ID {
		return "leader"
	}
	for _, s := range subs {
		if sv, err := getSub(cl.Running()[0], s); err == nil && sv.CurrentActiveServer == nd.ID {
			return "owner"
		}
	}
	return "other"
}

func countIDs(m map[string][]string) int {
	n := 0
	for _, ids := range m {
		n += len(ids)
	}
	return n
}

// partitionCluster starts three nodes on 127.0.0.11-13 inside a new
// network namespace, and a receiver in it on 127.0.0.1, which no cut
// touches.
func partitionCluster(t *testing.T) (*harness.Cluster, *harness.NetNS, *harness.Receiver) {
	t.Helper()
	skipShort(t)
	ns := harness.NewNetNS(t)
	cl := harness.StartCluster(t, harness.Options{
		Nodes: 3, Timings: faultTimings, NetNS: ns,
		Hosts: []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"},
	})
	recv := harness.NewReceiver(t, harness.ReceiverOptions{Listen: ns.Listen})
	return cl, ns, recv
}

// hostOf is the IP of a host:port.
func hostOf(addr string) string { return addr[:strings.LastIndexByte(addr, ':')] }

// cutOff cuts nd from every other node (not from the receiver or the test).
func cutOff(ns *harness.NetNS, cl *harness.Cluster, nd *harness.Node) {
	for _, o := range cl.Others(nd) {
		ns.Cut(hostOf(nd.HTTPAddr), hostOf(o.HTTPAddr))
	}
}

// webhookAttempts is the node's count of POST attempts (successful and
// failed) from its /metrics, or -1 when it cannot be read.
func webhookAttempts(nd *harness.Node) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, nd.BaseURL()+"/metrics", nil)
	resp, err := nd.HTTPClient().Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	total := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		for _, name := range []string{"hookswitch_webhook_posts_total ", "hookswitch_webhook_errors_total "} {
			if v, ok := strings.CutPrefix(line, name); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				total += f
			}
		}
	}
	return total
}

// attemptWatch samples a node's POST attempt count and remembers when it
// last moved.
type attemptWatch struct {
	stop  chan struct{}
	done  chan struct{}
	moved time.Time
}

func watchAttempts(nd *harness.Node) *attemptWatch {
	w := &attemptWatch{stop: make(chan struct{}), done: make(chan struct{}), moved: time.Now()}
	go func() {
		defer close(w.done)
		last := webhookAttempts(nd)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if n := webhookAttempts(nd); n >= 0 && n != last {
				last, w.moved = n, time.Now()
			}
		}
	}()
	return w
}

// lastMove stops the watch and returns when the count last moved.
func (w *attemptWatch) lastMove() time.Time {
	close(w.stop)
	<-w.done
	return w.moved
}

// ownerAmong waits until every node of among names the same owner of sub
// and ok accepts it, and returns it.
func ownerAmong(t *testing.T, among []*harness.Node, sub string, ok func(string) bool, timeout time.Duration) string {
	t.Helper()
	var owner string
	harness.WaitFor(t, func() (bool, string, string) {
		owner = ""
		for _, nd := range among {
			v, err := getSub(nd, sub)
			if err != nil {
				return false, "an agreed owner", nd.ID + ": " + err.Error()
			}
			if v.CurrentActiveServer == "" || (owner != "" && owner != v.CurrentActiveServer) || !ok(v.CurrentActiveServer) {
				return false, "an agreed owner", nd.ID + " says " + strconv.Quote(v.CurrentActiveServer)
			}
			owner = v.CurrentActiveServer
		}
		return true, "", ""
	}, timeout)
	return owner
}

// nonLeaderOwner makes a node other than the leader send sub (its
// preferred server) and returns it.
func nonLeaderOwner(t *testing.T, cl *harness.Cluster, sub string) (owner, leader *harness.Node) {
	t.Helper()
	leader = cl.Leader()
	owner = waitOwned(t, cl, sub, func(string) bool { return true })
	if owner != leader {
		return owner, leader
	}
	owner = cl.Others(leader)[0]
	ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
	defer cancel()
	if _, err := cl.Nodes[0].API().UpdateSub(ctx, sub, client.Fields{"preferred-server": owner.ID}, true); err != nil {
		t.Fatal(err)
	}
	waitOwned(t, cl, sub, func(o string) bool { return o == owner.ID })
	return owner, leader
}

// TestFaultPartitionOwner: the node that sends the subscription (not the
// leader) is cut off from its peers, not from the receiver. It stops
// posting within lease + one request timeout; another node takes over
// after down-after; no two nodes have POSTs of the subscription in flight
// at once beyond the old owner's last one; after healing nothing is lost.
func TestFaultPartitionOwner(t *testing.T) {
	cl, ns, recv := partitionCluster(t)
	sub := createFaultSubs(t, cl, recv, "cut.example", 1)[0]
	owner, _ := nonLeaderOwner(t, cl, sub)
	load := harness.StartLoad(t, cl.Running, harness.LoadOptions{
		Rate: 200, PerRequest: 5, Duration: time.Duration(*faultScale) * time.Minute,
		Event: faultEvent("cut.example"), Timeout: 5 * time.Second,
	})
	harness.WaitFor(t, func() (bool, string, string) {
		return recv.Distinct() > 200, "delivery under way", fmt.Sprintf("%d delivered", recv.Distinct())
	}, 20*time.Second)

	watch := watchAttempts(owner)
	cut := time.Now()
	cutOff(ns, cl, owner)
	rest := cl.Others(owner)
	newOwner := ownerAmong(t, rest, sub, func(o string) bool { return o != owner.ID }, 30*time.Second)
	takeover := time.Since(cut)
	// Keep the cut a while after the takeover: the old owner must stay
	// silent, not just pause.
	harness.WaitFor(t, func() (bool, string, string) {
		return time.Since(cut) > takeover+3*time.Second*time.Duration(*faultScale), "the cut held", ""
	}, time.Minute*time.Duration(*faultScale))
	lastPost := watch.lastMove().Sub(cut)
	overlap := recv.Overlap(sub)
	ns.Heal()
	cl.WaitAllUp()
	accepted := load.Stop()
	t.Logf("owner %s cut off: its last POST ended %s after the cut (bound: lease %s + timeout %s), %s took over after %s; overlap %d",
		owner.ID, lastPost.Round(time.Millisecond), faultTimings.Lease, faultPostTimeout, newOwner, takeover.Round(time.Millisecond), overlap)
	if bound := faultTimings.Lease + faultPostTimeout + faultTimings.Report; lastPost > bound {
		t.Errorf("the cut-off owner posted until %s after the cut: more than lease + one request timeout (+ a report interval) = %s", lastPost, bound)
	}
	// The leader counts down-after from the owner's last committed
	// report, which came up to one report interval before the cut.
	if min := faultTimings.DownAfter - faultTimings.Report; takeover < min {
		t.Errorf("%s took over %s after the cut: before down-after less one report interval (%s)", newOwner, takeover, min)
	}
	if overlap > 2 {
		t.Errorf("%d POSTs of the subscription in flight at once: two nodes posted together beyond one POST in flight", overlap)
	}
	checkAccount(t, recv, accepted, []string{sub}, "owner partition")
	checkOneLiveOwner(t, cl, []string{sub})
}

// TestFaultPartitionLeader: the raft leader is cut off from its peers
// while another node sends the subscription. The others elect a new
// leader; the owner keeps sending; after healing nothing is lost.
func TestFaultPartitionLeader(t *testing.T) {
	cl, ns, recv := partitionCluster(t)
	sub := createFaultSubs(t, cl, recv, "lead.example", 1)[0]
	owner, leader := nonLeaderOwner(t, cl, sub)
	load := harness.StartLoad(t, cl.Running, harness.LoadOptions{
		Rate: 200, PerRequest: 5, Duration: time.Duration(*faultScale) * time.Minute,
		Event: faultEvent("lead.example"), Timeout: 5 * time.Second,
	})
	harness.WaitFor(t, func() (bool, string, string) {
		return recv.Distinct() > 200, "delivery under way", fmt.Sprintf("%d delivered", recv.Distinct())
	}, 20*time.Second)
	cut := time.Now()
	cutOff(ns, cl, leader)
	rest := cl.Others(leader)
	newLeader := cl.Leader(rest...)
	elected := time.Since(cut)
	before := recv.Distinct()
	harness.WaitFor(t, func() (bool, string, string) {
		d := recv.Distinct()
		return d > before+200, "delivery going on while the old leader is cut off", fmt.Sprintf("%d more delivered", d-before)
	}, 30*time.Second)
	ns.Heal()
	cl.WaitAllUp()
	accepted := load.Stop()
	t.Logf("leader %s cut off: %s leads after %s; %s sent the subscription throughout", leader.ID, newLeader.ID, elected.Round(time.Millisecond), owner.ID)
	checkAccount(t, recv, accepted, []string{sub}, "leader partition")
	checkOneLiveOwner(t, cl, []string{sub})
}

// TestFaultLossyLink: 30% of the packets between the nodes (inside the
// namespace) are dropped for 20 s while events flow; nothing is lost.
func TestFaultLossyLink(t *testing.T) {
	cl, ns, recv := partitionCluster(t)
	subs := createFaultSubs(t, cl, recv, "lossy.example", 2)
	lossFor := 20 * time.Second * time.Duration(*faultScale)
	load := harness.StartLoad(t, cl.Running, harness.LoadOptions{
		Rate: 200, PerRequest: 5, Duration: lossFor + 10*time.Second,
		Event: faultEvent("lossy.example"), Timeout: 5 * time.Second,
	})
	harness.WaitFor(t, func() (bool, string, string) {
		return recv.Distinct() > 100, "delivery under way", fmt.Sprintf("%d delivered", recv.Distinct())
	}, 20*time.Second)
	hosts := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	for _, h := range hosts {
		for _, o := range hosts {
			if h != o {
				if err := ns.IPTables("-I", "INPUT", "-s", h, "-d", o, "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	start := time.Now()
	harness.WaitFor(t, func() (bool, string, string) {
		return time.Since(start) >= lossFor, fmt.Sprintf("%s of 30%% loss", lossFor), ""
	}, lossFor+time.Minute)
	ns.Heal()
	cl.WaitAllUp()
	accepted := load.Stop()
	checkAccount(t, recv, accepted, subs, "30% loss between the nodes")
	checkOneLiveOwner(t, cl, subs)
}

// TestFaultDiskFull: the data dir is a small tmpfs. When it fills up,
// ingest answers 507 with a JSON error, the node logs the episode once,
// nothing accepted is lost; when space returns, the node accepts again by
// itself and delivers everything.
func TestFaultDiskFull(t *testing.T) {
	skipShort(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs: run it as root (scripts/test does)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	cl := harness.StartCluster(t, harness.Options{Nodes: 1, Timings: faultTimings, DataDirs: []string{filepath.Join(dir, "data")}})
	nd := cl.Nodes[0]
	recv := harness.NewReceiver(t, harness.ReceiverOptions{})
	sub := createFaultSubs(t, cl, recv, "full.example", 1)[0]
	accepted := map[string][]string{}
	send := func(i int) (int, string) {
		evs := make([]map[string]any, 20)
		for j := range evs {
			evs[j] = map[string]any{"model": "call", "domain": "full.example", "i": i*20 + j, "pad": strings.Repeat("p", 2000)}
		}
		ids, err := harness.Ingest(context.Background(), nd, 10*time.Second, evs)
		if err == nil {
			accepted[nd.ID] = append(accepted[nd.ID], ids...)
			return http.StatusAccepted, ""
		}
		var se *harness.IngestError
		if errors.As(err, &se) {
			return se.Status, se.Body
		}
		t.Fatalf("ingest: %v", err)
		return 0, ""
	}
	for i := range 20 {
		if st, body := send(i); st != http.StatusAccepted {
			t.Fatalf("before the disk filled: %d %s", st, body)
		}
	}
	// Fill the file system.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	full := 0
	var fullBody string
	for i := 20; i < 200 && full < 5; i++ {
		switch st, body := send(i); st {
		case http.StatusAccepted:
		case http.StatusInsufficientStorage:
			full++
			fullBody = body
		default:
			t.Fatalf("ingest on a full disk: %d %s, want 202 or 507", st, body)
		}
	}
	if full < 5 {
		t.Fatalf("the disk never filled: %d answers 507", full)
	}
	if !strings.Contains(fullBody, `"error"`) || !strings.Contains(fullBody, "disk") {
		t.Fatalf("507 body %q: want a JSON error that says the disk is full", fullBody)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, func() (bool, string, string) {
		st, body := send(1000)
		return st == http.StatusAccepted, "ingest accepted again once space returned", fmt.Sprintf("%d %s", st, body)
	}, 30*time.Second)
	for i := 1001; i < 1020; i++ {
		if st, body := send(i); st != http.StatusAccepted {
			t.Fatalf("after recovery: %d %s", st, body)
		}
	}
	a := recv.WaitDelivered(t, accepted, sub, faultDeliverTimeout)
	t.Logf("disk full: %d answers 507; %s", full, a)
	if n := strings.Count(nd.Logs(), "disk under the event log is full"); n != 1 {
		t.Errorf("%d log lines for one full-disk episode, want 1", n)
	}
}
