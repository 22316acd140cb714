// Package tlsnet is the node-to-node network of a hookswitch node: the
// certificates (tls-cert, tls-key, cluster-ca) reloaded on SIGHUP, the
// server and client TLS configurations built from them, a raft.StreamLayer
// that speaks mutual TLS (or plain TCP when no cluster-ca is set), and the
// dialer every outgoing node-to-node connection uses, which leaves from the
// node's advertised address.
//
// With a cluster-ca, both sides verify each other: a server accepts only
// client certificates that chain to the CA, and a client accepts only a
// server certificate that chains to the CA and names the address it dialed.
package tlsnet
