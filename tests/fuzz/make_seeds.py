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


# S3 (tests/fuzz/fuzz_s3.c): the first byte picks the parser, so these seeds are written
# without the piece-pattern byte of the others. Chunked bodies are signed as the S3 API
# reference's chunked upload example is (its key, scope and seed signature), so that
# the fuzzer starts from bodies that decode.
import hashlib
import hmac

def s3_write(name, mode, data):
    directory = os.path.join(HERE, "corpus", "s3")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as output:
        output.write(bytes([mode]) + data)

def _hmac(key, text):
    return hmac.new(key, text.encode() if isinstance(text, str) else text, hashlib.sha256).digest()

S3_KEY = _hmac(_hmac(_hmac(_hmac(b"AWS4wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524"),
                           "us-east-1"), "s3"), "aws4_request")
S3_HEAD = "20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
S3_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"

def signed_chunks(chunks, trailers=None):
    """An aws-chunked body with chained chunk signatures (and a signed trailer part)."""
    previous, body = S3_SEED, b""
    empty = hashlib.sha256(b"").hexdigest()
    for chunk in chunks + [b""]:
        text = "AWS4-HMAC-SHA256-PAYLOAD\n" + S3_HEAD + previous + "\n" + empty + "\n" + \
            hashlib.sha256(chunk).hexdigest()
        previous = hmac.new(S3_KEY, text.encode(), hashlib.sha256).hexdigest()
        body += b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode())
        if chunk:
            body += chunk + b"\r\n"
    if trailers is None:
        return body + b"\r\n"
    lines = b"".join(b"%s:%s\n" % pair for pair in trailers)
    text = "AWS4-HMAC-SHA256-TRAILER\n" + S3_HEAD + previous + "\n" + hashlib.sha256(lines).hexdigest()
    signature = hmac.new(S3_KEY, text.encode(), hashlib.sha256).hexdigest()
    return body + lines.replace(b"\n", b"\r\n") + b"x-amz-trailer-signature:%s\r\n\r\n" % signature.encode()

S3_SEEDS = {
    "xml-complete": (0, b'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload><Part>'
                     b'<PartNumber>1</PartNumber><ETag>"e1"</ETag></Part></CompleteMultipartUpload>'),
    "xml-delete": (0, b"<Delete><Quiet>true</Quiet><Object><Key>a&amp;b&#x1F600;</Key>"
                   b"<VersionId>v</VersionId></Object><!-- c --><Object><Key/></Object></Delete>"),
    "xml-versioning": (0, b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                       b"<Status>Suspended</Status></VersioningConfiguration>"),
    "xml-doctype": (0, b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;<![CDATA[<]]></a>'),
    "chunked-signed": (1, bytes([6]) + signed_chunks([b"a" * 100, b"hello world"])),
    "chunked-signed-trailer": (2, bytes([0]) + signed_chunks(
        [b"data" * 20], [(b"x-amz-checksum-crc32c", b"sOO8/Q==")])),
    "chunked-unsigned-trailer": (3, bytes([3]) + b"5\r\nhello\r\n3\r\nabc\r\n0\r\n"
                                 b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"),
    # The documentation's GET Object with Range, and its presigned URL.
    "auth-header": (4, b"GET\n/test.txt\n\nHost:examplebucket.s3.amazonaws.com\nRange:bytes=0-9\n"
                    b"x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                    b"x-amz-date:20130524T000000Z\nAuthorization:AWS4-HMAC-SHA256 Credential="
                    b"AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;"
                    b"range;x-amz-content-sha256;x-amz-date,Signature="
                    b"f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    "auth-presigned": (4, b"GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                       b"AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date="
                       b"20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                       b"aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404\n"
                       b"Host:examplebucket.s3.amazonaws.com"),
    "auth-v2": (4, b"GET\n/\n\nAuthorization:AWS AKIAIOSFODNN7EXAMPLE:abc=\n"),
}

for name, (mode, data) in S3_SEEDS.items():
    s3_write(name, mode, data)
