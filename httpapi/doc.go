// Package httpapi is hookswitch's HTTP server on echo v4: the admin API
// (subscriptions, tokens, cluster), health and readiness, internal
// node-to-node endpoints, and the mounting point for ingest, websocket and
// metrics handlers that live in dispatch. It authenticates every request and
// checks the token's scope; it turns requests into fsm commands and never
// touches raft or storage itself (it reaches them through Backend).
// httpapi/client is the typed Go client used by the CLI and tests.
package httpapi
