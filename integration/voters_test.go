package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// votersTimings are the timings of the nine-node test: failure detection
// in about two seconds, a voter replaced after down-after × 6 = 12s, and
// raft timeouts long enough for nine race-built nodes on two cores not to
// flap (an election gives every node a whole down-after again).
var votersTimings = harness.Timings{
	Report: 200 * time.Millisecond, Lease: time.Second,
	DownAfter: 2 * time.Second, StableAfter: 2 * time.Second,
	RaftHeartbeat: 800 * time.Millisecond, RaftElection: 800 * time.Millisecond,
}

// votersReplaceWait bounds the wait from the kills to five up voters
// again: an election, down-after, down-after × 6, two autopilot rounds,
// with room for a busy machine.
const votersReplaceWait = 60 * time.Second

// suffrage counts a cluster view's voters and non-voters; up lists the
// voters that are up.
func suffrage(v httpapi.ClusterView) (voters, nonvoters int, upVoters []string) {
	for _, n := range v.Nodes {
		switch n.Suffrage {
		case "voter":
			voters++
			if n.Health == "up" {
				upVoters = append(upVoters, n.ID)
			}
		case "nonvoter":
			nonvoters++
		}
	}
	return voters, nonvoters, upVoters
}

// waitVoters waits until every running node sees the cluster's nine
// members with five voters, all of them up and running, and the given
// nodes as non-voters (and, with allUp, every member up); it returns the
// last view.
func waitVoters(t *testing.T, cl *harness.Cluster, nonvoter []*harness.Node, allUp bool, timeout time.Duration) httpapi.ClusterView {
	t.Helper()
	var last httpapi.ClusterView
	want := fmt.Sprintf("9 members, 5 voters all up and running, %v non-voters (all up: %v)", harness.IDs(nonvoter), allUp)
	running := harness.IsOneOf(cl.Running()...)
	mustNonvoter := harness.IsOneOf(nonvoter...)
	waitFor(t, func() (bool, string, string) {
		for _, nd := range cl.Running() {
			v, err := nd.View()
			if err != nil {
				return false, want, nd.ID + ": " + err.Error()
			}
			last = v
			voters, nonvoters, up := suffrage(v)
			seen := nd.ID + " sees " + harness.Summary(v)
			if len(v.Nodes) != 9 || voters != 5 || nonvoters != 4 || len(up) != 5 || v.Leader == "" {
				return false, want, seen
			}
			for _, id := range up {
				if !running(id) {
					return false, want, seen
				}
			}
			for _, n := range v.Nodes {
				if (mustNonvoter(n.ID) && n.Suffrage != "nonvoter") || (allUp && n.Health != "up") {
					return false, want, seen
				}
			}
		}
		return true, "", ""
	}, timeout)
	return last
}

// TestVotersPromoteAfterCrash: nine real processes keep five raft voters
// (the default `voters`): n1 bootstrapped and the first four to join are
// voters, the other four join as non-voters that still send and tail the
// mesh. kill -9 of two voters, the leader among them: once they have been
// down for down-after × 6, the leader demotes them and promotes two stable
// non-voters, so the cluster again has five voters, all up (the dead two
// stay members, as down non-voters). When they come back (at other
// addresses) they stay non-voters and there are still five voters. Under a low event load
// sent to the live nodes, with one subscription, every accepted event is
// delivered.
func TestVotersPromoteAfterCrash(t *testing.T) {
	skipShort(t)
	start := time.Now()
	cl := harness.StartCluster(t, harness.Options{Nodes: 9, Timings: votersTimings, NoWaitStable: true})
	// The join order decides the first suffrage: n1 to n5 vote.
	waitVoters(t, cl, cl.Nodes[5:], true, harness.FormTimeout)
	t.Logf("nine nodes, five voters, in %s", time.Since(start).Round(time.Millisecond))

	recv := harness.NewReceiver(t, harness.ReceiverOptions{})
	subs := createFaultSubs(t, cl, recv, "voters.example", 1)
	load := harness.StartLoad(t, cl.Running, harness.LoadOptions{
		Rate: 20, PerRequest: 2, Max: 10_000, Duration: 3 * time.Minute,
		Event: faultEvent("voters.example"), Timeout: 5 * time.Second,
	})

	// The victims: the leader, and the subscription's owner if it is
	// another voter (else the next voter).
	leader := cl.Leader()
	owner := waitOwned(t, cl, subs[0], func(string) bool { return true })
	victims := []*harness.Node{leader}
	v, err := cl.View()
	if err != nil {
		t.Fatal(err)
	}
	isVoter := map[string]bool{}
	for _, n := range v.Nodes {
		isVoter[n.ID] = n.Suffrage == "voter"
	}
	if owner != leader && isVoter[owner.ID] {
		victims = append(victims, owner)
	} else {
		for _, nd := range cl.Nodes {
			if nd != leader && isVoter[nd.ID] {
				victims = append(victims, nd)
				break
			}
		}
	}
	waitFor(t, func() (bool, string, string) {
		return load.Count() >= 20, "some events accepted before the kills", fmt.Sprint(load.Count())
	}, 30*time.Second)
	t.Logf("kill -9 %v (leader %s, subscription owner %s); %d events accepted so far", harness.IDs(victims), leader.ID, owner.ID, load.Count())
	killed := time.Now()
	for _, nd := range victims {
		nd.Kill()
	}

	// Voters counted in the raft configuration, live or down: five, all
	// up; the two victims are down non-voters.
	v = waitVoters(t, cl, victims, false, votersReplaceWait)
	t.Logf("five voters again %s after the kills: %s", time.Since(killed).Round(time.Millisecond), harness.Summary(v))
	if since := time.Since(killed); since < 6*votersTimings.DownAfter {
		t.Errorf("voters replaced %s after the kills, before down-after × 6 (%s)", since, 6*votersTimings.DownAfter)
	}
	for _, n := range v.Nodes {
		if harness.IsOneOf(victims...)(n.ID) && n.Health == "up" {
			t.Errorf("victim %s is up while dead: %s", n.ID, harness.Summary(v))
		}
	}

	// The victims come back as non-voters: still five voters. They come
	// back at new ports: while they were dead, their old ones may have
	// been taken by the other nodes' outgoing connections (which bind
	// port 0 on the advertised host); so each join also replaces a stale
	// entry of a demoted voter.
	for _, nd := range victims {
		ports := harness.FreePorts(t, "127.0.0.1", 2)
		nd.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
		nd.RaftAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		nd.Restart()
	}
	v = waitVoters(t, cl, victims, true, harness.FormTimeout)
	t.Logf("victims back: %s", harness.Summary(v))
	// Once they are stable they could be promoted: they are not, as long
	// as the five voters are up (watched for two autopilot rounds).
	waitFor(t, func() (bool, string, string) {
		v, err := cl.View()
		if err != nil {
			return false, "the victims stable", err.Error()
		}
		for _, n := range v.Nodes {
			if harness.IsOneOf(victims...)(n.ID) && !n.Stable {
				return false, "the victims stable", harness.Summary(v)
			}
		}
		return true, "", ""
	}, harness.FormTimeout)
	for end := time.Now().Add(votersTimings.DownAfter); time.Now().Before(end); {
		v, err := cl.View()
		if err != nil {
			t.Fatal(err)
		}
		if voters, _, up := suffrage(v); voters != 5 || len(up) != 5 {
			t.Fatalf("after the victims came back: %d voters (%d up), want 5: %s", voters, len(up), harness.Summary(v))
		}
		for _, n := range v.Nodes {
			if harness.IsOneOf(victims...)(n.ID) && n.Suffrage != "nonvoter" {
				t.Fatalf("victim %s promoted while five voters are up: %s", n.ID, harness.Summary(v))
			}
		}
		<-time.After(100 * time.Millisecond) // the polling period, not a synchronisation
	}

	accepted := load.Stop()
	errs, lastErr := load.Errors()
	t.Logf("%d events accepted, %d requests refused or cut (last: %s)", countIDs(accepted), errs, lastErr)
	checkAccount(t, recv, accepted, subs, "voters")
	checkOneLiveOwner(t, cl, subs)
	t.Logf("test took %s", time.Since(start).Round(time.Millisecond))
}

// waitSuffrage waits until every running node sees exactly the given
// members (id → "voter" or "nonvoter"), all up, with a leader; it returns
// the last view.
func waitSuffrage(t *testing.T, cl *harness.Cluster, want map[string]string, timeout time.Duration) httpapi.ClusterView {
	t.Helper()
	var last httpapi.ClusterView
	waitFor(t, func() (bool, string, string) {
		expect := fmt.Sprintf("members %v, all up, with a leader", want)
		for _, nd := range cl.Running() {
			v, err := nd.View()
			if err != nil {
				return false, expect, nd.ID + ": " + err.Error()
			}
			last = v
			if len(v.Nodes) != len(want) || v.Leader == "" {
				return false, expect, nd.ID + " sees " + harness.Summary(v)
			}
			for _, n := range v.Nodes {
				if want[n.ID] != n.Suffrage || n.Health != "up" {
					return false, expect, nd.ID + " sees " + harness.Summary(v)
				}
			}
		}
		return true, "", ""
	}, timeout)
	return last
}

// TestVotersJoinLeaveAndStaleEntry: with voters 2, the third node joins
// as a non-voter (`members` shows it so); joining again changes nothing;
// coming back at other addresses replaces its entry, still a non-voter;
// and when a voter leaves, the stable non-voter is promoted at once (not
// after down-after × 6).
func TestVotersJoinLeaveAndStaleEntry(t *testing.T) {
	skipShort(t)
	cl := harness.StartCluster(t, harness.Options{Nodes: 3, Extra: []string{"--voters", "2"}})
	n1, n2, n3 := cl.Nodes[0], cl.Nodes[1], cl.Nodes[2]
	want := map[string]string{"n1": "voter", "n2": "voter", "n3": "nonvoter"}
	waitSuffrage(t, cl, want, harness.FormTimeout)
	var members httpapi.ClusterView
	decodeJSON(t, "members", n2.MustCLI("members", "--json"), &members)
	for _, m := range members.Nodes {
		if m.Suffrage != want[m.ID] {
			t.Errorf("members: %s is a %q, want %q", m.ID, m.Suffrage, want[m.ID])
		}
	}

	// Idempotent: a member that asks again stays as it is.
	n3.MustCLI("join", n1.HTTPAddr)
	waitSuffrage(t, cl, want, harness.FormTimeout)

	// Back at other addresses: the stale entry is replaced, once.
	n3.Kill()
	ports := harness.FreePorts(t, "127.0.0.1", 2)
	n3.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	n3.RaftAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	n3.Restart()
	waitFor(t, func() (bool, string, string) {
		expect := fmt.Sprintf("n3 at %s/%s", n3.HTTPAddr, n3.RaftAddr)
		for _, nd := range cl.Running() {
			v, err := nd.View()
			if err != nil {
				return false, expect, nd.ID + ": " + err.Error()
			}
			for _, n := range v.Nodes {
				if n.ID == "n3" && (n.HTTPAddr != n3.HTTPAddr || n.RaftAddr != n3.RaftAddr) {
					return false, expect, fmt.Sprintf("%s sees %s/%s", nd.ID, n.HTTPAddr, n.RaftAddr)
				}
			}
		}
		return true, "", ""
	}, harness.FormTimeout)
	waitSuffrage(t, cl, want, harness.FormTimeout)

	// A voter leaves: n3, once stable, takes its place.
	left := time.Now()
	n2.MustCLI("leave")
	select {
	case <-n2.Done():
	case <-time.After(stopTimeout):
		t.Fatalf("n2 did not exit within %s of leaving", stopTimeout)
	}
	v := waitSuffrage(t, cl, map[string]string{"n1": "voter", "n3": "voter"}, harness.FormTimeout)
	t.Logf("n3 promoted %s after n2 left: %s", time.Since(left).Round(time.Millisecond), harness.Summary(v))
}
