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
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/store/eventlog"
)

// Wire format of GET /internal/v1/log (all integers big-endian):
//
//	frame = seq u64 | ingest-ms i64 | model-len u8 | model | body-len u32 | body
//
// A frame with seq 0 has nothing after its second field: with 0 there it
// is a keepalive; with N > 0 it is a trim notice: the log's first stored
// seq is now N (retention dropped what came before, and the peer has
// counted what that dropped unread), so the copy drops it too. The
// response headers name the log's incarnation and the first seq sent.
const (
	HeaderIncarnation = "Hookswitch-Incarnation"
	HeaderFirstSeq    = "Hookswitch-First-Seq"
	ContentType       = "application/x-hookswitch-log"

	// KeepaliveInterval is how often an idle stream sends a keepalive, so
	// that a tailer notices a dead peer by its read deadline.
	KeepaliveInterval = 2 * time.Second
	// trimPoll is how often a stream looks whether the log was trimmed,
	// to send a trim notice.
	trimPoll = 200 * time.Millisecond
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
	var shutdown shutdownWatch
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = io.WriteString(w, `{"code":405,"message":"method not allowed","error":"method not allowed","field":""}`+"\n")
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
		// A stream never ends by itself: without this, the server's
		// graceful Shutdown would wait for it until its deadline.
		stopping := shutdown.done(r)
		tick := time.NewTicker(trimPoll)
		defer tick.Stop()
		var frame []byte
		announced := uint64(1) // the first seq the client knows of
		lastWrite := time.Now()
		for {
			changed := src.Changed()
			if first := src.FirstSeq(); first > announced {
				// Trimmed: tell the client before anything after it.
				from = max(from, first)
				announced = first
				frame = appendNotice(frame[:0], first)
				if _, err := bw.Write(frame); err != nil {
					return
				}
			}
			if src.LastSeq() >= from {
				recs, err := src.Read(from, streamChunk)
				if err != nil {
					log.Warn("reading the log for a peer failed", "err", err)
					return
				}
				if len(recs) > 0 && recs[0].Seq > from {
					// Trimmed between the look above and the read.
					announced = max(announced, recs[0].Seq)
					frame = appendNotice(frame[:0], recs[0].Seq)
					if _, err := bw.Write(frame); err != nil {
						return
					}
				}
				for i := range recs {
					frame = appendFrame(frame[:0], &recs[i])
					if _, err := bw.Write(frame); err != nil {
						return
					}
					from = recs[i].Seq + 1
				}
				if len(recs) > 0 {
					if err := flush(); err != nil {
						return
					}
					lastWrite = time.Now()
					continue
				}
			}
			if bw.Buffered() > 0 {
				if err := flush(); err != nil {
					return
				}
				lastWrite = time.Now()
			}
			select {
			case <-r.Context().Done():
				return
			case <-stopping:
				return
			case <-changed:
				if src.LastSeq() < from {
					// Changed without a new record: the log was closed.
					if _, err := src.Read(from, 1); err != nil {
						return
					}
				}
			case <-tick.C:
				if time.Since(lastWrite) >= KeepaliveInterval {
					if _, err := bw.Write(appendNotice(frame[:0], 0)); err != nil || flush() != nil {
						return
					}
					lastWrite = time.Now()
				}
			}
		}
	})
}

// shutdownWatch gives the streams of each http.Server a channel that is
// closed when that server begins a graceful Shutdown.
type shutdownWatch struct {
	mu sync.Mutex
	m  map[*http.Server]chan struct{}
}

// done returns the channel of the server that serves r (nil, never
// closed, when r carries no server).
func (s *shutdownWatch) done(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.m[srv]; ok {
		return ch
	}
	if s.m == nil {
		s.m = map[*http.Server]chan struct{}{}
	}
	ch := make(chan struct{})
	s.m[srv] = ch
	var once sync.Once
	srv.RegisterOnShutdown(func() { once.Do(func() { close(ch) }) })
	return ch
}

func appendFrame(dst []byte, r *eventlog.Record) []byte {
	dst = binary.BigEndian.AppendUint64(dst, r.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.IngestMs))
	dst = append(dst, byte(len(r.Model)))
	dst = append(dst, r.Model...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Body)))
	return append(dst, r.Body...)
}

// appendNotice appends a keepalive (first 0) or a trim notice.
func appendNotice(dst []byte, first uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, 0)
	return binary.BigEndian.AppendUint64(dst, first)
}

// errBadFrame marks a stream that does not follow the wire format.
var errBadFrame = errors.New("peer: bad frame")

// readFrame reads one frame: a record (rec.Seq > 0), else a keepalive
// (first 0) or a trim notice (the peer's log now starts at first). At the
// end of the stream the error is io.EOF between frames, io.ErrUnexpectedEOF
// inside one.
func readFrame(br *bufio.Reader) (rec eventlog.Record, first uint64, err error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return rec, 0, err
	}
	rec.Seq = binary.BigEndian.Uint64(h[:8])
	if rec.Seq == 0 {
		return rec, binary.BigEndian.Uint64(h[8:]), nil
	}
	rec.IngestMs = int64(binary.BigEndian.Uint64(h[8:]))
	cut := func(err error) (eventlog.Record, uint64, error) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the frame has begun
		}
		return eventlog.Record{}, 0, err
	}
	ml, err := br.ReadByte()
	if err != nil {
		return cut(err)
	}
	model := make([]byte, ml)
	if _, err := io.ReadFull(br, model); err != nil {
		return cut(err)
	}
	var bl [4]byte
	if _, err := io.ReadFull(br, bl[:]); err != nil {
		return cut(err)
	}
	n := binary.BigEndian.Uint32(bl[:])
	if n > maxFrameBody {
		return eventlog.Record{}, 0, fmt.Errorf("%w: body of %d bytes", errBadFrame, n)
	}
	rec.Model = string(model)
	rec.Body = make([]byte, n)
	if _, err := io.ReadFull(br, rec.Body); err != nil {
		return cut(err)
	}
	return rec, 0, nil
}
