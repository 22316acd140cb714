// Package dispatch owns hookswitch's event path: the Event type and its wire
// form, ingest validation of source objects, and (in subpackages) matching
// events to subscriptions (dispatch/match), webhook delivery
// (dispatch/webhook), the websocket fan-out hub and the event sources.
//
// This package itself is deliberately small and dependency free:
//
//   - Event is one stored event: the source object as compact JSON (Body,
//     without hookswitch's own fields) plus the stamps hookswitch adds
//     (event-id, node, ingest-time). Event.JSON/AppendJSON produce the wire
//     object by byte concatenation; Event.Fields parses Body lazily, once.
//   - ParseIngest and FormToObject validate and normalise what a source
//     submits (DESIGN.md "Events", "Ingest").
//
// What it must not do: dispatch and its subpackages never import httpapi,
// node or fsm (those depend on dispatch, not the other way round), keep no
// package-level mutable state, and never log or return secrets. Durability,
// sequence numbers and the event log belong to store; this package only
// describes an event once it has them.
package dispatch
