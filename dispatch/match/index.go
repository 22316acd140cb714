package match

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/hookswitch/hookswitch/dispatch"
)

// ErrBadSub is wrapped by Upsert's errors.
var ErrBadSub = errors.New("invalid subscription")

// Sub is what the index needs of a subscription. Model may be "*" (every
// model, as ingested: a "*" subscription does not also receive derived
// copies). Reseller, Domain and User are "*" (or empty, meaning the same) for
// any value.
type Sub struct {
	ID       string
	Model    string
	Reseller string
	Domain   string
	User     string
	Filters  []Filter
}

// Hit is one subscription an event reaches. Derived is "" when the event
// reaches it as ingested, else the derived model it reaches it under
// (dispatch.ModelPresence, ModelAuditlogLite or ModelCallOrigID): deliver
// Derive(ev, Derived) to it, and for call_origid only what the subscription's
// OrigIDCollapser passes.
type Hit struct {
	SubID   string
	Derived string
}

// Index matches events to subscriptions. Subscriptions are bucketed by model
// ("*" is a bucket of its own) and, within a model, by domain; subscriptions
// with domain "*" are bucketed by reseller, with a last bucket for reseller
// "*" too. An event therefore looks at the buckets of its model(s) × its
// domains and resellers only, and checks reseller, user and filters on those
// candidates.
//
// Match may run concurrently with Upsert and Remove (a read/write lock:
// matching shares it, updates are short and rare).
type Index struct {
	mu     sync.RWMutex
	byID   map[string]*entry
	models map[string]*modelBucket
}

type entry struct {
	id       string
	model    string
	reseller string
	domain   string
	user     string
	filters  FilterSet
}

// modelBucket holds the subscriptions of one model (or of "*").
type modelBucket struct {
	byDomain   map[string][]*entry // domain != "*"
	byReseller map[string][]*entry // domain == "*", reseller != "*"
	any        []*entry            // domain == "*", reseller == "*"
	n          int
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byID: make(map[string]*entry), models: make(map[string]*modelBucket)}
}

// Len is the number of subscriptions in the index.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byID)
}

// Upsert adds s, or replaces the subscription with the same ID. It fails,
// leaving the index unchanged, when ID or Model is empty or a filter is
// invalid.
func (ix *Index) Upsert(s Sub) error {
	e, err := compile(s)
	if err != nil {
		return err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(s.ID)
	ix.byID[e.id] = e
	mb := ix.models[e.model]
	if mb == nil {
		mb = &modelBucket{byDomain: make(map[string][]*entry), byReseller: make(map[string][]*entry)}
		ix.models[e.model] = mb
	}
	mb.n++
	switch {
	case e.domain != Wildcard:
		mb.byDomain[e.domain] = append(mb.byDomain[e.domain], e)
	case e.reseller != Wildcard:
		mb.byReseller[e.reseller] = append(mb.byReseller[e.reseller], e)
	default:
		mb.any = append(mb.any, e)
	}
	return nil
}

// Replace empties the index and loads subs (after a snapshot restore). On
// error the index is left unchanged.
func (ix *Index) Replace(subs []Sub) error {
	fresh := NewIndex()
	for _, s := range subs {
		if err := fresh.Upsert(s); err != nil {
			return err
		}
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.byID, ix.models = fresh.byID, fresh.models
	return nil
}

func compile(s Sub) (*entry, error) {
	if s.ID == "" {
		return nil, fmt.Errorf("%w: empty id", ErrBadSub)
	}
	if s.Model == "" {
		return nil, fmt.Errorf("%w %s: empty model", ErrBadSub, s.ID)
	}
	fs, err := NewFilterSet(s.Filters)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrBadSub, s.ID, err)
	}
	return &entry{
		id:       s.ID,
		model:    s.Model,
		reseller: orAny(s.Reseller),
		domain:   orAny(s.Domain),
		user:     orAny(s.User),
		filters:  fs,
	}, nil
}

func orAny(s string) string {
	if s == "" {
		return Wildcard
	}
	return s
}

// Remove drops the subscription with this id, if present.
func (ix *Index) Remove(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(id)
}

func (ix *Index) removeLocked(id string) {
	e, ok := ix.byID[id]
	if !ok {
		return
	}
	delete(ix.byID, id)
	mb := ix.models[e.model]
	switch {
	case e.domain != Wildcard:
		mb.byDomain[e.domain] = without(mb.byDomain[e.domain], e)
		if len(mb.byDomain[e.domain]) == 0 {
			delete(mb.byDomain, e.domain)
		}
	case e.reseller != Wildcard:
		mb.byReseller[e.reseller] = without(mb.byReseller[e.reseller], e)
		if len(mb.byReseller[e.reseller]) == 0 {
			delete(mb.byReseller, e.reseller)
		}
	default:
		mb.any = without(mb.any, e)
	}
	mb.n--
	if mb.n == 0 {
		delete(ix.models, e.model)
	}
}

// without removes e from list by swapping the last element into its place
// (order within a bucket does not matter) and clears the vacated slot so the
// backing array keeps no stale pointer.
func without(list []*entry, e *entry) []*entry {
	for i, x := range list {
		if x == e {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			return list[:last]
		}
	}
	return list
}

// Match appends to dst the subscriptions ev reaches (as ingested or under a
// derived model) and returns the extended slice. Every subscription appears
// at most once. The order is unspecified.
func (ix *Index) Match(ev *dispatch.Event, dst []Hit) []Hit {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if len(ix.byID) == 0 {
		return dst
	}
	m := matcher{ev: ev, scope: ev.Scope()}
	m.domains = dedup(m.scope.Domain)
	m.resellers = dedup(m.scope.Reseller)
	dst = m.bucket(ix.models[ev.Model], "", dst)
	if ev.Model != Wildcard {
		dst = m.bucket(ix.models[Wildcard], "", dst)
	}
	if d := derivedModel(ev); d != "" {
		dst = m.bucket(ix.models[d], d, dst)
	}
	return dst
}

// MatchIDs is Match reporting only the subscription ids.
func (ix *Index) MatchIDs(ev *dispatch.Event, dst []string) []string {
	var buf [16]Hit
	for _, h := range ix.Match(ev, buf[:0]) {
		dst = append(dst, h.SubID)
	}
	return dst
}

// matcher holds the per-event state of one Match call.
type matcher struct {
	ev        *dispatch.Event
	scope     dispatch.Scope
	domains   []string
	resellers []string
	fields    map[string]any // parsed on first need
}

func (m *matcher) bucket(mb *modelBucket, derived string, dst []Hit) []Hit {
	if mb == nil {
		return dst
	}
	for _, d := range m.domains {
		dst = m.candidates(mb.byDomain[d], derived, dst)
	}
	for _, r := range m.resellers {
		dst = m.candidates(mb.byReseller[r], derived, dst)
	}
	return m.candidates(mb.any, derived, dst)
}

func (m *matcher) candidates(list []*entry, derived string, dst []Hit) []Hit {
	for _, e := range list {
		if e.reseller != Wildcard && !contains(m.scope.Reseller, e.reseller) {
			continue
		}
		if e.user != Wildcard && !contains(m.scope.User, e.user) {
			continue
		}
		if !e.filters.Empty() && !e.filters.match(m.view(derived)) {
			continue
		}
		dst = append(dst, Hit{SubID: e.id, Derived: derived})
	}
	return dst
}

// view is what filters see: the event's fields, or its derived form (model
// replaced and, for presence, only the presence fields).
func (m *matcher) view(derived string) view {
	if m.fields == nil {
		m.fields, _ = m.ev.Fields()
	}
	if derived == "" {
		return mapView(m.fields)
	}
	return derivedView{fields: m.fields, model: derived}
}

type derivedView struct {
	fields map[string]any
	model  string
}

func (v derivedView) get(p string) (any, bool) {
	if p == dispatch.FieldModel {
		return v.model, true
	}
	if v.model == dispatch.ModelPresence && !isPresenceField(p) {
		return nil, false
	}
	val, ok := v.fields[p]
	return val, ok
}

func dedup(list []string) []string {
	for i := 1; i < len(list); i++ {
		if contains(list[:i], list[i]) {
			out := append([]string(nil), list[:i]...)
			for _, s := range list[i+1:] {
				if !contains(out, s) {
					out = append(out, s)
				}
			}
			return out
		}
	}
	return list
}

// derivedModel is the derived model an event also reaches, or "".
func derivedModel(ev *dispatch.Event) string {
	switch ev.Model {
	case dispatch.ModelSubscriber:
		return dispatch.ModelPresence
	case dispatch.ModelCall:
		return dispatch.ModelCallOrigID
	case dispatch.ModelAuditlog:
		if f, err := ev.Fields(); err == nil && isLiteAuditlog(f) {
			return dispatch.ModelAuditlogLite
		}
	}
	return ""
}

// isLiteAuditlog reports whether an auditlog event also reaches auditlog_lite:
// its object (field "object", else "object_type", else "object-type") is one
// of domain, user, reseller, callqueue, agent, conference, phonenumber, and
// its action (field "action", else "action_type", else "action-type") is a
// create or a delete ("create", "created", "delete", "deleted"). Both are
// compared case-insensitively.
func isLiteAuditlog(f map[string]any) bool {
	switch strings.ToLower(strings.TrimSpace(firstString(f, "object", "object_type", "object-type"))) {
	case "domain", "user", "reseller", "callqueue", "agent", "conference", "phonenumber":
	default:
		return false
	}
	switch strings.ToLower(strings.TrimSpace(firstString(f, "action", "action_type", "action-type"))) {
	case "create", "created", "delete", "deleted":
		return true
	}
	return false
}

func firstString(f map[string]any, names ...string) string {
	for _, n := range names {
		if v, ok := f[n]; ok {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}
