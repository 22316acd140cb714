package httpapi_test

// GET /v1/subscriptions/{id}/stats: scope like GET of the subscription,
// counts from the node's own delivery outcomes.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/stats"
	"github.com/hookswitch/hookswitch/httpapi"
)

func TestSubStatsScope(t *testing.T) {
	tn := mustStartNode(t)
	a := tn.createSub(tn.root, sub(fields{"id": "a", "reseller": "r1", "domain": "a.example"}))
	tn.createSub(tn.root, sub(fields{"id": "b", "reseller": "r1", "domain": "b.example"}))
	tokA := tn.newToken("domain", "r1", "a.example", "")
	tests := []struct {
		name, path, token string
		code              int
	}{
		{"super", "/v1/subscriptions/a/stats", tn.root, http.StatusOK},
		{"own domain", "/v1/subscriptions/a/stats", tokA, http.StatusOK},
		{"other domain is not found", "/v1/subscriptions/b/stats", tokA, http.StatusNotFound},
		{"unknown", "/v1/subscriptions/nope/stats", tn.root, http.StatusNotFound},
		{"no token", "/v1/subscriptions/a/stats", "", http.StatusUnauthorized},
		{"wrong method", "/v1/subscriptions/a/stats", tn.root, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodGet
			if tc.code == http.StatusMethodNotAllowed {
				method = http.MethodPost
			}
			r := tn.do(method, tc.path, tc.token, nil)
			want(t, method+" "+tc.path, r, tc.code)
			if tc.code != http.StatusOK {
				return
			}
			v := decode[httpapi.StatsView](t, tc.path, r)
			if v.ID != a.ID || len(v.Minutes) != stats.Window || v.Node == "" {
				t.Fatalf("stats = id %q node %q, %d minutes; want id a, a node, %d minutes", v.ID, v.Node, len(v.Minutes), stats.Window)
			}
		})
	}
}

func TestSubStatsCountsDeliveries(t *testing.T) {
	tn := mustStartNode(t)
	var fail atomic.Bool
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)
	tn.createSub(tn.root, sub(fields{"id": "s", "post-url": recv.URL + "/hook", "encoding": "json"}))
	tn.ingest(`{"model":"call","n":1}`, `{"model":"call","n":2}`, `{"model":"call","n":3}`)
	total := func() (delivered, failed uint64, v httpapi.StatsView) {
		r := tn.do(http.MethodGet, "/v1/subscriptions/s/stats", tn.root, nil)
		want(t, "GET stats", r, http.StatusOK)
		v = decode[httpapi.StatsView](t, "GET stats", r)
		for _, m := range v.Minutes {
			delivered += m.Delivered
			failed += m.Failed
		}
		return delivered, failed, v
	}
	waitFor(t, func() (bool, string) {
		d, _, v := total()
		return d == 3, fmt.Sprintf("delivered in the last hour = %d, want 3 (%+v)", d, v.Minutes[len(v.Minutes)-1])
	}, 20*time.Second)
	fail.Store(true)
	tn.ingest(`{"model":"call","n":4}`)
	waitFor(t, func() (bool, string) {
		d, f, _ := total()
		return f >= 1 && d == 3, fmt.Sprintf("delivered %d failed %d, want 3 and at least 1", d, f)
	}, 20*time.Second)
	if _, _, v := total(); v.Note != "" {
		t.Fatalf("a single node answered with a note: %q", v.Note)
	}
}

// The dashboard shows its rotate-secret button only when a GET of the
// rotate path is not 404 (a POST-only route answers 405). The probe must
// never rotate: the secret stays the same.
func TestRotateProbe(t *testing.T) {
	tn := mustStartNode(t)
	tn.createSub(tn.root, sub(fields{"id": "a"}))
	secret := func() string {
		r := tn.do(http.MethodGet, "/v1/subscriptions/a/secret", tn.root, nil)
		want(t, "GET secret", r, http.StatusOK)
		return decode[map[string]string](t, "GET secret", r)["secret"]
	}
	before := secret()
	r := tn.do(http.MethodGet, "/v1/subscriptions/a/secret/rotate", tn.root, nil)
	if r.Code != http.StatusNotFound && r.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET rotate: %d %s; want 404 (no endpoint) or 405 (endpoint exists)", r.Code, r.Body)
	}
	if after := secret(); after != before || before == "" {
		t.Fatalf("the probe changed the secret (or there is none): %q → %q", before, after)
	}
}
