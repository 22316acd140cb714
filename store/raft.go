package store

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// File names inside the data dir (DESIGN.md, "Processes, ports, files").
const (
	RaftFile      = "raft.db"
	StateFile     = "state.db"
	EventsFile    = "events.db"
	SnapshotsDir  = "snapshots"
	snapshotsKept = 2
	// boltOpenTimeout bounds how long opening a file waits for another
	// process's lock (a second agent on the same data dir).
	boltOpenTimeout = 2 * time.Second
)

// RaftStores are the raft log, stable and snapshot stores of one node.
type RaftStores struct {
	Bolt      *raftboltdb.BoltStore
	Snapshots raft.SnapshotStore
}

// OpenRaft opens raft.db and the snapshot store in dir.
func OpenRaft(dir string, logOutput io.Writer) (*RaftStores, error) {
	b, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, RaftFile),
		BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", RaftFile, err)
	}
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir), snapshotsKept, logOutput)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("store: open snapshots: %w", err)
	}
	return &RaftStores{Bolt: b, Snapshots: snaps}, nil
}

// Close closes raft.db.
func (r *RaftStores) Close() error { return r.Bolt.Close() }
