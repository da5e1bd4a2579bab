"""COMMAND LIST (FILTERBY), INFO, DOCS and GETKEYS with subcommands ("config|get"), and the
fields of CLIENT LIST and CLIENT INFO, against the replies of Redis 7.0 (redis-server
7.0.15 was run beside strata to write these expectations)."""
import threading
import time

import pytest

from resp import Connection, Error, Map, Null

SYNTAX = "ERR syntax error"


@pytest.fixture
def conn(server):
    connection = Connection(server.port)
    yield connection
    connection.close()


def test_command_list_without_filter(conn):
    names = conn.call("COMMAND", "LIST")
    assert b"set" in names and b"client|list" in names and b"config|get" in names
    # COMMAND COUNT counts the commands, not their subcommands.
    assert len([name for name in names if b"|" not in name]) == conn.call("COMMAND", "COUNT")
    # Each container command is followed by its own subcommands.
    at = names.index(b"config")
    assert names[at + 1:at + 6] == [b"config|get", b"config|set", b"config|resetstat",
                                    b"config|rewrite", b"config|help"]


def test_command_list_filterby_pattern(conn):
    def listed(pattern):
        return conn.call("COMMAND", "LIST", "FILTERBY", "PATTERN", pattern)

    assert listed("set") == [b"set"]
    assert listed("get") == [b"get"]
    config = listed("config*")
    assert b"config" in config and b"config|get" in config and b"copy" not in config
    assert listed("config|*re*") == [b"config|resetstat", b"config|rewrite"]
    helps = listed("cl*help")
    assert b"client|help" in helps and b"config|help" not in helps
    assert listed("CLIENT|L*") == [b"client|list"]  # the pattern ignores case
    assert listed("non_exists") == []
    assert listed("non_exists*") == []


def test_command_list_filterby_aclcat_and_module(conn):
    def listed(kind, argument):
        return conn.call("COMMAND", "LIST", "FILTERBY", kind, argument)

    assert listed("ACLCAT", "non_existing_category") == []
    connection = listed("aclcat", "connection")
    assert b"ping" in connection and b"client|id" in connection
    assert b"set" not in connection and b"client|list" not in connection  # CLIENT LIST: @admin
    admin = listed("ACLCAT", "ADMIN")
    assert b"client|list" in admin and b"config|set" in admin and b"get" not in admin
    assert listed("MODULE", "non_existing_module") == []


@pytest.mark.parametrize("args", [
    ["bad_arg"],
    ["FILTERBY"],
    ["FILTERBY", "bad_arg"],
    ["FILTERBY", "bad_arg", "bad_arg2"],
    ["FILTERBY", "PATTERN"],
    ["FILTERBY", "PATTERN", "a", "b"],
    ["FILTER", "PATTERN", "a"],
])
def test_command_list_syntax_errors(conn, args):
    assert conn.call("COMMAND", "LIST", *args) == Error(SYNTAX)


def test_command_info_and_docs_of_subcommands(conn):
    assert conn.call("COMMAND", "INFO", "get|key") == [Null("$-1")]
    assert conn.call("COMMAND", "INFO", "config|get|key") == [Null("$-1")]
    assert conn.call("COMMAND", "INFO", "nosuch", "get")[0] == Null("$-1")
    (entry,) = conn.call("COMMAND", "INFO", "CONFIG|GET")
    assert entry[:6] == [b"config|get", -3, ["admin", "noscript", "loading", "stale"], 0, 0, 0]
    assert "@admin" in entry[6] and entry[7:] == [[], [], []]
    (entry,) = conn.call("COMMAND", "INFO", "object|encoding")
    assert entry[:2] == [b"object|encoding", 3] and entry[3:6] == [2, 2, 1]
    (entry,) = conn.call("COMMAND", "INFO", "config")
    assert [sub[0] for sub in entry[9]] == [b"config|get", b"config|set", b"config|resetstat",
                                            b"config|rewrite", b"config|help"]
    (entry,) = conn.call("COMMAND", "INFO", "get")
    assert entry[9] == []

    # DOCS leaves unknown names out and knows subcommands by their full name.
    docs = conn.call("COMMAND", "DOCS", "nosuch", "get")
    assert len(docs) == 2 and docs[0] == b"get"
    docs = conn.call("COMMAND", "DOCS", "client|list")
    assert docs[0] == b"client|list" and docs[1][:2] == [b"summary", b"Lists open connections."]
    assert conn.call("HELLO", "3")[b"proto"] == 3
    docs = conn.call("COMMAND", "DOCS", "config")
    assert isinstance(docs, Map) and set(docs[b"config"]) == {b"summary", b"since", b"group",
                                                               b"subcommands"}
    assert docs[b"config"][b"subcommands"][b"config|get"][b"group"] == b"server"


def test_command_subcommand_errors(conn):
    assert conn.call("COMMAND", "COUNT", "x") == Error(
        "ERR wrong number of arguments for 'command|count' command")
    assert conn.call("COMMAND", "BOGUS") == Error(
        "ERR unknown subcommand 'BOGUS'. Try COMMAND HELP.")


@pytest.mark.parametrize("line, keys", [
    (["get", "a"], [b"a"]),
    (["GET", "a"], [b"a"]),
    (["mset", "a", "1", "b", "2"], [b"a", b"b"]),
    (["mset", "a", "b", "c"], [b"a", b"c"]),
    (["del", "x", "y", "z"], [b"x", b"y", b"z"]),
    (["rename", "from", "to"], [b"from", b"to"]),
    (["memory", "usage", "k"], [b"k"]),
    (["object", "encoding", "k"], [b"k"]),
])
def test_command_getkeys(conn, line, keys):
    assert conn.call("COMMAND", "GETKEYS", *line) == keys


@pytest.mark.parametrize("line, message", [
    (["nosuch", "a"], "ERR Invalid command specified"),
    (["object", "nosuch", "k"], "ERR Invalid command specified"),
    (["ping", "x"], "ERR The command has no key arguments"),
    (["config", "get", "x"], "ERR The command has no key arguments"),
    (["object", "help"], "ERR The command has no key arguments"),
    (["get", "a", "b"], "ERR Invalid number of arguments specified for command"),
    (["mset", "a"], "ERR Invalid number of arguments specified for command"),
    (["get"], "ERR wrong number of arguments for 'command|getkeys' command"),
    ([], "ERR wrong number of arguments for 'command|getkeys' command"),
])
def test_command_getkeys_errors(conn, line, message):
    assert conn.call("COMMAND", "GETKEYS", *line) == Error(message)


def test_redis_py_command_list_and_getkeys(client):
    assert client.command_list(pattern="client|*name") == [b"client|getname", b"client|setname"]
    assert b"ping" in client.command_list(category="connection")
    assert client.command_list(module="anything") == []
    assert client.command_getkeys("MSET", "a", "1", "b", "2") == ["a", "b"]  # decoded by redis-py


def fields(line):
    return dict(field.split("=", 1) for field in line.split(" "))


# CLIENT LIST's fields in Redis 7.0's order, then Redis 7.2's lib-name and lib-ver.
FIELD_ORDER = ["id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub",
               "ssub", "multi", "qbuf", "qbuf-free", "argv-mem", "multi-mem", "rbs", "rbp", "obl",
               "oll", "omem", "tot-mem", "events", "cmd", "user", "redir", "resp", "lib-name",
               "lib-ver"]


def test_client_list_fields(server, conn):
    idle = Connection(server.port)
    assert idle.call("PING") == "PONG"
    fresh = Connection(server.port)
    fresh_id = None
    try:
        # "*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n": 26 bytes, arguments of 10. The fresh
        # connection is accepted by a worker in its own time: list until it is there.
        fresh_address = "%s:%d" % fresh.sock.getsockname()[:2]
        deadline = time.time() + 10
        while True:
            listing = bytes(conn.call("CLIENT", "LIST")).decode()
            if f"addr={fresh_address} " in listing or time.time() > deadline:
                break
            time.sleep(0.01)
        assert listing.endswith("\n")
        lines = [fields(line) for line in listing.strip().split("\n")]
        assert all(list(line) == FIELD_ORDER for line in lines)
        mine = [line for line in lines if line["cmd"] == "client|list"]
        assert len(mine) == 1
        mine = mine[0]
        assert (mine["qbuf"], mine["argv-mem"], mine["rbs"]) == ("26", "10", "16384")
        assert int(mine["tot-mem"]) > 0 and int(mine["qbuf-free"]) >= 0
        pinged = [line for line in lines if line["cmd"] == "ping"]
        assert pinged and all(line["qbuf"] == "0" and line["argv-mem"] == "0" for line in pinged)
        fresh_id = fresh.call("CLIENT", "ID")
        fresh_line = [line for line in lines if line["id"] == str(fresh_id)]
        assert fresh_line and fresh_line[0]["cmd"] == "NULL"

        # CLIENT INFO, inline ("CLIENT INFO\r\n": 13 bytes), then pipelined with a PING
        # behind it (14 more bytes waiting).
        conn.send_raw(b"CLIENT INFO\r\n")
        info = fields(bytes(conn.read()).decode().strip())
        assert list(info) == FIELD_ORDER
        assert (info["cmd"], info["qbuf"], info["argv-mem"]) == ("client|info", "13", "10")
        conn.send_raw(Connection.encode("CLIENT", "INFO") + Connection.encode("PING"))
        info = fields(bytes(conn.read()).decode().strip())
        assert conn.read() == "PONG"
        assert (info["qbuf"], info["argv-mem"]) == ("40", "10")

        # rbp: the most the reply buffer has held.
        assert conn.call("SET", "big", "x" * 20000) == "OK"
        assert conn.call("GET", "big") == b"x" * 20000
        info = fields(bytes(conn.call("CLIENT", "INFO")).decode().strip())
        assert int(info["rbp"]) >= 20000
    finally:
        idle.close()
        fresh.close()


def test_client_list_filters(server, conn):
    other = Connection(server.port)
    try:
        other_id = other.call("CLIENT", "ID")
        my_id = conn.call("CLIENT", "ID")
        only = bytes(conn.call("CLIENT", "LIST", "ID", str(other_id), str(my_id))).decode()
        assert sorted(int(fields(line)["id"]) for line in only.strip().split("\n")) == \
            sorted([other_id, my_id])
        normal = bytes(conn.call("CLIENT", "LIST", "TYPE", "normal")).decode()
        assert f"id={other_id} " in normal
        assert conn.call("CLIENT", "LIST", "TYPE", "pubsub") == b""
        assert conn.call("CLIENT", "LIST", "TYPE", "bogus") == Error(
            "ERR Unknown client type 'bogus'")
        assert conn.call("CLIENT", "LIST", "ID", "abc") == Error("ERR Invalid client ID")
    finally:
        other.close()


def test_client_list_while_others_run_commands(server, conn):
    # CLIENT LIST reads other sessions' figures from its own thread (race-free: atomics
    # and sessions_lock; ThreadSanitizer checks it in its run).
    busy = Connection(server.port)
    stop = threading.Event()

    def work():
        while not stop.is_set():
            busy.send_raw(Connection.encode("SET", "k", "v" * 100) * 20 + Connection.encode("PING"))
            for _ in range(20):
                assert busy.read() == "OK"
            assert busy.read() == "PONG"

    worker = threading.Thread(target=work)
    worker.start()
    try:
        for _ in range(30):
            listing = bytes(conn.call("CLIENT", "LIST")).decode()
            assert all(list(fields(line)) == FIELD_ORDER for line in listing.strip().split("\n"))
    finally:
        stop.set()
        worker.join()
        busy.close()
