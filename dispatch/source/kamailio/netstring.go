package kamailio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Framing limits.
const (
	// MaxFrame is the longest netstring accepted: an event is at most
	// dispatch.MaxEventBytes once mapped; Kamailio's are far smaller.
	MaxFrame = 1 << 20
	// MaxGarbage is how many bytes of garbage the reader skips looking
	// for the next netstring before it gives up (the client reconnects).
	MaxGarbage = 64 << 10
	// maxLenDigits is the most digits a length may have (MaxFrame < 10^7).
	maxLenDigits = 7
)

// ErrGarbage is wrapped by the errors of bytes that are not a netstring.
var ErrGarbage = errors.New("evapi: not a netstring")

// ErrTooMuchGarbage is returned when MaxGarbage bytes went by without a
// netstring: the stream is not evapi, or lost its framing for good.
var ErrTooMuchGarbage = errors.New("evapi: too much garbage without a netstring")

// Reader reads netstrings from a stream, skipping garbage.
type Reader struct {
	r   *bufio.Reader
	buf []byte
	// OnGarbage is called once per run of garbage with the reason (it
	// may be nil).
	OnGarbage func(err error)
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// Next returns the next netstring's payload, valid until the next call.
// It returns io.EOF at a clean end of stream (between netstrings) and
// io.ErrUnexpectedEOF when the stream ends inside one (truncated).
func (r *Reader) Next() ([]byte, error) {
	skipped := 0
	inGarbage := false
	for {
		payload, n, err := r.frame()
		if err == nil {
			return payload, nil
		}
		if !errors.Is(err, ErrGarbage) {
			if inGarbage && errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if !inGarbage {
			inGarbage = true
			if r.OnGarbage != nil {
				r.OnGarbage(err)
			}
		}
		skipped += n
		if skipped > MaxGarbage {
			return nil, ErrTooMuchGarbage
		}
	}
}

// frame reads one netstring. On ErrGarbage, n is how many bytes it used
// up; the next call starts after them.
func (r *Reader) frame() (payload []byte, n int, err error) {
	// Whitespace between frames (a newline after the comma) is allowed.
	c, err := r.r.ReadByte()
	for err == nil && (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
		c, err = r.r.ReadByte()
	}
	if err != nil {
		return nil, 0, err // io.EOF between frames: clean
	}
	n = 1
	size, digits := 0, 0
	for ; ; n++ {
		switch {
		case c >= '0' && c <= '9':
			digits++
			if digits > maxLenDigits {
				// Skip the rest of the digits: resynchronising inside
				// them would read a bogus length.
				for {
					b, err := r.r.Peek(1)
					if err != nil || b[0] < '0' || b[0] > '9' {
						break
					}
					_, _ = r.r.ReadByte()
					n++
				}
				return nil, n, fmt.Errorf("%w: a length of more than %d digits", ErrGarbage, maxLenDigits)
			}
			size = size*10 + int(c-'0')
		case c == ':' && digits > 0:
			goto body
		default:
			return nil, n, fmt.Errorf("%w: unexpected byte %q where a length was expected", ErrGarbage, c)
		}
		if c, err = r.r.ReadByte(); err != nil {
			return nil, n, unexpected(err)
		}
	}
body:
	if size > MaxFrame {
		return nil, n, fmt.Errorf("%w: a length of %d bytes, over the limit of %d", ErrGarbage, size, MaxFrame)
	}
	if cap(r.buf) < size {
		r.buf = make([]byte, size)
	}
	r.buf = r.buf[:size]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		return nil, n, unexpected(err)
	}
	n += size
	c, err = r.r.ReadByte()
	if err != nil {
		return nil, n, unexpected(err)
	}
	if c != ',' {
		// A truncated netstring followed by more data: the length ran
		// into what came after it. Resynchronise after the bad byte.
		return nil, n + 1, fmt.Errorf("%w: a netstring of %d bytes not followed by ','", ErrGarbage, size)
	}
	return r.buf, n + 1, nil
}

// unexpected turns an EOF inside a netstring into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
