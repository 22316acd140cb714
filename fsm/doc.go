// Package fsm is hookswitch's replicated state machine: the command types and
// their encoding, the pure apply functions that turn a committed command into
// a new state, snapshot and restore, and (later) the assignment rule.
//
// Apply functions are deterministic: no clock, no randomness, no I/O. Every
// time a command needs is stamped by its proposer. Business errors (a missing
// subscription, an id that exists) come back as values in a Result; only an
// entry that cannot be decoded is fatal.
//
// fsm depends on no other hookswitch package. Durable storage is reached
// through the small Persister interface, which store.StateDB implements.
package fsm
