// Package webhook delivers events to one webhook subscription
// (DESIGN.md "Webhook delivery", "Security").
//
// It owns:
//
//   - the wire form of a POST: Encode (json-array, json, form), BatchID (the
//     webhook-id of a batch), Sign/NewSecret (Standard Webhooks signatures);
//   - Poster: one signed POST through an http.Client that never follows
//     redirects, connects within 5s, ignores proxy settings, and refuses
//     denied addresses at connect time (Guard, the post-url guard);
//   - Worker: the per-subscription loop: one POST in flight, natural
//     batching, identical retries with Backoff or Retry-After, suspension on
//     410 Gone (or on failing for SuspendAfter), status and counters reported
//     to an Observer.
//
// The webhook-id of a batch is "msg_" followed by 32 hex digits of
// SHA-256(subscription id, then each event id of the batch, NUL-separated).
// A retried batch has the same events, hence the same webhook-id and the same
// body; a batch with different events never reuses an id, so a receiver that
// drops repeated webhook-ids never drops events it has not seen.
//
// What it must not do: choose which events a subscription gets (that is the
// Source: event log, cursors, matching, derived forms), decide ownership or
// fencing (node), or persist anything (store). It never logs or returns
// signing secrets or a post-url's query string or credentials. It does not
// import httpapi, node or fsm.
package webhook
