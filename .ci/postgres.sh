#!/usr/bin/env bash
# A throwaway PostgreSQL server for the store tests (test/store/postgres.test.ts).
#
#   eval "$(.ci/postgres.sh start)"   # prints the export lines below, starts the server
#   .ci/postgres.sh stop              # stops it and deletes its directory
#
# `start` installs Debian's postgresql package when no server binaries are
# present, initialises a fresh cluster in a temporary directory (trust
# authentication, listening only on 127.0.0.1 at a free port and on a unix
# socket inside that directory), creates the database `broker_test` and prints
#   export BROKER_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:<port>/broker_test
#   export BROKER_TEST_PGDATA=<directory>
# on stdout; everything else goes to stderr. `stop` reads BROKER_TEST_PGDATA.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

install_server() {
  log "installing Debian's postgresql package"
  # Only our own cluster is wanted: do not let the package create and start `main`.
  mkdir -p /etc/postgresql-common
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

# initdb and postgres refuse to run as root: run them as `postgres` then.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  node -e 'const s = require("node:net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

start() {
  local bindir dir port attempt
  bindir="$(find_bindir)" || { install_server; bindir="$(find_bindir)"; }
  dir="$(mktemp -d "${TMPDIR:-/tmp}/broker-pg.XXXXXX")"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  chmod 700 "$dir"
  as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  # A port taken between free_port and the server binding it only costs a retry.
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200 -c fsync=on" >&2; then
      break
    fi
    if [ "$attempt" -eq 5 ]; then cat "$dir/server.log" >&2; exit 1; fi
    log "start on port $port failed; retrying"
  done
  as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres broker_test
  log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
  echo "export BROKER_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:$port/broker_test"
  echo "export BROKER_TEST_PGDATA=$dir"
}

stop() {
  local dir="${BROKER_TEST_PGDATA:-}" bindir
  if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
    log "nothing to stop (BROKER_TEST_PGDATA is not a cluster directory)"
    return 0
  fi
  bindir="$(find_bindir)"
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
