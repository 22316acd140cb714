// Package integration holds hookswitch's tests that run the real binary:
// multi-process, multi-node and fault tests; the benchmarks are in
// integration/bench and its subcommands.
//
// Every test and benchmark starts nodes through one package,
// integration/harness (importable, not test-only):
//
//   - harness.Binary builds cmd hookswitch once per process (with -race
//     when the test binary is race-enabled);
//   - harness.StartCluster starts a cluster (n1 bootstraps, the others
//     join) and waits until every node is up and stable; harness.StartDev
//     starts one --dev node. Nodes run on free ports (127.0.0.1, or given
//     127.0.0.x addresses inside a network namespace), each with its own
//     data dir under t.TempDir(); their stdout and stderr go to files that
//     are printed when a test fails; they are stopped at the end of the
//     test;
//   - harness.Node stops (SIGTERM), kills (SIGKILL), freezes (SIGSTOP),
//     thaws and restarts a node on its data dir and ports, and gives its
//     API client and command line;
//   - harness.NewPKI makes a CA and node certificates with `hookswitch
//     tls`; with Options.NodeExtra (PKI.AgentFlags) and Options.TLS the
//     nodes run on mutual TLS and the harness's clients use HTTPS;
//   - harness.Run runs the binary with any arguments and returns its exit
//     status and output (an agent that must refuse to start);
//   - harness.Receiver is the webhook endpoint: it records every POST and
//     accounts for accepted events exactly (lost, duplicated, out of order
//     per source node, POSTs of one subscription in flight at once);
//   - harness.StartLoad sends events to random live nodes and records every
//     event-id answered 202 by the node that accepted it;
//   - harness.NewNetNS makes a network namespace (root only) in which
//     partitions are iptables rules between node addresses.
//
// The files *_helpers_test.go hold only what their tests share on top of
// the harness (subscription polling, numbered events). Tests synchronise by
// polling observable state with harness.WaitFor (readiness, files, API
// answers), never by sleeping.
//
// The package has no non-test code; this file exists so that `go vet ./...`
// and `go list` see a package here.
package integration
