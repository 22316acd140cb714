package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/fsm/backup"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/node"
)

func TestSnapshotSaveIsSuperOnly(t *testing.T) {
	tn := mustStartNode(t)
	dom := tn.newToken("domain", "", "d1", "")
	wantErr(t, "GET /v1/snapshot without a token", tn.do(http.MethodGet, "/v1/snapshot", "", nil), http.StatusUnauthorized, "")
	wantErr(t, "GET /v1/snapshot with a domain token", tn.do(http.MethodGet, "/v1/snapshot", dom, nil), http.StatusForbidden, "")
	wantErr(t, "POST /v1/snapshot/restore with a domain token",
		tn.do(http.MethodPost, "/v1/snapshot/restore", dom, rawBody("x")), http.StatusForbidden, "")
	r := tn.do(http.MethodGet, "/v1/snapshot", tn.root, nil)
	want(t, "GET /v1/snapshot", r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); ct != httpapi.SnapshotContentType {
		t.Fatalf("Content-Type %q, want %q", ct, httpapi.SnapshotContentType)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q, want no-store (the body holds secrets)", cc)
	}
}

func TestSnapshotRestoreIntoRunningNode(t *testing.T) {
	tn := mustStartNode(t)
	kept := tn.createSub(tn.root, sub(fields{"domain": "d1"}))
	secret := tn.secret(tn.root, kept.ID)
	dom := tn.newToken("domain", "", "d1", "")

	r := tn.do(http.MethodGet, "/v1/snapshot", tn.root, nil)
	want(t, "GET /v1/snapshot", r, http.StatusOK)
	snap, err := backup.Read(bytes.NewReader(r.Body), nil)
	if err != nil {
		t.Fatalf("the snapshot does not read back: %v", err)
	}
	if snap.Header.Subs != 1 || snap.Header.Nodes != 1 || snap.Header.SourceNode != tn.n.ID() {
		t.Fatalf("header %+v, want 1 subscription and 1 node saved by %s", snap.Header, tn.n.ID())
	}

	// After the save: one subscription goes, one comes, one token comes.
	want(t, "DELETE", tn.do(http.MethodDelete, "/v1/subscriptions/"+kept.ID, tn.root, nil), http.StatusNoContent)
	later := tn.createSub(tn.root, sub(nil))
	laterTok := tn.newToken("domain", "", "d2", "")

	for _, bad := range []struct{ name, body string }{
		{"not a snapshot", "hello\n"},
		{"truncated", string(r.Body[:len(r.Body)-20])},
		{"tampered", strings.Replace(string(r.Body), secret, "whsec_tampered", 1)},
	} {
		wantErr(t, "restore "+bad.name, tn.do(http.MethodPost, "/v1/snapshot/restore", tn.root, rawBody(bad.body)), http.StatusBadRequest, "")
	}
	noSuper := *snap
	noSuper.Tokens = slices.DeleteFunc(slices.Clone(snap.Tokens), func(t fsm.Token) bool { return t.Role == fsm.RoleSuper })
	noSuper.Header.Tokens = len(noSuper.Tokens)
	var buf bytes.Buffer
	if err := backup.Write(&buf, &noSuper); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "restore without a super token", tn.do(http.MethodPost, "/v1/snapshot/restore", tn.root, rawBody(buf.String())), http.StatusBadRequest, "")
	wantIDs(t, "subscriptions after refused restores", tn.listIDs(tn.root, ""), later.ID)

	rr := tn.do(http.MethodPost, "/v1/snapshot/restore", tn.root, rawBody(r.Body))
	want(t, "POST /v1/snapshot/restore", rr, http.StatusOK)
	res := decode[httpapi.RestoreResult](t, "restore", rr)
	if res.Subs != 1 || res.Tokens != 2 { // root and the domain token
		t.Fatalf("restore result %+v, want 1 subscription and 2 tokens", res)
	}
	wantIDs(t, "subscriptions after the restore", tn.listIDs(tn.root, ""), kept.ID)
	if got := tn.secret(tn.root, kept.ID); got != secret {
		t.Fatal("the restored subscription's secret differs from the saved one")
	}
	wantIDs(t, "the saved domain token works again", tn.listIDs(dom, ""), kept.ID)
	wantErr(t, "a token made after the save", tn.do(http.MethodGet, "/v1/subscriptions", laterTok, nil), http.StatusUnauthorized, "")
	// The node's own token survived: the node stays ready and reports.
	waitFor(t, func() (bool, string) {
		r := tn.tryDo(http.MethodGet, "/readyz", "", nil)
		return r.Code == http.StatusOK, "ready after the restore: " + string(r.Body)
	}, readyTimeout)
}

func TestBootstrapRestore(t *testing.T) {
	src := mustStartNode(t)
	s1 := src.createSub(src.root, sub(fields{"domain": "d1"}))
	secret := src.secret(src.root, s1.ID)
	r := src.do(http.MethodGet, "/v1/snapshot", src.root, nil)
	want(t, "GET /v1/snapshot", r, http.StatusOK)
	file := filepath.Join(t.TempDir(), "snap.ndjson")
	if err := os.WriteFile(file, r.Body, 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := node.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RaftHeartbeatTimeout, cfg.RaftElectionTimeout = 200*time.Millisecond, 200*time.Millisecond
	cfg.Restore = file
	if _, err := node.Start(cfg, "test", nil); !errors.Is(err, node.ErrConfig) {
		t.Fatalf("--restore without --bootstrap: err %v, want ErrConfig", err)
	}
	cfg.Bootstrap = true
	lw := &testLog{t: t}
	t.Cleanup(lw.close)
	logger := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.Start(cfg, "test", logger)
	if err != nil {
		t.Fatalf("bootstrap --restore: %v", err)
	}
	dst := &testNode{t: t, n: n, dataDir: cfg.DataDir, base: "http://" + n.HTTPAddr(), hc: &http.Client{Timeout: 15 * time.Second}, root: src.root}
	stop := func() {
		dst.hc.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	}
	// It serves the saved state at once, with the saved cluster's token.
	wantIDs(t, "subscriptions of the restored cluster", dst.listIDs(src.root, ""), s1.ID)
	if got := dst.secret(src.root, s1.ID); got != secret {
		t.Fatal("the restored subscription's secret differs")
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, node.RootTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a root-token file was written (%v): the snapshot's super tokens manage the cluster", err)
	}
	waitFor(t, func() (bool, string) {
		r := dst.tryDo(http.MethodGet, "/readyz", "", nil)
		return r.Code == http.StatusOK, "ready: " + string(r.Body)
	}, readyTimeout)
	stop()

	// The same data dir again with --restore: refused, state kept.
	cfg.HTTPAddr, cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0"
	if _, err := node.Start(cfg, "test", logger); !errors.Is(err, node.ErrRestoreRefused) {
		t.Fatalf("--restore over existing state: err %v, want ErrRestoreRefused", err)
	}
}
