// Package harness starts and drives real hookswitch processes for the
// integration tests, the fault tests and the benchmarks: one way to build
// the binary, start a node or a cluster, stop, kill, freeze and restart
// nodes, cut the network between them, send load and account for every
// event a receiver got.
//
//   - Binary builds cmd hookswitch once per process (with -race when the
//     caller is race-enabled).
//   - StartCluster starts n nodes (n1 bootstraps, the others join) and waits
//     until all are up and stable; StartDev starts one --dev node.
//   - Node is one agent process: Start, Stop (SIGTERM), Kill (SIGKILL),
//     Restart (same data dir and ports, joining through the others),
//     Freeze/Thaw (SIGSTOP/SIGCONT), its API client and its command line.
//   - Receiver is a webhook endpoint that records every POST and accounts
//     for accepted events exactly: lost, duplicated, out of order per
//     source node, and POSTs of one subscription in flight at once.
//   - Load sends events at a bounded rate to random live nodes and records
//     every event-id answered 202, by the node that accepted it.
//   - PKI makes a cluster CA and node certificates with `hookswitch tls
//     init` and `tls issue`; Options.NodeExtra gives each node its own
//     flags (PKI.AgentFlags: mutual TLS) and Options.TLS (DevOptions.TLS
//     for a --dev node) is the ClientTLS with which the harness's clients
//     and command lines reach nodes over HTTPS.
//   - Cluster.NewNode adds a node that is not started (Launch starts it,
//     WaitHealthy waits for /healthz: one that is no member yet).
//   - Run runs the binary with any arguments and returns its output and
//     exit status (an agent that must refuse to start, `hookswitch tls`).
//   - StartProcess starts the binary with any arguments and returns at
//     once, as a Node without an API (output, Signal, Wait): a
//     long-running command such as `hookswitch demo`.
//   - NetNS is a network namespace the test makes itself (root only): nodes
//     on 127.0.0.x addresses inside it, iptables cuts between addresses and
//     tc netem on its loopback.
//
// The functions take a TB, which *testing.T and *testing.B satisfy; a
// benchmark's main program uses MainTB. Every wait polls observable state
// with a deadline (WaitFor); nothing synchronises by sleeping.
package harness
