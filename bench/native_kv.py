#!/usr/bin/python3
"""Batch PUT and GET of KV-cache-sized values: strata's native protocol over TCP and
over shared memory, side by side with Redis doing MSET/MGET of the same values, in one
run on this machine (docs/benchmarks-earlier.md). Also a memcpy probe (numpy.copyto) as the
ceiling for the shared memory path.

    /usr/bin/python3 bench/native_kv.py [--seconds 3]

Each round moves one batch of about 32 MiB (64 KiB x 512, 256 KiB x 128, 2 MiB x 16).
strata's client is libstrata through its Python binding (values go from and to numpy
arrays without copies in Python; every value's CRC32C is computed on PUT and checked on
GET). Redis's client is redis-py with hiredis, the fastest Redis client Debian ships for
Python. Both servers run on loopback with 2 worker threads / io-threads off (Redis 7
default)."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy
import redis

from bench_common import free_port, wait_for_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

SIZES = [64 * 1024, 256 * 1024, 2 * 1024 * 1024]
BATCH_BYTES = 32 * 1024 * 1024


def rate(function, seconds, batch_bytes):
    """MB/s (10^6 bytes) of FUNCTION, each call moving BATCH_BYTES, for about SECONDS."""
    function()  # warm up
    done = 0
    began = time.perf_counter()
    while True:
        function()
        done += 1
        elapsed = time.perf_counter() - began
        if elapsed >= seconds and done >= 3:
            return done * batch_bytes / elapsed / 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    arguments = parser.parse_args()
    work = tempfile.mkdtemp(prefix="strata-bench-")
    strata_ports = [free_port() for _ in range(3)]
    unix_socket = os.path.join(work, "strata.sock")  # shared memory passes its memfd here
    redis_port = free_port()
    server = subprocess.Popen([os.path.join(ROOT, "build", "strata-server"), "--port",
                               str(strata_ports[0]), "--http-port", str(strata_ports[1]),
                               "--native-port", str(strata_ports[2]), "--dir",
                               os.path.join(work, "strata"), "--memory", "4gb",
                               "--ssd-size", "0", "--unix-socket", unix_socket],
                              stderr=subprocess.DEVNULL)
    peer = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--maxmemory", "4gb",
                             "--dir", work], stdout=subprocess.DEVNULL)
    rows = []
    try:
        wait_for_port(strata_ports[2])
        wait_for_port(redis_port)
        client = strata.Client(port=strata_ports[2], connections=1)
        shm_client = strata.Client(unix_socket=unix_socket, connections=1)
        region = shm_client.shm_create(2 * BATCH_BYTES)
        redis_client = redis.Redis(port=redis_port)
        rng = numpy.random.default_rng(0)
        source = rng.integers(0, 255, BATCH_BYTES, dtype=numpy.uint8)
        target = numpy.empty(BATCH_BYTES, dtype=numpy.uint8)
        memcpy = rate(lambda: numpy.copyto(target, source), arguments.seconds, BATCH_BYTES)
        for size in SIZES:
            count = BATCH_BYTES // size
            values = [source[i * size:(i + 1) * size] for i in range(count)]
            buffers = [target[i * size:(i + 1) * size] for i in range(count)]
            keys = [f"bench/{size}/{i}".encode() for i in range(count)]
            puts = [(keys[i], values[i]) for i in range(count)]
            gets = [(keys[i], buffers[i]) for i in range(count)]
            region[:BATCH_BYTES] = source.tobytes()
            shm_puts = [(keys[i], region[i * size:(i + 1) * size]) for i in range(count)]
            shm_gets = [(keys[i], region[BATCH_BYTES + i * size:BATCH_BYTES + (i + 1) * size])
                        for i in range(count)]
            redis_pairs = {keys[i]: values[i].tobytes() for i in range(count)}

            def strata_put():
                assert client.put_batch(puts) == [0] * count

            def strata_get():
                results = client.get_batch(gets)
                assert all(status == 0 for status, _ in results)

            def shm_put():
                assert shm_client.put_batch(shm_puts) == [0] * count

            def shm_get():
                results = shm_client.get_batch(shm_gets)
                assert all(status == 0 for status, _ in results)

            def redis_put():
                redis_client.mset(redis_pairs)

            def redis_get():
                replies = redis_client.mget(keys)
                assert len(replies[-1]) == size

            figures = {
                "strata TCP PUT": rate(strata_put, arguments.seconds, BATCH_BYTES),
                "strata TCP GET": rate(strata_get, arguments.seconds, BATCH_BYTES),
                "strata shm PUT": rate(shm_put, arguments.seconds, BATCH_BYTES),
                "strata shm GET": rate(shm_get, arguments.seconds, BATCH_BYTES),
                "Redis MSET": rate(redis_put, arguments.seconds, BATCH_BYTES),
                "Redis MGET": rate(redis_get, arguments.seconds, BATCH_BYTES),
            }
            # Every byte read back is checked once more here, against what was put.
            strata_get()
            assert numpy.array_equal(target, source)
            shm_get()
            assert bytes(region[BATCH_BYTES:2 * BATCH_BYTES]) == source.tobytes()
            rows.append((size, count, figures))
        client.close()
        shm_client.close()
    finally:
        server.terminate()
        peer.terminate()
        server.wait()
        peer.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(f"memcpy (numpy.copyto, 32 MiB): {memcpy:,.0f} MB/s")
    print("| value | batch | strata TCP PUT | strata TCP GET | strata shm PUT | strata shm GET "
          "| Redis MSET | Redis MGET | GET TCP / Redis | GET shm / Redis |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, count, f in rows:
        print(f"| {size // 1024} KiB | {count} | {f['strata TCP PUT']:,.0f} | "
              f"{f['strata TCP GET']:,.0f} | {f['strata shm PUT']:,.0f} | "
              f"{f['strata shm GET']:,.0f} | {f['Redis MSET']:,.0f} | {f['Redis MGET']:,.0f} | "
              f"{f['strata TCP GET'] / f['Redis MGET']:.2f}x | "
              f"{f['strata shm GET'] / f['Redis MGET']:.2f}x |")
    print("(MB/s, 10^6 bytes per second)")


if __name__ == "__main__":
    main()
