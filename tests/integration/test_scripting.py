"""Scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT with Redis 7.0's replies and
errors. redis-py's Lock (SET NX PX to acquire; EVALSHA, falling back to SCRIPT LOAD on
NOSCRIPT, to release, extend and reacquire), a Lock contended by threads, every reply
type both ways, redis.pcall's error table, the script cache, refused commands, a
script's atomicity (GET then SET from 8 threads loses no increment), and the cjson, bit
and cmsgpack libraries (cmsgpack's bytes and errors recorded from redis-server 7.0.15)."""
import json
import threading
import time

import pytest
import redis
from redis.lock import Lock

from conftest import SLOW
from resp import Connection, Error, Null, Simple

SHA_RETURN_1 = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # sha1("return 1")
NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."


def script_error(message, body):
    """The error text Redis 7.0 gives for an error raised by BODY on its first line."""
    import hashlib

    sha = hashlib.sha1(body.encode()).hexdigest()
    return f"{message} script: {sha}, on @user_script:1."


def test_lock_acquire_release_extend_reacquire(server, client):
    # A fresh client whose Lock class has not cached shas yet still works: its first
    # EVALSHA answers NOSCRIPT after a flush, and redis-py loads the script.
    client.script_flush()
    lock = client.lock("resource", timeout=10)
    assert lock.acquire(blocking=False) is True
    assert client.get("resource") == lock.local.token
    other = client.lock("resource", timeout=10)
    assert other.acquire(blocking=False) is False
    ttl = client.pttl("resource")
    assert 0 < ttl <= 10000
    assert lock.extend(5) is True  # adds 5 s: the TTL is now above 10 s
    assert client.pttl("resource") > 10000
    assert lock.extend(3, replace_ttl=True) is True
    assert 0 < client.pttl("resource") <= 3000
    assert lock.reacquire() is True
    assert 3000 < client.pttl("resource") <= 10000
    assert lock.owned() is True and other.owned() is False
    other.local.token = b"not the owner's token"  # the release script answers 0
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        other.release()
    other.local.token = b"not the owner's token"  # release() forgot it
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        other.reacquire()
    other.local.token = None
    assert client.get("resource") == lock.local.token
    lock.release()
    assert client.exists("resource") == 0
    with pytest.raises(redis.exceptions.LockError):
        lock.release()  # nothing held any more (redis-py checks its token first)
    # A token that is no longer the key's: the release script answers 0.
    assert other.acquire(blocking=False) is True
    client.set("resource", "somebody else")
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        other.extend(1)
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        other.release()
    assert client.get("resource") == b"somebody else"
    # The scripts are cached now: EVALSHA runs them without a SCRIPT LOAD.
    shas = [Lock.lua_release.sha, Lock.lua_extend.sha, Lock.lua_reacquire.sha]
    assert client.script_exists(*shas) == [True, True, True]
    # As a context manager, with blocking acquire.
    with client.lock("ctx", timeout=5, blocking_timeout=2):
        assert client.exists("ctx") == 1
    assert client.exists("ctx") == 0


def test_lock_contention_from_threads(server, client):
    threads_count, rounds = 4, (10 if SLOW > 1 else 25)
    client.set("shared", 0)
    inside = [0]
    violations = []

    def worker():
        connection = server.client()
        try:
            for _ in range(rounds):
                lock = connection.lock("mutex", timeout=30, sleep=0.001, blocking_timeout=60)
                assert lock.acquire()
                inside[0] += 1
                if inside[0] != 1:
                    violations.append(inside[0])
                value = int(connection.get("shared"))
                connection.set("shared", value + 1)  # two commands: a race without the lock
                inside[0] -= 1
                lock.release()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert violations == []
    assert int(client.get("shared")) == threads_count * rounds
    assert client.exists("mutex") == 0


def test_script_atomicity_from_threads(server, client):
    """8 threads run a script that reads and then writes a counter, while 2 more INCR
    it: an INCR that ran between a script's GET and SET would be lost."""
    script_threads, incr_threads = 8, 2
    rounds = 40 if SLOW > 1 else 150
    body = ("local v = redis.call('get', KEYS[1]) or '0' "
            "for i = 1, 2000 do v = v + 0 end "  # widen the window between GET and SET
            "redis.call('set', KEYS[1], tonumber(v) + 1)")
    client.set("counter", 0)

    def run_scripts():
        connection = server.client()
        try:
            for _ in range(rounds):
                connection.eval(body, 1, "counter")
        finally:
            connection.close()

    def run_incr():
        connection = server.client()
        try:
            for _ in range(rounds):
                connection.incr("counter")
        finally:
            connection.close()

    threads = [threading.Thread(target=run_scripts) for _ in range(script_threads)]
    threads += [threading.Thread(target=run_incr) for _ in range(incr_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(client.get("counter")) == (script_threads + incr_threads) * rounds


def test_eval_reply_types(server, client):
    with Connection(server.port) as raw:
        assert raw.call("EVAL", "return 42", "0") == 42
        assert raw.call("EVAL", "return 3.99", "0") == 3  # truncated
        assert raw.call("EVAL", "return -3.99", "0") == -3
        assert raw.call("EVAL", "return 'hello'", "0") == b"hello"
        assert raw.call("EVAL", "return true", "0") == 1
        assert raw.call("EVAL", "return false", "0") == Null("$-1")
        assert raw.call("EVAL", "return nil", "0") == Null("$-1")
        assert raw.call("EVAL", "return {1, 'two', {3}, nil, 5}", "0") == [1, b"two", [3]]
        assert raw.call("EVAL", "return {ok='FINE'}", "0") == Simple("FINE")
        assert raw.call("EVAL", "return redis.status_reply('GOOD')", "0") == Simple("GOOD")
        assert raw.call("EVAL", "return {err='boom'}", "0") == Error("boom")
        assert raw.call("EVAL", "return redis.error_reply('My err')", "0") == Error("My err")
        assert raw.call("EVAL", "return {1, {err='x'}}", "0") == [1, Error("x")]
        assert raw.call("EVAL", "return KEYS[1] .. ARGV[1] .. #KEYS .. #ARGV", "1", "k", "a",
                        "b") == b"ka12"
        assert raw.call("EVAL", "return redis.sha1hex('')", "0") == \
            b"da39a3ee5e6b4b0d3255bfef95601890afd80709"
        # Replies of commands, converted to Lua and back.
        raw.call("SET", "s", "v")
        raw.call("RPUSH", "l", "a", "b")
        assert raw.call("EVAL", "return redis.call('get', 's')", "0") == b"v"
        assert raw.call("EVAL", "return redis.call('get', 'nokey')", "0") == Null("$-1")
        assert raw.call("EVAL", "return redis.call('get', 'nokey') == false", "0") == 1
        assert raw.call("EVAL", "return redis.call('lrange', 'l', 0, -1)", "0") == [b"a", b"b"]
        assert raw.call("EVAL", "return redis.call('type', 's')", "0") == Simple("string")
        assert raw.call("EVAL", "return redis.call('type', 's')['ok']", "0") == b"string"
        assert raw.call("EVAL", "return redis.call('set', 's', 'w')", "0") == Simple("OK")
        assert raw.call("EVAL", "return redis.call('exists', 's', 'l', 'x')", "0") == 2
        assert raw.call("EVAL", "return type(redis.call('strlen', 's'))", "0") == b"number"
        # Numbers as arguments: "%.17g", as Redis.
        assert raw.call("EVAL", "redis.call('set', 'n', 0.1) return redis.call('get', 'n')",
                        "0") == b"0.10000000000000001"
        assert raw.call("EVAL", "redis.call('set', 'n', 12) return redis.call('get', 'n')",
                        "0") == b"12"
        # A RESP3 client gets RESP3 nulls, but the script still sees RESP2 replies.
        raw.call("HELLO", "3")
        assert raw.call("EVAL", "return nil", "0") == Null("_")
        assert raw.call("EVAL", "return redis.call('hgetall', 'nokey')", "0") == []
        assert raw.call("EVAL", "return redis.call('get', 'nokey')", "0") == Null("_")
    # redis-py's view.
    assert client.eval("return {1, 2, 'x'}", 0) == [1, 2, b"x"]
    with pytest.raises(redis.exceptions.ResponseError, match="^boom$"):
        client.eval("return {err='boom'}", 0)


def test_pcall_error_table_and_call_errors(server, client):
    client.set("s", "abc")
    with Connection(server.port) as raw:
        body = "local e = redis.pcall('incr', 's') return {type(e), e['err']}"
        assert raw.call("EVAL", body, "0") == [b"table",
                                               b"ERR value is not an integer or out of range"]
        body = "return redis.pcall('incr', 's')"
        assert raw.call("EVAL", body, "0") == Error("ERR value is not an integer or out of range")
        body = "return redis.pcall('nosuch')"
        assert raw.call("EVAL", body, "0") == Error("ERR Unknown Redis command called from script")
        # redis.call raises; a script's pcall() catches the message, as Redis 7.0 gives it.
        body = "local ok, e = pcall(redis.call, 'incr', 's') return {tostring(ok), e}"
        assert raw.call("EVAL", body, "0") == [b"false",
                                               b"ERR value is not an integer or out of range"]
        body = "return redis.call('incr', 's')"
        assert raw.call("EVAL", body, "0") == Error(
            script_error("ERR value is not an integer or out of range", body))
        for body, message in [
            ("return redis.call('nosuch')", "ERR Unknown Redis command called from script"),
            ("return redis.call('get')", "ERR Wrong number of args calling Redis command from script"),
            ("return redis.call()", "ERR Please specify at least one argument for this redis lib call"),
            ("return redis.call('set', 'k', {})",
             "ERR Lua redis lib command arguments must be strings or integers"),
            ("error('hi')", "ERR user_script:1: hi"),
            ("x = 5", "ERR user_script:1: Attempt to modify a readonly table"),
            ("return y", "ERR user_script:1: Script attempted to access nonexistent global variable 'y'"),
        ]:
            assert raw.call("EVAL", body, "0") == Error(script_error(message, body)), body
        assert raw.call("EVAL", "return +", "0") == Error(
            "ERR Error compiling script (new function): user_script:1: unexpected symbol near '+'")
        # The sandbox: no files, no OS.
        assert raw.call("EVAL", "return {type(io), type(os), type(dofile)}", "0") == Error(
            script_error("ERR user_script:1: Script attempted to access nonexistent global "
                         "variable 'io'", "return {type(io), type(os), type(dofile)}"))
        assert raw.call("EVAL", "return loadstring('return 7')()", "0") == 7
        assert raw.call("EVAL", "return string.format('%d', 5) .. math.floor(2.5) .. "
                        "table.concat({'a', 'b'}, ',')", "0") == b"52a,b"


def test_noscript_commands_refused(server, client):
    with Connection(server.port) as raw:
        for args in [("multi",), ("eval", "return 1", "0"), ("script", "load", "return 1"),
                     ("client", "id"), ("blpop", "l", "0"), ("watch", "k"), ("hello",)]:
            body = "return redis.call(" + ", ".join(f"'{a}'" for a in args) + ")"
            assert raw.call("EVAL", body, "0") == Error(
                script_error("ERR This Redis command is not allowed from script", body)), body
        # EVAL_RO refuses writes.
        body = "return redis.call('set', 'k', 'v')"
        assert raw.call("EVAL_RO", body, "0") == Error(
            script_error("ERR Write commands are not allowed from read-only scripts.", body))
        assert raw.call("EXISTS", "k") == 0
        raw.call("SET", "k", "v")
        assert raw.call("EVAL_RO", "return redis.call('get', 'k')", "0") == b"v"


def test_numkeys_errors(server, client):
    with Connection(server.port) as raw:
        assert raw.call("EVAL", "return 1", "2", "a") == Error(
            "ERR Number of keys can't be greater than number of args")
        assert raw.call("EVAL", "return 1", "-1") == Error("ERR Number of keys can't be negative")
        assert raw.call("EVAL", "return 1", "x") == Error(
            "ERR value is not an integer or out of range")
        assert raw.call("EVALSHA", SHA_RETURN_1, "3", "a") == Error(
            "ERR Number of keys can't be greater than number of args")
        assert raw.call("EVAL", "return 1") == Error(
            "ERR wrong number of arguments for 'eval' command")


def test_evalsha_and_script_cache(server, client):
    with Connection(server.port) as raw:
        assert raw.call("SCRIPT", "FLUSH") == Simple("OK")
        assert raw.call("EVALSHA", SHA_RETURN_1, "0") == Error(NOSCRIPT)
        assert raw.call("EVALSHA", "abc", "0") == Error(NOSCRIPT)
        assert raw.call("SCRIPT", "EXISTS", SHA_RETURN_1, "abc") == [0, 0]
        assert raw.call("SCRIPT", "LOAD", "return 1") == SHA_RETURN_1.encode()
        assert raw.call("SCRIPT", "EXISTS", SHA_RETURN_1, SHA_RETURN_1.upper(), "abc") == [1, 1, 0]
        assert raw.call("EVALSHA", SHA_RETURN_1, "0") == 1
        assert raw.call("EVALSHA", SHA_RETURN_1.upper(), "0") == 1
        assert raw.call("EVALSHA_RO", SHA_RETURN_1, "0") == 1
        # EVAL caches what it runs.
        body = "return ARGV[1]"
        import hashlib

        sha = hashlib.sha1(body.encode()).hexdigest()
        assert raw.call("EVAL", body, "0", "x") == b"x"
        assert raw.call("EVALSHA", sha, "0", "y") == b"y"
        assert raw.call("SCRIPT", "LOAD", "x x") == Error(
            "ERR Error compiling script (new function): user_script:1: '=' expected near 'x'")
        assert raw.call("SCRIPT", "FLUSH", "foo") == Error(
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option")
        assert raw.call("SCRIPT", "FLUSH", "ASYNC") == Simple("OK")
        assert raw.call("SCRIPT", "EXISTS", SHA_RETURN_1, sha) == [0, 0]
        assert raw.call("EVALSHA", sha, "0", "y") == Error(NOSCRIPT)
        assert raw.call("SCRIPT", "KILL") == Error("NOTBUSY No scripts in execution right now.")
        assert raw.call("SCRIPT", "LOAD") == Error(
            "ERR wrong number of arguments for 'script|load' command")
        assert raw.call("SCRIPT", "EXISTS") == Error(
            "ERR wrong number of arguments for 'script|exists' command")
        assert raw.call("SCRIPT", "FOO") == Error("ERR unknown subcommand 'FOO'. Try SCRIPT HELP.")
        help_lines = raw.call("SCRIPT", "HELP")
        assert help_lines[0] == Simple(
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
        assert Simple("LOAD <script>") in help_lines
    # redis-py's register_script: EVALSHA, then SCRIPT LOAD on NOSCRIPT.
    client.script_flush()
    script = client.register_script("return tonumber(ARGV[1]) * 2")
    assert script(args=[21]) == 42
    assert client.script_exists(script.sha) == [True]


def test_script_inside_multi_and_command_info(server, client):
    pipe = client.pipeline(transaction=True)
    pipe.set("m", "1")
    pipe.eval("return redis.call('incr', KEYS[1])", 1, "m")
    pipe.get("m")
    assert pipe.execute() == [True, 2, b"2"]
    with Connection(server.port) as raw:
        info = raw.call("COMMAND", "INFO", "eval", "evalsha_ro")
        flags = ["noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"]
        assert info[0][:7] == [b"eval", -3, [Simple(f) for f in flags], 0, 0, 0,
                               [Simple("@slow"), Simple("@scripting")]]
        assert info[1][0] == b"evalsha_ro" and Simple("readonly") in info[1][2]
        assert b"scripting" in raw.call("ACL", "CAT")
        assert set(raw.call("ACL", "CAT", "scripting")) >= {b"eval", b"evalsha", b"eval_ro",
                                                            b"evalsha_ro", b"script"}


def test_long_script_without_writes_is_stopped(server, client):
    # busy-reply-threshold (5000 ms by default), also by Redis's older name lua-time-limit.
    assert client.config_get("busy-reply-threshold") == {"busy-reply-threshold": "5000"}
    client.config_set("lua-time-limit", "300")
    try:
        assert client.config_get("busy-reply-threshold") == {"busy-reply-threshold": "300"}
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ResponseError, match="ran for more than 300 ms"):
            client.eval("while true do end", 0)
        assert 0.25 <= time.monotonic() - started < 30 * SLOW
        # The server answers again at once afterwards.
        assert client.ping() is True
        # A function's library body is held to the same limit.
        with pytest.raises(redis.exceptions.ResponseError, match="ran for more than 300 ms"):
            client.function_load("#!lua name=spin\nwhile true do end")
    finally:
        client.config_set("busy-reply-threshold", "5000")


def test_script_reads_and_changes_values_on_flash(start_server):
    """A script's commands never wait for the event loop: values on flash are read at
    once (the worker's ring is set aside, as in EXEC)."""
    server = start_server("--memory", "8mb", "--ssd-size", "64mb", "--segment-size", "8mb",
                          "--threads", "1", "--pace-timeout", "60000")
    client = server.client()
    with client.pipeline(transaction=False) as pipe:
        for i in range(200):
            pipe.set(f"cold:{i}", f"{i:05d}" + "v" * 1000)
        pipe.execute()
    for i in range(150):
        client.set(f"fill:{i}", b"f" * (100 * 1024))
    deadline = time.time() + 10 * SLOW
    while server.info("flash")["flash_items"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert server.info("flash")["flash_items"] > 0
    body = """
        local out = {}
        for i = 1, 200 do out[i] = redis.call('get', 'cold:' .. (i - 1)) end
        out[201] = redis.call('append', 'cold:0', '+tail')
        out[202] = redis.call('getrange', 'cold:1', 0, 4)
        out[203] = redis.call('mget', 'cold:2', 'cold:3')
        return out"""
    replies = client.eval(body, 0)
    assert replies[:200] == [(f"{i:05d}" + "v" * 1000).encode() for i in range(200)]
    assert replies[200] == 1005 + 5
    assert replies[201] == b"00001"
    assert replies[202] == [(f"{i:05d}" + "v" * 1000).encode() for i in (2, 3)]
    assert client.get("cold:0") == b"00000" + b"v" * 1000 + b"+tail"


def test_script_memory_bound_and_client_list(server, client):
    with pytest.raises(redis.exceptions.ResponseError, match="not enough memory"):
        client.eval("return string.rep('x', 300 * 1024 * 1024)", 0)
    assert client.eval("return #string.rep('x', 1024 * 1024)", 0) == 1024 * 1024
    # CLIENT LIST names the script's command, not the last command the script ran.
    other = server.client()
    try:
        other.client_setname("scripter")
        other.eval("redis.call('set', 'a', '1') return redis.call('get', 'a')", 0)
        line = [c for c in client.client_list() if c["name"] == "scripter"][0]
        assert line["cmd"] == "eval"
    finally:
        other.close()


def test_commands_inside_a_script_need_the_users_rights(server, client):
    assert client.execute_command("ACL", "SETUSER", "scriptviewer", "on", ">viewpw",
                                  "namespace:default=read") == b"OK"
    client.set("k", "v")
    viewer = server.client(username="scriptviewer", password="viewpw")
    try:
        body = "return redis.call('set', 'k', 'w')"
        with pytest.raises(redis.exceptions.NoPermissionError) as refused:
            viewer.eval(body, 0)
        # redis-py takes the error's first word (NOPERM) off.
        assert "NOPERM " + str(refused.value) == script_error(
            "NOPERM No permissions to access a key", body)
        assert viewer.eval("return redis.call('get', 'k')", 0) == b"v"
        assert viewer.eval_ro("return redis.call('get', 'k')", 0) == b"v"
    finally:
        viewer.close()
    assert client.get("k") == b"v"


def test_cjson_and_bit_libraries(client):
    """Scripts see Redis's cjson and bit libraries, with Redis 7.0's results (checked
    against redis-server 7.0.15), and cannot add fields to the library tables."""
    assert client.eval("return cjson.encode({1, 2, 'x'})", 0) == b'[1,2,"x"]'
    assert client.eval("return cjson.decode(ARGV[1]).a.b", 0, '{"a":{"b":"deep"}}') == b"deep"
    document = '{"k":[1,2.5,true,null]}'
    assert client.eval("return cjson.encode(cjson.decode(ARGV[1]))", 0, document) == \
        document.encode()
    # A JSON document kept in a hash field and changed in place, as agent state is.
    client.hset("agent:1", "state", '{"turns":1,"tools":["search"]}')
    script = ("local s = cjson.decode(redis.call('HGET', KEYS[1], 'state'))\n"
              "s.turns = s.turns + 1\n"
              "table.insert(s.tools, ARGV[1])\n"
              "redis.call('HSET', KEYS[1], 'state', cjson.encode(s))\n"
              "return s.turns")
    assert client.eval(script, 1, "agent:1", "browse") == 2
    state = json.loads(client.hget("agent:1", "state"))
    assert state == {"turns": 2, "tools": ["search", "browse"]}
    with pytest.raises(redis.ResponseError, match="Expected object key string"):
        client.eval("return cjson.decode('{bad')", 0)
    assert client.eval("return {bit.band(5, 3), bit.bor(5, 3), bit.bxor(5, 3), "
                       "bit.lshift(1, 10), bit.tohex(65535)}", 0) == [1, 7, 6, 1024, b"0000ffff"]
    for table in ("cjson", "bit", "redis", "string"):
        with pytest.raises(redis.ResponseError, match="Attempt to modify a readonly table"):
            client.eval(f"{table}.added = 1 return 1", 0)
    assert client.eval("return ('abc'):upper() .. string.rep('x', 2)", 0) == b"ABCxx"


def test_blocking_reads_are_refused_in_scripts(client):
    """XREAD and XREADGROUP with BLOCK are refused inside a script with Redis 7.0's error
    (without BLOCK they read)."""
    client.xadd("s", {"f": "v"}, id="1-1")
    for command in ("xread", "XREAD"):
        with pytest.raises(redis.ResponseError,
                           match=f"^{command} command is not allowed with BLOCK option from "
                                 "scripts"):
            client.eval(f"return redis.pcall('{command}', 'BLOCK', '0', 'STREAMS', 's', '0')", 0)
    client.xgroup_create("s", "g", id="0")
    with pytest.raises(redis.ResponseError, match="^xreadgroup command is not allowed with BLOCK"):
        client.eval("return redis.call('xreadgroup', 'GROUP', 'g', 'c', 'BLOCK', '0', "
                    "'STREAMS', 's', '>')", 0)
    assert client.eval("return redis.call('xread', 'STREAMS', 's', '0')", 0) == \
        [[b"s", [[b"1-1", [b"f", b"v"]]]]]


# cmsgpack: bytes and errors recorded from redis-server 7.0.15.
LUA_HEX = ("local function hex(s) local t = {} for i = 1, #s do "
           "t[#t + 1] = string.format('%02x', s:byte(i)) end return table.concat(t) end\n"
           "local function unhex(h) return (h:gsub('..', function(x) "
           "return string.char(tonumber(x, 16)) end)) end\n")


def lua_hex(client, body, *args):
    """Runs BODY after the hex()/unhex() helpers; returns its reply."""
    return client.eval(LUA_HEX + body, 0, *args)


@pytest.mark.parametrize("values, packed", [
    ("nil, true, false", "c0c3c2"),
    # Every width's boundaries: positive fixint, uint8, uint16, uint32, uint64.
    ("0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 2^53",
     "007fcc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000cf0020000000000000"),
    # Negative fixint, int8, int16, int32, int64.
    ("-1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -2^63",
     "ffe0d0dfd080d1ff7fd18000d2ffff7fffd280000000d3ffffffff7fffffffd38000000000000000"),
    # float32 when exact (2^63 and 2^64 are beyond int64), float64 otherwise; integral
    # floats (and -0) are integers.
    ("0.5, -3.5, 1.1, 1e300, 2^63, 2^64, 3.0, -0.0",
     "ca3f000000cac0600000cb3ff199999999999acb7e37e43c8800759cca5f000000ca5f8000000300"),
    # Arrays only for keys 1..n (the empty table too); maps otherwise.
    ("'', 'abc', {}, {1, 2, 3}, {a = 1}, {[1] = 1, [3] = 3}, {[0] = 'x'}, {[1.5] = true}",
     "a0a3616263909301020381a1610182010103038100a17881ca3fc00000c3"),
    ("{1, {2, {3, {k = 'v'}}}}", "92019202920381a16ba176"),
])
def test_cmsgpack_pack_bytes(client, values, packed):
    assert lua_hex(client, f"return hex(cmsgpack.pack({values}))") == packed.encode()


def test_cmsgpack_pack_sizes_and_limits(client):
    """Strings of each header width, array/map 16 and 32 headers, infinities and NaN,
    nesting cut at 16 levels (so a table holding itself packs), values MessagePack has
    no type for as nil, and pack() without arguments."""
    assert lua_hex(client, "local r = {} for _, n in ipairs({31, 32, 255, 256, 65535, 65536}) "
                   "do local p = cmsgpack.pack(string.rep('x', n)) "
                   "r[#r + 1] = hex(p:sub(1, 5)) .. ' ' .. #p end return r") == [
        b"bf78787878 32", b"d920787878 34", b"d9ff787878 257", b"da01007878 259",
        b"daffff7878 65538", b"db00010000 65541"]
    assert lua_hex(client, "local t = {} for i = 1, 16 do t[i] = i end "
                   "local m = {} for i = 1, 16 do m['k' .. i] = i end "
                   "local u = {} for i = 1, 65536 do u[i] = 0 end "
                   "return {hex(cmsgpack.pack(t)):sub(1, 6), hex(cmsgpack.pack(m)):sub(1, 6), "
                   "hex(cmsgpack.pack(u)):sub(1, 10), #cmsgpack.pack(u)}") == [
        b"dc0010", b"de0010", b"dd00010000", 65541]
    assert lua_hex(client, "local z = 0 return hex(cmsgpack.pack(1/z, -1/z, z/z))") == \
        b"ca7f800000caff800000cbfff8000000000000"
    nested = "local t = {} local c = t for i = 1, 20 do c[1] = {} c = c[1] end "
    assert lua_hex(client, nested + "return hex(cmsgpack.pack(t))") == b"91" * 16 + b"c0"
    assert lua_hex(client, "local t = {} t[1] = t return hex(cmsgpack.pack(t))") == \
        b"91" * 16 + b"c0"
    assert lua_hex(client, "return hex(cmsgpack.pack(hex, coroutine.create(hex), 1))") == \
        b"c0c001"
    with pytest.raises(redis.ResponseError,
                       match=r"bad argument #0 to 'pack' \(MessagePack pack needs input.\)"):
        client.eval("return cmsgpack.pack()", 0)
    with pytest.raises(redis.ResponseError, match="Attempt to modify a readonly table"):
        client.eval("cmsgpack.added = 1 return 1", 0)


def test_cmsgpack_round_trips(client):
    """unpack() gives back what pack() packed: nested tables, every integer width, floats,
    strings of every header width."""
    script = ("local t = {name = 'job', data = {1, 2, {deep = {true, false, 'x'}}}, n = -7,\n"
              "  f = 0.25, big = 2^40, small = -2^40}\n"
              "local u = cmsgpack.unpack(cmsgpack.pack(t))\n"
              "local d = u.data[3].deep\n"
              "return {u.name, u.data[1], u.data[2], d[1], tostring(d[2]), d[3], u.n,\n"
              "  tostring(u.f), tostring(u.big), tostring(u.small),\n"
              "  hex(cmsgpack.pack(u.data)) == hex(cmsgpack.pack(t.data))}")
    assert lua_hex(client, script) == [b"job", 1, 2, 1, b"false", b"x", -7, b"0.25",
                                      b"1099511627776", b"-1099511627776", 1]
    numbers = ("{0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, -1, -32, -33, "
               "-128, -129, -32768, -32769, -2147483648, -2147483649, 2^53, -2^53, 0.5, 1.1, "
               "-1e300}")
    assert lua_hex(client, f"local n = {numbers} local u = {{cmsgpack.unpack(cmsgpack.pack("
                   "unpack(n)))} if #u ~= #n then return 'count' end "
                   "for i = 1, #n do if u[i] ~= n[i] then return 'differs at ' .. i end end "
                   "return 'same'") == b"same"
    assert lua_hex(client, "local r = {} for _, n in ipairs({31, 32, 255, 256, 65535, 65536}) "
                   "do local s = string.rep('y', n - 1) .. 'z' "
                   "r[#r + 1] = tostring(cmsgpack.unpack(cmsgpack.pack(s)) == s) end "
                   "return r") == [b"true"] * 6
    # Multiple values; a nil among them; decoded integers of each width and sign.
    assert client.eval("return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3}, nil, true))}",
                       0) == [1, b"two", [3]]
    assert lua_hex(client, "local r = {} for _, v in ipairs({cmsgpack.unpack(unhex("
                   "'cc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000ffe0d0dfd080'"
                   ".. 'd1ff7fd18000d2ffff7fffd280000000d3ffffffff7fffffffcfffffffffffffffff'))})"
                   " do r[#r + 1] = tostring(v) end return r") == [
        b"128", b"255", b"256", b"65535", b"65536", b"4294967295", b"4294967296", b"-1",
        b"-32", b"-33", b"-128", b"-129", b"-32768", b"-32769", b"-2147483648",
        b"-2147483649", b"-1"]  # Redis reads uint64 as int64: 2^64 - 1 is -1
    # str8/16/32, array16/32 and map16/32 headers read; a nil element leaves a hole.
    assert lua_hex(client, "local a = cmsgpack.unpack(unhex('dc00020102')) "
                   "local b = cmsgpack.unpack(unhex('dd000000020304')) "
                   "local m = cmsgpack.unpack(unhex('de0001a16101')) "
                   "local n = cmsgpack.unpack(unhex('df00000001a16202')) "
                   "local h = cmsgpack.unpack(unhex('9301c003')) "
                   "return {a[2], b[2], m.a, n.b, cmsgpack.unpack(unhex('d90461626364')), "
                   "cmsgpack.unpack(unhex('da000161')), cmsgpack.unpack(unhex('db0000000162')), "
                   "#h, h[3]}") == [2, 4, 1, 2, b"abcd", b"a", b"b", 1, 3]


def test_cmsgpack_unpack_one_and_limit(client):
    """unpack_one() and unpack_limit() return the offset after what they read (-1 at the
    end) before the values; unpack_limit(s, 0) returns them all and no offset."""
    data = "unhex('01a161c3')"  # 1, 'a', true
    cases = [
        (f"cmsgpack.unpack_one({data})", [1, 1]),
        (f"cmsgpack.unpack_one({data}, 1)", [3, b"a"]),
        (f"cmsgpack.unpack_one({data}, 3)", [-1, 1]),
        (f"cmsgpack.unpack_one({data}, 4)", [-1]),
        (f"cmsgpack.unpack_one({data}, 2)", [3, 97]),  # inside the string: fixint 0x61
        (f"cmsgpack.unpack_limit({data}, 2)", [3, 1, b"a"]),
        (f"cmsgpack.unpack_limit({data}, 2, 1)", [-1, b"a", 1]),
        (f"cmsgpack.unpack_limit({data}, 5)", [-1, 1, b"a", 1]),
        (f"cmsgpack.unpack_limit({data}, 0)", [1, b"a", 1]),
        ("cmsgpack.unpack_one('')", [-1]),
        ("cmsgpack.unpack('')", []),
    ]
    for call, reply in cases:
        assert lua_hex(client, f"return {{{call}}}") == reply, call
    # Walking a string of packed values one by one, as scripts do.
    assert lua_hex(client, "local s = cmsgpack.pack({1, 2}, 'x', 300) local r = {} "
                   "local offset, v = 0 while offset ~= -1 do "
                   "offset, v = cmsgpack.unpack_one(s, offset) r[#r + 1] = offset end "
                   "return r") == [3, 5, -1]


@pytest.mark.parametrize("call, error", [
    ("cmsgpack.unpack, unhex('cd01')", "Missing bytes in input."),
    ("cmsgpack.unpack, unhex('92cd')", "Missing bytes in input."),
    ("cmsgpack.unpack, unhex('ddffffffff')", "Missing bytes in input."),
    ("cmsgpack.unpack, unhex('dbffffffff61')", "Missing bytes in input."),
    ("cmsgpack.unpack, unhex('ca3f80')", "Missing bytes in input."),
    ("cmsgpack.unpack, unhex('81')", "Missing bytes in input."),
    ("cmsgpack.unpack, unhex('92c1cd')", "Bad data format in input."),
    ("cmsgpack.unpack, unhex('c1')", "Bad data format in input."),
    # bin and ext are not read by Redis 7.0's cmsgpack either.
    ("cmsgpack.unpack, unhex('c4026162')", "Bad data format in input."),
    ("cmsgpack.unpack, unhex('c5000261626364')", "Bad data format in input."),
    ("cmsgpack.unpack, unhex('c70101ff')", "Bad data format in input."),
    ("cmsgpack.unpack, unhex('d401ff')", "Bad data format in input."),
    ("cmsgpack.unpack, unhex('81c001')", "table index is nil"),
    ("cmsgpack.unpack_one, unhex('01'), 2", "Start offset 2 greater than input length 1."),
    ("cmsgpack.unpack_one, unhex('0101'), -1",
     "Invalid request to unpack with offset of -1 and limit of 2."),
    ("cmsgpack.unpack_limit, unhex('010101'), -1",
     "Invalid request to unpack with offset of 0 and limit of 3."),
    ("cmsgpack.unpack_limit, 'x'", "bad argument #2 to '?' (number expected, got no value)"),
    ("cmsgpack.unpack", "bad argument #1 to '?' (string expected, got no value)"),
])
def test_cmsgpack_unpack_errors(client, call, error):
    assert lua_hex(client, f"local ok, e = pcall({call}) "
                   "return {tostring(ok), e}") == [b"false", error.encode()]


def test_cmsgpack_lua_stack_limits(client):
    """At most 7999 values at once and 3999 levels of nesting, as in Redis, with its
    errors (the Lua stack is checked, never overrun)."""
    def outcome(body):
        return client.eval("local ok, e = pcall(cmsgpack.unpack_limit, " + body + ", 0) "
                           "return {tostring(ok), tostring(e)}", 0)

    assert outcome("string.rep('\\1', 7999)")[0] == b"true"
    assert outcome("string.rep('\\1', 8000)") == [
        b"false", b"stack overflow (too many return values at once; "
                  b"use unpack_one or unpack_limit instead.)"]
    assert outcome("string.rep('\\145', 3999) .. '\\1'")[0] == b"true"
    assert outcome("string.rep('\\145', 4000) .. '\\1'") == [
        b"false", b"stack overflow (in function mp_decode_to_lua_array)"]
    assert outcome("string.rep('\\129\\1', 3999) .. '\\1'")[0] == b"true"
    assert outcome("string.rep('\\129\\1', 4000) .. '\\1'")[0] == b"false"
    with pytest.raises(redis.ResponseError, match="too many return values at once"):
        client.eval("return select('#', cmsgpack.unpack(string.rep('\\1', 10000)))", 0)
    assert client.eval("return select('#', cmsgpack.unpack_limit(string.rep('\\1', 10000), "
                       "5000))", 0) == 5001


def test_cmsgpack_in_functions(client):
    """Functions see cmsgpack too."""
    client.function_load("#!lua name=msgpacklib\n"
                         "redis.register_function('mp', function(keys, args)\n"
                         "  return cmsgpack.unpack(cmsgpack.pack({args[1]}))[1] end)",
                         replace=True)
    try:
        assert client.fcall("mp", 0, "value") == b"value"
    finally:
        client.function_delete("msgpacklib")
