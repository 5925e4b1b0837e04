#!/usr/bin/env bash
# One client's no-op jobs on two drove node processes on loopback, through
# a drove scheduler process and directly (BenchmarkFleet in
# bench/scheduler_test.go, the two paths one after the other on the same
# processes), beside Dask distributed's scheduler and two single-threaded
# workers as separate processes; prints the medians and the ratios.
#
# Usage: bench/scheduler.sh [ROUNDS [JOBS [ROUND_TRIPS]]]
# (default 3 rounds of 20000 jobs at once and 2000 one at a time)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
jobs=${2:-20000}
trips=${3:-2000}
. bench/peers/dask_procs.sh
dask_require

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
bin=$(mktemp -d)/drove
go build -o "$bin" ./cmd/drove
echo "== drove: 2 node processes (1 CPU each) and a scheduler process on loopback, $rounds rounds"
bench=$(go test -run XXX -bench '^BenchmarkFleet$/Throughput' -benchtime "${jobs}x" -count "$rounds" -timeout 60m ./bench/ -args -drove "$bin"
	go test -run XXX -bench '^BenchmarkFleet$/RoundTrip' -benchtime "${trips}x" -count "$rounds" -timeout 60m ./bench/ -args -drove "$bin")
rm -rf "$(dirname "$bin")"
grep '^BenchmarkFleet' <<<"$bench"

# median NAME FIELD: the median over the rounds of the value before FIELD
# ("jobs/s", "ns/op") on the lines of sub-benchmark NAME.
median() {
	awk -v n="BenchmarkFleet/$1-" -v f="$2" 'index($1, n) == 1 {for (i=2;i<NF;i++) if ($(i+1)==f) print $i}' <<<"$bench" |
		sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}
direct_tput=$(median Throughput/direct jobs/s)
sched_tput=$(median Throughput/scheduler jobs/s)
direct_rt=$(median RoundTrip/direct ns/op)
sched_rt=$(median RoundTrip/scheduler ns/op)

echo "== Dask: dask-scheduler + 2 dask-worker processes on loopback"
dask_start
dask=$($py bench/peers/dask_local.py 10000 200 2>/dev/null)
echo "$dask"
dask_tput=$(awk '/dask_map_tasks_per_s/ {print $2}' <<<"$dask")
dask_rt=$(awk '/dask_roundtrip_us/ {print $2}' <<<"$dask")

echo
echo "== medians and ratios"
awk -v s="$sched_tput" -v d="$direct_tput" -v k="$dask_tput" 'BEGIN {
	printf "no-op jobs/s: scheduler %.0f, direct %.0f, Dask %.0f; scheduler/direct %.2f, scheduler/Dask %.1fx (target >= 20,000/s)\n", s, d, k, s/d, s/k }'
awk -v s="$sched_rt" -v d="$direct_rt" -v k="$dask_rt" 'BEGIN {
	printf "round trip: scheduler %.0f us, direct %.0f us, Dask %.0f us; scheduler/direct %.2f, Dask/scheduler %.1fx\n", s/1000, d/1000, k, s/d, k/(s/1000) }'
