#!/usr/bin/env bash
# Runs drove and its peers side by side on this machine and prints ratios.
#
#   bench/compare.sh            core: embedded cluster vs Dask distributed and xargs
#
# Needs Debian's python3-distributed (installed when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
cpus=$(nproc)
py=/usr/bin/python3

if ! $py -c 'import distributed' 2>/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-distributed >/dev/null
	else
		echo "compare.sh: needs Debian's python3-distributed" >&2; exit 1
	fi
fi

echo "== drove (go test -bench, embedded cluster, $cpus CPUs)"
bench=$(go test -run XXX -bench '^Benchmark(Throughput|RoundTrip|ProgramTrue)$' -benchtime 3s ./bench/)
echo "$bench"
drove_tput=$(awk '/^BenchmarkThroughput/ {for (i=1;i<=NF;i++) if ($(i+1)=="jobs/s") print $i}' <<<"$bench")
drove_rt_ns=$(awk '/^BenchmarkRoundTrip/ {print $3}' <<<"$bench")
drove_true=$(awk '/^BenchmarkProgramTrue/ {for (i=1;i<=NF;i++) if ($(i+1)=="jobs/s") print $i}' <<<"$bench")

echo "== Dask distributed (LocalCluster, 2 processes x 1 thread)"
dask=$($py bench/peers/dask_local.py 10000 200 2>/dev/null)
echo "$dask"
dask_tput=$(awk '/dask_map_tasks_per_s/ {print $2}' <<<"$dask")
dask_rt_us=$(awk '/dask_roundtrip_us/ {print $2}' <<<"$dask")

echo "== xargs -P$cpus -n1 true (process-spawn floor)"
n=20000
start=$(date +%s.%N)
seq $n | xargs -P"$cpus" -n1 true
end=$(date +%s.%N)
xargs_rate=$(awk -v n=$n -v s="$start" -v e="$end" 'BEGIN {printf "%.1f", n/(e-s)}')
echo "xargs: $xargs_rate jobs/s"

echo "== drove: a million no-op jobs"
go build -o /tmp/drove-million ./bench/million
million=$(/tmp/drove-million -n 1000000)
echo "$million"

echo
echo "== ratios"
awk -v d="$drove_tput" -v k="$dask_tput" 'BEGIN {printf "no-op throughput: drove %.0f jobs/s, Dask %.0f tasks/s: %.1fx (target >= 100x)\n", d, k, d/k}'
awk -v d="$drove_rt_ns" -v k="$dask_rt_us" 'BEGIN {printf "round trip: drove %.1f us, Dask %.1f us: %.1fx faster (target <= 100 us)\n", d/1000, k, k/(d/1000)}'
awk -v d="$drove_true" -v x="$xargs_rate" 'BEGIN {printf "/bin/true programs: drove %.0f jobs/s, xargs %.0f: %.2f of the floor (target >= 0.70)\n", d, x, d/x}'
echo "million jobs: $million"
