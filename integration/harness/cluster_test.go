package harness

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
)

// TestClusterInNetNS drives the harness end to end: a three-node cluster
// on 127.0.0.11–13 inside a namespace, a receiver inside it, load on every
// live node while one node is stopped and restarted, and exact accounting
// at the end: nothing lost, nothing out of order, one POST in flight.
func TestClusterInNetNS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real hookswitch processes; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	ns := NewNetNS(t)
	hosts := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	cl := StartCluster(t, Options{Nodes: 3, NetNS: ns, Hosts: hosts})
	for i, nd := range cl.Nodes {
		if !strings.HasPrefix(nd.HTTPAddr, hosts[i]+":") || !strings.HasPrefix(nd.RaftAddr, hosts[i]+":") {
			t.Fatalf("node %s at %s/%s, want %s", nd.ID, nd.HTTPAddr, nd.RaftAddr, hosts[i])
		}
	}
	recv := NewReceiver(t, ReceiverOptions{Host: "127.0.0.10", Listen: ns.Listen})
	leader := cl.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	sub, err := leader.API().CreateSub(ctx, client.Fields{"id": "all", "model": "call", "post-url": recv.URL()})
	if err != nil {
		t.Fatalf("create subscription: %v", err)
	}
	recv.SetSecret(sub.Secret)

	load := StartLoad(t, cl.Running, LoadOptions{Rate: 100, PerRequest: 5, Max: 2000, Duration: 20 * time.Second})
	WaitFor(t, func() (bool, string, string) {
		return load.Count() >= 100, "100 events accepted", itoa(load.Count())
	}, 10*time.Second)
	victim := cl.Others(leader)[0]
	victim.Stop()
	n := load.Count()
	WaitFor(t, func() (bool, string, string) {
		return load.Count() >= n+100, "100 more events accepted with " + victim.ID + " down", itoa(load.Count())
	}, 10*time.Second)
	victim.Restart()
	cl.WaitAllUp()
	accepted := load.Stop()
	if len(accepted[victim.ID]) == 0 {
		t.Errorf("no events accepted by %s: %v", victim.ID, accepted)
	}
	acc := recv.WaitDelivered(t, accepted, "all", 30*time.Second)
	t.Logf("%s", acc)
	if acc.OutOfOrder != 0 {
		t.Errorf("out of order: %s", acc)
	}
	if o := recv.Overlap("all"); o != 1 {
		t.Errorf("at most %d POSTs of one subscription in flight at once, want 1", o)
	}
	if f := recv.SignatureFailures(); f != 0 {
		t.Errorf("%d POSTs with a bad signature", f)
	}
	if _, err := victim.CLI("members"); err != nil {
		t.Errorf("CLI inside the namespace: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
