"""A short load that touches every thread at once: RESP, native and HTTP clients on
several workers, values that overflow DRAM into flash (the flash writer, reclaim with
reinsertion, flash reads and promotion), expiry, CONFIG SET and SIGHUP. Every value
read is checked. `make integration-tsan` runs this module against the ThreadSanitizer
build, where any report fails the run; it also runs in the ordinary suites."""
import hashlib
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

import redis

from conftest import ROOT, SLOW, Server

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

# Seconds of load; the ThreadSanitizer build is several times slower, so the same time
# moves less data there but runs every path.
LOAD_SECONDS = 12


def value_for(key, version):
    """Bytes that name their key and version, 1 to 96 KiB long."""
    seed = hashlib.sha256(f"{key}/{version}".encode()).digest()
    size = 1024 + int.from_bytes(seed[:4], "little") % (95 * 1024)
    header = f"{key}/{version}/".encode()
    return (header + seed * (size // 32 + 1))[:size]


def check(key, data, errors):
    """Records an error unless DATA is exactly some version of KEY."""
    prefix = f"{key}/".encode()
    try:
        version = int(data[len(prefix):].split(b"/", 1)[0]) if data.startswith(prefix) else None
    except ValueError:
        version = None
    if version is None or data != value_for(key, version):
        errors.append(f"wrong value for {key}: {data[:40]!r}")


def test_every_thread_at_once(tmp_path):
    log_path = tmp_path / "strata.log"
    server = Server(tmp_path / "server", "--memory", "24mb", "--ssd-size", "48mb",
                    "--segment-size", "4mb", "--threads", "3", "--pace-timeout", "60000",
                    "--namespaces", "kv=4mb", "--log-file", log_path)
    stop = threading.Event()
    errors = []
    counts = {}
    keys = [f"load:{i}" for i in range(1500)]

    def count(kind):
        counts[kind] = counts.get(kind, 0) + 1

    def guarded(body):
        def run(number):
            try:
                body(number, random.Random(number))
            except Exception as error:  # noqa: BLE001 - any failure of a thread fails the test
                errors.append(f"{body.__name__}: {error!r}")
        return run

    @guarded
    def resp_writer(number, rng):
        client = server.client()
        version = number * 10 ** 9
        while not stop.is_set():
            key = rng.choice(keys)
            version += 1
            if rng.random() < 0.1:
                client.set(key, value_for(key, version), px=rng.randint(50, 2000))
            else:
                client.set(key, value_for(key, version))
            count("set")
            if rng.random() < 0.05:
                client.delete(rng.choice(keys))
        client.close()

    @guarded
    def resp_reader(number, rng):
        client = server.client()
        while not stop.is_set():
            choice = rng.random()
            if choice < 0.6:
                key = rng.choice(keys)
                data = client.get(key)
                if data is not None:
                    check(key, data, errors)
                count("get")
            elif choice < 0.75:
                chosen = rng.sample(keys, 8)
                for key, data in zip(chosen, client.mget(chosen)):
                    if data is not None:
                        check(key, data, errors)
                count("mget")
            elif choice < 0.85:
                key = rng.choice(keys)
                client.expire(key, 30)
                client.persist(key)
                client.strlen(key)
                client.getrange(key, 0, 100)
                count("expiry")
            else:
                counter = f"counter:{number}"
                client.incr(counter)
                client.append(f"log:{number}", b"x")
                count("incr")
        client.close()

    @guarded
    def native_client(number, rng):
        """Batches in a DRAM-only namespace, and in the default one, where values move
        to flash and back while they are read (libstrata checks every checksum)."""
        with strata.Client(port=server.native_port, namespace="kv") as small, \
                strata.Client(port=server.native_port) as default:
            while not stop.is_set():
                for client, prefix, spread in ((small, "kv", 64), (default, "native", 600)):
                    batch = [(f"{prefix}:{number}:{rng.randrange(spread)}",
                              os.urandom(rng.randint(1, 60000))) for _ in range(8)]
                    client.put_batch(batch)
                    reads = [(f"{prefix}:{number}:{rng.randrange(spread)}", bytearray(60000))
                             for _ in range(8)]
                    for status, _length in client.get_batch(reads):
                        if status < 0 and status != strata.ERR_NOT_FOUND:
                            errors.append(f"native get: {strata.strerror(status)}")
                client.pin_batch([batch[0][0]], 1000)
                small.match_prefix([key for key, _ in batch], lease_ms=100)
                count("native")

    @guarded
    def http_client(number, rng):
        base = f"http://127.0.0.1:{server.http_port}"
        while not stop.is_set():
            key = rng.choice(keys)
            try:
                with urllib.request.urlopen(f"{base}/keys/{key}", timeout=60) as response:
                    check(key, response.read(), errors)
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
            with urllib.request.urlopen(f"{base}/metrics", timeout=60) as response:
                response.read()
            count("http")

    @guarded
    def operator(number, rng):
        client = server.client()
        while not stop.is_set():
            client.config_set("memory", str(rng.choice([24, 28, 32]) * 1024 * 1024))
            client.config_set("pace-timeout", str(rng.choice([50000, 60000])))
            client.config_set("log-level", rng.choice(["info", "debug"]))
            client.info()
            server.process.send_signal(signal.SIGHUP)
            count("operator")
            time.sleep(0.1)
        client.config_set("memory", str(32 * 1024 * 1024))
        client.close()

    bodies = [resp_writer, resp_writer, resp_reader, resp_reader, native_client, http_client,
              operator]
    threads = [threading.Thread(target=body, args=(n,)) for n, body in enumerate(bodies)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(LOAD_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120 * SLOW)
    try:
        assert not errors, errors[:5]
        for kind in ("set", "get", "mget", "expiry", "incr", "native", "http", "operator"):
            assert counts.get(kind, 0) > 0, (kind, counts)
        flash = server.info("flash")
        assert flash["flash_written_bytes"] > 48 * 1024 * 1024, flash  # reclaim ran
        assert flash["flash_reclaims"] > 0 and flash["flash_reads"] > 0, flash
        client = server.client()
        for number in (2, 3):
            assert int(client.get(f"counter:{number}")) == client.strlen(f"log:{number}")
        client.close()
    finally:
        server.stop()
    assert "event=log_reopened" in log_path.read_text()
