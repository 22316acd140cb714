package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
)

// nsDatetime is NetSapiens' datetime layout on the /ns-api/v2 paths.
var nsDatetime = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)

// nsView decodes a /ns-api/v2 subscription answer.
func nsView(t testing.TB, what string, r reply) httpapi.NSSubView {
	t.Helper()
	return decode[httpapi.NSSubView](t, what, r)
}

// TestNSAPIReferenceExamples replays the example requests of NetSapiens'
// v2 API reference for event subscriptions (create, read all, read one,
// update, delete, and the same under /domains/{domain}), as an integration
// written for NetSapiens sends them, and checks NetSapiens' status codes
// and the answer fields.
func TestNSAPIReferenceExamples(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	const base = "/ns-api/v2/subscriptions"
	start := time.Now().UTC().Add(-time.Second).Truncate(time.Second)

	// Create: the reference's example body, with its NetSapiens-only
	// fields (user-scope, server_preferred naming a host that is no node)
	// and an expiry in NetSapiens' format.
	postURL := nextHookURL()
	r := tn.do(http.MethodPost, base, tn.root, rawBody(`{
		"post-url": "`+postURL+`",
		"model": "call",
		"user": "*",
		"reseller": "*",
		"domain": "*",
		"user-scope": "Super User",
		"subscription-geo-support": "yes",
		"server_preferred": "eng0-san.netsapiens.com",
		"subscription-expires-datetime": "2043-10-04 17:16:36"
	}`))
	want(t, "create", r, http.StatusOK)
	created := nsView(t, "create", r)
	if created.ID == "" || created.Secret == "" {
		t.Fatalf("create: id %q secret %q, want both", created.ID, created.Secret)
	}
	for _, c := range []struct{ field, got, want string }{
		{"model", created.Model, "call"},
		{"post-url", created.PostURL, postURL},
		{"reseller", created.Reseller, "*"},
		{"domain", created.Domain, "*"},
		{"user", created.User, "*"},
		{"subscription-geo-support", created.GeoSupport, "yes"},
		{"preferred-server", created.PreferredServer, "eng0-san.netsapiens.com"},
		{"server_preferred", created.ServerPreferred, "eng0-san.netsapiens.com"},
		{"user-scope", created.UserScope, "Super User"},
		{"subscription-expires-datetime", created.Expires, "2043-10-04 17:16:36"},
		{"status", created.Status, fsm.StatusPending},
	} {
		if c.got != c.want {
			t.Fatalf("create: %s = %q, want %q (answer %s)", c.field, c.got, c.want, r.Body)
		}
	}
	if !nsDatetime.MatchString(created.Created) {
		t.Fatalf("create: subscription-creation-datetime %q is not YYYY-MM-DD HH:MM:SS", created.Created)
	}
	if c, err := time.Parse(httpapi.NSDatetime, created.Created); err != nil || c.Before(start) || c.After(time.Now().Add(time.Second)) {
		t.Fatalf("create: subscription-creation-datetime %q (err %v) is not now in UTC", created.Created, err)
	}
	id := created.ID

	// Read all, read one: the same object, without the secret.
	r = tn.do(http.MethodGet, base, tn.root, nil)
	want(t, "read all", r, http.StatusOK)
	all := decode[[]httpapi.NSSubView](t, "read all", r)
	if len(all) != 1 || all[0].ID != id || all[0].Secret != "" || all[0].UserScope != "Super User" || all[0].Expires != created.Expires {
		t.Fatalf("read all = %s, want the one subscription without its secret", r.Body)
	}
	r = tn.do(http.MethodGet, base+"/"+id, tn.root, nil)
	want(t, "read one", r, http.StatusOK)
	one := nsView(t, "read one", r)
	created.Secret = ""
	// The reconciler assigns a geo "yes" subscription in the meantime.
	one.CurrentActiveServer, created.CurrentActiveServer = "", ""
	if !reflect.DeepEqual(one, created) {
		t.Fatalf("read one:\n got  %+v\n want %+v", one, created)
	}

	// /v1 serves the same subscription, in RFC 3339.
	v1 := tn.getSub(id)
	if v1.Expires != "2043-10-04T17:16:36Z" || v1.PreferredServer != "eng0-san.netsapiens.com" {
		t.Fatalf("GET /v1: expires %q preferred-server %q", v1.Expires, v1.PreferredServer)
	}
	if _, err := time.Parse(time.RFC3339Nano, v1.Created); err != nil {
		t.Fatalf("GET /v1: subscription-creation-datetime %q is not RFC 3339", v1.Created)
	}

	// Update: the reference's example sends only post-url and the two
	// counters: a partial update, answered 202.
	newURL := nextHookURL()
	r = tn.do(http.MethodPut, base+"/"+id, tn.root, rawBody(`{"post-url":"`+newURL+`","error-count":0,"posts-count":0}`))
	want(t, "update", r, http.StatusAccepted)
	upd := nsView(t, "update", r)
	if upd.PostURL != newURL || upd.Model != "call" || upd.Expires != "2043-10-04 17:16:36" ||
		upd.PreferredServer != "eng0-san.netsapiens.com" || upd.PostsCount != 0 || upd.ErrorCount != 0 || upd.UserScope != "Super User" {
		t.Fatalf("update answer %s: want the new post-url and every other field kept", r.Body)
	}
	if got := tn.getSub(id); got.PostURL != newURL || got.Model != "call" {
		t.Fatalf("after update: %+v", got)
	}
	// A PUT may send back what GET returned (NetSapiens datetimes, the
	// alias, user-scope).
	back, err := json.Marshal(upd)
	if err != nil {
		t.Fatal(err)
	}
	want(t, "update with the GET answer sent back", tn.do(http.MethodPut, base+"/"+id, tn.root, rawBody(back)), http.StatusAccepted)

	// Delete, with a body (ignored): 202, then it is gone on both paths.
	r = tn.do(http.MethodDelete, base+"/"+id, tn.root, rawBody(`{"reason":"ignored"}`))
	want(t, "delete", r, http.StatusAccepted)
	if d := decode[map[string]any](t, "delete", r); d["code"] != float64(202) || d["id"] != id {
		t.Fatalf("delete answer %s", r.Body)
	}
	wantErr(t, "read one after delete", tn.do(http.MethodGet, base+"/"+id, tn.root, nil), http.StatusNotFound, "id")
	wantErr(t, "GET /v1 after delete", tn.do(http.MethodGet, "/v1/subscriptions/"+id, tn.root, nil), http.StatusNotFound, "id")
	wantErr(t, "delete again", tn.do(http.MethodDelete, base+"/"+id, tn.root, nil), http.StatusNotFound, "id")

	// The domain paths: the domain comes from the path.
	const dom = "/ns-api/v2/domains/example.com/subscriptions"
	r = tn.do(http.MethodPost, dom, tn.root, rawBody(`{"post-url":"`+nextHookURL()+`","model":"call","user":"*","reseller":"*","user-scope":"Super User"}`))
	want(t, "domain create", r, http.StatusOK)
	dsub := nsView(t, "domain create", r)
	if dsub.Domain != "example.com" {
		t.Fatalf("domain create: domain %q, want example.com from the path", dsub.Domain)
	}
	// A body naming the path's domain is fine; another domain is refused.
	want(t, "domain create naming the same domain", tn.do(http.MethodPost, dom, tn.root,
		fields{"post-url": nextHookURL(), "model": "cdr", "domain": "example.com"}), http.StatusOK)
	wantErr(t, "domain create naming another domain", tn.do(http.MethodPost, dom, tn.root,
		fields{"post-url": nextHookURL(), "model": "cdr", "domain": "other.example"}), http.StatusBadRequest, "domain")
	other := tn.createSub(tn.root, sub(fields{"id": "elsewhere", "domain": "other.example"}))

	r = tn.do(http.MethodGet, dom, tn.root, nil)
	want(t, "domain read all", r, http.StatusOK)
	var domIDs []string
	for _, v := range decode[[]httpapi.NSSubView](t, "domain read all", r) {
		if v.Domain != "example.com" {
			t.Fatalf("domain read all lists %s of domain %q", v.ID, v.Domain)
		}
		domIDs = append(domIDs, v.ID)
	}
	if len(domIDs) != 2 || !slices.Contains(domIDs, dsub.ID) {
		t.Fatalf("domain read all: ids %q, want the two of example.com", domIDs)
	}
	r = tn.do(http.MethodGet, dom+"/"+dsub.ID, tn.root, nil)
	want(t, "domain read one", r, http.StatusOK)
	if v := nsView(t, "domain read one", r); v.ID != dsub.ID || v.Domain != "example.com" {
		t.Fatalf("domain read one: %s", r.Body)
	}
	wantErr(t, "domain read one of another domain", tn.do(http.MethodGet, dom+"/"+other.ID, tn.root, nil), http.StatusNotFound, "id")
	wantErr(t, "domain update of another domain", tn.do(http.MethodPut, dom+"/"+other.ID, tn.root, fields{"model": "cdr"}), http.StatusNotFound, "id")
	wantErr(t, "domain delete of another domain", tn.do(http.MethodDelete, dom+"/"+other.ID, tn.root, nil), http.StatusNotFound, "id")

	r = tn.do(http.MethodPut, dom+"/"+dsub.ID, tn.root, rawBody(`{"model":"cdr","error-count":0,"posts-count":0}`))
	want(t, "domain update", r, http.StatusAccepted)
	if v := nsView(t, "domain update", r); v.Model != "cdr" || v.Domain != "example.com" || v.PostURL != dsub.PostURL {
		t.Fatalf("domain update: %s", r.Body)
	}
	wantErr(t, "domain update moving it to another domain", tn.do(http.MethodPut, dom+"/"+dsub.ID, tn.root,
		fields{"domain": "other.example"}), http.StatusBadRequest, "domain")
	want(t, "domain delete", tn.do(http.MethodDelete, dom+"/"+dsub.ID, tn.root, nil), http.StatusAccepted)
	wantErr(t, "domain read one after delete", tn.do(http.MethodGet, dom+"/"+dsub.ID, tn.root, nil), http.StatusNotFound, "id")
}

// TestNSAPIScopes: the same tokens and scope rules as /v1; user-scope is
// the token's role in NetSapiens' words; a domain path outside a domain
// token's domain is 403.
func TestNSAPIScopes(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	toks := map[string]string{
		"Super User":     tn.root,
		"Reseller":       tn.newToken(fsm.RoleReseller, "R1", "", ""),
		"Office Manager": tn.newToken(fsm.RoleDomain, "", "D1", ""),
		"Basic User":     tn.newToken(fsm.RoleUser, "", "D1", "U1"),
	}
	for scope, tok := range toks {
		// The body's user-scope is ignored: the token decides.
		r := tn.do(http.MethodPost, "/ns-api/v2/domains/D1/subscriptions", tok,
			fields{"post-url": nextHookURL(), "model": "call", "user-scope": "Super User"})
		want(t, scope+" create", r, http.StatusOK)
		v := nsView(t, scope+" create", r)
		if v.UserScope != scope || v.Domain != "D1" {
			t.Fatalf("%s: user-scope %q domain %q, want %q D1", scope, v.UserScope, v.Domain, scope)
		}
		r = tn.do(http.MethodGet, "/ns-api/v2/subscriptions/"+v.ID, tok, nil)
		want(t, scope+" read one", r, http.StatusOK)
		if got := nsView(t, scope+" read one", r); got.UserScope != scope {
			t.Fatalf("%s read one: user-scope %q", scope, got.UserScope)
		}
	}
	dom, user := toks["Office Manager"], toks["Basic User"]
	wantErr(t, "domain token on another domain's path", tn.do(http.MethodGet, "/ns-api/v2/domains/D2/subscriptions", dom, nil), http.StatusForbidden, "domain")
	wantErr(t, "user token creating on another domain's path", tn.do(http.MethodPost, "/ns-api/v2/domains/D2/subscriptions", user,
		fields{"post-url": nextHookURL(), "model": "call"}), http.StatusForbidden, "domain")
	wantErr(t, `domain "*" path`, tn.do(http.MethodGet, "/ns-api/v2/domains/*/subscriptions", tn.root, nil), http.StatusBadRequest, "domain")
	// The /v1 scope rules hold: domain "*" needs reseller or super scope.
	wantErr(t, `domain token, domain "*"`, tn.do(http.MethodPost, "/ns-api/v2/subscriptions", dom,
		fields{"post-url": nextHookURL(), "model": "call", "domain": "*"}), http.StatusForbidden, "domain")
	// A domain token sees only its domain's subscriptions on either path.
	tn.createSub(tn.root, sub(fields{"id": "d2-sub", "domain": "D2"}))
	wantErr(t, "domain token reading another domain's subscription", tn.do(http.MethodGet, "/ns-api/v2/subscriptions/d2-sub", dom, nil), http.StatusNotFound, "id")
	r := tn.do(http.MethodGet, "/ns-api/v2/subscriptions", dom, nil)
	want(t, "domain token read all", r, http.StatusOK)
	for _, v := range decode[[]httpapi.NSSubView](t, "domain token read all", r) {
		if v.Domain != "D1" {
			t.Fatalf("domain token lists %s of domain %s", v.ID, v.Domain)
		}
	}
	// No token, or a token of another role: the API's 401 and 403.
	wantErr(t, "no token", tn.do(http.MethodGet, "/ns-api/v2/subscriptions", "", nil), http.StatusUnauthorized, "")
	ingest := tn.newToken(fsm.RoleIngest, "", "", "")
	wantErr(t, "ingest token", tn.do(http.MethodGet, "/ns-api/v2/subscriptions", ingest, nil), http.StatusForbidden, "")
}

// TestNSAPIRequestFields: the alias, the accepted-and-ignored field, and
// errors that name the field as the request did.
func TestNSAPIRequestFields(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	const base = "/ns-api/v2/subscriptions"
	// preferred-server and server_preferred together must agree.
	want(t, "both names, same value", tn.do(http.MethodPost, base, tn.root,
		fields{"post-url": nextHookURL(), "model": "call", "server_preferred": "n9", "preferred-server": "n9"}), http.StatusOK)
	wantErr(t, "both names, different values", tn.do(http.MethodPost, base, tn.root,
		fields{"post-url": nextHookURL(), "model": "call", "server_preferred": "n9", "preferred-server": "n8"}), http.StatusBadRequest, "server_preferred")
	wantErr(t, "a bad server_preferred is named so", tn.do(http.MethodPost, base, tn.root,
		fields{"post-url": nextHookURL(), "model": "call", "server_preferred": "not a node id"}), http.StatusBadRequest, "server_preferred")
	wantErr(t, "unknown field", tn.do(http.MethodPost, base, tn.root,
		fields{"post-url": nextHookURL(), "model": "call", "colour": "red"}), http.StatusBadRequest, "colour")
	// /v1 keeps its own field set: the NetSapiens names are unknown there.
	for _, f := range []string{"user-scope", "server_preferred"} {
		wantErr(t, "/v1 with "+f, tn.do(http.MethodPost, "/v1/subscriptions", tn.root, sub(fields{f: "x"})), http.StatusBadRequest, f)
	}
	// PATCH is not a NetSapiens method.
	wantErr(t, "PATCH", tn.do(http.MethodPatch, base+"/x", tn.root, fields{}), http.StatusMethodNotAllowed, "")
}

// TestDatetimeFormats: /v1 answers RFC 3339, /ns-api/v2 answers
// "YYYY-MM-DD HH:MM:SS" UTC; both accept both.
func TestDatetimeFormats(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	tests := []struct {
		name, path, in string
	}{
		{"v1, NetSapiens form", "/v1/subscriptions", "2043-10-04 17:16:36"},
		{"v1, RFC 3339", "/v1/subscriptions", "2043-10-04T17:16:36Z"},
		{"v1, RFC 3339 with an offset", "/v1/subscriptions", "2043-10-04T19:16:36+02:00"},
		{"ns, NetSapiens form", "/ns-api/v2/subscriptions", "2043-10-04 17:16:36"},
		{"ns, RFC 3339 with an offset", "/ns-api/v2/subscriptions", "2043-10-04T12:16:36-05:00"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("dt-%d", i)
			r := tn.do(http.MethodPost, tt.path, tn.root, sub(fields{"id": id, "subscription-expires-datetime": tt.in}))
			if r.Code != http.StatusOK && r.Code != http.StatusCreated {
				t.Fatalf("create: %d %s", r.Code, r.Body)
			}
			v1 := tn.getSub(id)
			if v1.Expires != "2043-10-04T17:16:36Z" {
				t.Fatalf("/v1 expires %q, want 2043-10-04T17:16:36Z", v1.Expires)
			}
			if _, err := time.Parse(time.RFC3339Nano, v1.Created); err != nil {
				t.Fatalf("/v1 created %q: %v", v1.Created, err)
			}
			r = tn.do(http.MethodGet, "/ns-api/v2/subscriptions/"+id, tn.root, nil)
			want(t, "ns GET", r, http.StatusOK)
			ns := nsView(t, "ns GET", r)
			if ns.Expires != "2043-10-04 17:16:36" || !nsDatetime.MatchString(ns.Created) {
				t.Fatalf("ns expires %q created %q, want NetSapiens datetimes", ns.Expires, ns.Created)
			}
		})
	}
	// Updates take both forms too.
	want(t, "v1 PATCH, NetSapiens form", tn.do(http.MethodPatch, "/v1/subscriptions/dt-0", tn.root,
		fields{"subscription-expires-datetime": "2044-01-02 03:04:05"}), http.StatusOK)
	if v := tn.getSub("dt-0"); v.Expires != "2044-01-02T03:04:05Z" {
		t.Fatalf("after PATCH: expires %q", v.Expires)
	}
	r := tn.do(http.MethodPut, "/ns-api/v2/subscriptions/dt-0", tn.root, fields{"subscription-expires-datetime": "2045-01-02T03:04:05Z"})
	want(t, "ns PUT, RFC 3339", r, http.StatusAccepted)
	if v := nsView(t, "ns PUT", r); v.Expires != "2045-01-02 03:04:05" {
		t.Fatalf("after ns PUT: expires %q", v.Expires)
	}
	for _, bad := range []string{"2043-10-04", "04/10/2043 17:16:36", "2043-10-04 17:16", "tomorrow"} {
		for _, path := range []string{"/v1/subscriptions", "/ns-api/v2/subscriptions"} {
			wantErr(t, path+" expires "+bad, tn.do(http.MethodPost, path, tn.root, sub(fields{"subscription-expires-datetime": bad})),
				http.StatusBadRequest, "subscription-expires-datetime")
		}
	}
}

// TestDuplicateParameters409: a create whose (model, post-url, reseller,
// domain, user) equal an existing subscription's is 409 on both paths,
// and of concurrent identical creates exactly one wins.
func TestDuplicateParameters409(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	body := sub(fields{"id": "first", "domain": "D1", "user": "U1", "reseller": "R1"})
	tn.createSub(tn.root, body)
	again := func(extra fields) fields {
		f := fields{}
		for k, v := range body {
			f[k] = v
		}
		delete(f, "id")
		for k, v := range extra {
			if v == nil {
				delete(f, k)
			} else {
				f[k] = v
			}
		}
		return f
	}
	e := wantErr(t, "same parameters", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, again(nil)), http.StatusConflict, "")
	if !strings.Contains(e.Error, "first") {
		t.Fatalf("409 %q does not name the existing subscription", e.Error)
	}
	wantErr(t, "same parameters, other fields differ", tn.do(http.MethodPost, "/v1/subscriptions", tn.root,
		again(fields{"encoding": "json", "filters": []fields{{"property": "x", "value": "y"}}})), http.StatusConflict, "")
	wantErr(t, "same parameters on /ns-api/v2", tn.do(http.MethodPost, "/ns-api/v2/subscriptions", tn.root, again(nil)), http.StatusConflict, "")
	wantErr(t, "same parameters on the domain path", tn.do(http.MethodPost, "/ns-api/v2/domains/D1/subscriptions", tn.root,
		again(fields{"domain": nil})), http.StatusConflict, "")
	// The existing id wins over the parameters: 409 naming id.
	wantErr(t, "same id", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, body), http.StatusConflict, "id")
	for _, f := range []string{"model", "post-url", "reseller", "domain", "user"} {
		v := map[string]any{"model": "cdr", "post-url": nextHookURL(), "reseller": "R2", "domain": "D2", "user": "U2"}[f]
		want(t, "differs in "+f, tn.do(http.MethodPost, "/v1/subscriptions", tn.root, again(fields{f: v})), http.StatusCreated)
	}
	// Deleted, the parameters are free again.
	want(t, "delete", tn.do(http.MethodDelete, "/v1/subscriptions/first", tn.root, nil), http.StatusNoContent)
	want(t, "after delete", tn.do(http.MethodPost, "/v1/subscriptions", tn.root, again(nil)), http.StatusCreated)

	// Concurrent identical creates: the FSM decides, one wins.
	const n = 8
	race := sub(fields{"domain": "race"})
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = tn.tryDo(http.MethodPost, "/v1/subscriptions", tn.root, race).Code
		}()
	}
	wg.Wait()
	slices.Sort(codes)
	wantCodes := slices.Repeat([]int{http.StatusConflict}, n)
	wantCodes[0] = http.StatusCreated
	if !slices.Equal(codes, wantCodes) {
		t.Fatalf("concurrent identical creates answered %v, want one 201 and %d 409", codes, n-1)
	}
}

// TestErrorBodyShape: {"code","message","error","field"} on every path,
// echo's own 404, 405 and 413 included.
func TestErrorBodyShape(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	big := rawBody(`{"model":"call","post-url":"` + hookURL + `","x":"` + strings.Repeat("a", 1<<20) + `"}`)
	ingest := tn.newToken(fsm.RoleIngest, "", "", "")
	tests := []struct {
		name, method, path, token string
		body                      any
		code                      int
		field                     string
	}{
		{"unknown route", http.MethodGet, "/nope", "", nil, http.StatusNotFound, ""},
		{"unknown /v1 route", http.MethodGet, "/v1/nope", tn.root, nil, http.StatusNotFound, ""},
		{"unknown /ns-api route", http.MethodGet, "/ns-api/v2/nope", tn.root, nil, http.StatusNotFound, ""},
		{"405 on /v1", http.MethodPut, "/v1/subscriptions", tn.root, nil, http.StatusMethodNotAllowed, ""},
		{"405 on /ns-api", http.MethodPatch, "/ns-api/v2/subscriptions/x", tn.root, nil, http.StatusMethodNotAllowed, ""},
		{"413 on /v1", http.MethodPost, "/v1/subscriptions", tn.root, big, http.StatusRequestEntityTooLarge, ""},
		{"413 on /ns-api", http.MethodPost, "/ns-api/v2/subscriptions", tn.root, big, http.StatusRequestEntityTooLarge, ""},
		{"401 on /v1", http.MethodGet, "/v1/subscriptions", "", nil, http.StatusUnauthorized, ""},
		{"401 with a wrong token", http.MethodGet, "/ns-api/v2/subscriptions", "hs_wrong", nil, http.StatusUnauthorized, ""},
		{"403 on /v1/tokens", http.MethodGet, "/v1/tokens", ingest, nil, http.StatusForbidden, ""},
		{"400 naming a field", http.MethodPost, "/v1/subscriptions", tn.root, fields{"model": "call"}, http.StatusBadRequest, "post-url"},
		{"400 naming a field on /ns-api", http.MethodPost, "/ns-api/v2/subscriptions", tn.root, fields{"post-url": hookURL}, http.StatusBadRequest, "model"},
		{"404 naming the id", http.MethodGet, "/ns-api/v2/subscriptions/nope", tn.root, nil, http.StatusNotFound, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := wantErr(t, tt.name, tn.do(tt.method, tt.path, tt.token, tt.body), tt.code, tt.field)
			if tt.field == "" && e.Message != e.Error {
				t.Fatalf("message %q, want the reason %q alone", e.Message, e.Error)
			}
		})
	}
	// Ingest and websocket errors carry the same members (ingest adds the
	// index of the event at fault).
	for _, tt := range []struct {
		name, method, path, ct, body string
		code                         int
		field                        string
	}{
		{"ingest 400 naming a field", http.MethodPost, "/v1/events", "application/json", `{"model":"Bad Model"}`, http.StatusBadRequest, "model"},
		{"ingest 415", http.MethodPost, "/v1/events", "image/png", `x`, http.StatusUnsupportedMediaType, ""},
		{"ingest 405", http.MethodGet, "/v1/events", "", ``, http.StatusMethodNotAllowed, ""},
		{"websocket 426", http.MethodGet, httpapi.WSPath, "", ``, http.StatusUpgradeRequired, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tn.base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.ct != "" {
				req.Header.Set("Content-Type", tt.ct)
			}
			req.Header.Set("Authorization", "Bearer "+tn.root)
			resp, err := tn.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(resp.Body); err != nil {
				t.Fatal(err)
			}
			wantErrShape(t, tt.name, resp.StatusCode, buf.Bytes(), tt.code, tt.field)
		})
	}
}

// wantErrShape checks an error body for code, message, error and field,
// allowing other members (ingest's index).
func wantErrShape(t testing.TB, what string, status int, body []byte, code int, field string) {
	t.Helper()
	if status != code {
		t.Fatalf("%s: status %d, want %d (%s)", what, status, code, body)
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: body %s: %v", what, body, err)
	}
	reason, _ := e["error"].(string)
	wantMsg := reason
	if field != "" {
		wantMsg = field + ": " + reason
	}
	if e["code"] != float64(code) || reason == "" || e["field"] != field || e["message"] != wantMsg {
		t.Fatalf("%s: body %s, want code %d, field %q, message %q", what, body, code, field, wantMsg)
	}
}

// TestPinnedToNonMember: a geo "no" subscription pinned to a node id that
// is no cluster member is refused naming the field; a geo "yes" one may
// prefer any server.
func TestPinnedToNonMember(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	self := tn.n.ID()
	wantErr(t, "geo no, ghost preferred-server", tn.do(http.MethodPost, "/v1/subscriptions", tn.root,
		sub(fields{"subscription-geo-support": "no", "preferred-server": "ghost"})), http.StatusBadRequest, "preferred-server")
	wantErr(t, "geo no, ghost server_preferred on /ns-api", tn.do(http.MethodPost, "/ns-api/v2/subscriptions", tn.root,
		sub(fields{"subscription-geo-support": "no", "server_preferred": "ghost"})), http.StatusBadRequest, "server_preferred")
	pinned := tn.createSub(tn.root, sub(fields{"id": "pinned", "subscription-geo-support": "no", "preferred-server": self}))
	if pinned.HomeServer != self || pinned.CurrentActiveServer != self {
		t.Fatalf("pinned to this node: home %q current %q", pinned.HomeServer, pinned.CurrentActiveServer)
	}
	tn.createSub(tn.root, sub(fields{"id": "home", "subscription-geo-support": "no"}))
	tn.createSub(tn.root, sub(fields{"id": "roams", "subscription-geo-support": "yes", "preferred-server": "ghost"}))
	// An update may not pin it to a ghost either.
	wantErr(t, "PATCH to geo no", tn.do(http.MethodPatch, "/v1/subscriptions/roams", tn.root,
		fields{"subscription-geo-support": "no"}), http.StatusBadRequest, "preferred-server")
	wantErr(t, "PATCH the pin to a ghost", tn.do(http.MethodPatch, "/v1/subscriptions/pinned", tn.root,
		fields{"preferred-server": "ghost"}), http.StatusBadRequest, "preferred-server")
	want(t, "PATCH of another field", tn.do(http.MethodPatch, "/v1/subscriptions/pinned", tn.root, fields{"batch-max": 5}), http.StatusOK)
	if v := tn.getSub("roams"); v.GeoSupport != "yes" || v.PreferredServer != "ghost" {
		t.Fatalf("refused PATCH changed the subscription: %+v", v)
	}
}
