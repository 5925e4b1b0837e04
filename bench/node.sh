#!/usr/bin/env bash
# One drove node on loopback beside Dask distributed run as separate
# processes (dask-scheduler and two single-threaded dask-worker processes),
# on the same machine; prints both and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/peers/dask_procs.sh
dask_require

echo "== drove: one node on loopback (bench/node_test.go)"
bench=$(go test -run XXX -bench '^BenchmarkNode(Throughput|RoundTrip)$' -benchtime 50000x ./bench/)
echo "$bench"
tput=$(awk '/^BenchmarkNodeThroughput/ {for (i=1;i<=NF;i++) if ($(i+1)=="jobs/s") print $i}' <<<"$bench")
rt_ns=$(awk '/^BenchmarkNodeRoundTrip/ {print $3}' <<<"$bench")

echo "== Dask: dask-scheduler + 2 dask-worker processes on loopback"
dask_start
dask=$($py bench/peers/dask_local.py 10000 200 2>/dev/null)
echo "$dask"
dask_tput=$(awk '/dask_map_tasks_per_s/ {print $2}' <<<"$dask")
dask_rt=$(awk '/dask_roundtrip_us/ {print $2}' <<<"$dask")

echo
echo "== ratios"
awk -v d="$tput" -v k="$dask_tput" 'BEGIN {printf "no-op throughput: drove node %.0f jobs/s, Dask %.0f tasks/s: %.1fx (target >= 20,000 jobs/s)\n", d, k, d/k}'
awk -v d="$rt_ns" -v k="$dask_rt" 'BEGIN {printf "round trip: drove node %.1f us, Dask %.1f us: %.1fx faster (target <= 300 us)\n", d/1000, k, k/(d/1000)}'
