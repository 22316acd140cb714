package match

import (
	"container/list"
	"encoding/json"
	"strings"
	"sync"

	"github.com/hookswitch/hookswitch/dispatch"
)

// DefaultOrigIDCalls is the default number of calls an OrigIDCollapser
// remembers (least recently seen calls are forgotten first).
const DefaultOrigIDCalls = 10_000

// Field names of the call_origid collapse.
const (
	fieldOrigCallID = "orig_callid"
	origPrefix      = "orig_"
	fieldRemove     = "remove"
)

// OrigIDCollapser collapses a stream of call events into the call_origid
// form, keyed by orig_callid (DESIGN.md "Derived models"). For each call
// event, Pass reports whether a call_origid subscription gets it:
//
//   - the first event of a call (an orig_callid not remembered) passes;
//   - an event that changes an orig_* field passes: a field whose JSON value
//     differs from the last one seen for the call, or that was not present
//     before (a field merely absent from an event is not a change);
//   - the removal ("remove":"yes", case-insensitive, or true) passes and the
//     call is forgotten;
//   - every other event of the call is collapsed (false);
//   - an event without an orig_callid cannot be collapsed and passes.
//
// State is a bounded LRU of DefaultOrigIDCalls (or the given number of)
// calls; a call forgotten for lack of room (or after a restart or failover,
// when a new collapser starts empty) passes again on its next event, like a
// first event: the collapse may repeat, never lose, an orig_* change.
//
// Use one collapser per call_origid subscription, fed every call event that
// reaches the subscription (every Hit with Derived == call_origid), in the
// subscription's delivery order. It is safe for concurrent use.
type OrigIDCollapser struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *origCall, most recently seen at the front
	calls map[string]*list.Element
}

type origCall struct {
	id   string
	orig map[string]string // orig_* field → JSON text of its last value
}

// NewOrigIDCollapser returns a collapser remembering up to maxCalls calls
// (DefaultOrigIDCalls when maxCalls <= 0).
func NewOrigIDCollapser(maxCalls int) *OrigIDCollapser {
	if maxCalls <= 0 {
		maxCalls = DefaultOrigIDCalls
	}
	return &OrigIDCollapser{max: maxCalls, order: list.New(), calls: make(map[string]*list.Element)}
}

// Len is the number of calls remembered.
func (c *OrigIDCollapser) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// Pass reports whether the call event ev goes to the call_origid subscription
// this collapser serves, and records it.
func (c *OrigIDCollapser) Pass(ev *dispatch.Event) bool {
	f, err := ev.Fields()
	if err != nil {
		return true
	}
	id, ok := jsonText(f[fieldOrigCallID])
	if !ok {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, known := c.calls[id]
	if isRemoval(f[fieldRemove]) {
		if known {
			c.order.Remove(el)
			delete(c.calls, id)
		}
		return true
	}
	if !known {
		call := &origCall{id: id, orig: make(map[string]string)}
		updateOrig(call.orig, f)
		c.calls[id] = c.order.PushFront(call)
		for c.order.Len() > c.max {
			oldest := c.order.Back()
			c.order.Remove(oldest)
			delete(c.calls, oldest.Value.(*origCall).id)
		}
		return true
	}
	c.order.MoveToFront(el)
	return updateOrig(el.Value.(*origCall).orig, f)
}

// updateOrig records f's orig_* fields in orig and reports whether any was
// new or changed.
func updateOrig(orig map[string]string, f map[string]any) bool {
	changed := false
	for k, v := range f {
		if !strings.HasPrefix(k, origPrefix) {
			continue
		}
		text, _ := jsonText(v)
		if old, ok := orig[k]; !ok || old != text {
			orig[k] = text
			changed = true
		}
	}
	return changed
}

func isRemoval(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.EqualFold(strings.TrimSpace(v), "yes")
	case bool:
		return v
	}
	return false
}

// jsonText is the JSON text of a parsed value (strings quoted, so "1" and 1
// differ); ok is false for an absent value.
func jsonText(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return string(dispatch.AppendJSONString(nil, v)), true
	case json.Number:
		return string(v), true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}
