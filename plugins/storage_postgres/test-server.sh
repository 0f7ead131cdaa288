#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks: 127.0.0.1, a free port, a temporary
# directory, no durability (fsync off). Never use it for data you want to keep.
#
#   eval "$(plugins/storage_postgres/test-server.sh start)"   # exports DURABLE_TEST_POSTGRES_DSN
#   ...                                                       # and DURABLE_TEST_POSTGRES_DIR
#   plugins/storage_postgres/test-server.sh stop              # stops it and removes the directory
#   plugins/storage_postgres/test-server.sh pause DIR         # stops the server, keeping its data
#   plugins/storage_postgres/test-server.sh resume DIR        # starts it again (same port, same data)
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql). As root, the cluster
# runs as the `postgres` system user, since PostgreSQL refuses to run as root.
set -euo pipefail

find_bindir() {
    if command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$dir" ]; then
        echo "test-server.sh: PostgreSQL's server binaries (initdb, pg_ctl) are not installed;" \
             "on Debian or Ubuntu run: apt-get install -y postgresql" >&2
        exit 1
    fi
    echo "$dir"
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bindir dir port
    bindir=$(find_bindir)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/durable-postgres.XXXXXX")
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bindir/initdb" --no-sync --auth=trust --username=postgres --encoding=UTF8 \
        -D "$dir/data" >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
        "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "export DURABLE_TEST_POSTGRES_DSN='postgresql://postgres@127.0.0.1:$port/postgres'"
    echo "export DURABLE_TEST_POSTGRES_DIR='$dir'"
}

stop() {
    local dir=${1:-${DURABLE_TEST_POSTGRES_DIR:-}}
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then
        echo "test-server.sh stop: give the cluster's directory (or set DURABLE_TEST_POSTGRES_DIR)" >&2
        exit 1
    fi
    as_owner "$(find_bindir)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

pause() {
    as_owner "$(find_bindir)/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null
}

resume() {  # restart starts a stopped server with the options it last ran with (postmaster.opts)
    as_owner "$(find_bindir)/pg_ctl" -D "$1/data" -l "$1/server.log" -w restart >/dev/null 2>&1
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    pause) pause "$2" ;;
    resume) resume "$2" ;;
    *) echo "usage: $0 start | stop [DIR] | pause DIR | resume DIR" >&2; exit 2 ;;
esac
