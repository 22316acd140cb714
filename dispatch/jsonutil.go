package dispatch

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string literal. Quotes, backslashes
// and control characters are escaped; invalid UTF-8 becomes U+FFFD; HTML
// characters are left alone (the output is not meant for embedding in HTML).
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// errNotObject reports that a JSON text is not an object.
var errNotObject = errors.New("not a JSON object")

// forEachMember calls fn for each top-level member of the JSON object obj, in
// order, with the unescaped key and the compacted raw value. It fails when
// obj is not exactly one JSON object. val is only valid during the call.
//
// Objects whose member values hold no whitespace (event bodies, as
// ParseIngest compacts them) are validated by one scan and walked by a
// second, with val a slice of obj; anything else goes to the encoding/json
// based forEachMemberDecoder. The fast path calls fn only once all of obj is
// validated, so the fallback never follows calls already made.
func forEachMember(obj []byte, fn func(key string, val []byte) error) error {
	i, ok := compactObject(obj)
	if !ok {
		return forEachMemberDecoder(obj, fn)
	}
	var keyBuf [maxKeyBuf]byte
	for first := true; ; first = false {
		m, next, more, _ := nextMember(obj, i, first, maxNestingDepth)
		if !more {
			return nil
		}
		i = next
		var key string
		if m.escaped {
			key = string(appendUnquoted(keyBuf[:0], m.key(obj)))
		} else {
			key = string(m.key(obj))
		}
		if err := fn(key, obj[m.valAt:m.valEnd:m.valEnd]); err != nil {
			return err
		}
	}
}

// compactObject reports whether obj is exactly one valid JSON object in
// valid UTF-8 (whitespace allowed around it and between its members) whose
// member values hold no whitespace, and returns the index just past its
// opening brace.
func compactObject(obj []byte) (int, bool) {
	start, ok := objectStart(obj)
	if !ok {
		return 0, false
	}
	i := start
	for first := true; ; first = false {
		m, next, more, ok := nextMember(obj, i, first, maxNestingDepth)
		if !ok || m.space {
			return 0, false
		}
		i = next
		if !more {
			return start, skipSpace(obj, i) == len(obj)
		}
	}
}

// forEachMemberDecoder is forEachMember's general path: encoding/json's
// Decoder reads the members and json.Compact compacts their values.
func forEachMemberDecoder(obj []byte, fn func(key string, val []byte) error) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxReason(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errNotObject
	}
	var compact bytes.Buffer
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxReason(err)
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("invalid JSON: object key is not a string")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxReason(err)
		}
		compact.Reset()
		if err := json.Compact(&compact, raw); err != nil {
			return syntaxReason(err)
		}
		if err := fn(key, compact.Bytes()); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return syntaxReason(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the object")
	}
	return nil
}

func syntaxReason(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// The single-pass scanner below is what ParseIngest validates and compacts
// events with. It accepts exactly what encoding/json accepts and, for
// ParseIngest's error reasons to stay as they were, reports the first error
// the way encoding/json's scanner and Decoder word it ("invalid character
// 'x' after array element", depth limit included). It does not check UTF-8
// outside strings: any non-ASCII byte there is a syntax error anyway, and
// ParseIngest gives invalid UTF-8 anywhere precedence over other errors.

// maxNestingDepth is encoding/json's limit on nested arrays and objects in
// one value.
const maxNestingDepth = 10000

// depthExceeded ends encoding/json's error for a value nested deeper than
// maxNestingDepth.
const depthExceeded = "exceeded max depth"

// strPlain marks the bytes a string scan can step over without a look: ASCII
// from space on, except the quote and the backslash.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isSpace(c byte) bool {
	return c <= ' ' && (c == ' ' || c == '\t' || c == '\r' || c == '\n')
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// skipSpace returns the index of the first non-whitespace byte of b at or
// after i, or len(b).
func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// errUnexpectedEnd is the reason for input that stops inside the object.
func errUnexpectedEnd() error {
	return &IngestError{Reason: "invalid JSON: unexpected end of input"}
}

// errInvalidUTF8 is the reason for input that is not valid UTF-8.
func errInvalidUTF8() error {
	return &IngestError{Reason: "event is not valid UTF-8"}
}

// scanError is encoding/json's scanner error for byte c in context.
func scanError(c byte, context string) error {
	return &IngestError{Reason: "invalid JSON: invalid character " + quoteChar(c) + " " + context}
}

// quoteChar formats c the way encoding/json's syntax errors do.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

const (
	loBits = 0x0101010101010101
	hiBits = 0x8080808080808080
)

// scanString scans the JSON string whose opening quote is b[i]. It returns
// the index just past the closing quote and whether the string holds an
// escape sequence.
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	i++
	for {
		// Eight bytes at a time while none of them needs a look, then
		// byte by byte near the end of b.
		for {
			if i+8 > len(b) {
				for i < len(b) && strPlain[b[i]] {
					i++
				}
				break
			}
			x := binary.LittleEndian.Uint64(b[i:])
			// A byte's high bit is set in special if it is non-ASCII,
			// or (for the lowest such byte at least) below 0x20, '"'
			// or '\\'.
			lt := x - 0x2020202020202020
			quote := (x ^ 0x2222222222222222) - loBits
			backslash := (x ^ 0x5c5c5c5c5c5c5c5c) - loBits
			if special := (x | (lt|quote|backslash)&^x) & hiBits; special != 0 {
				i += bits.TrailingZeros64(special) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			return 0, false, errUnexpectedEnd()
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			i++
			if i >= len(b) {
				return 0, false, errUnexpectedEnd()
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				i++
				for k := 0; k < 4; k++ {
					if i >= len(b) {
						return 0, false, errUnexpectedEnd()
					}
					if !isHex(b[i]) {
						return 0, false, scanError(b[i], `in \u hexadecimal character escape`)
					}
					i++
				}
			default:
				return 0, false, scanError(b[i], "in string escape code")
			}
		case c < 0x20:
			return 0, false, scanError(c, "in string literal")
		default: // a multi-byte UTF-8 sequence
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false, errInvalidUTF8()
			}
			i += size
		}
	}
}

// scanNumber scans the JSON number that starts at b[i] ('-' or a digit) and
// returns the index just past it.
func scanNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
		if i >= len(b) {
			return 0, errUnexpectedEnd()
		}
		if !isDigit(b[i]) {
			return 0, scanError(b[i], "in numeric literal")
		}
	}
	if b[i] == '0' {
		i++
	} else {
		i++
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) {
			return 0, errUnexpectedEnd()
		}
		if !isDigit(b[i]) {
			return 0, scanError(b[i], "after decimal point in numeric literal")
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) {
			return 0, errUnexpectedEnd()
		}
		if !isDigit(b[i]) {
			return 0, scanError(b[i], "in exponent of numeric literal")
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	return i, nil
}

// scanLiteral scans lit (true, false or null), whose first byte is b[i], and
// returns the index just past it.
func scanLiteral(b []byte, i int, lit string) (int, error) {
	for k := 1; k < len(lit); k++ {
		i++
		if i >= len(b) {
			return 0, errUnexpectedEnd()
		}
		if b[i] != lit[k] {
			return 0, scanError(b[i], "in literal "+lit+" (expecting "+quoteChar(lit[k])+")")
		}
	}
	return i + 1, nil
}

// nestStack records, for each open container of a value, whether it is an
// object (bit set) or an array. The first 64 levels need no allocation.
type nestStack struct {
	low  uint64
	deep []uint64
}

func (s *nestStack) set(depth int, object bool) {
	d := depth - 1
	if d < 64 {
		if object {
			s.low |= 1 << d
		} else {
			s.low &^= 1 << d
		}
		return
	}
	d -= 64
	for d/64 >= len(s.deep) {
		s.deep = append(s.deep, 0)
	}
	if object {
		s.deep[d/64] |= 1 << (d % 64)
	} else {
		s.deep[d/64] &^= 1 << (d % 64)
	}
}

func (s *nestStack) object(depth int) bool {
	d := depth - 1
	if d < 64 {
		return s.low&(1<<d) != 0
	}
	d -= 64
	return s.deep[d/64]&(1<<(d%64)) != 0
}

// scanValue scans one JSON value starting at b[i] (after optional
// whitespace) and appends it to out without insignificant whitespace. Nested
// values are validated, not interpreted. It returns the index just past the
// value, the extended out, and whether some element directly inside the
// value (when it is a container) is not a string. Errors are worded as
// encoding/json's Decoder words them for a value it reads. When deepest is
// not nil, it is set to the deepest nesting of containers within the value
// (0 for a scalar, 1 for a flat array or object), if deeper than it was.
func scanValue(b []byte, i int, out []byte, deepest *int) (end int, _ []byte, nonString bool, err error) {
	var stack nestStack
	depth := 0
	i = skipSpace(b, i)
	run := i // start of the bytes not yet copied to out
value:
	for {
		// At the start of a value: after a colon, a comma in an array, an
		// opening bracket, or at the very beginning.
		if i < len(b) && isSpace(b[i]) {
			out = append(out, b[run:i]...)
			i = skipSpace(b, i)
			run = i
		}
		if i >= len(b) {
			return 0, out, false, errUnexpectedEnd()
		}
		c := b[i]
		if depth == 1 && c != '"' {
			nonString = true
		}
		switch c {
		case '"':
			if i, _, err = scanString(b, i); err != nil {
				return 0, out, false, err
			}
		case '{', '[':
			depth++
			if depth > maxNestingDepth {
				return 0, out, false, scanError(c, depthExceeded)
			}
			if deepest != nil && depth > *deepest {
				*deepest = depth
			}
			stack.set(depth, c == '{')
			i++
			if i < len(b) && isSpace(b[i]) {
				out = append(out, b[run:i]...)
				i = skipSpace(b, i)
				run = i
			}
			if i >= len(b) {
				return 0, out, false, errUnexpectedEnd()
			}
			if c == '[' {
				if b[i] == ']' {
					i++
					depth--
					break // an empty array: on to the end of a value
				}
				continue value
			}
			if b[i] == '}' {
				i++
				depth--
				break // an empty object
			}
			if b[i] != '"' {
				return 0, out, false, scanError(b[i], "looking for beginning of object key string")
			}
			if i, out, run, err = scanNestedKey(b, i, out, run); err != nil {
				return 0, out, false, err
			}
			continue value
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if i, err = scanNumber(b, i); err != nil {
				return 0, out, false, err
			}
		case 't':
			if i, err = scanLiteral(b, i, "true"); err != nil {
				return 0, out, false, err
			}
		case 'f':
			if i, err = scanLiteral(b, i, "false"); err != nil {
				return 0, out, false, err
			}
		case 'n':
			if i, err = scanLiteral(b, i, "null"); err != nil {
				return 0, out, false, err
			}
		default:
			return 0, out, false, scanError(c, "looking for beginning of value")
		}
		// At the end of a value.
		for {
			if depth == 0 {
				return i, append(out, b[run:i]...), nonString, nil
			}
			if i < len(b) && isSpace(b[i]) {
				out = append(out, b[run:i]...)
				i = skipSpace(b, i)
				run = i
			}
			if i >= len(b) {
				return 0, out, false, errUnexpectedEnd()
			}
			c := b[i]
			if stack.object(depth) {
				switch c {
				case ',':
					i++
					if i < len(b) && isSpace(b[i]) {
						out = append(out, b[run:i]...)
						i = skipSpace(b, i)
						run = i
					}
					if i >= len(b) {
						return 0, out, false, errUnexpectedEnd()
					}
					if b[i] != '"' {
						return 0, out, false, scanError(b[i], "looking for beginning of object key string")
					}
					if i, out, run, err = scanNestedKey(b, i, out, run); err != nil {
						return 0, out, false, err
					}
					continue value
				case '}':
					i++
					depth--
					continue
				}
				return 0, out, false, scanError(c, "after object key:value pair")
			}
			switch c {
			case ',':
				i++
				continue value
			case ']':
				i++
				depth--
				continue
			}
			return 0, out, false, scanError(c, "after array element")
		}
	}
}

// scanNestedKey scans a key of a nested object, whose opening quote is b[i],
// and the colon after it, flushing skipped whitespace to out.
func scanNestedKey(b []byte, i int, out []byte, run int) (int, []byte, int, error) {
	i, _, err := scanString(b, i)
	if err != nil {
		return 0, out, run, err
	}
	if i < len(b) && isSpace(b[i]) {
		out = append(out, b[run:i]...)
		i = skipSpace(b, i)
		run = i
	}
	if i >= len(b) {
		return 0, out, run, errUnexpectedEnd()
	}
	if b[i] != ':' {
		return 0, out, run, scanError(b[i], "after object key")
	}
	return i + 1, out, run, nil
}

// appendUnquoted appends the text of the JSON string whose contents (between
// the quotes, already validated by scanString) are s, as encoding/json
// decodes it: a lone or ill-paired surrogate escape becomes U+FFFD.
func appendUnquoted(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c) // valid UTF-8: copied byte by byte
			i++
			continue
		}
		switch e := s[i+1]; e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				r1 := rune(-1)
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r1 = hex4(s[i+2 : i+6])
				}
				if d := utf16.DecodeRune(r, r1); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
		i += 2
	}
	return dst
}

// hex4 is the value of four hexadecimal digits.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// The helpers below walk the top-level members of an object without building
// anything: Event.Scope, Event.Derived and forEachMember use them on event
// bodies. They validate what they step over exactly as the scanner above
// does (hence as encoding/json does, with invalid UTF-8 in strings refused),
// but only report whether the input is valid: on anything unexpected the
// callers fall back to their encoding/json based paths, which define the
// result (and the error) for such input.

// maxKeyBuf is the size of the stack buffers keys with escapes are unescaped
// into. Every unescaped byte takes at most 6 bytes of escaped text, so an
// escaped key longer than this cannot unescape to any of the names the
// callers look for (the longest is 13 bytes).
const maxKeyBuf = 80

// member is one member of an object in a buffer b: the key, its quotes
// included, at b[keyAt:keyEnd], and the value at b[valAt:valEnd].
type member struct {
	keyAt, keyEnd int
	valAt, valEnd int
	escaped       bool // the key holds an escape sequence
	space         bool // the value holds whitespace (it is not compact)
}

// key is the key's text as it is in b, without the quotes.
func (m *member) key(b []byte) []byte { return b[m.keyAt+1 : m.keyEnd-1] }

// objectStart returns the index just past the opening brace of the object
// that b holds after optional whitespace, and false when b holds no object.
func objectStart(b []byte) (int, bool) {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return 0, false
	}
	return i + 1, true
}

// nextMember scans the next member of the object in b. i is just past the
// opening brace (first) or just past the value of the previous member. It
// returns the member and the index just past its value, or more false and
// the index just past the closing brace; ok is false when the object is not
// valid there. Member values may nest at most maxDepth deep.
func nextMember(b []byte, i int, first bool, maxDepth int) (m member, next int, more, ok bool) {
	i = skipSpace(b, i)
	if i == len(b) {
		return m, 0, false, false
	}
	if b[i] == '}' {
		return m, i + 1, false, true
	}
	if !first {
		if b[i] != ',' {
			return m, 0, false, false
		}
		if i = skipSpace(b, i+1); i == len(b) {
			return m, 0, false, false
		}
	}
	if b[i] != '"' {
		return m, 0, false, false
	}
	m.keyAt = i
	var err error
	if m.keyEnd = plainEnd(b, i+1); m.keyEnd < len(b) && b[m.keyEnd] == '"' {
		m.keyEnd++
	} else if m.keyEnd, m.escaped, err = scanString(b, i); err != nil {
		return m, 0, false, false
	}
	if i = skipSpace(b, m.keyEnd); i == len(b) || b[i] != ':' {
		return m, 0, false, false
	}
	m.valAt = skipSpace(b, i+1)
	if m.valAt < len(b) && b[m.valAt] == '"' {
		if m.valEnd = plainEnd(b, m.valAt+1); m.valEnd < len(b) && b[m.valEnd] == '"' {
			m.valEnd++
		} else if m.valEnd, _, err = scanString(b, m.valAt); err != nil {
			return m, 0, false, false
		}
	} else if m.valEnd, m.space, ok = skipValue(b, m.valAt, maxDepth); !ok {
		return m, 0, false, false
	}
	return m, m.valEnd, true, true
}

// plainEnd returns the index of the first byte of b at or after i that is
// not plain string text (see strPlain), or len(b). Keys and most string
// values are short plain text: a byte loop finds their closing quote sooner
// than scanString's eight-byte steps, which then only see the others.
func plainEnd(b []byte, i int) int {
	for i < len(b) && strPlain[b[i]] {
		i++
	}
	return i
}

// skipValue validates the JSON value that starts at b[i] (not whitespace),
// nesting at most maxDepth deep, and returns the index just past it and
// whether whitespace occurs inside it.
func skipValue(b []byte, i, maxDepth int) (end int, space, ok bool) {
	var stack nestStack
	depth := 0
	var err error
	for {
		// At the start of a value. Whitespace before it only occurs
		// inside a container: the caller skips it at the top.
		if i < len(b) && isSpace(b[i]) {
			space = true
			i = skipSpace(b, i)
		}
		if i >= len(b) {
			return 0, false, false
		}
		switch c := b[i]; c {
		case '"':
			i, _, err = scanString(b, i)
		case '{', '[':
			if depth++; depth > maxDepth {
				return 0, false, false
			}
			stack.set(depth, c == '{')
			if i++; i < len(b) && isSpace(b[i]) {
				space = true
				i = skipSpace(b, i)
			}
			if i >= len(b) {
				return 0, false, false
			}
			if c == '[' {
				if b[i] == ']' {
					i++
					depth--
					break // an empty array: on to the end of a value
				}
				continue
			}
			if b[i] == '}' {
				i++
				depth--
				break // an empty object
			}
			if i, space, ok = skipKey(b, i, space); !ok {
				return 0, false, false
			}
			continue
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			i, err = scanNumber(b, i)
		case 't':
			i, err = scanLiteral(b, i, "true")
		case 'f':
			i, err = scanLiteral(b, i, "false")
		case 'n':
			i, err = scanLiteral(b, i, "null")
		default:
			return 0, false, false
		}
		if err != nil {
			return 0, false, false
		}
		// At the end of a value.
		for {
			if depth == 0 {
				return i, space, true
			}
			if i < len(b) && isSpace(b[i]) {
				space = true
				i = skipSpace(b, i)
			}
			if i >= len(b) {
				return 0, false, false
			}
			c := b[i]
			i++
			if c == ',' {
				if stack.object(depth) {
					if i < len(b) && isSpace(b[i]) {
						space = true
						i = skipSpace(b, i)
					}
					if i, space, ok = skipKey(b, i, space); !ok {
						return 0, false, false
					}
				}
				break // on to the next value
			}
			if c == '}' && stack.object(depth) || c == ']' && !stack.object(depth) {
				depth--
				continue
			}
			return 0, false, false
		}
	}
}

// skipKey scans a key of a nested object, whose opening quote should be
// b[i], and the colon after it. space is or-ed with whether whitespace
// follows the key.
func skipKey(b []byte, i int, space bool) (int, bool, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, space, false
	}
	i, _, err := scanString(b, i)
	if err != nil {
		return 0, space, false
	}
	if i < len(b) && isSpace(b[i]) {
		space = true
		i = skipSpace(b, i)
	}
	if i >= len(b) || b[i] != ':' {
		return 0, space, false
	}
	return i + 1, space, true
}

// nextString returns the next string element of the valid JSON array in b,
// from i just past the opening bracket or just past an element: its text as
// it is in b without the quotes, whether it holds an escape sequence, and the
// index just past it. ok is false at the closing bracket.
func nextString(b []byte, i int) (s []byte, escaped bool, next int, ok bool) {
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, false, 0, false
		}
		switch b[i] {
		case ']':
			return nil, false, 0, false
		case ',':
			i++
		case '"':
			end, escaped, err := scanString(b, i)
			if err != nil {
				return nil, false, 0, false
			}
			return b[i+1 : end-1], escaped, end, true
		default:
			end, _, ok := skipValue(b, i, maxNestingDepth)
			if !ok {
				return nil, false, 0, false
			}
			i = end
		}
	}
}
