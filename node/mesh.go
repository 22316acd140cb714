package node

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source/peer"
	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/node/tlsnet"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// PeersDir holds the mirrors of the peers' event logs in the data dir.
const PeersDir = "peers"

// mesh keeps one mirror and one tailer per peer, following the membership
// in the replicated state.
type mesh struct {
	p       *pipeline
	mu      sync.Mutex
	mirrors map[string]*peer.Mirror
	tailers map[string]context.CancelFunc
	wg      sync.WaitGroup
	// client streams peers' logs: no overall timeout (streams are long);
	// a dead connection is noticed by the tailer's idle timeout.
	client *http.Client
}

// peerHeaderTimeout bounds the wait for a peer's answer to a tail request.
const peerHeaderTimeout = 10 * time.Second

func newMesh(p *pipeline) *mesh {
	return &mesh{
		p: p, mirrors: map[string]*peer.Mirror{}, tailers: map[string]context.CancelFunc{},
		// Connections leave from the advertised address and, with a
		// cluster-ca, present this node's certificate and verify the peer's.
		client: &http.Client{Transport: tlsnet.HTTPTransport(p.n.clusterTLS(), p.n.httpDialer, peerHeaderTimeout)},
	}
}

// openExisting opens the mirrors kept from a previous run, so the engine
// can resume subscriptions from them before the peers answer.
func (m *mesh) openExisting() error {
	dir := filepath.Join(m.p.n.cfg.DataDir, PeersDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: peers dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if filepath.Ext(name) != ".db" {
			continue
		}
		if _, err := m.mirror(name[:len(name)-len(".db")]); err != nil {
			return err
		}
	}
	return nil
}

// mirror returns (opening if needed) the mirror of a peer's log.
func (m *mesh) mirror(node string) (*peer.Mirror, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mr, ok := m.mirrors[node]; ok {
		return mr, nil
	}
	path := filepath.Join(m.p.n.cfg.DataDir, PeersDir, node+".db")
	cfg := &m.p.n.cfg
	// A copy follows its peer's trimming (trim notices: the peer counts
	// what its retention drops unread, then the copy drops it). Its own
	// limits, a margin above the peer's, only act when the peer cannot
	// tell (it is down), so that a copy never drops an event first.
	mr, err := peer.OpenMirror(path, eventlog.Options{
		Retention:      cfg.Retention + max(cfg.Retention/10, 10*cfg.TrimInterval),
		RetentionBytes: cfg.RetentionBytes + cfg.RetentionBytes/8,
		Logger:         m.p.n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: mirror of %s: %w", node, err)
	}
	m.mirrors[node] = mr
	m.p.engine.AddSource(node, mr)
	m.p.wsHub.AddSource(node, mr)
	return mr, nil
}

// loop starts a tailer for every peer in the state and stops those of
// removed peers.
func (m *mesh) loop(ctx context.Context) {
	n := m.p.n
	for {
		changed := n.fsm.Changed()
		peers := map[string]bool{}
		n.fsm.Read(func(st *fsm.State) {
			for id := range st.Nodes {
				if id != n.id {
					peers[id] = true
				}
			}
		})
		for id := range peers {
			m.startTailer(ctx, id)
		}
		m.mu.Lock()
		for id, stop := range m.tailers {
			if !peers[id] {
				stop()
				delete(m.tailers, id)
			}
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			m.wg.Wait()
			return
		case <-changed:
		}
	}
}

func (m *mesh) startTailer(ctx context.Context, id string) {
	m.mu.Lock()
	_, running := m.tailers[id]
	m.mu.Unlock()
	if running {
		return
	}
	mr, err := m.mirror(id)
	if err != nil {
		m.p.log.Error("cannot keep a copy of a peer's log", "peer", id, "err", err)
		return
	}
	n := m.p.n
	t := &peer.Tailer{
		Node: id, Mirror: mr, Token: n.nodeToken, Scheme: n.scheme(), Logger: n.log,
		Client: m.client,
		// Events the peer dropped (and counted) are not delivered from
		// memory either.
		Trimmed: func() { m.p.engine.Trimmed(id) },
		Addr: func() (string, bool) {
			var addr string
			n.fsm.Read(func(st *fsm.State) {
				if nd, ok := st.Nodes[id]; ok {
					addr = nd.HTTPAddr
				}
			})
			return addr, addr != ""
		},
	}
	tctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.tailers[id] = cancel
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t.Run(tctx)
	}()
}

// trim applies the mirrors' own retention (see mirror).
func (m *mesh) trim() {
	m.mu.Lock()
	mirrors := make(map[string]*peer.Mirror, len(m.mirrors))
	for id, mr := range m.mirrors {
		mirrors[id] = mr
	}
	m.mu.Unlock()
	for id, mr := range mirrors {
		st, err := mr.Trim(mr.FirstSeq(), nil)
		if err != nil {
			m.p.log.Warn("trimming a peer's copy failed", "peer", id, "err", err)
		}
		if st.Dropped > 0 {
			m.p.engine.Trimmed(id)
		}
	}
}

func (m *mesh) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mr := range m.mirrors {
		_ = mr.Close()
	}
}
