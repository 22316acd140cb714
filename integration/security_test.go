package integration

import (
	"bytes"
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
	"os/exec"
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
)

// runHS runs the hookswitch command line (no node address) and fails the
// test unless it exits 0.
func runHS(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hookswitchBin, args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("hookswitch %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// tlsPKI makes a CA with `hookswitch tls init` and certificates for the
// given nodes with `hookswitch tls issue NODE --ip 127.0.0.1`.
func tlsPKI(t *testing.T, dir string, nodes ...string) *x509.CertPool {
	t.Helper()
	runHS(t, "tls", "init", "--dir", dir)
	for _, n := range nodes {
		runHS(t, "tls", "issue", n, "--dir", dir, "--ip", "127.0.0.1")
	}
	for _, f := range append([]string{"ca.key"}, nodes...) {
		if !strings.HasSuffix(f, ".key") {
			f += ".key"
		}
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want a 0600 key", f, err, fi.Mode().Perm())
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("ca.crt holds no certificate")
	}
	return pool
}

func loadCert(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
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
	caDir, foreignDir := filepath.Join(dir, "ca"), filepath.Join(dir, "foreign")
	pool := tlsPKI(t, caDir, "n1", "n2", "n3", "n4")
	tlsPKI(t, foreignDir, "n4")
	apiTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	ports := freeLoopbackPorts(t, 8)
	var nodes []*agent
	for i := range 4 {
		id := "n" + strconv.Itoa(i+1)
		a := &agent{
			t: t, tls: apiTLS,
			dataDir:  filepath.Join(dir, id, "data"),
			httpAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i]),
			raftAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			stdout:   filepath.Join(dir, id, "agent.stdout"),
			stderr:   filepath.Join(dir, id, "agent.stderr"),
		}
		if err := os.MkdirAll(filepath.Dir(a.dataDir), 0o700); err != nil {
			t.Fatal(err)
		}
		a.args = append([]string{"agent", "--config", "/dev/null", "--node-id", id, "--data-dir", a.dataDir,
			"--http-addr", a.httpAddr, "--raft-addr", a.raftAddr,
			"--tls-cert", filepath.Join(caDir, id+".crt"), "--tls-key", filepath.Join(caDir, id+".key"),
			"--cluster-ca", filepath.Join(caDir, "ca.crt")}, shortClusterTimings.flags()...)
		nodes = append(nodes, a)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, a := range nodes {
				a.dumpOutput()
			}
		}
	})
	for _, a := range nodes {
		t.Cleanup(a.cleanup)
	}
	n1 := nodes[0]
	n1.args = append(n1.args, "--bootstrap")
	n1.start()
	for _, a := range nodes[1:3] {
		a.args = append(a.args, "--join", n1.httpAddr)
		a.start()
	}
	n4 := nodes[3] // started later, without --join
	waitFor(t, func() (bool, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
		defer cancel()
		v, err := n1.client().Cluster(ctx)
		if err != nil {
			return false, "3 voters up", err.Error()
		}
		up := 0
		for _, m := range v.Nodes {
			if m.Health == "up" && m.Suffrage == "voter" {
				up++
			}
		}
		return up == 3 && v.Leader != "", "3 voters up with a leader", clusterSummary(v)
	}, clusterFormTimeout)

	// Writes through every node: the followers forward theirs to the
	// leader over mutual TLS.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := n1.rootToken()
	for _, a := range nodes[:3] {
		c := client.New(a.baseURL(), root).WithTLS(apiTLS)
		if _, err := c.CreateSub(ctx, client.Fields{"model": "call", "post-url": "http://127.0.0.1:9/x"}); err != nil {
			t.Fatalf("create a subscription through %s: %v", a.httpAddr, err)
		}
	}
	// The mesh: an event ingested on n3 reaches n1's websocket (from n1's
	// copy of n3's log, tailed over mutual TLS).
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if _, err := client.New(nodes[2].baseURL(), "").WithTLS(apiTLS).Ingest(ctx, map[string]any{"model": "call", "mark": "over-mtls"}); err != nil {
		t.Fatalf("ingest on n3: %v", err)
	}
	wsT := http.DefaultTransport.(*http.Transport).Clone()
	wsT.TLSClientConfig = apiTLS
	ws, _, err := websocket.Dial(ctx, "wss://"+n1.httpAddr+"/v1/events/ws?since="+since, &websocket.DialOptions{
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

	before, err := n1.client().Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A node with a certificate from another CA, even with the join token.
	foreign := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{loadCert(t, foreignDir, "n4")}, MinVersion: tls.VersionTLS12}
	noCert := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	joinBody := fmt.Sprintf(`{"id":"n4","raft-addr":"127.0.0.1:1","http-addr":"127.0.0.1:2","token-hash":"%s"}`, strings.Repeat("ab", 32))
	n2Token := strings.TrimSpace(readFileT(t, filepath.Join(nodes[1].dataDir, "node-token")))
	for _, tc := range []struct {
		name, method, path, token, body string
		tls                             *tls.Config
		wantStatus                      int // 0: the TLS handshake fails
	}{
		{"foreign certificate: join", http.MethodPost, "/v1/cluster/join", testJoinToken, joinBody, foreign, 0},
		{"foreign certificate: peer log", http.MethodGet, "/internal/v1/log", n2Token, "", foreign, 0},
		{"no certificate: join with the join token", http.MethodPost, "/v1/cluster/join", testJoinToken, joinBody, noCert, http.StatusUnauthorized},
		{"no certificate: peer log with a node token", http.MethodGet, "/internal/v1/log", n2Token, "", noCert, http.StatusForbidden},
		{"no certificate: forwarded write with a node token", http.MethodPost, "/internal/v1/apply", n2Token, "x", noCert, http.StatusForbidden},
	} {
		status, err := rawCall(ctx, tc.tls, tc.method, "https://"+n1.httpAddr+tc.path, tc.token, tc.body)
		switch {
		case tc.wantStatus == 0 && err == nil:
			t.Errorf("%s: answered %d; want the TLS handshake refused", tc.name, status)
		case tc.wantStatus != 0 && status != tc.wantStatus:
			t.Errorf("%s: %d (%v); want %d", tc.name, status, err, tc.wantStatus)
		}
	}
	after, err := n1.client().Cluster(ctx)
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
	if err := plain.RequestVote("n1", raft.ServerAddress(n1.raftAddr), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("x"), Addr: []byte(plain.LocalAddr())}, Term: 1 << 40, Candidate: []byte(plain.LocalAddr()),
	}, &vresp); err == nil {
		t.Fatalf("a plaintext raft RequestVote was answered: %+v", vresp)
	}
	conn, err := tls.Dial("tcp", n1.raftAddr, noCert)
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
	if v, err := n1.client().Cluster(ctx); err != nil || len(v.Nodes) != 3 || v.Leader == "" {
		t.Fatalf("after the refusals: %s %v", clusterSummary(v), err)
	}

	// `hookswitch join` on mutual TLS: n4 runs without --join; the command
	// line reads its join request over HTTPS (--ca) and asks n2 to add it,
	// presenting n4's certificate (--cert, --key) and the join token
	// (HOOKSWITCH_JOIN_TOKEN of the test environment).
	startUnjoined(t, n4)
	runHS(t, "--addr", n4.baseURL(), "--ca", filepath.Join(caDir, "ca.crt"),
		"--cert", filepath.Join(caDir, "n4.crt"), "--key", filepath.Join(caDir, "n4.key"), "join", nodes[1].httpAddr)
	waitFor(t, func() (bool, string, string) {
		v, err := n1.client().Cluster(ctx)
		if err != nil {
			return false, "n4 a member", err.Error()
		}
		return len(v.Nodes) == 4, "4 members", clusterSummary(v)
	}, clusterFormTimeout)
	if err := n4.anonClient().Ready(ctx); err != nil {
		waitFor(t, func() (bool, string, string) {
			err := n4.anonClient().Ready(ctx)
			return err == nil, "n4 ready", fmt.Sprint(err)
		}, clusterFormTimeout)
	}
}

// startUnjoined starts an agent that is no member yet (no --bootstrap, no
// --join) and waits until it serves /healthz.
func startUnjoined(t *testing.T, a *agent) {
	t.Helper()
	a.starts++
	stdout, stderr := a.openLog(a.stdout), a.openLog(a.stderr)
	defer stdout.Close()
	defer stderr.Close()
	cmd := exec.Command(hookswitchBin, a.args...)
	cmd.Env = cleanEnv()
	cmd.Dir = filepath.Dir(a.dataDir)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cmd, a.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(a.done)
	waitFor(t, func() (bool, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
		defer cancel()
		err := a.anonClient().Do(ctx, http.MethodGet, "/healthz", nil, nil)
		return err == nil || !a.running(), "/healthz to answer", fmt.Sprint(err)
	}, readyTimeout)
	if !a.running() {
		t.Fatalf("agent exited: %s", a.cmd.ProcessState)
	}
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
	before, err := a.client().Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const wrong = "not-the-join-token-4242"
	req := httpapi.JoinRequest{ID: "intruder", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", TokenHash: strings.Repeat("cd", 32)}
	for _, secret := range []string{"", wrong, a.rootToken()} {
		err := client.New(a.baseURL(), secret).Join(ctx, req)
		if client.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "join token") {
			t.Fatalf("join with %q: %v; want 401 naming the join token", secret, err)
		}
	}
	after, err := a.client().Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if membership(before) != membership(after) || len(after.Nodes) != 1 {
		t.Fatalf("membership changed: %s → %s", membership(before), membership(after))
	}
	logs := readFileT(t, a.stderr)
	if !strings.Contains(logs, "join refused") || !strings.Contains(logs, "remote=127.0.0.1:") {
		t.Fatalf("refused joins not logged with the caller's address:\n%s", logs)
	}
	for _, secret := range []string{wrong, a.rootToken(), testJoinToken} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a secret appears in the agent's log")
		}
	}
}

// TestTLSReloadOnSIGHUP: an agent with tls-cert, tls-key and cluster-ca
// reads them again on SIGHUP: a new connection gets the new certificate,
// and the process keeps running.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	pool := tlsPKI(t, caDir, "n1")
	// The same CA issues a second, shorter-lived certificate elsewhere.
	next := filepath.Join(dir, "next")
	if err := os.MkdirAll(next, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		if err := os.WriteFile(filepath.Join(next, f), []byte(readFileT(t, filepath.Join(caDir, f))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runHS(t, "tls", "issue", "n1", "--dir", next, "--ip", "127.0.0.1", "--days", "3")
	ports := freeLoopbackPorts(t, 2)
	a := &agent{
		t: t, tls: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		dataDir:  filepath.Join(dir, "data"),
		httpAddr: "127.0.0.1:" + strconv.Itoa(ports[0]),
		raftAddr: "127.0.0.1:" + strconv.Itoa(ports[1]),
		stdout:   filepath.Join(dir, "agent.stdout"),
		stderr:   filepath.Join(dir, "agent.stderr"),
	}
	a.args = []string{"agent", "--dev", "--config", "/dev/null", "--data-dir", a.dataDir, "--http-addr", a.httpAddr, "--raft-addr", a.raftAddr,
		"--tls-cert", filepath.Join(caDir, "n1.crt"), "--tls-key", filepath.Join(caDir, "n1.key"), "--cluster-ca", filepath.Join(caDir, "ca.crt")}
	t.Cleanup(func() {
		if t.Failed() {
			a.dumpOutput()
		}
	})
	t.Cleanup(a.cleanup)
	a.start()
	notAfter := func() time.Time {
		c, err := tls.Dial("tcp", a.httpAddr, a.tls)
		if err != nil {
			t.Fatalf("TLS to the agent: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].NotAfter
	}
	first := notAfter()
	for _, f := range []string{"n1.crt", "n1.key"} {
		if err := os.WriteFile(filepath.Join(caDir, f), []byte(readFileT(t, filepath.Join(next, f))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() (bool, string, string) {
		got := notAfter()
		return got.Before(first.Add(-24 * time.Hour)), "the 3-day certificate after SIGHUP", got.String()
	}, 10*time.Second)
	if !a.running() || !strings.Contains(readFileT(t, a.stderr), "certificates reloaded") {
		t.Fatalf("after SIGHUP: running=%v, log:\n%s", a.running(), readFileT(t, a.stderr))
	}
}

// TestAgentRefusesSettingsItCannotHonour: `hookswitch agent` exits
// non-zero at once, naming the setting, for a node id the API would refuse
// and for TLS settings it could not enforce.
func TestAgentRefusesSettingsItCannotHonour(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	tlsPKI(t, filepath.Join(dir, "ca"), "n1")
	crt, key, ca := filepath.Join(dir, "ca", "n1.crt"), filepath.Join(dir, "ca", "n1.key"), filepath.Join(dir, "ca", "ca.crt")
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
		ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
		cmd := exec.CommandContext(ctx, hookswitchBin, args...)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(string(out), tc.want) {
			t.Errorf("agent %v: err %v, output %q; want a refusal naming %q", tc.args, err, out, tc.want)
		}
		if _, err := os.Stat(filepath.Join(data, "peers")); err == nil {
			t.Errorf("agent %v: refused, but it created its stores", tc.args)
		}
	}
}
