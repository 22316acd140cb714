package ami

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Framing limits.
const (
	// MaxLine is the longest line accepted.
	MaxLine = 64 << 10
	// MaxLines is the most lines one block may have.
	MaxLines = 1000
)

// ErrFraming is wrapped by the errors that end a connection: a line or a
// block over the limits.
var ErrFraming = errors.New("ami: framing")

// Field is one `Key: Value` line.
type Field struct{ Key, Value string }

// Message is one block.
type Message []Field

// Get returns the value of the first field named key (case-insensitive).
func (m Message) Get(key string) string {
	for _, f := range m {
		if strings.EqualFold(f.Key, key) {
			return f.Value
		}
	}
	return ""
}

// Reader reads AMI blocks.
type Reader struct {
	r *bufio.Reader
	// OnGarbage is called once per block that had garbage lines, with the
	// first one's reason (it may be nil).
	OnGarbage func(err error)
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 16<<10)} }

// Banner reads the first line ("Asterisk Call Manager/5.0.1").
func (r *Reader) Banner() (string, error) {
	line, err := r.line()
	if err != nil {
		return "", err
	}
	return string(line), nil
}

// line reads one line without its CRLF or LF.
func (r *Reader) line() ([]byte, error) {
	var out []byte
	for {
		frag, err := r.r.ReadSlice('\n')
		if len(out)+len(frag) > MaxLine {
			return nil, fmt.Errorf("%w: a line of more than %d bytes", ErrFraming, MaxLine)
		}
		out = append(out, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(out) > 0 && errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	out = bytes.TrimSuffix(out[:len(out)-1], []byte{'\r'})
	return out, nil
}

// Next returns the next non-empty block. io.EOF means the stream ended
// between blocks; io.ErrUnexpectedEOF inside one.
func (r *Reader) Next() (Message, error) {
	var m Message
	lines := 0
	var garbage error
	for {
		line, err := r.line()
		if err != nil {
			if len(m) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(line) == 0 {
			if garbage != nil && r.OnGarbage != nil {
				r.OnGarbage(garbage)
			}
			garbage = nil
			if len(m) > 0 {
				return m, nil
			}
			continue
		}
		if lines++; lines > MaxLines {
			return nil, fmt.Errorf("%w: a block of more than %d lines", ErrFraming, MaxLines)
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		key := string(bytes.TrimSpace(k))
		if !ok || key == "" || !validKey(key) {
			if garbage == nil {
				garbage = fmt.Errorf("ami: a line that is not `Key: Value` (%d bytes) skipped", len(line))
			}
			continue
		}
		m = append(m, Field{Key: key, Value: string(bytes.TrimSpace(v))})
	}
}

// validKey reports whether k looks like an AMI key (letters, digits, -, _
// and the ( ) of ChanVariable(name)).
func validKey(k string) bool {
	for _, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.ContainsRune("-_()/.", c):
		default:
			return false
		}
	}
	return true
}
