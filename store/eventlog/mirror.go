package eventlog

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// AppendMirror stores records copied from a peer's log, keeping their seq
// and ingest time: the log is then a mirror of the peer's (open it with the
// peer's Options.Incarnation). The records must be consecutive and follow
// LastSeq, except that an empty log may start at any seq (the peer had
// trimmed what came before). It is fsynced before it returns. A mirror must
// not also take Append calls.
func (l *Log) AppendMirror(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	l.mu.Lock()
	closed, first, last := l.closed, l.first, l.last
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	empty := first > last
	if !empty && recs[0].Seq != last+1 || empty && recs[0].Seq <= last {
		return fmt.Errorf("%w: got %d after %d", ErrNotNext, recs[0].Seq, last)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			return fmt.Errorf("%w: got %d after %d", ErrNotNext, recs[i].Seq, recs[i-1].Seq)
		}
	}
	var added int64
	err := l.db.Update(func(tx *bolt.Tx) error {
		ev, meta := tx.Bucket([]byte(bucketEvents)), tx.Bucket([]byte(bucketMeta))
		ev.FillPercent = appendFillPercent
		stored, ok := metaU64(meta, metaBytes)
		if !ok {
			return fmt.Errorf("%w: bad meta", ErrCorrupt)
		}
		key := make([]byte, keyLen)
		for i := range recs {
			r := &recs[i]
			if len(r.Model) > MaxModelLen {
				return fmt.Errorf("%w: record %d", ErrModelTooLong, r.Seq)
			}
			e := Entry{Model: r.Model, Body: r.Body}
			v := make([]byte, encodedLen(&e))
			encodeValue(v, r.IngestMs, &e)
			putKey(key, r.Seq)
			if err := ev.Put(key, v); err != nil {
				return err
			}
			added += int64(len(v))
		}
		if err := meta.Put([]byte(metaLastSeq), u64(recs[len(recs)-1].Seq)); err != nil {
			return err
		}
		return meta.Put([]byte(metaBytes), u64(stored+uint64(added)))
	})
	if err != nil {
		return dbErr("mirror", err)
	}
	l.commits.Add(1)
	l.mu.Lock()
	if empty {
		l.first = recs[0].Seq
	}
	l.last = recs[len(recs)-1].Seq
	l.bytes += added
	var ch chan struct{}
	if !l.closed {
		ch = l.changed
		l.changed = make(chan struct{})
	}
	l.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	return nil
}
