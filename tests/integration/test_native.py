"""The native batched protocol, libstrata (C) and its Python binding, against a real
server: batches, namespaces and quotas, fingerprints, checksums, chains and pins,
MATCH_PREFIX, shared memory, the KV key spec, and every bad input the issue lists."""
import hashlib
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import numpy
import pytest
import torch

from conftest import BINARY, ROOT, SLOW, Server
from native_wire import (C_TESTS, closed_by_server, frame, get_entry, name, put_entry, raw,
                         read_frame)

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = Server(tmp_path_factory.mktemp("native"), "--memory", "256mb", "--ssd-size", "0",
                      "--namespaces", "small=4mb,chains=16mb,pins=8mb")
    yield instance
    instance.stop()


def client_for(server, namespace="default", **options):
    return strata.Client(port=server.native_port, namespace=namespace, **options)


# ---- libstrata (C) -----------------------------------------------------------------

def test_c_library_against_the_server(server):
    result = subprocess.run([C_TESTS, str(server.native_port)], capture_output=True, text=True,
                            timeout=300 * SLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "libstrata: 0 failures" in result.stdout


def test_c_library_times_out_on_a_silent_server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        result = subprocess.run([C_TESTS, "timeout", str(listener.getsockname()[1])],
                                capture_output=True, text=True, timeout=60 * SLOW)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "timed out" in result.stdout
    finally:
        listener.close()


# ---- the key spec ------------------------------------------------------------------

def reference_key(tokens, parent=None, extra=b""):
    """docs/kv-keys.md, written again from the spec with hashlib."""
    digest = hashlib.sha256()
    digest.update(b"strata-kv-v1")
    digest.update(parent if parent is not None else b"\0" * 32)
    digest.update(struct.pack("<I", len(tokens)))
    digest.update(struct.pack(f"<{len(tokens)}I", *tokens))
    digest.update(struct.pack("<I", len(extra)))
    digest.update(extra)
    return digest.digest()


def test_key_vectors_match_the_spec_in_c_python_and_the_docs():
    first = reference_key([1, 2, 3, 4])
    expected = [first, reference_key([5, 6, 7, 4294967295], first),
                reference_key([1, 2, 3, 4], extra=b"lora:7"), reference_key([])]
    printed = subprocess.run([C_TESTS, "keys"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert printed == [key.hex() for key in expected]
    assert strata.kv_key([1, 2, 3, 4]) == expected[0]
    assert strata.kv_key([5, 6, 7, 4294967295], expected[0]) == expected[1]
    assert strata.kv_key([1, 2, 3, 4], extra=b"lora:7") == expected[2]
    assert strata.kv_key([]) == expected[3]
    with open(os.path.join(ROOT, "docs", "kv-keys.md")) as document:
        text = document.read()
    for key in expected:
        assert key.hex() in text, "docs/kv-keys.md must list the vector " + key.hex()
    chain = strata.kv_chain(list(range(40)), 16)
    assert len(chain) == 2 and chain[1] == reference_key(list(range(16, 32)), chain[0])


# ---- the Python binding ------------------------------------------------------------

def test_python_binding_with_numpy_torch_and_batches(server):
    with client_for(server) as client:
        array = numpy.random.default_rng(1).random((256, 1024), dtype=numpy.float32)
        client.put("py/array", array)
        back = numpy.empty_like(array)
        assert client.get("py/array", back) == array.nbytes
        assert numpy.array_equal(array, back)

        tensor = torch.randn(4, 2, 16, 64, dtype=torch.float16)
        client.put(b"py/tensor", tensor)
        received = torch.empty_like(tensor)
        assert client.get(b"py/tensor", received) == tensor.numel() * 2
        assert torch.equal(tensor, received)

        values = [os.urandom(size) for size in (0, 10, 70000, 300000)]
        statuses = client.put_batch([(f"py/b{i}", value) for i, value in enumerate(values)])
        assert statuses == [0, 0, 0, 0]
        buffers = [bytearray(len(value) + 5) for value in values]
        results = client.get_batch([(f"py/b{i}", buffers[i]) for i in range(len(values))])
        for (status, length), value, buffer in zip(results, values, buffers):
            assert status == 0 and length == len(value) and bytes(buffer[:length]) == value
        assert client.exists_batch(["py/b1", "py/none"]) == [0, strata.ERR_NOT_FOUND]
        assert client.delete_batch(["py/b1"]) == [0]
        assert not client.exists("py/b1")

        # A buffer too small: an error for that entry, the bytes are not sent.
        small = bytearray(5)
        assert client.get_batch([("py/b2", small)]) == [(strata.ERR_BUFFER_TOO_SMALL, 70000)]
        assert small == bytearray(5)
        with pytest.raises(strata.Error) as error:
            client.get("py/b2", small)
        assert error.value.code == strata.ERR_BUFFER_TOO_SMALL

        # Fingerprints: another model's GET gets an error, never the bytes.
        model_a, model_b = b"A" * 16, b"B" * 16
        client.put("py/fp", b"block-of-model-a", fingerprint=model_a)
        buffer = bytearray(64)
        assert client.get_batch([{"key": "py/fp", "buffer": buffer, "fingerprint": model_b}]) \
            == [(strata.ERR_FINGERPRINT, 0)]
        assert buffer == bytearray(64)
        assert client.get("py/fp", buffer, fingerprint=model_a) == 16


def test_python_get_without_a_buffer(server):
    """get(key) with no buffer returns a new bytearray of the value's size: values that
    fit the first read, and larger ones read again at the size the server reported."""
    with client_for(server) as client:
        values = {"nb/empty": b"", "nb/small": b"abc",
                  "nb/first": os.urandom(strata.Client.GET_FIRST_CAPACITY),
                  "nb/large": os.urandom(strata.Client.GET_FIRST_CAPACITY * 5 + 3)}
        for key, value in values.items():
            client.put(key, value)
        for key, value in values.items():
            got = client.get(key)
            assert isinstance(got, bytearray) and got == value, key
        with pytest.raises(strata.Error) as error:
            client.get("nb/none")
        assert error.value.code == strata.ERR_NOT_FOUND
        client.put("nb/fp", b"model-a block", fingerprint=b"A" * 16)
        with pytest.raises(strata.Error) as error:
            client.get("nb/fp", fingerprint=b"B" * 16)
        assert error.value.code == strata.ERR_FINGERPRINT
        assert client.get("nb/fp", fingerprint=b"A" * 16) == b"model-a block"


def test_values_put_over_resp_are_not_served_natively(server):
    server.client().set("resp-key", "plain value")
    with client_for(server) as client:
        with pytest.raises(strata.Error) as error:
            client.get("resp-key", bytearray(64))
        assert error.value.code == strata.ERR_NOT_NATIVE


# ---- bad input ---------------------------------------------------------------------

BAD_FRAMES = [
    # (what, bytes, expected status, connection closed?)
    ("unknown version", frame(2, name() + get_entry(b"k"), 1, version=9), -13, True),
    ("bad magic", frame(2, name() + get_entry(b"k"), 1, magic=b"XXXX"), -12, True),
    ("count that overflows", frame(2, name() + get_entry(b"k"), 0x7FFFFFFF), -12, True),
    ("body over max-request", b"STRN" + bytes([1, 1, 0, 0]) +
     struct.pack("<QQIi", 7, 1 << 62, 1, 0), -7, True),
    ("entry running past the body", frame(3, name() + struct.pack("<I", 500) + b"abc", 1), -12,
     True),
    ("unknown opcode", frame(77, name(), 0), -12, False),
    ("unknown namespace", frame(2, name(b"nobody") + get_entry(b"k"), 1), -6, False),
    ("pin without a lease", frame(7, name() + struct.pack("<I", 1) + b"k", 1), -17, False),
]


@pytest.mark.parametrize("what, data, status, closes", BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
def test_bad_frames_get_a_clear_error_and_others_carry_on(server, what, data, status, closes):
    with raw(server) as sock:
        sock.sendall(data)
        _opcode, _request, count, got, body = read_frame(sock)
        assert got == status, (what, body)
        assert count == 0 and len(body) > 0  # a message says what was wrong
        if closes:
            assert closed_by_server(sock)
        else:
            sock.sendall(frame(0, name(b""), 0))
            assert read_frame(sock)[3] == 0  # the same connection goes on
    with client_for(server) as other:
        other.ping()


def test_a_broken_header_after_a_batch_releases_nothing_it_does_not_hold(server):
    """A PUT batch, then a header that names GET but fails its magic check: closing the
    connection must not release GET results that were never set (a crash once)."""
    with raw(server) as sock:
        body = name() + b"".join(put_entry(b"broken/%d" % i, b"v" * 10) for i in range(40))
        sock.sendall(frame(1, body, 40))
        assert read_frame(sock)[3] == 0
        sock.sendall(frame(2, name() + get_entry(b"broken/0"), 1, magic=b"XXXX"))
        assert read_frame(sock)[3] == -12
        assert closed_by_server(sock)
    with client_for(server) as other:
        other.ping()
        assert other.exists("broken/39")


def ttl_put(key, ttl):
    return put_entry(key, b"ttl value", ttl=ttl)


@pytest.mark.parametrize("ttl", [(1 << 63) - 1, 1 << 63, (1 << 64) - 1])
def test_a_time_to_live_past_the_end_of_time_is_refused(server, ttl):
    with raw(server) as sock:
        sock.sendall(frame(1, name() + ttl_put(b"ttl/huge", ttl) +
                           ttl_put(b"ttl/decade", 10 * 365 * 86400 * 1000), 2))
        _opcode, _request, count, status, body = read_frame(sock)
        assert (status, count) == (0, 2)
        assert struct.unpack("<2i", body) == (strata.ERR_INVALID, 0)
    with client_for(server) as client:
        assert not client.exists("ttl/huge")
        assert client.exists("ttl/decade")
    ttl = server.client().pttl("ttl/decade")
    assert 9 * 365 * 86400 * 1000 < ttl <= 10 * 365 * 86400 * 1000


def test_an_empty_value_alone_in_its_frame(server):
    with raw(server) as sock:
        sock.sendall(frame(1, name() + put_entry(b"empty/value", b""), 1))
        _opcode, _request, count, status, body = read_frame(sock)
        assert (status, count, body) == (0, 1, struct.pack("<i", 0))
    with client_for(server) as client:
        assert client.get("empty/value", bytearray(1)) == 0


def test_max_clients_refusal_is_an_error_frame(tmp_path):
    crowded = Server(tmp_path, "--max-clients", "2", "--ssd-size", "0")
    try:
        held = [raw(crowded), raw(crowded)]
        for sock in held:
            sock.sendall(frame(0, name(b""), 0))
            assert read_frame(sock)[3] == 0
        with raw(crowded) as refused:
            _opcode, request, count, status, message = read_frame(refused)
            assert (request, count, status) == (0, 0, strata.ERR_BUSY)
            assert message == b"max number of clients reached"
            assert closed_by_server(refused)
        for sock in held:
            sock.close()
    finally:
        crowded.stop()


def test_a_frame_cut_short_stores_nothing_of_the_cut_entry(server):
    first, second = os.urandom(100000), os.urandom(100000)
    body = name() + put_entry(b"cut/first", first) + put_entry(b"cut/second", second)
    data = frame(1, body, 2)
    with raw(server) as sock:
        sock.sendall(data[:-50000])  # the client vanishes mid-value
    with client_for(server) as client:
        deadline = time.time() + 10 * SLOW  # the server takes the first entry when it runs
        while not client.exists("cut/first") and time.time() < deadline:
            time.sleep(0.05)
        buffer = bytearray(100000)
        assert client.get("cut/first", buffer) == 100000 and bytes(buffer) == first
        assert not client.exists("cut/second")


def test_a_value_that_fails_its_checksum_is_refused(server):
    value = os.urandom(50000)
    with raw(server) as sock:
        body = name() + put_entry(b"bad/sum", value, checksum=strata.checksum(value) ^ 1) + \
            put_entry(b"good/sum", value)
        sock.sendall(frame(1, body, 2))
        _opcode, _request, count, status, body = read_frame(sock)
        assert status == 0 and count == 2
        assert struct.unpack("<2i", body) == (strata.ERR_CHECKSUM, 0)
    with client_for(server) as client:
        assert not client.exists("bad/sum")
        assert client.exists("good/sum")
    assert re.search(r"event=checksum_mismatch .*key=bad/sum", server.read_log())


def test_oversized_value_is_refused_and_the_batch_goes_on(tmp_path):
    small = Server(tmp_path, "--max-value", "64kb", "--ssd-size", "0")
    try:
        with client_for(small) as client:
            statuses = client.put_batch([("big", bytes(100000)), ("fine", b"ok")])
            assert statuses == [strata.ERR_TOO_LARGE, 0]
            assert client.exists("fine") and not client.exists("big")
    finally:
        small.stop()


def test_quota_exceeded_is_an_error_and_other_namespaces_are_untouched(server):
    block = bytes(1 << 20)
    with client_for(server, "small") as small, client_for(server) as default:
        default.put("quota/witness", b"still here")
        # Cache values: the namespace evicts its own older values to stay in its quota.
        statuses = small.put_batch([(f"cache/{i}", block) for i in range(12)])
        assert statuses == [0] * 12
        # Durable values are never evicted: past the quota they are refused.
        statuses = small.put_batch([{"key": f"durable/{i}", "value": block,
                                     "flags": strata.PUT_DURABLE} for i in range(8)])
        assert statuses[0] == 0 and strata.ERR_QUOTA in statuses
        # One value larger than the whole quota.
        assert small.put_batch([("huge", bytes(5 << 20))]) == [strata.ERR_QUOTA]
        assert default.exists("quota/witness")
    info = server.client().info("namespaces")
    line = info["namespace_small"]
    assert line["quota_bytes"] == 4 * 1024 * 1024 and line["used_bytes"] <= line["quota_bytes"]
    assert line["quota_errors"] >= 2


def test_durable_values_survive_a_flood_of_cache_writes(tmp_path):
    """A durable PUT is protected in the same step as the write: while other clients fill
    the namespace with cache values, no acknowledged durable value is ever evicted."""
    crowded = Server(tmp_path, "--ssd-size", "0", "--namespaces", "tight=4mb", "--threads", "2")
    try:
        stop = threading.Event()
        unexpected = []

        def flood():
            with client_for(crowded, "tight") as client:
                value = os.urandom(1024 * 1024)
                index = 0
                while not stop.is_set():
                    try:
                        client.put(f"flood/{threading.get_ident()}/{index}", value)
                    except strata.Error as error:
                        # A namespace full of durable values refuses cache writes (QUOTA);
                        # anything else fails the test (from the main thread, below).
                        if error.code != strata.ERR_QUOTA:
                            unexpected.append(error)
                            return
                    index += 1

        threads = [threading.Thread(target=flood) for _ in range(3)]
        for thread in threads:
            thread.start()
        acknowledged = []
        try:
            with client_for(crowded, "tight") as client:
                for batch in range(100):
                    keys = [f"durable/{batch}/{i}" for i in range(10)]
                    statuses = client.put_batch([{"key": key, "value": b"d" * 1024,
                                                  "flags": strata.PUT_DURABLE} for key in keys])
                    acknowledged += [key for key, status in zip(keys, statuses) if status == 0]
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert not unexpected, unexpected
        assert len(acknowledged) > 100
        with client_for(crowded, "tight") as client:
            present = client.exists_batch(acknowledged)
        missing = [key for key, status in zip(acknowledged, present) if status != 0]
        assert not missing, f"{len(missing)} acknowledged durable values were evicted"
    finally:
        crowded.stop()


def test_shared_memory_is_refused_over_tcp(server):
    # The memfd must travel with SCM_RIGHTS on the Unix socket (tests/integration/
    # test_unix_socket.py); over TCP the server never opens another process's descriptor.
    fd = os.memfd_create("sealed", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, 1 << 20)
    try:
        with raw(server) as sock:
            entry = struct.pack("<IIQ", os.getpid(), fd, 1 << 20)  # the old pid/fd form
            sock.sendall(frame(9, name(b"") + entry, 1))
            _opcode, _request, _count, status, message = read_frame(sock)
            assert status == strata.ERR_SHM and b"needs the Unix socket" in message
            # Without a region, a GET into shared memory is an error for that entry.
            sock.sendall(frame(2, name() + get_entry(b"good/sum", flags=16), 1))
            _opcode, _request, count, status, body = read_frame(sock)
            assert status == 0 and struct.unpack("<i", body[:4])[0] == strata.ERR_SHM
    finally:
        os.close(fd)
    with client_for(server) as client:
        with pytest.raises(strata.Error) as refused:
            client.shm_create(1 << 20)
        assert refused.value.code == strata.ERR_SHM
        client.ping()


# ---- chains, pins, prefix lookups --------------------------------------------------

def test_chains_lose_their_tail_first(server):
    chains, links, size = 24, 48, 32 * 1024  # 36 MiB through a 16 MiB namespace
    keys = [strata.kv_chain(list(range(chain * 100000, chain * 100000 + links * 16)), 16)
            for chain in range(chains)]
    value = bytes(size)
    refused = 0
    with client_for(server, "chains") as client:
        for link in range(links):
            batch = [{"key": keys[c][link], "value": value,
                      "parent": keys[c][link - 1] if link else None} for c in range(chains)]
            statuses = client.put_batch(batch)
            assert set(statuses) <= {0, strata.ERR_PARENT_MISSING}
            refused += statuses.count(strata.ERR_PARENT_MISSING)
        present_total = 0
        for chain in keys:
            present = [status == 0 for status in client.exists_batch(chain)]
            count = sum(present)
            assert present == [True] * count + [False] * (links - count), "a hole in a chain"
            assert client.match_prefix(chain) == count
            present_total += count
    assert 0 < present_total < chains * links
    info = server.client().info("namespaces")["namespace_chains"]
    assert info["used_bytes"] <= info["quota_bytes"]


def test_match_prefix_pins_what_it_found(server):
    block = bytes(1 << 20)
    with client_for(server, "pins") as client:
        chain = strata.kv_chain(list(range(64)), 16)
        assert client.put_batch([{"key": key, "value": block,
                                  "parent": chain[i - 1] if i else None}
                                 for i, key in enumerate(chain[:3])]) == [0, 0, 0]
        assert client.match_prefix(chain, lease_ms=60000) == 3
        client.put("lone", block)
        assert client.pin_batch(["lone", "absent"], 60000) == [0, strata.ERR_NOT_FOUND]
        # Flood the 8 MiB namespace: the pinned keys stay.
        for i in range(24):
            client.put(f"flood/{i}", block)
        assert client.exists_batch(chain[:3] + [b"lone"]) == [0, 0, 0, 0]
        # Unpinned, they can go.
        client.unpin_batch(chain[:3] + [b"lone"])
        for i in range(24):
            client.put(f"flood2/{i}", block)
        assert client.exists("lone") is False


# ---- with the flash tier -----------------------------------------------------------

def test_native_values_read_back_from_flash_are_checked(tmp_path):
    flash = Server(tmp_path, "--memory", "32mb", "--ssd-size", "512mb",
                   "--segment-size", "16mb", "--pace-timeout", "60000")
    try:
        rng = numpy.random.default_rng(3)
        values = [rng.integers(0, 255, 1 << 20, dtype=numpy.uint8) for _ in range(96)]
        with client_for(flash) as client:
            for start in range(0, len(values), 8):
                statuses = client.put_batch([(f"flash/{i}", values[i])
                                             for i in range(start, start + 8)])
                assert statuses == [0] * 8
            buffer = numpy.empty(1 << 20, dtype=numpy.uint8)
            for i, value in enumerate(values):
                assert client.get(f"flash/{i}", buffer) == 1 << 20
                assert numpy.array_equal(buffer, value)
        info = flash.client().info("flash")
        assert info["flash_reads"] > 0
    finally:
        flash.stop()


# ---- observability and options -----------------------------------------------------

def namespace_field(server, namespace, field):
    line = server.info("namespaces")[f"namespace_{namespace}"]
    return line[field] if isinstance(line, dict) else int(re.search(rf"{field}=(\d+)", line)[1])


def namespace_keys(server, namespace):
    return namespace_field(server, namespace, "keys")


def test_keys_of_every_namespace_expire_unread(server):
    """Active expiry runs in every namespace, not only the default one."""
    before = namespace_keys(server, "pins")
    expired_before = namespace_field(server, "pins", "expired_keys")
    started = time.monotonic()
    with client_for(server, "pins") as client:
        client.put_batch([(f"brief/{i}", b"x" * 100) for i in range(10)])
        for i in range(200):
            client.put(f"expiring/{i}", b"y" * 100, ttl_ms=100)
    keys = namespace_keys(server, "pins")
    if time.monotonic() - started < 0.09:  # else the first may have gone already
        assert keys >= before + 200
    deadline = time.time() + 10 * SLOW
    while time.time() < deadline and namespace_keys(server, "pins") > before + 10:
        time.sleep(0.05)
    assert namespace_keys(server, "pins") == before + 10  # the 200 expired ones went
    # every one of them was stored, and went by expiring
    assert namespace_field(server, "pins", "expired_keys") - expired_before == 200


def test_namespaces_in_info_and_metrics(server):
    info = server.client().info("namespaces")
    assert set(info) == {"namespace_default", "namespace_small", "namespace_chains",
                         "namespace_pins"}
    assert info["namespace_default"]["quota_bytes"] == (256 - 4 - 16 - 8) * 1024 * 1024
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics").read()
    text = metrics.decode()
    assert 'strata_namespace_quota_bytes{namespace="small"} 4194304' in text
    assert re.search(r'strata_namespace_native_puts_total\{namespace="default"\} [1-9]', text)


def test_each_namespace_counts_its_own_hits_and_misses(server):
    """Hits and misses are counted by the namespace's own store, not all in 'default'."""
    def counters():
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{server.http_port}/metrics").read().decode()
        return {(family, space): int(value) for family, space, value in re.findall(
            r'strata_namespace_(hits|misses)_total\{namespace="([^"]+)"\} (\d+)', text)}
    before = counters()
    with client_for(server, "small") as client:
        client.put("counted", b"z" * 64)
        buffer = bytearray(64)
        for _ in range(5):
            assert client.get("counted", buffer) == 64
        missed = client.get_batch([{"key": f"absent/{i}", "buffer": bytearray(8)}
                                   for i in range(3)])
        assert all(status != strata.OK for status, _ in missed)
    after = counters()
    assert after[("hits", "small")] - before[("hits", "small")] == 5
    assert after[("misses", "small")] - before[("misses", "small")] == 3
    assert after[("hits", "default")] == before[("hits", "default")]
    info = server.client().info()
    assert info["keyspace_hits"] >= after[("hits", "small")] + after[("hits", "default")]


@pytest.mark.parametrize("value, message", [
    ("default=4mb", "'default' is the Redis keyspace"),
    ("a=1", "bad quota"),
    ("bad name=4mb", "bad name"),
    ("a=4mb,a=8mb", "declared twice"),
    ("a=2gb", "must exceed the sum"),
])
def test_bad_namespace_options_are_refused(tmp_path, value, message):
    result = subprocess.run([BINARY, "--port", "0", "--http-port", "0", "--native-port", "0",
                             "--dir", str(tmp_path), "--namespaces", value],
                            capture_output=True, text=True, timeout=30 * SLOW)
    assert result.returncode == 2
    assert message in result.stderr


# ---- the example -------------------------------------------------------------------

def test_kv_offload_example(server):
    result = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "examples", "kv_offload.py"),
                             "--port", str(server.native_port)],
                            capture_output=True, text=True, timeout=600 * SLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "logits match" in result.stdout
    assert re.search(r"prefill without strata: [\d.]+ ms", result.stdout)
    assert re.search(r"prefill with strata: [\d.]+ ms", result.stdout)
