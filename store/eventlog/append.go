package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// appendFillPercent is the bbolt fill percent for the events bucket in
// commit transactions: keys only ever go at the end, so pages can be packed full.
const appendFillPercent = 1.0

// appendReq is one Append call waiting for the committer.
type appendReq struct {
	buf   []byte // the encoded values, back to back (ingest ms patched by the committer)
	offs  []int  // value i is buf[offs[i]:offs[i+1]]
	first uint64 // set by the committer inside the transaction

	// Guarded by Log.mu.
	taken     bool // the committer has it; it can no longer be withdrawn
	abandoned bool // the caller gave up before it was taken; skip it

	done chan appendResult // capacity 1
}

func (r *appendReq) events() int { return len(r.offs) - 1 }

type appendResult struct {
	first    uint64
	ingestMs int64
	err      error
}

// Append stores all entries as one atomic unit with consecutive sequence
// numbers and returns only after they are fsynced. It returns the first seq
// and the ingest time (unix ms) assigned; entry i has seq firstSeq+i.
//
// Concurrent calls are merged by the log's committer goroutine into one
// bbolt transaction (one fsync) of up to MaxBatchEvents events; one call's
// entries are never split across transactions, and a call with more than
// MaxBatchEvents entries is committed alone in its own transaction.
//
// The entries are copied before Append returns or blocks; the caller may
// reuse them afterwards.
//
// If ctx is done before the result is known, Append returns ctx.Err(). The
// entries are then either not stored at all (the committer had not picked
// the call up yet) or stored in full (it had); the caller cannot tell which
// and must treat the outcome as unknown. Append on a closed log, or a call
// still queued when Close is called, returns ErrClosed.
func (l *Log) Append(ctx context.Context, entries []Entry) (firstSeq uint64, ingestMs int64, err error) {
	if len(entries) == 0 {
		return 0, 0, ErrNoEntries
	}
	size := 0
	for i := range entries {
		if len(entries[i].Model) > MaxModelLen {
			return 0, 0, fmt.Errorf("%w: entry %d: %d bytes (max %d)", ErrModelTooLong, i, len(entries[i].Model), MaxModelLen)
		}
		size += encodedLen(&entries[i])
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	r := &appendReq{
		buf:  make([]byte, size),
		offs: make([]int, len(entries)+1),
		done: make(chan appendResult, 1),
	}
	off := 0
	for i := range entries {
		n := encodedLen(&entries[i])
		encodeValue(r.buf[off:off+n], 0, &entries[i])
		off += n
		r.offs[i+1] = off
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, 0, ErrClosed
	}
	l.queue = append(l.queue, r)
	l.mu.Unlock()
	l.appends.Add(1)
	select {
	case l.wake <- struct{}{}:
	default: // a wake-up is already pending
	}

	select {
	case res := <-r.done:
		return res.first, res.ingestMs, res.err
	case <-ctx.Done():
		l.mu.Lock()
		taken := r.taken
		if !taken {
			r.abandoned = true
		}
		l.mu.Unlock()
		if taken {
			select {
			case res := <-r.done: // finished meanwhile: report the real outcome
				return res.first, res.ingestMs, res.err
			default:
			}
		}
		return 0, 0, ctx.Err()
	}
}

// committer is the single goroutine that writes appends.
func (l *Log) committer() {
	defer close(l.done)
	var batch []*appendReq
	for {
		batch = l.take(batch[:0])
		if len(batch) == 0 {
			select {
			case <-l.wake:
				continue
			case <-l.quit:
				return
			}
		}
		l.commit(batch)
		clear(batch)
	}
}

// take removes from the queue the next group of calls to commit together:
// as many as fit in maxBatch events and maxBatchBytes, at least one.
func (l *Log) take(batch []*appendReq) []*appendReq {
	l.mu.Lock()
	defer l.mu.Unlock()
	events, bytes := 0, 0
	i := 0
	for ; i < len(l.queue); i++ {
		r := l.queue[i]
		if r.abandoned {
			continue
		}
		if len(batch) > 0 && (events+r.events() > l.maxBatch || bytes+len(r.buf) > maxBatchBytes) {
			break
		}
		r.taken = true
		batch = append(batch, r)
		events += r.events()
		bytes += len(r.buf)
	}
	rest := copy(l.queue, l.queue[i:])
	clear(l.queue[rest:])
	l.queue = l.queue[:rest]
	return batch
}

// commit writes batch in one transaction and answers its callers.
func (l *Log) commit(batch []*appendReq) {
	events := 0
	for _, r := range batch {
		events += r.events()
	}
	if h := l.hooks.beforeCommit; h != nil {
		h(events, len(batch))
	}
	keys := make([]byte, keyLen*events)
	var (
		lastSeq uint64
		ms      int64
		added   int64
	)
	start := time.Now()
	err := l.db.Update(func(tx *bolt.Tx) error {
		ev, meta := tx.Bucket([]byte(bucketEvents)), tx.Bucket([]byte(bucketMeta))
		ev.FillPercent = appendFillPercent
		seq, ok1 := metaU64(meta, metaLastSeq)
		stored, ok2 := metaU64(meta, metaBytes)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: bad meta", ErrCorrupt)
		}
		// One ingest time per transaction, never behind the previous one, so
		// IngestMs is non-decreasing in seq order (SeqAtOrAfter and time
		// retention rely on it).
		ms = max(l.now().UnixMilli(), l.lastIngestMs)
		added = 0
		k := 0
		for _, r := range batch {
			r.first = seq + 1
			for i := 0; i < r.events(); i++ {
				seq++
				key := keys[k*keyLen : (k+1)*keyLen]
				k++
				putKey(key, seq)
				v := r.buf[r.offs[i]:r.offs[i+1]]
				putKey(v, uint64(ms)) // patch the ingest ms header
				if err := ev.Put(key, v); err != nil {
					return err
				}
				added += int64(len(v))
			}
		}
		if err := meta.Put([]byte(metaLastSeq), u64(seq)); err != nil {
			return err
		}
		if err := meta.Put([]byte(metaBytes), u64(stored+uint64(added))); err != nil {
			return err
		}
		lastSeq = seq
		return nil
	})
	if err != nil {
		err = dbErr("commit", err)
		switch {
		case !errors.Is(err, ErrNoSpace):
			l.log.Error("commit failed", "events", events, "calls", len(batch), "err", err)
		case !l.full:
			l.full = true
			l.log.Error("the disk under the event log is full: appends fail (ingest answers 507) until space returns",
				"path", l.path, "err", err)
		}
		for _, r := range batch {
			r.done <- appendResult{err: err}
		}
		return
	}
	l.lastIngestMs = ms
	l.commits.Add(1)
	if l.full {
		l.full = false
		l.log.Info("space returned under the event log: appends succeed again", "path", l.path)
	}

	l.mu.Lock()
	l.last = lastSeq
	l.bytes += added
	var ch chan struct{}
	if !l.closed { // Close has already closed l.changed
		ch = l.changed
		l.changed = make(chan struct{})
	}
	l.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	for _, r := range batch {
		r.done <- appendResult{first: r.first, ingestMs: ms}
	}
	if d := time.Since(start); d > slowCommit {
		l.log.Warn("slow commit", "events", events, "calls", len(batch), "duration", d)
	}
}
