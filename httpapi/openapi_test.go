package httpapi_test

// docs/openapi.yaml against the server: the routes of a running node and
// the spec's paths must be the same set, and real answers must match the
// spec's schemas (kin-openapi validates every request the test sends and
// every answer it gets).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/hookswitch/hookswitch/httpapi"
)

const openAPIFile = "../docs/openapi.yaml"

// notPublic are route prefixes the spec leaves out on purpose: the
// node-to-node endpoints and the profiler.
var notPublic = []string{"/internal/", "/debug/pprof/"}

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIFile)
	if err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", openAPIFile, err)
	}
	return doc
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// specPath turns an echo route path into the spec's form: ":id" is
// "{id}", and the trailing wildcard "*" is "{path}".
func specPath(p string) string {
	p = echoParam.ReplaceAllString(p, "{$1}")
	if strings.HasSuffix(p, "*") {
		p = strings.TrimSuffix(p, "*") + "{path}"
	}
	return p
}

// TestOpenAPIRoutes fails when a route the node serves is missing from
// docs/openapi.yaml, or the spec describes one it does not serve.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadSpec(t)
	tn := mustStartNode(t)

	served := map[string]bool{}
	for _, r := range tn.n.Routes() {
		if slices.ContainsFunc(notPublic, func(p string) bool { return strings.HasPrefix(r.Path, p) }) {
			continue
		}
		served[r.Method+" "+specPath(r.Path)] = true
	}
	if len(served) < 40 {
		t.Fatalf("the node lists only %d public routes: %v", len(served), served)
	}
	described := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[method+" "+path] = true
		}
	}
	var missing, extra []string
	for r := range served {
		if !described[r] {
			missing = append(missing, r)
		}
	}
	for r := range described {
		if !served[r] {
			extra = append(extra, r)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	for _, r := range missing {
		t.Errorf("the server serves %s, which %s does not describe", r, openAPIFile)
	}
	for _, r := range extra {
		t.Errorf("%s describes %s, which the server does not serve", openAPIFile, r)
	}
}

// specClient sends requests to a node and validates each request and its
// answer against the spec.
type specClient struct {
	t      *testing.T
	tn     *testNode
	router routers.Router
	doc    *openapi3.T
	seen   map[string]bool // "METHOD /path STATUS" validated
}

func newSpecClient(t *testing.T, tn *testNode) *specClient {
	// The dashboard's scripts and styles are text, as the spec says.
	for _, ct := range []string{"text/javascript", "text/css", "text/html"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
	doc := loadSpec(t)
	doc.Servers = openapi3.Servers{{URL: tn.base}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &specClient{t: t, tn: tn, router: router, doc: doc, seen: map[string]bool{}}
}

// call sends method path with body (JSON-encoded unless a string) and the
// root token unless token is "-" (none); it checks the status is want,
// validates both sides against the spec, and returns the decoded answer.
func (sc *specClient) call(method, path, token string, body any, want int) map[string]any {
	sc.t.Helper()
	var raw []byte
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		raw, ct = []byte(b), "application/x-www-form-urlencoded"
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			sc.t.Fatal(err)
		}
		ct = "application/json"
	}
	newReq := func() *http.Request {
		req, err := http.NewRequest(method, sc.tn.base+path, bytes.NewReader(raw))
		if err != nil {
			sc.t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		switch token {
		case "-":
		case "":
			req.Header.Set("Authorization", "Bearer "+sc.tn.root)
		default:
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req
	}
	// The request as the spec sees it.
	vreq := newReq()
	route, params, err := sc.router.FindRoute(vreq)
	if err != nil {
		sc.t.Fatalf("%s %s: not in the spec: %v", method, path, err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		sc.t.Errorf("%s %s: the request does not match the spec: %v", method, path, err)
	}
	resp, err := sc.tn.hc.Do(newReq())
	if err != nil {
		sc.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		sc.t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	if resp.StatusCode != want {
		sc.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, got)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
	out.SetBodyBytes(got)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		sc.t.Errorf("%s %s → %d: the answer does not match the spec: %v\n%s", method, path, resp.StatusCode, err, got)
	}
	sc.seen[fmt.Sprintf("%s %s %d", method, route.Path, resp.StatusCode)] = true
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && len(got) > 0 && got[0] == '{' {
		if err := json.Unmarshal(got, &m); err != nil {
			sc.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return m
}

// TestOpenAPIAnswers validates real answers of a node, successes and
// errors, against the spec's schemas.
func TestOpenAPIAnswers(t *testing.T) {
	tn := mustStartNode(t)
	sc := newSpecClient(t, tn)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	sc.call(http.MethodGet, "/healthz", "-", nil, http.StatusOK)
	sc.call(http.MethodGet, "/readyz", "-", nil, http.StatusOK)
	sc.call(http.MethodGet, "/metrics", "-", nil, http.StatusOK)
	sc.call(http.MethodGet, "/ui/app.js", "-", nil, http.StatusOK)

	// Subscriptions on /v1.
	sub := sc.call(http.MethodPost, "/v1/subscriptions", "", map[string]any{
		"model": "call", "post-url": hook.URL + "/a", "domain": "spec.example",
		"filters": []map[string]string{{"property": "term-user", "value": "1001"}},
	}, http.StatusCreated)
	id, _ := sub["id"].(string)
	if id == "" {
		t.Fatalf("create answered no id: %v", sub)
	}
	p := "/v1/subscriptions/" + url.PathEscape(id)
	sc.call(http.MethodGet, "/v1/subscriptions", "", nil, http.StatusOK)
	sc.call(http.MethodGet, "/v1/subscriptions?model=call&status=pending", "", nil, http.StatusOK)
	sc.call(http.MethodGet, p, "", nil, http.StatusOK)
	sc.call(http.MethodPatch, p, "", map[string]any{"batch-max": 10}, http.StatusOK)
	sc.call(http.MethodPut, p, "", map[string]any{"model": "call", "post-url": hook.URL + "/a", "domain": "spec.example", "encoding": "json"}, http.StatusOK)
	sc.call(http.MethodPost, p+"/pause", "", nil, http.StatusOK)
	sc.call(http.MethodPost, p+"/resume", "", nil, http.StatusOK)
	sc.call(http.MethodGet, p+"/secret", "", nil, http.StatusOK)
	sc.call(http.MethodGet, p+"/stats", "", nil, http.StatusOK)
	sc.call(http.MethodPost, p+"/replay", "", map[string]any{"from": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}, http.StatusOK)
	// The test event goes to a loopback receiver; a 200 whatever it answered.
	sc.call(http.MethodPost, p+"/test", "", nil, http.StatusOK)

	// Errors have the Error schema.
	sc.call(http.MethodGet, "/v1/subscriptions/no-such-sub", "", nil, http.StatusNotFound)
	sc.call(http.MethodPost, "/v1/subscriptions", "", map[string]any{"model": "call", "post-url": "ftp://x", "domain": "spec.example"}, http.StatusBadRequest)
	sc.call(http.MethodGet, "/v1/subscriptions", "-", nil, http.StatusUnauthorized)

	// Ingest, as JSON and as a form.
	sc.call(http.MethodPost, "/v1/events", "-", []map[string]any{{"model": "call", "domain": "spec.example", "term-user": "1001"}}, http.StatusAccepted)
	sc.call(http.MethodPost, "/v1/events", "-", "model=cdr&domain=spec.example", http.StatusAccepted)
	sc.call(http.MethodPost, "/v1/events", "-", `{"model":`, http.StatusBadRequest)
	// A websocket path without an upgrade: 426 with the Error body.
	sc.call(http.MethodGet, "/v1/events/ws?model=call", "", nil, http.StatusUpgradeRequired)

	// The upgrade itself, at every websocket path: 101, as the spec says.
	for _, path := range httpapi.WSPaths {
		c, resp, err := tn.wsDial(path, http.Header{"Authorization": {"Bearer " + tn.root}})
		if err != nil {
			t.Fatalf("websocket %s: %v", path, err)
		}
		c.CloseNow()
		item := sc.doc.Paths.Find(path)
		if item == nil || item.Get == nil || item.Get.Responses.Status(resp.StatusCode) == nil {
			t.Errorf("GET %s answered %d, which the spec does not list", path, resp.StatusCode)
		}
		sc.seen[fmt.Sprintf("GET %s %d", path, resp.StatusCode)] = true
	}

	// Tokens.
	tok := sc.call(http.MethodPost, "/v1/tokens", "", map[string]any{"role": "domain", "domain": "spec.example", "name": "spec"}, http.StatusCreated)
	sc.call(http.MethodGet, "/v1/tokens", "", nil, http.StatusOK)
	domTok, _ := tok["token"].(string)
	sc.call(http.MethodGet, "/v1/tokens", domTok, nil, http.StatusForbidden)
	sc.call(http.MethodDelete, "/v1/tokens/"+url.PathEscape(tok["id"].(string)), "", nil, http.StatusNoContent)

	// Cluster.
	sc.call(http.MethodGet, "/v1/cluster", "", nil, http.StatusOK)
	sc.call(http.MethodGet, "/v1/cluster/self", "-", nil, http.StatusOK)
	self := tn.n.NodeID()
	sc.call(http.MethodPost, "/v1/cluster/nodes/"+self+"/drain", "", nil, http.StatusOK)
	sc.call(http.MethodPost, "/v1/cluster/nodes/"+self+"/undrain", "", nil, http.StatusOK)
	sc.call(http.MethodPost, "/v1/cluster/join", "-", map[string]any{"id": "x", "raft-addr": "127.0.0.1:1", "http-addr": "127.0.0.1:2", "token-hash": "00"}, http.StatusUnauthorized)

	// NetSapiens v2.
	ns := sc.call(http.MethodPost, "/ns-api/v2/subscriptions", "", map[string]any{"model": "call", "post-url": hook.URL + "/ns", "domain": "spec.example"}, http.StatusOK)
	nsID, _ := ns["id"].(string)
	np := "/ns-api/v2/subscriptions/" + url.PathEscape(nsID)
	sc.call(http.MethodGet, "/ns-api/v2/subscriptions", "", nil, http.StatusOK)
	sc.call(http.MethodGet, np, "", nil, http.StatusOK)
	sc.call(http.MethodPut, np, "", map[string]any{"batch-max": 5}, http.StatusAccepted)
	dp := "/ns-api/v2/domains/spec.example/subscriptions"
	sc.call(http.MethodGet, dp, "", nil, http.StatusOK)
	sc.call(http.MethodGet, dp+"/"+url.PathEscape(nsID), "", nil, http.StatusOK)
	sc.call(http.MethodPut, dp+"/"+url.PathEscape(nsID), "", map[string]any{"timeout-ms": 2000}, http.StatusAccepted)
	sc.call(http.MethodDelete, dp+"/"+url.PathEscape(nsID), "", nil, http.StatusAccepted)
	nd := sc.call(http.MethodPost, dp, "", map[string]any{"model": "cdr", "post-url": hook.URL + "/nsd"}, http.StatusOK)
	sc.call(http.MethodDelete, "/ns-api/v2/subscriptions/"+url.PathEscape(nd["id"].(string)), "", nil, http.StatusAccepted)
	sc.call(http.MethodGet, np, "", nil, http.StatusNotFound)

	sc.call(http.MethodDelete, p, "", nil, http.StatusNoContent)

	if len(sc.seen) < 40 {
		t.Errorf("only %d answers validated", len(sc.seen))
	}
}
