"""LCS as Redis 7.0.15 answers it: the examples of Redis's documentation, LEN, IDX with
MINMATCHLEN and WITHMATCHLEN in RESP2 and RESP3, missing keys, keys of another type,
option errors, the transient memory bound (max-value, as Redis's proto-max-bulk-len), a
2,000 x 2,000 byte pair checked against a Python version of Redis's algorithm, and values
read back from flash."""
import random
import time

import pytest
import redis

from conftest import SLOW, Server
from resp import Connection, Error, Map

TYPE_ERROR = "ERR The specified keys must contain string values"


def redis_lcs(a, b, min_match_length=0):
    """Redis's lcsCommand in Python: (the LCS, its length, the IDX matches as
    (a_start, a_end, b_start, b_end), from the ends of the strings)."""
    width = len(b) + 1
    table = [[0] * width]
    for i in range(1, len(a) + 1):
        above, row, byte = table[-1], [0] * width, a[i - 1]
        for j in range(1, width):
            if byte == b[j - 1]:
                row[j] = above[j - 1] + 1
            else:
                row[j] = above[j] if above[j] > row[j - 1] else row[j - 1]
        table.append(row)
    length = table[len(a)][len(b)]
    result, matches = bytearray(length), []
    i, j, index = len(a), len(b), length
    a_start = len(a)
    a_end = b_start = b_end = 0
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[index - 1] = a[i - 1]
            if a_start == len(a):
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            index, i, j = index - 1, i - 1, j - 1
        else:
            if table[i - 1][j] > table[i][j - 1]:
                i -= 1
            else:
                j -= 1
            if a_start != len(a):
                emit = True
        if emit:
            if min_match_length == 0 or a_end - a_start + 1 >= min_match_length:
                matches.append((a_start, a_end, b_start, b_end))
            a_start = len(a)
    return bytes(result), length, matches


def idx_reply(matches, length, with_length=False):
    """The RESP2 IDX reply of MATCHES as redis-py returns it."""
    rows = [[[a0, a1], [b0, b1]] + ([a1 - a0 + 1] if with_length else [])
            for a0, a1, b0, b1 in matches]
    return [b"matches", rows, b"len", length]


def test_the_documentation_examples(client):
    client.mset({"key1": "ohmytext", "key2": "mynewtext"})
    assert client.execute_command("LCS", "key1", "key2") == b"mytext"
    assert client.execute_command("LCS", "key1", "key2", "LEN") == 6
    assert client.execute_command("LCS", "key1", "key2", "IDX") == [
        b"matches", [[[4, 7], [5, 8]], [[2, 3], [0, 1]]], b"len", 6]
    assert client.execute_command("LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4",
                                  "WITHMATCHLEN") == [b"matches", [[[4, 7], [5, 8], 4]], b"len", 6]
    assert client.execute_command("lcs", "key1", "key2", "idx", "withmatchlen") == [
        b"matches", [[[4, 7], [5, 8], 4], [[2, 3], [0, 1], 2]], b"len", 6]
    # A negative MINMATCHLEN is 0; options repeat and come in any order.
    assert client.execute_command("LCS", "key1", "key2", "MINMATCHLEN", "-5", "IDX", "IDX") == [
        b"matches", [[[4, 7], [5, 8]], [[2, 3], [0, 1]]], b"len", 6]
    assert client.execute_command("LCS", "key1", "key2", "MINMATCHLEN", "3") == b"mytext"
    assert client.execute_command("LCS", "key2", "key1", "LEN", "WITHMATCHLEN") == 6
    assert client.execute_command("LCS", "key1", "key1") == b"ohmytext"


def test_resp3_map(server, client):
    client.mset({"key1": "ohmytext", "key2": "mynewtext"})
    with Connection(server.port) as raw:
        raw.call("HELLO", "3")
        assert raw.call("LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN") == Map(
            {b"matches": [[[4, 7], [5, 8], 4]], b"len": 6})
        assert raw.call("LCS", "nokey", "nokey2", "IDX") == Map({b"matches": [], b"len": 0})
        assert raw.call("LCS", "key1", "key2") == b"mytext"
        assert raw.call("LCS", "key1", "key2", "LEN") == 6


def test_missing_and_empty_keys(client):
    client.set("key1", "ohmytext")
    client.set("empty", "")
    assert client.execute_command("LCS", "key1", "nokey") == b""
    assert client.execute_command("LCS", "nokey", "key1", "LEN") == 0
    assert client.execute_command("LCS", "key1", "nokey", "IDX") == [b"matches", [], b"len", 0]
    assert client.execute_command("LCS", "empty", "key1", "IDX", "WITHMATCHLEN") == [
        b"matches", [], b"len", 0]
    assert client.execute_command("LCS", "nokey", "nokey") == b""
    # An integer is a string like any other.
    client.set("n1", 12345)
    client.set("n2", 92385)
    assert client.execute_command("LCS", "n1", "n2") == b"235"


def test_types_and_errors(server, client):
    client.set("key1", "ohmytext")
    client.set("key2", "mynewtext")
    client.rpush("list", "a")
    with Connection(server.port) as raw:
        for arguments in (("list", "key1"), ("key1", "list"), ("list", "nokey", "IDX"),
                          # The types are checked before the options.
                          ("list", "key1", "foo"), ("key1", "list", "LEN", "IDX"),
                          ("list", "key1", "MINMATCHLEN", "x")):
            assert raw.call("LCS", *arguments) == Error(TYPE_ERROR), arguments
        assert raw.call("LCS", "key1", "key2", "LEN", "IDX") == Error(
            "ERR If you want both the length and indexes, please just use IDX.")
        assert raw.call("LCS", "key1", "key2", "foo") == Error("ERR syntax error")
        assert raw.call("LCS", "key1", "key2", "MINMATCHLEN") == Error("ERR syntax error")
        assert raw.call("LCS", "key1", "key2", "MINMATCHLEN", "x") == Error(
            "ERR value is not an integer or out of range")
        assert raw.call("LCS", "key1", "key2", "MINMATCHLEN", "99999999999999999999") == Error(
            "ERR value is not an integer or out of range")
        assert raw.call("LCS", "key1") == Error("ERR wrong number of arguments for 'lcs' command")
        # A syntax error is found before the LEN and IDX clash.
        assert raw.call("LCS", "key1", "key2", "LEN", "IDX", "foo") == Error("ERR syntax error")
    with pytest.raises(redis.ResponseError, match="must contain string values"):
        client.execute_command("LCS", "key1", "list")


def test_transient_memory_is_bounded_by_max_value(client, start_server):
    # (20,001 x 20,001) 4-byte cells exceed the default max-value (512 MB), as they exceed
    # Redis's proto-max-bulk-len.
    client.set("big", b"a" * 20000)
    with pytest.raises(redis.ResponseError) as error:
        client.execute_command("LCS", "big", "big")
    assert str(error.value) == ("Insufficient memory, transient memory for LCS exceeds "
                                "proto-max-bulk-len")
    assert client.execute_command("LCS", "big", "nokey", "LEN") == 0  # 20,001 cells
    server = start_server("--max-value", "1mb")
    small = server.client()
    small.set("a", b"x" * 600)
    small.set("b", b"x" * 400)
    with pytest.raises(redis.ResponseError, match="exceeds proto-max-bulk-len"):
        small.execute_command("LCS", "a", "a", "LEN")  # 601 * 601 * 4 > 1 MiB
    assert small.execute_command("LCS", "b", "b", "LEN") == 400  # 401 * 401 * 4 <= 1 MiB
    assert small.execute_command("LCS", "a", "b") == b"x" * 400
    small.close()


def test_a_large_pair_against_redis_algorithm(client):
    generator = random.Random(7)
    size = 2000 if SLOW == 1 else 800
    alphabet = b"ACGT\x00\xff\r\n"
    a = bytes(generator.choice(alphabet) for _ in range(size))
    b = bytes(generator.choice(alphabet) for _ in range(size))
    client.set("a", a)
    client.set("b", b)
    expected, length, matches = redis_lcs(a, b)
    assert len(expected) == length > size // 2
    assert client.execute_command("LCS", "a", "b") == expected
    assert client.execute_command("LCS", "a", "b", "LEN") == length
    assert client.execute_command("LCS", "a", "b", "IDX", "WITHMATCHLEN") == idx_reply(
        matches, length, True)
    long_matches = [m for m in matches if m[1] - m[0] + 1 >= 3]
    assert 0 < len(long_matches) < len(matches)
    assert client.execute_command("LCS", "a", "b", "IDX", "MINMATCHLEN", "3") == idx_reply(
        long_matches, length)
    # Each match is a real common substring, and the matches go from the end backwards.
    for a_start, a_end, b_start, b_end in matches:
        assert a[a_start:a_end + 1] == b[b_start:b_end + 1]
    assert [m[0] for m in matches] == sorted((m[0] for m in matches), reverse=True)


def test_values_read_back_from_flash(tmp_path):
    """Both values on flash: LCS reads them (through the worker's io_ring) and answers
    as for values in DRAM."""
    server = Server(tmp_path, "--pace-timeout", "60000", "--memory", "8mb", "--ssd-size",
                    "256mb", "--segment-size", "8mb", "--threads", "1")
    try:
        client = server.client()
        generator = random.Random(11)
        pairs = []
        for index in range(4):
            a = bytes(generator.choice(b"abcd") for _ in range(600))
            b = bytes(generator.choice(b"abcd") for _ in range(600))
            client.set(f"cold:a{index}", a)
            client.set(f"cold:b{index}", b)
            pairs.append((a, b))
        for index in range(300):
            client.set(f"flood:{index}", bytes([index % 251]) * 64 * 1024)
        written, deadline = -1, time.time() + 20 * SLOW
        while time.time() < deadline and server.info("flash")["flash_written_bytes"] != written:
            written = server.info("flash")["flash_written_bytes"]
            time.sleep(0.2)
        assert server.info("flash")["flash_items"] > 150
        reads_before = server.info("flash")["flash_reads"]
        for index, (a, b) in enumerate(pairs):
            expected, length, matches = redis_lcs(a, b)
            assert client.execute_command("LCS", f"cold:a{index}", f"cold:b{index}",
                                          "IDX") == idx_reply(matches, length)
            assert client.execute_command("LCS", f"cold:a{index}", f"cold:b{index}") == expected
        assert server.info("flash")["flash_reads"] >= reads_before + 2
        client.close()
    finally:
        server.stop()


def test_command_table_and_acl_category(server, client):
    with Connection(server.port) as raw:
        info = raw.call("COMMAND", "INFO", "lcs")
        docs = raw.call("COMMAND", "DOCS", "lcs")
    assert info[0][:6] == [b"lcs", -3, ["readonly"], 1, 2, 1]
    assert info[0][6] == ["@read", "@string", "@slow"]
    assert docs[1][docs[1].index(b"since") + 1] == b"7.0.0"
    assert docs[1][docs[1].index(b"group") + 1] == b"string"
    assert "lcs" in client.acl_cat("string")


def test_a_value_too_large_for_dram(tmp_path):
    """A value on flash larger than a quarter of the DRAM budget is read as a stream, never
    whole: LCS compares it with an empty or missing value as Redis does, and against any
    other value answers Redis's allocation error (docs/redis-compatibility.md)."""
    server = Server(tmp_path, "--pace-timeout", "60000", "--memory", "8mb", "--ssd-size",
                    "256mb", "--segment-size", "8mb", "--threads", "1")
    try:
        client = server.client()
        client.set("huge", b"ab" * (1536 * 1024))  # 3 MiB
        client.set("small", "xb")
        client.set("empty", "")
        for index in range(300):
            client.set(f"flood:{index}", bytes([index % 251]) * 64 * 1024)
        written, deadline = -1, time.time() + 20 * SLOW
        while time.time() < deadline and server.info("flash")["flash_written_bytes"] != written:
            written = server.info("flash")["flash_written_bytes"]
            time.sleep(0.2)
        assert client.memory_usage("huge") < 1024  # only its index entry is in DRAM
        assert client.execute_command("LCS", "huge", "nokey") == b""
        assert client.execute_command("LCS", "empty", "huge", "IDX") == [b"matches", [], b"len", 0]
        assert client.execute_command("LCS", "nokey", "huge", "LEN") == 0
        for arguments in (("huge", "small"), ("small", "huge", "LEN")):
            with pytest.raises(redis.ResponseError) as error:
                client.execute_command("LCS", *arguments)
            assert str(error.value) == ("Insufficient memory, failed allocating transient "
                                        "memory for LCS")
        assert client.strlen("huge") == 3 * 1024 * 1024
        client.close()
    finally:
        server.stop()
