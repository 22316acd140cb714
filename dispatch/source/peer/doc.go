// Package peer is the event mesh: every node serves its local event log to
// the other nodes (Handler, GET /internal/v1/log) and keeps a durable copy
// of each peer's log (Mirror), filled by one Tailer per peer. The delivery
// engine and the websocket hub read a Mirror like a local log, so every
// node sees every event of the cluster, in order per source node.
//
// peer moves bytes between logs; it does not match, deliver or decide who
// sends what, and it must not import httpapi or node (authentication of
// the endpoint is the mount point's).
package peer
