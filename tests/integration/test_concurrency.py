"""Many clients at once: 16 threads writing and reading with every value verified."""
import hashlib
import random
import threading


def value_for(key, version):
    """A value whose bytes say which key and version wrote it, of varied size."""
    seed = hashlib.sha256(f"{key}/{version}".encode()).digest()
    size = 1 + int.from_bytes(seed[:4], "little") % 200000
    header = f"{key}/{version}/".encode()
    return (header + seed * (size // 32 + 1))[:max(size, len(header))]


def check_value(key, data):
    """Returns True when DATA is exactly what some version of KEY wrote."""
    prefix = f"{key}/".encode()
    if not data.startswith(prefix):
        return False
    version = int(data[len(prefix):].split(b"/", 1)[0])
    return data == value_for(key, version)


def test_sixteen_threads_verified(server):
    threads = 16
    operations = 600
    keys = [f"shared:{i}" for i in range(64)]
    errors = []
    counts = {"reads": 0, "writes": 0}
    lock = threading.Lock()

    def work(number):
        rng = random.Random(number)
        client = server.client()
        try:
            own = f"own:{number}"
            for i in range(operations):
                key = rng.choice(keys)
                if rng.random() < 0.4:
                    client.set(key, value_for(key, number * 100000 + i))
                    kind = "writes"
                else:
                    data = client.get(key)
                    if data is not None and not check_value(key, data):
                        errors.append((key, data[:40]))
                    kind = "reads"
                # A private key: the last write must always be read back exactly.
                if i % 10 == 0:
                    expected = value_for(own, i)
                    client.set(own, expected)
                    if client.get(own) != expected:
                        errors.append((own, "lost write"))
                with lock:
                    counts[kind] += 1
        except Exception as error:  # noqa: BLE001 - report any failure of the thread
            errors.append(("exception", repr(error)))
        finally:
            client.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert counts["reads"] + counts["writes"] == threads * operations
    client = server.client()
    for key in keys:
        data = client.get(key)
        assert data is None or check_value(key, data)
    client.close()


def test_concurrent_counters_are_exact(server):
    threads = 16
    increments = 500
    client = server.client()
    client.delete("counter", "log")

    def work(number):
        own = server.client()
        for _ in range(increments):
            own.incr("counter")
            own.append("log", b"x")
        own.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert int(client.get("counter")) == threads * increments
    assert client.strlen("log") == threads * increments
    client.close()
