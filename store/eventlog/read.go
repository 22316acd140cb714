package eventlog

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// Read returns up to max records with Seq >= from, in seq order: fewer (or
// none) when not that many are stored yet. Records below FirstSeq are gone;
// reading from before FirstSeq starts at FirstSeq, so a caller can detect a
// gap by comparing the first Seq returned with from. It is one bbolt read
// transaction and a cursor seek. The returned records own their memory.
func (l *Log) Read(from uint64, max int) ([]Record, error) {
	if max <= 0 {
		return nil, nil
	}
	if l.isClosed() {
		return nil, ErrClosed
	}
	var out []Record
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketEvents)).Cursor()
		var key [keyLen]byte
		putKey(key[:], from)
		var d recordDecoder
		for k, v := c.Seek(key[:]); k != nil && len(out) < max; k, v = c.Next() {
			rec, err := decodeRecord(k, v, &d)
			if err != nil {
				return err
			}
			if out == nil {
				out = make([]Record, 0, min(max, readPrealloc))
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("read", err)
	}
	return out, nil
}

// readPrealloc bounds the records slice Read allocates up front (records).
const readPrealloc = 1024

// SeqAtOrAfter returns the first stored seq whose IngestMs >= t, at
// millisecond precision (t is truncated to its unix millisecond), or
// LastSeq()+1 if there is none. IngestMs never decreases in seq order, so
// this is a binary search in one read transaction.
func (l *Log) SeqAtOrAfter(t time.Time) (uint64, error) {
	if l.isClosed() {
		return 0, ErrClosed
	}
	target := t.UnixMilli()
	var seq uint64
	err := l.db.View(func(tx *bolt.Tx) error {
		ev := tx.Bucket([]byte(bucketEvents))
		last, ok := metaU64(tx.Bucket([]byte(bucketMeta)), metaLastSeq)
		if !ok {
			return ErrCorrupt
		}
		c := ev.Cursor()
		fk, _ := c.First()
		if fk == nil {
			seq = last + 1
			return nil
		}
		// Stored keys are the contiguous range [first, last]. Find the
		// smallest seq in [first, last+1) with IngestMs >= target.
		lo, hi := getU64(fk), last+1
		var key [keyLen]byte
		for lo < hi {
			mid := lo + (hi-lo)/2
			putKey(key[:], mid)
			k, v := c.Seek(key[:])
			if k == nil {
				hi = mid // cannot happen while keys are contiguous
				continue
			}
			ms, err := valueIngestMs(k, v)
			if err != nil {
				return err
			}
			if ms >= target {
				hi = mid
			} else {
				lo = getU64(k) + 1
			}
		}
		seq = lo
		return nil
	})
	if err != nil {
		return 0, dbErr("seq at or after", err)
	}
	return seq, nil
}
