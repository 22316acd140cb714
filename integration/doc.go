// Package integration holds hookswitch's tests that run the real binary:
// multi-process and (later) multi-node and fault tests, and the benchmark
// harness.
//
// The tests build cmd hookswitch once per run (TestMain) and start agents as
// child processes on free loopback ports, each with its own data dir under
// t.TempDir(). Every agent's stdout and stderr go to files that are printed
// when a test fails. Tests synchronise by polling observable state with
// waitFor (readiness, files, API answers), never by sleeping.
//
// The package has no non-test code; this file exists so that `go vet ./...`
// and `go list` see a package here.
package integration
