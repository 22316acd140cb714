// Package store owns hookswitch's files on disk: the raft log and stable
// store (raft.db, raft-boltdb/v2), the file snapshot store (snapshots/), and
// the FSM state (state.db), whose last applied raft index is written in the
// same bbolt transaction as the state it describes. The local event log
// (events.db) lives in store/eventlog.
//
// store knows how to keep bytes safe; it does not interpret commands or
// decide anything (that is fsm), and it never talks to the network.
package store
