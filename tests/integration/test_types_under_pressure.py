"""Every value type under memory pressure: far more hashes, lists, sets, sorted sets and
streams are written than DRAM (32 MiB) and flash (128 MiB) hold together, so the oldest
move to flash and then leave it. Every key that survives reads back whole and exact,
with its type; a key that went, went whole (never a hash with fewer fields, a list with
fewer elements, a stream with fewer entries). After a restart the survivors are still
exact."""
from conftest import SANITIZED, Server

# 200 MiB in the release build; a quarter under the sanitizers (same shape, 4x slower).
VOLUME = (50 if SANITIZED else 200) * 1024 * 1024
FIELDS = 16
PIECE = 1000  # bytes per field, element or member


def piece(kind, i, j):
    """The J-th piece of key I of KIND: PIECE bytes, unique to (kind, i, j)."""
    head = f"{kind}:{i}:{j}:".encode()
    return (head * (PIECE // len(head) + 1))[:PIECE]


def write(pipe, kind, i):
    key = f"{kind}:{i}"
    if kind == "hash":
        pipe.hset(key, mapping={f"f{j}": piece(kind, i, j) for j in range(FIELDS)})
    elif kind == "list":
        pipe.rpush(key, *[piece(kind, i, j) for j in range(FIELDS)])
    elif kind == "set":
        pipe.sadd(key, *[piece(kind, i, j) for j in range(FIELDS)])
    elif kind == "zset":
        pipe.zadd(key, {piece(kind, i, j): j for j in range(FIELDS)})
    else:
        for j in range(FIELDS):
            pipe.xadd(key, {"data": piece(kind, i, j)}, id=f"{j + 1}-0")


def check(client, kind, i):
    """True when key I of KIND is whole; False when it is absent; fails when partial."""
    key = f"{kind}:{i}"
    pieces = [piece(kind, i, j) for j in range(FIELDS)]
    if kind == "hash":
        value = client.hgetall(key)
        expected = {f"f{j}".encode(): pieces[j] for j in range(FIELDS)}
    elif kind == "list":
        value = client.lrange(key, 0, -1)
        expected = pieces
    elif kind == "set":
        value = client.smembers(key)
        expected = set(pieces)
    elif kind == "zset":
        value = client.zrange(key, 0, -1, withscores=True)
        expected = [(pieces[j], float(j)) for j in range(FIELDS)]
    else:
        value = [(entry_id, fields) for entry_id, fields in client.xrange(key)]
        expected = [(f"{j + 1}-0".encode(), {b"data": pieces[j]}) for j in range(FIELDS)]
    if not value:
        assert client.exists(key) == 0, key
        return False
    assert value == expected, f"{key} is not whole"
    assert client.type(key) == kind.encode(), key
    return True


KINDS = ("hash", "list", "set", "zset", "stream")


def test_every_surviving_key_is_whole(start_server):
    options = ("--memory", "32mb", "--ssd-size", "128mb", "--segment-size", "8mb",
               "--pace-timeout", "60000")
    server = start_server(*options)
    client = server.client()
    per_kind = VOLUME // (len(KINDS) * FIELDS * PIECE)
    for start in range(0, per_kind, 50):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + 50, per_kind)):
                for kind in KINDS:
                    write(pipe, kind, i)
            pipe.execute()
    assert server.info("memory")["used_memory"] <= 32 * 1024 * 1024
    assert server.info("flash")["flash_items"] > 0

    def survivors(connection):
        found = {}
        for kind in KINDS:
            found[kind] = [i for i in range(per_kind) if check(connection, kind, i)]
        return found

    before = survivors(client)
    if not SANITIZED:  # 200 MiB through 160 MiB of room: some keys had to go, whole
        assert server.info("flash")["flash_evictions"] > 0
        assert any(len(before[kind]) < per_kind for kind in KINDS)
    for kind in KINDS:
        # The newest keys of every type survive; with 200 MiB through 160 MiB of room
        # (a quarter of that under the sanitizers: all fit), some of the oldest may not.
        assert before[kind], kind
        assert per_kind - 1 in before[kind], kind
    client.close()
    directory = server.directory
    server.stop()  # a clean stop saves the flash index
    again = Server(directory, *options)
    try:
        after = survivors(again.client())
        # A clean stop writes DRAM's keys to flash, which is full, so older ones may
        # make room; every key back is whole, and none is one that was gone.
        for kind in KINDS:
            assert set(after[kind]) <= set(before[kind]), kind
        assert sum(len(keys) for keys in after.values()) > 0
    finally:
        again.stop()
