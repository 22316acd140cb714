package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm/backup"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// snapDeliverTimeout bounds the wait for events at a receiver.
const snapDeliverTimeout = 30 * time.Second

// snapSub is a subscription of the snapshot test with its own receiver,
// which verifies every POST's signature with the subscription's secret.
type snapSub struct {
	id     string
	secret string
	recv   *harness.Receiver
	sent   []string // event-ids accepted for it, in order
}

// snapEvents ingests n call events of domain, spread over the nodes, and
// returns their event-ids.
func snapEvents(t *testing.T, nodes []*harness.Node, domain string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		nd := nodes[i%len(nodes)]
		got, err := harness.Ingest(context.Background(), nd, harness.CallTimeout, []map[string]any{{
			"model": "call", "domain": domain, "orig_callid": fmt.Sprintf("snap-%s-%d-%d", nd.ID, time.Now().UnixNano(), i),
		}})
		if err != nil {
			t.Fatalf("ingest on %s: %v", nd.ID, err)
		}
		ids = append(ids, got...)
	}
	return ids
}

// waitCommitted waits until the subscription's committed counters (the
// owner's reports, which carry its cursors) count want events with no lag.
func waitCommitted(t *testing.T, nd *harness.Node, id string, want int) {
	t.Helper()
	waitFor(t, func() (bool, string, string) {
		v, err := getSub(nd, id)
		if err != nil {
			return false, "", err.Error()
		}
		return v.EventsCount >= uint64(want) && v.Lag == 0, fmt.Sprintf("%s: events-count %d, lag 0", id, want),
			fmt.Sprintf("events-count %d lag %d", v.EventsCount, v.Lag)
	}, snapDeliverTimeout)
}

// checkExactly fails unless the receiver got each of ids exactly once and
// nothing else, all for its subscription, with good signatures.
func checkExactly(t *testing.T, what string, s *snapSub) {
	t.Helper()
	s.recv.WaitIDs(t, s.sent, snapDeliverTimeout)
	if extra, dup := s.recv.Duplicates(); extra > 0 {
		t.Errorf("%s: %s got %d events again (e.g. %v)", what, s.id, extra, dup[:min(3, len(dup))])
	}
	if got := s.recv.Distinct(); got != len(s.sent) {
		t.Errorf("%s: %s got %d distinct events, want exactly the %d sent", what, s.id, got, len(s.sent))
	}
	if f := s.recv.SignatureFailures(); f > 0 {
		t.Errorf("%s: %s: %d POSTs failed signature verification with the saved secret", what, s.id, f)
	}
	for _, ev := range s.recv.Events() {
		if ev.Sub != s.id {
			t.Fatalf("%s: receiver of %s got an event for subscription %q", what, s.id, ev.Sub)
		}
	}
}

// TestSnapshotSaveRestore: a 3-node cluster with two subscriptions (each
// with its own receiver, which checks signatures with the subscription's
// secret), a domain token and delivered events is saved with `hookswitch
// snapshot save`; a new 3-node cluster bootstraps from the file (`agent
// --bootstrap --restore`) and delivers the events ingested on it, exactly
// once, to the same subscription ids, signed with the same secrets, and
// the saved tokens work on it. Then `snapshot restore` into that running
// cluster replaces the subscriptions and tokens made since, and delivery
// goes on without delivering anything again.
func TestSnapshotSaveRestore(t *testing.T) {
	skipShort(t)
	const domain = "snap.example"
	src := harness.StartCluster(t, harness.Options{Nodes: 3})
	api := src.Nodes[0].API()
	ctx := context.Background()

	var subs []*snapSub
	for i := range 2 {
		recv := harness.NewReceiver(t, harness.ReceiverOptions{Secret: "unset"})
		v := createSubOn(t, src.Nodes[i], client.Fields{"domain": domain, "post-url": recv.URL()})
		secret, err := api.Secret(ctx, v.ID)
		if err != nil {
			t.Fatal(err)
		}
		recv.SetSecret(secret)
		subs = append(subs, &snapSub{id: v.ID, secret: secret, recv: recv})
		waitOwned(t, src, v.ID, func(string) bool { return true })
	}
	tok, err := api.CreateToken(ctx, httpapi.TokenRequest{Role: "domain", Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	before := snapEvents(t, src.Nodes, domain, 9)
	for _, s := range subs {
		s.sent = append(s.sent, before...)
		s.recv.WaitIDs(t, before, snapDeliverTimeout)
		// Every node, the follower that saves included (a follower's
		// state may trail the leader's by a report).
		for _, nd := range src.Nodes {
			waitCommitted(t, nd, s.id, len(s.sent))
		}
	}

	// Save through a follower, as an operator would from any node.
	file := filepath.Join(t.TempDir(), "cluster.snapshot")
	out := src.Nodes[2].MustCLI("snapshot", "save", file)
	if !strings.Contains(out, "0600") || !strings.Contains(out, "secret") {
		t.Errorf("save output does not warn that the file holds secrets: %q", out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	snap, err := backup.ReadFile(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Header.Subs != 2 || snap.Header.Nodes != 3 || snap.Header.Tokens != 5 { // root, domain, 3 node tokens
		t.Fatalf("header %+v, want 2 subscriptions, 3 nodes, 5 tokens", snap.Header)
	}
	for _, s := range snap.Subs {
		if len(s.Cursors) == 0 {
			t.Fatalf("subscription %s saved without cursors", s.ID)
		}
	}
	show := src.Nodes[0].MustCLI("snapshot", "show", file)
	if strings.Contains(show, subs[0].secret) || !strings.Contains(show, "subscriptions:") {
		t.Fatalf("snapshot show: %q (no secrets, counts wanted)", show)
	}
	for _, nd := range src.Nodes {
		nd.Kill() // the old cluster is gone
	}

	// A new cluster from the file.
	dst := harness.StartCluster(t, harness.Options{Nodes: 3, Restore: file, Root: src.Root})
	if _, err := os.Stat(filepath.Join(dst.Nodes[0].DataDir, "root-token")); !os.IsNotExist(err) {
		t.Errorf("the restored cluster wrote a root-token file (%v): the saved tokens manage it", err)
	}
	dapi := dst.Nodes[1].API()
	listed, err := dapi.ListSubs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range listed {
		ids = append(ids, v.ID)
	}
	if want := []string{subs[0].id, subs[1].id}; !slices.Equal(ids, sorted(want)) {
		t.Fatalf("restored subscriptions %v, want %v", ids, sorted(want))
	}
	domAPI := client.New(dst.Nodes[2].BaseURL(), tok.Token).WithHTTPClient(dst.HTTPClient())
	if got, err := domAPI.ListSubs(ctx, nil); err != nil || len(got) != 2 {
		t.Fatalf("the saved domain token on the new cluster: %d subscriptions, %v", len(got), err)
	}
	for _, s := range subs {
		waitOwned(t, dst, s.id, func(string) bool { return true })
	}
	after := snapEvents(t, dst.Nodes, domain, 9)
	for _, s := range subs {
		s.sent = append(s.sent, after...)
		checkExactly(t, "new cluster", s)
		waitCommitted(t, dst.Nodes[0], s.id, len(s.sent))
	}

	// Changes on the new cluster, then the file restored into it.
	extra := createSubOn(t, dst.Nodes[0], client.Fields{"domain": domain})
	later, err := dapi.CreateToken(ctx, httpapi.TokenRequest{Role: "domain", Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	if r := dst.Nodes[1].RunCLI("snapshot", "restore", file); r.ExitCode == 0 || !strings.Contains(r.Stderr, "--yes") {
		t.Fatalf("restore without --yes: exit %d, stderr %q; want a refusal naming --yes", r.ExitCode, r.Stderr)
	}
	out = dst.Nodes[1].MustCLI("snapshot", "restore", file, "--yes")
	if !strings.Contains(out, "restored 2 subscriptions") {
		t.Fatalf("restore output %q", out)
	}
	if _, err := getSub(dst.Nodes[2], extra.ID); client.StatusOf(err) != 404 {
		t.Fatalf("a subscription made after the save survived the restore: %v", err)
	}
	laterAPI := client.New(dst.Nodes[2].BaseURL(), later.Token).WithHTTPClient(dst.HTTPClient())
	waitFor(t, func() (bool, string, string) {
		_, err := laterAPI.ListSubs(ctx, nil)
		return client.StatusOf(err) == 401, "a token made after the save refused (401) on every node", fmt.Sprint(err)
	}, snapDeliverTimeout)
	if got, err := domAPI.ListSubs(ctx, nil); err != nil || len(got) != 2 {
		t.Fatalf("the saved domain token after the restore: %d subscriptions, %v", len(got), err)
	}
	for _, s := range subs {
		waitOwned(t, dst, s.id, func(string) bool { return true })
	}
	last := snapEvents(t, dst.Nodes, domain, 6)
	for _, s := range subs {
		s.sent = append(s.sent, last...)
		checkExactly(t, "after the restore into the running cluster", s)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
