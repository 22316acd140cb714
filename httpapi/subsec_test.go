package httpapi_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/node"
)

// The subscription-side defects of issue 11: each test here failed on main
// before the fix.

// refusedHosts are post-url hosts the default guard refuses at create,
// in every spelling a resolver or client may read as an address.
var refusedHosts = []string{
	"169.254.169.254", "169.254.169.254.", "169.254.1.1:8080", "[fe80::1]", "[fe80::1%25eth0]",
	"[fd00:ec2::254]", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "0xA9FEA9FE", "0xa9fea9fe.",
	"2852039166", "0251.0376.0251.0376", "169.254.43518", "user:pw@169.254.169.254",
}

func TestPostURLGuardAtCreate(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	domain := tn.newToken(fsm.RoleDomain, "", "D1", "")
	okSub := tn.createSub(domain, sub(nil))
	for _, host := range refusedHosts {
		u := "http://" + host + "/hook"
		wantErr(t, "v1 create "+u, tn.do(http.MethodPost, "/v1/subscriptions", domain, sub(fields{"post-url": u})), http.StatusBadRequest, "post-url")
		wantErr(t, "ns create "+u, tn.do(http.MethodPost, "/ns-api/v2/subscriptions", domain, sub(fields{"post-url": u})), http.StatusBadRequest, "post-url")
		wantErr(t, "PATCH "+u, tn.do(http.MethodPatch, "/v1/subscriptions/"+okSub.ID, domain, fields{"post-url": u}), http.StatusBadRequest, "post-url")
		wantErr(t, "PUT "+u, tn.do(http.MethodPut, "/v1/subscriptions/"+okSub.ID, domain, sub(fields{"post-url": u})), http.StatusBadRequest, "post-url")
	}
	if got := tn.getSub(okSub.ID).PostURL; got != okSub.PostURL {
		t.Fatalf("a refused update changed post-url to %q", got)
	}
	// Names, loopback, private ranges: allowed (names are checked at
	// connect time).
	for _, u := range []string{"http://crm.example.com/x", "http://crm.example.com./x", "http://10.1.2.3/x", "http://[::1]:9/x", "https://192.168.1.10:8443/x"} {
		tn.createSub(domain, sub(fields{"post-url": u}))
	}
}

func TestPostURLGuardSettings(t *testing.T) {
	t.Parallel()
	tn := startWSNode(t, func(cfg *node.Config) {
		cfg.PostURLAllow = node.MustParseCIDRs("169.254.10.0/24")
		cfg.PostURLDeny = node.MustParseCIDRs("10.0.0.0/8")
	})
	tn.createSub(tn.root, sub(fields{"post-url": "http://169.254.10.5/hook"}))
	tn.createSub(tn.root, sub(fields{"post-url": "http://0xA9FE0A06/hook"}))
	wantErr(t, "denied by post-url-deny", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(fields{"post-url": "http://10.9.9.9/hook"})), http.StatusBadRequest, "post-url")
	wantErr(t, "denied by post-url-deny, octal", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(fields{"post-url": "http://012.1.1.1/hook"})), http.StatusBadRequest, "post-url")
	wantErr(t, "metadata still denied", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(fields{"post-url": "http://169.254.169.254/"})), http.StatusBadRequest, "post-url")
}

// secretN returns a whsec_ secret of n key bytes.
func secretN(n int) string { return secretOf(strings.Repeat("k", n)) }

func TestSecretRules(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	s := tn.createSub(tn.root, sub(nil))
	for name, body := range map[string]any{
		"empty":         fields{"secret": ""},
		"null":          rawBody(`{"secret":null}`),
		"16 bytes":      fields{"secret": secretN(16)},
		"23 bytes":      fields{"secret": secretN(23)},
		"65 bytes":      fields{"secret": secretN(65)},
		"no prefix":     fields{"secret": base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))},
		"not base64":    fields{"secret": "whsec_!!!!"},
		"not a string":  fields{"secret": 42},
		"prefix only":   fields{"secret": "whsec_"},
		"white space":   fields{"secret": " "},
		"newline after": fields{"secret": secretN(32) + "\n"},
	} {
		// The rotation body is {"secret":...}; the others carry a whole
		// subscription.
		var subBody any = body
		if f, ok := body.(fields); ok {
			subBody = sub(f)
		} else {
			subBody = rawBody(`{"model":"call","post-url":"` + nextHookURL() + `","secret":null}`)
		}
		wantErr(t, "create, "+name, tn.do(http.MethodPost, "/v1/subscriptions", tn.root, subBody), http.StatusBadRequest, "secret")
		wantErr(t, "PATCH, "+name, tn.do(http.MethodPatch, "/v1/subscriptions/"+s.ID, tn.root, body), http.StatusBadRequest, "secret")
		wantErr(t, "ns PUT, "+name, tn.do(http.MethodPut, "/ns-api/v2/subscriptions/"+s.ID, tn.root, body), http.StatusBadRequest, "secret")
		wantErr(t, "rotate, "+name, tn.do(http.MethodPost, "/v1/subscriptions/"+s.ID+"/secret/rotate", tn.root, body), http.StatusBadRequest, "secret")
	}
	if got := tn.secret(tn.root, s.ID); got != s.Secret {
		t.Fatal("a refused change changed the secret")
	}
	for _, n := range []int{24, 64} {
		tn.createSub(tn.root, sub(fields{"secret": secretN(n)}))
	}
}

// prevSecret reads the replicated previous secret and its end.
func (tn *testNode) prevSecret(id string) (string, int64) {
	var prev string
	var until int64
	tn.n.Read(func(st *fsm.State) {
		if s, ok := st.Subs[id]; ok {
			prev, until = s.PrevSecret, s.PrevSecretUntilMs
		}
	})
	return prev, until
}

func TestRotateSecret(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	user := tn.newToken(fsm.RoleUser, "", "D1", "U1")
	other := tn.newToken(fsm.RoleDomain, "", "D2", "")
	s := tn.createSub(user, sub(nil))
	path := "/v1/subscriptions/" + s.ID + "/secret/rotate"

	// Generated when no secret is given (no body, or {}).
	before := time.Now().Truncate(time.Millisecond)
	for i, body := range []any{nil, fields{}} {
		old := tn.secret(tn.root, s.ID)
		r := tn.do(http.MethodPost, path, user, body)
		want(t, "rotate", r, http.StatusOK)
		got := decode[httpapi.RotateResponse](t, "rotate", r)
		if got.Secret == "" || got.Secret == old || tn.secret(tn.root, s.ID) != got.Secret {
			t.Fatalf("rotation %d: answer %q, stored %q, old %q", i, got.Secret, tn.secret(tn.root, s.ID), old)
		}
		prev, until := tn.prevSecret(s.ID)
		if prev != old {
			t.Fatalf("rotation %d: previous secret is not the old one", i)
		}
		// secret-overlap defaults to 24h; the proposer stamps it.
		if d := time.UnixMilli(until).Sub(before); d < 24*time.Hour || d > 24*time.Hour+time.Minute {
			t.Fatalf("rotation %d: overlap ends %s after the request, want 24h", i, d)
		}
		if until, err := time.Parse(time.RFC3339, got.PreviousValidUntil); err != nil || until.Before(before.Add(23*time.Hour)) {
			t.Fatalf("rotation %d: previous-secret-valid-until %q", i, got.PreviousValidUntil)
		}
	}
	// A given secret is used.
	mine := secretN(40)
	r := tn.do(http.MethodPost, path, user, fields{"secret": mine})
	want(t, "rotate to a given secret", r, http.StatusOK)
	if got := decode[httpapi.RotateResponse](t, "rotate", r); got.Secret != mine || tn.secret(tn.root, s.ID) != mine {
		t.Fatalf("given secret not used: %q", got.Secret)
	}
	wantErr(t, "rotate to the current secret", tn.do(http.MethodPost, path, user, fields{"secret": mine}), http.StatusBadRequest, "secret")
	wantErr(t, "unknown field", tn.do(http.MethodPost, path, user, fields{"secrett": mine}), http.StatusBadRequest, "secrett")
	wantErr(t, "out of scope", tn.do(http.MethodPost, path, other, nil), http.StatusNotFound, "id")
	wantErr(t, "no such subscription", tn.do(http.MethodPost, "/v1/subscriptions/nope/secret/rotate", user, nil), http.StatusNotFound, "id")
	// An update that changes the secret is a rotation too.
	next := secretN(32)
	want(t, "PATCH secret", tn.do(http.MethodPatch, "/v1/subscriptions/"+s.ID, user, fields{"secret": next}), http.StatusOK)
	if prev, _ := tn.prevSecret(s.ID); prev != mine {
		t.Fatal("PATCH of the secret did not keep the previous one")
	}
	// The secret is never in a view.
	if strings.Contains(string(tn.do(http.MethodGet, "/v1/subscriptions/"+s.ID, user, nil).Body), "whsec_") {
		t.Fatal("GET shows a secret")
	}
}

func TestFilterLimits(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	filters := func(n, size int) []map[string]string {
		out := make([]map[string]string, n)
		for i := range out {
			out[i] = map[string]string{"property": "p", "value": strings.Repeat("v", size-1)}
		}
		return out
	}
	tn.createSub(tn.root, sub(fields{"filters": filters(100, 1024)}))
	wantErr(t, "101 filters", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(fields{"filters": filters(101, 8)})), http.StatusBadRequest, "filters")
	wantErr(t, "a 1025-byte filter", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(fields{"filters": filters(1, 1025)})), http.StatusBadRequest, "filters")
	wantErr(t, "a 900 KB filter", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(fields{"filters": filters(1, 900_000)})), http.StatusBadRequest, "filters")
}

// TestControlCharactersRefused: every string a terminal or a log shows.
func TestControlCharactersRefused(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	s := tn.createSub(tn.root, sub(nil))
	bad := map[string]string{
		"ESC (clear screen)": "x\x1b[2Jy", "NUL": "x\x00y", "tab": "x\ty", "newline": "x\ny", "DEL": "x\x7fy",
		"C1 CSI": "x\u009b2Jy", "NEL": "x\u0085y", "line separator": "x\u2028y", "paragraph separator": "x\u2029y",
		"RLO": "x\u202ey", "LRI": "x\u2066y", "RLM": "x\u200fy", "ALM": "x\u061cy",
	}
	for name, v := range bad {
		for _, tc := range []struct {
			field string
			body  fields
		}{
			{"reseller", fields{"reseller": v}},
			{"domain", fields{"domain": v}},
			{"user", fields{"user": v}},
			{"post-url", fields{"post-url": "http://127.0.0.1:9/" + v}},
			{"filters", fields{"filters": []map[string]string{{"property": "p", "value": v}}}},
			{"filters", fields{"filters": []map[string]string{{"property": v, "value": "x"}}}},
			{"model", fields{"model": v}},
			{"id", fields{"id": v}},
			{"preferred-server", fields{"preferred-server": v}},
		} {
			what := name + " in " + tc.field
			wantErr(t, "create, "+what, tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(tc.body)), http.StatusBadRequest, tc.field)
			if tc.field != "id" {
				wantErr(t, "PATCH, "+what, tn.do(http.MethodPatch, "/v1/subscriptions/"+s.ID, tn.root, tc.body), http.StatusBadRequest, tc.field)
			}
		}
		for _, tc := range []struct {
			field string
			req   httpapi.TokenRequest
		}{
			{"name", httpapi.TokenRequest{Role: fsm.RoleIngest, Name: v}},
			{"domain", httpapi.TokenRequest{Role: fsm.RoleDomain, Domain: v}},
			{"reseller", httpapi.TokenRequest{Role: fsm.RoleReseller, Reseller: v}},
			{"user", httpapi.TokenRequest{Role: fsm.RoleUser, Domain: "D1", User: v}},
		} {
			wantErr(t, "token, "+name+" in "+tc.field, tn.do(http.MethodPost, "/v1/tokens", tn.root, tc.req), http.StatusBadRequest, tc.field)
		}
	}
	// Printable non-ASCII text is fine.
	tn.createSub(tn.root, sub(fields{"domain": "zoë.example", "filters": []map[string]string{{"property": "name", "value": "Zoë ☃ 日本"}}}))
}

// TestStrictJSONBodies: duplicate keys and invalid UTF-8 are refused on
// every admin body (last-wins and U+FFFD were main's behaviour).
func TestStrictJSONBodies(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	s := tn.createSub(tn.root, sub(nil))
	u := nextHookURL()
	for _, tc := range []struct {
		method, path, token, body string
	}{
		{http.MethodPost, "/v1/subscriptions", tn.root, `{"model":"call","post-url":"` + u + `","domain":"D1","domain":"D2"}`},
		{http.MethodPost, "/v1/subscriptions", tn.root, `{"model":"call","post-url":"` + u + `","filters":[{"property":"a","value":"1","value":"2"}]}`},
		{http.MethodPost, "/v1/subscriptions", tn.root, `{"model":"call","post-url":"` + u + `","d\u006fmain":"D1","domain":"D2"}`},
		{http.MethodPost, "/v1/subscriptions", tn.root, "{\"model\":\"call\",\"post-url\":\"" + u + "\",\"domain\":\"D\xff\"}"},
		{http.MethodPost, "/v1/subscriptions", tn.root, `{"model":"call","post-url":"` + u + `","domain":"D\ud800"}`},
		{http.MethodPost, "/ns-api/v2/subscriptions", tn.root, `{"model":"call","post-url":"` + u + `","user":"a","user":"b"}`},
		{http.MethodPatch, "/v1/subscriptions/" + s.ID, tn.root, `{"domain":"a","domain":"b"}`},
		{http.MethodPut, "/ns-api/v2/subscriptions/" + s.ID, tn.root, "{\"domain\":\"\xc3\"}"},
		{http.MethodPost, "/v1/tokens", tn.root, `{"role":"super","role":"ingest"}`},
		{http.MethodPost, "/v1/tokens", tn.root, "{\"role\":\"ingest\",\"name\":\"\xfe\"}"},
		{http.MethodPost, "/v1/subscriptions/" + s.ID + "/replay", tn.root, `{"from":"2020-01-01T00:00:00Z","from":"2021-01-01T00:00:00Z"}`},
		{http.MethodPost, "/v1/subscriptions/" + s.ID + "/secret/rotate", tn.root, `{"secret":"` + secretN(32) + `","secret":"` + secretN(33) + `"}`},
		{http.MethodPost, "/v1/cluster/join", tn.n.JoinToken(), `{"id":"n9","id":"n8","raft-addr":"127.0.0.1:1","http-addr":"127.0.0.1:2","token-hash":"` + strings.Repeat("a", 64) + `"}`},
	} {
		r := tn.do(tc.method, tc.path, tc.token, rawBody(tc.body))
		if r.Code != http.StatusBadRequest {
			t.Errorf("%s %s %q: %d %s, want 400", tc.method, tc.path, tc.body, r.Code, r.Body)
		}
	}
	if got := tn.getSub(s.ID); got.Domain != "*" {
		t.Fatalf("a refused body changed the subscription: domain %q", got.Domain)
	}
	// U+FFFD the client wrote itself is text like any other.
	tn.createSub(tn.root, rawBody(`{"model":"call","post-url":"`+nextHookURL()+`","domain":"D\ufffd"}`))
}

func TestMaxSubsPerToken(t *testing.T) {
	t.Parallel()
	tn := startWSNode(t, func(cfg *node.Config) { cfg.MaxSubsPerToken = 2 })
	a := tn.newToken(fsm.RoleDomain, "", "D1", "")
	b := tn.newToken(fsm.RoleDomain, "", "D1", "")
	first := tn.createSub(a, sub(nil))
	tn.createSub(a, sub(nil))
	e := wantErr(t, "third by one token", tn.do(http.MethodPost, "/v1/subscriptions", a, sub(nil)), http.StatusForbidden, "")
	if !strings.Contains(e.Error, "max-subs-per-token") {
		t.Fatalf("message %q does not name the setting", e.Error)
	}
	wantErr(t, "third by one token, ns path", tn.do(http.MethodPost, "/ns-api/v2/subscriptions", a, sub(nil)), http.StatusForbidden, "")
	tn.createSub(b, sub(nil)) // counted per token
	for range 3 {
		tn.createSub(tn.root, sub(nil)) // super tokens are not limited
	}
	want(t, "delete", tn.do(http.MethodDelete, "/v1/subscriptions/"+first.ID, a, nil), http.StatusNoContent)
	tn.createSub(a, sub(nil))
}
