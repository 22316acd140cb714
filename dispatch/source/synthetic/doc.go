// Package synthetic is a made-up PBX for `hookswitch demo` (DESIGN.md
// "Command line"): it places calls at a steady rate and plays each one's
// lifecycle as hookswitch events, shaped like the Kamailio source's
// (docs/sources.md): a call "start", an "answer" for most calls, an "end"
// with "remove":"yes", then one cdr; and presence changes of both parties
// (busy when the call starts, available when it ends).
//
// What it owns: the call plan (who calls whom, when each step happens) as
// a clock-driven state machine (PBX.Step), and a loop (PBX.Run) that steps
// it on a ticker and hands each step's events to an Emit function, e.g.
// one that posts them to a node's ingest API.
//
// What it must not do: import httpapi, node or fsm; it is not a source a
// node runs (it is not in the sources setting), only a traffic generator.
package synthetic
