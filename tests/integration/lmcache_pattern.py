"""LMCache's access patterns over the Redis protocol, reproduced with redis-py's asyncio
client, for tests/integration/test_lmcache.py and as a measurement on its own:

    /usr/bin/python3 tests/integration/lmcache_pattern.py --port 6379 --chunks 300 \
        --chunk-size 4194304

LMCache's redis connector (lmcache/v1/storage_backend/connector/redis_connector.py)
keeps each 256-token chunk under two keys, the chunk key's text followed by "kv_bytes"
and by "metadata" (28 bytes). A put is SET kv_bytes then SET metadata, up to 150 at once
over a pool of 150 connections; a lookup walks the request's chunks with one EXISTS on
the metadata key each, stopping at the first miss; a get is GET metadata then GET
kv_bytes, and a metadata key whose kv_bytes is gone is deleted (the repair) and read as a
miss. Its valkey connector reads a chunk with one MGET of the pair and writes with
pipelined SETs.

Here the metadata of chunk i holds i, the value's length and a digest of the value, so a
reader can tell if it was ever handed one chunk's metadata with another chunk's bytes.
"""
import argparse
import asyncio
import hashlib
import struct

import redis.asyncio as aioredis

CONNECTIONS = 150
METADATA = struct.Struct("<IIII12s")  # chunk, length, request, spare, digest: 28 bytes


def chunk_key(request, chunk):
    """The text of LMCache's CacheEngineKey for CHUNK of REQUEST: format, model, world
    size, worker and the chunk's prefix hash (which depends on every token before)."""
    prefix_hash = hashlib.blake2b(f"{request}:{chunk}".encode(), digest_size=8).hexdigest()
    return f"vllm@meta-llama/Llama-3.1-8B@1@0@{prefix_hash}"


def kv_bytes(request, chunk, size):
    """A chunk's KV bytes: SIZE bytes that differ for every (request, chunk)."""
    pattern = hashlib.blake2b(f"kv:{request}:{chunk}".encode(), digest_size=64).digest()
    return (pattern * (size // len(pattern) + 1))[:size]


def metadata(request, chunk, value):
    return METADATA.pack(chunk, len(value), request, 0,
                         hashlib.blake2b(value, digest_size=12).digest())


def check_pair(request, chunk, meta, value):
    """Raises if META and VALUE are not the pair written for (REQUEST, CHUNK)."""
    assert len(meta) == METADATA.size, f"chunk {chunk}: metadata of {len(meta)} bytes"
    got_chunk, length, got_request, _, digest = METADATA.unpack(meta)
    assert (got_request, got_chunk) == (request, chunk), (
        f"chunk {chunk} of request {request} has the metadata of chunk {got_chunk} of "
        f"request {got_request}")
    assert length == len(value), f"chunk {chunk}: metadata says {length} bytes, got {len(value)}"
    assert hashlib.blake2b(value, digest_size=12).digest() == digest, (
        f"chunk {chunk}: the bytes are not the chunk's")
    assert value == kv_bytes(request, chunk, len(value)), f"chunk {chunk}: wrong bytes"


def pool(port, host="127.0.0.1"):
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(
        host=host, port=port, max_connections=CONNECTIONS, socket_timeout=120))


async def redis_put(client, request, chunks, size):
    """The redis connector's batched put: every chunk at once, each SET kv_bytes then SET
    metadata, at most CONNECTIONS in flight. Returns how many SETs were refused (OOM)."""
    semaphore = asyncio.Semaphore(CONNECTIONS)
    refused = 0

    async def put(chunk):
        nonlocal refused
        key = chunk_key(request, chunk)
        value = kv_bytes(request, chunk, size)
        async with semaphore:
            try:
                await client.set(key + "kv_bytes", value)
                await client.set(key + "metadata", metadata(request, chunk, value))
            except aioredis.ResponseError as error:
                assert "OOM" in str(error), error
                refused += 1

    await asyncio.gather(*(put(chunk) for chunk in range(chunks)))
    return refused


async def valkey_put(client, request, chunks, size, batch=16):
    """The valkey connector's put: pipelined SETs of both keys, BATCH chunks a pipeline."""
    refused = 0
    for start in range(0, chunks, batch):
        pipeline = client.pipeline(transaction=False)
        for chunk in range(start, min(start + batch, chunks)):
            key = chunk_key(request, chunk)
            value = kv_bytes(request, chunk, size)
            pipeline.set(key + "kv_bytes", value)
            pipeline.set(key + "metadata", metadata(request, chunk, value))
        for result in await pipeline.execute(raise_on_error=False):
            if isinstance(result, Exception):
                assert "OOM" in str(result), result
                refused += 1
    return refused


async def prefix_walk(client, request, chunks):
    """The lookup: EXISTS on each chunk's metadata key in order, stopping at the first
    miss. Returns the number of leading chunks found."""
    for chunk in range(chunks):
        if not await client.exists(chunk_key(request, chunk) + "metadata"):
            return chunk
    return chunks


async def redis_get(client, request, chunk):
    """The redis connector's get: GET metadata, GET kv_bytes, DEL metadata when kv_bytes
    is gone. Returns the value, or None for a miss (checked against its metadata)."""
    key = chunk_key(request, chunk)
    meta = await client.get(key + "metadata")
    if meta is None:
        return None
    value = await client.get(key + "kv_bytes")
    if value is None:
        await client.delete(key + "metadata")  # the repair
        return None
    check_pair(request, chunk, meta, value)
    return value


async def valkey_get(client, request, chunk):
    """The valkey connector's get: one MGET of the pair; a half pair is a miss."""
    key = chunk_key(request, chunk)
    meta, value = await client.mget([key + "metadata", key + "kv_bytes"])
    if meta is None or value is None:
        return None
    check_pair(request, chunk, meta, value)
    return value


async def census(client, request, chunks):
    """(whole pairs, half pairs) left of REQUEST's chunks, from EXISTS on each key."""
    whole = half = 0
    for chunk in range(chunks):
        key = chunk_key(request, chunk)
        present = await client.exists(key + "kv_bytes") + await client.exists(key + "metadata")
        whole += present == 2
        half += present == 1
    return whole, half


async def run(port, chunks, size, connector="redis", request=1, host="127.0.0.1"):
    """Puts one request of CHUNKS chunks of SIZE bytes with CONNECTOR's pattern, then
    looks it up and reads it back as LMCache would. Returns a dict of what survived."""
    client = pool(port, host)
    try:
        put = redis_put if connector == "redis" else valkey_put
        refused = await put(client, request, chunks, size)
        whole, half = await census(client, request, chunks)
        prefix = await prefix_walk(client, request, chunks)
        get = redis_get if connector == "redis" else valkey_get
        loaded = await asyncio.gather(*(get(client, request, chunk) for chunk in range(prefix)))
        usable = next((i for i, value in enumerate(loaded) if value is None), prefix)
        return {"refused": refused, "whole": whole, "half": half, "prefix": prefix,
                "usable": usable, "hits": sum(value is not None for value in loaded)}
    finally:
        await client.close()
        await client.connection_pool.disconnect()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--chunk-size", type=int, default=4 << 20)
    parser.add_argument("--connector", choices=("redis", "valkey"), default="redis")
    parser.add_argument("--request", type=int, default=1)
    arguments = parser.parse_args()
    print(asyncio.run(run(arguments.port, arguments.chunks, arguments.chunk_size,
                          arguments.connector, arguments.request, arguments.host)))


if __name__ == "__main__":
    main()
