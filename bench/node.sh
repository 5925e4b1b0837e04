#!/usr/bin/env bash
# One drove node on loopback beside Dask distributed run as separate
# processes (dask-scheduler and two single-threaded dask-worker processes),
# on the same machine; then a 1 GiB depends file to a fresh node beside
# this machine's own write rate (dd ... conv=fdatasync into the same
# temporary directory), alternately, twice; prints all and the ratios.
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

echo "== 1 GiB depends file to a fresh node, and dd of 1 GiB with fdatasync, alternately"
depends=()
dd_rates=()
for round in 1 2; do
	sync
	d=$(DROVE_BENCH_DEPENDS_MIB=1024 go test -run XXX -bench '^BenchmarkNodeDependsTransfer$' -benchtime 1x ./bench/ |
		awk '/^BenchmarkNodeDependsTransfer/ {for (i=1;i<=NF;i++) if ($(i+1)=="MB/s") print $i}')
	sync
	f=$(mktemp)
	r=$(LC_ALL=C dd if=/dev/zero of="$f" bs=1M count=1024 conv=fdatasync 2>&1 | awk '/copied/ {for (i=2;i<=NF;i++) if ($i=="s,") print $1/$(i-1)/1e6}')
	rm -f "$f"
	echo "round $round: depends $d MB/s, dd $r MB/s"
	depends+=("$d")
	dd_rates+=("$r")
done

echo
echo "== ratios"
awk -v a="${depends[0]}" -v b="${depends[1]}" -v c="${dd_rates[0]}" -v d="${dd_rates[1]}" 'BEGIN {printf "1 GiB depends: %.0f and %.0f MB/s, dd %.0f and %.0f MB/s: %.2fx and %.2fx (target >= 0.7x)\n", a, b, c, d, a/c, b/d}'
awk -v d="$tput" -v k="$dask_tput" 'BEGIN {printf "no-op throughput: drove node %.0f jobs/s, Dask %.0f tasks/s: %.1fx (target >= 20,000 jobs/s)\n", d, k, d/k}'
awk -v d="$rt_ns" -v k="$dask_rt" 'BEGIN {printf "round trip: drove node %.1f us, Dask %.1f us: %.1fx faster (target <= 300 us)\n", d/1000, k, k/(d/1000)}'
