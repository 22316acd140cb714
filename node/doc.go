// Package node is one hookswitch cluster member: it opens the stores, runs
// raft (bootstrap, join, leave, the leader loop), serves the HTTP API, and
// wires the event pipeline together. Apply commits a command through raft,
// forwarding it to the leader when this node is a follower, so callers never
// see "not leader".
//
// node decides nothing about subscriptions itself (that is fsm) and knows no
// wire formats of events (that is dispatch); it connects them and owns their
// lifetimes, stopping every goroutine it starts on Shutdown.
package node
