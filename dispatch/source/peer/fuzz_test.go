package peer

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/hookswitch/hookswitch/store/eventlog"
)

// FuzzReadFrame feeds arbitrary bytes to the log stream decoder a tailer
// reads a peer's log with. Invariants: no panic; every frame read encodes
// back to exactly the bytes it was read from (appendFrame, appendNotice), a
// record has seq > 0; the stream ends with io.EOF only between frames,
// io.ErrUnexpectedEOF inside one, or errBadFrame (a body length no event
// has), and nothing else.
func FuzzReadFrame(f *testing.F) {
	rec := func(seq uint64, model, body string) []byte {
		return appendFrame(nil, &eventlog.Record{Seq: seq, IngestMs: 1_700_000_000_000, Model: model, Body: []byte(body)})
	}
	for _, s := range [][]byte{
		nil,
		rec(1, "call", `{"model":"call"}`),
		append(rec(1, "call", `{}`), rec(2, "cdr", `{"model":"cdr"}`)...),
		appendNotice(nil, 0),
		appendNotice(rec(7, "call", `{}`), 100),
		rec(3, "", ""),
		rec(9, "call", `{"model":"call"}`)[:frameHeader],
		rec(9, "call", `{"model":"call"}`)[:frameHeader+3],
		frameBytes(9, 1, "call", maxFrameBody+1, nil),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		off := 0
		for {
			rec, first, err := readFrame(br)
			if err != nil {
				switch {
				case errors.Is(err, io.EOF):
					if off != len(in) {
						t.Fatalf("io.EOF at offset %d of %d: a cut frame must be io.ErrUnexpectedEOF", off, len(in))
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					if off == len(in) {
						t.Fatalf("io.ErrUnexpectedEOF at the end of the input, between frames")
					}
				case errors.Is(err, errBadFrame):
				default:
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var enc []byte
			if rec.Seq == 0 {
				if first != 0 && (rec.Model != "" || rec.Body != nil) {
					t.Fatalf("a notice carries a record %+v", rec)
				}
				enc = appendNotice(nil, first)
			} else {
				if first != 0 {
					t.Fatalf("record %d with a trim notice %d", rec.Seq, first)
				}
				if len(rec.Body) > maxFrameBody {
					t.Fatalf("body of %d bytes", len(rec.Body))
				}
				enc = appendFrame(nil, &rec)
			}
			if off+len(enc) > len(in) || !bytes.Equal(in[off:off+len(enc)], enc) {
				t.Fatalf("frame at offset %d does not encode back to its bytes", off)
			}
			off += len(enc)
		}
	})
}
