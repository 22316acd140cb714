package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
)

// The cluster tests run three real `hookswitch agent` processes on loopback
// TCP with short timings (shortClusterTimings: report 100ms, lease 500ms,
// down-after 1.2s, stable-after 1s, raft heartbeat and election 500ms), so
// a failure is detected and acted on within about a second.

// failoverSlack is what the cluster tests allow beyond down-after for a
// failover to be committed and seen: the reconciler's tick, the commit,
// the poll, and a slow (race-enabled, two-core) machine.
const failoverSlack = 3 * time.Second

// TestClusterJoinAndFollowerWrite: two nodes join the bootstrapped one
// with --join; `members` shows three up voters and one leader; a write on
// a follower is forwarded to the leader and is visible on every node; and
// `hookswitch join` for a node that is already a member is a no-op.
func TestClusterJoinAndFollowerWrite(t *testing.T) {
	cl := mustStartCluster(t, 3)
	leader := cl.leader()

	var members httpapi.ClusterView
	decodeJSON(t, "members", cl.nodes[1].clusterCLI("members", "--json"), &members)
	if len(members.Nodes) != 3 || members.Leader != leader.id {
		t.Fatalf("members: want 3 nodes led by %s, got %s", leader.id, clusterSummary(members))
	}
	leaders := 0
	for _, m := range members.Nodes {
		nd := cl.node(m.ID)
		if m.HTTPAddr != nd.httpAddr || m.RaftAddr != nd.raftAddr || m.Health != "up" || m.Suffrage != "voter" || m.Witness || m.Draining {
			t.Errorf("members: %+v, want %s at %s/%s, an up voter", m, nd.id, nd.httpAddr, nd.raftAddr)
		}
		if m.RaftRole == "leader" {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("members: %d leaders, want 1: %s", leaders, clusterSummary(members))
	}
	table := cl.nodes[2].clusterCLI("members")
	for _, nd := range cl.nodes {
		if !strings.Contains(table, nd.id) || !strings.Contains(table, nd.httpAddr) {
			t.Errorf("members table lacks %s at %s:\n%s", nd.id, nd.httpAddr, table)
		}
	}

	// A write on a follower: forwarded, answered 201, visible everywhere.
	f := cl.others(leader)[0]
	created := f.createSub(client.Fields{"id": "written-on-follower", "domain": "example.com"})
	if created.ID != "written-on-follower" || created.HomeServer != f.id {
		t.Fatalf("create through follower %s: got %+v", f.id, created)
	}
	for _, nd := range cl.nodes {
		waitFor(t, func() (bool, string, string) {
			v, err := nd.sub(created.ID)
			return err == nil && v.Domain == "example.com", "the subscription to be readable on " + nd.id, fmt.Sprint(err)
		}, 10*time.Second)
	}
	// It gets an owner (the leader's reconciler assigns it), the same on
	// every node.
	owner, _ := leader.waitOwner(created.ID, "an owner", isOneOf(cl.nodes...), 10*time.Second)
	for _, nd := range cl.nodes {
		nd.waitOwner(created.ID, "owner "+owner+" on "+nd.id, func(o string) bool { return o == owner }, 10*time.Second)
	}

	// `hookswitch join` of a node that is a member already: idempotent.
	out := f.clusterCLI("join", leader.httpAddr)
	if !strings.Contains(out, f.id) {
		t.Errorf("join output %q does not name %s", out, f.id)
	}
	v := cl.waitMembers(10*time.Second, cl.nodes...)
	if len(v.Nodes) != 3 {
		t.Fatalf("after a repeated join: %s", clusterSummary(v))
	}
}

// TestClusterKillLeader: kill -9 of the leader; the survivors elect a new
// leader within seconds, and a write through a survivor (a follower of the
// new leader) works again. The killed node restarts on its data dir,
// rejoins and catches up.
func TestClusterKillLeader(t *testing.T) {
	cl := mustStartCluster(t, 3)
	old := cl.leader()
	survivors := cl.others(old)

	killed := time.Now()
	old.kill()
	newLeader := cl.leader(survivors...)
	elected := time.Since(killed)
	t.Logf("kill -9 of leader %s: new leader %s after %s", old.id, newLeader.id, elected.Round(time.Millisecond))
	if newLeader == old {
		t.Fatalf("survivors still name the killed node %s the leader", old.id)
	}
	if elected > 5*time.Second {
		t.Errorf("new leader after %s, want within 5s", elected)
	}

	// A write through the survivor that does not lead: forwarded to the
	// new leader.
	f := cl.others(old, newLeader)[0]
	created := f.createSub(client.Fields{"id": "after-leader-kill"})
	t.Logf("write through %s answered %s after the kill", f.id, time.Since(killed).Round(time.Millisecond))
	for _, nd := range survivors {
		nd.waitOwner(created.ID, "an owner among the survivors", isOneOf(survivors...), 10*time.Second)
	}

	// The leader marks the dead node down.
	waitFor(t, func() (bool, string, string) {
		v, err := newLeader.view()
		if err != nil {
			return false, old.id + " down", err.Error()
		}
		for _, n := range v.Nodes {
			if n.ID == old.id {
				return n.Health == "down", old.id + " down", clusterSummary(v)
			}
		}
		return false, old.id + " down", clusterSummary(v)
	}, cl.timing.downAfter+failoverSlack)

	// Restarted on the same data dir, it rejoins and catches up.
	old.restart()
	cl.waitMembers(10*time.Second, cl.nodes...)
	waitFor(t, func() (bool, string, string) {
		_, err := old.sub(created.ID)
		return err == nil, "the restarted node to have the write made while it was dead", fmt.Sprint(err)
	}, 10*time.Second)
}

// TestClusterFailoverKillOwner: kill -9 of the node that sends a
// subscription (not the leader); a survivor becomes its
// current-active-server within down-after plus a few seconds; the
// subscriptions of the survivors stay where they are; the killed node,
// restarted on its data dir with --join, is up again and has the new
// assignment.
func TestClusterFailoverKillOwner(t *testing.T) {
	cl := mustStartCluster(t, 3)
	leader := cl.leader()
	// Three subscriptions spread over the three nodes (fewest active).
	for i := range 3 {
		leader.createSub(client.Fields{"id": fmt.Sprintf("s%d", i)})
	}
	owners := leader.waitAllOwners("every subscription assigned", isOneOf(cl.nodes...), 10*time.Second)
	var victim *clusterNode
	var sub string
	for id, o := range owners {
		if o != leader.id && (victim == nil || id < sub) {
			victim, sub = cl.node(o), id
		}
	}
	if victim == nil {
		t.Fatalf("no subscription is owned by a follower: %v", owners)
	}
	survivors := cl.others(victim)
	watcher := survivors[0]
	t.Logf("owners %v; killing %s, which sends %s", owners, victim.id, sub)

	killed := time.Now()
	victim.kill()
	newOwner, seen := watcher.waitOwner(sub, "a survivor as current-active-server", isOneOf(survivors...), cl.timing.downAfter+failoverSlack)
	took := seen.Sub(killed)
	t.Logf("kill -9 of owner %s: %s is current-active-server of %s after %s (down-after %s)",
		victim.id, newOwner, sub, took.Round(time.Millisecond), cl.timing.downAfter)
	if took < cl.timing.downAfter-2*cl.timing.report {
		t.Errorf("reassigned after %s: before down-after (%s) had passed", took, cl.timing.downAfter)
	}
	// Every subscription of the dead node moved; the others stayed.
	after := watcher.waitAllOwners("no subscription on "+victim.id, isOneOf(survivors...), failoverSlack)
	for id, o := range owners {
		if o != victim.id && after[id] != o {
			t.Errorf("%s moved from %s (alive) to %s", id, o, after[id])
		}
	}
	v, err := watcher.view()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range v.Nodes {
		if n.ID == victim.id && (n.Health != "down" || n.ActiveSub != 0) {
			t.Errorf("the dead node: %+v, want down with no subscriptions", n)
		}
	}

	// Restarted with --join on the same data dir: up again, a member, and
	// it sees the reassignment.
	victim.restart()
	cl.waitMembers(10*time.Second, cl.nodes...)
	victim.waitOwner(sub, "the restarted node to see the new owner "+newOwner, func(o string) bool { return o == newOwner }, 10*time.Second)
	var members httpapi.ClusterView
	decodeJSON(t, "members", victim.clusterCLI("members", "--json"), &members)
	for _, n := range members.Nodes {
		if n.ID == victim.id && (n.Health != "up" || n.RaftRole == "") {
			t.Errorf("restarted node in members: %+v", n)
		}
	}
}

// TestClusterRemoveDeadNode: `hookswitch remove` of a node killed with
// kill -9 takes it out of raft and of `members`; its subscriptions go to
// the others. Restarted on its old data dir with --join, it is added
// again as a new member.
func TestClusterRemoveDeadNode(t *testing.T) {
	cl := mustStartCluster(t, 3)
	leader := cl.leader()
	for i := range 3 {
		leader.createSub(client.Fields{"id": fmt.Sprintf("r%d", i)})
	}
	leader.waitAllOwners("every subscription assigned", isOneOf(cl.nodes...), 10*time.Second)
	dead := cl.others(leader)[0]
	rest := cl.others(dead)
	dead.kill()

	out := rest[1].clusterCLI("remove", dead.id)
	if !strings.Contains(out, dead.id) {
		t.Errorf("remove output %q", out)
	}
	v := cl.waitMembers(10*time.Second, rest...)
	t.Logf("after remove: %s", clusterSummary(v))
	leader.waitAllOwners("no subscription on the removed "+dead.id, isOneOf(rest...), cl.timing.downAfter+failoverSlack)

	dead.restart()
	cl.waitMembers(10*time.Second, cl.nodes...)
}

// TestClusterPreferredFailback: a subscription with a preferred server
// moves to a survivor when that server dies, and goes back to it once it
// has been up for stable-after after its restart, not before.
func TestClusterPreferredFailback(t *testing.T) {
	timing := shortClusterTimings
	timing.stableAfter = 2 * time.Second
	cl := mustStartClusterWith(t, 3, timing)
	leader := cl.leader()
	pref := cl.others(leader)[0]
	survivors := cl.others(pref)
	sub := leader.createSub(client.Fields{"id": "pinned", "preferred-server": pref.id}).ID
	// The preferred server takes it once stable.
	leader.waitOwner(sub, "the preferred server "+pref.id, isOneOf(pref), timing.stableAfter+failoverSlack)

	pref.kill()
	moved, _ := leader.waitOwner(sub, "a survivor", isOneOf(survivors...), timing.downAfter+failoverSlack)
	t.Logf("preferred server %s killed: %s took %s over", pref.id, moved, sub)

	pref.restart()
	// When does the leader see it up again?
	var upAt time.Time
	waitFor(t, func() (bool, string, string) {
		v, err := leader.view()
		if err != nil {
			return false, pref.id + " up", err.Error()
		}
		for _, n := range v.Nodes {
			if n.ID == pref.id && n.Health == "up" {
				upAt = time.Now()
				return true, "", ""
			}
		}
		return false, pref.id + " up", clusterSummary(v)
	}, 10*time.Second)
	_, backAt := leader.waitOwner(sub, "failback to "+pref.id, isOneOf(pref), timing.stableAfter+failoverSlack)
	after := backAt.Sub(upAt)
	t.Logf("%s up again; failback after %s (stable-after %s)", pref.id, after.Round(time.Millisecond), timing.stableAfter)
	// The leader marked it up at most a poll (plus replication) before we
	// saw it: allow that much.
	if after < timing.stableAfter-300*time.Millisecond {
		t.Errorf("failback %s after the preferred server was up: before stable-after (%s)", after, timing.stableAfter)
	}
}

// TestClusterDrainUndrain: `hookswitch drain N` moves every subscription
// off N (including one that prefers N); `undrain` lets them back: the
// preferred one returns and a new one goes to N, the least loaded node.
func TestClusterDrainUndrain(t *testing.T) {
	cl := mustStartCluster(t, 3)
	leader := cl.leader()
	target := cl.others(leader)[0]
	rest := cl.others(target)
	for i := range 6 {
		leader.createSub(client.Fields{"id": fmt.Sprintf("d%d", i)})
	}
	leader.createSub(client.Fields{"id": "prefers-target", "preferred-server": target.id})
	leader.waitOwner("prefers-target", "its preferred server "+target.id, isOneOf(target), cl.timing.stableAfter+failoverSlack)
	before := leader.waitAllOwners("every subscription assigned", isOneOf(cl.nodes...), 10*time.Second)
	t.Logf("before drain: %v", before)

	out := rest[1].clusterCLI("drain", target.id)
	if !strings.Contains(out, target.id) {
		t.Errorf("drain output %q", out)
	}
	after := leader.waitAllOwners("no subscription on the draining "+target.id, isOneOf(rest...), 10*time.Second)
	t.Logf("after drain: %v", after)
	for id, o := range before {
		if o != target.id && after[id] != o {
			t.Errorf("%s moved from %s, which is not draining, to %s", id, o, after[id])
		}
	}
	waitFor(t, func() (bool, string, string) {
		v, err := rest[0].view()
		if err != nil {
			return false, "", err.Error()
		}
		for _, n := range v.Nodes {
			if n.ID == target.id {
				return n.Draining && n.ActiveSub == 0 && n.Health == "up", target.id + " draining, up, with no subscriptions", clusterSummary(v)
			}
		}
		return false, target.id + " in members", clusterSummary(v)
	}, 10*time.Second)
	// A new subscription does not go to the draining node either.
	leader.createSub(client.Fields{"id": "during-drain"})
	o, _ := leader.waitOwner("during-drain", "an owner", isOneOf(cl.nodes...), 10*time.Second)
	if o == target.id {
		t.Errorf("a subscription created during the drain went to the draining node")
	}

	rest[0].clusterCLI("undrain", target.id)
	leader.waitOwner("prefers-target", "back on its preferred server "+target.id, isOneOf(target), 10*time.Second)
	leader.createSub(client.Fields{"id": "after-undrain"})
	leader.waitOwner("after-undrain", "the least loaded node "+target.id, isOneOf(target), 10*time.Second)
	// Every node (here the undrained one) shows it so, once it has
	// applied the last assignment.
	waitFor(t, func() (bool, string, string) {
		v, err := target.view()
		if err != nil {
			return false, "", err.Error()
		}
		for _, n := range v.Nodes {
			if n.ID == target.id {
				return !n.Draining && n.ActiveSub == 2, target.id + " not draining, with 2 subscriptions", clusterSummary(v)
			}
		}
		return false, target.id + " in members", clusterSummary(v)
	}, 10*time.Second)
}

// TestClusterLeave: `hookswitch leave` on the leader, which sends
// subscriptions: it drains (its subscriptions move to the others), hands
// over leadership, is removed from `members`, and its process exits 0. The
// remaining two nodes carry on; then a follower leaves as well.
func TestClusterLeave(t *testing.T) {
	cl := mustStartCluster(t, 3)
	leaving := cl.leader()
	rest := cl.others(leaving)
	for i := range 6 {
		leaving.createSub(client.Fields{"id": fmt.Sprintf("l%d", i)})
	}
	before := leaving.waitAllOwners("every subscription assigned", isOneOf(cl.nodes...), 10*time.Second)
	n := 0
	for _, o := range before {
		if o == leaving.id {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("the leaving node sends nothing: %v", before)
	}

	out := leaving.clusterCLI("leave")
	if !strings.Contains(out, "left") {
		t.Errorf("leave output %q", out)
	}
	select {
	case <-leaving.done:
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %s of leaving", leaving.id, stopTimeout)
	}
	if code := leaving.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited with %s after leaving, want 0", leaving.id, leaving.cmd.ProcessState)
	}

	v := cl.waitMembers(10*time.Second, rest...)
	t.Logf("after leave: %s", clusterSummary(v))
	var members httpapi.ClusterView
	decodeJSON(t, "members", rest[0].clusterCLI("members", "--json"), &members)
	for _, m := range members.Nodes {
		if m.ID == leaving.id {
			t.Errorf("members still lists %s: %s", leaving.id, clusterSummary(members))
		}
	}
	if len(members.Nodes) != 2 {
		t.Errorf("members: %s, want the 2 others", clusterSummary(members))
	}
	rest[0].waitAllOwners("every subscription on the remaining nodes", isOneOf(rest...), 10*time.Second)
	// The cluster carries on: a write through the follower.
	newLeader := cl.leader(rest...)
	f := cl.others(leaving, newLeader)[0]
	f.createSub(client.Fields{"id": "after-leave"})
	f.waitOwner("after-leave", "an owner among the remaining nodes", isOneOf(rest...), 10*time.Second)

	// A follower leaves too (its removal is forwarded to the leader):
	// the last node is alone and sends everything.
	f.clusterCLI("leave")
	select {
	case <-f.done:
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %s of leaving", f.id, stopTimeout)
	}
	if code := f.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited with %s after leaving, want 0", f.id, f.cmd.ProcessState)
	}
	cl.waitMembers(10*time.Second, newLeader)
	newLeader.waitAllOwners("every subscription on the last node "+newLeader.id, isOneOf(newLeader), 10*time.Second)
}

// TestClusterJoinReplacesStaleEntry: a node that comes back under the same
// id at other addresses (here new ports) joins again; the leader replaces
// its stale raft entry instead of keeping both.
func TestClusterJoinReplacesStaleEntry(t *testing.T) {
	cl := mustStartCluster(t, 3)
	leader := cl.leader()
	moved := cl.others(leader)[0]
	moved.kill()
	ports := freeLoopbackPorts(t, 2)
	moved.httpAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	moved.raftAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	moved.restart()
	cl.waitMembers(10*time.Second, cl.nodes...)
	for _, nd := range cl.nodes {
		waitFor(t, func() (bool, string, string) {
			v, err := nd.view()
			if err != nil {
				return false, "", err.Error()
			}
			want := fmt.Sprintf("%s sees %s at %s/%s, once", nd.id, moved.id, moved.httpAddr, moved.raftAddr)
			seen := 0
			for _, n := range v.Nodes {
				if n.ID == moved.id {
					seen++
					if n.HTTPAddr != moved.httpAddr || n.RaftAddr != moved.raftAddr {
						return false, want, fmt.Sprintf("%s/%s", n.HTTPAddr, n.RaftAddr)
					}
				}
			}
			return seen == 1 && len(v.Nodes) == 3, want, clusterSummary(v)
		}, 10*time.Second)
	}
	// The cluster works through it.
	moved.createSub(client.Fields{"id": "via-moved"})
	moved.waitOwner("via-moved", "an owner", isOneOf(cl.nodes...), 10*time.Second)
}

// TestClusterFencingFollowerOwner and TestClusterFencingLeaderOwner: the
// node that sends a subscription is cut off from the other two (they are
// SIGSTOPped, so it cannot commit its reports); with events still ingested
// on it, it stops posting within lease of its last committed report, and
// posts nothing afterwards.
func TestClusterFencingFollowerOwner(t *testing.T) { testFencing(t, false) }
func TestClusterFencingLeaderOwner(t *testing.T)   { testFencing(t, true) }

func testFencing(t *testing.T, ownerLeads bool) {
	cl := mustStartCluster(t, 3)
	leader := cl.leader()
	owner := cl.others(leader)[0]
	if ownerLeads {
		owner = leader
	}
	others := cl.others(owner)
	sink := newHookSink(t)
	sub := leader.createSub(client.Fields{"id": "fenced", "post-url": sink.url(), "preferred-server": owner.id}).ID
	leader.waitOwner(sub, "the preferred server "+owner.id, isOneOf(owner), cl.timing.stableAfter+failoverSlack)

	// Continuous ingest on the owner: events keep coming for it to send.
	ctx, cancel := context.WithCancel(context.Background())
	var accepted, refused atomic.Int64
	ingestDone := make(chan struct{})
	go func() {
		defer close(ingestDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
			err := owner.ingestEvent(ictx, fmt.Appendf(nil, `{"model":"call","domain":"example.com","n":%d}`, i))
			icancel()
			if err != nil {
				refused.Add(1)
			} else {
				accepted.Add(1)
			}
		}
	}()
	defer func() { cancel(); <-ingestDone }()

	// It posts steadily.
	waitFor(t, func() (bool, string, string) {
		p := sink.posts()
		return len(p) >= 20 && time.Since(p[len(p)-1]) < 300*time.Millisecond,
			"at least 20 POSTs, the last one recent", fmt.Sprintf("%d POSTs, %d events", len(p), sink.events())
	}, 10*time.Second)

	fencedLogs := strings.Count(readFile(owner.stderr), "lease expired")
	for _, o := range others {
		o.freeze()
	}
	stopped := time.Now()
	acceptedAtStop := accepted.Load()
	t.Logf("froze %v; %s (leader: %v) is cut off", nodeIDs(others), owner.id, ownerLeads)

	// Watch while events keep arriving on the owner: until lease + 2s
	// after the stop, well past the limit asserted below.
	watchUntil := stopped.Add(cl.timing.lease + 2*time.Second)
	waitFor(t, func() (bool, string, string) {
		return time.Now().After(watchUntil), "", ""
	}, cl.timing.lease+3*time.Second)

	posts := sink.posts()
	var before, after int
	var last time.Time
	for _, p := range posts {
		if p.Before(stopped) {
			before++
		} else {
			after++
		}
		last = p
	}
	limit := stopped.Add(cl.timing.lease + time.Second)
	t.Logf("POSTs: %d before the others stopped, %d after; last one %s after the stop (limit lease+1s = %s); events accepted after the stop: %d (refused: %d)",
		before, after, last.Sub(stopped).Round(time.Millisecond), cl.timing.lease+time.Second, accepted.Load()-acceptedAtStop, refused.Load())
	if last.After(limit) {
		t.Errorf("the cut-off owner posted %s after the others stopped, later than lease (%s) + 1s", last.Sub(stopped), cl.timing.lease)
	}
	if n := strings.Count(readFile(owner.stderr), "lease expired"); n <= fencedLogs {
		t.Errorf("%s did not log that its lease expired", owner.id)
	}
	if accepted.Load()-acceptedAtStop < 20 {
		t.Errorf("only %d events ingested on the cut-off owner after the stop: the test did not give it anything to send", accepted.Load()-acceptedAtStop)
	}

	// Thaw: the cluster heals.
	for _, o := range others {
		o.thaw()
	}
	cl.waitMembers(15*time.Second, cl.nodes...)
}

// readFile returns a file's content, or "" when it cannot be read.
func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
