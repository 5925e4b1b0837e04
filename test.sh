#!/usr/bin/env bash
# Runs every drove test, exactly as CI does (.ci/run calls this script).
#
# As root it first installs what the tests need from Debian's packages
# (OpenSSH's sshd for the SSH tests, iproute2 for network namespaces,
# Chromium for the web monitor's browser tests, GNU parallel to compare
# drove run with) and
# then requires them, so a test cannot pass by skipping. As another user,
# tests that need root or sshd skip with a message saying why.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" = 0 ]; then
	need=()
	[ -x /usr/sbin/sshd ] || need+=(openssh-server)
	command -v ssh >/dev/null || need+=(openssh-client)
	command -v ip >/dev/null || need+=(iproute2)
	command -v pgrep >/dev/null || need+=(procps)
	command -v chromium >/dev/null || need+=(chromium)
	command -v parallel >/dev/null || need+=(parallel) # GNU parallel, to compare drove run with
	if [ ${#need[@]} -gt 0 ]; then
		echo "test.sh: installing ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	fi
	export DROVE_REQUIRE_SSHD=1 DROVE_REQUIRE_NETNS=1 DROVE_REQUIRE_CHROMIUM=1 DROVE_REQUIRE_GNU_PARALLEL=1
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt'ed:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
go tool staticcheck ./...
# Every fuzz target for a few seconds (DROVE_FUZZTIME, default 10s each),
# before the tests so that go test's summary stays the last thing printed.
bash .ci/fuzz
echo "== go test -race"
go test -race -count=1 -timeout 14m ./...
