package integration

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// TestStatusSurvivesRestartFailoverDrain: status is replicated state. A
// subscription that posted is "active"; it stays active, without a new
// POST (no event is ingested meanwhile), when its node restarts, when
// another node takes it over after a kill -9, and when it moves off a
// draining node; ?status=active still lists it. Counters: every attempt
// is a post, failed ones (a 500, then a 410) included.
func TestStatusSurvivesRestartFailoverDrain(t *testing.T) {
	cl := startCluster(t, 3)
	fail := make(chan int, 1) // the status the receiver answers next, once
	recv := harness.NewReceiver(t, harness.ReceiverOptions{Answer: func(int, *http.Request) (int, bool) {
		select {
		case s := <-fail:
			return s, false
		default:
			return 200, false
		}
	}})
	n1 := cl.Nodes[0]
	sub := createSubOn(t, n1, client.Fields{"model": "call", "domain": "status.example", "post-url": recv.URL()})
	owner := waitOwned(t, cl, sub.ID, func(string) bool { return true })
	ids := mustIngestSeq(t, owner, "status.example", 0, 3)
	recv.WaitIDs(t, ids, 20*time.Second)
	active := func(what string, on *harness.Node) {
		t.Helper()
		waitFor(t, func() (bool, string, string) {
			v, err := getSub(on, sub.ID)
			if err != nil {
				return false, "status active " + what, err.Error()
			}
			return v.Status == "active" && v.CurrentActiveServer != "", "status active " + what, subSummary(v)
		}, 20*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
		defer cancel()
		list, err := on.API().ListSubs(ctx, map[string][]string{"status": {"active"}})
		if err != nil || len(list) != 1 || list[0].ID != sub.ID {
			t.Fatalf("?status=active %s: %v %+v", what, err, list)
		}
	}
	active("after the first delivery", n1)
	posts := recv.PostCount()

	// The owner restarts: its new run starts active, it does not post.
	owner.Stop()
	owner.Restart()
	cl.WaitAllUp()
	owner = waitOwned(t, cl, sub.ID, func(string) bool { return true })
	active("after the owner restarted", owner)

	// kill -9 of the owner: another node takes over, still active.
	old := owner
	old.Kill()
	owner = waitOwned(t, cl, sub.ID, func(o string) bool { return o != old.ID })
	active("after a failover", owner)
	old.Restart()
	cl.WaitAllUp()

	// Drain the owner: the subscription moves, still active.
	owner = waitOwned(t, cl, sub.ID, func(string) bool { return true })
	ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
	err := n1.API().Drain(ctx, owner.ID, true)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	moved := waitOwned(t, cl, sub.ID, func(o string) bool { return o != owner.ID })
	active("after a drain", moved)
	if n := recv.PostCount(); n != posts {
		t.Fatalf("%d POSTs without new events: the checks above must not have been helped by a delivery", n-posts)
	}

	// Counters: a failed attempt counts in posts-count and error-count.
	before, err := getSub(n1, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	fail <- 500
	ids = mustIngestSeq(t, moved, "status.example", 3, 1)
	recv.WaitIDs(t, ids, 30*time.Second)
	waitFor(t, func() (bool, string, string) {
		v, err := getSub(n1, sub.ID)
		if err != nil {
			return false, "", err.Error()
		}
		want := fmt.Sprintf("posts-count %d (a failed attempt and its retry), error-count %d", before.PostsCount+2, before.ErrorCount+1)
		return v.PostsCount == before.PostsCount+2 && v.ErrorCount == before.ErrorCount+1 && v.Status == "active", want, subSummary(v)
	}, 20*time.Second)
}
