# Sourced by the bench scripts: builds pampa into $tool_dir, and defines
# start_pg, which starts a throwaway PostgreSQL cluster (fsync on) and sets
# $url. Both are removed when the script exits.

tool_dir=$(mktemp -d "${TMPDIR:-/tmp}/pampa-bench.XXXXXX")
cleanup() {
	if [[ -n ${pg_dir:-} ]]; then
		"$tool_dir/pgtmp" stop --dir "$pg_dir" --remove || true
	fi
	rm -rf "$tool_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

go build -o "$tool_dir/pampa" ./cmd/pampa

start_pg() {
	go build -o "$tool_dir/pgtmp" ./internal/pgcluster/cmd/pgtmp
	pg_dir=$(mktemp -d /tmp/pampa-benchpg.XXXXXX)
	url=$("$tool_dir/pgtmp" start --dir "$pg_dir")
	echo "bench: throwaway PostgreSQL (fsync on) at $url" >&2
}

json=()
if [[ -n ${BENCH_JSON:-} ]]; then
	json=(--json)
fi
