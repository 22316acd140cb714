package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"go.etcd.io/bbolt"

	"github.com/hookswitch/hookswitch/fsm"
)

var (
	metaBucket = []byte("meta")
	appliedKey = []byte("applied-index")
)

// stateBuckets are the buckets of fsm records that state.db holds.
var stateBuckets = []string{fsm.BucketSubs, fsm.BucketTokens, fsm.BucketNodes}

// StateDB is the FSM state in its own bbolt file. It implements
// fsm.Persister.
type StateDB struct {
	path string

	mu      sync.RWMutex // guards db during Restore's file swap
	db      *bbolt.DB
	applied uint64
}

var _ fsm.Persister = (*StateDB)(nil)

// OpenState opens (or creates) state.db in dir.
func OpenState(dir string) (*StateDB, error) {
	s := &StateDB{path: filepath.Join(dir, StateFile)}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *StateDB) open() error {
	db, err := bbolt.Open(s.path, 0o600, &bbolt.Options{Timeout: boltOpenTimeout, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("store: open %s: %w", StateFile, err)
	}
	var applied uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range append([]string{string(metaBucket)}, stateBuckets...) {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		applied = readApplied(tx)
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("store: init %s: %w", StateFile, err)
	}
	s.db, s.applied = db, applied
	return nil
}

func readApplied(tx *bbolt.Tx) uint64 {
	b := tx.Bucket(metaBucket)
	if b == nil {
		return 0
	}
	v := b.Get(appliedKey)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// Close closes state.db.
func (s *StateDB) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Close()
}

// Applied implements fsm.Persister.
func (s *StateDB) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Load implements fsm.Persister.
func (s *StateDB) Load(visit func(bucket, key string, value []byte) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.View(func(tx *bbolt.Tx) error {
		for _, name := range stateBuckets {
			b := tx.Bucket([]byte(name))
			if b == nil {
				continue
			}
			if err := b.ForEach(func(k, v []byte) error { return visit(name, string(k), v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// Commit implements fsm.Persister: the changes and the applied index are
// written and fsynced in one transaction.
func (s *StateDB) Commit(applied uint64, changes []fsm.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, c := range changes {
			b, err := tx.CreateBucketIfNotExists([]byte(c.Bucket))
			if err != nil {
				return err
			}
			if c.Value == nil {
				err = b.Delete([]byte(c.Key))
			} else {
				err = b.Put([]byte(c.Key), c.Value)
			}
			if err != nil {
				return err
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], applied)
		return tx.Bucket(metaBucket).Put(appliedKey, v[:])
	})
	if err != nil {
		return fmt.Errorf("store: commit state at %d: %w", applied, err)
	}
	s.applied = applied
	return nil
}

// Snapshot implements fsm.Persister. The state is copied out at once in
// one read transaction: state.db is small (subscriptions, tokens, nodes),
// and a read transaction held open while raft streams the snapshot would
// stall commits whenever bbolt has to grow its memory map.
func (s *StateDB) Snapshot() (fsm.PersistedSnapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var buf bytes.Buffer
	if err := s.db.View(func(tx *bbolt.Tx) error {
		_, err := tx.WriteTo(&buf)
		return err
	}); err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	return &stateSnapshot{data: buf.Bytes()}, nil
}

type stateSnapshot struct{ data []byte }

func (s *stateSnapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(s.data)
	return int64(n), err
}
func (s *stateSnapshot) Release() {}

// ErrBadSnapshot marks a snapshot stream that is not a state.db file.
var ErrBadSnapshot = errors.New("store: snapshot is not a hookswitch state file")

// Restore implements fsm.Persister. The stream is written to a temporary
// file beside state.db and checked; if it is ahead of the current state it
// atomically replaces state.db.
func (s *StateDB) Restore(r io.Reader) (bool, error) {
	tmp := s.path + ".restore"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return false, fmt.Errorf("store: restore: %w", err)
	}
	defer os.Remove(tmp)
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return false, fmt.Errorf("store: restore: copy: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("store: restore: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("store: restore: %w", err)
	}
	snapApplied, err := fileApplied(tmp)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if snapApplied <= s.applied {
		return false, nil
	}
	if err := s.db.Close(); err != nil {
		return false, fmt.Errorf("store: restore: close: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		// Reopen the old file so the node keeps working.
		if oerr := s.open(); oerr != nil {
			return false, errors.Join(err, oerr)
		}
		return false, fmt.Errorf("store: restore: rename: %w", err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return false, err
	}
	if err := s.open(); err != nil {
		return false, err
	}
	return true, nil
}

func fileApplied(path string) (uint64, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltOpenTimeout, ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	defer db.Close()
	var applied uint64
	err = db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(metaBucket) == nil {
			return ErrBadSnapshot
		}
		applied = readApplied(tx)
		return nil
	})
	return applied, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
