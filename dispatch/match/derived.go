package match

import (
	"fmt"

	"github.com/hookswitch/hookswitch/dispatch"
)

// presenceFields returns the members a presence event keeps of a subscriber
// event (DESIGN.md "Derived models"); "model" is set to presence and the
// stamps (event-id, node, ingest-time) are added on the wire as for any event.
func presenceFields() []string {
	return []string{
		dispatch.FieldUser, dispatch.FieldDomain,
		"name-first-name", "name-last-name",
		"user-presence-status", "status-message",
		"site", "department",
	}
}

// isPresenceField reports whether a filter on property p can see p in the
// presence form of a subscriber event.
func isPresenceField(p string) bool {
	switch p {
	case dispatch.FieldUser, dispatch.FieldDomain,
		"name-first-name", "name-last-name",
		"user-presence-status", "status-message",
		"site", "department",
		dispatch.FieldModel, dispatch.FieldEventID, dispatch.FieldNode, dispatch.FieldIngestTime:
		return true
	}
	return false
}

// Derive returns the form of ev to deliver for a Hit with this Derived value:
// ev itself for "", otherwise a copy with the same event-id, node and
// ingest-time whose "model" is the derived model; the presence form keeps only
// the presence fields, the auditlog_lite and call_origid forms keep every
// field. Callers that deliver one event to many subscriptions should derive
// once per (event, model).
func Derive(ev *dispatch.Event, derived string) (*dispatch.Event, error) {
	switch derived {
	case "":
		return ev, nil
	case dispatch.ModelPresence:
		return ev.Derived(derived, presenceFields())
	case dispatch.ModelAuditlogLite, dispatch.ModelCallOrigID:
		return ev.Derived(derived, nil)
	}
	return nil, fmt.Errorf("derive event %s: unknown derived model %q", ev.ID, derived)
}
