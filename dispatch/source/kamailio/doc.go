// Package kamailio is the Kamailio source (DESIGN.md "PBX sources"): a
// client of Kamailio's evapi module that turns the dialog events of
// docs/kamailio.cfg into `call` events and one `cdr` per call.
//
// What it owns:
//
//   - the evapi wire format: netstrings `len:json,` over TCP (Reader).
//     Whitespace between netstrings is skipped. Anything else (a length
//     that is not digits, a frame without its trailing comma, a length over
//     MaxFrame) is garbage: it is logged and counted once per run of
//     garbage, and the reader resynchronises on the next `digits:` it
//     finds; after MaxGarbage bytes without a frame it gives up and the
//     client reconnects. A frame whose JSON is not an object, or lacks
//     "event" or "callid", is logged, counted and skipped.
//   - the connection: dial, read until error, reconnect with
//     source.Backoff. Events Kamailio relays while no client is connected
//     are lost (evapi keeps nothing); the status says when that was.
//   - the mapping (Map): invite → call "start", answer → call "answer",
//     end and failed → call "end" with "remove":"yes" followed by one cdr.
//     See docs/sources.md for the fields.
//
// It always drains the socket: events go to a source.Sink, which appends
// them from its own goroutine; when the log is slow or fails, events are
// dropped and counted, never read more slowly (package source).
//
// What it must not do: import httpapi, node or fsm; log event bodies.
package kamailio
