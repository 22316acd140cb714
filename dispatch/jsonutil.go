package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
func forEachMember(obj []byte, fn func(key string, val []byte) error) error {
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
