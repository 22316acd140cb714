#!/usr/bin/env bash
# scripts/install.sh: install hookswitch as a systemd service on this machine.
#
#   sudo scripts/install.sh
#
# It builds the binary into /usr/local/bin/hookswitch, creates the system user
# "hookswitch", writes an example /etc/hookswitch/hookswitch.toml (only when
# there is none: an existing config is never overwritten), installs
# /etc/systemd/system/hookswitch.service and enables it. It does not start the
# service: decide first whether this node bootstraps a new cluster or joins
# one (see the config file), then `systemctl start hookswitch`.
#
# DESTDIR=/some/dir stages the files under that directory instead (for
# packaging); it then skips the user, systemctl and the root check.
# Running it again upgrades the binary and the unit and keeps the config.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DESTDIR=${DESTDIR:-}
BIN=$DESTDIR/usr/local/bin/hookswitch
CONF_DIR=$DESTDIR/etc/hookswitch
CONF=$CONF_DIR/hookswitch.toml
UNIT=$DESTDIR/etc/systemd/system/hookswitch.service
SVC_USER=hookswitch

say() { printf 'install.sh: %s\n' "$*"; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
	say "run as root (sudo $0), or set DESTDIR to stage the files"
	exit 1
fi
command -v go >/dev/null 2>&1 || { say "Go is required to build hookswitch (https://go.dev/dl/)"; exit 1; }

# ---- binary ------------------------------------------------------------------
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
mkdir -p "$(dirname "$BIN")"
say "building $BIN (version $version)"
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$version" -o "$BIN.new" .
mv -f "$BIN.new" "$BIN"
chmod 0755 "$BIN"

# ---- user ----------------------------------------------------------------------
if [ -z "$DESTDIR" ] && ! id "$SVC_USER" >/dev/null 2>&1; then
	say "creating system user $SVC_USER"
	useradd --system --user-group --home-dir /var/lib/hookswitch --no-create-home \
		--shell /usr/sbin/nologin --comment "hookswitch event delivery" "$SVC_USER"
fi

# ---- config --------------------------------------------------------------------
mkdir -p "$CONF_DIR"
if [ -e "$CONF" ]; then
	say "keeping the existing $CONF"
else
	say "writing the example $CONF"
	cat >"$CONF.new" <<'TOML'
# hookswitch node configuration. Every setting is also a flag (--NAME) and an
# environment variable (HOOKSWITCH_NAME, upper case, dashes as underscores).
# Precedence: flag, environment, this file, built-in default.
# Each setting below is commented out and shows its default.
# Durations are strings in Go syntax: "250ms", "5s", "72h".
# Reference: docs/configuration.md.

# ---- identity and addresses ----
# This node's id. Default: the hostname, persisted in <data-dir>/node-id on
# first start (a data dir keeps its id; a different node-id is refused).
# node-id = ""
# data-dir = "/var/lib/hookswitch"   # change ReadWritePaths= of the unit too
# http-addr = ":7480"                # admin API, ingest, websocket, /metrics
# raft-addr = ":7481"                # raft transport between nodes
# Addresses other nodes use to reach this one. Default: the listen address,
# with an unspecified host (":7480") replaced by this machine's first
# global unicast address. Set them when that guess is wrong (NAT, several NICs).
# advertise-http = ""
# advertise-raft = ""

# ---- cluster membership ----
# Exactly one of these on a node's first start:
#   bootstrap = true on the first node of a new cluster (once; ignored when
#   the data dir already holds raft state), or
#   join = ["10.0.0.1:7480", "10.0.0.2:7480"] (HTTP addresses of members) on
#   every other node.
# bootstrap = false
# join = []
# A witness votes in raft but never sends subscriptions.
# witness = false
# Raft voters at most (witnesses count); further nodes are non-voters, and
# the leader promotes a stable one when a voter leaves or stays down for
# 6 x down-after. Set the same value on every node (docs/scaling.md).
# voters = 5
# Single-node cluster on 127.0.0.1 with data in ./hookswitch-data; for trying
# hookswitch out, not for production.
# dev = false

# ---- health and failover ----
# report-interval = "1s"    # node report (heartbeat, counters, cursors) period
# down-after = "5s"         # no committed report for this long: node down
# stable-after = "60s"      # continuously up this long: node stable
# lease = "3s"              # stop sending when the last committed report is older; must be < down-after and > report-interval
# raft-heartbeat-timeout = "1s"
# raft-election-timeout = "1s"

# ---- event log and delivery ----
# retention = "72h"         # events older than this are dropped (and counted)
# retention-bytes = "2GiB"  # event log size limit: bytes, or with KiB/MiB/GiB/TiB
# suspend-after = "24h"     # continuous delivery failure for this long: suspended
# trim-interval = "5s"      # how often the event log is trimmed

# ---- access ----
# CIDRs (comma-separated string or list) that may ingest without a token.
# ingest-allow = "127.0.0.0/8,::1"
# CIDRs that may open a websocket at all.
# ws-allow = "127.0.0.0/8,::1"
# post-url guard: link-local and cloud metadata addresses are refused by
# default; these add denied ranges / allow ranges that are otherwise denied.
# post-url-deny = ""
# post-url-allow = ""

# read-timeout = "10s"      # a request's headers and body must arrive within it
# api-rate = "50:200"       # admin API requests/s per token:burst (super tokens not limited; "0" off)
# ingest-rate = "5000:10000" # ingest requests/s per source address:burst outside ingest-allow

# ---- TLS and cluster secrets (docs/security.md) ----
# tls-cert = ""             # PEM certificate (hookswitch tls issue) for HTTPS, with tls-key
# tls-key = ""
# cluster-ca = ""           # CA (hookswitch tls init): mutual TLS for raft and node-to-node calls
# join-token = ""           # default: /var/lib/hookswitch/join-token (the bootstrap node writes it)
TOML
	mv -f "$CONF.new" "$CONF"
	if [ -z "$DESTDIR" ]; then
		chown "root:$SVC_USER" "$CONF"
	fi
	chmod 0640 "$CONF"
fi

# ---- systemd unit ----------------------------------------------------------------
mkdir -p "$(dirname "$UNIT")"
install -m 0644 scripts/hookswitch.service "$UNIT"
if [ -z "$DESTDIR" ] && command -v systemd-analyze >/dev/null 2>&1; then
	systemd-analyze verify "$UNIT"
fi
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable hookswitch.service
	say "installed and enabled hookswitch.service"
else
	say "installed $UNIT (systemd is not running here: not enabled)"
fi

cat <<MSG

Next:
  1. Edit $CONF: set bootstrap = true on the first node of a new cluster,
     or join = ["<member>:7480"] on the others, with the cluster's join token
     (copy /var/lib/hookswitch/join-token from the bootstrap node, or set join-token).
  2. systemctl start hookswitch && journalctl -u hookswitch -f
  3. On the bootstrap node the root API token is in /var/lib/hookswitch/root-token;
     as root, "hookswitch status" reads it from there.
MSG
