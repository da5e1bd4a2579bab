#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/*) from the protocols'
documented forms: RESP commands (docs/redis-compatibility.md), native frames
(docs/protocol.md, include/strata_protocol.h) and HTTP requests (docs/http.md). The
first byte of every input chooses how it is cut into pieces (tests/fuzz/fuzz_common.c).
Run it again after adding a seed; the fuzzers add their own findings elsewhere."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

def crc32c(data):
    """CRC32C (Castagnoli), bit by bit: seeds are few and short."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def write(target, name, data, pieces=4):
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as output:
        output.write(bytes([pieces]) + data)

def resp(*arguments):
    out = b"*%d\r\n" % len(arguments)
    for argument in arguments:
        argument = argument if isinstance(argument, bytes) else str(argument).encode()
        out += b"$%d\r\n%s\r\n" % (len(argument), argument)
    return out

RESP_SEEDS = {
    "set-get": resp("SET", "k", "v") + resp("GET", "k"),
    "set-options": resp("SET", "k", "v", "NX", "EX", 100) + resp("SET", "k", "w", "XX", "GET", "KEEPTTL"),
    "mget-mset": resp("MSET", "a", "1", "b", "2") + resp("MGET", "a", "b", "c") + resp("MSETNX", "a", "1"),
    "counters": resp("INCR", "n") + resp("INCRBY", "n", 5) + resp("DECRBY", "n", 2) +
    resp("INCRBYFLOAT", "f", "1.5") + resp("DECR", "n"),
    "strings": resp("APPEND", "s", "abc") + resp("SETRANGE", "s", 10, "xyz") + resp("GETRANGE", "s", 0, -1) +
    resp("STRLEN", "s") + resp("GETDEL", "s") + resp("GETEX", "k", "PX", 500),
    "keys": resp("EXPIRE", "k", 10, "NX") + resp("TTL", "k") + resp("PERSIST", "k") + resp("RENAME", "k", "k2") +
    resp("COPY", "k2", "k3", "REPLACE") + resp("DEL", "k2", "k3") + resp("EXISTS", "k") + resp("TYPE", "k"),
    "scan": resp("SCAN", 0, "MATCH", "*", "COUNT", 10) + resp("KEYS", "a*") + resp("RANDOMKEY") + resp("DBSIZE"),
    "server": resp("INFO") + resp("INFO", "flash", "namespaces") + resp("CONFIG", "GET", "*") +
    resp("CONFIG", "SET", "max-value", "2mb") + resp("TIME") + resp("COMMAND", "COUNT"),
    "clients": resp("HELLO", 3, "SETNAME", "fuzz") + resp("CLIENT", "LIST") + resp("CLIENT", "INFO") +
    resp("CLIENT", "SETNAME", "x") + resp("PING", "hi") + resp("ECHO", "e") + resp("SELECT", 0),
    "inline": b"PING\r\nSET a b\r\nGET a\r\n\r\nQUIT\r\n",
    "large-argument": resp("SET", "big", b"x" * 20000) + resp("GET", "big") + resp("APPEND", "big", b"y" * 17000),
    "protocol-errors": b"*2\r\n$3\r\nGET\r\n$-5\r\n" + b"*-1\r\n*1\r\n$x\r\n",
    "debug": resp("DEBUG", "FAULT", "sync:nth=1") + resp("FLUSHALL") + resp("COMMAND", "DOCS", "get"),
}

for name, data in RESP_SEEDS.items():
    write("resp", name, data)

def frame(opcode, body, count, argument=0, request_id=7):
    return b"STRN" + bytes([1, opcode, 0, 0]) + struct.pack("<QQIi", request_id, len(body), count,
                                                           argument) + body

def namespace(name=b"default"):
    return struct.pack("<H", len(name)) + name

def put(key, value, flags=0, ttl=0, parent=b"", fingerprint=b"\0" * 16):
    if parent:
        flags |= 8
    return (struct.pack("<IIQQII", len(key), flags, len(value), ttl, crc32c(value), len(parent)) +
            fingerprint + struct.pack("<Q", 0) + key + parent + value)

def get(key, capacity=1 << 16, flags=0, fingerprint=b"\0" * 16):
    return struct.pack("<IIQQ", len(key), flags, capacity, 0) + fingerprint + key

def keys(*names):
    return b"".join(struct.pack("<I", len(k)) + k for k in names)

NATIVE_SEEDS = {
    "ping": frame(0, namespace(b""), 0),
    "put-get": frame(1, namespace() + put(b"a", b"value-a") + put(b"b", b""), 2) +
    frame(2, namespace() + get(b"a") + get(b"b") + get(b"missing"), 3),
    "put-flags": frame(1, namespace() + put(b"d", b"durable", flags=2, ttl=60000) +
                       put(b"f", b"fp", flags=4, fingerprint=b"F" * 16) + put(b"i", b"x", flags=1), 3) +
    frame(2, namespace() + get(b"f", flags=4, fingerprint=b"F" * 16), 1),
    "chain": frame(1, namespace(b"tenant") + put(b"p", b"parent") + put(b"c", b"child", parent=b"p"), 2) +
    frame(6, namespace(b"tenant") + keys(b"p", b"c", b"x"), 3, argument=1000),
    "keys": frame(3, namespace() + keys(b"a", b"b"), 2) + frame(5, namespace() + keys(b"a"), 1) +
    frame(7, namespace() + keys(b"a"), 1, argument=5000) + frame(8, namespace() + keys(b"a"), 1) +
    frame(4, namespace() + keys(b"a", b"b"), 2),
    "large-value": frame(1, namespace() + put(b"big", bytes(range(256)) * 80), 1) +
    frame(2, namespace() + get(b"big", capacity=1 << 20), 1),
    "bad-checksum": frame(1, namespace() + put(b"k", b"v")[:24] + b"\1\2\3\4" + put(b"k", b"v")[28:], 1),
    "unknown": frame(77, namespace(), 0) + frame(2, namespace(b"nobody") + get(b"a"), 1),
    "shm": frame(9, namespace(b"") + struct.pack("<IIQ", 1, 0, 4096), 1),
}

for name, data in NATIVE_SEEDS.items():
    write("native", name, data)

HTTP_SEEDS = {
    "health": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    "metrics-info": b"GET /metrics HTTP/1.1\r\n\r\nGET /info HTTP/1.1\r\n\r\nGET /history HTTP/1.1\r\n\r\n",
    "status-page": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "put-get": b"PUT /keys/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" +
    b"GET /keys/a HTTP/1.1\r\nRange: bytes=1-3\r\n\r\nHEAD /keys/a HTTP/1.1\r\n\r\n" +
    b"DELETE /keys/a HTTP/1.1\r\n\r\n",
    "chunked": b"PUT /keys/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n"
    + b"GET /keys/c HTTP/1.1\r\nRange: bytes=-2\r\n\r\n",
    "continue": b"PUT /keys/e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "percent": b"GET /keys/a%20b%2Fc HTTP/1.1\r\n\r\nGET /keys/..%2f HTTP/1.1\r\n\r\n",
    "bad": b"GET /x HTTP/2.0\r\n\r\nFOO / HTTP/1.1\r\n\r\n" + b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "body-discard": b"GET /health HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET /health HTTP/1.1\r\n\r\n",
}

for name, data in HTTP_SEEDS.items():
    write("http", name, data)

