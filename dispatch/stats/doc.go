// Package stats keeps, in memory, per-minute counts of each subscription's
// webhook outcomes on this node for the last hour: events delivered,
// POSTs that succeeded and POST attempts that failed. The status dashboard
// draws them (GET /v1/subscriptions/{id}/stats). Nothing is replicated or
// persisted: a restart starts from zero, and a subscription moved to another
// node is counted there from then on.
package stats
