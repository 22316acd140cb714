package hub

import (
	"encoding/json"
	"strconv"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/match"
)

// indexKey is the filter group a connection is filed under in a source's
// index: its filters pass only events whose property has one of values
// (the group's filters are OR-ed, and AND-ed with the others, so every
// passing event passes this group).
type indexKey struct {
	property string
	values   []string
}

// chooseKey picks the group to index a connection by: a property whose
// filters all name a value (none is "*"), preferring one other than
// "model" (a model is shared by many events), then the one with the fewest
// values. nil when there is none (no filters, or only wildcards): such a
// connection is looked at for every event.
func chooseKey(filters []match.Filter) *indexKey {
	type group struct {
		values []string
		any    bool
	}
	groups := map[string]*group{}
	var order []string
	for _, f := range filters {
		g := groups[f.Property]
		if g == nil {
			g = &group{}
			groups[f.Property] = g
			order = append(order, f.Property)
		}
		if f.Value == match.Wildcard {
			g.any = true
		} else if !contains(g.values, f.Value) {
			g.values = append(g.values, f.Value)
		}
	}
	var best *indexKey
	for _, p := range order {
		g := groups[p]
		if g.any {
			continue
		}
		k := &indexKey{property: p, values: g.values}
		if best == nil || betterKey(k, best) {
			best = k
		}
	}
	return best
}

func betterKey(a, b *indexKey) bool {
	am, bm := a.property == dispatch.FieldModel, b.property == dispatch.FieldModel
	if am != bm {
		return !am
	}
	return len(a.values) < len(b.values)
}

// index is a source's attached connections, filed by their index keys.
// Guarded by the source's mu.
type index struct {
	scan  []*subSrc                       // no key: every event
	keyed map[string]map[string][]*subSrc // property → value → connections
}

func (ix *index) add(ss *subSrc, k *indexKey) {
	ss.key = k
	if k == nil {
		ix.scan = append(ix.scan, ss)
		return
	}
	if ix.keyed == nil {
		ix.keyed = map[string]map[string][]*subSrc{}
	}
	byVal := ix.keyed[k.property]
	if byVal == nil {
		byVal = map[string][]*subSrc{}
		ix.keyed[k.property] = byVal
	}
	for _, v := range k.values {
		byVal[v] = append(byVal[v], ss)
	}
}

func (ix *index) remove(ss *subSrc) {
	k := ss.key
	if k == nil {
		ix.scan = without(ix.scan, ss)
		return
	}
	byVal := ix.keyed[k.property]
	for _, v := range k.values {
		if l := without(byVal[v], ss); len(l) > 0 {
			byVal[v] = l
		} else {
			delete(byVal, v)
		}
	}
	if len(byVal) == 0 {
		delete(ix.keyed, k.property)
	}
}

// without removes ss from list (order does not matter).
func without(list []*subSrc, ss *subSrc) []*subSrc {
	for i, x := range list {
		if x == ss {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			return list[:last]
		}
	}
	return list
}

// candidates calls visit for every connection ev may pass: those without a
// key, and those filed under a value ev has for their key's property. A
// connection may be visited more than once (an array holding two of its
// values).
func (ix *index) candidates(ev *dispatch.Event, texts []string, visit func(*subSrc)) []string {
	for _, ss := range ix.scan {
		visit(ss)
	}
	if len(ix.keyed) == 0 {
		return texts
	}
	fields, _ := ev.Fields()
	for prop, byVal := range ix.keyed {
		v, ok := fields[prop]
		if !ok {
			continue
		}
		texts = valueTexts(v, texts[:0])
		for _, t := range texts {
			for _, ss := range byVal[t] {
				visit(ss)
			}
		}
	}
	return texts
}

// valueTexts appends the texts a filter value must equal to match v, with
// match.FilterSet's rules: strings as they are, numbers, booleans and null
// by their JSON text, arrays by any element; objects by none.
func valueTexts(v any, dst []string) []string {
	switch v := v.(type) {
	case string:
		return append(dst, v)
	case json.Number:
		return append(dst, string(v))
	case bool:
		return append(dst, strconv.FormatBool(v))
	case nil:
		return append(dst, "null")
	case float64:
		if b, err := json.Marshal(v); err == nil {
			return append(dst, string(b))
		}
	case []any:
		for _, x := range v {
			dst = valueTexts(x, dst)
		}
	case []string:
		return append(dst, v...)
	}
	return dst
}
