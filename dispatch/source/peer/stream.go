package peer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/hookswitch/hookswitch/store/eventlog"
)

// Wire format of GET /internal/v1/log (all integers big-endian):
//
//	frame = seq u64 | ingest-ms i64 | model-len u8 | model | body-len u32 | body
//
// A frame with seq 0 and nothing after ingest-ms is a keepalive. The
// response headers name the log's incarnation and first stored seq.
const (
	HeaderIncarnation = "Hookswitch-Incarnation"
	HeaderFirstSeq    = "Hookswitch-First-Seq"
	ContentType       = "application/x-hookswitch-log"

	// KeepaliveInterval is how often an idle stream sends a keepalive, so
	// that a tailer notices a dead peer by its read deadline.
	KeepaliveInterval = 2 * time.Second
	// streamChunk is how many records the server reads per batch.
	streamChunk = 512
	// maxFrameBody bounds a frame's body (events are at most 64 KiB).
	maxFrameBody = 1 << 20
	frameHeader  = 8 + 8
)

// Source is what the server side streams from (*eventlog.Log).
type Source interface {
	Incarnation() string
	FirstSeq() uint64
	LastSeq() uint64
	Read(from uint64, max int) ([]eventlog.Record, error)
	Changed() <-chan struct{}
}

// Handler serves GET /internal/v1/log?from=SEQ&incarnation=I: the local
// log from SEQ (or from its first stored seq when SEQ is older, or when I
// is another incarnation), then live, until the client goes away. TCP flow
// control is the backpressure: a slow reader slows only its own stream.
// Authentication is the caller's (the mount point requires a node token).
func Handler(src Source, logger *slog.Logger) http.Handler {
	log := logger.With("component", "peer-server")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
			return
		}
		from, err := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		if err != nil || from == 0 {
			from = 1
		}
		inc := src.Incarnation()
		if r.URL.Query().Get("incarnation") != inc {
			from = 1 // another incarnation: everything of this one
		}
		if first := src.FirstSeq(); from < first {
			from = first
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set(HeaderIncarnation, inc)
		w.Header().Set(HeaderFirstSeq, strconv.FormatUint(from, 10))
		w.WriteHeader(http.StatusOK)
		fl, _ := w.(http.Flusher)
		bw := bufio.NewWriterSize(w, 64<<10)
		flush := func() error {
			if err := bw.Flush(); err != nil {
				return err
			}
			if fl != nil {
				fl.Flush()
			}
			return nil
		}
		if err := flush(); err != nil {
			return
		}
		keepalive := time.NewTicker(KeepaliveInterval)
		defer keepalive.Stop()
		var frame []byte
		for {
			changed := src.Changed()
			if src.LastSeq() >= from {
				recs, err := src.Read(from, streamChunk)
				if err != nil {
					log.Warn("reading the log for a peer failed", "err", err)
					return
				}
				for i := range recs {
					frame = appendFrame(frame[:0], &recs[i])
					if _, err := bw.Write(frame); err != nil {
						return
					}
					from = recs[i].Seq + 1
				}
				if err := flush(); err != nil {
					return
				}
				if len(recs) > 0 {
					continue
				}
			}
			select {
			case <-r.Context().Done():
				return
			case <-changed:
			case <-keepalive.C:
				var ka [frameHeader]byte
				if _, err := bw.Write(ka[:]); err != nil || flush() != nil {
					return
				}
			}
		}
	})
}

func appendFrame(dst []byte, r *eventlog.Record) []byte {
	dst = binary.BigEndian.AppendUint64(dst, r.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.IngestMs))
	dst = append(dst, byte(len(r.Model)))
	dst = append(dst, r.Model...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Body)))
	return append(dst, r.Body...)
}

// errBadFrame marks a stream that does not follow the wire format.
var errBadFrame = errors.New("peer: bad frame")

// readFrame reads one frame; ok is false for a keepalive.
func readFrame(br *bufio.Reader) (rec eventlog.Record, ok bool, err error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return rec, false, err
	}
	rec.Seq = binary.BigEndian.Uint64(h[:8])
	if rec.Seq == 0 {
		return rec, false, nil
	}
	rec.IngestMs = int64(binary.BigEndian.Uint64(h[8:]))
	ml, err := br.ReadByte()
	if err != nil {
		return rec, false, err
	}
	model := make([]byte, ml)
	if _, err := io.ReadFull(br, model); err != nil {
		return rec, false, err
	}
	var bl [4]byte
	if _, err := io.ReadFull(br, bl[:]); err != nil {
		return rec, false, err
	}
	n := binary.BigEndian.Uint32(bl[:])
	if n > maxFrameBody {
		return rec, false, fmt.Errorf("%w: body of %d bytes", errBadFrame, n)
	}
	rec.Model = string(model)
	rec.Body = make([]byte, n)
	if _, err := io.ReadFull(br, rec.Body); err != nil {
		return rec, false, err
	}
	return rec, true, nil
}
