// Package engine runs webhook delivery on one node: it reads the source
// event logs (one reader per source node), matches each event once against
// the index of the subscriptions this node sends, queues it for each of
// them, and runs one webhook.Worker per subscription. It keeps each
// subscription's cursor per source log (how far it has consumed that log,
// matching or not) and its counters, and hands them out as reports.
//
// The engine does not decide which subscriptions this node sends (the node
// passes the set to Sync, from the replicated state) and never writes the
// replicated state itself: reports go back through the node. It must not
// import httpapi, node or fsm.
package engine
