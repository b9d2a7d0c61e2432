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
	echo "== $db: burn (queue_size 250), trickle, scale, memory"
	bench "$db" ${BENCH_FLAGS:-}
	# The burn at the original's queue_size, 5, where the queue rule sizes
	# each worker's queue from its pace; then both queue sizes with the
	# workers as separate processes, the original's layout.
	only_burn=(--trickle 0 --scale-small 0 --scale-large 0)
	echo "== $db: burn, queue_size 5"
	bench "$db" --queue-size 5 "${only_burn[@]}" ${BENCH_FLAGS:-}
	echo "== $db: burn, queue_size 5, workers as processes"
	bench "$db" --queue-size 5 --processes "${only_burn[@]}" ${BENCH_FLAGS:-}
	echo "== $db: burn, queue_size 250, workers as processes"
	bench "$db" --processes "${only_burn[@]}" ${BENCH_FLAGS:-}
	# Real work waits: tasks of 50 ms on 10 workers × concurrency 20 at
	# queue_size 5; the ideal is 4,000 tasks/s.
	echo "== $db: waiting tasks (50 ms, 10 workers × 20)"
	bench "$db" --tasks 20000 --concurrency 20 --queue-size 5 --task-sleep 50ms "${only_burn[@]}" ${BENCH_FLAGS:-}
	# Two levels of dispatch: 100 workers as 4 nodes × 25 under node
	# dispatchers, beside 10 workers claiming for themselves, run by run.
	echo "== $db: burn, 10 workers"
	bench "$db" --tasks 100000 --workers 10 "${only_burn[@]}" ${BENCH_FLAGS:-}
	echo "== $db: burn, 100 workers as 4 nodes × 25 (node dispatchers)"
	bench "$db" --tasks 100000 --nodes 4 --workers 25 "${only_burn[@]}" ${BENCH_FLAGS:-}
done
