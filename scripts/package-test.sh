#!/usr/bin/env bash
# The packages as an operator gets them (`make package-test`, part of `make test`; root):
# inspects the .deb files in target/dist, installs them on this machine, verifies the
# systemd units, starts the installed server as its own user from the installed
# configuration, behind Caddy with TLS as deploy/caddy/Caddyfile sets it up, and checks
# what a user and an agent host reach through it; then purges both packages.
# Fails on the first missing piece; never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist=$root/target/dist

[ "$(id -u)" = 0 ] || { echo "package-test: needs root (dpkg -i)" >&2; exit 1; }
for tool in dpkg-deb systemd-analyze caddy curl readelf setpriv promtool; do
  command -v "$tool" >/dev/null || { echo "package-test: $tool is missing (scripts/setup.sh test)" >&2; exit 1; }
done
server_deb=$(ls "$dist"/portcullis-server_*_amd64.deb 2>/dev/null | head -1)
agent_deb=$(ls "$dist"/portcullis-agent_*_amd64.deb 2>/dev/null | head -1)
[ -n "$server_deb" ] && [ -n "$agent_deb" ] || { echo "package-test: no packages in $dist: run scripts/dist.sh" >&2; exit 1; }
# This installs and then purges: it must not touch a real installation.
for p in portcullis-server portcullis-agent; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    echo "package-test: $p is installed on this machine; run the package test elsewhere" >&2; exit 1
  fi
done

work=$(mktemp -d /tmp/portcullis-package.XXXXXX)
pids=()
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok: $*"; }
bad() { failed=$((failed + 1)); echo "  FAILED: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dpkg --purge portcullis-server portcullis-agent >/dev/null 2>&1 || true
  rm -rf /var/lib/portcullis /var/lib/portcullis-agent /etc/portcullis
  getent passwd portcullis >/dev/null && userdel portcullis 2>/dev/null || true
  getent group portcullis >/dev/null && groupdel portcullis 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # URL [curl options]: up to 20 s
  local url=$1; shift
  for _ in $(seq 200); do curl -fsS -o /dev/null "$@" "$url" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

echo "== the packages"
for deb in "$server_deb" "$agent_deb"; do
  printf '  %s: %s bytes\n' "$(basename "$deb")" "$(stat -c %s "$deb")"
done
dpkg-deb --info "$server_deb" > "$work/server.info"
dpkg-deb --contents "$server_deb" | awk '{print $6}' > "$work/server.contents"
dpkg-deb --info "$agent_deb" > "$work/agent.info"
dpkg-deb --contents "$agent_deb" | awk '{print $6}' > "$work/agent.contents"
has() { grep -qx "$2" "$1"; }
# The bundle's content-hashed names, from the hash.txt the package ships.
dpkg-deb --fsys-tarfile "$server_deb" | tar -xOf - ./usr/share/portcullis/site/hash.txt > "$work/hash.txt" \
  || { bad "server package holds the bundle's hash.txt"; exit 1; }
hashed() { echo "portcullis.$(awk -v ext="$1:" '$1 == ext {print $2}' "$work/hash.txt").$1"; }
wasm=$(hashed wasm)
check "server package depends on adduser" grep -q "Depends:.*adduser" "$work/server.info"
check "server package recommends tzdata" grep -q "Recommends:.*tzdata" "$work/server.info"
check "agent package depends on nftables" grep -q "Depends:.*nftables" "$work/agent.info"
for path in ./usr/bin/portcullis-server ./etc/portcullis/portcullis.toml \
  "./usr/share/portcullis/site/pkg/$wasm" "./usr/share/portcullis/site/pkg/$(hashed js)" \
  "./usr/share/portcullis/site/pkg/$(hashed css)" "./usr/share/portcullis/site/pkg/$wasm.br" \
  "./usr/share/portcullis/site/pkg/$wasm.gz" ./usr/share/portcullis/site/hash.txt \
  ./usr/share/portcullis/site/downloads/portcullis-agent-linux-x86_64 \
  ./usr/share/portcullis/site/downloads/portcullis-agent-linux-x86_64.sha256 \
  ./usr/share/doc/portcullis-server/Caddyfile; do
  check "server package holds $path" has "$work/server.contents" "$path"
done
check "server package holds its unit" grep -Eq '^\./(usr/)?lib/systemd/system/portcullis-server\.service$' "$work/server.contents"
check "agent package holds /usr/bin/portcullis-agent" has "$work/agent.contents" ./usr/bin/portcullis-agent
check "agent package holds its unit" grep -Eq '^\./(usr/)?lib/systemd/system/portcullis-agent\.service$' "$work/agent.contents"
dpkg-deb -x "$agent_deb" "$work/agent-root"
check "the packaged agent is a static binary (no ELF interpreter)" \
  bash -c "! readelf -l '$work/agent-root/usr/bin/portcullis-agent' | grep -q 'program interpreter'"

echo "== installed"
dpkg -i "$server_deb" "$agent_deb" > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; bad "dpkg -i"; exit 1; }
ok "dpkg -i of both packages"
user_exists() { getent passwd "$1" >/dev/null; }
check "a system user 'portcullis' exists" user_exists portcullis
check "its data directory is its own, mode 0750" \
  test "$(stat -c '%U %a' /var/lib/portcullis)" = "portcullis 750"
check "the session key is made once, readable only by root and the service" \
  test "$(stat -c '%U:%G %a' /etc/portcullis/secrets.env)" = "root:portcullis 640"
check "the configuration is readable by the service only" \
  test "$(stat -c '%U:%G %a' /etc/portcullis/portcullis.toml)" = "root:portcullis 640"
check "the configuration is a conffile (kept on upgrade)" \
  bash -c "dpkg-query -W -f='\${Conffiles}' portcullis-server | grep -q /etc/portcullis/portcullis.toml"
server_unit=$(dpkg -L portcullis-server | grep 'systemd/system/portcullis-server.service$')
agent_unit=$(dpkg -L portcullis-agent | grep 'systemd/system/portcullis-agent.service$')
check "systemd-analyze verify on both units" systemd-analyze verify "$server_unit" "$agent_unit"
for d in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
  StateDirectory=portcullis ReadWritePaths=/var/lib/portcullis 'CapabilityBoundingSet=' User=portcullis; do
  check "server unit: $d" grep -qx "$d" "$server_unit"
done
check "agent unit: only CAP_NET_ADMIN" grep -qx 'CapabilityBoundingSet=CAP_NET_ADMIN' "$agent_unit"
check "agent unit: before the network comes up" grep -Eq '^Before=(.* )?network-pre.target( |$)' "$agent_unit"
check "installed server --version" bash -c "/usr/bin/portcullis-server --version | grep -q '[0-9]\.[0-9]'"

echo "== the installed server, as its user, from the installed configuration, behind Caddy"
port=$(free_port)
tls_port=$(free_port)
http_port=$(free_port)
public=https://localhost:$tls_port
# shellcheck disable=SC1091
session_key=$(. /etc/portcullis/secrets.env && echo "$PORTCULLIS_SESSION_KEY")
metrics_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(cd /var/lib/portcullis && exec setpriv --reuid portcullis --regid portcullis --init-groups -- env -i PATH=/usr/bin:/bin \
  PORTCULLIS_SESSION_KEY="$session_key" PORTCULLIS_LISTEN="127.0.0.1:$port" \
  PORTCULLIS_PUBLIC_URL="$public" PORTCULLIS_METRICS_TOKEN="$metrics_token" \
  /usr/bin/portcullis-server --config /etc/portcullis/portcullis.toml) > "$work/server.log" 2>&1 &
pids+=($!)
if ! wait_for "http://127.0.0.1:$port/healthz"; then
  cat "$work/server.log"; bad "the installed server starts"; exit 1
fi
ok "the installed server starts as 'portcullis' with /etc/portcullis/portcullis.toml"
check "its database is in /var/lib/portcullis, owned by it" \
  test "$(stat -c %U /var/lib/portcullis/portcullis.db)" = portcullis
check "its audit key is beside it, mode 0600" \
  test "$(stat -c '%U %a' /var/lib/portcullis/portcullis.db.audit-key)" = "portcullis 600"
no_colour() { ! grep -q $'\x1b' "$1"; }
check "the log in a file has no colour codes" no_colour "$work/server.log"
password=$(sed -n 's/.*one_time_password=\([^ ]*\).*/\1/p' "$work/server.log" | head -1)
check "the one-time administrator password is greppable in the log" test -n "$password"

mkdir -p "$work/caddy"
cat > "$work/Caddyfile" <<EOF
{
	admin off
	skip_install_trust
	local_certs
	http_port $http_port
	https_port $tls_port
	storage file_system {
		root $work/caddy
	}
}
localhost:$tls_port {
	reverse_proxy 127.0.0.1:$port
}
EOF
caddy run --config "$work/Caddyfile" --adapter caddyfile > "$work/caddy.log" 2>&1 &
pids+=($!)
ca=$work/caddy/pki/authorities/local/root.crt
for _ in $(seq 200); do [ -s "$ca" ] && break; sleep 0.1; done
if ! wait_for "$public/healthz" --cacert "$ca"; then
  cat "$work/caddy.log"; bad "Caddy serves the portal over TLS"; exit 1
fi
ok "Caddy serves the portal over TLS"
tls() { curl -sS --cacert "$ca" "$@"; }
check "the sign-in page comes through the proxy" \
  bash -c "curl -sS --cacert '$ca' '$public/login' | grep -q 'action=\"/api/login\"'"
check "the page loads the packaged bundle by its hashed name" \
  bash -c "curl -sS --cacert '$ca' '$public/login' | grep -qF '/pkg/$wasm'"
check "the bundle the page loads is the packaged one" \
  test "$(tls "$public/pkg/$wasm" | wc -c)" = "$(stat -c %s "/usr/share/portcullis/site/pkg/$wasm")"
check "the hashed bundle is cached for good" \
  bash -c "curl -sS -o /dev/null -D - --cacert '$ca' '$public/pkg/$wasm' | grep -iq '^cache-control: .*immutable'"
tls -o "$work/agent-download" "$public/downloads/portcullis-agent-linux-x86_64"
expected=$(tls "$public/downloads/portcullis-agent-linux-x86_64.sha256" | awk '{print $1}')
check "the agent download matches its published SHA-256" \
  test "$(sha256sum "$work/agent-download" | awk '{print $1}')" = "$expected"
check "the install script is served" \
  bash -c "curl -fsS --cacert '$ca' '$public/install-agent.sh' | head -1 | grep -q '^#!/bin/sh'"
# Signing in through the proxy: the origin users type (public_url) is accepted, and the
# session cookie is Secure because that origin is https.
tls -o "$work/login.json" -D "$work/login.headers" -X POST "$public/api/login" \
  -H "Origin: $public" --data-urlencode username=admin --data-urlencode "password=$password"
check "the administrator signs in through the proxy" grep -q "^HTTP/[0-9.]* 200" "$work/login.headers"
check "the session cookie is Secure" grep -iq "^set-cookie: portcullis_session=.*; *secure" "$work/login.headers"
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/api/login" \
  -H "Origin: http://127.0.0.1:$port" --data-urlencode username=admin --data-urlencode "password=$password")
check "a form posted from another origin than public_url is refused ($status)" test "$status" = 403
tls -o "$work/metrics.txt" -H "Authorization: Bearer $metrics_token" "$public/metrics"
check "/metrics through the proxy, with its token, passes promtool check metrics" \
  bash -c "grep -q '^portcullis_build_info' '$work/metrics.txt' && promtool check metrics < '$work/metrics.txt'"
# Without --config: a host command on a packaged host reads /etc/portcullis/portcullis.toml.
check "verify-log from the installed layout (its configuration found) says the log is intact" \
  bash -c "cd /var/lib/portcullis && setpriv --reuid portcullis --regid portcullis --init-groups -- env -i PATH=/usr/bin:/bin /usr/bin/portcullis-server verify-log | grep -q intact"

echo "== purged"
# As an enrolled host would have it: the agent's identity (purging removes it).
mkdir -p -m 0700 /var/lib/portcullis-agent && echo '{}' > /var/lib/portcullis-agent/agent.json
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()
dpkg --purge portcullis-server portcullis-agent > "$work/purge.log" 2>&1 || { cat "$work/purge.log"; bad "dpkg --purge"; }
check "the binaries are gone" bash -c "[ ! -e /usr/bin/portcullis-server ] && [ ! -e /usr/bin/portcullis-agent ]"
check "the session key is gone" test ! -e /etc/portcullis/secrets.env
check "the activity log stays for the operator" test -e /var/lib/portcullis/portcullis.db
check "the agent's identity directory is gone" test ! -e /var/lib/portcullis-agent

echo "package-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
