#!/usr/bin/env bash
# The standard benchmark set: `pampa bench` on PostgreSQL and on SQLite.
#
#   scripts/bench.sh            # figures as tables
#   BENCH_JSON=1 scripts/bench.sh
#
# PostgreSQL: $PAMPA_BENCH_DATABASE_URL if set, otherwise a throwaway
# cluster started from the machine's binaries, with fsync on (durable
# commits, as in production). Extra flags for every run: $BENCH_FLAGS,
# e.g. BENCH_FLAGS='--scale-large 1000000'.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/bench-setup.sh
source scripts/bench-setup.sh
url=${PAMPA_BENCH_DATABASE_URL:-}
[[ -n $url ]] || start_pg
# bench DB [FLAGS…]: one run on DB (postgres or sqlite).
bench() {
	local db=$1
	shift
	if [[ $db == postgres ]]; then
		"$tool_dir/pampa" bench --db postgres --database-url "$url" "${json[@]}" "$@"
	else
		PAMPA_DATABASE_URL= "$tool_dir/pampa" bench --db sqlite "${json[@]}" "$@"
	fi
}
# shellcheck disable=SC2086
for db in postgres sqlite; do
	echo "== $db"
	bench "$db" ${BENCH_FLAGS:-}
	# The burn again with the original's queue_size, 5: a hand-off of 5
	# tasks per worker per dispatcher round.
	echo "== $db, queue_size 5"
	bench "$db" --queue-size 5 --tasks 20000 --trickle 0 --scale-small 0 --scale-large 0 ${BENCH_FLAGS:-}
	# Two levels of dispatch: 100 workers as 4 nodes × 25 under node
	# dispatchers, beside 10 workers claiming for themselves, run by run.
	burn_only=(--tasks 100000 --trickle 0 --scale-small 0 --scale-large 0)
	echo "== $db, burn: 10 workers"
	bench "$db" "${burn_only[@]}" --workers 10 ${BENCH_FLAGS:-}
	echo "== $db, burn: 100 workers as 4 nodes × 25 (node dispatchers)"
	bench "$db" "${burn_only[@]}" --nodes 4 --workers 25 ${BENCH_FLAGS:-}
done
