package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// decodeJSON parses a CLI's --json output into v.
func decodeJSON(t *testing.T, what, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: output is not the expected JSON: %v\n%s", what, err, out)
	}
}

// TestDevAgentAndCLI runs `hookswitch agent --dev` as a process and drives
// it with the hookswitch command line, as the README's walk-through does.
func TestDevAgentAndCLI(t *testing.T) {
	a := startDevAgent(t)
	root := a.RootToken()
	nodeID, err := os.ReadFile(filepath.Join(a.DataDir, "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	node := strings.TrimSpace(string(nodeID))

	// The dev banner names the root token and the URLs. It is printed once
	// the node has started, which may be just after /readyz turned 200.
	waitFor(t, func() (bool, string, string) {
		out := a.Stdout()
		return strings.Contains(out, "root token: "+root), "the dev banner with the root token from root-token", out
	}, 5*time.Second)
	banner := a.Stdout()
	for _, want := range []string{
		a.BaseURL() + "/v1/subscriptions",
		a.BaseURL() + "/healthz",
		a.BaseURL() + "/readyz",
		"export HOOKSWITCH_TOKEN=" + root,
		"join token: " + readJoinToken(t, a),
		"data in " + a.DataDir,
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("dev banner lacks %q:\n%s", want, banner)
		}
	}

	// sub create: the CLI finds the node with --addr and the token in the
	// data dir's root-token (no --token, no HOOKSWITCH_TOKEN).
	var created httpapi.SubView
	decodeJSON(t, "sub create", a.MustCLI("sub", "create", "--model", "call", "--domain", "example.com",
		"--post-url", "http://127.0.0.1:9000/hook", "--json"), &created)
	if !strings.HasPrefix(created.ID, "sub_") || !strings.HasPrefix(created.Secret, "whsec_") {
		t.Fatalf("sub create: want a generated sub_ id and whsec_ secret, got id %q secret %q", created.ID, created.Secret)
	}
	want := httpapi.SubView{
		ID: created.ID, Model: "call", PostURL: "http://127.0.0.1:9000/hook", Reseller: "*", Domain: "example.com", User: "*",
		GeoSupport: "yes", CurrentActiveServer: node, HomeServer: node, Encoding: "json-array", BatchMax: 100,
		TimeoutMs: 15000, Status: "pending",
	}
	// A new geo "yes" subscription is unassigned until the leader's
	// reconciler assigns it, moments later.
	unassigned := want
	unassigned.CurrentActiveServer = ""
	checkSub(t, "sub create", created, unassigned)
	waitFor(t, func() (bool, string, string) {
		v, err := a.API().GetSub(context.Background(), created.ID)
		return err == nil && v.CurrentActiveServer == node, "current-active-server " + node, fmt.Sprint(v.CurrentActiveServer, err)
	}, 10*time.Second)

	// sub list and sub get show it, without the secret.
	var list []httpapi.SubView
	decodeJSON(t, "sub list", a.MustCLI("sub", "list", "--json"), &list)
	if len(list) != 1 {
		t.Fatalf("sub list: want 1 subscription, got %d: %+v", len(list), list)
	}
	checkSub(t, "sub list", list[0], want)
	if list[0].Secret != "" {
		t.Errorf("sub list shows the secret")
	}
	var got httpapi.SubView
	decodeJSON(t, "sub get", a.MustCLI("sub", "get", created.ID, "--json"), &got)
	checkSub(t, "sub get", got, want)
	if got.Secret != "" {
		t.Errorf("sub get shows the secret")
	}
	table := a.MustCLI("sub", "get", created.ID)
	for _, line := range []string{"id:", created.ID, "scope:", "domain=example.com", "status:", "pending"} {
		if !strings.Contains(table, line) {
			t.Errorf("sub get (table) lacks %q:\n%s", line, table)
		}
	}

	// sub pause: the status says so.
	var paused httpapi.SubView
	decodeJSON(t, "sub pause", a.MustCLI("sub", "pause", created.ID, "--json"), &paused)
	if paused.Status != "paused" {
		t.Errorf("sub pause: status %q, want paused", paused.Status)
	}

	// An unknown subscription: exit 1 and the API's 404 on stderr.
	if r := a.RunCLI("sub", "get", "no-such-sub"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "404") {
		t.Errorf("sub get no-such-sub: want exit 1 and a 404 on stderr, got exit %d, stderr %q", r.ExitCode, r.Stderr)
	}

	// token create: a domain token, shown once; it sees the example.com
	// subscription through the CLI's --token.
	var tok httpapi.TokenView
	decodeJSON(t, "token create", a.MustCLI("token", "create", "--role", "domain", "--domain", "example.com", "--json"), &tok)
	if tok.Role != "domain" || tok.Domain != "example.com" || !strings.HasPrefix(tok.Token, "hs_") || tok.ID == "" {
		t.Fatalf("token create: got %+v", tok)
	}
	var domainList []httpapi.SubView
	decodeJSON(t, "sub list --token", a.MustCLI("--token", tok.Token, "sub", "list", "--json"), &domainList)
	if len(domainList) != 1 || domainList[0].ID != created.ID {
		t.Errorf("sub list with the domain token: want [%s], got %+v", created.ID, domainList)
	}

	// status: ready, this node leads, one (paused) subscription.
	var st struct {
		Ready         string             `json:"ready"`
		Leader        string             `json:"leader"`
		Nodes         []httpapi.NodeView `json:"nodes"`
		Subscriptions int                `json:"subscriptions"`
		ByStatus      map[string]int     `json:"by-status"`
	}
	decodeJSON(t, "status", a.MustCLI("status", "--json"), &st)
	if st.Ready != "ready" || st.Leader != node || st.Subscriptions != 1 || st.ByStatus["paused"] != 1 {
		t.Errorf("status: want ready, leader %s, 1 paused subscription; got %+v", node, st)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].ID != node || st.Nodes[0].HTTPAddr != a.HTTPAddr ||
		st.Nodes[0].RaftAddr != a.RaftAddr || st.Nodes[0].RaftRole != "leader" {
		t.Errorf("status: want one node %s at %s/%s leading, got %+v", node, a.HTTPAddr, a.RaftAddr, st.Nodes)
	}
}

// checkSub compares the fields of a subscription that a new, idle
// subscription has settled (not the creation time, the secret or the
// counters) with want's.
func checkSub(t *testing.T, what string, got, want httpapi.SubView) {
	t.Helper()
	pick := func(v httpapi.SubView) []any {
		return []any{v.ID, v.Model, v.PostURL, v.Reseller, v.Domain, v.User, len(v.Filters), v.GeoSupport,
			v.PreferredServer, v.CurrentActiveServer, v.HomeServer, v.Encoding, v.BatchMax, v.TimeoutMs, v.Status}
	}
	if g, w := fmt.Sprint(pick(got)), fmt.Sprint(pick(want)); g != w {
		t.Errorf("%s: (id model post-url reseller domain user #filters geo preferred current home encoding batch-max timeout-ms status)\n got %s\nwant %s", what, g, w)
	}
}

// TestRestartKeepsSubscriptions stops an agent gracefully and abruptly and
// checks that every subscription whose create was answered 201 is there
// after a restart on the same data dir, with the same id and secret.
func TestRestartKeepsSubscriptions(t *testing.T) {
	a := startDevAgent(t)
	ctx := context.Background()
	c := a.API()

	first, err := c.CreateSub(ctx, client.Fields{"model": "call", "domain": "example.com", "post-url": "http://127.0.0.1:9000/first"})
	if err != nil {
		t.Fatalf("create first: %v", err)
	}

	// SIGTERM: a graceful stop, exit 0, well within the unit's stop timeout.
	began := time.Now()
	ps := a.Stop()
	if ps.ExitCode() != 0 {
		t.Fatalf("after SIGTERM the agent exited with %s, want exit status 0", ps)
	}
	t.Logf("SIGTERM to exit: %s", time.Since(began).Round(time.Millisecond))

	a.Start()
	c = a.API() // the root token file is kept; it must still be valid
	expectSubs(t, c, first)

	// SIGKILL right after a create was answered 201: the create was
	// committed, so it survives.
	second, err := c.CreateSub(ctx, client.Fields{"model": "cdr", "domain": "example.com", "post-url": "http://127.0.0.1:9000/second"})
	if err != nil {
		t.Fatalf("create second: %v", err)
	}
	ps = a.Kill()
	if ws, ok := ps.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("agent ended with %s, want killed by SIGKILL", ps)
	}

	a.Start()
	expectSubs(t, a.API(), first, second)
}

// expectSubs checks that the node has exactly the given subscriptions,
// with the same ids, definitions and signing secrets.
func expectSubs(t *testing.T, c *client.Client, want ...httpapi.SubView) {
	t.Helper()
	ctx := context.Background()
	list, err := c.ListSubs(ctx, nil)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list) != len(want) {
		t.Fatalf("want %d subscriptions, got %d: %+v", len(want), len(list), list)
	}
	for _, w := range want {
		got, err := c.GetSub(ctx, w.ID)
		if err != nil {
			t.Fatalf("get %s: %v", w.ID, err)
		}
		if got.ID != w.ID || got.Model != w.Model || got.PostURL != w.PostURL || got.Domain != w.Domain || got.Created != w.Created {
			t.Errorf("subscription %s changed:\n got %+v\nwant %+v", w.ID, got, w)
		}
		secret, err := c.Secret(ctx, w.ID)
		if err != nil {
			t.Fatalf("secret of %s: %v", w.ID, err)
		}
		if secret != w.Secret {
			t.Errorf("subscription %s: the secret changed across the restart", w.ID)
		}
	}
}

// readJoinToken reads the join token a bootstrapping node generated.
func readJoinToken(t *testing.T, a *harness.Node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.DataDir, "join-token"))
	if err != nil {
		t.Fatalf("join-token file: %v", err)
	}
	return strings.TrimSpace(string(b))
}
