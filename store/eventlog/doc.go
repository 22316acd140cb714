// Package eventlog is a node's local durable event log, the file events.db.
//
// It owns the on-disk layout of events.db (a bbolt file), the per-node
// sequence numbers, the log incarnation id, group commit of appends (many
// concurrent Append calls share one fsync), reads by sequence number or by
// ingest time, and trimming by consumer progress and by retention (age and
// size), reporting every record dropped unread to the caller before it is
// deleted.
//
// It treats an event as opaque bytes tagged with a model name. It knows
// nothing about subscriptions, cursors, matching, event fields, peers or
// HTTP: callers decide what to append, what keepFrom to trim to and what a
// dropped record means. It must not parse or rewrite event bodies, and it
// must not acknowledge an append before the records are fsynced.
package eventlog
