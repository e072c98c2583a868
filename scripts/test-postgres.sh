#!/usr/bin/env bash
# Prints the URL of a PostgreSQL server on which the test suites may create databases.
#   scripts/test-postgres.sh          find or start one, print its URL
#   PORTCULLIS_TEST_POSTGRES=URL scripts/test-postgres.sh cleanup
#                                     drop the databases the suites created there
# Order: $PORTCULLIS_TEST_POSTGRES if set; a server on 127.0.0.1:5432 with room for the
# suites' connections; else Debian's `postgresql` (installed if missing) as a throwaway
# cluster under /tmp on port 55432.
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
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

# The HTTP suites run a portal per test thread at once, each with pools of up to 21
# connections: a shared server whose slots are mostly taken (by a forgotten process, say)
# fails them at random with pool time-outs. Such a server is passed over, and said so. The
# threshold is a judgement: a few portals' worth. Without psql the check is skipped.
MIN_FREE_CONNECTIONS=60

has_room() {
  local url=$1 free
  command -v psql >/dev/null || return 0
  free=$(psql -X -w -v ON_ERROR_STOP=1 "$url" -Atc "SELECT current_setting('max_connections')::int
    - current_setting('superuser_reserved_connections')::int - count(*)
    FROM pg_stat_activity WHERE backend_type = 'client backend'") || return 0
  [[ $free =~ ^-?[0-9]+$ ]] || return 0
  if [ "$free" -lt "$MIN_FREE_CONNECTIONS" ]; then
    say "only $free free connections on $url; held by:"
    psql -X -w "$url" -Atc "SELECT count(*), datname, application_name, client_addr
      FROM pg_stat_activity WHERE backend_type = 'client backend'
      GROUP BY 2, 3, 4 ORDER BY 1 DESC LIMIT 5" >&2 || true
    return 1
  fi
}

find_server() {
  if [ -n "${PORTCULLIS_TEST_POSTGRES:-}" ]; then echo "$PORTCULLIS_TEST_POSTGRES"; return; fi
  local shared="postgres://postgres@127.0.0.1:5432/postgres"
  if port_open 5432 && has_room "$shared"; then echo "$shared"; return; fi
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

if [ "${1:-}" = cleanup ]; then
  # The server the run used, never one chosen again now (whose room may have changed).
  url=${PORTCULLIS_TEST_POSTGRES:-}
  if [ -z "$url" ]; then say "cleanup: PORTCULLIS_TEST_POSTGRES names no server; nothing dropped"; exit 0; fi
  ensure_client
  psql -X -w "$url" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'portcullis\_test\_%'" |
    while read -r db; do psql -X -w "$url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done
  exit 0
fi
url=$(find_server)
echo "$url"
