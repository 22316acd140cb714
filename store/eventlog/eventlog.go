package eventlog

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Defaults and limits.
const (
	// DefaultRetention is how long records are kept when Options.Retention is 0.
	DefaultRetention = 72 * time.Hour
	// DefaultRetentionBytes is the size limit (bytes) when Options.RetentionBytes is 0: 2 GiB.
	DefaultRetentionBytes int64 = 2 << 30
	// DefaultMaxBatchEvents is the most events one group-commit transaction
	// holds when Options.MaxBatchEvents is 0.
	DefaultMaxBatchEvents = 10000
	// MaxModelLen is the longest model name in bytes (its length is stored in one byte).
	MaxModelLen = 255

	// maxBatchBytes caps the encoded bytes one group-commit transaction
	// gathers from several callers (one caller's entries are never split, so
	// a single larger call still goes through, alone).
	maxBatchBytes = 32 << 20
	// trimBatchRecords is the most records one trim transaction deletes, so
	// a trim never holds bbolt's writer lock for long.
	trimBatchRecords = 10000
	// trimBatchDropBytes bounds the stored bytes of the dropped records one
	// trim batch collects for the dropped callback (at least one record).
	trimBatchDropBytes = 16 << 20
	// readChunkBytes is the size of the buffers Read carves record bodies from.
	readChunkBytes = 64 << 10
	// openLockTimeout is how long Open waits for another process's lock on the file.
	openLockTimeout = 10 * time.Second
	// initialMmapBytes is the initial mmap size: read transactions do not
	// block a commit that grows the file while it stays below this size.
	initialMmapBytes = 128 << 20
	// fileMode is the permission of a newly created events.db.
	fileMode = 0o600
	// formatVersion is the on-disk layout version stored in the meta bucket.
	formatVersion = 1
	// slowCommit is the commit duration above which a warning is logged.
	slowCommit = time.Second
	// incarnationBytes is the number of random bytes of an incarnation id (hex: twice as many chars).
	incarnationBytes = 8
	// maxIncarnationLen bounds an incarnation given in Options (a peer's).
	maxIncarnationLen = 64
)

// Sentinel errors; compare with errors.Is.
var (
	// ErrClosed is returned by operations on a closed Log, and by Append
	// calls that were still queued when Close was called.
	ErrClosed = errors.New("eventlog: closed")
	// ErrNoEntries is returned by Append when given no entries.
	ErrNoEntries = errors.New("eventlog: no entries to append")
	// ErrModelTooLong is returned by Append when a model name exceeds MaxModelLen bytes.
	ErrModelTooLong = errors.New("eventlog: model name too long")
	// ErrCorrupt is returned when events.db holds data this package did not write.
	ErrCorrupt = errors.New("eventlog: corrupt events.db")
	// ErrIncarnation: the file belongs to another incarnation of the log.
	ErrIncarnation = errors.New("eventlog: file is of another incarnation")
	// ErrNotNext: mirrored records do not continue the log.
	ErrNotNext = errors.New("eventlog: mirrored records do not follow the last one")
	// ErrInvalidOptions is returned by Open for unusable Options.
	ErrInvalidOptions = errors.New("eventlog: invalid options")
	// ErrNoSpace: the file system under the log is full (ENOSPC, or a
	// quota: EDQUOT). Nothing of the failed append was stored; appends
	// succeed again once space returns.
	ErrNoSpace = errors.New("eventlog: no space left on the device")
)

// Bucket and meta key names.
const (
	bucketEvents = "events" // seq (8 bytes big-endian) -> encoded record
	bucketMeta   = "meta"   // the keys below

	metaIncarnation = "incarnation" // 16 lowercase hex chars
	metaLastSeq     = "last-seq"    // uint64, highest seq ever assigned
	metaBytes       = "bytes"       // uint64, sum of the stored value sizes (bytes)
	metaVersion     = "version"     // uint64, formatVersion
	metaCreatedMs   = "created-ms"  // uint64, unix ms when the file was created
)

// Options configures Open.
type Options struct {
	Path           string           // events.db
	Retention      time.Duration    // default 72h when 0
	RetentionBytes int64            // default 2 GiB when 0
	MaxBatchEvents int              // max events per group-commit tx, default 10000
	Logger         *slog.Logger     // component=eventlog; default slog.Default()
	Now            func() time.Time // for tests; default time.Now
	// Incarnation, when set, is the incarnation a new file gets (a mirror
	// of a peer's log takes the peer's); opening an existing file with
	// another incarnation fails with ErrIncarnation.
	Incarnation string
}

// Record is one stored event.
type Record struct {
	Seq      uint64
	IngestMs int64 // unix ms stamped by the committer when the tx started
	Model    string
	Body     []byte // the event JSON object as given by the caller (opaque bytes)
}

// Entry is what a caller appends.
type Entry struct {
	Model string
	Body  []byte
}

// Stats is a snapshot of the log's counters.
type Stats struct {
	Records  uint64 // records stored
	Bytes    int64  // approximate stored bytes: the sum of the encoded value sizes
	FirstSeq uint64 // lowest stored seq (LastSeq+1 when empty)
	LastSeq  uint64 // highest seq ever assigned
	Commits  uint64 // group-commit transactions fsynced since Open (trims not counted)
	Appends  uint64 // Append calls queued for commit since Open
}

// TrimStats reports what one Trim did.
type TrimStats struct {
	Deleted int   // records deleted, including the dropped ones
	Dropped int   // records deleted by retention (age or size) at or after keepFrom
	Bytes   int64 // stored bytes after the trim
}

// hooks lets tests observe and stall the committer and shrink trim batches.
type hooks struct {
	// beforeCommit runs in the committer goroutine before each group-commit
	// transaction, with the number of events and Append calls in it.
	beforeCommit func(events, calls int)
	// trimBatch overrides trimBatchRecords when > 0.
	trimBatch int
}

// Log is the durable event log. All methods are safe for concurrent use.
type Log struct {
	db          *bolt.DB
	log         *slog.Logger
	now         func() time.Time
	path        string
	retention   time.Duration
	retBytes    int64
	maxBatch    int
	trimBatch   int
	incarnation string
	hooks       hooks

	// lastIngestMs is the IngestMs of the newest record, to keep IngestMs
	// non-decreasing; set by load, then owned by the committer goroutine.
	lastIngestMs int64
	// full is true from a commit that failed for want of space until the
	// next one that succeeds: one log line per episode, not one per
	// request. Owned by the committer goroutine.
	full bool

	commits atomic.Uint64
	appends atomic.Uint64

	mu      sync.Mutex // guards the fields of this group
	closed  bool
	queue   []*appendReq  // Append calls not yet taken by the committer
	first   uint64        // lowest stored seq (last+1 when empty)
	last    uint64        // highest seq assigned
	bytes   int64         // stored value bytes
	changed chan struct{} // closed and replaced when last advances

	wake      chan struct{} // capacity 1: there is work in queue
	quit      chan struct{} // closed by Close
	done      chan struct{} // closed when the committer has exited
	closeOnce sync.Once
	closeErr  error

	trimMu sync.Mutex // serialises Trim calls
}

// Open opens (creating if needed) the event log at opts.Path and starts its
// committer goroutine. Close must be called to release it.
func Open(opts Options) (*Log, error) {
	return open(opts, hooks{})
}

func open(opts Options, h hooks) (*Log, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("%w: empty Path", ErrInvalidOptions)
	}
	if opts.Retention < 0 || opts.RetentionBytes < 0 || opts.MaxBatchEvents < 0 {
		return nil, fmt.Errorf("%w: negative Retention, RetentionBytes or MaxBatchEvents", ErrInvalidOptions)
	}
	l := &Log{
		path:      opts.Path,
		retention: opts.Retention,
		retBytes:  opts.RetentionBytes,
		maxBatch:  opts.MaxBatchEvents,
		trimBatch: trimBatchRecords,
		now:       opts.Now,
		hooks:     h,
		changed:   make(chan struct{}),
		wake:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if l.retention == 0 {
		l.retention = DefaultRetention
	}
	if l.retBytes == 0 {
		l.retBytes = DefaultRetentionBytes
	}
	if l.maxBatch == 0 {
		l.maxBatch = DefaultMaxBatchEvents
	}
	if h.trimBatch > 0 {
		l.trimBatch = h.trimBatch
	}
	if l.now == nil {
		l.now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	l.log = logger.With("component", "eventlog")

	db, err := bolt.Open(opts.Path, fileMode, &bolt.Options{
		Timeout:         openLockTimeout,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  true, // rebuilt on open; commits are still fsynced
		InitialMmapSize: initialMmapBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("eventlog: open %s: %w", opts.Path, err)
	}
	l.db = db
	if err := l.load(opts.Incarnation); err != nil {
		_ = db.Close()
		return nil, err
	}
	l.log.Info("event log opened", "path", l.path, "incarnation", l.incarnation,
		"first_seq", l.first, "last_seq", l.last, "bytes", l.bytes)
	go l.committer()
	return l, nil
}

// load creates the buckets and meta on a new file and reads the persistent
// state into memory.
func (l *Log) load(want string) error {
	return l.db.Update(func(tx *bolt.Tx) error {
		ev, err := tx.CreateBucketIfNotExists([]byte(bucketEvents))
		if err != nil {
			return fmt.Errorf("eventlog: create bucket: %w", err)
		}
		meta, err := tx.CreateBucketIfNotExists([]byte(bucketMeta))
		if err != nil {
			return fmt.Errorf("eventlog: create bucket: %w", err)
		}
		if v := meta.Get([]byte(metaVersion)); v == nil {
			if err := l.initMeta(meta, want); err != nil {
				return err
			}
		} else if len(v) != 8 || getU64(v) != formatVersion {
			return fmt.Errorf("%w: unsupported format version %x", ErrCorrupt, v)
		}
		inc := meta.Get([]byte(metaIncarnation))
		if len(inc) == 0 || len(inc) > maxIncarnationLen {
			return fmt.Errorf("%w: bad incarnation %q", ErrCorrupt, inc)
		}
		l.incarnation = string(inc)
		if want != "" && want != l.incarnation {
			return fmt.Errorf("%w: file has %s, want %s", ErrIncarnation, l.incarnation, want)
		}
		last, ok1 := metaU64(meta, metaLastSeq)
		bytes, ok2 := metaU64(meta, metaBytes)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: bad meta", ErrCorrupt)
		}
		l.last, l.bytes = last, int64(bytes)
		c := ev.Cursor()
		if k, _ := c.First(); k != nil {
			if len(k) != 8 {
				return fmt.Errorf("%w: bad key %x", ErrCorrupt, k)
			}
			l.first = getU64(k)
		} else {
			l.first = l.last + 1
		}
		if k, v := c.Last(); k != nil {
			rec, err := decodeRecord(k, v, nil)
			if err != nil {
				return err
			}
			if rec.Seq > l.last { // cannot happen with this package's writes
				return fmt.Errorf("%w: record seq %d beyond last-seq %d", ErrCorrupt, rec.Seq, l.last)
			}
			l.lastIngestMs = rec.IngestMs
		}
		return nil
	})
}

func (l *Log) initMeta(meta *bolt.Bucket, inc string) error {
	if inc == "" {
		var raw [incarnationBytes]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return fmt.Errorf("eventlog: incarnation: %w", err)
		}
		inc = hex.EncodeToString(raw[:])
	}
	if len(inc) > maxIncarnationLen {
		return fmt.Errorf("%w: incarnation longer than %d bytes", ErrInvalidOptions, maxIncarnationLen)
	}
	for _, kv := range []struct{ k, v []byte }{
		{[]byte(metaVersion), u64(formatVersion)},
		{[]byte(metaIncarnation), []byte(inc)},
		{[]byte(metaLastSeq), u64(0)},
		{[]byte(metaBytes), u64(0)},
		{[]byte(metaCreatedMs), u64(uint64(l.now().UnixMilli()))},
	} {
		if err := meta.Put(kv.k, kv.v); err != nil {
			return fmt.Errorf("eventlog: init meta: %w", err)
		}
	}
	return nil
}

// Close stops the committer, fails Append calls still queued with ErrClosed
// (a transaction already being written completes and its callers get their
// result), closes the Changed channel so waiters wake up, and closes the
// file. Calling Close again returns the first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		pending := l.queue
		l.queue = nil
		close(l.changed)
		l.mu.Unlock()
		for _, r := range pending {
			r.done <- appendResult{err: ErrClosed}
		}
		close(l.quit)
		<-l.done
		if err := l.db.Close(); err != nil {
			l.closeErr = fmt.Errorf("eventlog: close: %w", err)
		}
		l.log.Info("event log closed", "path", l.path)
	})
	return l.closeErr
}

// Incarnation is the random id (16 lowercase hex chars) created with the file.
func (l *Log) Incarnation() string { return l.incarnation }

// FirstSeq is the lowest seq still stored (LastSeq()+1 when empty).
func (l *Log) FirstSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// LastSeq is the highest seq ever assigned (0 when none). It never decreases.
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Stats returns a snapshot of the log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	s := Stats{Records: l.last + 1 - l.first, Bytes: l.bytes, FirstSeq: l.first, LastSeq: l.last}
	l.mu.Unlock()
	s.Commits = l.commits.Load()
	s.Appends = l.appends.Load()
	return s
}

// Changed returns a channel that is closed when LastSeq advances past the
// value it had when Changed was called, or when the log is closed.
func (l *Log) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// isClosed reports whether Close has been called.
func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// dbErr maps bbolt's "database not open" to ErrClosed.
func dbErr(op string, err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %s: %v", ErrNoSpace, op, err)
	}
	return fmt.Errorf("eventlog: %s: %w", op, err)
}
