#!/bin/sh
# bench/ssh.sh — 200 × `true` over two loopback sshd hosts × 4 slots each:
# drove run, GNU parallel -S and -S -M, pssh, and bare x/crypto/ssh sessions
# over reused connections (the floor). Every contender logs in as the
# harness's clean-shell test user (login shell /bin/sh, no rc files).
#
# Needs root (the harness starts sshd and creates the test user), sshd, and
# the Debian packages parallel and pssh. Writes bench/ssh.md; extra
# arguments go to the benchmark (-rounds N, -slow-rounds N, -jobs N,
# -slots N, -drove BINARY).
set -eu
cd "$(dirname "$0")/.."
for tool in parallel parallel-ssh; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "bench/ssh.sh: $tool missing; install the Debian packages parallel and pssh" >&2
		exit 1
	fi
done
DROVE_BENCH=1 DROVE_REQUIRE_SSHD=1 exec go test -run '^TestSSHBench$' -v -count=1 -timeout 60m ./bench/ssh/ -args -out "$PWD/bench/ssh.md" "$@"
