package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	rpprof "runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/dispatch/engine"
	httpsource "github.com/hookswitch/hookswitch/dispatch/source/http"
	"github.com/hookswitch/hookswitch/dispatch/source/peer"
	"github.com/hookswitch/hookswitch/dispatch/stats"
	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/fsm/backup"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/node/tlsnet"
	"github.com/hookswitch/hookswitch/store"
)

// Files in the data dir besides the stores.
const (
	NodeIDFile    = "node-id"
	RootTokenFile = "root-token"
	NodeTokenFile = "node-token"
	// JoinTokenFile holds the cluster's join token: written by the node
	// that bootstraps the cluster when join-token is not set, read by a
	// node that joins when neither --join-token nor HOOKSWITCH_JOIN_TOKEN
	// gives it, and kept by a node that joined (it checks joins when it
	// leads).
	JoinTokenFile = "join-token"
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
	forwardTimeout  = 15 * time.Second
	httpIdleTimeout = 120 * time.Second
	// peerDialTimeout bounds opening a node-to-node connection; the TLS
	// handshake of raft has the same bound.
	peerDialTimeout = 5 * time.Second
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
	logs     func() map[string]engine.Log
	subStats *stats.Minutes // per-minute delivery counts (substats.go)
	metrics  *nodeMetrics   // series counted as things happen (metrics.go)

	// certs are tls-cert, tls-key and cluster-ca (nil without TLS),
	// reloaded on SIGHUP.
	certs *tlsnet.Store
	// joinToken is the cluster's join token as this node knows it ("" if
	// it does not: it then refuses joins when it leads).
	joinToken string
	// httpDialer and raftDialer open node-to-node connections from the
	// advertised addresses.
	httpDialer *net.Dialer
	raftDialer *net.Dialer

	// RootToken is the super token written at first bootstrap (empty if
	// this node did not bootstrap the cluster now).
	RootToken string

	// membershipMu serialises this leader's raft membership changes that
	// depend on the voter count: joins and autopilot's (voters.go).
	membershipMu sync.Mutex

	left      chan struct{}
	leaveOnce sync.Once
	// fresh: this node started without raft state (new, or wiped).
	fresh bool
	// unjoined: started with no raft state and neither bootstrap nor
	// join (see Unjoined).
	unjoined bool
	// restoreSuper: --restore with a file that holds a super token (no
	// root token is made).
	restoreSuper bool

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
	// Certificates first: a TLS setting the node cannot honour stops it
	// before anything else starts.
	var certs *tlsnet.Store
	if cfg.TLSCert != "" {
		var err error
		if certs, err = tlsnet.Load(cfg.TLSCert, cfg.TLSKey, cfg.ClusterCA); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	id, err := resolveNodeID(cfg.DataDir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	if !httpapi.ValidNodeID(id) {
		return nil, fmt.Errorf("%w: node id %q (from %s or the hostname) does not follow the API's rule [A-Za-z0-9._-]{1,64}: set node-id",
			ErrConfig, id, NodeIDFile)
	}
	n := &Node{cfg: cfg, id: id, certs: certs, log: logger.With("component", "node", "node", id), left: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			if n.httpLn != nil {
				n.httpLn.Close()
			}
			n.closeStores()
		}
	}()
	if n.joinToken, err = loadJoinToken(cfg); err != nil {
		return nil, err
	}
	if len(cfg.Join) > 0 && n.joinToken == "" {
		return nil, fmt.Errorf("%w: --join needs the cluster's join token: --join-token, HOOKSWITCH_JOIN_TOKEN or %s (the bootstrap node wrote it to its own %s)",
			ErrConfig, filepath.Join(cfg.DataDir, JoinTokenFile), JoinTokenFile)
	}
	n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("node: http listen %s: %w", cfg.HTTPAddr, err)
	}
	n.advHTTP = advertise(cfg.AdvertiseHTTP, n.httpLn.Addr().String())
	n.httpDialer = tlsnet.Dialer(n.advHTTP, peerDialTimeout)
	n.forwarder = &http.Client{Timeout: forwardTimeout, Transport: tlsnet.HTTPTransport(n.clusterTLS(), n.httpDialer, 0)}
	if err := n.openStores(logger); err != nil {
		return nil, err
	}
	var restore *backup.Snapshot // --restore: read and checked before anything is bootstrapped
	if cfg.Restore != "" {
		if restore, err = n.readRestoreFile(); err != nil {
			return nil, err
		}
		n.restoreSuper = hasSuperToken(restore)
	}
	if n.nodeToken, err = readOrCreateSecret(filepath.Join(cfg.DataDir, NodeTokenFile)); err != nil {
		return nil, err
	}
	n.subStats = stats.New(nil)
	n.metrics = newNodeMetrics(cfg.MetricsMaxSubs)
	if n.pipe, err = newPipeline(n, version, logger); err != nil {
		return nil, err
	}
	n.logs = n.pipe.logs
	if err := n.startRaft(); err != nil {
		return nil, err
	}
	if restore != nil {
		if err := n.seedFromSnapshot(restore); err != nil {
			return nil, err
		}
	}
	n.api = httpapi.New(httpapi.Config{
		Version: version, IngestAllow: cfg.IngestAllow, Logger: logger, Tester: n,
		MutualTLS: certs.Mutual(), APIRate: cfg.APIRate, IngestRate: cfg.IngestRate, SubStats: n,
		PostURLGuard:  cfg.postURLGuard(),
		SecretOverlap: cfg.SecretOverlap, MaxSubsPerToken: cfg.MaxSubsPerToken,
	}, n, n)
	ingest := httpsource.New(httpsource.Options{Log: n.pipe.events, Authorize: n.api.AuthorizeIngest, Logger: logger})
	n.api.Mount(http.MethodPost, "/v1/events", n.metrics.instrumentIngest(n.api.LimitIngest(ingest)))
	ws := n.api.WebsocketHandler(httpapi.WSOptions{Hub: n.pipe.wsHub, Allow: cfg.WSAllow, Logger: logger})
	for _, path := range httpapi.WSPaths {
		n.api.Mount(http.MethodGet, path, ws)
	}
	n.api.MountInternal(http.MethodGet, "/internal/v1/log", peer.Handler(n.pipe.events, logger))
	n.api.MountInternal(http.MethodGet, subStatsPath, n.internalSubStats())
	n.api.MountLocal(http.MethodGet, "/metrics", n.metricsHandler())
	n.api.MountSnapshot(n) // GET /v1/snapshot, POST /v1/snapshot/restore: snapshot.go
	n.api.MountLocal(http.MethodGet, SourcesPath, n.pipe.sources.handler(n.id))
	// Profiles, for the same callers as /metrics.
	n.api.MountLocal(http.MethodGet, "/debug/pprof/*", http.HandlerFunc(pprof.Index))
	n.api.MountLocal(http.MethodGet, "/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	n.httpSrv = &http.Server{
		Handler: readTimeout(n.api.Handler(), cfg.ReadTimeout),
		// The body's share of read-timeout is enforced by readTimeout:
		// http.Server's ReadTimeout would also cancel long streams
		// (websockets, /internal/v1/log) once it passed.
		ReadHeaderTimeout: cfg.ReadTimeout,
		IdleTimeout:       httpIdleTimeout,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	if certs != nil {
		n.httpSrv.TLSConfig = certs.ServerConfig(false)
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
	if n.unjoined {
		n.log.Warn("this node is in no cluster yet: its data dir holds no raft state and neither --bootstrap nor --join is set; it waits to be added",
			"run", "hookswitch join HTTP_ADDR (against this node), or restart with --join HTTP_ADDR --join-token TOKEN, or --bootstrap for a new cluster")
	} else if n.joinToken == "" {
		n.log.Warn("this node has no join token: it refuses every join while it leads (set join-token or copy the cluster's join-token file into the data dir)")
	}
	ok = true
	n.log.Info("node started", "http", n.advHTTP, "raft", n.advRaft, "data-dir", cfg.DataDir,
		"tls", certs != nil, "mutual-tls", certs.Mutual())
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
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr, Exclude: n.quietNormalStart})

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
	advHost := n.cfg.RaftAddr
	if advAddr != nil {
		advHost = advAddr.String()
	}
	n.raftDialer = tlsnet.Dialer(advHost, peerDialTimeout)
	stream, err := tlsnet.NewStreamLayer(n.cfg.RaftAddr, advAddr, n.clusterTLS(), n.raftDialer, peerDialTimeout)
	if err != nil {
		return fmt.Errorf("node: raft listen %s: %w", n.cfg.RaftAddr, err)
	}
	n.transport = newRaftTransport(stream)
	n.advRaft = string(n.transport.LocalAddr())
	rs := n.raftStore
	hasState, err := raft.HasExistingState(rs.Bolt, rs.Bolt, rs.Snapshots)
	if err == nil && n.cfg.Bootstrap && n.joinToken == "" {
		// The cluster's join token is made with the cluster (or, for a
		// cluster made before join tokens were always required, at the
		// next start of its bootstrap node).
		n.joinToken, err = readOrCreateSecret(filepath.Join(n.cfg.DataDir, JoinTokenFile))
	}
	n.fresh = !hasState
	if err != nil {
		n.transport.Close()
		return fmt.Errorf("node: raft state: %w", err)
	}
	// A node with no state and neither bootstrap nor join is in no
	// cluster: it runs, waiting for `hookswitch join`, and says so.
	n.unjoined = !hasState && !n.cfg.Bootstrap && len(n.cfg.Join) == 0
	if n.cfg.Restore != "" && (hasState || n.fsm.Applied() > 0) {
		n.transport.Close()
		return fmt.Errorf("%w: data dir %s already holds a cluster's state; --restore only starts a new cluster in an empty data dir (restore into a running cluster with `hookswitch snapshot restore`)",
			ErrRestoreRefused, n.cfg.DataDir)
	}
	n.raft, err = raft.NewRaft(rc, n.fsm, rs.Bolt, rs.Bolt, rs.Snapshots, n.transport)
	if err != nil {
		n.transport.Close()
		return fmt.Errorf("node: raft: %w", err)
	}
	if n.cfg.Bootstrap && !hasState {
		// The root token file is written before the cluster exists, so a
		// crash between the two cannot leave a cluster nobody can manage:
		// the leader loop commits it once this node leads. A cluster
		// restored from a snapshot with a super token is managed with the
		// saved cluster's tokens instead.
		path := filepath.Join(n.cfg.DataDir, RootTokenFile)
		if n.restoreSuper {
			path = "(none: the snapshot's tokens)"
		} else if n.RootToken, err = readOrCreateSecret(path); err != nil {
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
	persisted := strings.TrimSpace(string(b))
	switch {
	case err == nil && persisted == "":
		// Left empty by a write that failed before writeFileAtomic
		// reported such failures: written again below.
	case err == nil:
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
// (mode 0600) when the file does not exist or is empty (left so by a write
// that failed before writeFileAtomic reported such failures).
func readOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if tok := strings.TrimSpace(string(b)); err == nil && tok != "" {
		return tok, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node: read %s: %w", filepath.Base(path), err)
	}
	tok := httpapi.NewTokenSecret()
	if err := writeFileAtomic(path, []byte(tok+"\n")); err != nil {
		return "", err
	}
	return tok, nil
}

func writeFileAtomic(path string, data []byte) error {
	return writeFileAtomicFS(osFS{}, path, data)
}

// writeFileAtomicFS writes data to path through a temporary file that is
// synced and renamed over path, then syncs the directory, so a crash or a
// full disk leaves either the old file or the complete new one, never a
// truncated one. Any failure is returned; the temporary file is removed.
func writeFileAtomicFS(fsys fileSys, path string, data []byte) error {
	tmp := path + ".tmp"
	fail := func(err error) error {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("node: write %s: %w", filepath.Base(path), err)
	}
	f, err := fsys.Create(tmp)
	if err != nil {
		return fail(err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		return fail(err)
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		// The file is complete, but the rename may not survive a crash.
		return fmt.Errorf("node: write %s: sync directory: %w", filepath.Base(path), err)
	}
	return nil
}

// fileSys is what writeFileAtomicFS does to the file system (a seam for
// tests, which inject faults).
type fileSys interface {
	// Create creates or truncates name (mode 0600) for writing.
	Create(name string) (syncFile, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// SyncDir makes the directory's entries (a rename) durable.
	SyncDir(dir string) error
}

// syncFile is the part of *os.File that writeFileAtomicFS uses.
type syncFile interface {
	io.Writer
	Sync() error
	Close() error
}

// osFS is the real file system.
type osFS struct{}

func (osFS) Create(name string) (syncFile, error) {
	return os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
}
func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error             { return os.Remove(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
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

// Unjoined tells whether this node started with no raft state and neither
// bootstrap nor join, and has not been added to a cluster since (with
// `hookswitch join`).
func (n *Node) Unjoined() bool {
	if !n.unjoined {
		return false
	}
	cf := n.raft.GetConfiguration()
	return cf.Error() != nil || len(cf.Configuration().Servers) == 0
}

// Ready implements httpapi.Backend.
func (n *Node) Ready() error {
	if n.raft.State() == raft.Shutdown {
		return errors.New("raft is shut down")
	}
	if n.Unjoined() {
		return fmt.Errorf("%w: run `hookswitch join HTTP_ADDR` against this node, or restart it with --join HTTP_ADDR or --bootstrap", ErrNoCluster)
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
// requests, webhook POSTs in flight finish or are cancelled when ctx is
// done (their events are delivered again later), a final report commits
// the cursors of what was delivered, leadership is handed over when there
// is another voter, raft stops and the stores close. It is safe to call more
// than once.
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
	// A node that left, or was never added to a cluster, has nobody to
	// report to.
	if err := n.pipe.stop(ctx, !left && !n.Unjoined()); err != nil {
		errs = append(errs, fmt.Errorf("pipeline: %w", err))
	}
	n.pipe = nil
	n.cancel()
	if n.raft.State() == raft.Leader && n.voters() > 1 {
		if err := waitFuture(ctx, n.raft.LeadershipTransfer()); err != nil {
			n.log.Warn("leadership transfer failed", "err", err)
		}
	}
	// Raft always shuts down, whatever is left of ctx (its files and the
	// stores must be closed), but not forever. Its connections are closed
	// at once: a replication goroutine reading a peer that went silent (a
	// lossy or cut link) would otherwise hold the shutdown for the
	// transport's whole timeout.
	rctx, rcancel := context.WithTimeout(context.Background(), raftShutdownTimeout)
	defer rcancel()
	shut := n.raft.Shutdown()
	_ = n.transport.Close()
	if err := waitFuture(rctx, shut); err != nil {
		// Raft's main loop is stuck (seen when a node gains leadership
		// while its peers stop too, on a busy machine). Its files are
		// consistent at every write, as after a crash: leave without it
		// rather than hang past the deadline (systemd would kill us).
		n.log.Error("raft did not shut down before the deadline; stopping without it (goroutines follow on stderr)", "err", err)
		_ = rpprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		return errors.Join(append(errs, fmt.Errorf("raft shutdown: %w", err))...)
	}
	n.wg.Wait()
	if err := n.transport.Close(); err != nil {
		errs = append(errs, err)
	}
	n.closeStores()
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

// newRaftTransport is raft's network transport over stream, with
// pipelining off: raft v1.7.3's pipeline deadlocks when its decoder stops
// on a failed response while the sender waits for a free slot (seen on a
// lossy link: replication to that peer stalled, and raft's shutdown waited
// for it forever). One AppendEntries at a time, each bounded by the
// transport timeout, is plenty for reports and admin writes.
func newRaftTransport(stream raft.StreamLayer) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: raftMaxPool, Timeout: raftTransportTimeout,
		Logger:          hclog.New(&hclog.LoggerOptions{Name: "raft-net", Output: os.Stderr, Level: hclog.DefaultLevel}),
		MaxRPCsInFlight: 1,
	})
}

// raftShutdownTimeout bounds raft's own shutdown in Shutdown.
const raftShutdownTimeout = 10 * time.Second

// waitFuture waits for a raft future, or until ctx is done.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
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

// quietNormalStart drops raft warnings that every cluster's normal start
// produces, so a fresh bootstrap or join logs no warning:
//   - starting an election when no leader was ever seen since start (a
//     fresh bootstrap, or a cluster's first election after it restarts);
//     a lost leader (a known last-leader-id) still warns;
//   - a joining node with an empty log refusing its first entries, and the
//     leader then sending it the log from the start (next=1);
//   - a node that started with no raft state (a fresh join) finding no
//     peers to elect with before the cluster has added it.
func (n *Node) quietNormalStart(_ hclog.Level, msg string, args ...any) bool {
	arg := func(key string) (string, bool) {
		for i := 0; i+1 < len(args); i += 2 {
			if k, _ := args[i].(string); k == key {
				return fmt.Sprint(args[i+1]), true
			}
		}
		return "", false
	}
	switch msg {
	case "heartbeat timeout reached, starting election":
		v, ok := arg("last-leader-id")
		return ok && v == ""
	case "failed to get previous log":
		v, ok := arg("last-index")
		return ok && v == "0"
	case "no known peers, aborting election":
		return n.fresh
	case "appendEntries rejected, sending older logs":
		v, ok := arg("next")
		return ok && v == "1"
	}
	return false
}
