// Package source holds what the PBX source adapters (dispatch/source/kamailio,
// dispatch/source/ami) share: the Appender they write to (the node's local
// event log), the Sink that decouples reading a PBX socket from appending,
// the Status every source reports (/metrics, hookswitch status), the
// reconnect Backoff, and Redact for source URLs.
//
// The rule every adapter follows (DESIGN.md "PBX sources"): a source always
// drains its socket. Reading never waits on the event log: events go into
// the Sink's bounded queue, and the Sink's own goroutine appends them in
// batches. When the queue is full (the log stalls) or an append fails, the
// events concerned are dropped, logged and counted (events-dropped): a PBX
// that cannot write to its event socket stalls its call processing, which is
// worse than a gap in the event stream, and a source cannot ask a PBX to send
// again. Errors of a source never stop the node.
//
// What it must not do: import httpapi, node or fsm; log event bodies or
// credentials (Redact drops the password of a URL).
package source
