// Package hub fans the cluster's events out to websocket connections.
//
// A Hub has one reader per source node's event log (AddSource; the same
// Log interface as dispatch/engine). The reader reads each new event once,
// parses it once, renders its JSON once, and offers it to every connection
// attached to that source whose token scope (Scope) lets it see the event and
// whose filters (a match.FilterSet, the websocket semantics of DESIGN.md)
// let it in. To keep that cheap with thousands of connections, each
// source files its connections under one of their filter groups (a
// property and its values, e.g. domain = a.example; see chooseKey), so an
// event is matched only against the connections filed under the values it
// has, plus those without such a group (no filters, or only "*"); the
// full FilterSet still decides. Each connection is a Sub with a bounded queue (Options.QueueMax,
// default 1024 events): a Sub whose queue is full fails with ErrSlow at once
// and is never waited for, so one slow client slows neither the others nor
// ingest. The connection's owner closes it (the websocket endpoint uses close
// code 1008 with a reason); the hub counts it (Stats.SlowDisconnects).
//
// Since-replay. A Sub created with a start position in a source log
// (SubOptions.Start, see ParseSince) is "detached" from that source: Next
// reads the log itself, in the connection's goroutine and at the client's
// pace, until it has reached the position up to which the source's reader
// has offered events; then, holding the source's lock (which the reader
// also holds while it offers a chunk and advances its position), it joins
// the reader. Events up to that position came from its own reads, events
// after it come from the reader: no gap and no duplicate at the switch-over.
// A Sub whose start is beyond the reader's position (the reader has not yet
// read events the log already holds) joins at once and the reader skips the
// events up to its start for it.
//
// ParseSince turns a ?since= value into start positions:
//
//   - an RFC3339 time: in every source log, the first event ingested at or
//     after it (eventlog SeqAtOrAfter, millisecond precision);
//   - an event-id "<incarnation>-<seq>": the client has that event; in its
//     log, replay starts right after it (seq+1). Other logs have no position
//     in common with it, so they start at the first event ingested at most
//     SinceSkew (1s, clock skew between nodes) before it; a few events of
//     other nodes may come again (receivers dedup by event-id). If that
//     event is no longer stored, other logs replay what they still hold.
//
// Replay is within retention: a start before a log's first stored event
// starts at that event, and a replay overtaken by trimming fails with
// ErrReplayTrimmed rather than skip events silently.
//
// Filters can be replaced at any time (SetFilters). Events queued under the
// previous set are checked again against the new one when handed out, so
// nothing handed out after SetFilters returns fails the new set.
//
// What a connection sees are the events as ingested (model as stored; the
// derived models of webhook subscriptions — presence, auditlog_lite,
// call_origid — are not produced here).
//
// The package does no I/O besides reading logs, and imports neither
// httpapi, node nor fsm.
package hub
