#!/usr/bin/env bash
# Pampa and River side by side on one throwaway PostgreSQL cluster (fsync
# on): River's burn and trickle with its defaults and with fast fetching,
# then `pampa bench`'s burn and trickle, then both on waiting tasks (50 ms
# each, 200 slots a side), each twice, alternating.
#
#   scripts/bench-river.sh            # tables
#   BENCH_JSON=1 scripts/bench-river.sh
#
# River's program is benchmarks/river, a module of its own (River is not a
# dependency of Pampa); its modules come from the Go module proxy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/bench-setup.sh
source scripts/bench-setup.sh
(cd benchmarks/river && go build -o "$tool_dir/river" .)
start_pg
river_url=${url/\/postgres\?/\/riverbench?}
psql "$url" -qc 'CREATE DATABASE riverbench'
for round in 1 2; do
	echo "== round $round: River, defaults"
	"$tool_dir/river" --database-url "$river_url" "${json[@]}"
	echo "== round $round: River, FetchCooldown 2ms, FetchPollInterval 20ms"
	"$tool_dir/river" --database-url "$river_url" --fetch-cooldown 2ms --fetch-poll 20ms "${json[@]}"
	echo "== round $round: Pampa"
	"$tool_dir/pampa" bench --db postgres --database-url "$url" --scale-small 0 --scale-large 0 "${json[@]}"
	# Real work waits: 20,000 tasks of 50 ms each; 200 slots on each side
	# (River: 200 worker goroutines; Pampa: 10 workers × concurrency 20,
	# the original's queue_size 5). Ideal: 4,000 tasks/s.
	echo "== round $round: River, waiting tasks (50 ms, 200 workers)"
	"$tool_dir/river" --database-url "$river_url" --jobs 1000 --trickle 0 --sleep-jobs 20000 --sleep-workers 200 --task-sleep 50ms "${json[@]}"
	echo "== round $round: Pampa, waiting tasks (50 ms, 10 workers × 20)"
	"$tool_dir/pampa" bench --db postgres --database-url "$url" --tasks 20000 --workers 10 --concurrency 20 --queue-size 5 \
		--task-sleep 50ms --trickle 0 --scale-small 0 --scale-large 0 "${json[@]}"
done
