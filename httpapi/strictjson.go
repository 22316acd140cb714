package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// The admin API's JSON rules (DESIGN.md "Security"): a body must be valid
// UTF-8 (no byte sequence, and no \u escape, that decodes to U+FFFD unless
// the client wrote U+FFFD), and no object may carry a key twice (encoding/
// json would keep the last silently). Every admin body is read with
// strictJSON or parseRawInput, both of which apply them; echo's binder is
// not used.

// ErrBadJSON is wrapped by every refusal of checkJSONText.
var ErrBadJSON = errors.New("invalid JSON body")

// checkJSONText applies the rules above to body. A syntax error is left
// to the decoder that follows, which names it better.
func checkJSONText(body []byte) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadJSON)
	}
	// A \u escape of a lone surrogate decodes to U+FFFD: refuse that
	// replacement unless the body spelled U+FFFD itself.
	wroteFFFD := bytes.Contains(body, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	// keys holds, per open container, the keys seen (nil for an array);
	// expectKey says the next string token of an object is a key.
	type frame struct {
		keys      map[string]bool
		expectKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // the decoder reports syntax errors
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{keys: map[string]bool{}, expectKey: true})
				continue
			case '[':
				stack = append(stack, &frame{})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if !wroteFFFD && strings.ContainsRune(v, utf8.RuneError) {
				return fmt.Errorf("%w: a \\u escape is not a valid character (lone surrogate)", ErrBadJSON)
			}
			if top != nil && top.keys != nil && top.expectKey {
				if top.keys[v] {
					return &dupKeyError{key: v}
				}
				top.keys[v] = true
				top.expectKey = false
				continue
			}
		}
		// A value ended: the next token of an enclosing object is a key.
		if len(stack) > 0 && stack[len(stack)-1].keys != nil {
			stack[len(stack)-1].expectKey = true
		}
	}
}

// dupKeyError names a key an object carried twice.
type dupKeyError struct{ key string }

func (e *dupKeyError) Error() string {
	return fmt.Sprintf("%v: duplicate key %q", ErrBadJSON, e.key)
}

func (e *dupKeyError) Unwrap() error { return ErrBadJSON }

// strictJSON decodes one JSON object with no unknown fields, no duplicate
// keys, only valid UTF-8, and nothing after it.
func strictJSON(body []byte, v any) error {
	if err := checkJSONText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Only white space may follow (dec.More misses a stray ']' or '}').
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}
