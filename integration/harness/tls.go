package harness

import (
	"crypto/tls"
	"net/http"
	"path/filepath"

	"github.com/hookswitch/hookswitch/httpapi/client"
)

// ClientTLS is how the harness's clients reach nodes that serve HTTPS:
// the CA that verifies the nodes' certificates and, optionally, a client
// certificate to present (Cert and Key together). The files are PEM, as
// `hookswitch tls init` and `hookswitch tls issue` write them. The Go
// clients (Node.API, Node.Anon, the readiness checks) and the command
// line (--ca, --cert, --key) use the same files.
type ClientTLS struct {
	CA, Cert, Key string
}

// Config is the TLS configuration of the files (client.TLSConfig, the
// command line's own); it fails t if they cannot be read.
func (c *ClientTLS) Config(t TB) *tls.Config {
	t.Helper()
	cfg, err := client.TLSConfig(c.CA, c.Cert, c.Key)
	if err != nil {
		t.Fatalf("harness: client TLS: %v", err)
	}
	return cfg
}

// Flags are the command line's flags of the files.
func (c *ClientTLS) Flags() []string {
	var out []string
	for _, f := range []struct{ flag, path string }{{"--ca", c.CA}, {"--cert", c.Cert}, {"--key", c.Key}} {
		if f.path != "" {
			out = append(out, f.flag, f.path)
		}
	}
	return out
}

// scheme is the scheme of a node's URLs: https when its clients have a
// ClientTLS.
func (c *ClientTLS) scheme() string {
	if c == nil {
		return "http"
	}
	return "https"
}

// httpClient is base (or a new client) with its transport's TLS
// configuration set to c's; base is returned as is when c is nil.
func (c *ClientTLS) httpClient(t TB, base *http.Client) *http.Client {
	t.Helper()
	if c == nil {
		return base
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if b, ok := base.Transport.(*http.Transport); ok {
		tr = b.Clone()
	}
	tr.TLSClientConfig = c.Config(t)
	return &http.Client{Transport: tr, Timeout: base.Timeout}
}

// PKI is a cluster CA and node certificates in one directory, made by the
// binary under test: ca.crt and ca.key from `hookswitch tls init`, and
// <node>.crt and <node>.key from `hookswitch tls issue <node>`.
type PKI struct {
	Dir string
}

// NewPKI makes a CA in dir with `hookswitch tls init` and a certificate
// for each node, valid for 127.0.0.1, with `hookswitch tls issue`; it
// fails t if a command fails.
func NewPKI(t TB, dir string, nodes ...string) *PKI {
	t.Helper()
	p := &PKI{Dir: dir}
	MustRun(t, nil, "tls", "init", "--dir", dir)
	for _, n := range nodes {
		p.Issue(t, n, "--ip", "127.0.0.1")
	}
	return p
}

// Issue issues a certificate for node with `hookswitch tls issue node`
// and the extra flags (--ip, --dns, --days …).
func (p *PKI) Issue(t TB, node string, extra ...string) {
	t.Helper()
	MustRun(t, nil, append([]string{"tls", "issue", node, "--dir", p.Dir}, extra...)...)
}

// CA is the path of the CA's certificate.
func (p *PKI) CA() string { return filepath.Join(p.Dir, "ca.crt") }

// Cert is the path of a node's certificate.
func (p *PKI) Cert(node string) string { return filepath.Join(p.Dir, node+".crt") }

// Key is the path of a node's key.
func (p *PKI) Key(node string) string { return filepath.Join(p.Dir, node+".key") }

// AgentFlags are the agent flags of a node on mutual TLS: its certificate
// and key, and the cluster CA (Options.NodeExtra takes this method).
func (p *PKI) AgentFlags(node string) []string {
	return []string{"--tls-cert", p.Cert(node), "--tls-key", p.Key(node), "--cluster-ca", p.CA()}
}

// Client verifies the nodes with the CA and presents no certificate.
func (p *PKI) Client() *ClientTLS { return &ClientTLS{CA: p.CA()} }

// ClientAs verifies the nodes with the CA and presents node's
// certificate.
func (p *PKI) ClientAs(node string) *ClientTLS {
	return &ClientTLS{CA: p.CA(), Cert: p.Cert(node), Key: p.Key(node)}
}
