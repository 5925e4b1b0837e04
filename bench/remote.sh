#!/bin/sh
# bench/remote.sh: package remote against OpenSSH's scp and sftp, all on the
# same loopback sshd started by internal/testutil/sshtest (needs root and
# openssh-server + openssh-client). Results: a markdown table on stdout (and
# in $DROVE_BENCH_OUT if set), then the Go benchmarks.
set -eu
cd "$(dirname "$0")/.."
out=${DROVE_BENCH_OUT:-$(mktemp)}
DROVE_BENCH=1 DROVE_BENCH_OUT="$out" DROVE_REQUIRE_SSHD=1 \
	go test -count=1 -run '^TestCompareOpenSSH$' ./bench/remote >/dev/null
cat "$out"
echo
go test -count=1 -run '^$' -bench . -benchtime "${BENCHTIME:-5x}" ./bench/remote
