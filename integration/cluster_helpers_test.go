package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// Helpers of the cluster tests (cluster_test.go): a cluster of real
// `hookswitch agent` processes on loopback TCP with short timings
// (harness.StartCluster), and the subscription polling the tests share.

// clusterCallTimeout bounds one API call of a helper.
const clusterCallTimeout = harness.CallTimeout

// startCluster starts an n-node cluster with harness.ShortTimings and
// waits until every node is a member, up and stable.
func startCluster(t *testing.T, n int) *harness.Cluster {
	t.Helper()
	return startClusterWith(t, n, harness.ShortTimings)
}

// startClusterWith is startCluster with other timings.
func startClusterWith(t *testing.T, n int, timing harness.Timings) *harness.Cluster {
	t.Helper()
	skipShort(t)
	return harness.StartCluster(t, harness.Options{Nodes: n, Timings: timing})
}

// getSub reads a subscription from the node.
func getSub(nd *harness.Node, id string) (httpapi.SubView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	return nd.API().GetSub(ctx, id)
}

// createSubOn creates a subscription through the node and returns it;
// model defaults to call and post-url to an unused port.
func createSubOn(t testing.TB, nd *harness.Node, f client.Fields) httpapi.SubView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	if _, ok := f["model"]; !ok {
		f["model"] = "call"
	}
	if _, ok := f["post-url"]; !ok {
		// One post-url per subscription: equal parameters are a 409.
		f["post-url"] = fmt.Sprintf("http://127.0.0.1:9/unused/%v", f["id"])
	}
	v, err := nd.API().CreateSub(ctx, f)
	if err != nil {
		t.Fatalf("create subscription through %s: %v", nd.ID, err)
	}
	return v
}

// waitOwner polls the node until the subscription's current-active-server
// satisfies ok, and returns it and when it was seen.
func waitOwner(t testing.TB, nd *harness.Node, sub, want string, ok func(owner string) bool, timeout time.Duration) (string, time.Time) {
	t.Helper()
	var owner string
	waitFor(t, func() (bool, string, string) {
		v, err := getSub(nd, sub)
		if err != nil {
			return false, want, nd.ID + ": " + err.Error()
		}
		owner = v.CurrentActiveServer
		return ok(owner), want, fmt.Sprintf("%s says current-active-server of %s is %q", nd.ID, sub, owner)
	}, timeout)
	return owner, time.Now()
}

// owners reads every subscription through the node: id → owner.
func owners(nd *harness.Node) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	subs, err := nd.API().ListSubs(ctx, nil)
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
func waitAllOwners(t testing.TB, nd *harness.Node, want string, ok func(owner string) bool, timeout time.Duration) map[string]string {
	t.Helper()
	var last map[string]string
	waitFor(t, func() (bool, string, string) {
		o, err := owners(nd)
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
func ingestEvent(ctx context.Context, nd *harness.Node, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nd.BaseURL()+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := nd.HTTPClient().Do(req)
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

// postTimes returns the arrival times of a receiver's POSTs so far.
func postTimes(r *harness.Receiver) []time.Time {
	var out []time.Time
	for _, p := range r.Posts() {
		out = append(out, p.At)
	}
	return out
}
