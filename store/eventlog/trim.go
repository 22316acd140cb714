package eventlog

import (
	"context"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// Trim deletes every record with Seq < keepFrom (all consumers are past
// them), then enforces retention on what remains, oldest first: records
// with IngestMs older than Now()-Retention, and records while the stored
// bytes exceed RetentionBytes. Records deleted by retention (those at or
// after keepFrom) are passed to dropped, in seq order and possibly over
// several calls, before they are deleted, so the caller can count what was
// dropped unread; dropped may be nil. A record below keepFrom is never
// passed to dropped.
//
// Trim works in batches of at most 10,000 records (and, when dropped is
// set, 16 MiB of dropped records) per write transaction, so
// it never holds bbolt's writer lock (and so Append) for long; dropped runs
// between transactions with no lock of bbolt held. Concurrent Trim calls
// are serialised. On error the stats cover the batches already done.
//
// The log never trims by itself: its owner calls Trim, e.g. periodically
// with the lowest committed cursor of all subscriptions for this log.
func (l *Log) Trim(keepFrom uint64, dropped func([]Record)) (TrimStats, error) {
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	var st TrimStats
	if l.isClosed() {
		return st, ErrClosed
	}
	cutoffMs := l.now().Add(-l.retention).UnixMilli()
	for {
		plan, err := l.planTrim(keepFrom, cutoffMs, dropped != nil)
		if err != nil {
			return l.trimDone(st), dbErr("trim", err)
		}
		if plan.n == 0 {
			break
		}
		if len(plan.drops) > 0 {
			dropped(plan.drops)
		}
		deleted, err := l.deleteThrough(plan.hi)
		st.Deleted += deleted
		if err != nil {
			return l.trimDone(st), dbErr("trim", err)
		}
		st.Dropped += plan.nDropped
		if deleted != plan.n {
			l.log.Warn("trim deleted a different number of records than planned",
				"planned", plan.n, "deleted", deleted, "through_seq", plan.hi)
		}
	}
	return l.trimDone(st), nil
}

func (l *Log) trimDone(st TrimStats) TrimStats {
	s := l.Stats()
	st.Bytes = s.Bytes
	if st.Deleted > 0 {
		level := slog.LevelDebug
		if st.Dropped > 0 {
			level = slog.LevelInfo
		}
		l.log.Log(context.Background(), level, "trimmed", "deleted", st.Deleted, "dropped_unread", st.Dropped,
			"first_seq", s.FirstSeq, "last_seq", s.LastSeq, "bytes", s.Bytes)
	}
	return st
}

// trimPlan is the next batch of oldest records to delete: through seq hi.
type trimPlan struct {
	n        int      // records to delete
	hi       uint64   // highest seq to delete
	nDropped int      // of which deleted by retention
	drops    []Record // those records, when the caller wants them
}

// planTrim picks the next batch in a read transaction. Only Trim deletes
// and Trim calls are serialised, and appends only add at the end, so the
// records it picks are still there for deleteThrough.
func (l *Log) planTrim(keepFrom uint64, cutoffMs int64, wantDrops bool) (trimPlan, error) {
	var p trimPlan
	err := l.db.View(func(tx *bolt.Tx) error {
		stored, ok := metaU64(tx.Bucket([]byte(bucketMeta)), metaBytes)
		if !ok {
			return ErrCorrupt
		}
		bytes := int64(stored)
		c := tx.Bucket([]byte(bucketEvents)).Cursor()
		var d recordDecoder
		dropBytes := 0
		for k, v := c.First(); k != nil && p.n < l.trimBatch && dropBytes < trimBatchDropBytes; k, v = c.Next() {
			if len(k) != keyLen {
				return ErrCorrupt
			}
			seq := getU64(k)
			if seq >= keepFrom {
				ms, err := valueIngestMs(k, v)
				if err != nil {
					return err
				}
				if ms >= cutoffMs && bytes <= l.retBytes {
					break // retention is satisfied from here on
				}
				p.nDropped++
				if wantDrops {
					rec, err := decodeRecord(k, v, &d)
					if err != nil {
						return err
					}
					p.drops = append(p.drops, rec)
					dropBytes += len(v)
				}
			}
			bytes -= int64(len(v))
			p.hi = seq
			p.n++
		}
		return nil
	})
	return p, err
}

// deleteThrough deletes the records with seq <= hi (they are the oldest
// ones) in one write transaction and returns how many it deleted.
func (l *Log) deleteThrough(hi uint64) (int, error) {
	var deleted int
	var freed int64
	err := l.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		stored, ok := metaU64(meta, metaBytes)
		if !ok {
			return ErrCorrupt
		}
		ev := tx.Bucket([]byte(bucketEvents))
		// Collect the keys first, then delete them: deleting through the
		// cursor would make it skip keys (Next) or rescan emptied leaves (First).
		keys := make([]byte, 0, keyLen*l.trimBatch)
		c := ev.Cursor()
		for k, v := c.First(); k != nil && getU64(k) <= hi; k, v = c.Next() {
			keys = append(keys, k...)
			freed += int64(len(v))
		}
		for off := 0; off < len(keys); off += keyLen {
			if err := ev.Delete(keys[off : off+keyLen]); err != nil {
				return err
			}
			deleted++
		}
		return meta.Put([]byte(metaBytes), u64(stored-min(stored, uint64(freed))))
	})
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	l.first = max(l.first, hi+1)
	l.bytes -= freed
	l.mu.Unlock()
	return deleted, nil
}
