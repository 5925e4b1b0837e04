# Sourced by bench/node.sh and bench/scheduler.sh: Dask distributed from
# Debian's python3-distributed (installed here when run as root), run as
# separate processes on loopback: dask-scheduler and two dask-worker
# processes of one thread each. dask_start exports DASK_SCHEDULER for
# bench/peers/dask_local.py; the processes end with the calling script.
py=/usr/bin/python3

dask_require() {
	if $py -c 'import distributed' 2>/dev/null; then
		return
	fi
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-distributed >/dev/null
	else
		echo "$0: needs Debian's python3-distributed (apt-get install python3-distributed)" >&2
		exit 1
	fi
}

dask_start() {
	dask_tmp=$(mktemp -d)
	trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dask_tmp"' EXIT
	local port
	port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	(cd "$dask_tmp" && exec dask-scheduler --host 127.0.0.1 --port "$port" --dashboard-address :0 >scheduler.log 2>&1) &
	sleep 3
	for i in 1 2; do
		(cd "$dask_tmp" && exec dask-worker "tcp://127.0.0.1:$port" --nthreads 1 --nworkers 1 --host 127.0.0.1 --dashboard-address :0 >"worker$i.log" 2>&1) &
	done
	sleep 5
	export DASK_SCHEDULER="tcp://127.0.0.1:$port"
}
