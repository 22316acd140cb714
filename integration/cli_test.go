package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// TestCLITables: `status` prints tables (the node asked, subscriptions by
// status with a total, the members) and `sub list` shows each
// subscription's reseller; an agent on an empty data dir with neither
// --bootstrap nor --join runs, in no cluster, and says what to run.
func TestCLITables(t *testing.T) {
	a := startDevAgent(t)
	var ids []string
	for i, reseller := range []string{"acme", "globex", "globex"} {
		var v httpapi.SubView
		decodeJSON(t, "sub create", a.MustCLI("sub", "create", "--model", "call", "--reseller", reseller,
			"--post-url", fmt.Sprintf("http://127.0.0.1:9/hook%d", i), "--json"), &v)
		ids = append(ids, v.ID)
	}
	// Settled first: every subscription assigned (a SERVER in its row) and
	// the node up (in status's UP count).
	waitFor(t, func() (bool, string, string) {
		ctx := context.Background()
		subs, err := a.API().ListSubs(ctx, nil)
		if err != nil {
			return false, "the subscriptions assigned", err.Error()
		}
		for _, s := range subs {
			if s.CurrentActiveServer == "" {
				return false, "the subscriptions assigned", s.ID + " unassigned"
			}
		}
		v, err := a.API().Cluster(ctx)
		return err == nil && len(v.Nodes) == 1 && v.Nodes[0].Health == "up", "the node up", fmt.Sprint(v, err)
	}, 20*time.Second)
	a.MustCLI("sub", "pause", ids[0])
	a.MustCLI("sub", "pause", ids[1])

	// sub list: a RESELLER column, and each row's reseller under it.
	list := a.MustCLI("sub", "list")
	lines := strings.Split(strings.TrimRight(list, "\n"), "\n")
	header := strings.Fields(lines[0])
	col := -1
	for i, h := range header {
		if h == "RESELLER" {
			col = i
		}
	}
	if col < 0 || len(lines) != 4 {
		t.Fatalf("sub list: want a RESELLER column and 3 rows:\n%s", list)
	}
	want := map[string]string{ids[0]: "acme", ids[1]: "globex", ids[2]: "globex"}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != len(header) || want[f[0]] != f[col] {
			t.Errorf("sub list row %q: want %d columns and reseller %q", l, len(header), want[f[0]])
		}
	}

	// status: no Go map printed; a subscriptions table with a row per
	// status and a total; the node table.
	st := a.MustCLI("status")
	if strings.Contains(st, "map[") {
		t.Errorf("status prints a Go map:\n%s", st)
	}
	for _, re := range []string{
		`(?m)^NODE ASKED\s+LEADER\s+MEMBERS\s+UP$`,
		`(?m)^\S+ \(ready\)\s+\S+\s+1\s+1$`,
		`(?m)^SUBSCRIPTIONS\s+COUNT$`,
		`(?m)^paused\s+2$`,
		`(?m)^total\s+3$`,
		`(?m)^NODE\s+HTTP\s+RAFT\s+ROLE\s+SUFFRAGE\s+HEALTH\s+DRAINING\s+SUBS$`,
		`(?m)^\S+\s+` + regexp.QuoteMeta(a.HTTPAddr) + `\s+` + regexp.QuoteMeta(a.RaftAddr) + `\s+leader\s+voter\s+up\s+false\s+\d+$`,
	} {
		if !regexp.MustCompile(re).MatchString(st) {
			t.Errorf("status output does not match %s:\n%s", re, st)
		}
	}
	// The third subscription is pending or active (no receiver at :9):
	// either way a row of its own, and the rows add up to the total.
	if !regexp.MustCompile(`(?m)^(pending|active|error)\s+1$`).MatchString(st) {
		t.Errorf("status: want the unpaused subscription in a row of its own:\n%s", st)
	}

	// An agent with an empty data dir and neither --bootstrap nor --join
	// runs, in no cluster: it says what to run, on stderr and in /readyz.
	a.Stop()
	if err := os.RemoveAll(a.DataDir); err != nil {
		t.Fatal(err)
	}
	a.SetArgs("agent", "--config", "/dev/null", "--data-dir", a.DataDir, "--http-addr", a.HTTPAddr, "--raft-addr", a.RaftAddr)
	a.Launch()
	a.WaitHealthy(20 * time.Second)
	waitFor(t, func() (bool, string, string) {
		return strings.Contains(a.Stderr(), "join HTTP_ADDR"), "the agent's advice on stderr", a.Stderr()
	}, 10*time.Second)
	for _, w := range []string{"neither --bootstrap nor --join is set", "hookswitch --addr http://" + a.HTTPAddr + " join HTTP_ADDR",
		"hookswitch agent --join HTTP_ADDR --join-token TOKEN", "hookswitch agent --bootstrap", "hookswitch agent --dev"} {
		if !strings.Contains(a.Stderr(), w) {
			t.Errorf("agent without --bootstrap or --join: stderr lacks %q:\n%s", w, a.Stderr())
		}
	}
	resp, err := a.HTTPClient().Get(a.BaseURL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "hookswitch join HTTP_ADDR") {
		t.Errorf("/readyz of a node in no cluster: %d %s; want 503 naming hookswitch join", resp.StatusCode, body)
	}
	if ps := a.Stop(); ps.ExitCode() != 0 {
		t.Errorf("stopping a node in no cluster: %s, want exit 0", ps)
	}
}

// TestCLIReplayProgress: `sub replay` prints the replay's progress and
// returns once the subscription has delivered the events again; the
// receiver (verifying every signature) got each event twice.
func TestCLIReplayProgress(t *testing.T) {
	a := startDevAgent(t)
	rc := harness.NewReceiver(t, harness.ReceiverOptions{})
	var sub httpapi.SubView
	decodeJSON(t, "sub create", a.MustCLI("sub", "create", "--model", "call", "--post-url", rc.URL(), "--batch-max", "5", "--json"), &sub)
	rc.SetSecret(sub.Secret)
	events := make([]map[string]any, 20)
	for i := range events {
		events[i] = map[string]any{"model": "call", "domain": "example.com", "orig_callid": fmt.Sprintf("c%d", i)}
	}
	ids, err := harness.Ingest(context.Background(), a, 10*time.Second, events)
	if err != nil {
		t.Fatal(err)
	}
	rc.WaitDistinct(t, len(ids), 20*time.Second)
	waitFor(t, func() (bool, string, string) {
		v, err := a.API().GetSub(context.Background(), sub.ID)
		return err == nil && v.EventsCount == uint64(len(ids)) && v.Lag == 0, "the delivery to be reported (events-count 20, lag 0)", fmt.Sprint(v.EventsCount, v.Lag, err)
	}, 10*time.Second)

	r := a.RunCLI("sub", "replay", sub.ID, "--from", "1h")
	if r.ExitCode != 0 {
		t.Fatalf("sub replay: exit %d\nstderr: %s", r.ExitCode, r.Stderr)
	}
	if !strings.Contains(r.Stdout, sub.ID) || !regexp.MustCompile(`(?m)^replay `+sub.ID+`: \d+ events behind, \d+ delivered again, status \w+$`).MatchString(r.Stderr) ||
		!strings.HasSuffix(r.Stderr, "caught up\n") {
		t.Fatalf("sub replay output:\nstdout: %s\nstderr: %s", r.Stdout, r.Stderr)
	}
	for _, id := range ids {
		if n := rc.Times(id); n != 2 {
			t.Errorf("event %s delivered %d times, want 2 (once, once again by the replay)", id, n)
		}
	}
	if f := rc.SignatureFailures(); f != 0 {
		t.Errorf("%d POSTs failed signature verification", f)
	}
}
