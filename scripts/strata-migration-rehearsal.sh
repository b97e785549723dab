#!/usr/bin/env bash
# Rehearse a service's database migrations against a throw-away copy of a
# PostgreSQL instance before they run in production (docs/postgres.md,
# "Migration rehearsal").
#
#   strata-migration-rehearsal.sh --binding-dir DIR [--verify 'COMMAND'] -- MIGRATE-COMMAND...
#
# DIR is an *owner* binding of the copy (a masked copy made with copy_of,
# or a restore to a point in time), one file per key as a mounted binding
# Secret: host, port, database, username, password, ca.crt. The script
#
#  1. records a fingerprint of the copy's schema (tables, columns,
#     constraints, indexes);
#  2. runs MIGRATE-COMMAND with the copy's connection in the environment,
#     as Flyway's command line, its Maven and Gradle plugins and its Java
#     API (envVars()) read it: FLYWAY_URL (verify-full TLS), FLYWAY_USER,
#     FLYWAY_PASSWORD, FLYWAY_INIT_SQL="SET ROLE strata_owner" (objects
#     belong to the owner group, as in production) and
#     FLYWAY_CLEAN_DISABLED=true; and libpq's PGHOST, PGPORT, PGDATABASE,
#     PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT (psql, Liquibase via
#     your own wrapper, ...);
#  3. when the migration fails: compares the schema with step 1 and says
#     whether PostgreSQL rolled the failed migration back (transactional
#     DDL) or it left changes behind (a non-transactional statement such as
#     CREATE INDEX CONCURRENTLY), and exits 1;
#  4. when it succeeds: runs the --verify command (same environment), e.g.
#     the service's smoke tests or a psql script, and exits 2 if it fails.
#
# An instance whose schema Flyway never migrated (made by a seed, say) is
# baselined on the copy with FLYWAY_BASELINE_ON_MIGRATE=true and
# FLYWAY_BASELINE_VERSION=<the version its schema is at>. Run it where the
# binding's host resolves: a pod of the cluster, or a host with the
# cluster's DNS.
#
# The copy is the rollback: nothing here touches production, and the copy
# is discarded afterwards (unbind and deprovision it). Exit codes: 0
# migrated and verified, 1 migration failed, 2 verification failed, 64
# usage. Secrets are passed in the environment only, never printed.
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d' >&2
	exit 64
}

binding="" verify=""
while [ $# -gt 0 ]; do
	case "$1" in
	--binding-dir) binding="${2:?}"; shift 2 ;;
	--verify) verify="${2:?}"; shift 2 ;;
	--) shift; break ;;
	-h | --help) usage ;;
	*) echo "unknown argument $1" >&2; usage ;;
	esac
done
[ -n "$binding" ] && [ $# -gt 0 ] || usage
for key in host port database username password ca.crt; do
	[ -s "$binding/$key" ] || { echo "the binding directory $binding has no $key: give an owner binding's files" >&2; exit 64; }
done
command -v psql >/dev/null || { echo "psql is not on PATH (apt-get install postgresql-client)" >&2; exit 64; }

binding="$(cd "$binding" && pwd)"
host="$(cat "$binding/host")" port="$(cat "$binding/port")" database="$(cat "$binding/database")"
export PGHOST="$host" PGPORT="$port" PGDATABASE="$database"
export PGUSER="$(cat "$binding/username")"
PGPASSWORD="$(cat "$binding/password")"
export PGPASSWORD PGSSLMODE=verify-full PGSSLROOTCERT="$binding/ca.crt" PGCONNECT_TIMEOUT=10
export FLYWAY_URL="jdbc:postgresql://$host:$port/$database?sslmode=verify-full&sslrootcert=$binding/ca.crt"
export FLYWAY_USER="$PGUSER" FLYWAY_PASSWORD="$PGPASSWORD"
export FLYWAY_INIT_SQL="SET ROLE strata_owner" FLYWAY_CLEAN_DISABLED=true

# What a migration can change in the schema, as one digest. Flyway's own
# history table is left out: on an instance Flyway never migrated
# (FLYWAY_BASELINE_ON_MIGRATE=true), Flyway creates it, in a transaction of
# its own, before the migrations run.
fingerprint() {
	psql -X -q -A -t -v ON_ERROR_STOP=1 -v history="${FLYWAY_TABLE:-flyway_schema_history}" <<'SQL'
SELECT md5(coalesce(string_agg(x, E'\n' ORDER BY x), '')) FROM (
  SELECT format('column %s.%s.%s %s %s %s', table_schema, table_name, column_name, data_type, is_nullable, column_default)
    FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_name <> :'history'
  UNION ALL
  SELECT format('constraint %s.%s %s', n.nspname, c.conname, pg_get_constraintdef(c.oid))
    FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND c.conrelid NOT IN (SELECT oid FROM pg_class WHERE relname = :'history')
  UNION ALL
  SELECT format('index %s.%s', schemaname, indexdef) FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> :'history'
) AS schema(x);
SQL
}

before="$(fingerprint)"
echo "rehearsal: migrating $database on $host (schema $before) as $PGUSER"
if ! "$@"; then
	after="$(fingerprint)"
	if [ "$after" = "$before" ]; then
		echo "rehearsal: MIGRATION FAILED; the copy's schema is unchanged (PostgreSQL rolled the failed migration back). Fix the migration; production was never touched." >&2
	else
		echo "rehearsal: MIGRATION FAILED and left the copy's schema changed ($after): part of it was not transactional (CREATE INDEX CONCURRENTLY, or a tool committing each statement). In production this would need a forward fix or a restore to a point in time." >&2
	fi
	exit 1
fi
echo "rehearsal: migrated (schema $(fingerprint))"
if [ -n "$verify" ]; then
	if ! sh -c "$verify"; then
		echo "rehearsal: VERIFICATION FAILED after the migration" >&2
		exit 2
	fi
	echo "rehearsal: verified"
fi
