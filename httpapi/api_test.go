package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/node"
)

var secretPattern = regexp.MustCompile(`^whsec_[A-Za-z0-9+/]+={0,2}$`)

// wantSecret fails unless s is a whsec_<base64> secret of a 32-byte key.
func wantSecret(t testing.TB, s string) {
	t.Helper()
	if !secretPattern.MatchString(s) {
		t.Fatalf("secret %q does not look like whsec_<base64>", s)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	if err != nil || len(key) != 32 {
		t.Fatalf("secret %q: key of %d bytes (err %v), want 32", s, len(key), err)
	}
}

// secretOf returns a valid whsec_ secret over the given key.
func secretOf(key string) string { return "whsec_" + base64.StdEncoding.EncodeToString([]byte(key)) }

var testSecret = secretOf("0123456789abcdefghijklmn") // a 24-byte key

// defaultView is what a subscription created by the root token with only
// id, model and post-url looks like (creation time left out).
func defaultView(tn *testNode, id, model, postURL string) httpapi.SubView {
	return httpapi.SubView{
		ID: id, Model: model, PostURL: postURL, Reseller: "*", Domain: "*", User: "*",
		// A geo "yes" subscription is unassigned until the leader's
		// reconciler assigns it (TestAssignedAfterCreate).
		Filters: []fsm.Filter{}, GeoSupport: "yes", CurrentActiveServer: "", HomeServer: tn.n.ID(),
		Encoding: "json-array", BatchMax: httpapi.DefaultBatchMax, TimeoutMs: httpapi.DefaultTimeoutMs,
		Status: fsm.StatusPending,
	}
}

// sameView fails unless got equals want, ignoring the creation time and
// the secret.
func sameView(t testing.TB, what string, got, want httpapi.SubView) {
	t.Helper()
	got.Created, want.Created = "", ""
	got.Secret, want.Secret = "", ""
	// The reconciler assigns a geo "yes" subscription asynchronously;
	// TestAssignedAfterCreate checks the assignment.
	if want.GeoSupport == "yes" {
		got.CurrentActiveServer, want.CurrentActiveServer = "", ""
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		r := tn.do(http.MethodGet, path, "", nil)
		want(t, "GET "+path, r, http.StatusOK)
		body := decode[map[string]string](t, "GET "+path, r)
		if body["node"] != tn.n.ID() {
			t.Fatalf("GET %s: node = %q, want %q", path, body["node"], tn.n.ID())
		}
	}
	r := tn.do(http.MethodGet, "/v1/cluster", tn.root, nil)
	want(t, "GET /v1/cluster", r, http.StatusOK)
	cv := decode[httpapi.ClusterView](t, "GET /v1/cluster", r)
	if cv.Leader != tn.n.ID() || len(cv.Nodes) != 1 || cv.Nodes[0].ID != tn.n.ID() || cv.Nodes[0].RaftRole != "leader" {
		t.Fatalf("GET /v1/cluster = %+v, want this node alone, leading", cv)
	}
	if cv.Nodes[0].HTTPAddr != tn.n.HTTPAddr() {
		t.Fatalf("GET /v1/cluster: http-addr = %q, want %q", cv.Nodes[0].HTTPAddr, tn.n.HTTPAddr())
	}
}

func TestRoutingErrors(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	dom := tn.newToken(fsm.RoleDomain, "", "D1", "")
	tests := []struct {
		method, path, token string
		code                int
	}{
		{http.MethodGet, "/nope", "", http.StatusNotFound},
		{http.MethodGet, "/v1/nope", "", http.StatusNotFound},
		{http.MethodGet, "/v1/nope", tn.root, http.StatusNotFound},
		// Not 403: an unknown route is unknown for every role.
		{http.MethodGet, "/v1/nope", dom, http.StatusNotFound},
		{http.MethodGet, "/v1/subscriptions/x/nope", tn.root, http.StatusNotFound},
		{http.MethodPost, "/healthz", "", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/readyz", "", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/v1/subscriptions", tn.root, http.StatusMethodNotAllowed},
		{http.MethodDelete, "/v1/subscriptions", dom, http.StatusMethodNotAllowed},
		{http.MethodPut, "/v1/subscriptions", tn.root, http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/subscriptions/x", tn.root, http.StatusMethodNotAllowed},
		{http.MethodGet, "/v1/subscriptions/x/pause", tn.root, http.StatusMethodNotAllowed},
		{http.MethodPut, "/v1/subscriptions/x/secret", tn.root, http.StatusMethodNotAllowed},
		{http.MethodPut, "/v1/tokens", tn.root, http.StatusMethodNotAllowed},
		{http.MethodGet, "/v1/tokens/x", tn.root, http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/cluster", tn.root, http.StatusMethodNotAllowed},
		{http.MethodGet, "/internal/v1/apply", "", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		what := fmt.Sprintf("%s %s (token %v)", tt.method, tt.path, tt.token != "")
		r := tn.do(tt.method, tt.path, tt.token, nil)
		wantErr(t, what, r, tt.code, "")
		if tt.code == http.StatusMethodNotAllowed && r.Header.Get("Allow") == "" {
			t.Errorf("%s: 405 without an Allow header", what)
		}
	}
}

func TestCreateSubscription(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	start := time.Now().Add(-time.Second)

	// A minimal body: the id and the secret are generated, defaults filled.
	body := sub(nil)
	v := tn.createSub(tn.root, body)
	if !strings.HasPrefix(v.ID, "sub_") || len(v.ID) > 64 {
		t.Fatalf("generated id %q: want sub_<hex>, at most 64 characters", v.ID)
	}
	wantSecret(t, v.Secret)
	sameView(t, "created with defaults", v, defaultView(tn, v.ID, "call", body["post-url"].(string)))
	created, err := time.Parse(time.RFC3339Nano, v.Created)
	if err != nil || created.Before(start) || created.After(time.Now().Add(time.Second)) {
		t.Fatalf("subscription-creation-datetime %q (err %v) is not about now", v.Created, err)
	}
	got := tn.getSub(v.ID)
	sameView(t, "GET after create", got, v)
	if got.Secret != "" || got.Created != v.Created {
		t.Fatalf("GET: secret %q (want none), created %q (want %q)", got.Secret, got.Created, v.Created)
	}

	// Two generated ids differ, and so do their secrets.
	v2 := tn.createSub(tn.root, sub(nil))
	if v2.ID == v.ID || v2.Secret == v.Secret {
		t.Fatalf("two creates gave id %q/%q and secrets equal=%v", v.ID, v2.ID, v2.Secret == v.Secret)
	}

	// Every writable field given: all are kept, the given id and secret too.
	expires := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	full := tn.createSub(tn.root, fields{
		"id": "Full_sub-1", "model": "cdr", "post-url": "https://example.com:8443/hooks?x=1",
		"reseller": "R1", "domain": "D1", "user": "U1",
		"filters":                  []map[string]string{{"property": "type", "value": "login"}, {"property": "type", "value": "*"}},
		"subscription-geo-support": "no", "preferred-server": tn.n.ID(), "encoding": "json",
		"batch-max": 1000, "timeout-ms": 100, "secret": testSecret,
		"subscription-expires-datetime": expires.Format(time.RFC3339),
	})
	wantFull := httpapi.SubView{
		ID: "Full_sub-1", Model: "cdr", PostURL: "https://example.com:8443/hooks?x=1",
		Reseller: "R1", Domain: "D1", User: "U1",
		Filters:    []fsm.Filter{{Property: "type", Value: "login"}, {Property: "type", Value: "*"}},
		GeoSupport: "no", PreferredServer: tn.n.ID(), CurrentActiveServer: tn.n.ID(), HomeServer: tn.n.ID(),
		Encoding: "json", BatchMax: 1000, TimeoutMs: 100,
		Expires: expires.Format(time.RFC3339Nano), Status: fsm.StatusPending,
	}
	sameView(t, "created with every field", full, wantFull)
	if full.Secret != testSecret {
		t.Fatalf("given secret not kept: got %q", full.Secret)
	}
	sameView(t, "GET of the full subscription", tn.getSub("Full_sub-1"), wantFull)

	// batch-max 0 and timeout-ms 0 mean the defaults; form encoding and
	// the other boundaries are accepted.
	z := tn.createSub(tn.root, sub(fields{"batch-max": 0, "timeout-ms": 0, "encoding": "form"}))
	if z.BatchMax != httpapi.DefaultBatchMax || z.TimeoutMs != httpapi.DefaultTimeoutMs || z.Encoding != "form" {
		t.Fatalf("batch-max 0 / timeout-ms 0: got batch-max %d timeout-ms %d encoding %q, want %d %d form",
			z.BatchMax, z.TimeoutMs, z.Encoding, httpapi.DefaultBatchMax, httpapi.DefaultTimeoutMs)
	}
	b := tn.createSub(tn.root, sub(fields{"id": strings.Repeat("a", 64), "model": "a" + strings.Repeat("b", 63),
		"batch-max": 1, "timeout-ms": httpapi.MaxTimeoutMs, "post-url": "http://localhost:65535"}))
	if b.BatchMax != 1 || b.TimeoutMs != httpapi.MaxTimeoutMs {
		t.Fatalf("boundaries: got %+v", b)
	}

	// An existing id: 409 naming id, and the existing one is untouched.
	r := tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(fields{"id": "Full_sub-1", "model": "call"}))
	wantErr(t, "create with an existing id", r, http.StatusConflict, "id")
	sameView(t, "after the 409", tn.getSub("Full_sub-1"), wantFull)
	r = tn.do(http.MethodGet, "/v1/subscriptions/Full_sub-1/secret", tn.root, nil)
	want(t, "GET secret after the 409", r, http.StatusOK)
	if s := decode[map[string]string](t, "GET secret", r)["secret"]; s != testSecret {
		t.Fatalf("secret changed by a rejected create: %q", s)
	}

	// Neither the list nor GET ever carries a secret.
	r = tn.do(http.MethodGet, "/v1/subscriptions", tn.root, nil)
	want(t, "GET /v1/subscriptions", r, http.StatusOK)
	for _, s := range []string{v.Secret, v2.Secret, testSecret, `"secret"`} {
		if bytes.Contains(r.Body, []byte(s)) {
			t.Fatalf("the list contains %q: %s", s, r.Body)
		}
	}
	wantIDs(t, "list", tn.listIDs(tn.root, ""), sortedIDs(v.ID, v2.ID, "Full_sub-1", z.ID, b.ID)...)
}

// sortedIDs is ids in the list's order (by id).
func sortedIDs(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestCreateSubscriptionBadInput(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	tn.createSub(tn.root, sub(fields{"id": "existing"}))
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name  string
		body  any
		field string
	}{
		{"unknown field", sub(fields{"colour": "red"}), "colour"},
		{"field names are case-sensitive", fields{"Model": "call", "post-url": hookURL}, "Model"},
		{"malformed JSON", rawBody(`{"model":"call",`), ""},
		{"empty body", rawBody(``), ""},
		{"array", rawBody(`[{"model":"call","post-url":"http://127.0.0.1:9/"}]`), ""},
		{"string", rawBody(`"call"`), ""},
		{"number", rawBody(`42`), ""},
		{"null", rawBody(`null`), ""},
		{"two objects", rawBody(`{"model":"call","post-url":"http://127.0.0.1:9/"} {"model":"cdr"}`), ""},
		{"a stray ]", rawBody(`{"model":"call","post-url":"http://127.0.0.1:9/"}]`), ""},
		{"a stray }", rawBody(`{"model":"call","post-url":"http://127.0.0.1:9/"}}`), ""},
		{"missing model", sub(fields{"model": nil}), "model"},
		{"empty model", sub(fields{"model": ""}), "model"},
		{"model not a string", sub(fields{"model": 5}), "model"},
		{"model upper case", sub(fields{"model": "Call"}), "model"},
		{"model starts with a digit", sub(fields{"model": "1abc"}), "model"},
		{"model of 65 characters", sub(fields{"model": "a" + strings.Repeat("b", 64)}), "model"},
		{"model with a dash", sub(fields{"model": "call-x"}), "model"},
		{"missing post-url", sub(fields{"post-url": nil}), "post-url"},
		{"empty post-url", sub(fields{"post-url": ""}), "post-url"},
		{"ftp post-url", sub(fields{"post-url": "ftp://example.com/x"}), "post-url"},
		{"post-url not a url", sub(fields{"post-url": "not a url"}), "post-url"},
		{"post-url without host", sub(fields{"post-url": "http://"}), "post-url"},
		{"post-url port 70000", sub(fields{"post-url": "http://example.com:70000/x"}), "post-url"},
		{"post-url port 0", sub(fields{"post-url": "http://example.com:0/x"}), "post-url"},
		{"post-url unparsable", sub(fields{"post-url": "http://[::1/x"}), "post-url"},
		{"post-url too long", sub(fields{"post-url": "http://example.com/" + long(2048)}), "post-url"},
		{"post-url not a string", sub(fields{"post-url": true}), "post-url"},
		{"batch-max -1", sub(fields{"batch-max": -1}), "batch-max"},
		{"batch-max 1001", sub(fields{"batch-max": 1001}), "batch-max"},
		{"batch-max 1.5", sub(fields{"batch-max": 1.5}), "batch-max"},
		{"batch-max as a string", sub(fields{"batch-max": "10"}), "batch-max"},
		{"batch-max huge", sub(fields{"batch-max": rawJSON(`99999999999999999999999`)}), "batch-max"},
		{"timeout-ms 99", sub(fields{"timeout-ms": 99}), "timeout-ms"},
		{"timeout-ms above 5 min", sub(fields{"timeout-ms": httpapi.MaxTimeoutMs + 1}), "timeout-ms"},
		{"timeout-ms negative", sub(fields{"timeout-ms": -100}), "timeout-ms"},
		{"encoding xml", sub(fields{"encoding": "xml"}), "encoding"},
		{"encoding upper case", sub(fields{"encoding": "JSON"}), "encoding"},
		{"geo maybe", sub(fields{"subscription-geo-support": "maybe"}), "subscription-geo-support"},
		{"geo as a bool", sub(fields{"subscription-geo-support": true}), "subscription-geo-support"},
		{"preferred-server with a space", sub(fields{"preferred-server": "node 1"}), "preferred-server"},
		{"secret without prefix", sub(fields{"secret": "abcdefghijklmnopqrstuvwxyz"}), "secret"},
		{"secret not base64", sub(fields{"secret": "whsec_!!!!"}), "secret"},
		{"secret key too short", sub(fields{"secret": secretOf("short")}), "secret"},
		{"secret key too long", sub(fields{"secret": secretOf(long(65))}), "secret"},
		{"id with spaces", sub(fields{"id": "my sub"}), "id"},
		{"id of 65 characters", sub(fields{"id": long(65)}), "id"},
		{"id with a slash", sub(fields{"id": "a/b"}), "id"},
		{"id not a string", sub(fields{"id": 12}), "id"},
		{"status is read-only", sub(fields{"status": "active"}), "status"},
		{"posts-count is read-only", sub(fields{"posts-count": 0}), "posts-count"},
		{"current-active-server is read-only", sub(fields{"current-active-server": "n1"}), "current-active-server"},
		{"filters not a list", sub(fields{"filters": map[string]string{"property": "type", "value": "x"}}), "filters"},
		{"filters a string", sub(fields{"filters": "type=login"}), "filters"},
		{"filter without property", sub(fields{"filters": []any{map[string]any{"value": "x"}}}), "filters"},
		{"filter with empty property", sub(fields{"filters": []any{map[string]any{"property": "", "value": "x"}}}), "filters"},
		{"filter without value", sub(fields{"filters": []any{map[string]any{"property": "type"}}}), "filters"},
		{"filter value null", sub(fields{"filters": []any{map[string]any{"property": "type", "value": nil}}}), "filters"},
		{"filter value a number", sub(fields{"filters": []any{map[string]any{"property": "type", "value": 5}}}), "filters"},
		{"filter value a list", sub(fields{"filters": []any{map[string]any{"property": "type", "value": []string{"a"}}}}), "filters"},
		{"filter with an unknown key", sub(fields{"filters": []any{map[string]any{"property": "type", "value": "x", "op": "eq"}}}), "filters"},
		{"filter not an object", sub(fields{"filters": []any{"type"}}), "filters"},
		{"too many filters", sub(fields{"filters": manyFilters(httpapi.MaxFilters + 1)}), "filters"},
		{"reseller too long", sub(fields{"reseller": long(httpapi.MaxScopeLen + 1)}), "reseller"},
		{"domain with a control character", sub(fields{"domain": "d\u0001"}), "domain"},
		{"user not a string", sub(fields{"user": 7}), "user"},
		{"expires not a time", sub(fields{"subscription-expires-datetime": "tomorrow"}), "subscription-expires-datetime"},
		{"expires a number", sub(fields{"subscription-expires-datetime": 1700000000}), "subscription-expires-datetime"},
		{"expires in the past", sub(fields{"subscription-expires-datetime": "2001-01-01T00:00:00Z"}), "subscription-expires-datetime"},
	}
	for _, tt := range tests {
		r := tn.do(http.MethodPost, "/v1/subscriptions", tn.root, tt.body)
		wantErr(t, "create: "+tt.name, r, http.StatusBadRequest, tt.field)
	}
	// Nothing of it was written.
	wantIDs(t, "list after bad creates", tn.listIDs(tn.root, ""), "existing")

	// The same rules hold for a PUT and a PATCH, which leave the
	// subscription unchanged.
	before := tn.getSub("existing")
	for _, tt := range tests {
		if tt.field == "id" || strings.Contains(tt.name, "read-only") || strings.Contains(tt.name, "missing") ||
			strings.Contains(tt.name, "past") {
			continue // id, read-only fields and absent fields behave differently on updates (tested below)
		}
		for _, method := range []string{http.MethodPut, http.MethodPatch} {
			r := tn.do(method, "/v1/subscriptions/existing", tn.root, tt.body)
			wantErr(t, method+": "+tt.name, r, http.StatusBadRequest, tt.field)
		}
	}
	sameView(t, "after bad updates", tn.getSub("existing"), before)
	wantIDs(t, "list after bad updates", tn.listIDs(tn.root, ""), "existing")
}

// rawJSON is a JSON value sent verbatim inside a fields body.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func manyFilters(n int) []map[string]string {
	out := make([]map[string]string, n)
	for i := range out {
		out[i] = map[string]string{"property": "type", "value": fmt.Sprint(i)}
	}
	return out
}

// unsizedReader hides a reader's length so the request is sent chunked.
type unsizedReader struct{ r io.Reader }

func (u unsizedReader) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	const mib = 1 << 20
	padded := func(size int) string {
		b := `{"id":"big","model":"call","post-url":"` + hookURL + `"}`
		return b + strings.Repeat(" ", size-len(b))
	}

	// Over 1 MiB: 413 with a JSON error, with a Content-Length and chunked.
	r := tn.do(http.MethodPost, "/v1/subscriptions", tn.root, rawBody(padded(mib+1)))
	e := wantErr(t, "POST of 1 MiB + 1 byte", r, http.StatusRequestEntityTooLarge, "")
	if !strings.Contains(e.Error, "1MiB") {
		t.Errorf("413 message %q does not name the limit", e.Error)
	}
	r = tn.do(http.MethodPost, "/v1/subscriptions", tn.root, unsizedReader{strings.NewReader(padded(2 * mib))})
	wantErr(t, "chunked POST of 2 MiB", r, http.StatusRequestEntityTooLarge, "")
	r = tn.do(http.MethodPost, "/v1/tokens", tn.root, unsizedReader{strings.NewReader(padded(mib + 1))})
	wantErr(t, "chunked POST /v1/tokens of 1 MiB + 1", r, http.StatusRequestEntityTooLarge, "")
	wantIDs(t, "list after 413s", tn.listIDs(tn.root, ""))

	// Exactly 1 MiB is within the limit.
	v := tn.createSub(tn.root, rawBody(padded(mib)))
	r = tn.do(http.MethodPatch, "/v1/subscriptions/big", tn.root, unsizedReader{strings.NewReader(padded(mib + 1))})
	wantErr(t, "chunked PATCH of 1 MiB + 1", r, http.StatusRequestEntityTooLarge, "")
	sameView(t, "after the 413 PATCH", tn.getSub("big"), v)
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	tn.createSub(tn.root, sub(fields{"id": "a", "model": "call", "domain": "D1"}))
	tn.createSub(tn.root, sub(fields{"id": "b", "model": "cdr", "domain": "D1"}))
	tn.createSub(tn.root, sub(fields{"id": "c", "model": "call", "domain": "D2"}))
	tn.createSub(tn.root, sub(fields{"id": "d", "model": "call"}))
	want(t, "pause b", tn.do(http.MethodPost, "/v1/subscriptions/b/pause", tn.root, nil), http.StatusOK)

	for _, tt := range []struct {
		query string
		ids   []string
	}{
		{"", []string{"a", "b", "c", "d"}},
		{"model=call", []string{"a", "c", "d"}},
		{"model=cdr", []string{"b"}},
		{"model=agent", nil},
		{"domain=D1", []string{"a", "b"}},
		{"domain=%2A", []string{"d"}},
		{"domain=d1", nil},
		{"status=paused", []string{"b"}},
		{"status=pending", []string{"a", "c", "d"}},
		{"model=call&domain=D1", []string{"a"}},
		{"model=cdr&status=pending", nil},
		{"model=", []string{"a", "b", "c", "d"}},
	} {
		wantIDs(t, "GET ?"+tt.query, tn.listIDs(tn.root, tt.query), tt.ids...)
	}
	// The list is a JSON array even when empty.
	r := tn.do(http.MethodGet, "/v1/subscriptions?model=agent", tn.root, nil)
	if got := strings.TrimSpace(string(r.Body)); got != "[]" {
		t.Fatalf("empty list body = %s, want []", got)
	}
}

func TestGetAndDelete(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	v := tn.createSub(tn.root, sub(fields{"id": "gone"}))
	tn.createSub(tn.root, sub(fields{"id": "kept"}))

	r := tn.do(http.MethodGet, "/v1/subscriptions/gone", tn.root, nil)
	want(t, "GET", r, http.StatusOK)
	sameView(t, "GET", decode[httpapi.SubView](t, "GET", r), v)
	wantErr(t, "GET of an unknown id", tn.do(http.MethodGet, "/v1/subscriptions/nope", tn.root, nil), http.StatusNotFound, "id")

	r = tn.do(http.MethodDelete, "/v1/subscriptions/gone", tn.root, nil)
	want(t, "DELETE", r, http.StatusNoContent)
	if len(r.Body) != 0 {
		t.Fatalf("DELETE: 204 with a body %q", r.Body)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/subscriptions/gone"},
		{http.MethodDelete, "/v1/subscriptions/gone"},
		{http.MethodGet, "/v1/subscriptions/gone/secret"},
		{http.MethodPost, "/v1/subscriptions/gone/pause"},
		{http.MethodPost, "/v1/subscriptions/gone/resume"},
		{http.MethodPatch, "/v1/subscriptions/gone"},
		{http.MethodPut, "/v1/subscriptions/gone"},
	} {
		var body any
		if c.method == http.MethodPut || c.method == http.MethodPatch {
			body = sub(nil)
		}
		wantErr(t, c.method+" "+c.path+" after DELETE", tn.do(c.method, c.path, tn.root, body), http.StatusNotFound, "id")
	}
	wantIDs(t, "list after DELETE", tn.listIDs(tn.root, ""), "kept")
	// The id is free again.
	tn.createSub(tn.root, sub(fields{"id": "gone"}))
}

func TestPut(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	full := tn.createSub(tn.root, fields{
		"id": "s1", "model": "cdr", "post-url": "https://example.com/a", "reseller": "R1", "domain": "D1", "user": "U1",
		"filters": []map[string]string{{"property": "type", "value": "x"}}, "subscription-geo-support": "no",
		"preferred-server": tn.n.ID(), "encoding": "form", "batch-max": 5, "timeout-ms": 2000, "secret": testSecret,
		"subscription-expires-datetime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	})

	// Full replace: absent fields take their defaults, the secret is kept.
	r := tn.do(http.MethodPut, "/v1/subscriptions/s1", tn.root, fields{"model": "call", "post-url": "http://127.0.0.1:8080/b"})
	want(t, "PUT", r, http.StatusOK)
	got := decode[httpapi.SubView](t, "PUT", r)
	wantView := defaultView(tn, "s1", "call", "http://127.0.0.1:8080/b")
	sameView(t, "PUT answer", got, wantView)
	if got.Secret != "" {
		t.Fatalf("PUT answer carries the secret")
	}
	if got.Created != full.Created {
		t.Fatalf("PUT changed subscription-creation-datetime: %q -> %q", full.Created, got.Created)
	}
	sameView(t, "GET after PUT", tn.getSub("s1"), wantView)
	if s := tn.secret(tn.root, "s1"); s != testSecret {
		t.Fatalf("secret after a PUT without one = %q, want it kept", s)
	}

	// A PUT that names the secret replaces it; a matching id in the body is fine.
	newSecret := secretOf("another-key-of-24-bytes!")
	r = tn.do(http.MethodPut, "/v1/subscriptions/s1", tn.root, sub(fields{"id": "s1", "secret": newSecret, "domain": "D9"}))
	want(t, "PUT with secret and id", r, http.StatusOK)
	if s := tn.secret(tn.root, "s1"); s != newSecret {
		t.Fatalf("secret after a PUT with one = %q, want %q", s, newSecret)
	}
	if d := tn.getSub("s1").Domain; d != "D9" {
		t.Fatalf("domain after PUT = %q, want D9", d)
	}

	// A PUT of exactly what GET returned (read-only fields included) is a no-op.
	before := tn.getSub("s1")
	r = tn.do(http.MethodPut, "/v1/subscriptions/s1", tn.root, before)
	want(t, "PUT of the GET answer", r, http.StatusOK)
	sameView(t, "after PUT of the GET answer", tn.getSub("s1"), before)

	// A PUT is a full replace, so the required fields are required.
	before = tn.getSub("s1")
	for _, tt := range []struct {
		name  string
		body  any
		code  int
		field string
	}{
		{"id mismatch", sub(fields{"id": "other"}), http.StatusBadRequest, "id"},
		{"id not a string", sub(fields{"id": 1}), http.StatusBadRequest, "id"},
		{"missing model", fields{"post-url": hookURL}, http.StatusBadRequest, "model"},
		{"missing post-url", fields{"model": "call"}, http.StatusBadRequest, "post-url"},
		{"unknown field", sub(fields{"nope": 1}), http.StatusBadRequest, "nope"},
		{"posts-count 5", sub(fields{"posts-count": 5}), http.StatusBadRequest, "posts-count"},
	} {
		r := tn.do(http.MethodPut, "/v1/subscriptions/s1", tn.root, tt.body)
		wantErr(t, "PUT "+tt.name, r, tt.code, tt.field)
	}
	sameView(t, "after rejected PUTs", tn.getSub("s1"), before)
	wantIDs(t, "list after rejected PUTs", tn.listIDs(tn.root, ""), "s1")
	wantErr(t, "PUT of an unknown id", tn.do(http.MethodPut, "/v1/subscriptions/nope", tn.root, sub(nil)), http.StatusNotFound, "id")
}

func TestPatch(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	orig := tn.createSub(tn.root, fields{
		"id": "s1", "model": "cdr", "post-url": "https://example.com/a", "reseller": "R1", "domain": "D1", "user": "U1",
		"filters": []map[string]string{{"property": "type", "value": "x"}}, "subscription-geo-support": "no",
		"encoding": "form", "batch-max": 5, "timeout-ms": 2000, "secret": testSecret,
		"subscription-expires-datetime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	})
	orig.Secret = ""

	// Each PATCH changes exactly the fields it names.
	steps := []struct {
		body  fields
		apply func(v *httpapi.SubView)
	}{
		{fields{"batch-max": 7}, func(v *httpapi.SubView) { v.BatchMax = 7 }},
		{fields{"post-url": "http://10.0.0.1:81/x"}, func(v *httpapi.SubView) { v.PostURL = "http://10.0.0.1:81/x" }},
		{fields{"domain": "D2", "user": "U2"}, func(v *httpapi.SubView) { v.Domain, v.User = "D2", "U2" }},
		{fields{"filters": []any{}}, func(v *httpapi.SubView) { v.Filters = []fsm.Filter{} }},
		{fields{"subscription-expires-datetime": ""}, func(v *httpapi.SubView) { v.Expires = "" }},
		{fields{"encoding": "json", "timeout-ms": 0}, func(v *httpapi.SubView) { v.Encoding, v.TimeoutMs = "json", httpapi.DefaultTimeoutMs }},
		{fields{"id": "s1"}, func(v *httpapi.SubView) {}},
		{fields{}, func(v *httpapi.SubView) {}},
		// Read-only fields are ignored on updates (so a GET answer can be
		// sent back), except for the counter resets.
		{fields{"status": "active", "home-server": "elsewhere", "lag": 9}, func(v *httpapi.SubView) {}},
	}
	cur := orig
	for i, st := range steps {
		st.apply(&cur)
		r := tn.do(http.MethodPatch, "/v1/subscriptions/s1", tn.root, st.body)
		want(t, fmt.Sprintf("PATCH %d %v", i, st.body), r, http.StatusOK)
		sameView(t, fmt.Sprintf("PATCH %d answer", i), decode[httpapi.SubView](t, "PATCH", r), cur)
		sameView(t, fmt.Sprintf("GET after PATCH %d", i), tn.getSub("s1"), cur)
	}
	if s := tn.secret(tn.root, "s1"); s != testSecret {
		t.Fatalf("secret after PATCHes without one = %q, want it kept", s)
	}
	newSecret := secretOf("another-key-of-24-bytes!")
	want(t, "PATCH secret", tn.do(http.MethodPatch, "/v1/subscriptions/s1", tn.root, fields{"secret": newSecret}), http.StatusOK)
	if s := tn.secret(tn.root, "s1"); s != newSecret {
		t.Fatalf("secret after PATCH = %q, want %q", s, newSecret)
	}
	sameView(t, "after PATCH of the secret", tn.getSub("s1"), cur)

	wantErr(t, "PATCH id mismatch", tn.do(http.MethodPatch, "/v1/subscriptions/s1", tn.root, fields{"id": "s2"}), http.StatusBadRequest, "id")
	wantErr(t, "PATCH model empty", tn.do(http.MethodPatch, "/v1/subscriptions/s1", tn.root, fields{"model": ""}), http.StatusBadRequest, "model")
	sameView(t, "after rejected PATCHes", tn.getSub("s1"), cur)
	wantErr(t, "PATCH of an unknown id", tn.do(http.MethodPatch, "/v1/subscriptions/nope", tn.root, fields{}), http.StatusNotFound, "id")
}

func TestCounterReset(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	body := sub(fields{"id": "s1"})
	v := tn.createSub(tn.root, body)
	// The same post-url every time: PUT replaces it.
	again := func(extra fields) fields {
		f := sub(extra)
		f["post-url"] = body["post-url"]
		return f
	}
	for _, method := range []string{http.MethodPut, http.MethodPatch} {
		r := tn.do(method, "/v1/subscriptions/s1", tn.root, again(fields{"posts-count": 0, "error-count": 0}))
		want(t, method+" posts-count 0", r, http.StatusOK)
		got := decode[httpapi.SubView](t, method, r)
		if got.PostsCount != 0 || got.ErrorCount != 0 {
			t.Fatalf("%s: counters %d/%d after reset", method, got.PostsCount, got.ErrorCount)
		}
		for _, tt := range []struct {
			field string
			value any
		}{{"posts-count", 5}, {"error-count", 1}, {"posts-count", -1}, {"error-count", "0"}, {"posts-count", 0.5}} {
			r := tn.do(method, "/v1/subscriptions/s1", tn.root, again(fields{tt.field: tt.value}))
			wantErr(t, fmt.Sprintf("%s %s %v", method, tt.field, tt.value), r, http.StatusBadRequest, tt.field)
		}
	}
	sameView(t, "after the resets", tn.getSub("s1"), v)
}

// secret reads a subscription's secret and expects 200.
func (tn *testNode) secret(token, id string) string {
	tn.t.Helper()
	r := tn.do(http.MethodGet, "/v1/subscriptions/"+id+"/secret", token, nil)
	want(tn.t, "GET secret of "+id, r, http.StatusOK)
	body := decode[map[string]string](tn.t, "GET secret", r)
	if len(body) != 1 {
		tn.t.Fatalf("GET secret: body %s, want only {\"secret\":...}", r.Body)
	}
	return body["secret"]
}

func TestSecret(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	gen := tn.createSub(tn.root, sub(fields{"id": "gen"}))
	given := tn.createSub(tn.root, sub(fields{"id": "given", "secret": testSecret}))
	if s := tn.secret(tn.root, "gen"); s != gen.Secret {
		t.Fatalf("GET secret = %q, want the one of the create answer %q", s, gen.Secret)
	}
	if s := tn.secret(tn.root, "given"); s != testSecret || given.Secret != testSecret {
		t.Fatalf("given secret: create answered %q, GET %q, want %q", given.Secret, s, testSecret)
	}
	wantErr(t, "secret of an unknown id", tn.do(http.MethodGet, "/v1/subscriptions/nope/secret", tn.root, nil), http.StatusNotFound, "id")
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	v := tn.createSub(tn.root, sub(fields{"id": "s1"}))
	tn.createSub(tn.root, sub(fields{"id": "s2"}))
	for i, step := range []struct {
		action, status string
	}{{"pause", "paused"}, {"pause", "paused"}, {"resume", "pending"}, {"resume", "pending"}, {"pause", "paused"}} {
		r := tn.do(http.MethodPost, "/v1/subscriptions/s1/"+step.action, tn.root, nil)
		want(t, step.action, r, http.StatusOK)
		got := decode[httpapi.SubView](t, step.action, r)
		wv := v
		wv.Status = step.status
		sameView(t, fmt.Sprintf("step %d: %s answer", i, step.action), got, wv)
		sameView(t, fmt.Sprintf("step %d: GET after %s", i, step.action), tn.getSub("s1"), wv)
	}
	wantIDs(t, "paused", tn.listIDs(tn.root, "status=paused"), "s1")
	if st := tn.getSub("s2").Status; st != "pending" {
		t.Fatalf("pausing s1 changed s2 to %q", st)
	}
	// A PATCH does not resume a paused subscription.
	want(t, "PATCH paused", tn.do(http.MethodPatch, "/v1/subscriptions/s1", tn.root, fields{"batch-max": 3}), http.StatusOK)
	if st := tn.getSub("s1").Status; st != "paused" {
		t.Fatalf("status after PATCH = %q, want paused", st)
	}
	for _, a := range []string{"pause", "resume"} {
		wantErr(t, a+" of an unknown id", tn.do(http.MethodPost, "/v1/subscriptions/nope/"+a, tn.root, nil), http.StatusNotFound, "id")
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	paths := []struct{ method, path string }{
		{http.MethodGet, "/v1/subscriptions"}, {http.MethodPost, "/v1/subscriptions"},
		{http.MethodGet, "/v1/subscriptions/x"}, {http.MethodPut, "/v1/subscriptions/x"},
		{http.MethodPatch, "/v1/subscriptions/x"}, {http.MethodDelete, "/v1/subscriptions/x"},
		{http.MethodPost, "/v1/subscriptions/x/pause"}, {http.MethodPost, "/v1/subscriptions/x/resume"},
		{http.MethodGet, "/v1/subscriptions/x/secret"},
		{http.MethodGet, "/v1/tokens"}, {http.MethodPost, "/v1/tokens"}, {http.MethodDelete, "/v1/tokens/x"},
		{http.MethodGet, "/v1/cluster"}, {http.MethodPost, "/internal/v1/apply"},
	}
	for _, tok := range []struct{ name, token string }{
		{"no token", ""}, {"a wrong token", "hs_wrong"}, {"the root token with a typo", tn.root + "x"},
	} {
		for _, p := range paths {
			what := fmt.Sprintf("%s %s with %s", p.method, p.path, tok.name)
			r := tn.do(p.method, p.path, tok.token, sub(nil))
			wantErr(t, what, r, http.StatusUnauthorized, "")
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("%s: WWW-Authenticate = %q", what, r.Header.Get("WWW-Authenticate"))
			}
			if tok.token != "" && bytes.Contains(r.Body, []byte(tok.token)) {
				t.Fatalf("%s: the error echoes the token: %s", what, r.Body)
			}
		}
	}
	wantIDs(t, "nothing created without auth", tn.listIDs(tn.root, ""))

	// Basic with the token as password works too, and the auth scheme is
	// case-insensitive (RFC 9110). ?authkey= is for websockets only: on the
	// admin API it would put tokens into URLs and access logs.
	{
		req, err := http.NewRequest(http.MethodGet, tn.base+"/v1/subscriptions?authkey="+tn.root, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tn.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("authkey on the admin API: status %d, want 401", resp.StatusCode)
		}
	}
	for _, c := range []struct {
		name string
		set  func(*http.Request)
	}{
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tn.root) }},
		{"lower-case bearer", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+tn.root) }},
		{"basic", func(r *http.Request) { r.SetBasicAuth("admin", tn.root) }},
	} {
		req, err := http.NewRequest(http.MethodGet, tn.base+"/v1/subscriptions", nil)
		if err != nil {
			t.Fatal(err)
		}
		c.set(req)
		resp, err := tn.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("token as %s: status %d, want 200", c.name, resp.StatusCode)
		}
	}
}

func TestRoleForbidden(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	tn.createSub(tn.root, sub(fields{"id": "x", "domain": "D1"}))
	ingest := tn.newToken(fsm.RoleIngest, "", "", "")
	nodeTok := tn.nodeToken()
	tokens := map[string]string{
		"ingest":   ingest,
		"node":     nodeTok,
		"reseller": tn.newToken(fsm.RoleReseller, "R1", "", ""),
		"domain":   tn.newToken(fsm.RoleDomain, "", "D1", ""),
		"user":     tn.newToken(fsm.RoleUser, "", "D1", "U1"),
	}
	subPaths := []struct{ method, path string }{
		{http.MethodGet, "/v1/subscriptions"}, {http.MethodPost, "/v1/subscriptions"},
		{http.MethodGet, "/v1/subscriptions/x"}, {http.MethodPut, "/v1/subscriptions/x"},
		{http.MethodPatch, "/v1/subscriptions/x"}, {http.MethodDelete, "/v1/subscriptions/x"},
		{http.MethodPost, "/v1/subscriptions/x/pause"}, {http.MethodPost, "/v1/subscriptions/x/resume"},
		{http.MethodGet, "/v1/subscriptions/x/secret"},
	}
	superPaths := []struct{ method, path string }{
		{http.MethodGet, "/v1/tokens"}, {http.MethodPost, "/v1/tokens"}, {http.MethodDelete, "/v1/tokens/root"},
		{http.MethodGet, "/v1/cluster"},
	}
	check := func(role, method, path string, body any) {
		t.Helper()
		r := tn.do(method, path, tokens[role], body)
		wantErr(t, fmt.Sprintf("%s token: %s %s", role, method, path), r, http.StatusForbidden, "")
	}
	for _, role := range []string{"ingest", "node"} {
		for _, p := range subPaths {
			check(role, p.method, p.path, sub(nil))
		}
	}
	for _, role := range []string{"ingest", "node", "reseller", "domain", "user"} {
		for _, p := range superPaths {
			check(role, p.method, p.path, httpapi.TokenRequest{Role: fsm.RoleSuper})
		}
	}
	// Only node tokens may use the internal endpoints.
	wantErr(t, "root token on /internal/v1/apply", tn.do(http.MethodPost, "/internal/v1/apply", tn.root, rawBody("x")), http.StatusForbidden, "")

	// Nothing changed: the subscription, the root token and the token list.
	if v := tn.getSub("x"); v.Status != "pending" {
		t.Fatalf("subscription changed: %+v", v)
	}
	wantIDs(t, "subscriptions", tn.listIDs(tn.root, ""), "x")
	if n := len(tn.listTokens()); n != 2+len(tokens)-1 { // root, node, and the 4 created
		t.Fatalf("token count = %d, want %d", n, 2+len(tokens)-1)
	}
}

func (tn *testNode) listTokens() []httpapi.TokenView {
	tn.t.Helper()
	r := tn.do(http.MethodGet, "/v1/tokens", tn.root, nil)
	want(tn.t, "GET /v1/tokens", r, http.StatusOK)
	return decode[[]httpapi.TokenView](tn.t, "GET /v1/tokens", r)
}

func TestTokens(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)

	r := tn.do(http.MethodPost, "/v1/tokens", tn.root, httpapi.TokenRequest{Name: "crm", Role: fsm.RoleDomain, Reseller: "R1", Domain: "D1"})
	want(t, "POST /v1/tokens", r, http.StatusCreated)
	tv := decode[httpapi.TokenView](t, "POST /v1/tokens", r)
	if !strings.HasPrefix(tv.Token, "hs_") || tv.ID == "" || tv.Name != "crm" || tv.Role != fsm.RoleDomain ||
		tv.Reseller != "R1" || tv.Domain != "D1" || tv.User != "" {
		t.Fatalf("created token = %+v", tv)
	}
	if _, err := time.Parse(time.RFC3339Nano, tv.Created); err != nil {
		t.Fatalf("created = %q: %v", tv.Created, err)
	}
	// The new token authenticates, with its scope.
	v := tn.createSub(tv.Token, sub(nil))
	if v.Reseller != "R1" || v.Domain != "D1" {
		t.Fatalf("sub created by the domain token has scope %s/%s, want R1/D1", v.Reseller, v.Domain)
	}
	wantIDs(t, "list with the new token", tn.listIDs(tv.Token, ""), v.ID)

	// Every role that may be created.
	others := map[string]httpapi.TokenRequest{
		"super":    {Role: fsm.RoleSuper},
		"reseller": {Role: fsm.RoleReseller, Reseller: "R1"},
		"user":     {Role: fsm.RoleUser, Reseller: "R1", Domain: "D1", User: "U1"},
		"ingest":   {Role: fsm.RoleIngest},
	}
	secrets := []string{tn.root, tv.Token}
	for name, req := range others {
		r := tn.do(http.MethodPost, "/v1/tokens", tn.root, req)
		want(t, "POST /v1/tokens "+name, r, http.StatusCreated)
		secrets = append(secrets, decode[httpapi.TokenView](t, name, r).Token)
	}

	// Bad requests: 400 naming the field, nothing created.
	countBefore := len(tn.listTokens())
	for _, tt := range []struct {
		name  string
		body  any
		field string
	}{
		{"missing role", httpapi.TokenRequest{}, "role"},
		{"unknown role", httpapi.TokenRequest{Role: "admin"}, "role"},
		{"node role", httpapi.TokenRequest{Role: fsm.RoleNode}, "role"},
		{"reseller without reseller", httpapi.TokenRequest{Role: fsm.RoleReseller}, "reseller"},
		{"reseller *", httpapi.TokenRequest{Role: fsm.RoleReseller, Reseller: "*"}, "reseller"},
		{"domain without domain", httpapi.TokenRequest{Role: fsm.RoleDomain, Reseller: "R1"}, "domain"},
		{"domain *", httpapi.TokenRequest{Role: fsm.RoleDomain, Domain: "*"}, "domain"},
		{"user without user", httpapi.TokenRequest{Role: fsm.RoleUser, Domain: "D1"}, "user"},
		{"user without domain", httpapi.TokenRequest{Role: fsm.RoleUser, User: "U1"}, "domain"},
		{"domain token with a user", httpapi.TokenRequest{Role: fsm.RoleDomain, Domain: "D1", User: "U1"}, "user"},
		{"reseller token with a domain", httpapi.TokenRequest{Role: fsm.RoleReseller, Reseller: "R1", Domain: "D1"}, "domain"},
		{"super token with a scope", httpapi.TokenRequest{Role: fsm.RoleSuper, Domain: "D1"}, "role"},
		{"ingest token with a scope", httpapi.TokenRequest{Role: fsm.RoleIngest, Reseller: "R1"}, "role"},
		{"user reseller *", httpapi.TokenRequest{Role: fsm.RoleUser, Reseller: "*", Domain: "D1", User: "U1"}, "reseller"},
		{"domain too long", httpapi.TokenRequest{Role: fsm.RoleDomain, Domain: strings.Repeat("d", 256)}, "domain"},
		{"name too long", httpapi.TokenRequest{Name: strings.Repeat("n", 129), Role: fsm.RoleSuper}, "name"},
		{"unknown field", fields{"role": "super", "scope": "all"}, ""},
		{"role not a string", fields{"role": 1}, ""},
		{"malformed JSON", rawBody(`{"role":`), ""},
		{"not an object", rawBody(`["super"]`), ""},
		{"data after the object", rawBody(`{"role":"super"}}`), ""},
	} {
		r := tn.do(http.MethodPost, "/v1/tokens", tn.root, tt.body)
		wantErr(t, "POST /v1/tokens: "+tt.name, r, http.StatusBadRequest, tt.field)
	}
	if n := len(tn.listTokens()); n != countBefore {
		t.Fatalf("bad token requests changed the token count from %d to %d", countBefore, n)
	}

	// The list never shows a token string or its hash.
	r = tn.do(http.MethodGet, "/v1/tokens", tn.root, nil)
	want(t, "GET /v1/tokens", r, http.StatusOK)
	for _, s := range append(secrets, tn.nodeToken()) {
		for _, leak := range []string{s, httpapi.HashToken(s)} {
			if bytes.Contains(r.Body, []byte(leak)) {
				t.Fatalf("GET /v1/tokens leaks a token or its hash: %s", r.Body)
			}
		}
	}
	for _, key := range []string{`"hash"`, `"token"`} {
		if bytes.Contains(r.Body, []byte(key)) {
			t.Fatalf("GET /v1/tokens has a %s key: %s", key, r.Body)
		}
	}
	list := tn.listTokens()
	ids := map[string]httpapi.TokenView{}
	for _, v := range list {
		ids[v.ID] = v
	}
	if ids["root"].Role != fsm.RoleSuper || ids[tv.ID].Domain != "D1" || len(list) != 2+1+len(others) {
		t.Fatalf("token list = %+v, want root, the node token, and %d created", list, 1+len(others))
	}

	// Revoke: 204, then the token no longer authenticates; again: 404.
	r = tn.do(http.MethodDelete, "/v1/tokens/"+tv.ID, tn.root, nil)
	want(t, "DELETE /v1/tokens/"+tv.ID, r, http.StatusNoContent)
	wantErr(t, "revoked token", tn.do(http.MethodGet, "/v1/subscriptions", tv.Token, nil), http.StatusUnauthorized, "")
	wantErr(t, "revoke again", tn.do(http.MethodDelete, "/v1/tokens/"+tv.ID, tn.root, nil), http.StatusNotFound, "id")
	if _, ok := func() (httpapi.TokenView, bool) {
		for _, v := range tn.listTokens() {
			if v.ID == tv.ID {
				return v, true
			}
		}
		return httpapi.TokenView{}, false
	}(); ok {
		t.Fatalf("revoked token %s still listed", tv.ID)
	}
	// Its subscription stays.
	tn.getSub(v.ID)
}

// nodeToken reads the node-to-node token from the data dir.
func (tn *testNode) nodeToken() string {
	tn.t.Helper()
	b, err := os.ReadFile(filepath.Join(tn.dataDir, node.NodeTokenFile))
	if err != nil {
		tn.t.Fatalf("node token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

func TestAssignedAfterCreate(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	v := tn.createSub(tn.root, sub(fields{"id": "a"}))
	waitFor(t, func() (bool, string) {
		got := tn.getSub(v.ID)
		return got.CurrentActiveServer == tn.n.ID(), "current-active-server " + got.CurrentActiveServer
	}, 10*time.Second)
}
