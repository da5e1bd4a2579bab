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
    "object-memory": resp("GETSET", "o", "12345") + resp("GETSET", "o", "x" * 50) +
    resp("OBJECT", "ENCODING", "o") + resp("OBJECT", "FREQ", "o") + resp("OBJECT", "IDLETIME", "o") +
    resp("OBJECT", "REFCOUNT", "o") + resp("OBJECT", "HELP") + resp("MEMORY", "USAGE", "o", "SAMPLES", 0) +
    resp("MEMORY", "HELP"),
    "transactions": resp("WATCH", "t", "u") + resp("SET", "t", 1) + resp("MULTI") + resp("INCR", "t") +
    resp("GET", "u") + resp("MULTI") + resp("WATCH", "t") + resp("EXEC") + resp("MULTI") + resp("NOPE") +
    resp("EXEC") + resp("MULTI") + resp("APPEND", "t", "x") + resp("INCR", "t") + resp("DISCARD") +
    resp("UNWATCH") + resp("EXEC") + resp("DISCARD") + resp("WATCH", "t") + resp("MULTI") +
    resp("GETRANGE", "t", 0, -1) + resp("EXEC"),
    "monitor-kill": resp("MONITOR") + resp("SET", "m", b'q"\\\n\x00\xff') + resp("MONITOR") +
    resp("HELLO", 3) + resp("CLIENT", "NO-EVICT", "on") + resp("CLIENT", "NO-TOUCH", "on") +
    resp("CLIENT", "LIST") + resp("CLIENT", "KILL", "ID", 99) + resp("CLIENT", "KILL", "1.2.3.4:5") +
    resp("CLIENT", "KILL", "USER", "default", "TYPE", "pubsub") + resp("CLIENT", "KILL", "ID", 1) +
    resp("MULTI") + resp("MONITOR") + resp("SET", "m", 1) + resp("RESET") + resp("MULTI") + resp("MONITOR") +
    resp("EXEC") + resp("RESET") + resp("GET", "m") + resp("CLIENT", "KILL", "ADDR", "fuzz", "SKIPME", "no"),
    "introspection": resp("CONFIG", "SET", "slowlog-log-slower-than", 0, "latency-monitor-threshold", 1) +
    resp("DEBUG", "SLEEP", "0.002") + resp("SET", "k", b"v" * 200) + resp("EXISTS", *["k"] * 40) +
    resp("AUTH", "x") + resp("SLOWLOG", "GET", 5) + resp("SLOWLOG", "LEN") + resp("SLOWLOG", "GET", -1) +
    resp("LATENCY", "LATEST") + resp("LATENCY", "HISTORY", "command") + resp("LATENCY", "RESET", "command") +
    resp("INFO", "all") + resp("INFO", "commandstats", "errorstats", "cpu") + resp("CLIENT", "NOPE") +
    resp("CONFIG", "SET", "slowlog-max-len", 1) + resp("CONFIG", "RESETSTAT") + resp("SLOWLOG", "RESET") +
    resp("SLOWLOG", "HELP") + resp("LATENCY", "HELP"),
    "hashes": resp("HSET", "h", "a", 1, "b", b"\x00\xff") + resp("HGET", "h", "a") + resp("HMGET", "h", "a", "z") +
    resp("HINCRBY", "h", "a", 5) + resp("HINCRBYFLOAT", "h", "f", "1.5") + resp("HGETALL", "h") +
    resp("HRANDFIELD", "h", -3, "WITHVALUES") + resp("HSCAN", "h", 0, "MATCH", "[ab]", "COUNT", 5) +
    resp("GET", "h") + resp("SET", "s", 1) + resp("HSET", "s", "x", 1) + resp("HDEL", "h", "a", "b", "f") +
    resp("HSETNX", "h", "n", 1) + resp("TYPE", "h") + resp("OBJECT", "ENCODING", "h") + resp("HLEN", "h") +
    resp("HSTRLEN", "h", "n") + resp("HKEYS", "h") + resp("HVALS", "h") + resp("HEXISTS", "h", "n"),
    "lists": resp("RPUSH", "l", "a", b"\x00\xff", "a") + resp("LPUSH", "l", "x") + resp("LRANGE", "l", 0, -1) +
    resp("LPOP", "l", 2) + resp("RPOP", "nokey", 0) + resp("LINDEX", "l", -1) + resp("LSET", "l", 0, "y") +
    resp("LINSERT", "l", "BEFORE", "a", "b") + resp("LPOS", "l", "a", "RANK", -1, "COUNT", 0, "MAXLEN", 9) +
    resp("LREM", "l", -1, "a") + resp("LTRIM", "l", 1, -1) + resp("LMOVE", "l", "m", "LEFT", "RIGHT") +
    resp("RPOPLPUSH", "m", "m") + resp("SET", "s", 1) + resp("LPUSH", "s", "x") + resp("RPOPLPUSH", "m", "s") +
    resp("TYPE", "l") + resp("OBJECT", "ENCODING", "l") + resp("LLEN", "l") + resp("LPUSHX", "z", "a") +
    resp("RPUSHX", "m", "b") + resp("LPOS", "l", "a", "RANK", 0),
    "streams": resp("XADD", "x", "1-1", "a", b"\x00\xff") + resp("XADD", "x", "1-*", "b", 2) +
    resp("XADD", "x", "IDMP", "p", 1, "MAXLEN", "~", 5, "*", "c", 3) +
    resp("XADD", "x", "IDMP", "p", 1, "*", "c", 3) + resp("XRANGE", "x", "(1-1", "+", "COUNT", 2) +
    resp("XREVRANGE", "x", "+", "-") + resp("XLEN", "x") + resp("XREAD", "COUNT", 1, "STREAMS", "x", "y", 0, "$") +
    resp("XGROUP", "CREATE", "x", "g", 0, "MKSTREAM") + resp("XREADGROUP", "GROUP", "g", "c", "STREAMS", "x", ">") +
    resp("XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "x", 0) + resp("XPENDING", "x", "g") +
    resp("XPENDING", "x", "g", "IDLE", 0, "-", "+", 10, "c") + resp("XACK", "x", "g", "1-1") +
    resp("XCLAIM", "x", "g", "d", 0, "1-2", "FORCE", "RETRYCOUNT", 3) + resp("XAUTOCLAIM", "x", "g", "e", 0, "0", "JUSTID") +
    resp("XDEL", "x", "1-2") + resp("XINFO", "STREAM", "x", "FULL") + resp("XINFO", "GROUPS", "x") +
    resp("XINFO", "CONSUMERS", "x", "g") + resp("XGROUP", "DELCONSUMER", "x", "g", "c") +
    resp("XGROUP", "SETID", "x", "g", "$") + resp("XTRIM", "x", "MINID", "1-2") + resp("XSETID", "x", "9-9") +
    resp("TYPE", "x") + resp("OBJECT", "ENCODING", "x") + resp("GET", "x") + resp("XGROUP", "DESTROY", "x", "g"),
    "sets": resp("SADD", "s1", "a", 1, 2, b"\x00\xff") + resp("SADD", "s2", "a", "b") + resp("SMEMBERS", "s1") +
    resp("SISMEMBER", "s1", "a") + resp("SMISMEMBER", "s1", "a", "z") + resp("SINTER", "s1", "s2") +
    resp("SUNIONSTORE", "s3", "s1", "s2") + resp("SDIFF", "s1", "s2") + resp("SINTERCARD", 2, "s1", "s2", "LIMIT", 1) +
    resp("SMOVE", "s1", "s2", 1) + resp("SPOP", "s1", 2) + resp("SRANDMEMBER", "s2", -5) + resp("SSCAN", "s2", 0, "MATCH", "*") +
    resp("OBJECT", "ENCODING", "s3") + resp("SREM", "s2", "a", "b") + resp("SCARD", "s2"),
    "sorted-sets": resp("ZADD", "z", "NX", "CH", 1, "a", "2.5", "b", "-inf", "c") + resp("ZINCRBY", "z", 1, "a") +
    resp("ZRANGE", "z", "(1", "+inf", "BYSCORE", "LIMIT", 0, 2, "WITHSCORES") + resp("ZRANGE", "z", "[a", "+", "BYLEX", "REV") +
    resp("ZRANK", "z", "b") + resp("ZSCORE", "z", "c") + resp("ZMSCORE", "z", "a", "x") + resp("ZCOUNT", "z", "-inf", "(2") +
    resp("ZPOPMIN", "z", 2) + resp("ZMPOP", 2, "y", "z", "MAX", "COUNT", 3) + resp("ZADD", "z", "GT", "INCR", 5, "q") +
    resp("ZREMRANGEBYSCORE", "z", 0, 10) + resp("ZSCAN", "z", 0) + resp("ZRANDMEMBER", "z", -3, "WITHSCORES"),
    "sorted-set-algebra": resp("ZADD", "a", 1, "x", "inf", "y", "-0", "z") + resp("ZADD", "b", "-inf", "y", 2, "w") +
    resp("SADD", "s", "x", "q") + resp("ZUNION", 3, "a", "b", "s", "WEIGHTS", 2, 0, "-1", "AGGREGATE", "MIN", "WITHSCORES") +
    resp("ZINTER", 2, "a", "b", "WITHSCORES") + resp("ZDIFF", 2, "a", "s", "WITHSCORES") +
    resp("ZUNIONSTORE", "d", 2, "a", "s", "AGGREGATE", "MAX") + resp("ZINTERSTORE", "d", 2, "a", "none") +
    resp("ZDIFFSTORE", "a", 2, "a", "b") + resp("ZINTERCARD", 2, "a", "s", "LIMIT", 1) +
    resp("ZRANGESTORE", "r", "b", "+inf", "(0", "BYSCORE", "REV", "LIMIT", 0, 1) +
    resp("ZRANGESTORE", "r", "b", "[a", "+", "BYLEX") + resp("ZUNION", 0, "a") + resp("ZINTER", 9, "a") +
    resp("ZUNION", 1, "a", "WEIGHTS", "nan") + resp("COMMAND", "GETKEYS", "ZUNIONSTORE", "d", 2, "a", "b"),
    # Blocking commands with nothing to serve answer at once here: served, a timeout
    # inside MULTI, or an argument error.
    "blocking": resp("RPUSH", "q", "a", "b") + resp("BLPOP", "q", 0) + resp("BRPOP", "x", "q", "0.5") +
    resp("BLMOVE", "q", "r", "LEFT", "RIGHT", 0) + resp("BLPOP", "q", -1) + resp("BLPOP", "q", "x") +
    resp("LMPOP", 2, "x", "r", "LEFT", "COUNT", 2) + resp("MULTI") + resp("BLPOP", "none", 0) +
    resp("BZPOPMIN", "none", 0) + resp("BLMPOP", 0, 1, "none", "RIGHT") + resp("EXEC") +
    resp("ZADD", "z", 1, "m") + resp("BZPOPMAX", "z", 0) + resp("CLIENT", "UNBLOCK", 1, "ERROR"),
    "inline": b"PING\r\nSET a b\r\nGET a\r\n\r\nQUIT\r\n",
    "large-argument": resp("SET", "big", b"x" * 20000) + resp("GET", "big") + resp("APPEND", "big", b"y" * 17000),
    "protocol-errors": b"*2\r\n$3\r\nGET\r\n$-5\r\n" + b"*-1\r\n*1\r\n$x\r\n",
    # Empty multibulk lengths are skipped (as by Redis); "*-0" and leading zeros are errors.
    "empty-multibulk": b"*-10\r\n*0\r\n*-1\r\n" + resp("PING") + b"*-99999\r\n" + resp("ECHO", "e") +
    b"*01\r\n$04\r\nPING\r\n*-0\r\n",
    "command-introspection": resp("COMMAND", "LIST", "FILTERBY", "PATTERN", "c*|*") +
    resp("COMMAND", "LIST", "FILTERBY", "ACLCAT", "admin") + resp("COMMAND", "LIST", "bad") +
    resp("COMMAND", "INFO", "config|get", "get|x", "config") + resp("COMMAND", "DOCS", "client|list") +
    resp("COMMAND", "GETKEYS", "MSET", "a", "1", "b") + resp("COMMAND", "GETKEYS", "OBJECT", "ENCODING", "k") +
    resp("COMMAND", "GETKEYS", "nosuch", "x") + b"CLIENT INFO\r\n" + resp("CLIENT", "LIST", "TYPE", "normal"),
    "debug": resp("DEBUG", "FAULT", "sync:nth=1") + resp("FLUSHALL") + resp("COMMAND", "DOCS", "get"),
    # nopass users only: a password to hash would cost each run about a second.
    "users": resp("ACL", "WHOAMI") + resp("ACL", "SETUSER", "u", "on", "nopass", "namespace:default=read") +
    resp("AUTH", "u", "x") + resp("SET", "k", "v") + resp("GET", "k") + resp("FLUSHALL") +
    resp("CLIENT", "LIST") + resp("ACL", "GETUSER", "u") + resp("HELLO", 3, "AUTH", "default", "x") +
    resp("ACL", "LIST") + resp("ACL", "USERS") + resp("ACL", "DELUSER", "u") +
    resp("PING") + resp("AUTH", "default", "x") + resp("ACL", "CAT", "string") + resp("ACL", "GENPASS", 64) +
    resp("ACL", "LOG") + resp("ACL", "SETUSER", "default", "off") + resp("CLIENT", "INFO"),
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
    "auth": frame(10, namespace(b"") + struct.pack("<II", 7, 3) + b"defaultpwd", 1) +
    frame(10, namespace(b"") + struct.pack("<II", 0, 0), 1) + frame(0, namespace(b""), 0),
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


# S3 through HTTP (tests/fuzz/fuzz_s3_http.c): one connection's requests, pipelined, for
# every operation of docs/s3.md, unsigned (the target's session is a loopback client of
# a server without credentials). "{U}" and "{V}" are replaced by the target with the last
# upload id and version id a response carried, so one input can name what it created.
import base64

def md5_hex(data):
    return hashlib.md5(data).hexdigest()

def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()

def crc32c_b64(data):
    return base64.b64encode(struct.pack(">I", crc32c(data))).decode()

def request(method, target, headers=(), body=b"", length=True):
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:6381\r\n" % (method, target)
    for name, value in headers:
        head += "%s: %s\r\n" % (name, value)
    if length and body is not None and not any(n.lower() in ("content-length", "transfer-encoding")
                                               for n, _ in headers):
        head += "Content-Length: %d\r\n" % len(body)
    return head.encode() + b"\r\n" + (body or b"")

def put(target, body, headers=()):
    return request("PUT", target, headers, body)

def xml(text):
    return b'<?xml version="1.0" encoding="UTF-8"?>' + text.encode()

BUCKET_CONFIGURATION = xml('<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                           "<LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>")
VERSIONING_ON = xml('<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    "<Status>Enabled</Status></VersioningConfiguration>")
VERSIONING_SUSPENDED = xml("<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>")
# Any signature goes from loopback when no credentials are configured; these make a
# request S3's even on an operator path ("/").
SIGNED = ("Authorization", "AWS4-HMAC-SHA256 Credential=any/20240101/us-east-1/s3/aws4_request, "
          "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + "0" * 64)
SIGNED_DATE = ("x-amz-date", "20240101T000000Z")
UNSIGNED_PAYLOAD = ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
HELLO = b"hello, strata objects"
PART_1 = b"part one: sixteen" * 2
PART_2 = b"part two"

def complete(*parts):
    body = "<CompleteMultipartUpload>"
    for number, data in parts:
        body += '<Part><PartNumber>%d</PartNumber><ETag>"%s"</ETag></Part>' % (number, md5_hex(data))
    return xml(body + "</CompleteMultipartUpload>")

def unsigned_trailer_body(data, pieces):
    body = b""
    for start in range(0, len(data), pieces):
        chunk = data[start:start + pieces]
        body += b"%x\r\n%s\r\n" % (len(chunk), chunk)
    return body + b"0\r\nx-amz-checksum-crc32c:%s\r\n\r\n" % crc32c_b64(data).encode()

def fake_signed_body(data):
    signature = b"f" * 64
    return (b"%x;chunk-signature=%s\r\n%s\r\n" % (len(data), signature, data) +
            b"0;chunk-signature=%s\r\n\r\n" % signature)

S3_HTTP_SEEDS = {
    "bucket-lifecycle": (0,
        put("/fuzz-bucket", BUCKET_CONFIGURATION) + request("HEAD", "/fuzz-bucket") +
        request("GET", "/fuzz-bucket?location") + request("GET", "/", [SIGNED, SIGNED_DATE, UNSIGNED_PAYLOAD]) +
        put("/fuzz-bucket", b"") + put("/Bad_Name", b"") + request("GET", "/fuzz-bucket?versioning") +
        request("DELETE", "/fuzz-bucket") + request("DELETE", "/fuzz-bucket") +
        request("HEAD", "/fuzz-bucket")),
    "put-get-head": (4,
        put("/bucket-1", b"") +
        put("/bucket-1/dir/hello.txt", HELLO, [("Content-Type", "text/plain"), ("x-amz-meta-Colour", "blue"),
                                         ("Content-MD5", md5_b64(HELLO)),
                                         ("x-amz-checksum-crc32c", crc32c_b64(HELLO)),
                                         ("x-amz-content-sha256", hashlib.sha256(HELLO).hexdigest()),
                                         ("Cache-Control", "no-cache"), ("Content-Encoding", "gzip, aws-chunked"),
                                         ("Content-Disposition", "inline"), ("Content-Language", "en"),
                                         ("Expires", "Wed, 21 Oct 2037 07:28:00 GMT")]) +
        request("GET", "/bucket-1/dir/hello.txt") + request("HEAD", "/bucket-1/dir/hello.txt") +
        put("/bucket-1/empty", b"") + request("GET", "/bucket-1/empty") + request("GET", "/bucket-1/missing") +
        request("DELETE", "/bucket-1/dir/hello.txt") + request("DELETE", "/bucket-1/empty")),
    "put-transfer-chunked": (1,
        put("/bucket-2", b"") +
        request("PUT", "/bucket-2/chunked", [("Transfer-Encoding", "chunked")],
                b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n") +
        request("GET", "/bucket-2/chunked", [("Range", "bytes=7-")])),
    "put-aws-chunked-unsigned-trailer": (2,
        put("/bucket-3", b"") +
        put("/bucket-3/streamed", unsigned_trailer_body(HELLO * 3, 20),
            [("Content-Encoding", "aws-chunked"), ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
             ("x-amz-decoded-content-length", str(len(HELLO * 3))), ("x-amz-trailer", "x-amz-checksum-crc32c")]) +
        request("GET", "/bucket-3/streamed", [("x-amz-checksum-mode", "ENABLED")]) +
        put("/bucket-3/bad-crc", b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32c:AAAAAA==\r\n\r\n",
            [("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
             ("x-amz-decoded-content-length", "5")])),
    "put-aws-chunked-signed": (3,
        put("/bucket-4", b"") +
        put("/bucket-4/signed", fake_signed_body(HELLO),
            [SIGNED, SIGNED_DATE, ("Content-Encoding", "aws-chunked"),
             ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
             ("x-amz-decoded-content-length", str(len(HELLO)))]) +
        request("GET", "/bucket-4/signed")),
    "get-range-conditions": (3,
        put("/bucket-5", b"") + put("/bucket-5/k", HELLO) +
        request("GET", "/bucket-5/k", [("Range", "bytes=1-3")]) +
        request("GET", "/bucket-5/k", [("Range", "bytes=-4")]) +
        request("GET", "/bucket-5/k", [("Range", "bytes=100-")]) +
        request("GET", "/bucket-5/k", [("Range", "bytes=0-1,3-4")]) +
        request("GET", "/bucket-5/k", [("If-Match", '"%s"' % md5_hex(HELLO))]) +
        request("GET", "/bucket-5/k", [("If-Match", '"nope", W/"x"')]) +
        request("GET", "/bucket-5/k", [("If-None-Match", '"%s"' % md5_hex(HELLO))]) +
        request("HEAD", "/bucket-5/k", [("If-None-Match", "*")]) +
        request("GET", "/bucket-5/k", [("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]) +
        request("GET", "/bucket-5/k", [("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")]) +
        request("GET", "/bucket-5/k", [("If-Unmodified-Since", "Sunday, 06-Nov-94 08:49:37 GMT")]) +
        request("GET", "/bucket-5/k?versionId=null&response-content-type=text%2Fhtml&response-content-language=fr"
                "&response-expires=0&response-cache-control=max-age%3D1&response-content-disposition=attachment"
                "&response-content-encoding=identity")),
    "list-v1": (4,
        put("/bucket-6", b"") + put("/bucket-6/a/1", b"1") + put("/bucket-6/a/2", b"22") + put("/bucket-6/a/b/3", b"333") +
        put("/bucket-6/c%20d", b"4") + put("/bucket-6/e%2Bf", b"5") +
        request("GET", "/bucket-6") +
        request("GET", "/bucket-6?prefix=a%2F&delimiter=%2F&marker=a%2F1&max-keys=2&encoding-type=url") +
        request("GET", "/bucket-6?delimiter=/&max-keys=1") + request("GET", "/bucket-6?max-keys=x") +
        request("GET", "/bucket-6?list-type=3")),
    "list-v2": (4,
        put("/bucket-7", b"") + put("/bucket-7/a/1", b"1") + put("/bucket-7/a/2", b"22") + put("/bucket-7/b", b"333") +
        request("GET", "/bucket-7?list-type=2&max-keys=1") +
        request("GET", "/bucket-7?list-type=2&continuation-token=%s&fetch-owner=true" %
                base64.b64encode(b"a/1").decode().replace("=", "%3D")) +
        request("GET", "/bucket-7?list-type=2&start-after=a&delimiter=%2F&prefix=&encoding-type=url") +
        request("GET", "/bucket-7?list-type=2&continuation-token=!!!")),
    "versioning": (3,
        put("/bucket-8", b"") + put("/bucket-8?versioning", VERSIONING_ON, [("Content-MD5", md5_b64(VERSIONING_ON))]) +
        request("GET", "/bucket-8?versioning") +
        put("/bucket-8/k", b"first") + put("/bucket-8/k", b"second") +
        request("GET", "/bucket-8/k?versionId={V}") + request("HEAD", "/bucket-8/k?versionId={V}") +
        request("GET", "/bucket-8?versions") +
        request("DELETE", "/bucket-8/k") + request("GET", "/bucket-8/k") + request("HEAD", "/bucket-8/k?versionId={V}") +
        request("GET", "/bucket-8?versions&prefix=k&key-marker=k&version-id-marker={V}&max-keys=1") +
        request("DELETE", "/bucket-8/k?versionId={V}") + request("GET", "/bucket-8/k") +
        put("/bucket-8?versioning", VERSIONING_SUSPENDED) + put("/bucket-8/k", b"third") +
        request("DELETE", "/bucket-8/k?versionId=null") + request("GET", "/bucket-8/k?versionId=") +
        put("/bucket-8?versioning", xml("<VersioningConfiguration><Status>Off</Status></VersioningConfiguration>"))),
    "delete-objects": (4,
        put("/bucket-9", b"") + put("/bucket-9/a", b"a") + put("/bucket-9/b&c", b"b") +
        request("POST", "/bucket-9?delete", [("Content-MD5", md5_b64(xml(
            "<Delete><Object><Key>a</Key></Object><Object><Key>b&amp;c</Key><VersionId>null</VersionId>"
            "</Object><Object><Key>missing</Key><VersionId>nope</VersionId></Object></Delete>")))],
            xml("<Delete><Object><Key>a</Key></Object><Object><Key>b&amp;c</Key><VersionId>null</VersionId>"
                "</Object><Object><Key>missing</Key><VersionId>nope</VersionId></Object></Delete>")) +
        request("POST", "/bucket-9?delete", body=xml("<Delete><Quiet>true</Quiet><Object><Key>x</Key></Object></Delete>")) +
        request("POST", "/bucket-9?delete", body=b"<Delete><Object></Object></Delete>") +
        request("DELETE", "/bucket-9")),
    "copy": (4,
        put("/bucket-10", b"") + put("/bucket-10?versioning", VERSIONING_ON) + put("/bucket-10/src", HELLO,
                                                                       [("x-amz-meta-a", "1")]) +
        put("/bucket-10/dst2", b"", [("x-amz-copy-source", "bucket-10/src?versionId={V}"),
                              ("x-amz-metadata-directive", "REPLACE"), ("Content-Type", "text/x"),
                              ("x-amz-copy-source-if-match", '"%s"' % md5_hex(HELLO)),
                              ("x-amz-copy-source-if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]) +
        put("/bucket-10/dst", b"", [("x-amz-copy-source", "/bucket-10/src")]) +
        put("/bucket-10/src", b"", [("x-amz-copy-source", "/bucket-10/src")]) +
        put("/bucket-10/dst3", b"", [("x-amz-copy-source", "/bucket-10/src"), ("x-amz-copy-source-if-none-match", "*")]) +
        put("/bucket-10/dst4", b"", [("x-amz-copy-source", "/nobucket")]) +
        request("GET", "/bucket-10/dst2") + request("GET", "/bucket-10?versions")),
    "multipart": (2,
        put("/bucket-11", b"") +
        request("POST", "/bucket-11/big?uploads", [("Content-Type", "application/x-big"), ("x-amz-meta-m", "v")]) +
        put("/bucket-11/big?partNumber=1&uploadId={U}", PART_1, [("Content-MD5", md5_b64(PART_1))]) +
        put("/bucket-11/big?partNumber=2&uploadId={U}", PART_2) +
        request("GET", "/bucket-11/big?uploadId={U}") +
        request("GET", "/bucket-11/big?uploadId={U}&max-parts=1&part-number-marker=1") +
        request("GET", "/bucket-11?uploads&prefix=b&key-marker=a&max-uploads=5") +
        request("POST", "/bucket-11/big?uploadId={U}", body=complete((1, PART_1), (2, PART_2))) +
        request("GET", "/bucket-11/big", [("Range", "bytes=30-40")]) + request("HEAD", "/bucket-11/big") +
        request("POST", "/bucket-11/big?uploadId={U}", body=complete((1, PART_1)))),
    "multipart-copy-abort": (4,
        put("/bucket-12", b"") + put("/bucket-12/src", bytes(range(256)) * 16) +
        request("POST", "/bucket-12/joined?uploads") +
        put("/bucket-12/joined?partNumber=1&uploadId={U}", b"", [("x-amz-copy-source", "/bucket-12/src"),
                                                          ("x-amz-copy-source-range", "bytes=0-1023")]) +
        put("/bucket-12/joined?partNumber=2&uploadId={U}", b"", [("x-amz-copy-source", "/bucket-12/src"),
                                                          ("x-amz-copy-source-range", "bytes=4000-4095")]) +
        put("/bucket-12/joined?partNumber=3&uploadId={U}", b"", [("x-amz-copy-source", "/bucket-12/src"),
                                                          ("x-amz-copy-source-range", "bytes=-5")]) +
        request("POST", "/bucket-12/joined?uploadId={U}", body=xml(
            "<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>x</ETag></Part>"
            "<Part><PartNumber>1</PartNumber><ETag>y</ETag></Part></CompleteMultipartUpload>")) +
        request("GET", "/bucket-12?uploads") + request("DELETE", "/bucket-12/joined?uploadId={U}") +
        request("DELETE", "/bucket-12/joined?uploadId={U}") +
        request("POST", "/bucket-12/other?uploads") + request("DELETE", "/bucket-12") +
        request("DELETE", "/bucket-12/src") + request("DELETE", "/bucket-12")),
    # An object of three parts (three blobs), a copy of it, parts copied from it (a
    # range that spans its extents, and all of it: a part's ETag is the MD5 of its
    # bytes), ranged reads across the extents; a 40 KiB body read straight into its blob.
    "extents": (3,
        put("/bucket-15", b"") +
        request("POST", "/bucket-15/three?uploads") +
        put("/bucket-15/three?partNumber=1&uploadId={U}", PART_1) +
        put("/bucket-15/three?partNumber=2&uploadId={U}", PART_2 * 2) +
        put("/bucket-15/three?partNumber=3&uploadId={U}", HELLO) +
        request("POST", "/bucket-15/three?uploadId={U}",
                body=complete((1, PART_1), (2, PART_2 * 2), (3, HELLO))) +
        request("GET", "/bucket-15/three", [("Range", "bytes=30-60")]) +
        put("/bucket-15/copied", b"", [("x-amz-copy-source", "/bucket-15/three")]) +
        request("POST", "/bucket-15/spans?uploads") +
        put("/bucket-15/spans?partNumber=1&uploadId={U}", b"",
            [("x-amz-copy-source", "/bucket-15/copied"), ("x-amz-copy-source-range", "bytes=20-55")]) +
        put("/bucket-15/spans?partNumber=2&uploadId={U}", b"",
            [("x-amz-copy-source", "/bucket-15/three")]) +
        request("POST", "/bucket-15/spans?uploadId={U}", body=xml(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part>"
            "<Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>" % (
                md5_hex((PART_1 + PART_2 * 2 + HELLO)[20:56]), md5_hex(PART_1 + PART_2 * 2 + HELLO)))) +
        request("GET", "/bucket-15/spans", [("Range", "bytes=10-70")]) +
        request("GET", "/bucket-15/spans?versionId=null", [("x-amz-checksum-mode", "ENABLED")]) +
        put("/bucket-15/large", bytes(range(256)) * 160, [("Content-Type", "application/octet-stream")]) +
        request("GET", "/bucket-15/large", [("Range", "bytes=100-40000")]) +
        request("GET", "/bucket-15?list-type=2&max-keys=2")),
    # Read lazily (the first byte / 5 is odd: tests/fuzz/fuzz_s3_http.c): GETs of an
    # object of six parts (more blobs than a stream reads ahead) and of its copy stay
    # unsent while the object is overwritten and the copy deleted (no token in between:
    # a token reads the responses first); the streams must still send every byte.
    "lazy-holds": (9,
        put("/bucket-16", b"") +
        request("POST", "/bucket-16/six?uploads") +
        b"".join(put("/bucket-16/six?partNumber=%d&uploadId={U}" % n, b"%d" % n * (9 + n)) for n in range(1, 7)) +
        request("POST", "/bucket-16/six?uploadId={U}",
                body=complete(*[(n, b"%d" % n * (9 + n)) for n in range(1, 7)])) +
        put("/bucket-16/copy", b"", [("x-amz-copy-source", "/bucket-16/six")]) +
        request("GET", "/bucket-16/six") + request("GET", "/bucket-16/copy", [("Range", "bytes=5-70")]) +
        put("/bucket-16/six", b"replaced") + request("DELETE", "/bucket-16/copy") +
        request("GET", "/bucket-16/six") + request("DELETE", "/bucket-16/six") +
        request("DELETE", "/bucket-16")),
    "lazy-unversioned": (8,
        put("/bucket-17", b"") +
        request("POST", "/bucket-17/k?uploads") +
        put("/bucket-17/k?partNumber=1&uploadId={U}", PART_1) +
        put("/bucket-17/k?partNumber=2&uploadId={U}", PART_2) +
        request("POST", "/bucket-17/k?uploadId={U}", body=complete((1, PART_1), (2, PART_2))) +
        request("GET", "/bucket-17/k") + request("HEAD", "/bucket-17/k") +
        request("POST", "/bucket-17/part-source?uploads") +
        put("/bucket-17/part-source?partNumber=1&uploadId={U}", b"", [("x-amz-copy-source", "/bucket-17/k")]) +
        request("GET", "/bucket-17/k", [("Range", "bytes=-10")]) +
        request("DELETE", "/bucket-17/k") + request("DELETE", "/bucket-17/part-source?uploadId={U}") +
        request("POST", "/bucket-17?delete", body=xml("<Delete><Object><Key>k</Key></Object></Delete>")) +
        request("DELETE", "/bucket-17")),
    "virtual-host": (0,
        b"PUT / HTTP/1.1\r\nHost: vhost.localhost:6381\r\nContent-Length: 0\r\n\r\n"
        b"PUT /key HTTP/1.1\r\nHost: vhost.localhost\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /key HTTP/1.1\r\nHost: VHOST.localhost\r\n\r\n"
        b"GET /?list-type=2 HTTP/1.1\r\nHost: vhost.localhost\r\n\r\n"
        b"GET /metrics HTTP/1.1\r\nHost: vhost.localhost\r\n\r\n"),
    "errors": (3,
        put("/bucket-13", b"") + request("GET", "/bucket-13?acl") + request("PUT", "/bucket-13/k?tagging", body=b"") +
        request("PUT", "/bucket-13/nolength", length=False) +
        put("/bucket-13/md5", b"abc", [("Content-MD5", md5_b64(b"abd"))]) +
        put("/bucket-13/md5bad", b"abc", [("Content-MD5", "xx")]) +
        put("/bucket-13/sha", b"abc", [("x-amz-content-sha256", "0" * 64)]) +
        put("/bucket-13/crc", b"abc", [("x-amz-checksum-crc32c", "AAAAAA==")]) +
        put("/bucket-13/meta", b"abc", [("x-amz-meta-big", "x" * 2100)]) +
        put("/bucket-13/k?partNumber=0&uploadId=x", b"abc") + put("/bucket-13/k?partNumber=1&uploadId=x", b"abc") +
        request("POST", "/bucket-13?delete", body=b"<Delete><Object><Key>a</Key>") +
        request("PATCH", "/bucket-13/k") + request("POST", "/bucket-13/k") + request("PUT", "/", body=b"") +
        put("/" + "b" * 70 + "/k", b"") + put("/nobucket/k", b"x") +
        put("/bucket-13/" + "k" * 1100, b"x") +
        put("/bucket-13/expect", b"12345", [("Expect", "100-continue")]) +
        put("/bucket-13/big", b"", [("Content-Length", "6000000000")])),
    "signatures": (1,
        request("GET", "/", [SIGNED, SIGNED_DATE, UNSIGNED_PAYLOAD]) +
        request("GET", "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=any%2F20240101%2Fus-east-1%2Fs3"
                "%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
                "&X-Amz-Signature=" + "0" * 64) +
        request("GET", "/health", [("Authorization", "AWS any:c2lnbmF0dXJl")]) +
        request("GET", "/?AWSAccessKeyId=any&Signature=x&Expires=1")),
    "operator-paths": (4,
        request("GET", "/health") + put("/keys/k", b"value") + request("GET", "/keys/k") +
        put("/bucket-14", b"") + put("/bucket-14/keys", b"object") + request("GET", "/bucket-14/keys") +
        request("GET", "/info") + request("GET", "/bucket-14%2Fkeys")),
}

for name, (pieces, data) in S3_HTTP_SEEDS.items():
    write("s3_http", name, data, pieces)
