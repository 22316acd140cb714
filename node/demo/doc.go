// Package demo is `hookswitch demo` (DESIGN.md "Command line"): in one
// process, a dev node in a temporary data dir, a local webhook receiver
// that verifies every POST's Standard Webhooks signature with the
// subscription's secret (the reference library, as a customer's receiver
// would), and a made-up PBX (dispatch/source/synthetic) posting calls,
// cdrs and presence to the node's ingest API; it subscribes the receiver
// to every model and shows deliveries, the subscription's counters and its
// lag on one refreshing line.
//
// What it owns: the order of start and stop (node, receiver, subscription,
// traffic; then traffic, node, receiver, temp dir) and the status line.
// The node's configuration is the caller's (main.go builds it exactly as
// `agent --dev` does), so the demo runs what an operator would.
//
// What it must not do: leave anything behind (the temp dir is removed on
// every return after it was made), print secrets other than what
// `agent --dev` prints, or listen on anything but loopback.
package demo
