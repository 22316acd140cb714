package httpsource

import (
	"bytes"
	"fmt"
	"net/http"
)

// arrayScanner splits a JSON array into the texts of its elements without
// parsing them, so that each event is parsed once, by dispatch.ParseIngest.
//
// The scanner checks the array's own syntax ('[', elements separated by ',',
// ']', then only whitespace) and, inside an element, tracks only strings
// and bracket depth to find where the element ends. It does not validate an
// element: ParseIngest does, and rejects anything that is not exactly one
// valid JSON object. That is enough for correctness: when every element text
// is a valid object and the separators are valid, their concatenation is a
// valid JSON array of exactly those objects, wherever a malformed input
// might otherwise have been cut.
type arrayScanner struct {
	buf     []byte // the body, starting with '['
	pos     int    // next byte to look at
	count   int    // elements returned so far
	started bool
}

// next returns the next element's text, nil at the end of a well-formed
// array, or the error that refuses the request.
func (s *arrayScanner) next() ([]byte, *reqError) {
	b := s.buf
	if !s.started {
		s.started = true
		s.pos = skipSpace(b, 1) // b[0] is '['
		if s.pos < len(b) && b[s.pos] == ']' {
			return s.end()
		}
	} else {
		s.pos = skipSpace(b, s.pos)
		if s.pos >= len(b) {
			return nil, syntaxError("unexpected end of input after event %d: expected ',' or ']'", s.count-1)
		}
		switch b[s.pos] {
		case ']':
			return s.end()
		case ',':
			s.pos = skipSpace(b, s.pos+1)
		default:
			return nil, syntaxError("expected ',' or ']' after event %d, found %s at byte offset %d",
				s.count-1, quoteByte(b[s.pos]), s.pos)
		}
	}
	if s.pos >= len(b) {
		return nil, syntaxError("unexpected end of input: expected an event")
	}
	if s.count == MaxEvents {
		return nil, &reqError{status: http.StatusRequestEntityTooLarge, index: -1,
			msg: fmt.Sprintf("more than %d events in one request: split them into several requests", MaxEvents)}
	}
	start := s.pos
	end, ok := valueEnd(b, start)
	if !ok {
		return nil, &reqError{status: http.StatusBadRequest, index: s.count,
			msg: fmt.Sprintf("event %d: invalid JSON: unexpected end of input", s.count)}
	}
	if end == start {
		return nil, syntaxError("expected an event, found %s at byte offset %d", quoteByte(b[start]), start)
	}
	s.count++
	s.pos = end
	return b[start:end], nil
}

// end checks that only whitespace follows the closing ']' at s.pos.
func (s *arrayScanner) end() ([]byte, *reqError) {
	if p := skipSpace(s.buf, s.pos+1); p < len(s.buf) {
		return nil, syntaxError("data after the array at byte offset %d", p)
	}
	return nil, nil
}

func syntaxError(format string, args ...any) *reqError {
	return &reqError{status: http.StatusBadRequest, index: -1,
		msg: "invalid JSON: " + fmt.Sprintf(format, args...)}
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", string(rune(c)))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// valueEnd returns the offset just past the JSON value starting at b[i]:
// after the bracket closing a value that opened one, else at the first ','
// or closing bracket outside strings and brackets (or len(b)). ok is false
// when the input ends inside a string or with brackets still open.
func valueEnd(b []byte, i int) (end int, ok bool) {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			j := stringEnd(b, i+1)
			if j < 0 {
				return 0, false
			}
			i = j
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i, true
			}
			depth--
			if depth == 0 {
				return i + 1, true
			}
		case ',':
			if depth == 0 {
				return i, true
			}
		}
		i++
	}
	return i, depth == 0
}

// stringEnd returns the offset just past the quote closing the string whose
// contents start at b[i], or -1 when it is not closed.
func stringEnd(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		k := q
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (q-k)%2 == 0 { // an even number of backslashes: the quote is not escaped
			return q + 1
		}
		i = q + 1
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}
