package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/dispatch/engine"
	httpsource "github.com/hookswitch/hookswitch/dispatch/source/http"
	"github.com/hookswitch/hookswitch/dispatch/source/peer"
	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/store"
)

// Files in the data dir besides the stores.
const (
	NodeIDFile    = "node-id"
	RootTokenFile = "root-token"
	NodeTokenFile = "node-token"
	// RootTokenID is the id of the super token written at first bootstrap.
	RootTokenID = "root"

	raftMaxPool          = 3
	raftTransportTimeout = 10 * time.Second
	// leaderWaitPoll is how often Apply looks again for a leader while
	// there is none (during an election).
	leaderWaitPoll = 50 * time.Millisecond
	// raftApplyTimeout bounds how long an Apply waits to be enqueued.
	raftApplyTimeout = 10 * time.Second
	// forwardTimeout bounds one forwarded write to the leader.
	forwardTimeout        = 15 * time.Second
	httpReadHeaderTimeout = 10 * time.Second
	httpIdleTimeout       = 120 * time.Second
)

// Node is one running hookswitch cluster member.
type Node struct {
	cfg Config
	log *slog.Logger
	id  string

	raft      *raft.Raft
	transport *raft.NetworkTransport
	raftStore *store.RaftStores
	stateDB   *store.StateDB
	fsm       *fsm.FSM
	advRaft   string
	advHTTP   string

	api       *httpapi.Server
	httpSrv   *http.Server
	httpLn    net.Listener
	forwarder *http.Client
	nodeToken string
	pipe      *pipeline
	// logs returns the pipeline's event logs by source node (set once,
	// before any loop starts; the leader's reconciler counts waiting
	// events in them).
	logs func() map[string]engine.Log

	// RootToken is the super token written at first bootstrap (empty if
	// this node did not bootstrap the cluster now).
	RootToken string

	left      chan struct{}
	leaveOnce sync.Once
	// fresh: this node started without raft state (new, or wiped).
	fresh bool
	// reports records when this node applied each node's reports.

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stopMu sync.Mutex
	done   bool
}

// Start opens the node's stores, starts raft and the HTTP server, and
// returns once they are listening. Background loops stop with Shutdown.
func Start(cfg Config, version string, logger *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	id, err := resolveNodeID(cfg.DataDir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, id: id, log: logger.With("component", "node", "node", id), left: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			n.closeStores()
		}
	}()
	if err := n.openStores(logger); err != nil {
		return nil, err
	}
	if n.nodeToken, err = readOrCreateSecret(filepath.Join(cfg.DataDir, NodeTokenFile)); err != nil {
		return nil, err
	}
	if n.pipe, err = newPipeline(n, version, logger); err != nil {
		return nil, err
	}
	n.logs = n.pipe.logs
	n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("node: http listen %s: %w", cfg.HTTPAddr, err)
	}
	n.advHTTP = advertise(cfg.AdvertiseHTTP, n.httpLn.Addr().String())
	if err := n.startRaft(); err != nil {
		n.httpLn.Close()
		return nil, err
	}
	n.forwarder = &http.Client{Timeout: forwardTimeout}
	n.api = httpapi.New(httpapi.Config{Version: version, IngestAllow: cfg.IngestAllow, Logger: logger, Tester: n}, n, n)
	ingest := httpsource.New(httpsource.Options{Log: n.pipe.events, Authorize: n.api.AuthorizeIngest, Logger: logger})
	n.api.Mount(http.MethodPost, "/v1/events", ingest)
	ws := n.api.WebsocketHandler(httpapi.WSOptions{Hub: n.pipe.wsHub, Allow: cfg.WSAllow, Logger: logger})
	for _, path := range httpapi.WSPaths {
		n.api.Mount(http.MethodGet, path, ws)
	}
	n.api.MountInternal(http.MethodGet, "/internal/v1/log", peer.Handler(n.pipe.events, logger))
	n.api.MountLocal(http.MethodGet, "/metrics", n.metricsHandler())
	// Profiles, for the same callers as /metrics.
	n.api.MountLocal(http.MethodGet, "/debug/pprof/*", http.HandlerFunc(pprof.Index))
	n.api.MountLocal(http.MethodGet, "/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	n.httpSrv = &http.Server{
		Handler:           n.api.Handler(),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			n.httpLn.Close()
			return nil, fmt.Errorf("node: tls: %w", err)
		}
		n.httpSrv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		n.httpLn = tls.NewListener(n.httpLn, n.httpSrv.TLSConfig)
	}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		n.leaderLoop()
	}()
	n.pipe.start()
	if len(cfg.Join) > 0 {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.joinLoop() }()
	}
	if cfg.JoinToken == "" && !cfg.Dev {
		n.log.Warn("no join-token is set: anyone who reaches the HTTP port can join this cluster")
	}
	ok = true
	n.log.Info("node started", "http", n.advHTTP, "raft", n.advRaft, "data-dir", cfg.DataDir)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	return n, nil
}

func (n *Node) openStores(logger *slog.Logger) error {
	var err error
	if n.raftStore, err = store.OpenRaft(n.cfg.DataDir, os.Stderr); err != nil {
		return err
	}
	if n.stateDB, err = store.OpenState(n.cfg.DataDir); err != nil {
		return err
	}
	n.fsm, err = fsm.New(n.stateDB, logger)
	return err
}

func (n *Node) closeStores() {
	if n.pipe != nil {
		_ = n.pipe.events.Close()
	}
	if n.stateDB != nil {
		_ = n.stateDB.Close()
	}
	if n.raftStore != nil {
		_ = n.raftStore.Close()
	}
}

func (n *Node) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.id)
	rc.HeartbeatTimeout = n.cfg.RaftHeartbeatTimeout
	rc.ElectionTimeout = n.cfg.RaftElectionTimeout
	rc.LeaderLeaseTimeout = min(rc.LeaderLeaseTimeout, n.cfg.RaftHeartbeatTimeout)
	// BatchApplyCh stays off: with a buffered apply channel, an Apply
	// enqueued just before shutdown is never answered and its caller
	// hangs; writes here are few (reports, API changes) and need no
	// batching.
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})

	// With a concrete listen host and no advertise setting, the transport
	// advertises what it bound (this also resolves port 0 in tests).
	var advAddr net.Addr
	if adv := advertise(n.cfg.AdvertiseRaft, n.cfg.RaftAddr); adv != n.cfg.RaftAddr {
		a, err := net.ResolveTCPAddr("tcp", adv)
		if err != nil {
			return fmt.Errorf("node: raft advertise address %q: %w", adv, err)
		}
		advAddr = a
	}
	var err error
	n.transport, err = raft.NewTCPTransport(n.cfg.RaftAddr, advAddr, raftMaxPool, raftTransportTimeout, os.Stderr)
	if err != nil {
		return fmt.Errorf("node: raft listen %s: %w", n.cfg.RaftAddr, err)
	}
	n.advRaft = string(n.transport.LocalAddr())
	rs := n.raftStore
	hasState, err := raft.HasExistingState(rs.Bolt, rs.Bolt, rs.Snapshots)
	n.fresh = !hasState
	if err != nil {
		n.transport.Close()
		return fmt.Errorf("node: raft state: %w", err)
	}
	n.raft, err = raft.NewRaft(rc, n.fsm, rs.Bolt, rs.Bolt, rs.Snapshots, n.transport)
	if err != nil {
		n.transport.Close()
		return fmt.Errorf("node: raft: %w", err)
	}
	if n.cfg.Bootstrap && !hasState {
		// The root token file is written before the cluster exists, so a
		// crash between the two cannot leave a cluster nobody can manage:
		// the leader loop commits it once this node leads.
		path := filepath.Join(n.cfg.DataDir, RootTokenFile)
		if n.RootToken, err = readOrCreateSecret(path); err != nil {
			return err
		}
		cfg := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: n.transport.LocalAddr()}}}
		if err := n.raft.BootstrapCluster(cfg).Error(); err != nil {
			return fmt.Errorf("node: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped a new cluster", "root-token-file", path)
	}
	return nil
}

// advertise picks the address peers should use: the configured one, else
// the listen address, with an unspecified host replaced by this machine's
// first global unicast address (or loopback when it has none).
func advertise(configured, listen string) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen
	}
	return net.JoinHostPort(firstUnicastIP(), port)
}

func firstUnicastIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// resolveNodeID returns the configured id, else the one persisted in the
// data dir, else the hostname, and persists it. A data dir keeps its id: a
// different configured id is an error, not a silent rename.
func resolveNodeID(dir, configured string) (string, error) {
	path := filepath.Join(dir, NodeIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		persisted := strings.TrimSpace(string(b))
		if configured != "" && configured != persisted {
			return "", fmt.Errorf("%w: data dir %s belongs to node %q, not %q", ErrConfig, dir, persisted, configured)
		}
		return persisted, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("node: read %s: %w", path, err)
	}
	id := configured
	if id == "" {
		if id, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("node: hostname: %w", err)
		}
	}
	if err := writeFileAtomic(path, []byte(id+"\n")); err != nil {
		return "", err
	}
	return id, nil
}

// readOrCreateSecret returns the token stored at path, creating a new one
// (mode 0600) when the file does not exist.
func readOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node: read %s: %w", filepath.Base(path), err)
	}
	tok := httpapi.NewTokenSecret()
	if err := writeFileAtomic(path, []byte(tok+"\n")); err != nil {
		return "", err
	}
	return tok, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("node: write %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("node: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.id }

// NodeID implements httpapi.Backend.
func (n *Node) NodeID() string { return n.id }

// HTTPAddr is the address the HTTP server listens on.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// Read implements httpapi.Backend.
func (n *Node) Read(fn func(st *fsm.State)) { n.fsm.Read(fn) }

// FSM returns the node's state machine (for wiring and tests).
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Raft returns the raft instance (for tests and the CLI's status).
func (n *Node) Raft() *raft.Raft { return n.raft }

// Ready implements httpapi.Backend.
func (n *Node) Ready() error {
	if n.raft.State() == raft.Shutdown {
		return errors.New("raft is shut down")
	}
	if addr, _ := n.raft.LeaderWithID(); addr == "" {
		return errors.New("no leader")
	}
	var registered bool
	n.fsm.Read(func(st *fsm.State) { _, registered = st.Nodes[n.id] })
	if !registered {
		return errors.New("not yet a registered member of the cluster")
	}
	return nil
}

// Shutdown stops the node gracefully: the HTTP server finishes in-flight
// requests, leadership is handed over when there is another voter, raft
// stops and the stores close. It is safe to call more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopMu.Lock()
	defer n.stopMu.Unlock()
	if n.done {
		return nil
	}
	n.done = true
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	var errs []error
	if err := n.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	left := false
	select {
	case <-n.left:
		left = true // no longer a member: there is nobody to report to
	default:
	}
	if err := n.pipe.stop(!left); err != nil {
		errs = append(errs, fmt.Errorf("pipeline: %w", err))
	}
	n.pipe = nil
	n.cancel()
	if n.raft.State() == raft.Leader && n.voters() > 1 {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer failed", "err", err)
		}
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
	}
	n.wg.Wait()
	if err := n.transport.Close(); err != nil {
		errs = append(errs, err)
	}
	n.closeStores()
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}
