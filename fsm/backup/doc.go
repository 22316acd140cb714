// Package backup is the snapshot file of `hookswitch snapshot save` and
// `restore`: the replicated state (subscriptions with their secrets, API
// tokens, cursors, cluster membership) as versioned JSON lines with a
// header and a SHA-256 checksum.
//
// The file is one JSON object per line:
//
//	{"format":"hookswitch-snapshot","version":1,"created-ms":…,"source-node":…,"applied":…,"subs":2,"tokens":3,"nodes":3}
//	{"sub":{…}}            one per subscription, in id order
//	{"token":{…}}          one per API token (the hash, never the token)
//	{"node":{…}}           one per member
//	{"end":true,"records":8,"sha256":"…"}
//
// The checksum is the hex SHA-256 of every byte before the end line. Read
// refuses a file of another format or a newer version, a truncated file,
// a wrong checksum and counts that disagree with the header.
//
// The file holds subscription secrets: whoever writes it creates it mode
// 0600 (WriteFile does).
package backup
