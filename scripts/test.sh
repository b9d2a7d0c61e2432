#!/usr/bin/env bash
# Runs the test suite against one PostgreSQL server shared by every test
# binary.
#
#   scripts/test.sh [packages...]        default: ./...
#
# If PAMPA_TEST_DATABASE_URL is set, tests use that server. Otherwise a
# throwaway cluster is started from the machine's PostgreSQL binaries (see
# internal/pgcluster) for the whole run and stopped on exit, whatever happens.
# Extra `go test` flags come from GOTESTFLAGS, e.g.
#   GOTESTFLAGS='-race -run TestQueue' scripts/test.sh ./internal/...
# The exit code is go test's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=("$@")
if [[ ${#packages[@]} -eq 0 ]]; then
	packages=(./...)
fi

if [[ -z "${PAMPA_TEST_DATABASE_URL:-}" ]]; then
	tool_dir=$(mktemp -d "${TMPDIR:-/tmp}/pampa-pgtmp.XXXXXX")
	# Its own directory: as root, the cluster is handed to the postgres user,
	# who must be able to reach it.
	pg_dir=$(mktemp -d /tmp/pampa-testrun.XXXXXX)
	cleanup() {
		"$tool_dir/pgtmp" stop --dir "$pg_dir" --remove || echo "test.sh: could not stop the cluster in $pg_dir" >&2
		rm -rf "$tool_dir"
	}
	trap cleanup EXIT
	# Exit (running the EXIT trap) on interruption too.
	trap 'exit 130' INT
	trap 'exit 143' TERM

	go build -o "$tool_dir/pgtmp" ./internal/pgcluster/cmd/pgtmp
	PAMPA_TEST_DATABASE_URL=$("$tool_dir/pgtmp" start --dir "$pg_dir" --fast)
	export PAMPA_TEST_DATABASE_URL
	echo "test.sh: throwaway PostgreSQL at $PAMPA_TEST_DATABASE_URL" >&2
fi

# GOTESTFLAGS is split on spaces on purpose: it holds several flags.
# shellcheck disable=SC2086
set +e
go test -count=1 -timeout 14m ${GOTESTFLAGS:-} "${packages[@]}"
code=$?
set -e
exit "$code"
