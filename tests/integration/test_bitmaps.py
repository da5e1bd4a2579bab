"""Bit commands on strings (SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO):
replies and errors as recorded from Redis 7.0.15, WRONGTYPE, BITOP's destination rules,
atomic SETBITs from 4 connections, a 1 MiB bitmap, max-value, WATCH, and bitmaps that
moved to flash."""
import os
import threading
import time

import pytest
import redis

from conftest import SLOW, Server, hash_passwords, write_users_file
from resp import Connection, Error

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
OFFSET_ERROR = "bit offset is not an integer or out of range"
TYPE_ERROR = ("Invalid bitfield type. Use something like i16 u8. Note that u64 is not "
              "supported but i64 is.")
MIB = 1024 * 1024


def error_of(client, *arguments):
    with pytest.raises(redis.ResponseError) as caught:
        client.execute_command(*arguments)
    return str(caught.value)


def test_setbit_and_getbit(client):
    assert client.setbit("s", 7, 1) == 0
    assert client.setbit("s", 7, 1) == 1
    assert client.setbit("s", 7, 0) == 1
    assert client.get("s") == b"\x00"
    assert client.setbit("s", 100, 1) == 0
    assert client.strlen("s") == 13  # grown to the byte holding bit 100, zero-padded
    assert client.getbit("s", 100) == 1 and client.getbit("s", 99) == 0
    assert client.getbit("s", 10**9) == 0 and client.getbit("nokey", 5) == 0
    client.set("a", "A")  # 0x41: bits 1 and 7
    assert [client.getbit("a", i) for i in range(8)] == [0, 1, 0, 0, 0, 0, 0, 1]
    # The expiry stays, as with SETRANGE.
    client.set("ttl", "x", ex=100)
    client.setbit("ttl", 0, 1)
    assert 0 < client.ttl("ttl") <= 100


def test_setbit_and_getbit_errors(client):
    for offset in ("-1", "4294967296", "x", "1.5"):
        assert error_of(client, "SETBIT", "k", offset, "1") == OFFSET_ERROR
        assert error_of(client, "GETBIT", "k", offset) == OFFSET_ERROR
    for bit in ("2", "-1", "x"):
        assert error_of(client, "SETBIT", "k", "1", bit) == "bit is not an integer or out of range"
    assert client.exists("k") == 0
    client.hset("h", "a", "b")
    assert error_of(client, "SETBIT", "h", "1", "1") == WRONGTYPE
    assert error_of(client, "GETBIT", "h", "1") == WRONGTYPE
    # Argument errors come first, as in Redis.
    assert error_of(client, "SETBIT", "h", "-1", "1") == OFFSET_ERROR


def test_bitcount(client):
    client.set("s", "foobar")
    assert client.bitcount("s") == 26
    assert client.bitcount("s", 1, 1) == 6 and client.bitcount("s", 0, 0) == 4
    assert client.bitcount("s", -2, -1) == 7
    assert client.execute_command("BITCOUNT", "s", "5", "30", "BIT") == 17
    assert client.execute_command("BITCOUNT", "s", "-5", "-1", "bit") == 2
    assert client.execute_command("BITCOUNT", "s", "0", "-1", "byte") == 26
    assert client.bitcount("s", -1, -5) == 0 and client.bitcount("s", 3, 1) == 0
    assert client.bitcount("s", 0, -100) == 4
    assert client.bitcount("nokey") == 0
    assert error_of(client, "BITCOUNT", "s", "1") == "syntax error"
    assert error_of(client, "BITCOUNT", "s", "0", "1", "bad") == "syntax error"
    assert error_of(client, "BITCOUNT", "s", "0", "-1", "bit", "x") == "syntax error"
    assert error_of(client, "BITCOUNT", "s", "a", "1") == "value is not an integer or out of range"
    # Redis 7.0 looks the key up first: an absent key answers 0 whatever follows.
    assert client.execute_command("BITCOUNT", "nokey", "a", "b") == 0
    assert client.execute_command("BITCOUNT", "nokey", "1") == 0
    client.rpush("l", "x")
    assert error_of(client, "BITCOUNT", "l") == WRONGTYPE


def test_bitpos(client):
    client.set("s", "foobar")
    assert client.bitpos("s", 1) == 1 and client.bitpos("s", 0) == 0
    assert client.bitpos("s", 1, 2) == 17 and client.bitpos("s", 1, -1) == 41
    assert client.bitpos("s", 0, 2, -1, "BIT") == 3
    assert client.bitpos("s", 1, 7, 15, "BIT") == 9
    assert client.bitpos("s", 1, -3, -1, "bit") == 46
    assert client.bitpos("s", 1, 3, 1) == -1
    client.set("f", b"\xff\xff\xff")
    # No clear bit: without an end the value is zero-padded on the right; with one, -1.
    assert client.bitpos("f", 0) == 24 and client.bitpos("f", 0, 1) == 24
    assert client.bitpos("f", 0, 0, -1) == -1 and client.bitpos("f", 0, 0, -1, "BIT") == -1
    assert client.bitpos("nokey", 1) == -1 and client.bitpos("nokey", 0) == 0
    assert error_of(client, "BITPOS", "s", "2") == "The bit argument must be 1 or 0."
    assert error_of(client, "BITPOS", "s", "x") == "value is not an integer or out of range"
    assert error_of(client, "BITPOS", "s", "1", "a") == "value is not an integer or out of range"
    assert error_of(client, "BITPOS", "s", "1", "0", "1", "x") == "syntax error"
    assert error_of(client, "BITPOS", "s", "1", "0", "1", "bit", "x") == "syntax error"
    # An absent key answers before its range is parsed, as in Redis 7.0.
    assert client.execute_command("BITPOS", "nokey", "1", "a") == -1
    client.sadd("set", "m")
    assert error_of(client, "BITPOS", "set", "1") == WRONGTYPE
    assert error_of(client, "BITPOS", "set", "5") == "The bit argument must be 1 or 0."


def test_bitop(client):
    client.set("k1", b"\x0f\xf0")
    client.set("k2", b"\xff")
    assert client.bitop("AND", "d", "k1", "k2") == 2 and client.get("d") == b"\x0f\x00"
    assert client.bitop("OR", "d", "k1", "k2", "none") == 2 and client.get("d") == b"\xff\xf0"
    assert client.bitop("XOR", "d", "k1", "k2") == 2 and client.get("d") == b"\xf0\xf0"
    assert client.bitop("NOT", "d", "k1") == 2 and client.get("d") == b"\xf0\x0f"
    assert client.bitop("AND", "d", "k1", "none") == 2 and client.get("d") == b"\x00\x00"
    # An empty result deletes the destination, whatever it held.
    assert client.bitop("AND", "d", "none1", "none2") == 0 and client.exists("d") == 0
    client.hset("dest", "a", "b")
    client.expire("dest", 100)
    assert client.bitop("OR", "dest", "k2") == 1
    assert client.get("dest") == b"\xff" and client.ttl("dest") == -1  # replaced, no expiry
    client.hset("h", "a", "b")
    assert error_of(client, "BITOP", "AND", "d", "k1", "h") == WRONGTYPE
    assert error_of(client, "BITOP", "NOT", "d", "k1", "k2") == (
        "BITOP NOT must be called with a single source key.")
    assert error_of(client, "BITOP", "NAND", "d", "k1") == "syntax error"
    assert error_of(client, "BITOP", "AND", "d") == "wrong number of arguments for 'bitop' command"
    # The destination may be a source.
    assert client.bitop("NOT", "k2", "k2") == 1 and client.get("k2") == b"\x00"


def test_bitfield(client):
    assert client.execute_command("BITFIELD", "b", "SET", "i8", "0", "100", "INCRBY", "i8", "0",
                                  "100", "GET", "i8", "0") == [0, -56, -56]
    assert client.execute_command(
        "BITFIELD", "b", "OVERFLOW", "SAT", "INCRBY", "i8", "0", "100", "INCRBY", "u4", "#3",
        "20", "OVERFLOW", "FAIL", "INCRBY", "u4", "#3", "1", "GET", "u4", "#3") == [44, 15, None, 15]
    assert client.execute_command(
        "BITFIELD", "b", "overflow", "wrap", *["incrby", "u2", "100", "1"] * 4) == [1, 2, 3, 0]
    assert client.execute_command("BITFIELD", "b", "SET", "i64", "64", str(-2**63),
                                  "INCRBY", "i64", "64", "-1") == [0, 2**63 - 1]
    assert client.execute_command("BITFIELD", "b", "OVERFLOW", "SAT", "INCRBY", "i64", "64", "-5",
                                  "GET", "u63", "64") == [2**63 - 6, 4611686018427387901]
    assert client.execute_command("BITFIELD", "b", "SET", "u8", "0", "256", "SET", "u8", "0", "-1",
                                  "GET", "u8", "0") == [44, 0, 255]
    assert client.strlen("b") == 16
    assert client.execute_command("BITFIELD_RO", "b", "GET", "i8", "0", "GET", "u16", "4") == [
        -1, 61680]
    # A write that fails still makes room for it, as in Redis.
    assert client.execute_command("BITFIELD", "new", "OVERFLOW", "FAIL", "SET", "u2", "20",
                                  "9") == [None]
    assert client.get("new") == b"\x00\x00\x00"
    assert client.execute_command("BITFIELD", "nokey") == []
    assert client.execute_command("BITFIELD", "nokey", "GET", "u8", "0") == [0]
    assert client.exists("nokey") == 0  # GET alone creates nothing


def test_bitfield_errors(client):
    for field_type in ("u64", "i65", "i0", "I8", "x8", "u"):
        assert error_of(client, "BITFIELD", "k", "GET", field_type, "0") == TYPE_ERROR
    for offset in ("#-1", "-1", "#a", "#536870912", "4294967296"):
        assert error_of(client, "BITFIELD", "k", "GET", "u8", offset) == OFFSET_ERROR
    assert client.execute_command("BITFIELD", "k", "GET", "u8", "#536870911") == [0]
    assert error_of(client, "BITFIELD", "k", "GET", "u8") == "syntax error"
    assert error_of(client, "BITFIELD", "k", "bad") == "syntax error"
    assert error_of(client, "BITFIELD", "k", "OVERFLOW") == "syntax error"
    assert error_of(client, "BITFIELD", "k", "OVERFLOW", "bad") == "Invalid OVERFLOW type specified"
    assert error_of(client, "BITFIELD", "k", "SET", "u8", "0", "x") == (
        "value is not an integer or out of range")
    assert error_of(client, "BITFIELD_RO", "k", "SET", "u8", "0", "1") == (
        "BITFIELD_RO only supports the GET subcommand")
    assert client.execute_command("BITFIELD_RO", "k", "GET", "u8", "#1", "OVERFLOW", "SAT") == [0]
    assert client.exists("k") == 0
    client.hset("h", "a", "b")
    assert error_of(client, "BITFIELD", "h", "GET", "u8", "0") == WRONGTYPE
    assert error_of(client, "BITFIELD", "h", "SET", "u8", "0", "1") == WRONGTYPE
    assert error_of(client, "BITFIELD_RO", "h", "GET", "u8", "0") == WRONGTYPE
    assert error_of(client, "BITFIELD", "h", "GET", "x8", "0") == TYPE_ERROR  # parsed first


@pytest.mark.parametrize("initial", [0, 64 * 1024])
def test_concurrent_setbits_lose_no_bit(server, initial):
    """4 connections (on different workers) each set their own 500 bits of one key: a new
    small one (compare-and-swap) or a 64 KiB one (changed in place, or by compare-and-swap
    while another reader holds it)."""
    connection = server.client()
    connection.flushall()
    if initial:
        connection.set("shared", b"\x00" * initial)
    bits_each = 500
    failures = []

    def writer(number):
        try:
            own = server.client()
            for index in range(bits_each):
                assert own.setbit("shared", index * 4 + number, 1) == 0
            own.close()
        except Exception as error:  # noqa: BLE001 (reported below)
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60 * SLOW)
    assert not failures
    assert connection.bitcount("shared") == 4 * bits_each
    assert connection.strlen("shared") == max(initial, 4 * bits_each // 8)
    assert connection.bitpos("shared", 1) == 0 and connection.bitpos("shared", 0) == 4 * bits_each
    connection.close()


def test_a_one_mebibyte_bitmap(client):
    last = 8 * MIB - 1
    positions = [0, 1, 4095, 65536 * 8 + 3, 5 * 8 * 65536, last]
    for position in positions:
        assert client.setbit("big", position, 1) == 0
    assert client.strlen("big") == MIB
    assert client.bitcount("big") == len(positions)
    assert client.execute_command("BITCOUNT", "big", "1", str(last - 1), "BIT") == len(positions) - 2
    assert client.bitpos("big", 1, 1) == 4095 and client.bitpos("big", 1, 512) == 65536 * 8 + 3
    assert client.bitpos("big", 1, -1) == last
    assert client.execute_command("BITPOS", "big", "1", str(last - 10), "-1", "BIT") == last
    assert client.bitpos("big", 0) == 2
    assert client.getbit("big", last) == 1 and client.getbit("big", last - 1) == 0
    assert client.bitop("NOT", "inverse", "big") == MIB
    assert client.bitcount("inverse") == 8 * MIB - len(positions)
    assert client.execute_command("BITFIELD", "big", "INCRBY", "u16", str(MIB * 8 - 16), "7",
                                  "GET", "u8", str(MIB * 8 - 8)) == [8, 8]
    assert client.getrange("big", MIB - 2, MIB - 1) == b"\x00\x08"


def test_a_large_bitmap_grows_in_place_zero_padded(client):
    """A value APPEND left room after (its block grows in place): SETBIT and BITFIELD past
    its end zero-pad it, whether they change it in place or by compare-and-swap."""
    client.set("room", b"\xff" * (64 * 1024))
    client.append("room", b"\xff")
    length = 64 * 1024 + 1
    assert client.setbit("room", (length + 100) * 8 + 7, 1) == 0
    assert client.strlen("room") == length + 101
    assert client.getrange("room", length - 1, length + 100) == b"\xff" + b"\x00" * 100 + b"\x01"
    assert client.execute_command("BITFIELD", "room", "SET", "u8", str((length + 200) * 8),
                                  "255", "GET", "u8", str((length + 199) * 8)) == [0, 0]
    assert client.strlen("room") == length + 201
    assert client.bitcount("room") == length * 8 + 1 + 8
    assert client.bitpos("room", 0) == length * 8


def test_writes_past_max_value_answer_its_error(start_server):
    server = start_server("--memory", "64mb", "--max-value", "1mb")
    client = server.client()
    error = "string exceeds maximum allowed size (max-value)"
    assert client.setbit("k", 8 * MIB - 1, 1) == 0
    assert error_of(client, "SETBIT", "k", str(8 * MIB), "1") == error
    assert error_of(client, "BITFIELD", "k", "SET", "u8", str(8 * MIB - 4), "1") == error
    assert client.strlen("k") == MIB
    assert error_of(client, "SETBIT", "k", str(2**32), "1") == OFFSET_ERROR  # Redis's limit first
    assert client.getbit("k", 8 * MIB + 5) == 0  # reads past the end are fine
    client.close()


def test_setbit_breaks_a_watch_and_runs_in_multi(client):
    client.set("w", "")
    with client.pipeline() as pipe:
        pipe.watch("w")
        client.setbit("w", 3, 1)  # another connection's change
        pipe.multi()
        pipe.get("w")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    with client.pipeline() as pipe:
        pipe.setbit("w", 4, 1).bitcount("w").bitop("NOT", "n", "w").getbit("n", 3)
        assert pipe.execute() == [0, 2, 1, 0]


def test_command_table_and_acl_category(server, client):
    with Connection(server.port) as raw:
        info = raw.call("COMMAND", "INFO", "setbit", "bitop", "bitfield_ro", "getbit")
        docs = raw.call("COMMAND", "DOCS", "bitpos")
    assert info[0][:6] == [b"setbit", 4, ["write", "denyoom"], 1, 1, 1]
    assert info[0][6] == ["@write", "@bitmap", "@slow"]
    assert info[1][:6] == [b"bitop", -4, ["write", "denyoom"], 2, -1, 1]
    assert info[2][:6] == [b"bitfield_ro", -2, ["readonly", "fast"], 1, 1, 1]
    assert info[3][6] == ["@read", "@bitmap", "@fast"]
    assert docs[1][docs[1].index(b"group") + 1] == b"bitmap"
    assert "bitmap" in client.acl_cat()
    assert set(client.acl_cat("bitmap")) == {"setbit", "getbit", "bitcount", "bitpos", "bitop",
                                            "bitfield", "bitfield_ro"}


def test_bitmaps_on_flash(tmp_path):
    """Bitmaps pushed to flash by newer values are read and changed after coming back."""
    server = Server(tmp_path, "--pace-timeout", "60000", "--memory", "8mb", "--ssd-size",
                    "256mb", "--segment-size", "8mb", "--threads", "1")
    try:
        client = server.client()
        size = 64 * 1024
        names = ("getbit", "bitcount", "bitpos", "setbit", "bitfield", "bitfield_ro", "src")
        for name in names:
            client.set(f"cold:{name}", b"\x00" * (size - 1) + b"\x81")
        for index in range(300):
            client.set(f"flood:{index}", bytes([index % 251]) * size)
        written, deadline = -1, time.time() + 20 * SLOW
        while time.time() < deadline and server.info("flash")["flash_written_bytes"] != written:
            written = server.info("flash")["flash_written_bytes"]
            time.sleep(0.2)
        assert server.info("flash")["flash_items"] > 150
        reads_before = server.info("flash")["flash_reads"]
        last = size * 8 - 1
        assert client.getbit("cold:getbit", last) == 1
        assert client.bitcount("cold:bitcount") == 2
        assert client.bitpos("cold:bitpos", 1) == last - 7
        assert client.setbit("cold:setbit", 0, 1) == 0
        assert client.bitcount("cold:setbit") == 3
        assert client.execute_command("BITFIELD", "cold:bitfield", "INCRBY", "u8",
                                      str(last - 7), "1") == [0x82]
        assert client.execute_command("BITFIELD_RO", "cold:bitfield_ro", "GET", "u8",
                                      str(last - 7)) == [0x81]
        assert client.bitop("OR", "hot", "cold:src") == size
        assert client.bitcount("hot") == 2
        assert server.info("flash")["flash_reads"] >= reads_before + len(names)
        client.close()
    finally:
        server.stop()


def test_a_write_only_user_cannot_read_bits_through_writes(tmp_path):
    """SETBIT answers the old bit, BITFIELD old and new values, BITOP carries its sources
    to another key: like SETRANGE they need read as well as write (Redis's key
    specifications: RW, and R on BITOP's sources)."""
    admin_hash, secret_hash = hash_passwords("admin-pw", "secret")
    path = write_users_file(os.path.join(tmp_path, "users"),
                            f"user default off\n"
                            f"user admin on {admin_hash} namespace:*=all\n"
                            f"user writer on {secret_hash} namespace:default=write\n")
    server = Server(tmp_path, "--memory", "64mb", "--users", path)
    try:
        admin = server.client(username="admin", password="admin-pw")
        admin.set("kept", "secret")
        with Connection(server.port) as writer:
            assert writer.call("AUTH", "writer", "secret") == "OK"
            denied = "NOPERM No permissions to access a key"
            for command in (["SETBIT", "kept", "0", "1"], ["BITOP", "NOT", "mine", "kept"],
                            ["BITFIELD", "kept", "INCRBY", "u8", "0", "1"],
                            ["GETBIT", "kept", "0"], ["BITCOUNT", "kept"]):
                assert writer.call(*command) == Error(denied), command
            assert writer.call("SET", "mine", "v") == "OK"
        assert admin.get("kept") == b"secret" and admin.get("mine") == b"v"
        admin.close()
    finally:
        server.stop()
