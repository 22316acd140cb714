package httpapi_test

// Tests of the websocket event endpoint (DESIGN.md "Websocket API") against
// a real node: tokens from its replicated state, events ingested over
// POST /v1/events, the endpoint on its three paths.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/hub"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/node"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// wsWait bounds waiting for one websocket message.
const wsWait = 10 * time.Second

// wsURL is the websocket URL of path (with query) on the node.
func (tn *testNode) wsURL(pathAndQuery string) string {
	u := strings.Replace(tn.base, "http://", "ws://", 1)
	u = strings.Replace(u, "https://", "wss://", 1)
	return u + pathAndQuery
}

// wsDial opens a websocket; header may carry Authorization.
func (tn *testNode) wsDial(pathAndQuery string, header http.Header) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, tn.wsURL(pathAndQuery), &websocket.DialOptions{HTTPHeader: header, HTTPClient: tn.hc})
	if c != nil {
		c.SetReadLimit(1 << 20)
	}
	return c, resp, err
}

// mustWS opens a websocket or fails the test; it is closed when the test ends.
func (tn *testNode) mustWS(pathAndQuery string, header http.Header) *websocket.Conn {
	tn.t.Helper()
	c, resp, err := tn.wsDial(pathAndQuery, header)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		tn.t.Fatalf("websocket %s: %v %s", pathAndQuery, err, status)
	}
	tn.t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func basic(user, pw string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))}}
}

// ingest stores events (JSON objects) and returns their event-ids.
func (tn *testNode) ingest(events ...string) []string {
	tn.t.Helper()
	r := tn.do(http.MethodPost, "/v1/events", "", rawBody("["+strings.Join(events, ",")+"]"))
	want(tn.t, "POST /v1/events", r, http.StatusAccepted)
	var res struct {
		Accepted int      `json:"accepted"`
		IDs      []string `json:"event-ids"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil || res.Accepted != len(events) {
		tn.t.Fatalf("POST /v1/events: %s (%v)", r.Body, err)
	}
	return res.IDs
}

// wsRead reads one text message as a JSON object.
func wsRead(t testing.TB, c *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("websocket read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("websocket message type %v, want text", typ)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("websocket message %q is not a JSON object: %v", data, err)
	}
	return m
}

func wsSend(t testing.TB, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("websocket write: %v", err)
	}
}

// wsReply sends msg and returns the reply, checking it is one: a type,
// the correlationId echoed (want: its JSON text) and a time of now.
func wsReply(t testing.TB, c *websocket.Conn, msg, wantCorr, wantType string) map[string]any {
	t.Helper()
	before := time.Now().UnixMilli()
	wsSend(t, c, msg)
	r := wsRead(t, c)
	if _, isEvent := r["event-id"]; isEvent {
		t.Fatalf("after %s: got an event %v, want a reply", msg, r)
	}
	if r["type"] != wantType {
		t.Fatalf("reply to %s: %v, want type %q", msg, r, wantType)
	}
	corr, _ := json.Marshal(r["correlationId"])
	if _, ok := r["correlationId"]; !ok || string(corr) != wantCorr {
		t.Fatalf("reply to %s: correlationId %s, want %s", msg, corr, wantCorr)
	}
	ms, ok := r["time"].(float64)
	if !ok || int64(ms) < before-1 || int64(ms) > time.Now().UnixMilli()+1 {
		t.Fatalf("reply to %s: time %v not a unix ms time of now", msg, r["time"])
	}
	if wantType == "error" {
		if e, _ := r["error"].(string); e == "" {
			t.Fatalf("error reply to %s has no error message: %v", msg, r)
		}
	}
	return r
}

// readUntil reads events until one has marker = value; it returns those
// before it.
func readUntil(t testing.TB, c *websocket.Conn, marker, value string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for {
		m := wsRead(t, c)
		if _, isEvent := m["event-id"]; !isEvent {
			t.Fatalf("unexpected non-event message %v", m)
		}
		if m[marker] == value {
			return out
		}
		out = append(out, m)
	}
}

func ints(t testing.TB, evs []map[string]any, field string) []int {
	t.Helper()
	out := []int{}
	for _, e := range evs {
		f, ok := e[field].(float64)
		if !ok {
			t.Fatalf("event without %q: %v", field, e)
		}
		out = append(out, int(f))
	}
	return out
}

// TestWSISymphonyFilterExamples runs every filter example of the
// iSymphony websocket documentation (its quoting fixed: see
// TestISymphonyFilterExamplesMatch), one by one, on one connection opened
// the iSymphony way (its path, HTTP realm auth with the token as password),
// against events carrying iSymphony's base properties type and time.
func TestWSISymphonyFilterExamples(t *testing.T) {
	tn := mustStartNode(t)
	c := tn.mustWS(httpapi.WSPathISymphony, basic("manager", tn.root))
	events := []string{
		// Every iSymphony event carries its base properties type and
		// time (unix ms); 6 is the documentation's userLogin example.
		`{"model":"isym","i":0,"type":"dial","time":1436889915001,"username":"mikey"}`,
		`{"model":"isym","i":1,"type":"dial","time":1436889915002}`,
		`{"model":"isym","i":2,"type":"login","time":1436889915003,"username":"mikey"}`,
		`{"model":"isym","i":3,"type":"logout","time":1436889915004,"username":"mikey"}`,
		`{"model":"isym","i":4,"type":"login","time":1436889915005,"username":"bob"}`,
		`{"model":"isym","i":5,"type":"logout","time":1436889915006}`,
		`{"model":"isym","i":6,"coreServerId":"e5c01703-3c6d-429a-8712-66c826064e65","port":57042,"ip":"127.0.0.1","time":1436889915953,"type":"userLogin","userId":"e7577c7b-5d58-46a5-a834-386f52401c19","userLoginId":"0c51236d-5f93-4379-8997-8a840a511497","username":"mike"}`,
		`{"model":"isym","i":7,"type":"hangup","time":1436889915008,"userId":"e7577c7b"}`,
		`{"model":"other","i":8}`,
	}
	cases := []struct {
		name    string
		corr    string
		filters string
		marker  string // an event the filters admit, sent last
		want    []int
	}{
		{"only dial", `"123456"`, `[{"property":"type","value":"dial"}]`,
			`{"model":"isym","type":"dial","time":1436889916000,"end":"only dial"}`, []int{0, 1}},
		{"login and logout", `"2"`, `[{"property":"type","value":"login"},{"property":"type","value":"logout"}]`,
			`{"model":"isym","type":"logout","time":1436889916000,"end":"login and logout"}`, []int{2, 3, 4, 5}},
		{"login and logout for mikey", `"3"`, `[{"property":"type","value":"login"},{"property":"type","value":"logout"},{"property":"username","value":"mikey"}]`,
			`{"model":"isym","type":"login","time":1436889916000,"username":"mikey","end":"login and logout for mikey"}`, []int{2, 3}},
		{"events that reference a user", `"4"`, `[{"property":"username","value":"*"}]`,
			`{"model":"isym","type":"x","time":1436889916000,"username":"x","end":"events that reference a user"}`, []int{0, 2, 3, 4, 6}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wsReply(t, c, `{"type":"filter","correlationId":`+tc.corr+`,"filters":`+tc.filters+`}`, tc.corr, "success")
			tn.ingest(append(slices.Clone(events), tc.marker)...)
			got := ints(t, readUntil(t, c, "end", tc.name), "i")
			if !slices.Equal(got, tc.want) {
				t.Fatalf("filters %s let in events %v, want %v", tc.filters, got, tc.want)
			}
		})
	}
	// Without a correlation id the reply carries null (as iSymphony's).
	wsReply(t, c, `{"type":"filter","filters":[]}`, "null", "success")
	ids := tn.ingest(`{"model":"any","n":1}`)
	if m := wsRead(t, c); m["event-id"] != ids[0] || m["model"] != "any" {
		t.Fatalf("empty filter list: got %v, want every event", m)
	}
}

// TestWSMalformedFilterMessages: each bad message gets an error reply
// (correlationId echoed when it could be read), and the connection and
// the filters in place stay.
func TestWSMalformedFilterMessages(t *testing.T) {
	tn := mustStartNode(t)
	c := tn.mustWS(httpapi.WSPath+"?authkey="+url.QueryEscape(tn.root), nil)
	wsReply(t, c, `{"type":"filter","correlationId":"ok","filters":[{"property":"type","value":"dial"}]}`, `"ok"`, "success")
	tooMany := make([]string, 257)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf(`{"property":"p%d","value":"v"}`, i)
	}
	bad := []struct{ msg, corr string }{
		{`not json`, "null"},
		{``, "null"},
		{`{"type":"filter",`, "null"},
		{`[{"type":"filter"}]`, "null"},
		{`"filter"`, "null"},
		{`{"type":"filter","correlationId":"c1","filters":{"property":"type","value":"dial"}}`, `"c1"`},
		{`{"type":"filter","correlationId":"c2","filters":"type=dial"}`, `"c2"`},
		{`{"type":"filter","correlationId":"c3","filters":null}`, `"c3"`},
		{`{"type":"filter","correlationId":"c4"}`, `"c4"`},
		{`{"type":"filter","correlationId":"c5","filters":[{"value":"dial"}]}`, `"c5"`},
		{`{"type":"filter","correlationId":"c6","filters":[{"property":"","value":"dial"}]}`, `"c6"`},
		{`{"type":"filter","correlationId":"c7","filters":[{"property":7,"value":"dial"}]}`, `"c7"`},
		{`{"type":"filter","correlationId":"c8","filters":[{"property":"type"}]}`, `"c8"`},
		{`{"type":"filter","correlationId":"c9","filters":[{"property":"type","value":null}]}`, `"c9"`},
		{`{"type":"filter","correlationId":"c10","filters":[{"property":"type","value":{"a":1}}]}`, `"c10"`},
		{`{"type":"filter","correlationId":"c11","filters":["type"]}`, `"c11"`},
		{`{"type":"subscribe","correlationId":"c12","filters":[]}`, `"c12"`},
		{`{"correlationId":"c13","filters":[]}`, `"c13"`},
		{`{"type":7,"correlationId":"c14","filters":[]}`, `"c14"`},
		{`{"type":"filter","correlationId":"c15","filters":[` + strings.Join(tooMany, ",") + `]}`, `"c15"`},
		{`{"type":"filter","correlationId":42,"filters":[1]}`, `42`},
		{`{"type":"filter","correlationId":{"a":[1,2]},"filters":7}`, `{"a":[1,2]}`},
	}
	for _, b := range bad {
		r := wsReply(t, c, b.msg, b.corr, "error")
		t.Logf("%.60s → %s", b.msg, r["error"])
	}
	// A binary frame is read like a text one.
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, []byte(`{"type":"nope","correlationId":"bin"}`)); err != nil {
		t.Fatal(err)
	}
	if r := wsRead(t, c); r["type"] != "error" || r["correlationId"] != "bin" {
		t.Fatalf("reply to a binary message: %v", r)
	}
	// The connection is still there with the filters of "ok".
	tn.ingest(`{"model":"m","type":"login","n":1}`, `{"model":"m","type":"dial","n":2}`)
	if m := wsRead(t, c); m["n"] != float64(2) {
		t.Fatalf("after the errors got %v, want the dial event", m)
	}
	// Numbers and booleans are taken by their JSON text.
	wsReply(t, c, `{"type":"filter","correlationId":"num","filters":[{"property":"n","value":3},{"property":"ok","value":true}]}`, `"num"`, "success")
	tn.ingest(`{"model":"m","n":3,"ok":false}`, `{"model":"m","n":4,"ok":true}`, `{"model":"m","n":3,"ok":true}`)
	if m := wsRead(t, c); m["n"] != float64(3) || m["ok"] != true {
		t.Fatalf("number/boolean filter: got %v", m)
	}
}

// TestWSAuthAndPaths: refusals before the upgrade with JSON errors; the
// three paths and the three ways to pass a token.
func TestWSAuthAndPaths(t *testing.T) {
	tn := mustStartNode(t)
	ingestTok := tn.newToken("ingest", "", "", "")
	refused := func(what, pathAndQuery string, h http.Header, code int, wantMsg string) {
		t.Helper()
		c, resp, err := tn.wsDial(pathAndQuery, h)
		if err == nil {
			c.CloseNow()
			t.Fatalf("%s: connected, want %d", what, code)
		}
		if resp == nil || resp.StatusCode != code {
			t.Fatalf("%s: %v, want HTTP %d", what, err, code)
		}
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s: Content-Type %q", what, ct)
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || !strings.Contains(e.Message, wantMsg) || e.Error == "" || e.Code != code {
			t.Fatalf("%s: error body %+v (%v), want code %d and a message mentioning %q", what, e, err, code, wantMsg)
		}
		if code == http.StatusUnauthorized && len(resp.Header.Values("WWW-Authenticate")) == 0 {
			t.Fatalf("%s: 401 without WWW-Authenticate", what)
		}
	}
	refused("no token", httpapi.WSPathEnswitch, nil, http.StatusUnauthorized, "authkey")
	refused("wrong authkey", httpapi.WSPathEnswitch+"?authkey=abcdefghijklmnopqrstuvwxyz123456", nil, http.StatusUnauthorized, "invalid token")
	refused("wrong basic password", httpapi.WSPathISymphony, basic("manager", "manag3rpa55word"), http.StatusUnauthorized, "invalid token")
	refused("wrong bearer", httpapi.WSPath, bearer("nope"), http.StatusUnauthorized, "invalid token")
	refused("ingest token", httpapi.WSPath, bearer(ingestTok), http.StatusForbidden, "(ingest) may not watch events")
	refused("bad since", httpapi.WSPath+"?since=last-tuesday", bearer(tn.root), http.StatusBadRequest, "since")
	refused("unknown event-id", httpapi.WSPath+"?since=0123456789abcdef-5", bearer(tn.root), http.StatusBadRequest, "since")
	refused("cross-origin basic", httpapi.WSPath, func() http.Header {
		h := basic("manager", tn.root)
		h.Set("Origin", "https://evil.example")
		return h
	}(), http.StatusForbidden, "cross-origin")
	// The Basic header wins over ?authkey=: adding one changes nothing.
	refused("cross-origin basic with an authkey", httpapi.WSPath+"?authkey=x", func() http.Header {
		h := basic("manager", tn.root)
		h.Set("Origin", "https://evil.example")
		return h
	}(), http.StatusForbidden, "cross-origin")

	// Not a websocket request: 426 after the auth checks.
	r := tn.do(http.MethodGet, httpapi.WSPath, tn.root, nil)
	wantErr(t, "plain GET", r, http.StatusUpgradeRequired, "")
	r = tn.do(http.MethodGet, httpapi.WSPath, "", nil)
	wantErr(t, "plain GET without a token", r, http.StatusUnauthorized, "")

	// Every path, every way to pass the token; a cross-origin page may use
	// ?authkey=.
	withOrigin := http.Header{"Origin": {"https://crm.example"}}
	conns := []*websocket.Conn{
		tn.mustWS(httpapi.WSPath, bearer(tn.root)),
		tn.mustWS(httpapi.WSPathEnswitch+"?authkey="+url.QueryEscape(tn.root), nil),
		tn.mustWS(httpapi.WSPathISymphony, basic("manager", tn.root)),
		tn.mustWS(httpapi.WSPath+"?authkey="+url.QueryEscape(tn.root), withOrigin),
		tn.mustWS(httpapi.WSPath, http.Header{"Authorization": {"bearer " + tn.root}}),
	}
	ids := tn.ingest(`{"model":"call","n":1}`)
	for i, c := range conns {
		if m := wsRead(t, c); m["event-id"] != ids[0] {
			t.Fatalf("connection %d got %v", i, m)
		}
	}
}

// TestWSScopeBounds: a token's scope bounds what its connection sees,
// whatever its filters ask for.
func TestWSScopeBounds(t *testing.T) {
	tn := mustStartNode(t)
	domA := tn.newToken("domain", "", "a.example", "")
	userA := tn.newToken("user", "", "a.example", "100")
	resR2 := tn.newToken("reseller", "r2", "", "")
	type conn struct {
		name    string
		c       *websocket.Conn
		filters string
		want    []int
	}
	conns := []conn{
		{"domain a, no filters", tn.mustWS(httpapi.WSPath, bearer(domA)), "", []int{0, 2, 4}},
		{"domain a asking for b", tn.mustWS(httpapi.WSPath, bearer(domA)), `[{"property":"domain","value":"b.example"}]`, []int{4}}, // 4 is in both
		{"domain a asking for any domain", tn.mustWS(httpapi.WSPath, bearer(domA)), `[{"property":"domain","value":"*"}]`, []int{0, 2, 4}},
		{"domain a asking for the auditlog", tn.mustWS(httpapi.WSPath, bearer(domA)), `[{"property":"model","value":"auditlog"}]`, []int{}},
		{"user 100@a", tn.mustWS(httpapi.WSPathEnswitch+"?authkey="+url.QueryEscape(userA), nil), "", []int{0, 4}},
		{"user 100@a asking for user 200", tn.mustWS(httpapi.WSPath, bearer(userA)), `[{"property":"user","value":"200"}]`, []int{4}},
		{"reseller r2", tn.mustWS(httpapi.WSPath, bearer(resR2)), "", []int{1, 4, 5}},
		{"super", tn.mustWS(httpapi.WSPath, bearer(tn.root)), "", []int{0, 1, 2, 3, 4, 5}},
	}
	for i, c := range conns {
		if c.filters != "" {
			wsReply(t, c.c, `{"type":"filter","correlationId":"`+strconv.Itoa(i)+`","filters":`+c.filters+`}`, `"`+strconv.Itoa(i)+`"`, "success")
		}
	}
	tn.ingest(
		`{"model":"call","i":0,"reseller":"r1","domain":"a.example","user":"100"}`,
		`{"model":"call","i":1,"reseller":"r2","domain":"b.example","user":"100"}`,
		`{"model":"call","i":2,"reseller":"r1","domain":"a.example","user":"200"}`,
		`{"model":"call","i":3,"reseller":"r1","domain":"b.example","user":"200"}`,
		`{"model":"call","i":4,"reseller":["r1","r2"],"domain":["b.example","a.example"],"user":["200","100"]}`,
		`{"model":"auditlog","i":5,"reseller":"r2","domain":"a.example","target_domain":"b.example"}`,
	)
	// A last event every connection sees (and that passes every filter
	// above but the auditlog one) marks the end.
	tn.ingest(`{"model":"call","reseller":["r1","r2"],"domain":["a.example","b.example"],"user":["100","200"],"end":"yes"}`)
	for _, c := range conns {
		if c.name == "domain a asking for the auditlog" {
			continue
		}
		got := ints(t, readUntil(t, c.c, "end", "yes"), "i")
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: saw events %v, want %v", c.name, got, c.want)
		}
	}
	// The auditlog-asking domain connection got nothing: a filter change
	// to everything shows the next event first.
	c := conns[3].c
	wsReply(t, c, `{"type":"filter","correlationId":"all","filters":[]}`, `"all"`, "success")
	tn.ingest(`{"model":"call","domain":"a.example","after":"yes"}`)
	if m := wsRead(t, c); m["after"] != "yes" {
		t.Fatalf("domain a asking for the auditlog saw %v", m)
	}
}

// TestWSModelQueryAndReplace: ?model= sets the initial filters; a filter
// message replaces them.
func TestWSModelQueryAndReplace(t *testing.T) {
	tn := mustStartNode(t)
	c := tn.mustWS(httpapi.WSPath+"?model=call,cdr", bearer(tn.root))
	tn.ingest(`{"model":"agent","n":1}`, `{"model":"cdr","n":2}`, `{"model":"message","n":3}`, `{"model":"call","n":4}`)
	if a, b := wsRead(t, c), wsRead(t, c); a["n"] != float64(2) || b["n"] != float64(4) {
		t.Fatalf("?model=call,cdr: got %v then %v", a, b)
	}
	wsReply(t, c, `{"type":"filter","correlationId":"x","filters":[{"property":"model","value":"agent"}]}`, `"x"`, "success")
	tn.ingest(`{"model":"call","n":5}`, `{"model":"agent","n":6}`)
	if m := wsRead(t, c); m["n"] != float64(6) {
		t.Fatalf("after replacing: got %v", m)
	}
}

// eventSeq is the log sequence number of an event-id.
func eventSeq(t testing.TB, id any) uint64 {
	t.Helper()
	s, _ := id.(string)
	_, seq, err := dispatch.ParseEventID(s)
	if err != nil {
		t.Fatalf("event-id %v: %v", id, err)
	}
	return seq
}

// TestWSSinceReplayThenLive: ?since= replays from the log, then the
// connection goes live, with no gap and no duplicate, while events keep
// coming in.
func TestWSSinceReplayThenLive(t *testing.T) {
	tn := mustStartNode(t)
	before := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	var first []string
	for i := range 50 {
		first = append(first, fmt.Sprintf(`{"model":"call","n":%d}`, i))
	}
	ids := tn.ingest(first...)
	startSeq := eventSeq(t, ids[0])

	// Replay from an event-id: the events after it.
	c := tn.mustWS(httpapi.WSPath+"?since="+url.QueryEscape(ids[9]), bearer(tn.root))
	for i := 10; i < 50; i++ {
		if m := wsRead(t, c); m["event-id"] != ids[i] {
			t.Fatalf("replay: message %d is %v, want %s", i, m["event-id"], ids[i])
		}
	}
	// Replay from a time, with a model filter.
	ct := tn.mustWS(httpapi.WSPath+"?model=call&since="+url.QueryEscape(before), bearer(tn.root))
	for i := range 50 {
		if m := wsRead(t, ct); m["event-id"] != ids[i] {
			t.Fatalf("replay by time: message %d is %v, want %s", i, m["event-id"], ids[i])
		}
	}

	// Now many connections join at random points of a steady stream.
	const total = 3000
	var (
		mu    sync.Mutex
		known = slices.Clone(ids)
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; n < total; {
			batch := []string{}
			for range 1 + n%7 {
				batch = append(batch, fmt.Sprintf(`{"model":"call","n":%d}`, 50+n))
				n++
			}
			r := tn.tryDo(http.MethodPost, "/v1/events", "", rawBody("["+strings.Join(batch, ",")+"]"))
			if r.Code != http.StatusAccepted {
				t.Errorf("ingest: %d %s", r.Code, r.Body)
				return
			}
			var res struct {
				IDs []string `json:"event-ids"`
			}
			_ = json.Unmarshal(r.Body, &res)
			mu.Lock()
			known = append(known, res.IDs...)
			mu.Unlock()
		}
	}()
	lastSeq := startSeq + 50 + total - 1
	var wg sync.WaitGroup
	for i := range 12 {
		time.Sleep(time.Duration(5+i*7) * time.Millisecond)
		mu.Lock()
		since := known[(len(known)*(i+1))/14]
		mu.Unlock()
		query := "?since=" + url.QueryEscape(since)
		if i%4 == 3 {
			query = "" // live only
		}
		wc := tn.mustWS(httpapi.WSPath+query, bearer(tn.root))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var want uint64
			if query != "" {
				want = eventSeq(t, since) + 1
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for {
				_, data, err := wc.Read(ctx)
				if err != nil {
					t.Errorf("connection %d (since %s): %v after seq %d", i, since, err, want-1)
					return
				}
				var m struct {
					ID string `json:"event-id"`
				}
				if err := json.Unmarshal(data, &m); err != nil {
					t.Errorf("connection %d: %s", i, data)
					return
				}
				_, seq, _ := dispatch.ParseEventID(m.ID)
				if want == 0 {
					want = seq // live: from wherever it joined
				}
				if seq != want {
					t.Errorf("connection %d (since %s): got seq %d, want %d (gap or duplicate)", i, since, seq, want)
					return
				}
				want++
				if seq == lastSeq {
					return
				}
			}
		}()
	}
	<-done
	wg.Wait()
}

// startWSNode starts a single-node cluster like mustStartNode, with
// changes to its configuration; a TLS node is reached over https.
func startWSNode(t *testing.T, change func(cfg *node.Config)) *testNode {
	t.Helper()
	lw := &testLog{t: t}
	t.Cleanup(lw.close)
	return startNodeLogging(t, change, slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// startNodeLogging is startWSNode with the node's logger given.
func startNodeLogging(t *testing.T, change func(cfg *node.Config), logger *slog.Logger) *testNode {
	t.Helper()
	cfg := node.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.Bootstrap = true
	cfg.RaftHeartbeatTimeout = 200 * time.Millisecond
	cfg.RaftElectionTimeout = 200 * time.Millisecond
	change(&cfg)
	n, err := node.Start(cfg, "test", logger)
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	scheme := "http://"
	hc := &http.Client{Timeout: 15 * time.Second}
	if cfg.TLSCert != "" {
		scheme = "https://"
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // test certificate
	}
	tn := &testNode{t: t, n: n, dataDir: cfg.DataDir, base: scheme + n.HTTPAddr(), hc: hc}
	t.Cleanup(func() {
		hc.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, node.RootTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	tn.root = strings.TrimSpace(string(b))
	waitFor(t, func() (bool, string) {
		r := tn.tryDo(http.MethodGet, "/v1/subscriptions", tn.root, nil)
		return r.Code == http.StatusOK, fmt.Sprintf("GET /v1/subscriptions: %d %s", r.Code, r.Body)
	}, readyTimeout)
	return tn
}

// TestWSAllowRefusesBeforeUpgrade: an address outside ws-allow gets 403
// before any token check.
func TestWSAllowRefusesBeforeUpgrade(t *testing.T) {
	tn := startWSNode(t, func(cfg *node.Config) { cfg.WSAllow = node.MustParseCIDRs("10.0.0.0/8") })
	for _, p := range httpapi.WSPaths {
		_, resp, err := tn.wsDial(p+"?authkey="+url.QueryEscape(tn.root), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s from loopback outside ws-allow: %v, want 403", p, err)
		}
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if !strings.Contains(e.Error, "ws-allow") {
			t.Fatalf("403 body %q does not name ws-allow", e.Error)
		}
	}
	// Without a token too: the address is checked first.
	_, resp, _ := tn.wsDial(httpapi.WSPath, nil)
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no token from outside ws-allow: %v, want 403", resp)
	}
}

// TestWSOverTLS: with a certificate the endpoint is wss.
func TestWSOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	tn := startWSNode(t, func(cfg *node.Config) { cfg.TLSCert, cfg.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(tn.wsURL(""), "wss://") {
		t.Fatalf("url %s", tn.wsURL(""))
	}
	c := tn.mustWS(httpapi.WSPathEnswitch+"?authkey="+url.QueryEscape(tn.root), nil)
	ids := tn.ingest(`{"model":"call","tls":true}`)
	if m := wsRead(t, c); m["event-id"] != ids[0] || m["tls"] != true {
		t.Fatalf("over wss got %v", m)
	}
}

func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// wsHandlerOnNode serves a websocket handler built with opts on the node's
// tokens, with its own hub on an event log the test appends to.
func wsHandlerOnNode(t *testing.T, opts httpapi.WSOptions) (*testNode, *eventlog.Log, string) {
	t.Helper()
	tn := mustStartNode(t)
	el, err := eventlog.Open(eventlog.Options{Path: filepath.Join(t.TempDir(), "events.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hb := hub.New(hub.Options{Logger: slog.New(slog.DiscardHandler), QueueMax: 64})
	hb.AddSource("n1", el)
	ctx, cancel := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); hb.Run(ctx) }()
	opts.Hub = hb
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Logger: slog.New(slog.DiscardHandler)}, tn.n, nil).WebsocketHandler(opts))
	t.Cleanup(func() {
		cancel()
		<-hubDone
		srv.Close()
		el.Close()
	})
	return tn, el, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestWSKeepalivePing: the server pings; a client that answers stays, one
// that never reads (so never answers) is disconnected.
func TestWSKeepalivePing(t *testing.T) {
	tn, _, base := wsHandlerOnNode(t, httpapi.WSOptions{Allow: node.MustParseCIDRs("127.0.0.0/8"), PingInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	pinged := make(chan struct{}, 100)
	alive, _, err := websocket.Dial(ctx, base+"/?authkey="+url.QueryEscape(tn.root), &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { pinged <- struct{}{}; return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer alive.CloseNow()
	aliveCtx := alive.CloseRead(ctx) // reads (and so answers pings) in the background
	mute, _, err := websocket.Dial(ctx, base+"/?authkey="+url.QueryEscape(tn.root), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mute.CloseNow()
	time.Sleep(600 * time.Millisecond)
	if len(pinged) < 3 {
		t.Fatalf("%d pings in 600ms at a 50ms interval", len(pinged))
	}
	if aliveCtx.Err() != nil {
		t.Fatal("the client that answers pings was disconnected")
	}
	// The mute one: the server gave up on it; reading now finds it closed.
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	for {
		_, _, err := mute.Read(rctx)
		if err == nil {
			continue // pings answered late do not matter
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("the client that never answered pings is still connected")
		}
		break
	}
}

// TestWSSlowClientClosed1008: a client that does not read is closed with
// 1008 and a reason once its queue overflows; another keeps receiving.
func TestWSSlowClientClosed1008(t *testing.T) {
	tn, el, base := wsHandlerOnNode(t, httpapi.WSOptions{Allow: node.MustParseCIDRs("127.0.0.0/8"), PingInterval: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow, _, err := websocket.Dial(ctx, base+"/?authkey="+url.QueryEscape(tn.root), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	fast, _, err := websocket.Dial(ctx, base+"/?authkey="+url.QueryEscape(tn.root), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.CloseNow()
	fast.SetReadLimit(1 << 20)
	var fastGot sync.WaitGroup
	fastGot.Add(1)
	var fastN atomic.Int64
	go func() {
		defer fastGot.Done()
		for {
			_, _, err := fast.Read(ctx)
			if err != nil {
				return
			}
			fastN.Add(1)
		}
	}()
	// The slow client reads one event every 10ms, far slower than they
	// come. (A client that reads nothing at all is disconnected too, but
	// then the close frame cannot reach it: the server gives up writing
	// it after 5s.)
	slow.SetReadLimit(1 << 20)
	type closed struct {
		code   websocket.StatusCode
		reason string
		err    error
	}
	slowDone := make(chan closed, 1)
	go func() {
		for {
			_, _, err := slow.Read(ctx)
			if err != nil {
				var ce websocket.CloseError
				errors.As(err, &ce)
				slowDone <- closed{ce.Code, ce.Reason, err}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// Big events fill the socket buffers quickly; then the queue (64).
	body := `{"model":"call","pad":"` + strings.Repeat("x", 32<<10) + `"}`
	sent := 0
	var sc closed
	for gotClose := false; !gotClose && sent < 3000; sent++ {
		if _, _, err := el.Append(ctx, []eventlog.Entry{{Model: "call", Body: []byte(body)}}); err != nil {
			t.Fatal(err)
		}
		// The fast client keeps up: it never has more than a few waiting.
		for int64(sent+1)-fastN.Load() > 16 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		select {
		case sc = <-slowDone:
			gotClose = true
		default:
		}
	}
	if sc.err == nil {
		select {
		case sc = <-slowDone:
		case <-ctx.Done():
			t.Fatal("the slow client was not disconnected")
		}
	}
	code, reason := sc.code, sc.reason
	if sc.err != nil && code == -1 {
		t.Fatalf("slow client: %v, want a close frame", sc.err)
	}
	if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "slow") {
		t.Fatalf("slow client closed with %d %q, want 1008 and a reason", code, reason)
	}
	// The fast one got everything.
	deadline := time.Now().Add(wsWait)
	for fastN.Load() < int64(sent) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := fastN.Load(); n != int64(sent) {
		t.Fatalf("fast client got %d of %d events", n, sent)
	}
	fast.CloseNow()
	fastGot.Wait()
}

// TestWSRevokedTokenDisconnected: a connection whose token is revoked is
// closed with 1008 at the next keepalive.
func TestWSRevokedTokenDisconnected(t *testing.T) {
	tn, _, base := wsHandlerOnNode(t, httpapi.WSOptions{Allow: node.MustParseCIDRs("127.0.0.0/8"), PingInterval: 50 * time.Millisecond})
	r := tn.do(http.MethodPost, "/v1/tokens", tn.root, httpapi.TokenRequest{Role: "domain", Domain: "a.example"})
	want(t, "POST /v1/tokens", r, http.StatusCreated)
	tv := decode[httpapi.TokenView](t, "POST /v1/tokens", r)
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, base+"/?authkey="+url.QueryEscape(tv.Token), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	readErr := make(chan error, 1)
	go func() { // reads, so it answers pings
		_, _, err := c.Read(ctx)
		readErr <- err
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-readErr:
		t.Fatalf("closed before the revocation: %v", err)
	default:
	}
	want(t, "DELETE /v1/tokens/"+tv.ID, tn.do(http.MethodDelete, "/v1/tokens/"+tv.ID, tn.root, nil), http.StatusNoContent)
	err = <-readErr
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "revoked") {
		t.Fatalf("after revoking its token: %v, want close 1008 \"token revoked\"", err)
	}
}
