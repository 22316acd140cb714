// Package httpsource is the HTTP ingest source: the handler of
// POST /v1/events (DESIGN.md "Ingest"), as a plain net/http Handler that the
// HTTP server mounts.
//
// What it owns:
//
//   - the request body formats: one JSON object, a JSON array of objects, or
//     the application/x-www-form-urlencoded fields of one event (Enswitch;
//     converted with dispatch.FormToObject); Content-Type negotiation (a
//     missing or text/plain type is sniffed: JSON when the body starts with
//     '{' or '['; a form-typed body that starts with '{' or '[' is JSON too,
//     as curl -d sends JSON as a form), 415 for anything else;
//   - the request limits: body ≤ MaxBodyBytes (4 MiB, 413), ≤ MaxEvents
//     (10,000) events per request (413), each event ≤ dispatch.MaxEventBytes
//     (64 KiB, 400 naming its index);
//   - all-or-nothing: every event is validated with dispatch.ParseIngest
//     before anything is stored, and all events of a request go to the log in
//     ONE Appender.Append call; the request is answered
//     202 {"accepted":N,"event-ids":[...]} only after Append returned (the
//     log fsyncs before it returns), 400 naming the event index and the
//     reason when any event is invalid, 503 when the log fails;
//   - the JSON error shape of the API,
//     {"code":N,"message":"...","error":"...","field":"...","index":N}
//     (field "" and no index unless one field or one event is at fault).
//
// What it must not do: it never imports httpapi, node or fsm (they depend on
// dispatch, not the other way round); it does not decide who may ingest (the
// Authorizer given by the caller does: ingest-allow CIDRs, tokens, roles); it
// does not assign sequence numbers, event ids or ingest times (the log does;
// the ids are only formatted here); it never acknowledges events before
// Append returned, never stores part of a request, never splits a request
// over several Append calls, and never logs event bodies or credentials. It
// keeps no package-level mutable state: buffers are pooled per handler.
package httpsource
