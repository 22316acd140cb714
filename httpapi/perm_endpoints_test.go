package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/node"
)

// TestEndpointRoleMatrix: every role (and no token, and the join token)
// against every endpoint, in and out of the role's scope, in one table:
// subscriptions (/v1 and /ns-api/v2, rotation included), tokens, cluster,
// join, node-to-node, websocket, ingest, /metrics and /debug/pprof. The
// node trusts no address for ingest and the local endpoints (ingest-allow
// is empty), so the token decides there; the websocket's ws-allow and
// /v1/cluster/self keep loopback, where the caller is. Which scope a
// subscription request may name is TestPermissionMatrix's.
func TestEndpointRoleMatrix(t *testing.T) {
	t.Parallel()
	tn := startWSNode(t, func(cfg *node.Config) { cfg.IngestAllow = nil })
	tokens := map[string]string{
		"super":    tn.root,
		"reseller": tn.newToken(fsm.RoleReseller, "R1", "", ""),
		"domain":   tn.newToken(fsm.RoleDomain, "", "D1", ""),
		"user":     tn.newToken(fsm.RoleUser, "", "D1", "U1"),
		"ingest":   tn.newToken(fsm.RoleIngest, "", "", ""),
		"node":     tn.nodeToken(),
		"join":     tn.n.JoinToken(), // the join token, which is no API token
		"none":     "",
	}
	roles := []string{"super", "reseller", "domain", "user", "ingest", "node", "join", "none"}
	// {in} is a subscription in the scope of every admin role (reseller
	// R1, domain D1, user U1), {out} one in none but super's; {fresh-in}
	// and {fresh-out} are new ones for each request (deletes).
	inScope := fields{"reseller": "R1", "domain": "D1", "user": "U1"}
	outScope := fields{"reseller": "R2", "domain": "D2", "user": "U2"}
	in := tn.createSub(tn.root, sub(inScope)).ID
	out := tn.createSub(tn.root, sub(outScope)).ID
	expand := func(path string) string {
		path = strings.ReplaceAll(path, "{in}", in)
		path = strings.ReplaceAll(path, "{out}", out)
		if strings.Contains(path, "{fresh-in}") {
			path = strings.ReplaceAll(path, "{fresh-in}", tn.createSub(tn.root, sub(inScope)).ID)
		}
		if strings.Contains(path, "{fresh-out}") {
			path = strings.ReplaceAll(path, "{fresh-out}", tn.createSub(tn.root, sub(outScope)).ID)
		}
		return path
	}
	const (
		ok       = http.StatusOK
		created  = http.StatusCreated
		accepted = http.StatusAccepted
		noBody   = http.StatusNoContent
		bad      = http.StatusBadRequest
		unauth   = http.StatusUnauthorized
		forbid   = http.StatusForbidden
		upgrade  = http.StatusUpgradeRequired
		notFound = http.StatusNotFound
	)
	newSub := func() any { return sub(nil) }
	newOutSub := func() any { return sub(outScope) }
	replayFrom := map[string]string{"from": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}
	event := rawBody(`{"model":"call","domain":"D1"}`)
	tests := []struct {
		method, path string
		body         any // a func() any is called for each request
		want         []int
	}{
		// want: super, reseller, domain, user, ingest, node, join, none
		// Subscriptions, /v1.
		{http.MethodGet, "/v1/subscriptions", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions", newSub, []int{created, created, created, created, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions", newOutSub, []int{created, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/v1/subscriptions/{in}", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/v1/subscriptions/{out}", nil, []int{ok, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodPatch, "/v1/subscriptions/{in}", fields{"batch-max": 50}, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodPatch, "/v1/subscriptions/{out}", fields{"batch-max": 50}, []int{ok, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions/{in}/pause", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions/{out}/pause", nil, []int{ok, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions/{in}/resume", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions/{out}/resume", nil, []int{ok, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions/{in}/replay", replayFrom, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions/{out}/replay", replayFrom, []int{ok, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/v1/subscriptions/{in}/secret", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/v1/subscriptions/{out}/secret", nil, []int{ok, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions/{in}/secret/rotate", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/subscriptions/{out}/secret/rotate", nil, []int{ok, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodDelete, "/v1/subscriptions/{fresh-in}", nil, []int{noBody, noBody, noBody, noBody, forbid, forbid, unauth, unauth}},
		{http.MethodDelete, "/v1/subscriptions/{fresh-out}", nil, []int{noBody, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		// Subscriptions, NetSapiens paths.
		{http.MethodGet, "/ns-api/v2/subscriptions", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/ns-api/v2/subscriptions", newSub, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/ns-api/v2/subscriptions/{in}", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/ns-api/v2/subscriptions/{out}", nil, []int{ok, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodPut, "/ns-api/v2/subscriptions/{out}", fields{"batch-max": 60}, []int{accepted, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/ns-api/v2/domains/D1/subscriptions", nil, []int{ok, ok, ok, ok, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/ns-api/v2/domains/D2/subscriptions", nil, []int{ok, ok, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodDelete, "/ns-api/v2/subscriptions/{fresh-out}", nil, []int{accepted, notFound, notFound, notFound, forbid, forbid, unauth, unauth}},
		// Tokens and cluster: super only.
		{http.MethodGet, "/v1/cluster", nil, []int{ok, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/v1/tokens", nil, []int{ok, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/tokens", map[string]string{"role": "ingest"}, []int{created, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodDelete, "/v1/tokens/tok_nonexistent", nil, []int{notFound, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/cluster/nodes/nobody/drain", nil, []int{notFound, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/cluster/nodes/nobody/undrain", nil, []int{notFound, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		// Only the join token may join; the empty body is then a 400.
		{http.MethodPost, "/v1/cluster/join", map[string]string{}, []int{unauth, unauth, unauth, unauth, unauth, unauth, bad, unauth}},
		// Node-to-node: only the node token (its requests here are malformed: 400).
		{http.MethodPost, "/internal/v1/apply", rawBody("x"), []int{forbid, forbid, forbid, forbid, forbid, bad, unauth, unauth}},
		{http.MethodGet, "/internal/v1/log", nil, []int{forbid, forbid, forbid, forbid, forbid, ok, unauth, unauth}}, // a stream: status only
		// The websocket: admin roles get as far as the missing upgrade.
		{http.MethodGet, "/v1/events/ws", nil, []int{upgrade, upgrade, upgrade, upgrade, forbid, forbid, unauth, unauth}},
		// Ingest from an address outside ingest-allow: ingest and super.
		{http.MethodPost, "/v1/events", event, []int{accepted, forbid, forbid, forbid, accepted, forbid, unauth, unauth}},
		// Local endpoints with no trusted address: super only.
		{http.MethodGet, "/metrics", nil, []int{ok, forbid, forbid, forbid, forbid, forbid, forbid, forbid}},
		{http.MethodGet, "/debug/pprof/", nil, []int{ok, forbid, forbid, forbid, forbid, forbid, forbid, forbid}},
		// Loopback only, whatever the token.
		{http.MethodGet, "/v1/cluster/self", nil, []int{ok, ok, ok, ok, ok, ok, ok, ok}},
		{http.MethodGet, "/healthz", nil, []int{ok, ok, ok, ok, ok, ok, ok, ok}},
	}
	for _, tc := range tests {
		if len(tc.want) != len(roles) {
			t.Fatalf("%s %s: %d outcomes for %d roles", tc.method, tc.path, len(tc.want), len(roles))
		}
		for i, role := range roles {
			path := expand(tc.path)
			body := tc.body
			if f, ok := body.(func() any); ok {
				body = f()
			}
			var code int
			var got []byte
			if tc.path == "/internal/v1/log" {
				code = statusOnly(t, tn.base+path, tokens[role])
			} else {
				r := tn.do(tc.method, path, tokens[role], body)
				code, got = r.Code, r.Body
			}
			if code != tc.want[i] {
				t.Errorf("%s %s as %s: %d %s, want %d", tc.method, tc.path, role, code, got, tc.want[i])
			}
		}
	}
	// The ingest token in ?authkey= (Enswitch) counts like the header.
	for _, c := range []struct {
		token string
		want  int
	}{{tokens["ingest"], accepted}, {tokens["domain"], forbid}, {"wrong", unauth}} {
		if r := tn.do(http.MethodPost, "/v1/events?authkey="+url.QueryEscape(c.token), "", event); r.Code != c.want {
			t.Errorf("ingest with ?authkey=: %d %s, want %d", r.Code, r.Body, c.want)
		}
	}
}

// statusOnly GETs url and returns the status without reading the body (a
// stream that never ends).
func statusOnly(t *testing.T, url, token string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
