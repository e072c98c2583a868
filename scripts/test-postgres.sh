#!/usr/bin/env bash
# Prints the URL of a PostgreSQL server on which the test suites may create databases.
#   scripts/test-postgres.sh          find or start one, print its URL
#   scripts/test-postgres.sh cleanup  drop the databases the suites created
# Order: $PORTCULLIS_TEST_POSTGRES if set; a server on 127.0.0.1:5432; else Debian's
# `postgresql` (installed if missing) as a throwaway cluster under /tmp on port 55432.
set -euo pipefail
say() { printf '\033[1mtest-postgres:\033[0m %s\n' "$*" >&2; }

THROWAWAY_DIR=${PORTCULLIS_PG_DIR:-/tmp/portcullis-test-pg}
THROWAWAY_PORT=55432

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "test-postgres: need root to run: $*" >&2; exit 1; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

ensure_client() {
  command -v psql >/dev/null && return
  say "installing Debian's postgresql"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

find_server() {
  if [ -n "${PORTCULLIS_TEST_POSTGRES:-}" ]; then echo "$PORTCULLIS_TEST_POSTGRES"; return; fi
  if port_open 5432; then echo "postgres://postgres@127.0.0.1:5432/postgres"; return; fi
  if port_open "$THROWAWAY_PORT"; then echo "postgres://postgres@127.0.0.1:$THROWAWAY_PORT/postgres"; return; fi
  ensure_client
  local bin; bin=$(pg_bin)
  [ -n "$bin" ] || { say "no PostgreSQL server binaries found"; exit 1; }
  say "starting a throwaway cluster in $THROWAWAY_DIR on port $THROWAWAY_PORT"
  rm -rf "$THROWAWAY_DIR"; mkdir -p "$THROWAWAY_DIR"
  local run=()
  # initdb refuses to run as root.
  if [ "$(id -u)" = 0 ]; then chown nobody "$THROWAWAY_DIR"; run=(runuser -u nobody --); fi
  "${run[@]}" "$bin/initdb" -D "$THROWAWAY_DIR/data" -U postgres -A trust --no-sync >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$THROWAWAY_DIR/data" -w -l "$THROWAWAY_DIR/log" \
    -o "-p $THROWAWAY_PORT -k $THROWAWAY_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
  echo "postgres://postgres@127.0.0.1:$THROWAWAY_PORT/postgres"
}

url=$(find_server)
if [ "${1:-}" = cleanup ]; then
  ensure_client
  psql "$url" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'portcullis\_test\_%'" |
    while read -r db; do psql "$url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done
  exit 0
fi
echo "$url"
