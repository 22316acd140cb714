package tlsnet

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// ErrConfig marks certificate settings the node cannot honour.
var ErrConfig = errors.New("invalid TLS configuration")

// material is one loaded set of files.
type material struct {
	cert *tls.Certificate
	pool *x509.CertPool // nil without cluster-ca
}

// Store holds the node's certificate and key and the cluster CA, and swaps
// them atomically on Reload. Connections made after a reload use the new
// files; established ones keep theirs.
type Store struct {
	certFile, keyFile, caFile string
	cur                       atomic.Pointer[material]
}

// Load reads the files and checks that the node can honour them: the
// certificate and key match, the CA file holds at least one certificate,
// and the node's certificate chains to the CA for both server and client
// use (the node presents it to its peers in both roles). caFile may be
// empty (HTTPS for the API only). certFile and keyFile must be set.
func Load(certFile, keyFile, caFile string) (*Store, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%w: tls-cert and tls-key are both needed", ErrConfig)
	}
	s := &Store{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again; on error the previous ones stay in use.
func (s *Store) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("%w: tls-cert/tls-key: %v", ErrConfig, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("%w: tls-cert: %v", ErrConfig, err)
		}
	}
	m := &material{cert: &cert}
	if s.caFile != "" {
		b, err := os.ReadFile(s.caFile)
		if err != nil {
			return fmt.Errorf("%w: cluster-ca: %v", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("%w: cluster-ca %s holds no PEM certificate", ErrConfig, s.caFile)
		}
		inter := x509.NewCertPool()
		for _, c := range cert.Certificate[1:] {
			if ic, err := x509.ParseCertificate(c); err == nil {
				inter.AddCert(ic)
			}
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				return fmt.Errorf("%w: tls-cert does not chain to cluster-ca for %s use: %v", ErrConfig, usageName(usage), err)
			}
		}
		m.pool = pool
	}
	s.cur.Store(m)
	return nil
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageClientAuth {
		return "client"
	}
	return "server"
}

// Mutual reports whether a cluster CA is configured (mutual TLS between
// nodes).
func (s *Store) Mutual() bool { return s != nil && s.cur.Load().pool != nil }

// NotAfter is when the node's certificate expires.
func (s *Store) NotAfter() time.Time { return s.cur.Load().cert.Leaf.NotAfter }

// ServerConfig is the TLS configuration of a server: it presents the
// node's certificate; with a cluster CA, clientAuth decides whether a
// client certificate is required (raft) or verified when given (the HTTP
// API, which also serves clients without one). A client certificate that
// does not chain to the CA fails the handshake either way.
func (s *Store) ServerConfig(requireClient bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*m.cert}}
			if m.pool != nil {
				c.ClientCAs = m.pool
				c.ClientAuth = tls.VerifyClientCertIfGiven
				if requireClient {
					c.ClientAuth = tls.RequireAndVerifyClientCert
				}
			}
			return c, nil
		},
	}
}

// ClientConfig is the TLS configuration for calling a peer at addr
// (host:port): with a cluster CA the peer must present a certificate that
// chains to it and names host, and this node presents its own; without one
// the system roots verify the peer.
func (s *Store) ClientConfig(addr string) *tls.Config {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	m := s.cur.Load()
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if m.pool != nil {
		c.RootCAs = m.pool
		c.Certificates = []tls.Certificate{*m.cert}
	}
	return c
}
