package integration

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// The cluster tests run three real `hookswitch agent` processes on loopback
// TCP with short timings (harness.ShortTimings: report 100ms, lease 500ms,
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
	cl := startCluster(t, 3)
	leader := cl.Leader()

	var members httpapi.ClusterView
	decodeJSON(t, "members", cl.Nodes[1].MustCLI("members", "--json"), &members)
	if len(members.Nodes) != 3 || members.Leader != leader.ID {
		t.Fatalf("members: want 3 nodes led by %s, got %s", leader.ID, harness.Summary(members))
	}
	leaders := 0
	for _, m := range members.Nodes {
		nd := cl.Node(m.ID)
		if m.HTTPAddr != nd.HTTPAddr || m.RaftAddr != nd.RaftAddr || m.Health != "up" || m.Suffrage != "voter" || m.Witness || m.Draining {
			t.Errorf("members: %+v, want %s at %s/%s, an up voter", m, nd.ID, nd.HTTPAddr, nd.RaftAddr)
		}
		if m.RaftRole == "leader" {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("members: %d leaders, want 1: %s", leaders, harness.Summary(members))
	}
	table := cl.Nodes[2].MustCLI("members")
	for _, nd := range cl.Nodes {
		if !strings.Contains(table, nd.ID) || !strings.Contains(table, nd.HTTPAddr) {
			t.Errorf("members table lacks %s at %s:\n%s", nd.ID, nd.HTTPAddr, table)
		}
	}

	// A write on a follower: forwarded, answered 201, visible everywhere.
	f := cl.Others(leader)[0]
	created := createSubOn(t, f, client.Fields{"id": "written-on-follower", "domain": "example.com"})
	if created.ID != "written-on-follower" || created.HomeServer != f.ID {
		t.Fatalf("create through follower %s: got %+v", f.ID, created)
	}
	for _, nd := range cl.Nodes {
		waitFor(t, func() (bool, string, string) {
			v, err := getSub(nd, created.ID)
			return err == nil && v.Domain == "example.com", "the subscription to be readable on " + nd.ID, fmt.Sprint(err)
		}, 10*time.Second)
	}
	// It gets an owner (the leader's reconciler assigns it), the same on
	// every node.
	owner, _ := waitOwner(t, leader, created.ID, "an owner", harness.IsOneOf(cl.Nodes...), 10*time.Second)
	for _, nd := range cl.Nodes {
		waitOwner(t, nd, created.ID, "owner "+owner+" on "+nd.ID, func(o string) bool { return o == owner }, 10*time.Second)
	}

	// `hookswitch join` of a node that is a member already: idempotent.
	out := f.MustCLI("join", leader.HTTPAddr)
	if !strings.Contains(out, f.ID) {
		t.Errorf("join output %q does not name %s", out, f.ID)
	}
	v := cl.WaitMembers(10*time.Second, cl.Nodes...)
	if len(v.Nodes) != 3 {
		t.Fatalf("after a repeated join: %s", harness.Summary(v))
	}
}

// TestClusterKillLeader: kill -9 of the leader; the survivors elect a new
// leader within seconds, and a write through a survivor (a follower of the
// new leader) works again. The killed node restarts on its data dir,
// rejoins and catches up.
func TestClusterKillLeader(t *testing.T) {
	cl := startCluster(t, 3)
	old := cl.Leader()
	survivors := cl.Others(old)

	killed := time.Now()
	old.Kill()
	newLeader := cl.Leader(survivors...)
	elected := time.Since(killed)
	t.Logf("kill -9 of leader %s: new leader %s after %s", old.ID, newLeader.ID, elected.Round(time.Millisecond))
	if newLeader == old {
		t.Fatalf("survivors still name the killed node %s the leader", old.ID)
	}
	if elected > 5*time.Second {
		t.Errorf("new leader after %s, want within 5s", elected)
	}

	// A write through the survivor that does not lead: forwarded to the
	// new leader.
	f := cl.Others(old, newLeader)[0]
	created := createSubOn(t, f, client.Fields{"id": "after-leader-kill"})
	t.Logf("write through %s answered %s after the kill", f.ID, time.Since(killed).Round(time.Millisecond))
	for _, nd := range survivors {
		waitOwner(t, nd, created.ID, "an owner among the survivors", harness.IsOneOf(survivors...), 10*time.Second)
	}

	// The leader marks the dead node down.
	waitFor(t, func() (bool, string, string) {
		v, err := newLeader.View()
		if err != nil {
			return false, old.ID + " down", err.Error()
		}
		for _, n := range v.Nodes {
			if n.ID == old.ID {
				return n.Health == "down", old.ID + " down", harness.Summary(v)
			}
		}
		return false, old.ID + " down", harness.Summary(v)
	}, cl.Timings().DownAfter+failoverSlack)

	// Restarted on the same data dir, it rejoins and catches up.
	old.Restart()
	cl.WaitMembers(10*time.Second, cl.Nodes...)
	waitFor(t, func() (bool, string, string) {
		_, err := getSub(old, created.ID)
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
	cl := startCluster(t, 3)
	leader := cl.Leader()
	// Three subscriptions spread over the three nodes (fewest active).
	for i := range 3 {
		createSubOn(t, leader, client.Fields{"id": fmt.Sprintf("s%d", i)})
	}
	owners := waitAllOwners(t, leader, "every subscription assigned", harness.IsOneOf(cl.Nodes...), 10*time.Second)
	var victim *harness.Node
	var sub string
	for id, o := range owners {
		if o != leader.ID && (victim == nil || id < sub) {
			victim, sub = cl.Node(o), id
		}
	}
	if victim == nil {
		t.Fatalf("no subscription is owned by a follower: %v", owners)
	}
	survivors := cl.Others(victim)
	watcher := survivors[0]
	t.Logf("owners %v; killing %s, which sends %s", owners, victim.ID, sub)

	killed := time.Now()
	victim.Kill()
	newOwner, seen := waitOwner(t, watcher, sub, "a survivor as current-active-server", harness.IsOneOf(survivors...), cl.Timings().DownAfter+failoverSlack)
	took := seen.Sub(killed)
	t.Logf("kill -9 of owner %s: %s is current-active-server of %s after %s (down-after %s)",
		victim.ID, newOwner, sub, took.Round(time.Millisecond), cl.Timings().DownAfter)
	if took < cl.Timings().DownAfter-2*cl.Timings().Report {
		t.Errorf("reassigned after %s: before down-after (%s) had passed", took, cl.Timings().DownAfter)
	}
	// Every subscription of the dead node moved; the others stayed.
	after := waitAllOwners(t, watcher, "no subscription on "+victim.ID, harness.IsOneOf(survivors...), failoverSlack)
	for id, o := range owners {
		if o != victim.ID && after[id] != o {
			t.Errorf("%s moved from %s (alive) to %s", id, o, after[id])
		}
	}
	v, err := watcher.View()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range v.Nodes {
		if n.ID == victim.ID && (n.Health != "down" || n.ActiveSub != 0) {
			t.Errorf("the dead node: %+v, want down with no subscriptions", n)
		}
	}

	// Restarted with --join on the same data dir: up again, a member, and
	// it sees the reassignment.
	victim.Restart()
	cl.WaitMembers(10*time.Second, cl.Nodes...)
	waitOwner(t, victim, sub, "the restarted node to see the new owner "+newOwner, func(o string) bool { return o == newOwner }, 10*time.Second)
	var members httpapi.ClusterView
	decodeJSON(t, "members", victim.MustCLI("members", "--json"), &members)
	for _, n := range members.Nodes {
		if n.ID == victim.ID && (n.Health != "up" || n.RaftRole == "") {
			t.Errorf("restarted node in members: %+v", n)
		}
	}
}

// TestClusterRemoveDeadNode: `hookswitch remove` of a node killed with
// kill -9 takes it out of raft and of `members`; its subscriptions go to
// the others. Restarted on its old data dir with --join, it is added
// again as a new member.
func TestClusterRemoveDeadNode(t *testing.T) {
	cl := startCluster(t, 3)
	leader := cl.Leader()
	for i := range 3 {
		createSubOn(t, leader, client.Fields{"id": fmt.Sprintf("r%d", i)})
	}
	waitAllOwners(t, leader, "every subscription assigned", harness.IsOneOf(cl.Nodes...), 10*time.Second)
	dead := cl.Others(leader)[0]
	rest := cl.Others(dead)
	dead.Kill()

	out := rest[1].MustCLI("remove", dead.ID)
	if !strings.Contains(out, dead.ID) {
		t.Errorf("remove output %q", out)
	}
	v := cl.WaitMembers(10*time.Second, rest...)
	t.Logf("after remove: %s", harness.Summary(v))
	waitAllOwners(t, leader, "no subscription on the removed "+dead.ID, harness.IsOneOf(rest...), cl.Timings().DownAfter+failoverSlack)

	dead.Restart()
	cl.WaitMembers(10*time.Second, cl.Nodes...)
}

// TestClusterPreferredFailback: a subscription with a preferred server
// moves to a survivor when that server dies, and goes back to it once it
// has been up for stable-after after its restart, not before.
func TestClusterPreferredFailback(t *testing.T) {
	timing := harness.ShortTimings
	timing.StableAfter = 2 * time.Second
	cl := startClusterWith(t, 3, timing)
	leader := cl.Leader()
	pref := cl.Others(leader)[0]
	survivors := cl.Others(pref)
	sub := createSubOn(t, leader, client.Fields{"id": "pinned", "preferred-server": pref.ID}).ID
	// The preferred server takes it once stable.
	waitOwner(t, leader, sub, "the preferred server "+pref.ID, harness.IsOneOf(pref), timing.StableAfter+failoverSlack)

	pref.Kill()
	moved, _ := waitOwner(t, leader, sub, "a survivor", harness.IsOneOf(survivors...), timing.DownAfter+failoverSlack)
	t.Logf("preferred server %s killed: %s took %s over", pref.ID, moved, sub)

	pref.Restart()
	// When does the leader see it up again?
	var upAt time.Time
	waitFor(t, func() (bool, string, string) {
		v, err := leader.View()
		if err != nil {
			return false, pref.ID + " up", err.Error()
		}
		for _, n := range v.Nodes {
			if n.ID == pref.ID && n.Health == "up" {
				upAt = time.Now()
				return true, "", ""
			}
		}
		return false, pref.ID + " up", harness.Summary(v)
	}, 10*time.Second)
	_, backAt := waitOwner(t, leader, sub, "failback to "+pref.ID, harness.IsOneOf(pref), timing.StableAfter+failoverSlack)
	after := backAt.Sub(upAt)
	t.Logf("%s up again; failback after %s (stable-after %s)", pref.ID, after.Round(time.Millisecond), timing.StableAfter)
	// The leader marked it up at most a poll (plus replication) before we
	// saw it: allow that much.
	if after < timing.StableAfter-300*time.Millisecond {
		t.Errorf("failback %s after the preferred server was up: before stable-after (%s)", after, timing.StableAfter)
	}
}

// TestClusterDrainUndrain: `hookswitch drain N` moves every subscription
// off N (including one that prefers N); `undrain` lets them back: the
// preferred one returns and a new one goes to N, the least loaded node.
func TestClusterDrainUndrain(t *testing.T) {
	cl := startCluster(t, 3)
	leader := cl.Leader()
	target := cl.Others(leader)[0]
	rest := cl.Others(target)
	for i := range 6 {
		createSubOn(t, leader, client.Fields{"id": fmt.Sprintf("d%d", i)})
	}
	createSubOn(t, leader, client.Fields{"id": "prefers-target", "preferred-server": target.ID})
	waitOwner(t, leader, "prefers-target", "its preferred server "+target.ID, harness.IsOneOf(target), cl.Timings().StableAfter+failoverSlack)
	before := waitAllOwners(t, leader, "every subscription assigned", harness.IsOneOf(cl.Nodes...), 10*time.Second)
	t.Logf("before drain: %v", before)

	out := rest[1].MustCLI("drain", target.ID)
	if !strings.Contains(out, target.ID) {
		t.Errorf("drain output %q", out)
	}
	after := waitAllOwners(t, leader, "no subscription on the draining "+target.ID, harness.IsOneOf(rest...), 10*time.Second)
	t.Logf("after drain: %v", after)
	for id, o := range before {
		if o != target.ID && after[id] != o {
			t.Errorf("%s moved from %s, which is not draining, to %s", id, o, after[id])
		}
	}
	waitFor(t, func() (bool, string, string) {
		v, err := rest[0].View()
		if err != nil {
			return false, "", err.Error()
		}
		for _, n := range v.Nodes {
			if n.ID == target.ID {
				return n.Draining && n.ActiveSub == 0 && n.Health == "up", target.ID + " draining, up, with no subscriptions", harness.Summary(v)
			}
		}
		return false, target.ID + " in members", harness.Summary(v)
	}, 10*time.Second)
	// A new subscription does not go to the draining node either.
	createSubOn(t, leader, client.Fields{"id": "during-drain"})
	o, _ := waitOwner(t, leader, "during-drain", "an owner", harness.IsOneOf(cl.Nodes...), 10*time.Second)
	if o == target.ID {
		t.Errorf("a subscription created during the drain went to the draining node")
	}

	rest[0].MustCLI("undrain", target.ID)
	waitOwner(t, leader, "prefers-target", "back on its preferred server "+target.ID, harness.IsOneOf(target), 10*time.Second)
	createSubOn(t, leader, client.Fields{"id": "after-undrain"})
	waitOwner(t, leader, "after-undrain", "the least loaded node "+target.ID, harness.IsOneOf(target), 10*time.Second)
	// Every node (here the undrained one) shows it so, once it has
	// applied the last assignment.
	waitFor(t, func() (bool, string, string) {
		v, err := target.View()
		if err != nil {
			return false, "", err.Error()
		}
		for _, n := range v.Nodes {
			if n.ID == target.ID {
				return !n.Draining && n.ActiveSub == 2, target.ID + " not draining, with 2 subscriptions", harness.Summary(v)
			}
		}
		return false, target.ID + " in members", harness.Summary(v)
	}, 10*time.Second)
}

// TestClusterLeave: `hookswitch leave` on the leader, which sends
// subscriptions: it drains (its subscriptions move to the others), hands
// over leadership, is removed from `members`, and its process exits 0. The
// remaining two nodes carry on; then a follower leaves as well.
func TestClusterLeave(t *testing.T) {
	cl := startCluster(t, 3)
	leaving := cl.Leader()
	rest := cl.Others(leaving)
	for i := range 6 {
		createSubOn(t, leaving, client.Fields{"id": fmt.Sprintf("l%d", i)})
	}
	before := waitAllOwners(t, leaving, "every subscription assigned", harness.IsOneOf(cl.Nodes...), 10*time.Second)
	n := 0
	for _, o := range before {
		if o == leaving.ID {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("the leaving node sends nothing: %v", before)
	}

	out := leaving.MustCLI("leave")
	if !strings.Contains(out, "left") {
		t.Errorf("leave output %q", out)
	}
	select {
	case <-leaving.Done():
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %s of leaving", leaving.ID, stopTimeout)
	}
	if code := leaving.ExitState().ExitCode(); code != 0 {
		t.Fatalf("%s exited with %s after leaving, want 0", leaving.ID, leaving.ExitState())
	}

	v := cl.WaitMembers(10*time.Second, rest...)
	t.Logf("after leave: %s", harness.Summary(v))
	var members httpapi.ClusterView
	decodeJSON(t, "members", rest[0].MustCLI("members", "--json"), &members)
	for _, m := range members.Nodes {
		if m.ID == leaving.ID {
			t.Errorf("members still lists %s: %s", leaving.ID, harness.Summary(members))
		}
	}
	if len(members.Nodes) != 2 {
		t.Errorf("members: %s, want the 2 others", harness.Summary(members))
	}
	waitAllOwners(t, rest[0], "every subscription on the remaining nodes", harness.IsOneOf(rest...), 10*time.Second)
	// The cluster carries on: a write through the follower.
	newLeader := cl.Leader(rest...)
	f := cl.Others(leaving, newLeader)[0]
	createSubOn(t, f, client.Fields{"id": "after-leave"})
	waitOwner(t, f, "after-leave", "an owner among the remaining nodes", harness.IsOneOf(rest...), 10*time.Second)

	// A follower leaves too (its removal is forwarded to the leader):
	// the last node is alone and sends everything.
	f.MustCLI("leave")
	select {
	case <-f.Done():
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %s of leaving", f.ID, stopTimeout)
	}
	if code := f.ExitState().ExitCode(); code != 0 {
		t.Fatalf("%s exited with %s after leaving, want 0", f.ID, f.ExitState())
	}
	cl.WaitMembers(10*time.Second, newLeader)
	waitAllOwners(t, newLeader, "every subscription on the last node "+newLeader.ID, harness.IsOneOf(newLeader), 10*time.Second)
}

// TestClusterJoinReplacesStaleEntry: a node that comes back under the same
// id at other addresses (here new ports) joins again; the leader replaces
// its stale raft entry instead of keeping both.
func TestClusterJoinReplacesStaleEntry(t *testing.T) {
	cl := startCluster(t, 3)
	leader := cl.Leader()
	moved := cl.Others(leader)[0]
	moved.Kill()
	ports := harness.FreePorts(t, "127.0.0.1", 2)
	moved.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	moved.RaftAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	moved.Restart()
	cl.WaitMembers(10*time.Second, cl.Nodes...)
	for _, nd := range cl.Nodes {
		waitFor(t, func() (bool, string, string) {
			v, err := nd.View()
			if err != nil {
				return false, "", err.Error()
			}
			want := fmt.Sprintf("%s sees %s at %s/%s, once", nd.ID, moved.ID, moved.HTTPAddr, moved.RaftAddr)
			seen := 0
			for _, n := range v.Nodes {
				if n.ID == moved.ID {
					seen++
					if n.HTTPAddr != moved.HTTPAddr || n.RaftAddr != moved.RaftAddr {
						return false, want, fmt.Sprintf("%s/%s", n.HTTPAddr, n.RaftAddr)
					}
				}
			}
			return seen == 1 && len(v.Nodes) == 3, want, harness.Summary(v)
		}, 10*time.Second)
	}
	// The cluster works through it.
	createSubOn(t, moved, client.Fields{"id": "via-moved"})
	waitOwner(t, moved, "via-moved", "an owner", harness.IsOneOf(cl.Nodes...), 10*time.Second)
}

// TestClusterFencingFollowerOwner and TestClusterFencingLeaderOwner: the
// node that sends a subscription is cut off from the other two (they are
// SIGSTOPped, so it cannot commit its reports); with events still ingested
// on it, it stops posting within lease of its last committed report, and
// posts nothing afterwards.
func TestClusterFencingFollowerOwner(t *testing.T) { testFencing(t, false) }
func TestClusterFencingLeaderOwner(t *testing.T)   { testFencing(t, true) }

func testFencing(t *testing.T, ownerLeads bool) {
	cl := startCluster(t, 3)
	leader := cl.Leader()
	owner := cl.Others(leader)[0]
	if ownerLeads {
		owner = leader
	}
	others := cl.Others(owner)
	sink := harness.NewReceiver(t, harness.ReceiverOptions{})
	sub := createSubOn(t, leader, client.Fields{"id": "fenced", "post-url": sink.URL(), "preferred-server": owner.ID}).ID
	waitOwner(t, leader, sub, "the preferred server "+owner.ID, harness.IsOneOf(owner), cl.Timings().StableAfter+failoverSlack)

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
			err := ingestEvent(ictx, owner, fmt.Appendf(nil, `{"model":"call","domain":"example.com","n":%d}`, i))
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
		p := postTimes(sink)
		return len(p) >= 20 && time.Since(p[len(p)-1]) < 300*time.Millisecond,
			"at least 20 POSTs, the last one recent", fmt.Sprintf("%d POSTs, %d events", len(p), len(sink.Events()))
	}, 10*time.Second)

	fencedLogs := strings.Count(owner.Logs(), "lease expired")
	for _, o := range others {
		o.Freeze()
	}
	stopped := time.Now()
	acceptedAtStop := accepted.Load()
	t.Logf("froze %v; %s (leader: %v) is cut off", harness.IDs(others), owner.ID, ownerLeads)

	// Watch while events keep arriving on the owner: until lease + 2s
	// after the stop, well past the limit asserted below.
	watchUntil := stopped.Add(cl.Timings().Lease + 2*time.Second)
	waitFor(t, func() (bool, string, string) {
		return time.Now().After(watchUntil), "", ""
	}, cl.Timings().Lease+3*time.Second)

	posts := postTimes(sink)
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
	limit := stopped.Add(cl.Timings().Lease + time.Second)
	t.Logf("POSTs: %d before the others stopped, %d after; last one %s after the stop (limit lease+1s = %s); events accepted after the stop: %d (refused: %d)",
		before, after, last.Sub(stopped).Round(time.Millisecond), cl.Timings().Lease+time.Second, accepted.Load()-acceptedAtStop, refused.Load())
	if last.After(limit) {
		t.Errorf("the cut-off owner posted %s after the others stopped, later than lease (%s) + 1s", last.Sub(stopped), cl.Timings().Lease)
	}
	if n := strings.Count(owner.Logs(), "lease expired"); n <= fencedLogs {
		t.Errorf("%s did not log that its lease expired", owner.ID)
	}
	if accepted.Load()-acceptedAtStop < 20 {
		t.Errorf("only %d events ingested on the cut-off owner after the stop: the test did not give it anything to send", accepted.Load()-acceptedAtStop)
	}

	// Thaw: the cluster heals.
	for _, o := range others {
		o.Thaw()
	}
	cl.WaitMembers(15*time.Second, cl.Nodes...)
}
