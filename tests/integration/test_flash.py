"""The flash tier against a real server: retention past DRAM, restart from the saved
index and from a scan, a crash with write-through, damaged and truncated segments, a
filesystem that fills up, reads racing reclaim, pacing, and bad options."""
import glob
import hashlib
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest
import redis

from conftest import BINARY, SANITIZED, SLOW, THREAD_SANITIZED, Server

KIB = 1024
MIB = 1024 * 1024


def value_for(key, size):
    """A value that depends on the key, so every read can be checked without keeping it."""
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def record_size(key_length, value_length):
    """Bytes a record takes in a segment (docs/flash-tier.md)."""
    align = lambda n: (n + 7) & ~7  # noqa: E731
    return align(align(40 + key_length) + value_length + 4)


def FlashServer(directory, *arguments):
    """A server whose writes wait up to a minute for the flash writer (a slow or stalled
    disk must not turn into BUSY errors in tests that are not about pacing)."""
    return Server(directory, "--pace-timeout", "60000", *arguments)


def flash_info(server):
    return server.info("flash")


def wait_for(predicate, seconds=10):
    deadline = time.time() + seconds * SLOW
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def segment_files(directory):
    return sorted(glob.glob(os.path.join(directory, "segment-*")))


# ---- retention, restart, scan ---------------------------------------------------

# The workload: 64 MiB of DRAM, 2 GiB of flash, 1 GiB of 256 KiB values. The
# sanitized builds are several times slower, so they move a quarter of that, and the
# ThreadSanitizer build (the slowest, and there for the threads, not the volume) an
# eighth: still twice the DRAM budget.
RETENTION_BYTES = (128 if THREAD_SANITIZED else 256 if SANITIZED else 1024) * MIB
RETENTION_VALUE = 256 * KIB
RETENTION_KEYS = RETENTION_BYTES // RETENTION_VALUE


def retention_key(index):
    return f"retention:{index:06d}"


def read_all_verified(server, count=RETENTION_KEYS):
    client = server.client()
    present = 0
    wrong = []
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, 64):
        keys = [retention_key(i) for i in range(start, min(count, start + 64))]
        for key in keys:
            pipe.get(key)
        for key, value in zip(keys, pipe.execute()):
            if value is None:
                continue
            if value != value_for(key, RETENTION_VALUE):
                wrong.append(key)
            present += 1
    client.close()
    assert wrong == [], f"wrong values for {wrong[:5]}"
    return present


def test_retention_restart_and_scan(tmp_path):
    directory = tmp_path / "retention"
    options = ("--memory", "64mb", "--ssd-size", "2gb", "--threads", "2")
    server = FlashServer(directory, *options)
    try:
        client = server.client()
        pipe = client.pipeline(transaction=False)
        for i in range(RETENTION_KEYS):
            key = retention_key(i)
            pipe.set(key, value_for(key, RETENTION_VALUE))
            if i % 16 == 15:
                assert all(pipe.execute())
        assert all(pipe.execute())
        info = flash_info(server)
        assert info["flash_items"] > 0
        assert server.info("memory")["used_memory"] <= 64 * MIB
        # Every key is there and right: nothing was dropped under the burst.
        assert read_all_verified(server) == RETENTION_KEYS
        info = flash_info(server)
        assert info["flash_evictions"] == 0
        assert info["flash_pace_timeouts"] == 0
        assert info["flash_checksum_failures"] == 0
        assert info["flash_reads"] > 0
        assert 32 < info["flash_index_bytes_per_item"] <= 32 + 24 + 16 + 16
        client.close()
    finally:
        server.stop()

    # A clean stop saved the index: the next start loads it, and every key is back.
    assert os.path.exists(directory / "data" / "ssd" / "index")
    server = FlashServer(directory, *options)
    try:
        info = flash_info(server)
        assert info["flash_recovery_source"] == "index"
        index_ms = info["flash_recovery_ms"]
        assert info["flash_recovered_items"] == RETENTION_KEYS
        assert read_all_verified(server) == RETENTION_KEYS
    finally:
        server.kill()  # a crash: no index is saved

    assert not os.path.exists(directory / "data" / "ssd" / "index")
    server = FlashServer(directory, *options)
    try:
        info = flash_info(server)
        assert info["flash_recovery_source"] == "scan"
        scan_ms = info["flash_recovery_ms"]
        assert read_all_verified(server) == RETENTION_KEYS
        assert index_ms < scan_ms, (index_ms, scan_ms)
        print(f"\nrecovery of {RETENTION_BYTES // MIB} MiB: index {index_ms} ms, scan {scan_ms} ms")
    finally:
        server.stop()


# ---- write-through and a crash --------------------------------------------------


def test_crash_with_write_through_loses_no_acknowledged_write(tmp_path):
    server = FlashServer(tmp_path, "--memory", "16mb", "--ssd-size", "256mb", "--segment-size", "8mb",
                    "--write-policy", "through", "--fsync", "always")
    acknowledged = []
    stop = threading.Event()

    def write_until_killed():
        client = server.client()
        i = 0
        try:
            while not stop.is_set():
                key = f"through:{i}"
                if client.set(key, value_for(key, 20 * KIB)):
                    acknowledged.append(key)
                i += 1
        except (redis.ConnectionError, ConnectionError, OSError):
            pass

    writer = threading.Thread(target=write_until_killed)
    writer.start()
    assert wait_for(lambda: len(acknowledged) >= 200, 30)
    server.kill()
    stop.set()
    writer.join()
    server = FlashServer(tmp_path, "--memory", "16mb", "--ssd-size", "256mb", "--segment-size", "8mb")
    try:
        assert flash_info(server)["flash_recovery_source"] == "scan"
        client = server.client()
        missing = [key for key in acknowledged if client.get(key) != value_for(key, 20 * KIB)]
        assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        client.close()
    finally:
        server.stop()


def test_deletes_survive_a_crash_with_write_through(tmp_path):
    options = ("--memory", "64mb", "--ssd-size", "128mb", "--segment-size", "8mb",
               "--write-policy", "through", "--fsync", "always")
    server = FlashServer(tmp_path, *options)
    client = server.client()
    for i in range(20):
        client.set(f"d:{i}", value_for(f"d:{i}", 4 * KIB))
    for i in range(0, 20, 2):
        assert client.delete(f"d:{i}") == 1
    client.set("d:1", b"overwritten")
    server.kill()
    server = FlashServer(tmp_path, *options)
    try:
        client = server.client()
        assert [client.exists(f"d:{i}") for i in range(0, 20, 2)] == [0] * 10
        assert client.get("d:1") == b"overwritten"
        assert client.get("d:3") == value_for("d:3", 4 * KIB)
    finally:
        server.stop()


# ---- damaged segments -------------------------------------------------------------


def fill_and_stop(directory, count, size, *extra):
    server = FlashServer(directory, "--memory", "64mb", "--ssd-size", "256mb", "--segment-size", "8mb",
                    *extra)
    client = server.client()
    for i in range(count):
        key = f"rec:{i:04d}"
        assert client.set(key, value_for(key, size))
    client.close()
    return server


def find_record(directory, key):
    """(segment path, offset of the record) of KEY's newest record."""
    found = None
    for path in segment_files(directory):
        data = open(path, "rb").read()
        for match in re.finditer(re.escape(key.encode()), data):
            start = match.start() - 40
            if start >= 4096 and data[start:start + 4] == b"SDR1":
                found = (path, start)
    assert found is not None, f"no record of {key}"
    return found


def flip_byte(path, offset):
    with open(path, "r+b") as segment:
        segment.seek(offset)
        byte = segment.read(1)
        segment.seek(offset)
        segment.write(bytes([byte[0] ^ 0x5A]))


def test_flipped_bytes_are_never_served(tmp_path):
    size = 32 * KIB
    server = fill_and_stop(tmp_path, 100, size)
    server.stop()  # everything goes to flash, and the index is saved
    ssd = tmp_path / "data" / "ssd"
    # Damage a value (the header stays good: the key is known and logged) ...
    path, offset = find_record(str(ssd), "rec:0010")
    flip_byte(path, offset + 40 + 8 + 1000)
    # ... and, for the scan below, another one.
    path2, offset2 = find_record(str(ssd), "rec:0020")

    server = FlashServer(tmp_path, "--memory", "64mb", "--ssd-size", "256mb", "--segment-size", "8mb")
    try:
        assert flash_info(server)["flash_recovery_source"] == "index"
        client = server.client()
        assert client.get("rec:0010") is None  # checked on read: reads as missing
        assert client.exists("rec:0010") == 0  # and is gone from the index
        assert flash_info(server)["flash_checksum_failures"] == 1
        assert re.search(r"event=flash_checksum_failed key=rec:0010", server.read_log())
        for i in range(100):
            if i != 10:
                assert client.get(f"rec:{i:04d}") == value_for(f"rec:{i:04d}", size), i
        client.close()
    finally:
        server.kill()  # no saved index: the next start scans

    flip_byte(path2, offset2 + 40 + 8 + 5)
    server = FlashServer(tmp_path, "--memory", "64mb", "--ssd-size", "256mb", "--segment-size", "8mb")
    try:
        info = flash_info(server)
        assert info["flash_recovery_source"] == "scan"
        assert info["flash_checksum_failures"] >= 1
        assert re.search(r"event=flash_checksum_failed key=rec:0020", server.read_log())
        client = server.client()
        assert client.get("rec:0020") is None
        for i in range(100):
            if i not in (10, 20):
                assert client.get(f"rec:{i:04d}") == value_for(f"rec:{i:04d}", size), i
    finally:
        server.stop()


def test_damaged_header_is_skipped_by_the_scan(tmp_path):
    size = 8 * KIB
    server = fill_and_stop(tmp_path, 50, size, "--write-policy", "through")
    server.kill()
    path, offset = find_record(str(tmp_path / "data" / "ssd"), "rec:0030")
    flip_byte(path, offset + 12)  # inside the header: the key cannot be trusted
    server = FlashServer(tmp_path, "--memory", "64mb", "--ssd-size", "256mb", "--segment-size", "8mb")
    try:
        assert flash_info(server)["flash_checksum_failures"] >= 1
        client = server.client()
        assert client.get("rec:0030") is None
        for i in range(50):
            if i != 30:
                assert client.get(f"rec:{i:04d}") == value_for(f"rec:{i:04d}", size), i
    finally:
        server.stop()


def test_truncated_last_segment_keeps_complete_records(tmp_path):
    size = 10 * KIB
    server = fill_and_stop(tmp_path, 200, size, "--write-policy", "through")
    server.kill()
    ssd = str(tmp_path / "data" / "ssd")
    last = segment_files(ssd)[-1]
    _, cut_record = find_record(ssd, "rec:0150")
    cut = cut_record + 40 + 8 + size // 2  # in the middle of rec:0150's value
    data = open(last, "rb").read()
    complete = []
    for i in range(200):
        key = f"rec:{i:04d}"
        position = data.find(key.encode())
        if position < 0:
            continue
        start = position - 40
        if start + record_size(len(key), size) <= cut:
            complete.append(key)
    assert "rec:0149" in complete and "rec:0150" not in complete
    os.truncate(last, cut)
    server = FlashServer(tmp_path, "--memory", "64mb", "--ssd-size", "256mb", "--segment-size", "8mb")
    try:
        assert "event=flash_segment_truncated" in server.read_log()
        client = server.client()
        for key in complete:
            assert client.get(key) == value_for(key, size), key
        for i in range(150, 200):
            value = client.get(f"rec:{i:04d}")
            assert value is None or value == value_for(f"rec:{i:04d}", size)
        assert client.ping()
    finally:
        server.stop()


# ---- a filesystem that fills up -----------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path):
    """A 48 MiB tmpfs made for the test."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)],
                   check=True)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_filesystem_gives_errors_or_evicts_never_wrong_data(tmp_path, small_filesystem):
    server = FlashServer(tmp_path, "--memory", "16mb", "--ssd-dir", small_filesystem,
                    "--ssd-size", "1gb", "--segment-size", "8mb")
    try:
        client = server.client()
        stored = []
        errors = 0
        for i in range(400):  # 100 MiB into 16 MiB of DRAM and 48 MiB of filesystem
            key = f"full:{i}"
            try:
                client.set(key, value_for(key, 256 * KIB))
                stored.append(key)
            except redis.ResponseError:
                errors += 1
        present = 0
        for key in stored:
            value = client.get(key)
            if value is not None:
                assert value == value_for(key, 256 * KIB), key
                present += 1
        info = flash_info(server)
        assert present > 0
        assert info["flash_reclaims"] > 0 or info["flash_write_errors"] > 0
        assert "event=flash_full" in server.read_log() or info["flash_write_errors"] > 0
        assert info["flash_used_bytes"] <= 48 * MIB
        assert client.ping()
        print(f"\n{len(stored)} stored, {errors} refused, {present} still readable")
    finally:
        server.stop()


# ---- reads racing reclaim ---------------------------------------------------------


def test_reads_racing_reclaim_get_the_value_or_nothing(tmp_path):
    server = FlashServer(tmp_path, "--memory", "8mb", "--ssd-size", "32mb", "--segment-size", "4mb")
    size = 200 * KIB
    written = []
    stop = threading.Event()
    wrong = []
    hits = [0]

    def writer():
        client = server.client()
        i = 0
        while not stop.is_set() and i < 3000:
            key = f"race:{i}"
            client.set(key, value_for(key, size))
            written.append(key)
            i += 1

    def reader():
        client = server.client()
        generator = random.Random(7)
        while not stop.is_set():
            if len(written) < 10:
                time.sleep(0.01)
                continue
            key = written[generator.randrange(max(1, len(written) - 200), len(written))]
            value = client.get(key)
            if value is not None:
                hits[0] += 1
                if value != value_for(key, size):
                    wrong.append(key)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                    for _ in range(3)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: flash_info(server)["flash_reclaims"] >= 5, 60)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join()
    try:
        assert wrong == []
        assert hits[0] > 0
        info = flash_info(server)
        assert info["flash_reclaims"] >= 5
        assert info["flash_used_bytes"] <= 32 * MIB
    finally:
        server.stop()


# ---- GET while other clients are served, pipelining ----------------------------------


def test_pipelined_gets_of_flash_values_keep_their_order(tmp_path):
    server = FlashServer(tmp_path, "--memory", "8mb", "--ssd-size", "128mb", "--segment-size", "8mb",
                    "--threads", "1")
    try:
        client = server.client()
        keys = [f"order:{i}" for i in range(120)]
        for key in keys:
            client.set(key, value_for(key, 100 * KIB))
        assert wait_for(lambda: flash_info(server)["flash_items"] > 30)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.echo(key)
            pipe.get("absent")
        replies = pipe.execute()
        for i, key in enumerate(keys):
            assert replies[3 * i] == value_for(key, 100 * KIB)
            assert replies[3 * i + 1] == key.encode()
            assert replies[3 * i + 2] is None
        # A second read brings a value back to DRAM.
        assert flash_info(server)["flash_promotions"] == 0
        for key in keys[:10]:
            assert client.get(key) == value_for(key, 100 * KIB)
        assert flash_info(server)["flash_promotions"] > 0
        # Read-modify-write commands work on flash-resident values.
        assert client.append(keys[50], b"!") == 100 * KIB + 1
        assert client.strlen(keys[60]) == 100 * KIB
        assert client.getrange(keys[61], 0, 9) == value_for(keys[61], 100 * KIB)[:10]
        assert client.rename(keys[62], "order:renamed")
        assert client.get("order:renamed") == value_for(keys[62], 100 * KIB)
        assert client.getdel(keys[63]) == value_for(keys[63], 100 * KIB)
        assert client.ttl(keys[64]) == -1
        assert client.expire(keys[65], 100)
        assert 0 < client.ttl(keys[65]) <= 100
        assert sorted(client.keys("order:1*")) == sorted(k.encode() for k in keys if k.startswith("order:1"))
        client.close()
    finally:
        server.stop()


def test_http_get_reads_flash_values(tmp_path):
    server = FlashServer(tmp_path, "--memory", "8mb", "--ssd-size", "64mb", "--segment-size", "8mb")
    try:
        client = server.client()
        for i in range(60):
            client.set(f"web:{i}", value_for(f"web:{i}", 256 * KIB))
        status, _, body = server.http("/keys/web:3")
        assert status == 200 and body == value_for("web:3", 256 * KIB)
    finally:
        server.stop()


# ---- pacing -------------------------------------------------------------------------


def test_bursts_are_paced_and_nothing_acknowledged_is_dropped(tmp_path):
    server = FlashServer(tmp_path, "--memory", "16mb", "--ssd-size", "512mb", "--segment-size", "16mb",
                    "--pace-timeout", "20")
    acknowledged = []
    refused = []

    def burst(worker):
        client = server.client()
        for i in range(150):
            key = f"burst:{worker}:{i}"
            try:
                client.set(key, value_for(key, 256 * KIB))
                acknowledged.append(key)
            except redis.ResponseError as error:
                assert str(error).startswith("BUSY flash writer behind"), error
                refused.append(key)

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        info = flash_info(server)
        assert info["flash_paced_writes"] > 0
        assert info["flash_pace_timeouts"] == len(refused)
        client = server.client()
        lost = [key for key in acknowledged if client.get(key) != value_for(key, 256 * KIB)]
        assert lost == []
        assert info["flash_evictions"] == 0
        print(f"\n{len(acknowledged)} acknowledged, {len(refused)} refused after pacing")
    finally:
        server.stop()


# ---- options ------------------------------------------------------------------------


def test_flash_can_be_turned_off(tmp_path):
    server = FlashServer(tmp_path, "--memory", "8mb", "--ssd-size", "0")
    try:
        info = flash_info(server)
        assert info["flash_enabled"] == 0
        client = server.client()
        for i in range(100):
            client.set(f"off:{i}", value_for(f"off:{i}", 256 * KIB))
        assert sum(client.exists(f"off:{i}") for i in range(100)) < 100
        assert not os.path.exists(tmp_path / "data" / "ssd")
    finally:
        server.stop()


@pytest.mark.parametrize("arguments, message", [
    (("--segment-size", "2000000"), "segment-size must be a multiple of 4096"),
    (("--ssd-size", "100mb", "--segment-size", "64mb"), "ssd-size must hold at least two segments"),
    (("--write-policy", "sometimes"), "write-policy"),
    (("--fsync", "hourly"), "fsync"),
])
def test_bad_flash_options_are_refused(tmp_path, arguments, message):
    result = subprocess.run([BINARY, "--port", "0", "--http-port", "0", "--native-port", "0",
                             "--dir", str(tmp_path), *arguments],
                            capture_output=True, timeout=30 * SLOW)
    assert result.returncode != 0
    assert message in (result.stdout + result.stderr).decode()


def test_one_flash_directory_per_server(tmp_path):
    shared = tmp_path / "shared-ssd"
    first = FlashServer(tmp_path / "a", "--ssd-dir", shared)
    try:
        result = subprocess.run([BINARY, "--port", "0", "--http-port", "0", "--native-port", "0",
                                 "--dir", str(tmp_path / "b"), "--ssd-dir", str(shared)],
                                capture_output=True, timeout=30 * SLOW)
        assert result.returncode != 0
        assert b"in use by another strata-server" in result.stdout + result.stderr
    finally:
        first.stop()


def test_reclaim_reinserts_what_was_read_and_drops_the_rest(tmp_path):
    server = FlashServer(tmp_path, "--memory", "8mb", "--ssd-size", "32mb", "--segment-size", "4mb")
    try:
        client = server.client()
        size = 200 * KIB
        early = [f"early:{i}" for i in range(60)]
        for key in early:
            client.set(key, value_for(key, size))
        assert wait_for(lambda: flash_info(server)["flash_items"] >= 20)
        # Read four keys that are on flash once each (enough to mark them read, not to
        # promote them); the first keys written reached flash first.
        read_once = []
        for key in early:
            before = flash_info(server)["flash_reads"]
            assert client.get(key) == value_for(key, size)
            if flash_info(server)["flash_reads"] > before:
                read_once.append(key)
            if len(read_once) == 4:
                break
        assert len(read_once) == 4
        assert flash_info(server)["flash_promotions"] == 0
        i = 0
        while flash_info(server)["flash_reclaims"] < 4 and i < 600:
            client.set(f"late:{i}", value_for(f"late:{i}", size))
            i += 1
        info = flash_info(server)
        assert info["flash_reclaims"] >= 4
        assert info["flash_reinsertions"] >= 1
        assert info["flash_evictions"] >= 1
        kept = [key for key in read_once if client.get(key) == value_for(key, size)]
        assert kept, "no key read since it was written survived the reclaim"
        unread = [key for key in early if key not in read_once]
        assert sum(client.exists(key) for key in unread) < len(unread)
    finally:
        server.stop()


def test_clients_that_vanish_during_flash_reads(tmp_path):
    import socket

    server = FlashServer(tmp_path, "--memory", "8mb", "--ssd-size", "128mb", "--segment-size", "8mb",
                    "--threads", "1")
    try:
        client = server.client()
        keys = [f"gone:{i}" for i in range(80)]
        for key in keys:
            client.set(key, value_for(key, 256 * KIB))
        request = b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k.encode()) for k in keys)
        for _ in range(20):
            connection = socket.create_connection(("127.0.0.1", server.port))
            connection.sendall(request)
            connection.close()  # gone while its GETs wait for flash
        for key in keys[::7]:
            assert client.get(key) == value_for(key, 256 * KIB)
        assert client.ping()
    finally:
        server.stop()
