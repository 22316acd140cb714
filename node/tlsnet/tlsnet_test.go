package tlsnet_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/node/pki"
	"github.com/hookswitch/hookswitch/node/tlsnet"
)

type ca struct{ dir string }

func newCA(t *testing.T, nodes ...string) ca {
	t.Helper()
	c := ca{dir: t.TempDir()}
	if _, err := pki.InitCA(c.dir, "", 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if _, _, err := pki.Issue(c.dir, n, pki.IssueOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c ca) crt(n string) string { return filepath.Join(c.dir, n+".crt") }
func (c ca) key(n string) string { return filepath.Join(c.dir, n+".key") }
func (c ca) caFile() string      { return filepath.Join(c.dir, pki.CACertFile) }

func (c ca) store(t *testing.T, n string) *tlsnet.Store {
	t.Helper()
	s, err := tlsnet.Load(c.crt(n), c.key(n), c.caFile())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pipe starts a stream layer for srv and dials it with cli; it returns
// what the server read (or its error) and the client's error.
func roundTrip(t *testing.T, srv, cli *tlsnet.Store) (serverErr, clientErr error) {
	t.Helper()
	d := tlsnet.Dialer("127.0.0.1:0", 2*time.Second)
	sl, err := tlsnet.NewStreamLayer("127.0.0.1:0", nil, srv, d, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	got := make(chan error, 1)
	go func() {
		c, err := sl.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		b := make([]byte, 5)
		_, err = io.ReadFull(c, b)
		if err == nil && string(b) != "hello" {
			err = errors.New("read " + string(b))
		}
		if err == nil {
			_, err = c.Write([]byte("ok"))
		}
		got <- err
	}()
	cl, err := tlsnet.NewStreamLayer("127.0.0.1:0", nil, cli, d, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	conn, err := cl.Dial(raft.ServerAddress("127.0.0.1:"+portOf(sl.Addr())), 2*time.Second)
	if err == nil {
		_, err = conn.Write([]byte("hello"))
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = io.ReadFull(conn, make([]byte, 2))
		}
		conn.Close()
	}
	select {
	case serverErr = <-got:
	case <-time.After(5 * time.Second):
		serverErr = errors.New("server got nothing")
	}
	return serverErr, err
}

func portOf(a net.Addr) string { _, p, _ := net.SplitHostPort(a.String()); return p }

// TestStreamLayerMutualTLS: two nodes of one CA talk; a node of another
// CA is refused by the server and refuses the server.
func TestStreamLayerMutualTLS(t *testing.T) {
	a := newCA(t, "n1", "n2")
	b := newCA(t, "x1")
	if se, ce := roundTrip(t, a.store(t, "n1"), a.store(t, "n2")); se != nil || ce != nil {
		t.Fatalf("same CA: server %v, client %v", se, ce)
	}
	// x1 presents a certificate from CA b but trusts CA a.
	foreign, err := tlsnet.Load(b.crt("x1"), b.key("x1"), b.caFile())
	if err != nil {
		t.Fatal(err)
	}
	if se, ce := roundTrip(t, a.store(t, "n1"), foreign); se == nil && ce == nil {
		t.Fatal("a node of another CA was served")
	}
	// A plain TCP client on a mutual-TLS stream layer.
	if se, ce := roundTrip(t, a.store(t, "n1"), nil); se == nil && ce == nil {
		t.Fatal("a plaintext client was served")
	}
}

// TestReloadSwapsCertificate: Reload reads the files again; a failed
// reload keeps the previous certificate.
func TestReloadSwapsCertificate(t *testing.T) {
	a := newCA(t, "n1")
	s := a.store(t, "n1")
	first := s.NotAfter()
	// A certificate with another lifetime in the same files.
	other := t.TempDir()
	if err := copyFile(a.caFile(), filepath.Join(other, pki.CACertFile)); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(filepath.Join(a.dir, pki.CAKeyFile), filepath.Join(other, pki.CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.Issue(other, "n1", pki.IssueOptions{Validity: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"n1.crt", "n1.key"} {
		if err := copyFile(filepath.Join(other, f), filepath.Join(a.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := s.NotAfter(); !got.Before(first) {
		t.Fatalf("after reload NotAfter %v, want the new certificate's (before %v)", got, first)
	}
	second := s.NotAfter()
	if err := os.WriteFile(a.crt("n1"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("reload of a broken certificate succeeded")
	}
	if s.NotAfter() != second {
		t.Fatal("a failed reload replaced the certificate")
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	_ = os.Remove(to)
	return os.WriteFile(to, b, 0o600)
}

// TestIssuedCertificates: node certificates chain to their CA for server
// and client use and name the node and the given addresses.
func TestIssuedCertificates(t *testing.T) {
	a := newCA(t, "n1")
	c, err := tls.LoadX509KeyPair(a.crt("n1"), a.key("n1"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	if leaf.Subject.CommonName != "n1" || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("certificate names %q %v", leaf.Subject.CommonName, leaf.IPAddresses)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.Issue(a.dir, "n1", pki.IssueOptions{}); !errors.Is(err, pki.ErrExists) {
		t.Fatalf("issuing over an existing key: %v, want ErrExists", err)
	}
	if _, _, err := pki.Issue(a.dir, "../x", pki.IssueOptions{}); !errors.Is(err, pki.ErrBadName) {
		t.Fatalf("a node name with a slash: %v, want ErrBadName", err)
	}
	if _, err := pki.InitCA(a.dir, "", 0, time.Now()); !errors.Is(err, pki.ErrExists) {
		t.Fatalf("init over a CA: %v, want ErrExists", err)
	}
}

// TestDialerLeavesFromAdvertisedAddress: a literal local IP becomes the
// dialer's source address; anything else leaves it to the system.
func TestDialerLeavesFromAdvertisedAddress(t *testing.T) {
	d := tlsnet.Dialer("127.0.0.1:7481", time.Second)
	la, ok := d.LocalAddr.(*net.TCPAddr)
	if !ok || !la.IP.Equal(net.IPv4(127, 0, 0, 1)) || la.Port != 0 {
		t.Fatalf("LocalAddr %v, want 127.0.0.1:0", d.LocalAddr)
	}
	for _, adv := range []string{"example.invalid:7481", "192.0.2.55:7481", "0.0.0.0:7481", "garbage"} {
		if d := tlsnet.Dialer(adv, time.Second); d.LocalAddr != nil {
			t.Errorf("%s: LocalAddr %v, want none", adv, d.LocalAddr)
		}
	}
	// Any loopback address is local (nodes of one machine advertise
	// 127.0.0.11, 127.0.0.12 …), and the connection really leaves from it.
	d = tlsnet.Dialer("127.0.0.12:7481", time.Second)
	if la, ok := d.LocalAddr.(*net.TCPAddr); !ok || !la.IP.Equal(net.IPv4(127, 0, 0, 12)) {
		t.Fatalf("LocalAddr %v, want 127.0.0.12:0", d.LocalAddr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if h, _, _ := net.SplitHostPort(c.LocalAddr().String()); h != "127.0.0.12" {
		t.Fatalf("left from %s", c.LocalAddr())
	}
}
