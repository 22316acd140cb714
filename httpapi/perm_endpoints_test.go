package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
)

// TestEndpointRoleMatrix: every role (and no token) against the cluster,
// token, join, internal, websocket and local endpoints, in one table. The
// caller is on loopback, so the address-based allow lists (ingest-allow,
// ws-allow, /metrics, /v1/cluster/self) let it in and the token decides.
// Subscription scopes are TestPermissionMatrix's.
func TestEndpointRoleMatrix(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
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
	const (
		ok       = http.StatusOK
		created  = http.StatusCreated
		bad      = http.StatusBadRequest
		unauth   = http.StatusUnauthorized
		forbid   = http.StatusForbidden
		upgrade  = http.StatusUpgradeRequired
		notFound = http.StatusNotFound
	)
	tests := []struct {
		method, path string
		body         any
		want         []int // per role, in the order of roles
	}{
		// want: super, reseller, domain, user, ingest, node, join, none
		{http.MethodGet, "/v1/cluster", nil, []int{ok, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodGet, "/v1/tokens", nil, []int{ok, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/tokens", map[string]string{"role": "ingest"}, []int{created, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodDelete, "/v1/tokens/tok_nonexistent", nil, []int{notFound, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		{http.MethodPost, "/v1/cluster/nodes/nobody/drain", nil, []int{notFound, forbid, forbid, forbid, forbid, forbid, unauth, unauth}},
		// Only the join token may join; the empty body is then a 400.
		{http.MethodPost, "/v1/cluster/join", map[string]string{}, []int{unauth, unauth, unauth, unauth, unauth, unauth, bad, unauth}},
		// Node-to-node: only the node token (its requests here are malformed: 400).
		{http.MethodPost, "/internal/v1/apply", rawBody("x"), []int{forbid, forbid, forbid, forbid, forbid, bad, unauth, unauth}},
		{http.MethodGet, "/internal/v1/log", nil, []int{forbid, forbid, forbid, forbid, forbid, ok, unauth, unauth}}, // a stream: status only
		// The websocket: admin roles get as far as the missing upgrade.
		{http.MethodGet, "/v1/events/ws", nil, []int{upgrade, upgrade, upgrade, upgrade, forbid, forbid, unauth, unauth}},
		// Loopback callers: allowed whatever the token.
		{http.MethodGet, "/metrics", nil, []int{ok, ok, ok, ok, ok, ok, ok, ok}},
		{http.MethodGet, "/v1/cluster/self", nil, []int{ok, ok, ok, ok, ok, ok, ok, ok}},
		{http.MethodGet, "/healthz", nil, []int{ok, ok, ok, ok, ok, ok, ok, ok}},
	}
	for _, tc := range tests {
		if len(tc.want) != len(roles) {
			t.Fatalf("%s %s: %d outcomes for %d roles", tc.method, tc.path, len(tc.want), len(roles))
		}
		for i, role := range roles {
			var code int
			var body []byte
			if tc.path == "/internal/v1/log" {
				code = statusOnly(t, tn.base+tc.path, tokens[role])
			} else {
				r := tn.do(tc.method, tc.path, tokens[role], tc.body)
				code, body = r.Code, r.Body
			}
			if code != tc.want[i] {
				t.Errorf("%s %s as %s: %d %s, want %d", tc.method, tc.path, role, code, body, tc.want[i])
			}
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
