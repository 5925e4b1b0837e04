"""Dask distributed on this machine, as the drove comparisons use it.

With no scheduler address: a LocalCluster with 2 worker processes of 1
thread each. With DASK_SCHEDULER=tcp://host:port: that running scheduler
(bench/node.sh starts dask-scheduler and two dask-worker processes).
Prints two lines:
  dask_map_tasks_per_s <float>     10,000 inc tasks through client.map
  dask_roundtrip_us <float>        mean of 200 sequential submit().result()
"""
import os
import sys
import time

from dask.distributed import Client, LocalCluster


def inc(x):
    return x + 1


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    address = os.environ.get("DASK_SCHEDULER")
    if address:
        with Client(address) as client:
            run(client, n, rounds)
        return
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        run(client, n, rounds)


def run(client, n, rounds):
    client.submit(inc, 0).result()  # warm up
    start = time.perf_counter()
    futures = client.map(inc, range(n), pure=False)
    client.gather(futures)
    elapsed = time.perf_counter() - start
    print("dask_map_tasks_per_s %.1f" % (n / elapsed))
    start = time.perf_counter()
    for i in range(rounds):
        client.submit(inc, i, pure=False).result()
    elapsed = time.perf_counter() - start
    print("dask_roundtrip_us %.1f" % (elapsed / rounds * 1e6))


if __name__ == "__main__":
    main()
