package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Names of the fields hookswitch stamps on every event. A source value under
// any of them is replaced (DESIGN.md "Events").
const (
	FieldEventID    = "event-id"
	FieldNode       = "node"
	FieldIngestTime = "ingest-time"
	FieldModel      = "model"
	FieldClass      = "class" // Enswitch: stands for model when model is absent
	FieldReseller   = "reseller"
	FieldDomain     = "domain"
	FieldUser       = "user"
)

// Models with special scope or derivation rules (DESIGN.md "Derived models").
const (
	ModelAuditlog     = "auditlog"
	ModelAuditlogLite = "auditlog_lite"
	ModelCall         = "call"
	ModelCallOrigID   = "call_origid"
	ModelSubscriber   = "subscriber"
	ModelPresence     = "presence"
)

// Auditlog events are scoped by the domain they act on, not by the domain of
// whoever acted: target_domain (NetSapiens) or target-domain (kebab-case).
const (
	fieldTargetDomain      = "target_domain"
	fieldTargetDomainKebab = "target-domain"
)

// ErrBadEventID is returned by ParseEventID for a malformed event id.
var ErrBadEventID = errors.New("malformed event id")

// Event is one stored event: the source JSON object (reserved fields already
// removed) plus hookswitch's stamps.
//
// An Event is immutable once built; Fields and Scope cache their result in
// it, so pass *Event around and never copy an Event value after first use
// (go vet's copylocks check flags such copies).
type Event struct {
	ID       string // event-id: "<incarnation>-<seq>"
	Node     string // node that ingested it
	Seq      uint64 // sequence number in the ingesting node's log
	IngestMs int64  // unix milliseconds when it became durable
	Model    string // the event's model (equal to Body's "model")
	Body     []byte // the source object as compact JSON, WITHOUT event-id/node/ingest-time

	parsed atomic.Pointer[parsedEvent]
	scope  atomic.Pointer[Scope] // cached apart from parsed: most matching needs only the scope
}

// parsedEvent is the lazily computed, shared, read-only view of Body.
type parsedEvent struct {
	fields map[string]any
	err    error
}

// Scope is the reseller/domain/user an event belongs to; each may list
// several values (a call between two users lists both). Absent fields are
// nil slices.
type Scope struct {
	Reseller []string
	Domain   []string
	User     []string
}

// EventID formats the cluster-unique id of the seq-th event of a log
// incarnation: "<incarnation>-<seq>".
func EventID(incarnation string, seq uint64) string {
	return incarnation + "-" + strconv.FormatUint(seq, 10)
}

// ParseEventID splits an id made by EventID. The incarnation may itself
// contain dashes; the sequence number is what follows the last one.
func ParseEventID(id string) (incarnation string, seq uint64, err error) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 || i == len(id)-1 {
		return "", 0, fmt.Errorf("%w: %q", ErrBadEventID, id)
	}
	seq, err = strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %q", ErrBadEventID, id)
	}
	return id[:i], seq, nil
}

// JSON returns the full event object: Body with "event-id", "node" and
// "ingest-time" appended. See AppendJSON.
func (e *Event) JSON() []byte {
	return e.AppendJSON(make([]byte, 0, len(e.Body)+len(e.ID)+len(e.Node)+jsonStampOverhead))
}

// jsonStampOverhead is the size of the stamp keys, quotes, separators and a
// 13-digit millisecond timestamp, used to size JSON's buffer in one go.
const jsonStampOverhead = 64

// AppendJSON appends the full event object to dst and returns the extended
// slice. It does not re-parse Body: the closing brace is dropped and the
// stamps appended, so the cost is a copy. Body "{}" (or an empty Body) gives
// an object with only the stamps.
func (e *Event) AppendJSON(dst []byte) []byte {
	body := bytes.Trim(e.Body, jsonSpace)
	empty := true
	if len(body) >= 2 && body[len(body)-1] == '}' {
		inner := bytes.TrimRight(body[:len(body)-1], jsonSpace)
		if len(inner) > 0 && inner[len(inner)-1] != '{' {
			empty = false
		}
		body = inner
	} else {
		body = []byte("{")
	}
	dst = append(dst, body...)
	if !empty {
		dst = append(dst, ',')
	}
	dst = append(dst, `"`+FieldEventID+`":`...)
	dst = AppendJSONString(dst, e.ID)
	dst = append(dst, `,"`+FieldNode+`":`...)
	dst = AppendJSONString(dst, e.Node)
	dst = append(dst, `,"`+FieldIngestTime+`":`...)
	dst = strconv.AppendInt(dst, e.IngestMs, 10)
	return append(dst, '}')
}

// jsonSpace is the insignificant whitespace of JSON.
const jsonSpace = " \t\r\n"

// Fields parses Body (once; the result is cached and shared) into a map for
// filter matching and form encoding. Numbers are json.Number, so they keep
// the JSON text the source sent. The map also holds the stamps: "event-id"
// and "node" as strings, "ingest-time" as a json.Number.
//
// The returned map is shared by every caller: treat it as read-only.
func (e *Event) Fields() (map[string]any, error) {
	p := e.parse()
	return p.fields, p.err
}

// Scope returns the event's reseller/domain/user values. For the auditlog
// models the domain is target_domain (else target-domain, else domain):
// auditlog domain filtering uses the domain acted upon. Values that are
// neither strings nor arrays of strings are ignored (ingest rejects them).
// The values are those of the map Fields decodes Body to (so the last of
// duplicate members counts, and a body that does not decode has an empty
// scope), but Scope does not build that map: one scan of Body reads only
// the scope members (see scanScope).
//
// The result is computed once and shared: treat its slices as read-only.
func (e *Event) Scope() Scope {
	if s := e.scope.Load(); s != nil {
		return *s
	}
	s := scanScope(e.Model, e.Body)
	if s == nil {
		// Not a body scanScope vouches for (invalid, or invalid UTF-8 in
		// a string): the map Fields decodes defines the scope.
		fs := scopeOf(e.Model, e.parse().fields)
		s = &fs
	}
	// Another goroutine may have won the race; both results are equal, keep one.
	if !e.scope.CompareAndSwap(nil, s) {
		s = e.scope.Load()
	}
	return *s
}

func (e *Event) parse() *parsedEvent {
	if p := e.parsed.Load(); p != nil {
		return p
	}
	p := &parsedEvent{}
	body := e.Body
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&p.fields); err != nil {
		p.err = fmt.Errorf("event %s: body: %w", e.ID, err)
	}
	if p.fields == nil {
		p.fields = make(map[string]any, 3)
	}
	p.fields[FieldEventID] = e.ID
	p.fields[FieldNode] = e.Node
	p.fields[FieldIngestTime] = json.Number(strconv.FormatInt(e.IngestMs, 10))
	// Another goroutine may have won the race; both results are equal, keep one.
	if !e.parsed.CompareAndSwap(nil, p) {
		return e.parsed.Load()
	}
	return p
}

// scopeOf is the scope of an event of model whose body decodes to f: what
// defines Scope, and what it is computed with when scanScope gives up.
func scopeOf(model string, f map[string]any) Scope {
	s := Scope{
		Reseller: stringsOf(f[FieldReseller]),
		Domain:   stringsOf(f[FieldDomain]),
		User:     stringsOf(f[FieldUser]),
	}
	if model == ModelAuditlog || model == ModelAuditlogLite {
		if v, ok := f[fieldTargetDomain]; ok {
			s.Domain = stringsOf(v)
		} else if v, ok := f[fieldTargetDomainKebab]; ok {
			s.Domain = stringsOf(v)
		}
	}
	return s
}

// Members scanScope looks for, in the order of scopeSlots.
const (
	slotReseller = iota
	slotDomain
	slotUser
	slotTargetDomain
	slotTargetDomainKebab
	numScopeSlots
)

// scopeSlot is the slot of the (unescaped) key of a member, or -1.
func scopeSlot(key []byte) int {
	switch string(key) {
	case FieldReseller:
		return slotReseller
	case FieldDomain:
		return slotDomain
	case FieldUser:
		return slotUser
	case fieldTargetDomain:
		return slotTargetDomain
	case fieldTargetDomainKebab:
		return slotTargetDomainKebab
	}
	return -1
}

// noScope is the shared scope of events without any scope member.
var noScope Scope

// scopeBox holds a Scope and, in the same allocation, the strings of the
// common small scopes.
type scopeBox struct {
	scope  Scope
	inline [6]string
}

// scanScope computes scopeOf(model, fields) of the body b, where fields is
// what encoding/json decodes b to, with one scan of b that only reads the
// scope members, or returns nil when b is not exactly one valid JSON object
// (then encoding/json defines the result). It costs two allocations (the
// Scope with up to six strings' headers, and the text of all its strings),
// or none when the event has no scope member.
//
// Equivalence with decoding into a map: keys compare unescaped; the last of
// duplicate members wins (as the map keeps the last); a string value gives
// one string, an array value its string elements (an empty, non-nil slice
// when it has none), any other value nil. encoding/json decodes the whole
// body as one value, so member values nest at most maxNestingDepth-1 deep;
// deeper, decoding fails and the scope is empty, which the fallback gives.
func scanScope(model string, b []byte) *Scope {
	i, ok := objectStart(b)
	if !ok {
		if skipSpace(b, 0) == len(b) {
			return &noScope // an empty body reads as {}
		}
		return nil
	}
	// The value of each scope member; end 0 when absent (b[0] is at best
	// '{'), escaped when the value is a string with an escape sequence.
	type span struct {
		at, end int
		escaped bool
	}
	var vals [numScopeSlots]span
	var keyBuf [maxKeyBuf]byte
	// The member loop of nextMember, written out: this is the hot path of
	// event delivery.
	for first := true; ; first = false {
		if i < len(b) && isSpace(b[i]) {
			i = skipSpace(b, i)
		}
		if i >= len(b) {
			return nil
		}
		if b[i] == '}' {
			i++
			break
		}
		if !first {
			if b[i] != ',' {
				return nil
			}
			if i++; i < len(b) && isSpace(b[i]) {
				i = skipSpace(b, i)
			}
			if i >= len(b) || b[i] != '"' {
				return nil
			}
		} else if b[i] != '"' {
			return nil
		}
		keyAt := i
		// See plainEnd.
		end, escaped := plainEnd(b, i+1), false
		var err error
		if end < len(b) && b[end] == '"' {
			end++
		} else if end, escaped, err = scanString(b, i); err != nil {
			return nil
		}
		key := b[keyAt+1 : end-1]
		if i = end; i < len(b) && isSpace(b[i]) {
			i = skipSpace(b, i)
		}
		if i >= len(b) || b[i] != ':' {
			return nil
		}
		if i++; i < len(b) && isSpace(b[i]) {
			i = skipSpace(b, i)
		}
		valAt, valEscaped := i, false
		if i < len(b) && b[i] == '"' {
			if j := plainEnd(b, i+1); j < len(b) && b[j] == '"' {
				i = j + 1
			} else if i, valEscaped, err = scanString(b, i); err != nil {
				return nil
			}
		} else {
			var ok bool
			if i, _, ok = skipValue(b, i, maxNestingDepth-1); !ok {
				return nil
			}
		}
		if escaped {
			if len(key) > len(keyBuf) {
				continue // too long to be a scope member's name
			}
			key = appendUnquoted(keyBuf[:0], key) // never longer than key: stays in keyBuf
		}
		if len(key) < len(FieldUser) || len(key) > len(fieldTargetDomain) {
			continue
		}
		if slot := scopeSlot(key); slot >= 0 {
			vals[slot] = span{valAt, i, valEscaped}
		}
	}
	if skipSpace(b, i) != len(b) {
		return nil // the fallback decides what data after the object means
	}
	sel := [3]span{vals[slotReseller], vals[slotDomain], vals[slotUser]}
	if model == ModelAuditlog || model == ModelAuditlogLite {
		if vals[slotTargetDomain].end > 0 {
			sel[1] = vals[slotTargetDomain]
		} else if vals[slotTargetDomainKebab].end > 0 {
			sel[1] = vals[slotTargetDomainKebab]
		}
	}

	// Find the strings, and the size of their text, so that their
	// headers and their text each take one allocation.
	var spanBuf [8]span
	spans := spanBuf[:0] // of the strings' contents, in order
	var counts [3]int    // strings per selected member
	var kinds [3]byte    // '"' or '[' when the member gives a (maybe empty) list
	size := 0
	for x, v := range sel {
		if v.end == 0 {
			continue
		}
		switch c := b[v.at]; c {
		case '"':
			kinds[x], counts[x] = c, 1
			spans = append(spans, span{v.at + 1, v.end - 1, v.escaped})
			size += v.end - v.at - 2
		case '[':
			kinds[x] = c
			for j := v.at + 1; ; {
				s, escaped, next, ok := nextString(b, j)
				if !ok {
					break
				}
				counts[x]++
				spans = append(spans, span{next - 1 - len(s), next - 1, escaped})
				size += len(s) // unescaping never makes a string longer
				j = next
			}
		}
	}
	if kinds == [3]byte{} {
		return &noScope
	}
	box := new(scopeBox)
	strs := box.inline[:]
	if len(spans) > len(strs) {
		strs = make([]string, len(spans))
	}
	var text strings.Builder
	text.Grow(size)
	for k, sp := range spans {
		strs[k] = appendScopeString(&text, b[sp.at:sp.end], sp.escaped)
	}
	var out [3][]string
	k := 0
	for x, kind := range kinds {
		if kind != 0 {
			out[x] = strs[k : k+counts[x] : k+counts[x]] // capped: appending to one never overwrites another
			k += counts[x]
		}
	}
	box.scope = Scope{Reseller: out[0], Domain: out[1], User: out[2]}
	return &box.scope
}

// appendScopeString writes the text of the valid JSON string whose contents
// are s to text and returns it, sharing text's memory.
func appendScopeString(text *strings.Builder, s []byte, escaped bool) string {
	start := text.Len()
	if escaped {
		var buf [64]byte
		text.Write(appendUnquoted(buf[:0], s))
	} else {
		text.Write(s)
	}
	// Builder only ever appends: earlier strings stay as they are.
	return text.String()[start:]
}

func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Derived returns a copy of the event in the form of another model: the same
// id, node, sequence and ingest time, Model set to model, and Body reduced to
// the members named in keep (all members when keep is nil) with its "model"
// member set to model. Member order and values are kept byte for byte.
func (e *Event) Derived(model string, keep []string) (*Event, error) {
	out := make([]byte, 0, len(e.Body)+len(model))
	out = append(out, `{"`+FieldModel+`":`...)
	out = AppendJSONString(out, model)
	if o, ok := appendKept(out, e.Body, keep); ok {
		out = o
	} else {
		// Not a compact valid object: encoding/json reads it, compacts
		// the values, and words the error if any.
		err := forEachMemberDecoder(e.Body, func(key string, val []byte) error {
			if key == FieldModel || keep != nil && !contains(keep, key) {
				return nil
			}
			out = append(out, ',')
			out = AppendJSONString(out, key)
			out = append(out, ':')
			out = append(out, val...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("event %s: derive %s: %w", e.ID, model, err)
		}
	}
	out = append(out, '}')
	return &Event{ID: e.ID, Node: e.Node, Seq: e.Seq, IngestMs: e.IngestMs, Model: model, Body: out}, nil
}

// appendKept appends to out, each after a comma, the members of the object
// body but "model" whose key is in keep (all when keep is nil), as
// forEachMember gives them: the key unescaped and re-encoded by
// AppendJSONString, the value compacted. It does so in one scan of body
// when body is a valid object whose values are compact (as stored bodies
// are) and otherwise reports false; out may then hold a partial result past
// its original length.
func appendKept(out, body []byte, keep []string) ([]byte, bool) {
	i, ok := objectStart(body)
	if !ok {
		return out, false
	}
	var keyBuf [maxKeyBuf]byte
	for first := true; ; first = false {
		m, next, more, ok := nextMember(body, i, first, maxNestingDepth)
		if !ok || m.space {
			return out, false
		}
		i = next
		if !more {
			break
		}
		key := m.key(body)
		if m.escaped {
			key = appendUnquoted(keyBuf[:0], key)
		}
		if string(key) == FieldModel || keep != nil && !containsBytes(keep, key) {
			continue
		}
		out = append(out, ',')
		if m.escaped {
			out = AppendJSONString(out, string(key))
		} else {
			// Valid UTF-8 without escapes, quotes or control
			// characters: AppendJSONString would write it as it is.
			out = append(out, body[m.keyAt:m.keyEnd]...)
		}
		out = append(out, ':')
		out = append(out, body[m.valAt:m.valEnd]...)
	}
	return out, skipSpace(body, i) == len(body)
}

func containsBytes(list []string, s []byte) bool {
	for _, x := range list {
		if x == string(s) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
