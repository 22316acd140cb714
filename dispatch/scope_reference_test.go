package dispatch

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// This file keeps the original, encoding/json based Scope and Derived,
// frozen, as the references FuzzScopeEquivalent, FuzzForEachMemberEquivalent
// and FuzzDerivedEquivalent compare the single-scan implementations with
// (the original forEachMember is forEachMemberReference, in
// ingest_reference_test.go). Do not "fix" them: they define the behaviour
// Scope, Derived and forEachMember must keep.

// scopeReference is the original Event.Scope of an event of model with body:
// the whole body decoded into a map, then scopeOf.
func scopeReference(model string, body []byte) Scope {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	var fields map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	_ = dec.Decode(&fields) // on error, fields keeps what was decoded (nothing)
	s := Scope{
		Reseller: stringsOfReference(fields[FieldReseller]),
		Domain:   stringsOfReference(fields[FieldDomain]),
		User:     stringsOfReference(fields[FieldUser]),
	}
	if model == ModelAuditlog || model == ModelAuditlogLite {
		if v, ok := fields[fieldTargetDomain]; ok {
			s.Domain = stringsOfReference(v)
		} else if v, ok := fields[fieldTargetDomainKebab]; ok {
			s.Domain = stringsOfReference(v)
		}
	}
	return s
}

// stringsOfReference is the original stringsOf.
func stringsOfReference(v any) []string {
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

// derivedReference is the original Event.Derived.
func derivedReference(e *Event, model string, keep []string) (*Event, error) {
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
	err := forEachMemberReference(e.Body, func(key string, val []byte) error {
		if key == FieldModel {
			return nil
		}
		if keep != nil && !containsReference(keep, key) {
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

func containsReference(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
