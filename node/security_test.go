package node_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/node"
	"github.com/hookswitch/hookswitch/node/pki"
)

const pollEvery = 10 * time.Millisecond

// syncBuf is a log sink the node writes to while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(t *testing.T) node.Config {
	cfg := node.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.Bootstrap = true
	cfg.RaftHeartbeatTimeout = 200 * time.Millisecond
	cfg.RaftElectionTimeout = 200 * time.Millisecond
	return cfg
}

// startNode starts cfg and waits until it is ready; logs go to the
// returned buffer.
func startNode(t *testing.T, cfg node.Config) (*node.Node, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	n, err := node.Start(cfg, "test", slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for n.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %v", n.Ready())
		}
		time.Sleep(pollEvery)
	}
	return n, logs
}

// TestStartRefusesSecuritySettingsItCannotHonour: every security setting
// that is accepted is enforced, so one the node cannot honour stops it at
// start with ErrConfig, before anything listens.
func TestStartRefusesSecuritySettingsItCannotHonour(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.InitCA(filepath.Join(dir, "ca"), "", 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	crt, key, err := pki.Issue(filepath.Join(dir, "ca"), "n1", pki.IssueOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.InitCA(filepath.Join(dir, "other"), "", 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca", pki.CACertFile)
	otherCA := filepath.Join(dir, "other", pki.CACertFile)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		set  func(c *node.Config)
		want string
	}{
		{"cluster-ca without tls-cert", func(c *node.Config) { c.ClusterCA = ca }, "cluster-ca needs tls-cert"},
		{"tls-cert without tls-key", func(c *node.Config) { c.TLSCert = crt }, "tls-cert is set without tls-key"},
		{"tls-key without tls-cert", func(c *node.Config) { c.TLSKey = key }, "tls-key is set without tls-cert"},
		{"unreadable cluster-ca", func(c *node.Config) { c.TLSCert, c.TLSKey, c.ClusterCA = crt, key, filepath.Join(dir, "missing.crt") }, "cluster-ca"},
		{"cluster-ca without a certificate", func(c *node.Config) { c.TLSCert, c.TLSKey, c.ClusterCA = crt, key, notPEM }, "holds no PEM certificate"},
		{"tls-cert from another CA than cluster-ca", func(c *node.Config) { c.TLSCert, c.TLSKey, c.ClusterCA = crt, key, otherCA }, "does not chain to cluster-ca"},
		{"tls-key of another certificate", func(c *node.Config) { c.TLSCert, c.TLSKey = crt, filepath.Join(dir, "ca", pki.CAKeyFile) }, "tls-cert/tls-key"},
		{"node id the API refuses", func(c *node.Config) { c.NodeID = "a b/../x" }, "node-id"},
		{"join without a join token", func(c *node.Config) { c.Bootstrap, c.Join = false, []string{"127.0.0.1:9"} }, "join token"},
		{"short join token", func(c *node.Config) { c.JoinToken = "short" }, "join-token is shorter"},
		{"read-timeout zero", func(c *node.Config) { c.ReadTimeout = 0 }, "read-timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.set(&cfg)
			n, err := node.Start(cfg, "test", slog.New(slog.DiscardHandler))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				_ = n.Shutdown(ctx)
				t.Fatalf("node started; want it refused (%s)", tc.want)
			}
			if !errors.Is(err, node.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrConfig mentioning %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(cfg.DataDir, "peers")); err == nil && strings.Contains(cfg.NodeID, "/") {
				t.Fatalf("a refused node id left files behind")
			}
		})
	}
}

// TestBootstrapWritesJoinToken: a bootstrapping node without join-token
// generates one into <data-dir>/join-token, mode 0600, and keeps it
// across restarts.
func TestBootstrapWritesJoinToken(t *testing.T) {
	cfg := testConfig(t)
	n, _ := startNode(t, cfg)
	path := filepath.Join(cfg.DataDir, node.JoinTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("join-token file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("join-token mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if tok := strings.TrimSpace(string(b)); len(tok) < node.MinJoinTokenLen || tok != n.JoinToken() {
		t.Fatalf("join-token file %q, node's token %q", tok, n.JoinToken())
	}
}

// TestJoinRefusedWithoutTheToken: a join without a token, or with a wrong
// one, is refused with 401 whatever the configuration; membership is the
// same before and after; the attempt is logged with the caller's socket
// address and never with the secret presented.
func TestJoinRefusedWithoutTheToken(t *testing.T) {
	cfg := testConfig(t)
	n, logs := startNode(t, cfg)
	members := func() string {
		f := n.Raft().GetConfiguration()
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		var ids []string
		n.FSM().Read(func(st *fsm.State) {
			for id := range st.Nodes {
				ids = append(ids, "state:"+id)
			}
		})
		return fmt.Sprint(f.Configuration().Servers, ids)
	}
	before := members()
	body := `{"id":"intruder","raft-addr":"127.0.0.1:1","http-addr":"127.0.0.1:2","token-hash":"` + strings.Repeat("ab", 32) + `"}`
	const wrong = "wrong-join-token-0123456789"
	for _, tc := range []struct{ name, auth string }{
		{"no token", ""},
		{"wrong token", "Bearer " + wrong},
		{"root token is no join token", "Bearer " + readFile(t, filepath.Join(cfg.DataDir, node.RootTokenFile))},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.HTTPAddr()+"/v1/cluster/join", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(msg), "join token") {
			t.Fatalf("%s: %d %s, want 401 naming the join token", tc.name, resp.StatusCode, msg)
		}
	}
	if after := members(); after != before {
		t.Fatalf("membership changed by refused joins:\nbefore %s\nafter  %s", before, after)
	}
	out := logs.String()
	if !strings.Contains(out, `msg="join refused" component=httpapi remote=127.0.0.1:`) {
		t.Fatalf("no refused join logged with the caller's address:\n%s", out)
	}
	if strings.Contains(out, wrong) || strings.Contains(out, n.JoinToken()) {
		t.Fatalf("a join token appears in the log:\n%s", out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestReadTimeoutCutsTricklingBody: a client that sends its body a byte at
// a time, without a token, is cut off once read-timeout has passed,
// instead of holding the connection for as long as it likes.
func TestReadTimeoutCutsTricklingBody(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReadTimeout = 300 * time.Millisecond
	n, _ := startNode(t, cfg)
	for _, path := range []string{"/v1/events", "/v1/subscriptions"} {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", n.HTTPAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", path)
			// Trickle for at most 20 s; the server must end the request
			// long before (read-timeout is 300ms).
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
			}()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			limit := time.After(20 * time.Second)
			for {
				select {
				case <-ended:
					return // the server answered and closed, or closed
				case <-tick.C:
					_, _ = conn.Write([]byte(" "))
				case <-limit:
					t.Fatal("the server still reads a trickled body after 20s; read-timeout is 300ms")
				}
			}
		})
	}
}

// TestNodeIDFileCheckedAtStart: a node id persisted in the data dir (by an
// older version) that breaks the API's rule is refused at start too.
func TestNodeIDFileCheckedAtStart(t *testing.T) {
	cfg := testConfig(t)
	if err := os.WriteFile(filepath.Join(cfg.DataDir, node.NodeIDFile), []byte("a b/../x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := node.Start(cfg, "test", slog.New(slog.DiscardHandler))
	if !errors.Is(err, node.ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
}
