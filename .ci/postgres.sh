#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on 127.0.0.1 for the postgres-marked tests and print
# the URL to export as HEALTHMON_TEST_POSTGRES_URL. Installs the server if absent.
# `--stop` stops and removes it.
# initdb refuses to run as root, so the cluster belongs to the `postgres` user.
set -euo pipefail
PORT="${HEALTHMON_PG_PORT:-54329}"
DIR="${HEALTHMON_PG_DIR:-/tmp/healthmon-ci-pg}"
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
fi
BIN="$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")")"
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
if [ -f "$DIR/postmaster.pid" ]; then as_postgres "'$BIN/pg_ctl' -D '$DIR' -m fast stop" >&2 || true; fi
rm -rf "$DIR"
if [ "${1:-}" = "--stop" ]; then exit 0; fi
mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
as_postgres "'$BIN/initdb' -D '$DIR' -U postgres --auth=trust -E UTF8 >/dev/null"
as_postgres "'$BIN/pg_ctl' -D '$DIR' -l '$DIR/server.log' -w -o \"-h 127.0.0.1 -p $PORT -k '$DIR'\" start" >&2
as_postgres "'$BIN/createdb' -h 127.0.0.1 -p $PORT -U postgres healthmon_test"
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/healthmon_test"
