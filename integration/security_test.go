package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// tlsPKI makes a CA with `hookswitch tls init` and certificates for the
// given nodes with `hookswitch tls issue NODE --ip 127.0.0.1`
// (harness.NewPKI), checks that every key is 0600, and returns the PKI
// and a pool of its CA.
func tlsPKI(t *testing.T, dir string, nodes ...string) (*harness.PKI, *x509.CertPool) {
	t.Helper()
	pki := harness.NewPKI(t, dir, nodes...)
	for _, f := range append([]string{"ca"}, nodes...) {
		fi, err := os.Stat(filepath.Join(dir, f+".key"))
		if err != nil {
			t.Fatalf("%s.key: %v; want a 0600 key", f, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s.key: mode %v; want a 0600 key", f, fi.Mode().Perm())
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(readFileT(t, pki.CA()))) {
		t.Fatal("ca.crt holds no certificate")
	}
	return pki, pool
}

func loadCert(t *testing.T, pki *harness.PKI, name string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(pki.Cert(name), pki.Key(name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClusterMutualTLS: three agents with tls-cert, tls-key and cluster-ca
// from `hookswitch tls` form a cluster over mutual TLS (raft, joins,
// forwarded writes, the event mesh). A node whose certificate comes from
// another CA can neither join nor read a peer's log; a plaintext raft
// client and a TLS client without a certificate are refused on the raft
// port.
func TestClusterMutualTLS(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	pki, pool := tlsPKI(t, filepath.Join(dir, "ca"), "n1", "n2", "n3", "n4")
	foreignPKI, _ := tlsPKI(t, filepath.Join(dir, "foreign"), "n4")
	apiTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	// The harness's clients (API, readiness, `hookswitch members`) verify
	// the nodes with the CA and present no certificate.
	cl := harness.StartCluster(t, harness.Options{Nodes: 3, NodeExtra: pki.AgentFlags, TLS: pki.Client()})
	nodes := cl.Nodes
	n1 := nodes[0]
	if !strings.HasPrefix(n1.BaseURL(), "https://") {
		t.Fatalf("n1 at %s; want https", n1.BaseURL())
	}
	joinToken := cl.JoinToken()
	if joinToken == "" {
		t.Fatal("n1 wrote no join-token file at bootstrap")
	}
	n4 := cl.NewNode() // started later, without --join
	waitFor(t, func() (bool, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
		defer cancel()
		v, err := n1.API().Cluster(ctx)
		if err != nil {
			return false, "3 voters up", err.Error()
		}
		up := 0
		for _, m := range v.Nodes {
			if m.Health == "up" && m.Suffrage == "voter" {
				up++
			}
		}
		return up == 3 && v.Leader != "", "3 voters up with a leader", harness.Summary(v)
	}, harness.FormTimeout)

	// Writes through every node: the followers forward theirs to the
	// leader over mutual TLS.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := cl.Root
	for _, a := range nodes[:3] {
		// One post-url per subscription: equal parameters are a 409.
		c := client.New(a.BaseURL(), root).WithTLS(apiTLS)
		if _, err := c.CreateSub(ctx, client.Fields{"model": "call", "post-url": "http://127.0.0.1:9/" + a.ID}); err != nil {
			t.Fatalf("create a subscription through %s: %v", a.HTTPAddr, err)
		}
	}
	// The mesh: an event ingested on n3 reaches n1's websocket (from n1's
	// copy of n3's log, tailed over mutual TLS).
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if _, err := client.New(nodes[2].BaseURL(), "").WithTLS(apiTLS).Ingest(ctx, map[string]any{"model": "call", "mark": "over-mtls"}); err != nil {
		t.Fatalf("ingest on n3: %v", err)
	}
	wsT := http.DefaultTransport.(*http.Transport).Clone()
	wsT.TLSClientConfig = apiTLS
	ws, _, err := websocket.Dial(ctx, "wss://"+n1.HTTPAddr+"/v1/events/ws?since="+since, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: wsT}, HTTPHeader: http.Header{"Authorization": {"Bearer " + root}}})
	if err != nil {
		t.Fatalf("websocket on n1: %v", err)
	}
	defer ws.CloseNow()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("n1's websocket never showed n3's event: %v", err)
		}
		var ev map[string]any
		if json.Unmarshal(data, &ev) == nil && ev["mark"] == "over-mtls" && ev["node"] == "n3" {
			break
		}
	}

	before, err := n1.API().Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A node with a certificate from another CA, even with the join token.
	foreign := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{loadCert(t, foreignPKI, "n4")}, MinVersion: tls.VersionTLS12}
	noCert := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	joinBody := fmt.Sprintf(`{"id":"n4","raft-addr":"127.0.0.1:1","http-addr":"127.0.0.1:2","token-hash":"%s"}`, strings.Repeat("ab", 32))
	n2Token := strings.TrimSpace(readFileT(t, filepath.Join(nodes[1].DataDir, "node-token")))
	for _, tc := range []struct {
		name, method, path, token, body string
		tls                             *tls.Config
		wantStatus                      int // 0: the TLS handshake fails
	}{
		{"foreign certificate: join", http.MethodPost, "/v1/cluster/join", joinToken, joinBody, foreign, 0},
		{"foreign certificate: peer log", http.MethodGet, "/internal/v1/log", n2Token, "", foreign, 0},
		{"no certificate: join with the join token", http.MethodPost, "/v1/cluster/join", joinToken, joinBody, noCert, http.StatusUnauthorized},
		{"no certificate: peer log with a node token", http.MethodGet, "/internal/v1/log", n2Token, "", noCert, http.StatusForbidden},
		{"no certificate: forwarded write with a node token", http.MethodPost, "/internal/v1/apply", n2Token, "x", noCert, http.StatusForbidden},
	} {
		status, err := rawCall(ctx, tc.tls, tc.method, "https://"+n1.HTTPAddr+tc.path, tc.token, tc.body)
		switch {
		case tc.wantStatus == 0 && err == nil:
			t.Errorf("%s: answered %d; want the TLS handshake refused", tc.name, status)
		case tc.wantStatus != 0 && status != tc.wantStatus:
			t.Errorf("%s: %d (%v); want %d", tc.name, status, err, tc.wantStatus)
		}
	}
	after, err := n1.API().Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if membership(before) != membership(after) || len(after.Nodes) != 3 {
		t.Fatalf("membership changed: before %s, after %s", membership(before), membership(after))
	}

	// The raft port: a plaintext raft client gets no answer, nor does a
	// TLS client without a certificate.
	plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	var vresp raft.RequestVoteResponse
	if err := plain.RequestVote("n1", raft.ServerAddress(n1.RaftAddr), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("x"), Addr: []byte(plain.LocalAddr())}, Term: 1 << 40,
	}, &vresp); err == nil {
		t.Fatalf("a plaintext raft RequestVote was answered: %+v", vresp)
	}
	conn, err := tls.Dial("tcp", n1.RaftAddr, noCert)
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write([]byte{0})
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("a TLS client without a certificate was not refused on the raft port: %v", err)
		}
	}
	// The cluster is whole still.
	if v, err := n1.API().Cluster(ctx); err != nil || len(v.Nodes) != 3 || v.Leader == "" {
		t.Fatalf("after the refusals: %s %v", harness.Summary(v), err)
	}

	// `hookswitch join` on mutual TLS: n4 runs without --join; the command
	// line reads its join request over HTTPS (--ca) and asks n2 to add it,
	// presenting n4's certificate (--cert, --key) and the join token
	// (HOOKSWITCH_JOIN_TOKEN in its environment).
	n4.Launch()
	n4.WaitHealthy(readyTimeout)
	harness.MustRun(t, []string{harness.JoinTokenEnv + "=" + joinToken}, "--addr", n4.BaseURL(), "--ca", pki.CA(),
		"--cert", pki.Cert("n4"), "--key", pki.Key("n4"), "join", nodes[1].HTTPAddr)
	waitFor(t, func() (bool, string, string) {
		v, err := n1.API().Cluster(ctx)
		if err != nil {
			return false, "n4 a member", err.Error()
		}
		return len(v.Nodes) == 4, "4 members", harness.Summary(v)
	}, harness.FormTimeout)
	n4.WaitReady(harness.FormTimeout)
}

// rawCall makes one HTTPS request with a TLS configuration and returns the
// status (0 and the error when there was no answer).
func rawCall(ctx context.Context, tc *tls.Config, method, url, token, body string) (int, error) {
	tr := &http.Transport{TLSClientConfig: tc}
	defer tr.CloseIdleConnections()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

// membership is who the members are (ids, addresses, suffrage), without
// what changes on its own (health, roles, stability).
func membership(v httpapi.ClusterView) string {
	parts := make([]string, 0, len(v.Nodes))
	for _, n := range v.Nodes {
		parts = append(parts, n.ID+"@"+n.HTTPAddr+"/"+n.RaftAddr+"/"+n.Suffrage)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJoinTokenAlwaysRequired: on a plain-HTTP cluster, a join without a
// token or with a wrong one gets 401 naming the join token; membership is
// the same before and after; the agent logs the caller's address and not
// the secret; `hookswitch join` without any token source says how to give
// one.
func TestJoinTokenAlwaysRequired(t *testing.T) {
	a := startDevAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := a.API().Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const wrong = "not-the-join-token-4242"
	req := httpapi.JoinRequest{ID: "intruder", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", TokenHash: strings.Repeat("cd", 32)}
	for _, secret := range []string{"", wrong, a.RootToken()} {
		err := client.New(a.BaseURL(), secret).WithHTTPClient(a.HTTPClient()).Join(ctx, req)
		if client.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "join token") {
			t.Fatalf("join with %q: %v; want 401 naming the join token", secret, err)
		}
	}
	after, err := a.API().Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if membership(before) != membership(after) || len(after.Nodes) != 1 {
		t.Fatalf("membership changed: %s → %s", membership(before), membership(after))
	}
	logs := a.Stderr()
	if !strings.Contains(logs, "join refused") || !strings.Contains(logs, "remote=127.0.0.1:") {
		t.Fatalf("refused joins not logged with the caller's address:\n%s", logs)
	}
	for _, secret := range []string{wrong, a.RootToken(), readJoinToken(t, a)} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a secret appears in the agent's log")
		}
	}
	// `hookswitch join` with no token source (no --join-token, no
	// HOOKSWITCH_JOIN_TOKEN, no join-token file in its data dir): the
	// node's join request is read (the API token comes from the
	// environment), then the command refuses, naming every source.
	r := harness.Run(t, []string{"HOOKSWITCH_TOKEN=" + a.RootToken()},
		"--addr", a.BaseURL(), "--client-data-dir", t.TempDir(), "join", "127.0.0.1:1")
	for _, want := range []string{"no join token", "--join-token", harness.JoinTokenEnv, "join-token file"} {
		if r.ExitCode <= 0 || !strings.Contains(r.Stderr, want) {
			t.Fatalf("join without a token: exit %d, stderr %q; want a refusal naming %q", r.ExitCode, r.Stderr, want)
		}
	}
}

// TestTLSReloadOnSIGHUP: an agent with tls-cert, tls-key and cluster-ca
// reads them again on SIGHUP: a new connection gets the new certificate,
// and the process keeps running.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	pki, pool := tlsPKI(t, filepath.Join(dir, "ca"), "n1")
	// The same CA issues a second, shorter-lived certificate elsewhere.
	next := &harness.PKI{Dir: filepath.Join(dir, "next")}
	if err := os.MkdirAll(next.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		if err := os.WriteFile(filepath.Join(next.Dir, f), []byte(readFileT(t, filepath.Join(pki.Dir, f))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	next.Issue(t, "n1", "--ip", "127.0.0.1", "--days", "3")
	a := harness.StartDevWith(t, harness.DevOptions{
		Extra: append([]string{"--config", "/dev/null"}, pki.AgentFlags("n1")...),
		TLS:   pki.Client(),
	})
	agentTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	notAfter := func() time.Time {
		c, err := tls.Dial("tcp", a.HTTPAddr, agentTLS)
		if err != nil {
			t.Fatalf("TLS to the agent: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].NotAfter
	}
	first := notAfter()
	for _, f := range []string{"n1.crt", "n1.key"} {
		if err := os.WriteFile(filepath.Join(pki.Dir, f), []byte(readFileT(t, filepath.Join(next.Dir, f))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() (bool, string, string) {
		got := notAfter()
		return got.Before(first.Add(-24 * time.Hour)), "the 3-day certificate after SIGHUP", got.String()
	}, 10*time.Second)
	if !a.Running() || !strings.Contains(a.Stderr(), "certificates reloaded") {
		t.Fatalf("after SIGHUP: running=%v, log:\n%s", a.Running(), a.Stderr())
	}
}

// TestAgentRefusesSettingsItCannotHonour: `hookswitch agent` exits
// non-zero at once, naming the setting, for a node id the API would refuse
// and for TLS settings it could not enforce.
func TestAgentRefusesSettingsItCannotHonour(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	pki, _ := tlsPKI(t, filepath.Join(dir, "ca"), "n1")
	crt, key, ca := pki.Cert("n1"), pki.Key("n1"), pki.CA()
	for i, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-id", "a b/../x"}, "node-id"},
		{[]string{"--cluster-ca", ca}, "cluster-ca needs tls-cert"},
		{[]string{"--tls-cert", crt}, "tls-cert is set without tls-key"},
		{[]string{"--tls-cert", crt, "--tls-key", key, "--cluster-ca", filepath.Join(dir, "nope.crt")}, "cluster-ca"},
		{[]string{"--join-token", "short"}, "join-token"},
		{[]string{"--api-rate", "fast"}, "api-rate"},
		{[]string{"--read-timeout", "0s"}, "read-timeout"},
	} {
		data := filepath.Join(dir, "data"+strconv.Itoa(i))
		args := append([]string{"agent", "--config", "/dev/null", "--bootstrap", "--data-dir", data,
			"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}, tc.args...)
		// Run waits at most harness.CLITimeout: the refusal comes at once.
		r := harness.Run(t, nil, args...)
		out := r.Stdout + r.Stderr
		if r.ExitCode <= 0 || !strings.Contains(out, tc.want) {
			t.Errorf("agent %v: exit %d, output %q; want a refusal naming %q", tc.args, r.ExitCode, out, tc.want)
		}
		if _, err := os.Stat(filepath.Join(data, "peers")); err == nil {
			t.Errorf("agent %v: refused, but it created its stores", tc.args)
		}
	}
}
