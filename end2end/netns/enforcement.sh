#!/usr/bin/env bash
# Enforcement test in network namespaces (needs root): a "vm" namespace runs the server,
# portcullis-agent and a TCP listener on port 22; "client" namespaces at 198.51.100.10
# (and 2001:db8:1::10) and 203.0.113.7 try to connect. A second VM namespace (192.0.2.2)
# installs its agent with the portal's one-line installer. Only documentation addresses,
# only inside namespaces this script creates; everything is removed at exit.
#
# The installer downloads the agent from the server's site root: the release build puts
# it in $PORTCULLIS_SITE_ROOT_TEST/downloads/ (portcullis-agent-linux-x86_64 and its
# .sha256). This script never puts it there itself; it fails when it is missing.
set -euo pipefail
mode=${1:-test}
root=$(cd "$(dirname "$0")/../.." && pwd)
server_bin=${PORTCULLIS_BIN:-$root/target/debug/portcullis-server}
agent_bin=${PORTCULLIS_AGENT_BIN:-$root/target/debug/portcullis-agent}
site=${PORTCULLIS_SITE_ROOT_TEST:-$root/target/site}
port=18080
base="http://127.0.0.1:$port"
work=$(mktemp -d)
vm=pc-vm-$$ c1=pc-c1-$$ c2=pc-c2-$$ vm2=pc-vm2-$$
passed=0 failed=0
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for ns in "$vm" "$c1" "$c2" "$vm2"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then echo "enforcement tests need root (ip netns, nft)" >&2; exit 1; fi
download=$site/downloads/portcullis-agent-linux-x86_64
if [ "$mode" = test ] && ! { [ -f "$download" ] && [ -f "$download.sha256" ]; }; then
  echo "the agent download is missing: $download and $download.sha256 (the release build puts them in the site root)" >&2
  exit 1
fi

ok() { echo "  ✓ $*"; passed=$((passed + 1)); }
bad() { echo "  ✗ $*"; failed=$((failed + 1)); }
in_vm() { ip netns exec "$vm" "$@"; }

# --- network ---------------------------------------------------------------------------
for ns in "$vm" "$c1" "$c2" "$vm2"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add vm1-$$ netns "$vm" type veth peer name c1-$$ netns "$c1"
ip link add vm2-$$ netns "$vm" type veth peer name c2-$$ netns "$c2"
# The second VM reaches the portal (in the first) at 192.0.2.1.
ip link add vm3-$$ netns "$vm" type veth peer name n2-$$ netns "$vm2"
ip -n "$vm" addr add 192.0.2.1/24 dev vm3-$$
ip -n "$vm2" addr add 192.0.2.2/24 dev n2-$$
ip -n "$vm" link set vm3-$$ up; ip -n "$vm2" link set n2-$$ up
ip -n "$vm" addr add 198.51.100.1/24 dev vm1-$$
ip -n "$vm" addr add 2001:db8:1::1/64 dev vm1-$$ nodad
ip -n "$vm" addr add 203.0.113.1/24 dev vm2-$$
ip -n "$c1" addr add 198.51.100.10/24 dev c1-$$
ip -n "$c1" addr add 2001:db8:1::10/64 dev c1-$$ nodad
ip -n "$c2" addr add 203.0.113.7/24 dev c2-$$
for l in "$vm vm1-$$" "$vm vm2-$$" "$c1 c1-$$" "$c2 c2-$$"; do set -- $l; ip -n "$1" link set "$2" up; done

# A TCP "SSH" listener on port 22 (IPv4 and IPv6) in each VM.
listener='
import socket, threading
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 22)); s.listen(64)
while True:
    c, _ = s.accept(); c.sendall(b"SSH-2.0-portcullis-test\r\n"); c.close()
'
ip netns exec "$vm" python3 -c "$listener" & pids+=($!)
ip netns exec "$vm2" python3 -c "$listener" & pids+=($!)

# can CLIENT_NS ADDR: does a TCP connection to port 22 succeed within 0.5 s?
can() { ip netns exec "$1" timeout 0.5 bash -c "exec 3<>/dev/tcp/$2/22" 2>/dev/null; }
# wait_until SECONDS CMD...: poll every 50 ms; prints the milliseconds it took.
wait_until() {
  local limit=$1; shift; local start=$(date +%s%3N)
  while true; do
    if "$@"; then echo $(( $(date +%s%3N) - start )); return 0; fi
    (( $(date +%s%3N) - start > limit * 1000 )) && return 1
    sleep 0.05
  done
}
closed() { ! can "$@"; }

# --- portal ----------------------------------------------------------------------------
# A fixed session key: sign-ins survive the server restarts below.
session_key=$(head -c 64 /dev/urandom | base64 -w0)
start_server() {
  ip netns exec "$vm" env PORTCULLIS_LISTEN=0.0.0.0:$port PORTCULLIS_DATABASE_URL="sqlite://$work/portal.db" \
    PORTCULLIS_SESSION_KEY="$session_key" \
    PORTCULLIS_SITE_ROOT="$site" PORTCULLIS_LOG_FORMAT=json "$server_bin" >>"$work/server.log" 2>&1 &
  server_pid=$!; pids+=($server_pid)
  wait_until 20 in_vm curl -sf "$base/healthz" -o /dev/null >/dev/null || { cat "$work/server.log"; exit 1; }
}
start_server
password=$(grep -o '"one_time_password":"[^"]*"' "$work/server.log" | head -1 | cut -d'"' -f4)
jar="$work/cookies"
call_at() { # call_at PORTAL JAR NAME key=value... (always a POST, also without arguments)
  local at=$1 jar=$2 name=$3; shift 3; local args=(--data "")
  for kv in "$@"; do args+=(--data-urlencode "$kv"); done
  in_vm curl -s -b "$jar" -c "$jar" -H "Origin: $at" "${args[@]}" "$at/api/$name"
}
call_as() { call_at "$base" "$@"; }
call() { call_as "$jar" "$@"; }
call login username=admin "password=$password" >/dev/null
call change_password "current_password=$password" "new_password=enforcement test passphrase" \
  "confirm_password=enforcement test passphrase" >/dev/null
vm_id=$(call save_vm id= name=ns-vm group=test os=linux addresses=198.51.100.1 exposed_ports= | jq -r .)
call enable_jit "vm_ids[0]=$vm_id" "rules[0][enabled]=on" "rules[0][port]=22" "rules[0][protocol]=tcp" \
  "rules[0][max_minutes]=60" >/dev/null
token=$(call create_enrollment_token "vm_id=$vm_id" | jq -r '.token')

# The token goes in the environment: the agent refuses it in its arguments (ps shows those).
PORTCULLIS_ENROLL_TOKEN=$token in_vm "$agent_bin" enroll --server "$base" --hostname ns-vm --state "$work/agent.json" >/dev/null
start_agent() { ip netns exec "$vm" "$agent_bin" run --state "$work/agent.json" >>"$work/agent.log" 2>&1 & agent_pid=$!; pids+=($agent_pid); }
start_agent
applied() { call get_vm "id=$vm_id" | jq -e '.vm.agent_status | startswith("Enforced")' >/dev/null; }
wait_until 10 applied >/dev/null || { bad "agent never applied the policy"; cat "$work/agent.log"; exit 1; }
request() { # request SOURCE MINUTES [JAR] [VM ID] -> request id
  local out target=${4:-$vm_id}
  out=$(call_as "${3:-$jar}" request_access "vm_ids[0]=$target" "ports[0]=$target:22/tcp" source_mode=custom \
    "custom_source=$1" "duration=$2" justification=enforcement-test)
  jq -er '.[0]' <<<"$out" 2>/dev/null || { echo "request from $1 refused: $out" >&2; return 1; }
}
policy() { # policy ALLOWED_SOURCES: port 22/tcp, 60 minutes at most
  call enable_jit "vm_ids[0]=$vm_id" "rules[0][enabled]=on" "rules[0][port]=22" "rules[0][protocol]=tcp" \
    "rules[0][allowed_sources]=$1" "rules[0][max_minutes]=60" >/dev/null
}
# Seconds the kernel still gives the grant of 198.51.100.10 (or of SOURCE in SET) on port 22
# (0 when none).
kernel_left() { # kernel_left [SET SOURCE]
  in_vm nft -j list set inet portcullis "${1:-hosts4}" 2>/dev/null | jq --arg src "${2:-198.51.100.10}" \
    '[.nftables[] | .set? | select(.) | .elem[]? | select(.elem.val.concat[0] == $src) | .elem.expires] | max // 0'
}

if [ "$mode" = bench ]; then
  # Figures, not a test: time from the request call returning to the port accepting a
  # connection, over N requests, idle and with 1,000 idle agents long-polling.
  n=${BENCH_REQUESTS:-200}
  mkfifo "$work/probe.in" "$work/probe.out"
  ip netns exec "$c1" python3 "$root/end2end/netns/prober.py" <"$work/probe.in" >"$work/probe.out" & pids+=($!)
  exec 7>"$work/probe.in" 8<"$work/probe.out"
  measure() {
    local times=()
    for _ in $(seq 1 "$n"); do
      local r; r=$(request 198.51.100.10 10)
      echo "198.51.100.1 22" >&7; local ms; read -r ms <&8; times+=("$ms")
      call revoke_request "id=$r" >/dev/null
      wait_until 5 closed "$c1" 198.51.100.1 >/dev/null
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v label="$1" '{a[NR]=$1} END {
      printf "%-34s n=%d  median %.1f ms  p99 %.1f ms  max %.1f ms\n", label, NR, a[int((NR+1)/2)], a[int(NR*0.99+0.999)], a[NR] }'
  }
  measure "request -> port open (idle)"
  idle=${BENCH_IDLE_AGENTS:-1000}
  : >"$work/bearers"
  for i in $(seq 1 "$idle"); do
    out=$(call save_vm id= "name=idle-$i" group=idle os=linux addresses=198.51.100.2 exposed_ports=)
    id=$(jq -r . <<<"$out" 2>/dev/null) || { echo "creating idle-$i failed: $out" >&2; exit 1; }
    out=$(call create_enrollment_token "vm_id=$id")
    t=$(jq -r '.token' <<<"$out" 2>/dev/null) || { echo "token for idle-$i failed: $out" >&2; exit 1; }
    out=$(in_vm curl -s -H 'Content-Type: application/json' -d "{\"token\":\"$t\",\"hostname\":\"idle-$i\"}" "$base/agent/v1/enroll")
    jq -r '.agent_id + "." + .secret' <<<"$out" >>"$work/bearers" 2>/dev/null || { echo "enrolling idle-$i failed: $out" >&2; exit 1; }
  done
  ip netns exec "$vm" python3 "$root/end2end/netns/idle_agents.py" "$work/bearers" "$port" & pids+=($!)
  sleep 3
  measure "request -> port open ($idle idle agents)"
  agent_rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent_pid/status")
  server_rss=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
  echo "agent resident memory: $((agent_rss / 1024)) MiB ($agent_rss KiB); server: $((server_rss / 1024)) MiB"
  exit 0
fi

echo "enforcement in network namespaces"
if closed "$c1" 198.51.100.1 && closed "$c2" 203.0.113.1; then ok "port 22 closed after JIT is enabled"; else bad "port 22 open without a grant"; fi

r1=$(request 198.51.100.10 10)
if ms=$(wait_until 5 can "$c1" 198.51.100.1); then ok "opened for 198.51.100.10 in ${ms} ms after the request returned"; else bad "not opened for the requester"; fi
if closed "$c2" 203.0.113.1; then ok "still closed for 203.0.113.7"; else bad "opened for a source that was not granted"; fi

call revoke_request "id=$r1" >/dev/null
if ms=$(wait_until 2 closed "$c1" 198.51.100.1); then ok "closed ${ms} ms after revoke"; else bad "still open after revoke"; fi

r6=$(request 2001:db8:1::10 10)
if ms=$(wait_until 5 can "$c1" 2001:db8:1::1); then ok "IPv6 grant opened for 2001:db8:1::10 in ${ms} ms"; else bad "IPv6 grant did not open"; fi
if closed "$c1" 198.51.100.1; then ok "the IPv6 grant did not open IPv4"; else bad "IPv4 open under an IPv6 grant"; fi
call revoke_request "id=$r6" >/dev/null
wait_until 2 closed "$c1" 2001:db8:1::1 >/dev/null && ok "IPv6 grant closed after revoke" || bad "IPv6 still open after revoke"

# Restarting the agent keeps an active grant open without a gap.
r2=$(request 198.51.100.10 10)
wait_until 5 can "$c1" 198.51.100.1 >/dev/null
gap=0
kill -9 "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
for _ in $(seq 1 10); do can "$c1" 198.51.100.1 || gap=1; sleep 0.1; done
start_agent
for _ in $(seq 1 20); do can "$c1" 198.51.100.1 || gap=1; sleep 0.1; done
if [ $gap = 0 ]; then ok "agent restart: the grant stayed open throughout"; else bad "agent restart closed an active grant"; fi
call revoke_request "id=$r2" >/dev/null
wait_until 2 closed "$c1" 198.51.100.1 >/dev/null

# Access ends when its authority ends: disabling the requester closes the port at once.
rjar="$work/rita.jar"
out=$(call create_user username=rita display_name=Rita "password=second enforcement passphrase" \
  role=requester scope_kind=all scope_target=)
jq -e 'type == "string"' <<<"$out" >/dev/null || { echo "creating rita failed: $out" >&2; exit 1; }
out=$(call_as "$rjar" login username=rita "password=second enforcement passphrase")
[ "$out" = null ] || { echo "rita's sign-in failed: $out" >&2; exit 1; }
rita_id=$(call list_users | jq -r '.[] | select(.username == "rita") | .id')
request 198.51.100.10 10 "$rjar" >/dev/null
wait_until 5 can "$c1" 198.51.100.1 >/dev/null || bad "rita's grant did not open"
out=$(call set_user_disabled "user_id=$rita_id" disabled=true)
[ "$out" = null ] || bad "disabling rita failed: $out"
if ms=$(wait_until 2 closed "$c1" 198.51.100.1); then ok "disabling the requester closed the port in ${ms} ms"
else bad "port still open after the requester was disabled"; in_vm nft list table inet portcullis; fi

# A policy edit that puts the source outside the allowed prefixes closes the port.
request 198.51.100.10 10 >/dev/null
wait_until 5 can "$c1" 198.51.100.1 >/dev/null || bad "grant before the policy edit did not open"
policy 203.0.113.0/24
if ms=$(wait_until 2 closed "$c1" 198.51.100.1); then ok "editing the policy (source no longer allowed) closed the port in ${ms} ms"
else bad "port still open after the policy no longer allows its source"; fi
policy ""

# A reboot: the kernel forgets the table; the agent restarts with the server down and puts
# back the closed port and the grant still in force, with its remaining time.
request 198.51.100.10 10 >/dev/null
wait_until 5 can "$c1" 198.51.100.1 >/dev/null || bad "grant before the reboot did not open"
sleep 0.5
left_before=$(kernel_left)
kill -9 "$agent_pid" "$server_pid"; wait "$agent_pid" "$server_pid" 2>/dev/null || true
in_vm nft flush ruleset
if can "$c2" 203.0.113.1; then ok "after the flush the port is open to everyone (what a reboot leaves)"
else bad "the flush did not open the port: this check would prove nothing"; fi
start_agent
if ms=$(wait_until 3 closed "$c2" 203.0.113.1); then ok "agent restarted without a server closed the port again in ${ms} ms"
else bad "port open to everyone after the agent restarted without a server"; fi
if can "$c1" 198.51.100.1; then ok "the unexpired grant came back"; else bad "the unexpired grant was lost"; fi
left_after=$(kernel_left)
if (( left_after > 0 && left_after <= left_before && left_before - left_after < 10 )); then
  ok "it came back with its remaining time (${left_after} s left, ${left_before} s before the reboot)"
else bad "remaining time after the reboot: ${left_after} s (before: ${left_before} s)"; fi
sleep 3
start_server
# The agent retried every second or so while the server was down: the first grant after
# the restart opens at once, not after a long back-off.
request 2001:db8:1::10 10 >/dev/null
if ms=$(wait_until 3 can "$c1" 2001:db8:1::1); then ok "first grant after the server came back opened in ${ms} ms"
else bad "first grant after the server came back did not open within 3 s"; fi
wait_until 10 applied >/dev/null || bad "agent did not reconnect after the server came back"

# Removing the policy removes the agent's table.
call remove_policy "vm_id=$vm_id" >/dev/null
if ms=$(wait_until 3 bash -c "! ip netns exec $vm nft list table inet portcullis >/dev/null 2>&1"); then
  ok "removing the policy removed the agent's table in ${ms} ms"
else bad "the agent's table outlived the policy"; fi
policy ""
wait_until 10 applied >/dev/null || bad "agent did not apply the policy again"

# Changes in quick succession (each grant is a new generation), faster than the one report
# a second the server takes: the
# first is reported at once, the second is refused and waits to be retried, and the third
# arrives meanwhile. It replaces the second and is reported (an agent that took the third
# as seen and waited for a fourth left the portal saying "waiting for the agent").
sleep 1.2
for source in 198.51.100.21 198.51.100.22 198.51.100.23; do request "$source" 10 >/dev/null; done
if ms=$(wait_until 10 applied); then ok "after three quick grants the agent reported the last one in ${ms} ms"
else bad "after three quick grants the portal still waits for the agent: $(call get_vm "id=$vm_id" | jq -r .vm.agent_status)"; fi

# A window booked ahead (for the IPv6 source) stays closed until its start, opens then and
# closes at its end: the kernel's timeout covers the window only. Its minute runs alongside
# the fail-closed minute below, so it also closes with the server down.
start_s=$(( $(date +%s) + 5 ))
start_txt=$(date -u -d "@$start_s" +%Y-%m-%dT%H:%M:%S)
out=$(call request_access "vm_ids[0]=$vm_id" "ports[0]=$vm_id:22/tcp" source_mode=custom \
  custom_source=2001:db8:1::10 duration=1 justification=enforcement-test "start=$start_txt")
jq -er '.[0]' <<<"$out" >/dev/null || bad "booking a window for $start_txt was refused: $out"
early=0
while (( $(date +%s%3N) < start_s * 1000 - 700 )); do can "$c1" 2001:db8:1::1 && early=1; sleep 0.3; done
if [ $early = 0 ]; then ok "a window booked for ${start_txt}Z stayed closed before its start"
else bad "the booked window opened before its start"; fi
if wait_until 5 can "$c1" 2001:db8:1::1 >/dev/null; then
  late=$(( $(date +%s%3N) - start_s * 1000 ))
  if (( late <= 1500 )); then ok "the booked window opened ${late} ms after its start"
  else bad "the booked window opened ${late} ms after its start"; fi
else bad "the booked window did not open at its start"; fi
sched_end=$(( start_s * 1000 + 60000 ))
sched_left=$(kernel_left hosts6 2001:db8:1::10)
if (( sched_left > 0 && sched_left <= 60 )); then ok "the kernel holds it for the window only (${sched_left} s left)"
else bad "the kernel holds the booked window for ${sched_left} s, not its minute"; fi

# Fail closed: a one-minute grant, then the server is killed; the kernel still closes it.
# Three seconds after the booked window opened, so that the two ends (each on a whole
# second) are checked one after the other.
sleep 3
r3=$(request 198.51.100.10 1)
end=$(( $(date +%s%3N) + 60000 ))
wait_until 5 can "$c1" 198.51.100.1 >/dev/null && ok "one-minute grant open" || bad "one-minute grant did not open"
kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
sleep 1
if can "$c1" 198.51.100.1; then ok "server killed: the grant stays until its end"; else bad "grant closed early when the server died"; fi
while (( $(date +%s%3N) < sched_end - 1500 )); do sleep 0.5; done
if can "$c1" 2001:db8:1::1; then ok "the booked window is still open 1.5 s before its end"; else bad "the booked window closed before its end"; fi
if wait_until 6 closed "$c1" 2001:db8:1::1 >/dev/null; then
  late=$(( $(date +%s%3N) - sched_end ))
  if (( late <= 1000 )); then ok "the booked window closed ${late} ms after its end"; else bad "the booked window closed ${late} ms after its end"; fi
else bad "the booked window is open after its end"; fi
while (( $(date +%s%3N) < end - 1500 )); do sleep 0.5; done
if can "$c1" 198.51.100.1; then ok "still open 1.5 s before the end"; else bad "closed before the end"; fi
if ms=$(wait_until 6 closed "$c1" 198.51.100.1); then
  late=$(( $(date +%s%3N) - end ))
  if (( late <= 1000 )); then ok "closed ${late} ms after the end, with the server down"; else bad "closed ${late} ms after the end"; fi
else bad "open after the end with the server down"; fi

# Removing the VM: the server refuses its agent, which withdraws every grant.
start_server
request 198.51.100.10 10 >/dev/null
wait_until 5 can "$c1" 198.51.100.1 >/dev/null || bad "grant before removing the VM did not open"
call delete_vm "id=$vm_id" >/dev/null
if ms=$(wait_until 3 closed "$c1" 198.51.100.1); then ok "removing the VM closed its port in ${ms} ms (the refused agent withdrew its grants)"
else bad "port still open after its VM was removed"; fi
if closed "$c2" 203.0.113.1; then ok "the port stays closed for everyone else"; else bad "port open to everyone after its VM was removed"; fi

# The one-line installer, in the second VM: the line the VM page shows for a portal reached
# at http://192.0.2.1:$port (so it says --insecure-http), run as root (no sudo here), with
# --no-systemd (no systemd in a namespace) and --prefix (this machine's /usr/bin stays as it is).
portal2=http://192.0.2.1:$port
vm2_id=$(call save_vm id= name=ns-vm2 group=test os=linux addresses=192.0.2.2 exposed_ports= | jq -r .)
call enable_jit "vm_ids[0]=$vm2_id" "rules[0][enabled]=on" "rules[0][port]=22" "rules[0][protocol]=tcp" \
  "rules[0][max_minutes]=60" >/dev/null
jar2="$work/portal2.jar"
call_at "$portal2" "$jar2" login username=admin "password=enforcement test passphrase" >/dev/null
shown=$(call_at "$portal2" "$jar2" create_enrollment_token "vm_id=$vm2_id")
line=$(jq -r .command <<<"$shown")
token2=$(jq -r .token <<<"$shown")
if [ "$line" = "export PORTCULLIS_ENROLL_TOKEN=$token2; curl -fsSL $portal2/install-agent.sh | sudo --preserve-env=PORTCULLIS_ENROLL_TOKEN sh -s -- --server $portal2 --insecure-http" ]
then ok "the VM page shows the one-line install for $portal2"; else bad "unexpected install line: $shown"; fi
root2=$work/vm2-root
if ip netns exec "$vm2" sh -c "${line/| sudo --preserve-env=PORTCULLIS_ENROLL_TOKEN /| } --no-systemd --prefix $root2" >"$work/install.log" 2>&1 \
  && cmp -s "$download" "$root2/usr/bin/portcullis-agent" && [ -x "$root2/usr/bin/portcullis-agent" ]
then ok "the one-line installer downloaded, checked and installed the agent and enrolled it"
else bad "the one-line installer failed"; cat "$work/install.log"; fi
grep -q "checksum verified" "$work/install.log" || bad "the installer did not verify the checksum"
state2=$root2/var/lib/portcullis-agent/agent.json
# Started as deploy/systemd/portcullis-agent.service starts it: root with CAP_NET_ADMIN as
# its only capability and no new privileges, without --insecure-http (the enrollment
# recorded it).
ip netns exec "$vm2" setpriv --bounding-set -all,+net_admin --inh-caps=-all --no-new-privs \
  "$root2/usr/bin/portcullis-agent" run --state "$state2" >>"$work/agent2.log" 2>&1 & agent2_pid=$!; pids+=($agent2_pid)
applied2() { call get_vm "id=$vm2_id" | jq -e '.vm.agent_status | startswith("Enforced")' >/dev/null; }
if ms=$(wait_until 10 applied2); then ok "the installed agent, with CAP_NET_ADMIN only, applied its VM's policy in ${ms} ms"
else bad "the installed agent never applied the policy"; cat "$work/agent2.log"; fi
if ! tr '\0' ' ' <"/proc/$agent2_pid/cmdline" | grep -q "$token2" && ! tr '\0' '\n' <"/proc/$agent2_pid/environ" | grep -q "$token2"
then ok "the running agent has the token in neither its arguments nor its environment"
else bad "the enrollment token is visible in the running agent"; fi
if closed "$vm" 192.0.2.2; then ok "the installed agent closed port 22 of the second VM"; else bad "port 22 of the second VM open without a grant"; fi
r4=$(request 192.0.2.1 10 "$jar" "$vm2_id")
if ms=$(wait_until 5 can "$vm" 192.0.2.2); then ok "a grant opened port 22 of the second VM in ${ms} ms"; else bad "the grant did not open the second VM's port"; fi
call revoke_request "id=$r4" >/dev/null
if ms=$(wait_until 2 closed "$vm" 192.0.2.2); then ok "revoking closed it again in ${ms} ms"; else bad "the second VM's port still open after revoke"; fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
