package dispatch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"
)

// MaxEventBytes is the largest accepted event: 64 KiB of compacted source
// object (DESIGN.md "Ingest" limits). The stamps hookswitch adds are not
// counted.
const MaxEventBytes = 64 << 10

// MaxModelLen is the longest model name (DESIGN.md "Events").
const MaxModelLen = 64

// ValidModel reports whether s is a syntactically valid model name:
// [a-z][a-z0-9_]{0,63}.
func ValidModel(s string) bool { return validModel(s) }

func validModel[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > MaxModelLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// MaxEventDepth is how deep an event may nest: the event object is level 1,
// so its members' values nest at most MaxEventDepth-1 levels of arrays and
// objects. Delivery decodes every event whole (filters, websocket filters,
// form encoding) and receivers' parsers have limits of their own, so ingest
// refuses what they could not read instead of accepting it and dropping it
// later (docs/decisions.md).
const MaxEventDepth = 32

// tooDeep is the error for member key whose value nests deepest levels.
func tooDeep(key string, deepest int) error {
	k := truncate(key)
	return invalid(k, "field %q makes the event nest %d levels deep, more than the limit of %d (the event object is one level)", k, deepest+1, MaxEventDepth)
}

// tooDeepToScan is the error for a value nested deeper than encoding/json
// reads at all.
func tooDeepToScan() error {
	return invalid("", "the event nests more than %d levels deep, more than the limit of %d (the event object is one level)", maxNestingDepth, MaxEventDepth)
}

// isDepthExceeded reports whether err is the scanner's error for a value
// nested deeper than maxNestingDepth.
func isDepthExceeded(err error) bool {
	var ie *IngestError
	return errors.As(err, &ie) && strings.HasSuffix(ie.Reason, depthExceeded)
}

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
	model, body, err = parseIngest(obj)
	if err != nil && !utf8.Valid(obj) {
		// Invalid UTF-8 anywhere in obj takes precedence over any other
		// fault, as when the whole input was checked first.
		return "", nil, errInvalidUTF8()
	}
	return model, body, err
}

// bodySlack is the room the body is given beyond len(obj): enough for a
// "model" member added after the last one (`,"model":"…"}`) for every model
// DESIGN.md "Events" names, so that class-only events need no second
// allocation. The body is otherwise never longer than obj, unless keys use
// \b or \f escapes (re-encoded as \u0008, \u000c).
const bodySlack = 32

// Token states of the top-level object, named after encoding/json's Decoder
// ones: its error messages depend on them.
const (
	tokObjectStart = iota // after '{'
	tokObjectKey          // after ','
	tokObjectComma        // after a member's value
)

// tokenError is encoding/json's Decoder error for byte c in state (which
// gives no context after '{').
func tokenError(c byte, state int) error {
	context := ""
	switch state {
	case tokObjectKey:
		context = " looking for beginning of object key string"
	case tokObjectComma:
		context = " after object key:value pair"
	}
	return &IngestError{Reason: "invalid JSON: invalid character " + quoteChar(c) + context}
}

// parseIngest is ParseIngest but for the precedence of invalid UTF-8: one
// pass over obj that validates it, compacts it into the body and checks the
// top-level members as it goes, in member order, each once its value has
// been read (so the first fault reported is the one the original
// encoding/json based implementation reported).
func parseIngest(obj []byte) (model string, body []byte, err error) {
	i := skipSpace(obj, 0)
	if i == len(obj) {
		return "", nil, errUnexpectedEnd()
	}
	if obj[i] != '{' {
		return "", nil, notAnObject(obj, i)
	}
	i++
	out := make([]byte, 1, len(obj)+bodySlack)
	out[0] = '{'
	var (
		keys         keySet
		seenReserved uint8
		unescaped    []byte // the text of the current key when it has escapes
		haveModel    bool
		classAt      = -1 // offset in out of the value of "class"
		classEnd     int
		n            int // members kept
		state        = tokObjectStart
	)
	for {
		i = skipSpace(obj, i)
		if i == len(obj) {
			return "", nil, errUnexpectedEnd()
		}
		c := obj[i]
		if c == '}' && state != tokObjectKey {
			i++
			break
		}
		if c == ',' && state == tokObjectComma {
			state = tokObjectKey
			i++
			continue
		}
		if c != '"' || state == tokObjectComma {
			return "", nil, tokenError(c, state)
		}

		// The key.
		keyAt := i
		var escaped bool
		if i, escaped, err = scanString(obj, i); err != nil {
			return "", nil, err
		}
		quoted := obj[keyAt:i]
		key := quoted[1 : len(quoted)-1]
		if escaped {
			unescaped = appendUnquoted(unescaped[:0], key)
			key = unescaped
		}
		i = skipSpace(obj, i)
		if i == len(obj) {
			return "", nil, errUnexpectedEnd()
		}
		if obj[i] != ':' {
			return "", nil, &IngestError{Reason: "invalid JSON: expected colon after object key"}
		}

		// The member, written out before it is judged, taken back if dropped.
		memberAt := len(out)
		if n > 0 {
			out = append(out, ',')
		}
		keyOut := len(out)
		var keyEnd, valAt int
		var nonString bool
		if !escaped && i == keyAt+len(quoted) && i+1 < len(obj) && obj[i+1] == '"' {
			// The common case, "key":"string" without whitespace: copied
			// in one go.
			valStart := i + 1
			if i, _, err = scanString(obj, valStart); err != nil {
				return "", nil, err
			}
			out = append(out, obj[keyAt:i]...)
			keyEnd = keyOut + len(quoted)
			valAt = keyEnd + 1
		} else {
			if escaped {
				out = AppendJSONString(out, string(key)) // normalised, as the original re-encoded keys
			} else {
				out = append(out, quoted...) // its own normalised encoding
			}
			keyEnd = len(out)
			out = append(out, ':')
			valAt = len(out)
			deepest := 0
			if i, out, nonString, err = scanValue(obj, i+1, out, &deepest); err != nil {
				if isDepthExceeded(err) {
					return "", nil, tooDeepToScan()
				}
				return "", nil, err
			}
			if deepest >= MaxEventDepth {
				return "", nil, tooDeep(string(key), deepest)
			}
		}
		val := out[valAt:]
		state = tokObjectComma

		// The reserved keys are dropped from out, so keys cannot find them
		// there: a bit each tells whether they were seen.
		var reserved uint8
		switch string(key) {
		case FieldEventID:
			reserved = 1
		case FieldNode:
			reserved = 2
		case FieldIngestTime:
			reserved = 4
		}
		if reserved&seenReserved != 0 || reserved == 0 && keys.add(out, keyOut, keyEnd) {
			k := truncate(string(key))
			return "", nil, invalid(k, "duplicate field %q", k)
		}
		if reserved != 0 {
			seenReserved |= reserved
			out = out[:memberAt] // replaced by hookswitch's stamps
			continue
		}
		switch string(key) {
		case FieldModel:
			if model, err = modelValue(val); err != nil {
				return "", nil, err
			}
			haveModel = true
		case FieldClass:
			classAt, classEnd = valAt, len(out)
		case FieldReseller, FieldDomain, FieldUser:
			if !(val[0] == '"' || val[0] == '[' && !nonString) {
				return "", nil, invalid(string(key), "%s must be a string or an array of strings", key)
			}
		}
		n++
	}
	if skipSpace(obj, i) != len(obj) {
		return "", nil, &IngestError{Reason: "invalid JSON: data after the object"}
	}

	if !haveModel {
		// A string (or null, which reads as "") "class" stands for model.
		var class []byte
		haveClass := false
		if classAt >= 0 {
			switch val := out[classAt:classEnd]; val[0] {
			case '"':
				class, haveClass = unquoteValue(val), true
			case 'n':
				haveClass = true
			}
		}
		if !haveClass {
			return "", nil, invalid(FieldModel, "model is required")
		}
		if !validModel(class) {
			return "", nil, invalid(FieldClass, "class %q (standing for model) must match [a-z][a-z0-9_]{0,63}", truncate(string(class)))
		}
		model = internModel(class)
		const modelKey = `"` + FieldModel + `":`
		need := len(`,`+modelKey+`""}`) + len(model)
		if cap(out)-len(out) < need {
			grown := make([]byte, len(out), len(out)+need)
			copy(grown, out)
			out = grown
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, modelKey...)
		out = append(out, '"')
		out = append(out, model...) // valid, so nothing to escape
		out = append(out, '"')
	}
	out = append(out, '}')
	if len(out) > MaxEventBytes {
		return "", nil, invalid("", "event is %d bytes, more than the limit of %d", len(out), MaxEventBytes)
	}
	return model, out, nil
}

// notAnObject is the error for an event that does not start with '{' (at
// obj[i]): "not an object" when it starts with a well-formed value, else the
// syntax error in it.
func notAnObject(obj []byte, i int) error {
	switch c := obj[i]; c {
	case '[':
		return invalid("", "event must be a JSON object")
	case ']', '}', ',', ':':
		return scanError(c, "looking for beginning of value")
	}
	if _, _, _, err := scanValue(obj, i, nil, nil); err != nil {
		return err
	}
	return invalid("", "event must be a JSON object")
}

// modelValue reads the compact JSON value of "model" as the original did
// with json.Unmarshal into a string: null leaves it empty, anything else but
// a string is refused.
func modelValue(val []byte) (string, error) {
	var m []byte
	switch val[0] {
	case '"':
		m = unquoteValue(val)
	case 'n':
	default:
		return "", invalid(FieldModel, "model must be a string")
	}
	if !validModel(m) {
		return "", invalid(FieldModel, "model %q must match [a-z][a-z0-9_]{0,63}", truncate(string(m)))
	}
	return internModel(m), nil
}

// unquoteValue is the text of the (valid) JSON string val. It shares val's
// bytes when val has no escape.
func unquoteValue(val []byte) []byte {
	s := val[1 : len(val)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return s
	}
	return appendUnquoted(nil, s)
}

// internModel returns m as a string, without allocating for the models
// DESIGN.md "Events" names.
func internModel(m []byte) string {
	switch string(m) {
	case "agent":
		return "agent"
	case ModelAuditlog:
		return ModelAuditlog
	case ModelAuditlogLite:
		return ModelAuditlogLite
	case ModelCall:
		return ModelCall
	case ModelCallOrigID:
		return ModelCallOrigID
	case "cdr":
		return "cdr"
	case "message":
		return "message"
	case "messagesession":
		return "messagesession"
	case ModelSubscriber:
		return ModelSubscriber
	case ModelPresence:
		return ModelPresence
	case "voicemail":
		return "voicemail"
	}
	return string(m)
}

// smallKeySet is how many keys keySet holds without allocating, in a table
// of smallKeySlots slots; above it, it hashes with maphash.
const (
	smallKeySet   = 64
	smallKeySlots = 128
)

// keySet detects duplicate top-level keys. It holds the offsets of keys in
// a buffer that only grows (the body being built), where each key is written
// as a JSON string in its normalised encoding, AppendJSONString of its
// unescaped text: as that encoding is one-to-one, two keys are equal as
// unescaped text (what the original's map of decoded keys compared) exactly
// when their encodings are. A key is known by its offset alone: a JSON string
// ends at its first unescaped quote, so a key held at off equals the quoted
// key k when buf[off:off+len(k)] equals k.
//
// Up to smallKeySet keys it allocates nothing: open addressing over a small
// table with a cheap, unseeded hash, which is safe as the number of keys is
// bounded. Above, keys move to a table hashed with a random maphash seed, so
// crafted keys cannot make it quadratic.
type keySet struct {
	n     int
	off   [smallKeySet]int
	hash  [smallKeySet]uint32
	slots [smallKeySlots]uint8 // index+1 into off and hash, 0 when free

	all   []keyEntry // every key, once there are more than smallKeySet
	table []int32    // open addressing over all: index+1, 0 when free
	seed  maphash.Seed
}

// keyEntry is a key at an offset, with its maphash.
type keyEntry struct {
	off int
	h   uint32
}

// add adds the quoted key buf[off:end], which ends buf's keys so far, and
// reports whether it was already there.
func (s *keySet) add(buf []byte, off, end int) bool {
	k := buf[off:end]
	if s.table == nil {
		if s.n < smallKeySet {
			h := keyHash(k)
			for p := h % smallKeySlots; ; p = (p + 1) % smallKeySlots {
				j := s.slots[p]
				if j == 0 {
					s.off[s.n], s.hash[s.n] = off, h
					s.n++
					s.slots[p] = uint8(s.n)
					return false
				}
				if o := s.off[j-1]; s.hash[j-1] == h && string(buf[o:o+len(k)]) == string(k) {
					return true
				}
			}
		}
		s.seed = maphash.MakeSeed()
		s.all = make([]keyEntry, 0, 4*smallKeySet)
		for _, o := range s.off {
			s.all = append(s.all, keyEntry{o, uint32(maphash.Bytes(s.seed, quotedAt(buf, o)))})
		}
		s.rehash(8 * smallKeySet)
	}
	h := uint32(maphash.Bytes(s.seed, k))
	mask := uint32(len(s.table) - 1)
	for p := h & mask; ; p = (p + 1) & mask {
		j := s.table[p]
		if j == 0 {
			s.all = append(s.all, keyEntry{off, h})
			s.table[p] = int32(len(s.all))
			if 2*len(s.all) > len(s.table) {
				s.rehash(2 * len(s.table))
			}
			return false
		}
		if e := &s.all[j-1]; e.h == h && string(buf[e.off:e.off+len(k)]) == string(k) {
			return true
		}
	}
}

// quotedAt is the JSON string (valid, quotes included) that starts at
// buf[off].
func quotedAt(buf []byte, off int) []byte {
	i := off + 1
	for buf[i] != '"' {
		if buf[i] == '\\' {
			i++
		}
		i++
	}
	return buf[off : i+1]
}

// rehash rebuilds table with size slots (a power of two) from all.
func (s *keySet) rehash(size int) {
	s.table = make([]int32, size)
	mask := uint32(size - 1)
	for j, e := range s.all {
		p := e.h & mask
		for s.table[p] != 0 {
			p = (p + 1) & mask
		}
		s.table[p] = int32(j + 1)
	}
}

// keyHash is a cheap hash of k: its length and up to 16 bytes from its ends.
func keyHash(k []byte) uint32 {
	var a, b uint64
	switch n := len(k); {
	case n >= 8:
		a, b = binary.LittleEndian.Uint64(k), binary.LittleEndian.Uint64(k[n-8:])
	case n >= 4:
		a, b = uint64(binary.LittleEndian.Uint32(k)), uint64(binary.LittleEndian.Uint32(k[n-4:]))
	case n > 0:
		a = uint64(k[0])<<16 | uint64(k[n/2])<<8 | uint64(k[n-1])
	}
	h := (a^uint64(len(k)))*0x9e3779b97f4a7c15 ^ bits.RotateLeft64(b*0xbf58476d1ce4e5b9, 31)
	h ^= h >> 29
	h *= 0x94d049bb133111eb
	return uint32(h ^ h>>32)
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
