// Package ami is the Asterisk Manager Interface source (DESIGN.md "PBX
// sources"): a client that logs in to AMI, reads its events and maps them
// to hookswitch events.
//
// What it owns:
//
//   - the AMI wire format (Reader): after the one-line banner
//     ("Asterisk Call Manager/…"), messages are blocks of `Key: Value`
//     lines ended by CRLF (a bare LF is accepted), each block ended by an
//     empty line. A line without a colon is garbage: it is logged and
//     counted (once per block) and skipped; the block's other lines count.
//     A line over MaxLine bytes, or a block of more than MaxLines lines,
//     ends the connection (the client reconnects).
//   - the session: `Action: Login` with `Events: on`; a `Response: Error`
//     is a failed login (logged without the secret, counted, retried with
//     the backoff); then events until the connection ends, and reconnects
//     with source.Backoff. Asterisk keeps nothing for a client that is not
//     connected: events in between are lost, and the status says when.
//   - the mapping (Map): channel and bridge events → call, Cdr → cdr,
//     queue member events → agent, device/peer/contact/extension state →
//     presence, MessageWaiting → voicemail; everything else is ignored.
//     See docs/sources.md for the fields.
//
// It always drains the socket: events go to a source.Sink, which appends
// them from its own goroutine (package source).
//
// What it must not do: import httpapi, node or fsm; log event bodies or
// the AMI secret.
package ami
