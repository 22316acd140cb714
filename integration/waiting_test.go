package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// TestWaitingWhileHomeNodeDown: a geo "no" subscription pinned to n2 of a
// three-node cluster. While n2 is down (kill -9) nobody sends it: its
// status is waiting and its lag counts the events ingested meanwhile on n1
// and n3. Once n2 is back every event is delivered, the status is active
// and the lag 0. Changing its preferred server moves it there.
func TestWaitingWhileHomeNodeDown(t *testing.T) {
	cl := startCluster(t, 3)
	recv := harness.NewReceiver(t, harness.ReceiverOptions{})
	n1, n2, n3 := cl.Nodes[0], cl.Nodes[1], cl.Nodes[2]
	const domain = "waiting.example"
	sub := createSubOn(t, n1, client.Fields{"model": "call", "domain": domain, "post-url": recv.URL(),
		"subscription-geo-support": "no", "preferred-server": n2.ID})
	if sub.CurrentActiveServer != n2.ID || sub.HomeServer != n2.ID {
		t.Fatalf("created: current %q home %q, want %s", sub.CurrentActiveServer, sub.HomeServer, n2.ID)
	}
	view := func(on *harness.Node, what string, ok func(v httpapi.SubView) bool) {
		t.Helper()
		waitFor(t, func() (bool, string, string) {
			v, err := getSub(on, sub.ID)
			if err != nil {
				return false, what, err.Error()
			}
			return ok(v), what, subSummary(v) + " on " + v.CurrentActiveServer
		}, 30*time.Second)
	}

	// A first delivery, and the report carrying it (and the cursors past
	// it) committed: posts-count shows every POST the receiver got.
	accepted := map[string][]string{n1.ID: mustIngestSeq(t, n1, domain, 0, 2)}
	recv.WaitDelivered(t, accepted, sub.ID, 30*time.Second)
	view(n1, "active, every POST counted, lag 0", func(v httpapi.SubView) bool {
		return v.Status == "active" && v.PostsCount == uint64(recv.PostCount()) && v.Lag == 0
	})

	n2.Kill()
	posts := recv.PostCount()
	accepted[n1.ID] = append(accepted[n1.ID], mustIngestSeq(t, n1, domain, 2, 6)...)
	accepted[n3.ID] = mustIngestSeq(t, n3, domain, 0, 4)
	// Events of another domain are not its lag.
	mustIngestSeq(t, n3, "other.example", 0, 3)
	for _, on := range []*harness.Node{n1, n3} {
		view(on, "waiting with lag 10 (the events ingested on n1 and n3 since n2 died)", func(v httpapi.SubView) bool {
			return v.Status == "waiting" && v.Lag == 10 && v.CurrentActiveServer == n2.ID
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
	list, err := n3.API().ListSubs(ctx, map[string][]string{"status": {"waiting"}})
	cancel()
	if err != nil || len(list) != 1 || list[0].ID != sub.ID {
		t.Fatalf("?status=waiting: %v %+v", err, list)
	}
	if n := recv.PostCount(); n != posts {
		t.Fatalf("%d POSTs while its home node was down: a geo \"no\" subscription is sent by its home node alone", n-posts)
	}

	n2.Restart()
	cl.WaitAllUp()
	acc := recv.WaitDelivered(t, accepted, sub.ID, 60*time.Second)
	t.Logf("after n2's return: %s", acc)
	if acc.Duplicates != 0 || acc.OutOfOrder != 0 {
		// Its cursors past the first delivery were committed before the
		// kill: nothing is sent twice, and each log's events in order.
		t.Fatalf("after n2's return: %s, want no duplicates and none out of order", acc)
	}
	view(n1, "active with lag 0 once n2 is back", func(v httpapi.SubView) bool {
		return v.Status == "active" && v.Lag == 0 && v.CurrentActiveServer == n2.ID
	})

	// A changed pin moves it: n3 sends it from now on.
	ctx, cancel = context.WithTimeout(context.Background(), harness.CallTimeout)
	moved, err := n1.API().UpdateSub(ctx, sub.ID, client.Fields{"preferred-server": n3.ID}, true)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if moved.CurrentActiveServer != n3.ID || moved.HomeServer != n3.ID {
		t.Fatalf("after the PATCH: current %q home %q, want %s", moved.CurrentActiveServer, moved.HomeServer, n3.ID)
	}
	accepted[n2.ID] = mustIngestSeq(t, n2, domain, 0, 3)
	recv.WaitDelivered(t, accepted, sub.ID, 30*time.Second)
	view(n2, "active, sent by n3", func(v httpapi.SubView) bool {
		return v.Status == "active" && v.Lag == 0 && v.CurrentActiveServer == n3.ID && v.HomeServer == n3.ID
	})
}

// TestNSCountersFailThenRecover: NetSapiens' counters with a receiver that
// fails (500) twice, then recovers: posts-count counts every attempt, so it
// is at least error-count plus the successful posts (equal here: no node
// died), and a NetSapiens PUT of {"error-count":0,"posts-count":0} resets
// both (202).
func TestNSCountersFailThenRecover(t *testing.T) {
	cl := startCluster(t, 1)
	nd := cl.Nodes[0]
	const failures = 2
	recv := harness.NewReceiver(t, harness.ReceiverOptions{Answer: func(n int, _ *http.Request) (int, bool) {
		if n < failures {
			return http.StatusInternalServerError, false
		}
		return http.StatusOK, false
	}})
	ns := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, nd.BaseURL()+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+nd.RootToken())
		req.Header.Set("Content-Type", "application/json")
		resp, err := nd.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		data, _ := io.ReadAll(resp.Body)
		if len(data) > 0 && json.Unmarshal(data, &out) != nil {
			t.Fatalf("%s %s: answer %d %q is not a JSON object", method, path, resp.StatusCode, data)
		}
		return resp.StatusCode, out
	}
	code, created := ns(http.MethodPost, "/ns-api/v2/subscriptions", map[string]any{
		"post-url": recv.URL(), "model": "call", "user": "*", "reseller": "*", "domain": "counters.example",
		"user-scope": "Super User", "subscription-geo-support": "yes",
	})
	id, _ := created["id"].(string)
	if code != http.StatusOK || id == "" {
		t.Fatalf("create: %d %v", code, created)
	}
	ids := mustIngestSeq(t, nd, "counters.example", 0, 3)
	recv.WaitIDs(t, ids, 60*time.Second)
	path := "/ns-api/v2/subscriptions/" + id
	var last string
	waitFor(t, func() (bool, string, string) {
		var ok2xx, failed uint64
		for _, p := range recv.Posts() {
			if p.Status >= 200 && p.Status < 300 {
				ok2xx++
			} else {
				failed++
			}
		}
		code, v := ns(http.MethodGet, path, nil)
		posts, errs := num(v["posts-count"]), num(v["error-count"])
		last = fmt.Sprintf("%d: posts-count %d error-count %d; receiver: %d failed, %d succeeded", code, posts, errs, failed, ok2xx)
		want := fmt.Sprintf("posts-count %d >= error-count %d + %d successful posts, every attempt counted", posts, errs, ok2xx)
		return code == http.StatusOK && failed == failures && errs == failed && posts >= errs+ok2xx && posts == failed+ok2xx, want, last
	}, 30*time.Second)
	t.Logf("counters: %s", last)

	code, ans := ns(http.MethodPut, path, map[string]any{"error-count": 0, "posts-count": 0})
	if code != http.StatusAccepted {
		t.Fatalf("PUT reset: %d %v, want 202", code, ans)
	}
	code, v := ns(http.MethodGet, path, nil)
	if code != http.StatusOK || num(v["posts-count"]) != 0 || num(v["error-count"]) != 0 {
		t.Fatalf("after the reset: %d posts-count %v error-count %v, want 0 and 0", code, v["posts-count"], v["error-count"])
	}
}

// num reads a JSON number as a count (the largest uint64 when it is not
// one, which no check accepts).
func num(v any) uint64 {
	f, ok := v.(float64)
	if !ok || f < 0 {
		return 1<<64 - 1
	}
	return uint64(f)
}
