"""Functions (Redis 7.0): FUNCTION LOAD/LIST/DELETE/FLUSH/STATS/KILL/HELP, FCALL and
FCALL_RO, with the replies and error texts recorded from redis-server 7.0.15; redis-py's
function_load()/fcall()/function_list(); a function's atomicity (INCR from 4 threads);
libraries surviving SCRIPT FLUSH; the commands' COMMAND INFO."""
import threading

import pytest
import redis

from conftest import SLOW
from resp import Connection, Error, Null, Simple

REGISTERING = "ERR Error registering functions: "
BAD_NAME = ("Library names can only contain letters, numbers, or underscores(_) and must be at "
            "least one character long")

LIBRARY = """#!lua name=lib1
local function boom(keys, args) error('boom') end
redis.register_function('boom', boom)
redis.register_function('boomt', function() error({err='MY custom'}) end)
redis.register_function('cerr', function() return redis.call('nope') end)
redis.register_function('glob', function() return x end)
redis.register_function('kv', function(keys, args) return {keys, args, #keys, #args} end)
redis.register_function('w', function(keys, args) return redis.call('set', keys[1], args[1]) end)
redis.register_function{function_name='r', callback=function(keys, args)
  return redis.call('get', keys[1]) end, flags={'no-writes'}, description='reads'}
redis.register_function{function_name='rw', callback=function(keys, args)
  return redis.call('set', keys[1], 'v') end, flags={'NO-WRITES', 'allow-oom'}}
redis.register_function('K', function() return KEYS end)
redis.register_function('tostr', function() return tostring(12) .. cjson.encode({1}) end)
"""


def load(raw, name, body, *options):
    return raw.call("FUNCTION", "LOAD", *options, f"#!lua name={name}\n{body}")


@pytest.fixture
def raw(server, client):
    client.function_flush()
    with Connection(server.port) as connection:
        yield connection


# Each body, loaded as library "ab", and Redis 7.0.15's reply.
LOAD_ERRORS = [
    ("redis.register_function('f', function() return 1 end) "
     "redis.register_function('f', function() return 1 end)",
     REGISTERING + "ERR Function already exists in the library"),
    ("redis.register_function{function_name='f', callback=function() end, flags='x'}",
     REGISTERING + "ERR flags argument to redis.register_function must be a table "
     "representing function flags"),
    ("redis.register_function{function_name='f', callback=function() end, flags={1}}",
     REGISTERING + "ERR unknown flag given"),
    ("redis.register_function('f')",
     REGISTERING + "ERR calling redis.register_function with a single argument is only "
     "applicable to Lua table (representing named arguments)."),
    ("redis.register_function('f', function() end, 3)",
     REGISTERING + "ERR wrong number of arguments to redis.register_function"),
    ("redis.register_function{function_name='f', callback=1}",
     REGISTERING + "ERR callback argument given to redis.register_function must be a function"),
    ("redis.register_function{'f', function() end}",
     REGISTERING + "ERR unknown argument given to redis.register_function"),
    ("redis.register_function({}, function() end)",
     REGISTERING + "ERR first argument to redis.register_function must be a string"),
    ("redis.register_function{[true]=1}",
     REGISTERING + "ERR named argument key given to redis.register_function is not a string"),
    ("redis.register_function{function_name={}}",
     REGISTERING + "ERR function_name argument given to redis.register_function must be a "
     "string"),
    ("redis.register_function{callback=function() end}",
     REGISTERING + "ERR redis.register_function must get a function name argument"),
    ("redis.register_function{function_name='f'}",
     REGISTERING + "ERR redis.register_function must get a callback argument"),
    ("redis.register_function('f-1', function() end)", REGISTERING + "ERR " + BAD_NAME),
    ("x = 1", REGISTERING + "ERR user_function:2: Attempt to modify a readonly table"),
    ("local x = y", REGISTERING + "ERR user_function:2: Script attempted to access "
     "nonexistent global variable 'y'"),
    # Only the load API is there while the body runs: no redis.call, no libraries.
    ("redis.call('set', 'x', '1')", REGISTERING + "ERR user_function:2: Script attempted to "
     "access nonexistent global variable 'call'"),
    ("local t = tostring(1)", REGISTERING + "ERR user_function:2: Script attempted to access "
     "nonexistent global variable 'tostring'"),
    ("local t = KEYS", REGISTERING + "ERR user_function:2: Script attempted to access "
     "nonexistent global variable 'KEYS'"),
    ("syntax error here", "ERR Error compiling function: user_function:2: '=' expected near "
     "'error'"),
    ("redis.log(redis.LOG_WARNING, 'loading')", "ERR No functions registered"),
]


@pytest.mark.parametrize("body, reply", LOAD_ERRORS)
def test_load_errors(raw, body, reply):
    assert load(raw, "ab", body) == Error(reply)
    assert raw.call("FUNCTION", "LIST") == []


def test_metadata_errors(raw):
    cases = [
        ("return 1", "ERR Missing library metadata"),
        ("#!lua name=ab", "ERR Invalid library metadata"),  # no newline
        ("#!lua\nreturn 1", "ERR Library name was not given"),
        ("#!foo name=x\nreturn 1", "ERR Engine 'foo' not found"),
        ("#!lua name=a-b\nreturn 1", "ERR " + BAD_NAME),
        ("#!lua name=\nreturn 1", "ERR " + BAD_NAME),
        ("#!lua name=ab foo=bar\nreturn 1", "ERR Invalid metadata value given: foo=bar"),
        ("#!lua name=ab name=cd\nreturn 1",
         "ERR Invalid metadata value, name argument was given multiple times"),
        ("#!LUA  NAME=ab \nreturn 1", "ERR No functions registered"),
    ]
    for code, reply in cases:
        assert raw.call("FUNCTION", "LOAD", code) == Error(reply), code
    assert raw.call("FUNCTION", "LOAD", "x", "y") == Error("ERR Unknown option given: x")
    assert raw.call("FUNCTION", "LOAD", "REPLACE", "x", "y") == Error(
        "ERR Unknown option given: x")
    assert raw.call("FUNCTION", "LOAD") == Error(
        "ERR wrong number of arguments for 'function|load' command")


def test_fcall_keys_args_and_errors(raw):
    assert raw.call("FUNCTION", "LOAD", LIBRARY) == b"lib1"
    assert raw.call("FUNCTION", "LOAD", LIBRARY) == Error("ERR Library 'lib1' already exists")
    assert raw.call("FCALL", "kv", "2", "a", "b", "c", "d") == [[b"a", b"b"], [b"c", b"d"], 2, 2]
    assert raw.call("FCALL", "kv", "0") == [[], [], 0, 0]
    assert raw.call("FCALL", "w", "1", "k", "v") == Simple("OK")
    assert raw.call("FCALL", "r", "1", "k") == b"v"
    assert raw.call("FCALL_RO", "r", "1", "k") == b"v"
    assert raw.call("FCALL", "tostr", "0") == b"12[1]"
    # Function names are case-insensitive to FCALL, as in Redis 7.0 (library names are not).
    assert raw.call("FCALL", "KV", "0") == [[], [], 0, 0]
    assert raw.call("FCALL_RO", "R", "1", "k") == b"v"
    assert load(raw, "other", "redis.register_function('Kv', function() return 1 end)") == \
        Error("ERR Function Kv already exists")
    errors = [
        (("FCALL", "boom", "0"), "ERR user_function:2: boom script: boom, on @user_function:2."),
        (("FCALL", "boomt", "0"), "MY custom script: boomt, on @user_function:4."),
        (("FCALL", "cerr", "0"),
         "ERR Unknown Redis command called from script script: cerr, on @user_function:5."),
        (("FCALL", "glob", "0"), "ERR user_function:6: Script attempted to access nonexistent "
         "global variable 'x' script: glob, on @user_function:6."),
        (("FCALL", "K", "0"), "ERR user_function:13: Script attempted to access nonexistent "
         "global variable 'KEYS' script: K, on @user_function:13."),
        (("FCALL_RO", "w", "1", "k", "v"),
         "ERR Can not execute a script with write flag using *_ro command."),
        # A no-writes function is a read-only script, whichever command runs it.
        (("FCALL", "rw", "1", "k"), "ERR Write commands are not allowed from read-only "
         "scripts. script: rw, on @user_function:12."),
        (("FCALL_RO", "rw", "1", "k"), "ERR Write commands are not allowed from read-only "
         "scripts. script: rw, on @user_function:12."),
        (("FCALL", "nope", "0"), "ERR Function not found"),
        (("FCALL_RO", "nope", "0"), "ERR Function not found"),
        (("FCALL", "nope", "x"), "ERR Function not found"),  # the name is looked up first
        (("FCALL", "kv", "3", "a"), "ERR Number of keys can't be greater than number of args"),
        (("FCALL", "kv", "-1"), "ERR Number of keys can't be negative"),
        (("FCALL", "kv", "x"), "ERR Bad number of keys provided"),
        (("FCALL", "kv"), "ERR wrong number of arguments for 'fcall' command"),
    ]
    for command, reply in errors:
        assert raw.call(*command) == Error(reply), command
    assert raw.call("GET", "k") == b"v"


def test_list_delete_flush_stats(raw):
    assert raw.call("FUNCTION", "LIST") == []
    assert raw.call("FUNCTION", "STATS") == [
        b"running_script", Null("$-1"), b"engines",
        [b"LUA", [b"libraries_count", 0, b"functions_count", 0]]]
    flags = "{'allow-stale','no-cluster','allow-cross-slot-keys','allow-oom','no-writes'}"
    code2 = ("#!lua name=lib2\nredis.register_function{function_name='z', "
             f"callback=function() return 1 end, flags={flags}, description='zed'}}")
    assert raw.call("FUNCTION", "LOAD", code2) == b"lib2"
    assert load(raw, "other", "redis.register_function('o', function() return 2 end)") == b"other"
    entry = [b"library_name", b"lib2", b"engine", b"LUA", b"functions",
             [[b"name", b"z", b"description", b"zed", b"flags",
               ["no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"]]]]
    assert raw.call("FUNCTION", "LIST", "LIBRARYNAME", "lib2") == [entry]
    assert raw.call("FUNCTION", "LIST", "LIBRARYNAME", "l*2", "WITHCODE") == [
        entry + [b"library_code", code2.encode()]]
    assert raw.call("FUNCTION", "LIST", "LIBRARYNAME", "nomatch") == []
    assert len(raw.call("FUNCTION", "LIST")) == 2
    assert raw.call("FUNCTION", "STATS")[3] == [
        b"LUA", [b"libraries_count", 2, b"functions_count", 2]]
    for arguments, reply in [
            (("foo",), "ERR Unknown argument foo"),
            (("LIBRARYNAME",), "ERR library name argument was not given"),
            (("WITHCODE", "withcode"), "ERR Unknown argument withcode"),
            (("LIBRARYNAME", "a", "LIBRARYNAME", "b"), "ERR Unknown argument LIBRARYNAME")]:
        assert raw.call("FUNCTION", "LIST", *arguments) == Error(reply)
    # A function name belongs to one library; REPLACE swaps a library whole.
    assert load(raw, "third", "redis.register_function('o', function() end)") == Error(
        "ERR Function o already exists")
    assert load(raw, "third", "redis.register_function('o', function() end)",
                "REPLACE") == Error("ERR Function o already exists")
    assert load(raw, "other", "redis.register_function('p', function() return 3 end)",
                "REPLACE") == b"other"
    assert raw.call("FCALL", "o", "0") == Error("ERR Function not found")
    assert raw.call("FCALL", "p", "0") == 3
    assert raw.call("FUNCTION", "DELETE", "nope") == Error("ERR Library not found")
    assert raw.call("FUNCTION", "DELETE", "other") == Simple("OK")
    assert raw.call("FCALL", "p", "0") == Error("ERR Function not found")
    assert raw.call("FUNCTION", "FLUSH", "x") == Error(
        "ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    assert raw.call("FUNCTION", "FLUSH", "ASYNC", "x") == Error(
        "ERR unknown subcommand or wrong number of arguments for 'flush'. Try FUNCTION HELP.")
    assert raw.call("FUNCTION", "FLUSH", "SYNC") == Simple("OK")
    assert raw.call("FUNCTION", "LIST") == []
    assert raw.call("FCALL", "z", "0") == Error("ERR Function not found")
    # RESP3: maps, a set of flags, null description and running_script.
    raw.call("HELLO", "3")
    assert load(raw, "lib3", "redis.register_function('f', function() return 1 end)") == b"lib3"
    assert raw.call("FUNCTION", "LIST") == [{
        b"library_name": b"lib3", b"engine": b"LUA",
        b"functions": [{b"name": b"f", b"description": Null("_"), b"flags": []}]}]
    assert raw.call("FUNCTION", "STATS") == {
        b"running_script": Null("_"),
        b"engines": {b"LUA": {b"libraries_count": 1, b"functions_count": 1}}}


def test_kill_help_dump_restore_and_arity(raw):
    assert raw.call("FUNCTION", "KILL") == Error("NOTBUSY No scripts in execution right now.")
    help_lines = raw.call("FUNCTION", "HELP")
    assert help_lines[0] == "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert help_lines[-2:] == ["HELP", "    Prints this help."]
    assert len(help_lines) == 40
    assert raw.call("FUNCTION", "DUMP") == Error("ERR FUNCTION DUMP is not supported by strata")
    assert raw.call("FUNCTION", "RESTORE", "x") == Error(
        "ERR FUNCTION RESTORE is not supported by strata")
    assert raw.call("FUNCTION", "foo") == Error(
        "ERR unknown subcommand 'foo'. Try FUNCTION HELP.")
    for subcommand in ("STATS", "KILL", "HELP", "DUMP"):
        assert raw.call("FUNCTION", subcommand, "x") == Error(
            f"ERR wrong number of arguments for 'function|{subcommand.lower()}' command")
    assert raw.call("FUNCTION", "DELETE") == Error(
        "ERR wrong number of arguments for 'function|delete' command")
    assert raw.call("FUNCTION") == Error("ERR wrong number of arguments for 'function' command")


def test_functions_survive_script_flush(raw, client):
    assert load(raw, "keep", "redis.register_function('inc', function(keys) "
                "return redis.call('incr', keys[1]) end)") == b"keep"
    sha = client.script_load("return 7")
    assert raw.call("SCRIPT", "FLUSH") == Simple("OK")
    assert client.script_exists(sha) == [False]
    assert raw.call("FCALL", "inc", "1", "n") == 1
    assert raw.call("FCALL", "inc", "1", "n") == 2
    # And scripts do not see the functions' globals, nor functions the scripts'.
    assert client.eval("return 1", 0) == 1
    assert [entry[1] for entry in raw.call("FUNCTION", "LIST")] == [b"keep"]


def test_function_atomicity_from_threads(server, client):
    """4 threads x 200 calls of a function that reads then writes a counter (with a loop
    between): a call interleaved with another would lose an increment."""
    threads_count, rounds = 4, (50 if SLOW > 1 else 200)
    client.function_flush()
    code = ("#!lua name=counter\n"
            "redis.register_function('bump', function(keys)\n"
            "  local v = redis.call('get', keys[1]) or '0'\n"
            "  for i = 1, 2000 do v = v + 0 end\n"
            "  redis.call('set', keys[1], tonumber(v) + 1)\n"
            "  return redis.call('incr', keys[2])\n"
            "end)")
    assert client.function_load(code) == b"counter"

    def run():
        connection = server.client()
        try:
            for _ in range(rounds):
                connection.fcall("bump", 2, "count", "incrs")
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(client.get("count")) == threads_count * rounds
    assert int(client.get("incrs")) == threads_count * rounds


def test_redis_py_helpers(client):
    client.function_flush()
    code = ("#!lua name=mylib\n"
            "redis.register_function{function_name='hello', description='greets',\n"
            "  callback=function(keys, args) return 'hello ' .. args[1] end,\n"
            "  flags={'no-writes'}}")
    assert client.function_load(code) == b"mylib"
    assert client.function_load(code, replace=True) == b"mylib"
    with pytest.raises(redis.exceptions.ResponseError, match="Library 'mylib' already exists"):
        client.function_load(code)
    assert client.fcall("hello", 0, "you") == b"hello you"
    assert client.fcall_ro("hello", 0, "ro") == b"hello ro"
    listed = client.function_list()
    assert listed[0][1] == b"mylib"
    assert listed[0][5][0][3] == b"greets"
    assert client.function_list(library="my*", withcode=True)[0][7] == code.encode()
    assert client.function_delete("mylib") is True
    assert client.function_list() == []


def test_command_info_and_acl(server, client):
    with Connection(server.port) as raw:
        info = raw.call("COMMAND", "INFO", "fcall", "fcall_ro", "function|load")
    assert info[0][:6] == [b"fcall", -3, ["noscript", "stale", "skip_monitor",
                           "no_mandatory_keys", "movablekeys"], 0, 0, 0]
    assert info[0][6] == ["@slow", "@scripting"]
    assert info[1][2][0] == "readonly"
    assert info[2][:3] == [b"function|load", -3, ["write", "denyoom", "noscript"]]
    assert info[2][6] == ["@write", "@slow", "@scripting"]
    # redis.call() from a function is checked against the caller's rights.
    client.function_flush()
    client.function_load("#!lua name=acl\nredis.register_function('setk', function() "
                         "return redis.call('set', 'k', 'w') end)")
    assert client.execute_command("ACL", "SETUSER", "fnviewer", "on", ">viewpw",
                                  "namespace:default=read") == b"OK"
    viewer = server.client(username="fnviewer", password="viewpw")
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            viewer.fcall("setk", 0)
    finally:
        viewer.close()
    assert client.get("k") is None


def test_long_library_body_is_stopped(raw):
    """A body that never ends is stopped by the scripts' time limit; the next library
    loads and its functions see the whole runtime API again (not the load API)."""
    assert raw.call("CONFIG", "SET", "busy-reply-threshold", "300") == Simple("OK")
    try:
        assert load(raw, "slow", "redis.register_function('f', function() end) "
                    "while true do end").startswith(REGISTERING + "ERR Script stopped: it ran for")
    finally:
        assert raw.call("CONFIG", "SET", "busy-reply-threshold", "5000") == Simple("OK")
    assert raw.call("FUNCTION", "LIST") == []
    assert load(raw, "ok", "redis.register_function('f', function() "
                "return tostring(5) .. redis.sha1hex('') end)") == b"ok"
    assert raw.call("FCALL", "f", "0") == b"5da39a3ee5e6b4b0d3255bfef95601890afd80709"
