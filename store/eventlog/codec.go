package eventlog

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// On-disk layout of bucket "events":
//
//	key   = seq, 8 bytes big-endian (so bbolt's byte order is seq order)
//	value = ingest ms (8 bytes big-endian, two's complement) | model length (1 byte) | model | body
const (
	keyLen         = 8     // bytes of a key
	valueHeaderLen = 8 + 1 // bytes before the model: ingest ms + model length
	u64Bytes       = 8     // bytes of an encoded uint64 in meta
)

func u64(v uint64) []byte {
	b := make([]byte, u64Bytes)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getU64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func putKey(dst []byte, seq uint64) { binary.BigEndian.PutUint64(dst, seq) }

// metaU64 reads an 8-byte value from the meta bucket.
func metaU64(meta *bolt.Bucket, key string) (uint64, bool) {
	v := meta.Get([]byte(key))
	if len(v) != u64Bytes {
		return 0, false
	}
	return getU64(v), true
}

// encodedLen is the encoded value size of e.
func encodedLen(e *Entry) int { return valueHeaderLen + len(e.Model) + len(e.Body) }

// encodeValue writes e's value into dst, which must be encodedLen(e) long.
func encodeValue(dst []byte, ingestMs int64, e *Entry) {
	binary.BigEndian.PutUint64(dst, uint64(ingestMs))
	dst[8] = byte(len(e.Model))
	n := copy(dst[valueHeaderLen:], e.Model)
	copy(dst[valueHeaderLen+n:], e.Body)
}

// valueIngestMs returns the ingest ms of an encoded value.
func valueIngestMs(k, v []byte) (int64, error) {
	if len(v) < valueHeaderLen {
		return 0, fmt.Errorf("%w: short value at key %x", ErrCorrupt, k)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// recordDecoder turns stored key/values into Records, carving bodies out of
// shared chunks and reusing the previous model string when it repeats.
type recordDecoder struct {
	chunk     []byte
	lastModel string
}

// decodeRecord decodes k/v into a Record that owns its memory (k and v
// point into bbolt's mmap and are only valid inside the transaction).
// d may be nil.
func decodeRecord(k, v []byte, d *recordDecoder) (Record, error) {
	if len(k) != keyLen {
		return Record{}, fmt.Errorf("%w: bad key %x", ErrCorrupt, k)
	}
	ms, err := valueIngestMs(k, v)
	if err != nil {
		return Record{}, err
	}
	ml := int(v[8])
	if len(v) < valueHeaderLen+ml {
		return Record{}, fmt.Errorf("%w: short value at key %x", ErrCorrupt, k)
	}
	model := v[valueHeaderLen : valueHeaderLen+ml]
	body := v[valueHeaderLen+ml:]
	rec := Record{Seq: getU64(k), IngestMs: ms}
	if d == nil {
		rec.Model = string(model)
		rec.Body = append([]byte(nil), body...)
		return rec, nil
	}
	if string(model) == d.lastModel { // no allocation for the comparison
		rec.Model = d.lastModel
	} else {
		rec.Model = string(model)
		d.lastModel = rec.Model
	}
	n := len(body)
	if n > len(d.chunk) {
		if n > readChunkBytes/4 {
			rec.Body = append(make([]byte, 0, n), body...)
			return rec, nil
		}
		d.chunk = make([]byte, readChunkBytes)
	}
	rec.Body = d.chunk[:n:n]
	copy(rec.Body, body)
	d.chunk = d.chunk[n:]
	return rec, nil
}
