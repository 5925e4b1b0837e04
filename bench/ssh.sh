#!/bin/sh
# bench/ssh.sh — 200 × `true` over loopback sshd hosts, 2 hosts × 4 slots
# and 8 hosts × 2 slots in the same run: drove run (with its agent, and
# with --no-agent: a session per job), GNU parallel -S and -S -M, pssh, and
# bare x/crypto/ssh sessions over reused connections (the floor). Every
# contender logs in as the harness's clean-shell test user (login shell
# /bin/sh, no rc files).
#
# Needs root (the harness starts sshd and creates the test user) and sshd;
# GNU parallel and pssh are measured when installed (Debian packages
# parallel and pssh: apt-get install -y parallel pssh). Writes bench/ssh.md;
# extra arguments go to the benchmark (-rounds N, -slow-rounds N, -jobs N,
# -slots N, -wide HOSTS, -wide-slots N, -drove BINARY).
set -eu
cd "$(dirname "$0")/.."
for tool in parallel parallel-ssh; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "bench/ssh.sh: $tool missing: its rows are left out (apt-get install -y parallel pssh)" >&2
	fi
done
DROVE_BENCH=1 DROVE_REQUIRE_SSHD=1 exec go test -run '^TestSSHBench$' -v -count=1 -timeout 60m ./bench/ssh/ -args -out "$PWD/bench/ssh.md" "$@"
