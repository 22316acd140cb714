package match

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Wildcard is the value meaning "any": in a filter, any value of a present
// property; in a subscription's model or scope fields, anything.
const Wildcard = "*"

// MaxFilters bounds the filters of one set, so a websocket client cannot make
// every event's matching arbitrarily expensive.
const MaxFilters = 256

// ErrBadFilter is wrapped by NewFilterSet's errors.
var ErrBadFilter = errors.New("invalid filter")

// Filter selects events whose Property has Value (or any value, for "*").
type Filter struct {
	Property string `json:"property"`
	Value    string `json:"value"`
}

// FilterSet is a compiled list of filters with the websocket semantics of
// DESIGN.md:
//
//   - filters on the same property are OR-ed, on different properties AND-ed;
//   - an event lacking a filtered property does not match;
//   - value "*" matches any value of a present property (null included);
//   - strings match exactly; numbers, booleans and null by their JSON text
//     (numbers as the source wrote them: 1.50 does not match "1.5");
//   - an array matches when any of its elements matches; an object matches
//     only "*";
//   - an empty set matches everything.
//
// The zero FilterSet is empty. A FilterSet is immutable and safe for
// concurrent use.
type FilterSet struct {
	groups []filterGroup
}

// filterGroup is the OR of the values filtered on one property.
type filterGroup struct {
	property string
	any      bool
	values   []string
}

// NewFilterSet compiles filters. Properties must be non-empty; at most
// MaxFilters filters.
func NewFilterSet(filters []Filter) (FilterSet, error) {
	if len(filters) > MaxFilters {
		return FilterSet{}, fmt.Errorf("%w: %d filters, at most %d", ErrBadFilter, len(filters), MaxFilters)
	}
	var fs FilterSet
	for i, f := range filters {
		if f.Property == "" {
			return FilterSet{}, fmt.Errorf("%w: filter %d has no property", ErrBadFilter, i)
		}
		g := fs.group(f.Property)
		if f.Value == Wildcard {
			g.any = true
			g.values = nil
		} else if !g.any {
			g.values = append(g.values, f.Value)
		}
	}
	return fs, nil
}

func (fs *FilterSet) group(property string) *filterGroup {
	for i := range fs.groups {
		if fs.groups[i].property == property {
			return &fs.groups[i]
		}
	}
	fs.groups = append(fs.groups, filterGroup{property: property})
	return &fs.groups[len(fs.groups)-1]
}

// Empty reports whether the set lets everything in.
func (fs FilterSet) Empty() bool { return len(fs.groups) == 0 }

// Match reports whether an event with these fields passes the filters.
func (fs FilterSet) Match(fields map[string]any) bool {
	return fs.match(mapView(fields))
}

// view looks up one property of an event (possibly in a derived form).
type view interface {
	get(property string) (any, bool)
}

type mapView map[string]any

func (m mapView) get(p string) (any, bool) {
	v, ok := m[p]
	return v, ok
}

func (fs FilterSet) match(v view) bool {
	for i := range fs.groups {
		g := &fs.groups[i]
		val, ok := v.get(g.property)
		if !ok {
			return false
		}
		if g.any {
			continue
		}
		if !valueMatches(val, g.values) {
			return false
		}
	}
	return true
}

func valueMatches(v any, want []string) bool {
	switch v := v.(type) {
	case string:
		return contains(want, v)
	case json.Number:
		return contains(want, string(v))
	case bool:
		return contains(want, strconv.FormatBool(v))
	case nil:
		return contains(want, "null")
	case float64:
		b, err := json.Marshal(v)
		return err == nil && contains(want, string(b))
	case []any:
		for _, x := range v {
			if valueMatches(x, want) {
				return true
			}
		}
		return false
	case []string:
		for _, x := range v {
			if contains(want, x) {
				return true
			}
		}
		return false
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
