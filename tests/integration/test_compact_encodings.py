"""Values of the sizes where the compact encodings' varint lengths change size (0, 1,
127, 128, 129, 16383, 16384 bytes) and a big one (70,000 bytes) round-trip through the
list commands (in place at both ends on a list big enough to live in a value block with
room, and through the whole rewrites of LSET and LINSERT), and through hashes and sets."""
import pytest

SIZES = [0, 1, 127, 128, 129, 16383, 16384, 70000]


def payload(size, tag):
    """SIZE bytes that differ with TAG and along the value, so a shifted or cut length
    shows."""
    pattern = f"{tag}:" + "".join(chr(48 + (i * 7) % 75) for i in range(97))
    return (pattern.encode() * (size // len(pattern) + 1))[:size]


def test_list_round_trips_at_length_boundaries(client):
    model = []
    for size in SIZES:
        assert client.rpush("l", payload(size, "r")) == len(model) + 1
        model.append(payload(size, "r"))
        assert client.lpush("l", payload(size, "l")) == len(model) + 1
        model.insert(0, payload(size, "l"))
        assert client.lrange("l", 0, -1) == model
    # Several at once: RPUSH keeps their order, LPUSH reverses them.
    batch = [payload(size, "b") for size in SIZES]
    assert client.rpush("l", *batch) == len(model) + len(batch)
    model += batch
    assert client.lpush("l", *batch) == len(model) + len(batch)
    model = batch[::-1] + model
    assert client.llen("l") == len(model)
    assert client.lrange("l", 0, -1) == model
    for index in (0, 1, 5, len(model) // 2, len(model) - 6, len(model) - 1, -1, -3):
        assert client.lindex("l", index) == model[index], index
    assert client.lrange("l", 3, 9) == model[3:10]
    assert client.lrange("l", -9, -3) == model[-9:-2]
    # LSET and LINSERT rewrite the whole list.
    for index, size in zip((0, 7, -1, -8), (70000, 0, 128, 16384)):
        assert client.lset("l", index, payload(size, "s")) is True
        model[index] = payload(size, "s")
    assert client.linsert("l", "BEFORE", model[7], payload(127, "i")) == len(model) + 1
    model.insert(7, payload(127, "i"))
    assert client.linsert("l", "AFTER", model[-1], payload(16383, "i")) == len(model) + 1
    model.append(payload(16383, "i"))
    assert client.lrange("l", 0, -1) == model
    # Pops from both ends, one and several at a time.
    assert client.lpop("l") == model.pop(0)
    assert client.rpop("l") == model.pop()
    assert client.lpop("l", 3) == model[:3]
    del model[:3]
    assert client.rpop("l", 3) == model[-1:-4:-1]
    del model[-3:]
    assert client.lrange("l", 0, -1) == model
    # Pushed again after the pops (in place, into the front room and at the tail).
    for size in SIZES:
        client.lpush("l", payload(size, "again"))
        model.insert(0, payload(size, "again"))
        client.rpush("l", payload(size, "again"))
        model.append(payload(size, "again"))
    assert client.lrange("l", 0, -1) == model
    assert client.lpop("l", len(model)) == model
    assert client.exists("l") == 0


@pytest.mark.parametrize("size", SIZES)
def test_small_list_round_trips(client, size):
    """A list of a few elements, rewritten whole on every change."""
    assert client.rpush("s", payload(size, "a"), payload(size, "b")) == 2
    assert client.lpush("s", payload(size, "c")) == 3
    assert client.lrange("s", 0, -1) == [payload(size, t) for t in "cab"]
    assert client.lset("s", 1, payload(size, "d")) is True
    assert client.linsert("s", "AFTER", payload(size, "d"), payload(size, "e")) == 4
    assert client.lrange("s", 0, -1) == [payload(size, t) for t in "cdeb"]
    assert client.rpop("s") == payload(size, "b")
    assert client.lpop("s") == payload(size, "c")
    assert client.lrange("s", 0, -1) == [payload(size, t) for t in "de"]


def test_hash_round_trips_at_length_boundaries(client):
    expected = {}
    for size in SIZES:
        # Fields and values of each size, and each size against every other.
        fields = {payload(size, "f") + b"|" + payload(other, "k"): payload(other, "v")
                  for other in (0, 127, 128, 16384)}
        assert client.hset("h", mapping=fields) == len(fields)
        expected.update(fields)
        assert client.hgetall("h") == expected
    # An empty field, and values replaced by ones whose lengths take more or fewer bytes.
    assert client.hset("h", b"", payload(16384, "e")) == 1
    expected[b""] = payload(16384, "e")
    for number, field in enumerate(list(expected)[::3]):
        expected[field] = payload(SIZES[number % len(SIZES)], "r")
        assert client.hset("h", field, expected[field]) == 0
    assert client.hgetall("h") == expected
    assert client.hlen("h") == len(expected)
    field = payload(70000, "f") + b"|" + payload(128, "k")
    assert client.hget("h", field) == expected[field]
    assert client.hstrlen("h", field) == len(expected[field])
    assert client.hdel("h", field) == 1
    del expected[field]
    assert client.hgetall("h") == expected


def test_set_round_trips_at_length_boundaries(client):
    members = set()
    for size in SIZES:
        assert client.sadd("s", payload(size, "a"), payload(size, "b")) == (1 if size == 0
                                                                            else 2)
        members |= {payload(size, "a"), payload(size, "b")}
        assert client.smembers("s") == members
    assert client.scard("s") == len(members)
    assert client.sismember("s", payload(16383, "b")) is True
    assert client.sismember("s", payload(16383, "c")) is False
    assert client.srem("s", payload(128, "a"), payload(70000, "b")) == 2
    members -= {payload(128, "a"), payload(70000, "b")}
    assert client.smembers("s") == members
    # More than 127 members: the count takes two bytes.
    many = {payload(size, str(n)) for n in range(150) for size in (1, 129)}
    assert client.sadd("s", *many) == len(many - members)
    members |= many
    assert client.smembers("s") == members
    assert client.scard("s") == len(members)
