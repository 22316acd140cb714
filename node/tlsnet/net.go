package tlsnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Dialer returns a dialer whose connections leave from the advertised
// address's IP when it is a literal IP of this machine (port 0), so that
// a peer (and a firewall) sees the same address the node advertises.
// Otherwise the system picks the source address.
func Dialer(advertised string, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if ip := LocalIP(advertised); ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d
}

// LocalIP returns the host of a host:port when it is a literal IP address
// of this machine, else nil: an interface's address, or any loopback
// address (on Linux the whole of 127.0.0.0/8 is local, so nodes may
// advertise 127.0.0.11, 127.0.0.12 … on one machine).
func LocalIP(hostport string) net.IP {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil
	}
	if ip.IsLoopback() {
		return ip
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(ip) {
			return ip
		}
	}
	return nil
}

// HTTPTransport is the transport of the node's node-to-node HTTP clients:
// connections from dialer, and TLS from store (nil: plain HTTP) made anew
// for each connection, so a reloaded certificate or CA applies at once.
func HTTPTransport(store *Store, dialer *net.Dialer, headerTimeout time.Duration) *http.Transport {
	t := &http.Transport{
		Proxy:                 nil, // node-to-node calls never go through a proxy
		DialContext:           dialer.DialContext,
		ResponseHeaderTimeout: headerTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
	}
	if store != nil {
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, store.ClientConfig(addr))
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := conn.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		}
	}
	return t
}

// StreamLayer is raft's network: plain TCP, or mutual TLS when the store
// has a cluster CA (a peer without a certificate from the CA cannot open a
// connection, and this node talks only to peers that present one).
type StreamLayer struct {
	ln               net.Listener
	adv              net.Addr
	store            *Store // nil or without CA: plain TCP
	dialer           *net.Dialer
	handshakeTimeout time.Duration

	// conns are the open connections, dialed and accepted: Close closes
	// them too, so no raft goroutine stays blocked reading a peer that
	// went silent (a lossy link) until the transport's timeout.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// ErrClosed is returned by Dial once the stream layer is closed.
var ErrClosed = errors.New("raft stream layer closed")

// track registers c, or closes it when the layer is closed.
func (s *StreamLayer) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, ErrClosed
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	tc := &trackedConn{Conn: c, s: s}
	s.conns[tc] = struct{}{}
	return tc, nil
}

// trackedConn leaves the layer's set when it is closed.
type trackedConn struct {
	net.Conn
	s    *StreamLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// ErrNotAdvertisable is returned for an advertised address that peers
// cannot dial (an unspecified IP).
var ErrNotAdvertisable = errors.New("local bind address is not advertisable")

// NewStreamLayer listens on bind. adv is the address peers dial (nil: the
// bound address). store may be nil.
func NewStreamLayer(bind string, adv net.Addr, store *Store, dialer *net.Dialer, handshakeTimeout time.Duration) (*StreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if adv == nil {
		adv = ln.Addr()
	}
	if ta, ok := adv.(*net.TCPAddr); !ok || ta.IP == nil || ta.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotAdvertisable, adv)
	}
	return &StreamLayer{ln: ln, adv: adv, store: store, dialer: dialer, handshakeTimeout: handshakeTimeout}, nil
}

func (s *StreamLayer) mutual() bool { return s.store.Mutual() }

// Accept implements net.Listener. The TLS handshake happens on the
// connection's first read or write, bounded by the handshake timeout, so
// a slow client cannot stall the accept loop.
func (s *StreamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if s.mutual() {
		c = &serverConn{Conn: tls.Server(c, s.store.ServerConfig(true)), timeout: s.handshakeTimeout}
	}
	return s.track(c)
}

// Close implements net.Listener: it stops accepting, closes every open
// connection and makes Dial fail from then on.
func (s *StreamLayer) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	err := s.ln.Close()
	for c := range conns {
		_ = c.(*trackedConn).Conn.Close()
	}
	return err
}

// Addr implements net.Listener: the advertised address.
func (s *StreamLayer) Addr() net.Addr { return s.adv }

// Dial implements raft.StreamLayer.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := *s.dialer
	d.Timeout = timeout
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	if !s.mutual() {
		return s.track(c)
	}
	tc := tls.Client(c, s.store.ClientConfig(string(address)))
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft TLS handshake with %s: %w", address, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return s.track(tc)
}

// serverConn is an accepted TLS connection whose handshake runs once, on
// first use, within a deadline.
type serverConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(c.timeout))
		c.err = c.Conn.Handshake()
		_ = c.Conn.SetDeadline(time.Time{})
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
