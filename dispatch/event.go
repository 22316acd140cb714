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
}

// parsedEvent is the lazily computed, shared, read-only view of Body.
type parsedEvent struct {
	fields map[string]any
	scope  Scope
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
func (e *Event) Scope() Scope {
	return e.parse().scope
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
	p.scope = scopeOf(e.Model, p.fields)
	p.fields[FieldEventID] = e.ID
	p.fields[FieldNode] = e.Node
	p.fields[FieldIngestTime] = json.Number(strconv.FormatInt(e.IngestMs, 10))
	// Another goroutine may have won the race; both results are equal, keep one.
	if !e.parsed.CompareAndSwap(nil, p) {
		return e.parsed.Load()
	}
	return p
}

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
	out = append(out, '{')
	n := 0
	member := func(key string, val []byte) {
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = AppendJSONString(out, key)
		out = append(out, ':')
		out = append(out, val...)
	}
	member(FieldModel, AppendJSONString(nil, model))
	err := forEachMember(e.Body, func(key string, val []byte) error {
		if key == FieldModel {
			return nil
		}
		if keep != nil && !contains(keep, key) {
			return nil
		}
		member(key, val)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("event %s: derive %s: %w", e.ID, model, err)
	}
	out = append(out, '}')
	return &Event{ID: e.ID, Node: e.Node, Seq: e.Seq, IngestMs: e.IngestMs, Model: model, Body: out}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
