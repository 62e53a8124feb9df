#!/usr/bin/env bash
# Runs a command next to a throwaway PostgreSQL cluster: initdb in a new temporary
# directory (owned by the `postgres` system user, since PostgreSQL refuses to run as
# root), listening on a Unix socket in that directory only (no TCP port), trust
# authentication for the role `cyphonic`. The command sees
#   CYPHONIC_TEST_POSTGRES=postgresql://cyphonic@/postgres?host=SOCKETDIR
# and the cluster is stopped and its directory removed when the command ends, also when
# it fails or is interrupted.
# Usage: scripts/with-postgres.sh COMMAND [ARG...]   (root; Debian package postgresql)
set -Eeuo pipefail
[ "$(id -u)" -eq 0 ] || { echo "with-postgres: needs root (runs the cluster as the postgres user)" >&2; exit 1; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "with-postgres: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "with-postgres: no postgres system user (apt-get install postgresql)" >&2; exit 1; }

dir=$(mktemp -d /tmp/cyphonic-pg.XXXXXX)
stop() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  return 0
}
trap stop EXIT
trap 'exit 130' INT TERM
chown postgres: "$dir"
chmod 0711 "$dir"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U cyphonic -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; exit 1; }
# Small and fast: a test cluster, fsync off (it is thrown away).
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
  -o "-c listen_addresses='' -k $dir -c fsync=off -c max_connections=200 -c shared_buffers=32MB" start >/dev/null ||
  { cat "$dir/server.log" >&2; exit 1; }
export CYPHONIC_TEST_POSTGRES="postgresql://cyphonic@/postgres?host=$dir"
echo "with-postgres: throwaway cluster on $dir (PostgreSQL $("$bin/postgres" --version | awk '{print $3}'))" >&2
"$@"
