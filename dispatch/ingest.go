package dispatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"unicode/utf8"
)

// MaxEventBytes is the largest accepted event: 64 KiB of compacted source
// object (DESIGN.md "Ingest" limits). The stamps hookswitch adds are not
// counted.
const MaxEventBytes = 64 << 10

// MaxModelLen is the longest model name (DESIGN.md "Events").
const MaxModelLen = 64

// modelPattern is the syntax of a model name.
var modelPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// ValidModel reports whether s is a syntactically valid model name.
func ValidModel(s string) bool { return modelPattern.MatchString(s) }

// ErrInvalidEvent is wrapped by every error ParseIngest returns, so callers
// can answer 400 with errors.Is and show err.Error() as the reason.
var ErrInvalidEvent = errors.New("invalid event")

// IngestError is the error ParseIngest returns: a reason fit for a 400
// message and, when one field is at fault, its name.
type IngestError struct {
	Field  string // the offending field, or "" when the object as a whole is wrong
	Reason string
}

func (e *IngestError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrInvalidEvent) true.
func (e *IngestError) Unwrap() error { return ErrInvalidEvent }

func invalid(field, format string, args ...any) error {
	return &IngestError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ParseIngest validates one source object for ingest and returns its model
// and the body to store:
//
//   - obj must be exactly one JSON object in valid UTF-8, without duplicate
//     keys (a receiver could otherwise read a different value than the one
//     hookswitch matched on);
//   - "model" is required and must match [a-z][a-z0-9_]{0,63}; when it is
//     absent a string "class" stands for it (Enswitch) and a "model" member
//     is added to the body;
//   - the reserved members event-id, node and ingest-time are removed (the
//     stamps replace them);
//   - reseller, domain and user, when present, must each be a string or an
//     array of strings;
//   - the compacted body must not exceed MaxEventBytes.
//
// Members keep their order and their values byte for byte (only insignificant
// whitespace is removed). Errors are *IngestError wrapping ErrInvalidEvent.
func ParseIngest(obj []byte) (model string, body []byte, err error) {
	if !utf8.Valid(obj) {
		return "", nil, invalid("", "event is not valid UTF-8")
	}
	out := make([]byte, 0, len(obj))
	out = append(out, '{')
	seen := make(map[string]struct{})
	var class string
	haveModel, haveClass := false, false
	n := 0
	err = forEachMember(obj, func(key string, val []byte) error {
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
			if !ValidModel(model) {
				return invalid(FieldModel, "model %q must match [a-z][a-z0-9_]{0,63}", truncate(model))
			}
			haveModel = true
		case FieldClass:
			haveClass = json.Unmarshal(val, &class) == nil
		case FieldReseller, FieldDomain, FieldUser:
			if !stringOrStrings(val) {
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
		return "", nil, invalid("", "%v", err)
	}
	if !haveModel {
		if !haveClass {
			return "", nil, invalid(FieldModel, "model is required")
		}
		if !ValidModel(class) {
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

// maxReasonValue bounds how much of a bad value an error message quotes.
const maxReasonValue = 80

func truncate(s string) string {
	if len(s) <= maxReasonValue {
		return s
	}
	i := maxReasonValue
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// stringOrStrings reports whether the valid, compact JSON value val is a
// string or an array of strings.
func stringOrStrings(val []byte) bool {
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

// FormToObject turns the fields of one form-encoded event (Enswitch style)
// into a JSON object for ParseIngest: a field with one value becomes a
// string, a repeated field an array of strings; when "model" is absent,
// "class" stands for it. Keys are emitted in sorted order.
func FormToObject(v url.Values) []byte {
	keys := make([]string, 0, len(v)+1)
	for k := range v {
		keys = append(keys, k)
	}
	addModel := false
	if _, ok := v[FieldModel]; !ok {
		if c, ok := v[FieldClass]; ok && len(c) == 1 {
			addModel = true
			keys = append(keys, FieldModel)
		}
	}
	sort.Strings(keys)
	out := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = AppendJSONString(out, k)
		out = append(out, ':')
		vals := v[k]
		if k == FieldModel && addModel {
			vals = v[FieldClass]
		}
		switch len(vals) {
		case 1:
			out = AppendJSONString(out, vals[0])
		default:
			out = append(out, '[')
			for j, s := range vals {
				if j > 0 {
					out = append(out, ',')
				}
				out = AppendJSONString(out, s)
			}
			out = append(out, ']')
		}
	}
	return append(out, '}')
}
