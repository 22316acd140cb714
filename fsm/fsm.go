package fsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Persister stores the state durably. store.StateDB implements it.
type Persister interface {
	// Applied is the raft index of the last entry whose changes are stored.
	Applied() uint64
	// Load visits every stored record.
	Load(visit func(bucket, key string, value []byte) error) error
	// Commit stores changes and the new applied index in one transaction.
	Commit(applied uint64, changes []Change) error
	// Snapshot opens a consistent read view of the stored state.
	Snapshot() (PersistedSnapshot, error)
	// Restore replaces the stored state with a snapshot stream, but only
	// when the snapshot is ahead of what is stored (a node restarting with
	// an up-to-date state.db keeps it). It reports whether it replaced.
	Restore(r io.Reader) (replaced bool, err error)
}

// PersistedSnapshot is a read view that can be streamed out.
type PersistedSnapshot interface {
	WriteTo(w io.Writer) (int64, error)
	Release()
}

// Observer is told, on the FSM goroutine after each committed batch, which
// records changed; reset is true after a snapshot restore replaced the
// whole state. It must be quick and must not call back into Apply.
type Observer func(changes []Change, reset bool)

// FSM adapts the pure apply functions to raft.BatchingFSM and keeps the
// in-memory State that every reader sees.
type FSM struct {
	log *slog.Logger
	p   Persister

	mu      sync.RWMutex
	st      *State
	applied atomic.Uint64

	obsMu     sync.Mutex
	observers []Observer
	changed   chan struct{}
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New loads the persisted state and returns an FSM over it.
func New(p Persister, logger *slog.Logger) (*FSM, error) {
	if logger == nil {
		logger = slog.Default()
	}
	f := &FSM{log: logger.With("component", "fsm"), p: p, changed: make(chan struct{})}
	st, err := loadState(p)
	if err != nil {
		return nil, err
	}
	f.st = st
	f.applied.Store(p.Applied())
	return f, nil
}

func loadState(p Persister) (*State, error) {
	st := NewState()
	if err := p.Load(st.Load); err != nil {
		return nil, fmt.Errorf("fsm: load state: %w", err)
	}
	return st, nil
}

// Applied returns the raft index of the last applied entry.
func (f *FSM) Applied() uint64 { return f.applied.Load() }

// Read runs fn with the state under a read lock. fn must not keep
// references to the state's maps or records after it returns.
func (f *FSM) Read(fn func(st *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// AddObserver registers o to be told of every change from now on.
func (f *FSM) AddObserver(o Observer) {
	f.obsMu.Lock()
	f.observers = append(f.observers, o)
	f.obsMu.Unlock()
}

// Changed returns a channel closed at the next applied change.
func (f *FSM) Changed() <-chan struct{} {
	f.obsMu.Lock()
	defer f.obsMu.Unlock()
	return f.changed
}

func (f *FSM) notify(changes []Change, reset bool) {
	f.obsMu.Lock()
	obs := f.observers
	close(f.changed)
	f.changed = make(chan struct{})
	f.obsMu.Unlock()
	for _, o := range obs {
		o(changes, reset)
	}
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: every command of the batch is
// applied to memory, then all changes are committed in one transaction.
// Entries at or below the persisted applied index were applied before a
// restart and are skipped.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	var changes []Change
	last := f.applied.Load()
	f.mu.Lock()
	for i, l := range logs {
		if l.Index <= last {
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := Decode(l.Data)
		if errors.Is(err, ErrUnknownSkippable) {
			f.log.Warn("skipping command of unknown type", "index", l.Index, "err", err)
			continue
		}
		if err != nil {
			f.mu.Unlock()
			// Skipping would let this replica diverge from the others.
			panic(fmt.Sprintf("fsm: entry %d: %v", l.Index, err))
		}
		res, ch := Apply(f.st, l.Index, cmd)
		out[i] = res
		changes = append(changes, ch...)
	}
	f.mu.Unlock()
	if last == f.applied.Load() {
		return out
	}
	if err := f.p.Commit(last, changes); err != nil {
		// Memory is ahead of disk now; continuing would make a restart
		// lose committed state silently.
		panic(fmt.Sprintf("fsm: commit index %d: %v", last, err))
	}
	f.applied.Store(last)
	f.notify(changes, false)
	return out
}

// Snapshot implements raft.FSM. It opens a read view of the persisted
// state, which raft streams out concurrently with later applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.p.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return &snapshot{s: s}, nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	replaced, err := f.p.Restore(rc)
	if err != nil {
		f.mu.Unlock()
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if !replaced {
		f.mu.Unlock()
		f.log.Info("kept local state: it is at or ahead of the snapshot", "applied", f.p.Applied())
		return nil
	}
	st, err := loadState(f.p)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	f.st = st
	f.applied.Store(f.p.Applied())
	f.mu.Unlock()
	f.log.Info("restored state from snapshot", "applied", f.p.Applied())
	f.notify(nil, true)
	return nil
}

type snapshot struct{ s PersistedSnapshot }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.s.Release() }
