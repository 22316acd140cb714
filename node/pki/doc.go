// Package pki makes the small certificate authority behind the cluster-ca
// setting and the node certificates it signs (`hookswitch tls init` and
// `hookswitch tls issue`), so an operator needs no openssl recipe.
//
// Keys are ECDSA P-256. Node certificates carry both the server and the
// client extended key usage: every node presents the same certificate when
// it serves (HTTPS, raft) and when it calls a peer (mutual TLS). Private
// keys are written with mode 0600 and never overwritten.
package pki
