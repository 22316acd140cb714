// Package match decides which subscriptions an event reaches.
//
// It owns:
//
//   - FilterSet: the websocket filter semantics of DESIGN.md ("Websocket
//     API"), shared by subscription filters and websocket connections;
//   - Index: subscriptions indexed by model, then by domain (or, for
//     domain "*", by reseller), so the cost of Index.Match grows with the
//     subscriptions an event can reach, not with all subscriptions;
//   - the derived models of DESIGN.md ("Derived models"): subscriber →
//     presence (reduced, see Derive), auditlog → auditlog_lite (creates and
//     deletes of a few objects), call → call_origid (see OrigIDCollapser).
//
// Match reports Hits: the subscription id and, when the event reached the
// subscription under a derived model, that model's name (Hit.Derived). The
// caller delivers Derive(ev, hit.Derived) to such subscriptions, and for
// call_origid first asks the subscription's own OrigIDCollapser whether the
// event passes (the collapse is stateful and follows the subscription's own
// stream, so it cannot live in the shared, stateless index).
//
// What it must not do: no I/O, no logging of event contents, no imports of
// httpapi, node or fsm, no package-level mutable state. It does not decide
// who may subscribe to what (token scopes are the API's job); it only
// evaluates the scope a subscription already has.
package match
