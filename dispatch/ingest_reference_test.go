package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"unicode/utf8"
)

// This file keeps the original, encoding/json based implementation of
// ParseIngest, frozen, as the reference FuzzParseIngestEquivalent compares
// the hand-written single-pass parser with. Do not "fix" it: it defines the
// behaviour ParseIngest must keep (accepted set, output bytes, errors).
// One rule was added since, on purpose: the depth limit (MaxEventDepth),
// checked first for each member once its value has been read.

// parseIngestReference is the original ParseIngest.
func parseIngestReference(obj []byte) (model string, body []byte, err error) {
	if !utf8.Valid(obj) {
		return "", nil, invalid("", "event is not valid UTF-8")
	}
	out := make([]byte, 0, len(obj))
	out = append(out, '{')
	seen := make(map[string]struct{})
	var class string
	haveModel, haveClass := false, false
	n := 0
	err = forEachMemberReference(obj, func(key string, val []byte) error {
		if d := depthReference(val); d >= MaxEventDepth {
			return tooDeep(key, d)
		}
		if _, dup := seen[key]; dup {
			return invalid(truncate(key), "duplicate field %q", truncate(key))
		}
		seen[key] = struct{}{}
		switch key {
		case FieldEventID, FieldNode, FieldIngestTime:
			return nil // replaced by hookswitch's stamps
		case FieldModel:
			if err := json.Unmarshal(val, &model); err != nil {
				return invalid(FieldModel, "model must be a string")
			}
			if !modelPatternReference.MatchString(model) {
				return invalid(FieldModel, "model %q must match [a-z][a-z0-9_]{0,63}", truncate(model))
			}
			haveModel = true
		case FieldClass:
			haveClass = json.Unmarshal(val, &class) == nil
		case FieldReseller, FieldDomain, FieldUser:
			if !stringOrStringsReference(val) {
				return invalid(key, "%s must be a string or an array of strings", key)
			}
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = AppendJSONString(out, key)
		out = append(out, ':')
		out = append(out, val...)
		return nil
	})
	if err != nil {
		var ie *IngestError
		if errors.As(err, &ie) {
			return "", nil, err
		}
		if errors.Is(err, errNotObject) {
			return "", nil, invalid("", "event must be a JSON object")
		}
		if isDepthExceeded(invalid("", "%v", err)) { // the depth limit, added since
			return "", nil, tooDeepToScan()
		}
		return "", nil, invalid("", "%v", err)
	}
	if !haveModel {
		if !haveClass {
			return "", nil, invalid(FieldModel, "model is required")
		}
		if !modelPatternReference.MatchString(class) {
			return "", nil, invalid(FieldClass, "class %q (standing for model) must match [a-z][a-z0-9_]{0,63}", truncate(class))
		}
		model = class
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, `"`+FieldModel+`":`...)
		out = AppendJSONString(out, model)
	}
	out = append(out, '}')
	if len(out) > MaxEventBytes {
		return "", nil, invalid("", "event is %d bytes, more than the limit of %d", len(out), MaxEventBytes)
	}
	return model, out, nil
}

// modelPatternReference is the original model syntax check.
var modelPatternReference = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// stringOrStringsReference is the original stringOrStrings.
func stringOrStringsReference(val []byte) bool {
	switch {
	case len(val) == 0:
		return false
	case val[0] == '"':
		return true
	case val[0] != '[':
		return false
	}
	var list []json.RawMessage
	if err := json.Unmarshal(val, &list); err != nil {
		return false
	}
	for _, item := range list {
		if len(item) == 0 || item[0] != '"' {
			return false
		}
	}
	return true
}

// forEachMemberReference is the original forEachMember (a frozen copy, so
// that later changes to forEachMember cannot move the reference).
func forEachMemberReference(obj []byte, fn func(key string, val []byte) error) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxReasonReference(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errNotObject
	}
	var compact bytes.Buffer
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxReasonReference(err)
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("invalid JSON: object key is not a string")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxReasonReference(err)
		}
		compact.Reset()
		if err := json.Compact(&compact, raw); err != nil {
			return syntaxReasonReference(err)
		}
		if err := fn(key, compact.Bytes()); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return syntaxReasonReference(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the object")
	}
	return nil
}

func syntaxReasonReference(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// depthReference is how deeply the valid JSON value val nests arrays and
// objects (0 for a scalar).
func depthReference(val []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(val); i++ {
		c := val[i]
		switch {
		case inString && c == '\\':
			i++ // the escaped byte
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}
