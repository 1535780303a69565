#!/usr/bin/env bash
# A local PostgreSQL for the warnings-store tests (tests/test_warning_store.py), on Debian, as root.
#
#   eval "$(.ci/postgres.sh)"
#
# Installs the postgresql package if missing, starts (or creates) a cluster, creates the role and
# database, checks a password login over TCP, and prints one line on stdout:
#   export YUJING_TEST_POSTGRES_URL=postgresql+psycopg://yujing:yujing@127.0.0.1:PORT/yujing_test
# Everything else goes to stderr. If any step fails (no root, no apt, no network ...) it prints
# nothing on stdout and still exits 0: the PostgreSQL tests then skip and CI carries on.
set -u

PG_ROLE="${YUJING_PG_ROLE:-yujing}"
PG_PASSWORD="${YUJING_PG_PASSWORD:-yujing}"
PG_DB="${YUJING_PG_DB:-yujing_test}"

log() { echo "postgres.sh: $*" >&2; }

as_postgres() { runuser -u postgres -- "$@"; }

setup() {
  if [ "$(id -u)" != 0 ]; then
    log "not root; cannot install or start PostgreSQL"
    return 1
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
      log "postgresql is not installed and apt-get is unavailable"
      return 1
    fi
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout 900 apt-get install -y -q postgresql >&2; then
      timeout 300 apt-get update -q >&2 || { log "apt-get update failed"; return 1; }
      timeout 900 apt-get install -y -q postgresql >&2 || { log "apt-get install postgresql failed"; return 1; }
    fi
  fi

  local version
  version="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$version" ] || { log "no PostgreSQL server found under /usr/lib/postgresql"; return 1; }

  local cluster port status
  read -r cluster port status < <(pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v {print $2, $3, $4; exit}')
  if [ -z "${cluster:-}" ]; then
    log "creating cluster $version/main"
    pg_createcluster "$version" main >&2 || { log "pg_createcluster failed"; return 1; }
    read -r cluster port status < <(pg_lsclusters -h | awk -v v="$version" '$1 == v {print $2, $3, $4; exit}')
  fi
  [ -n "${cluster:-}" ] && [ -n "${port:-}" ] || { log "no cluster of version $version"; return 1; }

  if [ "$status" != "online" ]; then
    log "starting cluster $version/$cluster on port $port"
    pg_ctlcluster "$version" "$cluster" start >&2 || { log "pg_ctlcluster start failed"; return 1; }
  fi
  local i
  for i in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
  done
  pg_isready -q -h 127.0.0.1 -p "$port" || { log "server on port $port is not accepting connections"; return 1; }

  # Role and database, idempotently (a second CI step or a re-run finds them already there).
  as_postgres psql -p "$port" -X -q -v ON_ERROR_STOP=1 -v role="$PG_ROLE" -v pw="$PG_PASSWORD" >&2 <<'SQL' \
    || { log "creating the role failed"; return 1; }
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'pw') \gexec
SQL
  as_postgres psql -p "$port" -X -q -v ON_ERROR_STOP=1 -v role="$PG_ROLE" -v db="$PG_DB" >&2 <<'SQL' \
    || { log "creating the database failed"; return 1; }
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL

  PGPASSWORD="$PG_PASSWORD" psql -X -q -h 127.0.0.1 -p "$port" -U "$PG_ROLE" -d "$PG_DB" -c "SELECT 1" >/dev/null \
    || { log "cannot log in as $PG_ROLE over TCP (check pg_hba.conf)"; return 1; }

  log "PostgreSQL $version ready on 127.0.0.1:$port (stop it with: pg_ctlcluster $version $cluster stop)"
  echo "export YUJING_TEST_POSTGRES_URL=postgresql+psycopg://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$port/$PG_DB"
}

setup || log "PostgreSQL not available; the PostgreSQL tests will be skipped"
exit 0
