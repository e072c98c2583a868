#!/bin/sh
# Installs portcullis-agent on this host, enrolls it with a Portcullis portal and starts it.
# Served by the portal at /install-agent.sh; the VM page shows the line that runs it:
#
#   export PORTCULLIS_ENROLL_TOKEN=TOKEN; curl -fsSL https://PORTAL/install-agent.sh | sudo --preserve-env=PORTCULLIS_ENROLL_TOKEN sh -s -- --server https://PORTAL
#
# Options:
#   --server URL        the portal (required)
#   --token-file FILE   read the one-time enrollment token from FILE ("-": standard input,
#                       only when this script was saved to a file and run from it: with
#                       "curl | sh" standard input is the script itself)
#   --hostname NAME     the name the agent gives (default: this host's name)
#   --insecure-http     accept plain http:// to another host (the agent's secret then
#                       crosses the network in clear text)
#   --no-systemd        install and enroll only; start the agent yourself
#                       (automatic when systemd is not running)
#   --prefix DIR        install every file under DIR instead of / (for tests and images;
#                       implies --no-systemd; needs no root)
#   --state FILE        the agent's identity file (default /var/lib/portcullis-agent/agent.json)
#
# The token is read from PORTCULLIS_ENROLL_TOKEN unless --token-file is given, and reaches
# the agent through its environment: never the command line of a process, which every
# user of the host can read. Running it again (with a new token) upgrades the binary,
# enrolls again and restarts the agent.
set -eu

# Everything runs from main, called on the last line: when `curl | sh` is cut off
# mid-download, sh has read no complete command and runs nothing.
main() {

download_name=portcullis-agent-linux-x86_64
server=""
token_file=""
hostname=""
insecure=""
systemd=yes
prefix=""
state=""

say() { printf 'install-agent: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --server) [ $# -ge 2 ] || die "--server needs a URL"; server=$2; shift 2 ;;
    --token-file) [ $# -ge 2 ] || die "--token-file needs a file"; token_file=$2; shift 2 ;;
    --hostname) [ $# -ge 2 ] || die "--hostname needs a name"; hostname=$2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --state) [ $# -ge 2 ] || die "--state needs a file"; state=$2; shift 2 ;;
    --insecure-http) insecure=yes; shift ;;
    --no-systemd) systemd=no; shift ;;
    --token) die "--token is not accepted: pass the token in PORTCULLIS_ENROLL_TOKEN or with --token-file FILE" ;;
    -h|--help) sed -n '2,25p' "$0" 2>/dev/null || true; exit 0 ;;
    *) die "unknown option: $1 (see the top of this script)" ;;
  esac
done

[ -n "$server" ] || die "--server URL is required (the portal's address)"
case $server in
  https://*|http://*) ;;
  *) die "--server must start with https:// or http://: $server" ;;
esac
server=${server%/}

# --- checks, before anything is changed ---------------------------------------------------
[ "$(uname -s)" = Linux ] || die "portcullis-agent runs on Linux only (this is $(uname -s))"
case $(uname -m) in
  x86_64|amd64) ;;
  *) die "the portal offers a build for x86_64 only (this host is $(uname -m))" ;;
esac
if [ -z "$prefix" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo): the agent is installed in /usr/bin and manages the firewall"
fi
command -v nft >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
command -v nft >/dev/null 2>&1 || die "nft is not installed: install nftables first (apt-get install nftables, dnf install nftables)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing (coreutils)"
if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsS --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  die "neither curl nor wget is installed"
fi

if [ -n "$token_file" ]; then
  if [ "$token_file" = - ]; then
    [ -t 0 ] && say "reading the enrollment token from standard input"
    token=$(cat)
  else
    [ -r "$token_file" ] || die "cannot read the token file $token_file"
    token=$(cat "$token_file")
  fi
elif [ -n "${PORTCULLIS_ENROLL_TOKEN:-}" ]; then
  token=$PORTCULLIS_ENROLL_TOKEN
else
  die "no enrollment token: create one on the VM's page in the portal and pass it in PORTCULLIS_ENROLL_TOKEN (or with --token-file FILE)"
fi
# Only the agent's enrollment gets it, through its environment.
unset PORTCULLIS_ENROLL_TOKEN

# The unit runs the agent with the default identity file: another one would leave the
# service without its identity.
if [ -n "$state" ] && [ "$systemd" = yes ] && [ -z "$prefix" ]; then
  die "--state FILE needs --no-systemd: the service reads /var/lib/portcullis-agent/agent.json"
fi
if [ -n "$prefix" ]; then
  prefix=${prefix%/}
  systemd=no
  say "installing under $prefix, without systemd"
elif [ "$systemd" = yes ] && { [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; }; then
  systemd=no
  say "systemd is not running here: installing and enrolling only; start the agent yourself"
fi
bin_dir=$prefix/usr/bin
unit_dir=$prefix/etc/systemd/system
[ -n "$state" ] || state=$prefix/var/lib/portcullis-agent/agent.json

# --- download and check -----------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
say "downloading $server/downloads/$download_name"
fetch "$server/downloads/$download_name.sha256" "$tmp/sum" ||
  die "cannot download $server/downloads/$download_name.sha256 (was the server built with the agent download?)"
fetch "$server/downloads/$download_name" "$tmp/agent" ||
  die "cannot download $server/downloads/$download_name"
expected=$(sed -n '1s/^\([0-9a-fA-F]\{64\}\)[ *].*/\1/p' "$tmp/sum" | tr 'A-F' 'a-f')
[ -n "$expected" ] || die "$server/downloads/$download_name.sha256 does not hold a SHA-256"
actual=$(sha256sum "$tmp/agent" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
  rm -f "$tmp/agent"
  die "checksum mismatch: the download has SHA-256 $actual, the server says $expected; nothing was installed"
fi
say "checksum verified ($actual)"

# --- install ----------------------------------------------------------------------------
mkdir -p "$bin_dir"
# Beside the target and renamed over it: a running agent keeps its old file until restart.
cp "$tmp/agent" "$bin_dir/.portcullis-agent.new"
chmod 0755 "$bin_dir/.portcullis-agent.new"
mv -f "$bin_dir/.portcullis-agent.new" "$bin_dir/portcullis-agent"
say "installed $bin_dir/portcullis-agent"

install_unit() {
  mkdir -p "$unit_dir"
  # The canonical copy is deploy/systemd/portcullis-agent.service; a test keeps this one equal.
  cat >"$unit_dir/.portcullis-agent.service.new" <<'PORTCULLIS_UNIT'
# portcullis-agent: applies a VM's just-in-time grants with nftables.
# Installed by the portal's install-agent.sh and by the Debian package: the same file
# (see docs/agent-install.md).
[Unit]
Description=Portcullis agent (just-in-time port access with nftables)
# Started before the network comes up, so the saved state closes the protected ports (and
# puts back the grants still in force) before anything can reach them. The server is
# reached later: the agent retries until it answers.
DefaultDependencies=no
After=local-fs.target
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target
# Installed by the package before the host is enrolled: it starts once it has an identity.
ConditionPathExists=/var/lib/portcullis-agent/agent.json
# Never give up restarting: a host without its agent keeps its ports closed but gets no grants.
StartLimitIntervalSec=0

[Service]
Type=exec
ExecStart=/usr/bin/portcullis-agent run --state /var/lib/portcullis-agent/agent.json
Restart=always
RestartSec=1s
# Root for the ownership of its state files, but with nftables as its only privilege.
User=root
CapabilityBoundingSet=CAP_NET_ADMIN
AmbientCapabilities=
NoNewPrivileges=yes
StateDirectory=portcullis-agent
StateDirectoryMode=0700
UMask=0077
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# No AF_UNIX: as uid 0 it could otherwise ask systemd or D-Bus to run anything as full
# root. It needs only the server (INET) and nftables (NETLINK).
RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
PORTCULLIS_UNIT
  chmod 0644 "$unit_dir/.portcullis-agent.service.new"
  mv -f "$unit_dir/.portcullis-agent.service.new" "$unit_dir/portcullis-agent.service"
  say "installed $unit_dir/portcullis-agent.service"
}
[ "$systemd" = yes ] && install_unit

# --- enroll -----------------------------------------------------------------------------
state_dir=$(dirname "$state")
# Made private only when this script makes it: never chmod a directory that was there.
[ -d "$state_dir" ] || mkdir -p -m 0700 "$state_dir"
set -- enroll --server "$server" --state "$state"
[ -n "$hostname" ] && set -- "$@" --hostname "$hostname"
[ -n "$insecure" ] && set -- "$@" --insecure-http
say "enrolling with $server"
PORTCULLIS_ENROLL_TOKEN=$token "$bin_dir/portcullis-agent" "$@" ||
  die "enrollment failed (a token is valid once, for an hour: create a new one on the VM's page)"
token=""

# --- start ------------------------------------------------------------------------------
if [ "$systemd" = yes ]; then
  systemctl daemon-reload
  systemctl enable portcullis-agent.service >/dev/null
  # A restart, not just a start: a running agent must pick up the new binary and identity.
  systemctl restart portcullis-agent.service
  say "portcullis-agent is running: systemctl status portcullis-agent; journalctl -u portcullis-agent"
else
  run="$bin_dir/portcullis-agent run --state $state"
  say "installed and enrolled. Start the agent (as root, kept running): $run"
fi
}

main "$@"
