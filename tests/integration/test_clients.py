"""CLIENT KILL, CLIENT NO-EVICT / NO-TOUCH, MONITOR and RESET, as Redis 7.0 answers them
(checked against redis-server 7.0.15). The server runs two worker threads, and each test
uses several connections, so that a kill or a monitor line crosses threads."""
import re
import socket
import subprocess
import time

import pytest
import redis

from conftest import SLOW, Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = Server(tmp_path_factory.mktemp("strata"), "--memory", "256mb", "--threads", "2")
    yield instance
    instance.stop()


@pytest.fixture
def admin(server):
    connection = server.client()
    yield connection
    connection.close()


class Raw:
    """One plain socket speaking RESP, to see exactly what the server sends and when it
    closes."""

    def __init__(self, server):
        self.socket = socket.create_connection(("127.0.0.1", server.port), timeout=10 * SLOW)
        self.buffer = b""
        info = self.command("CLIENT", "INFO").decode()
        fields = dict(item.split("=", 1) for item in info.split())
        self.id = int(fields["id"])
        self.addr = fields["addr"]
        self.laddr = fields["laddr"]

    def send(self, *arguments):
        data = b"*%d\r\n" % len(arguments)
        for argument in arguments:
            argument = argument if isinstance(argument, bytes) else str(argument).encode()
            data += b"$%d\r\n%s\r\n" % (len(argument), argument)
        self.socket.sendall(data)

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.socket.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self):
        """One reply: simple strings, errors and integers as their line, bulk strings as
        their bytes."""
        line = self.line()
        if line.startswith(b"$"):
            length = int(line[1:])
            while len(self.buffer) < length + 2:
                chunk = self.socket.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buffer += chunk
            data, self.buffer = self.buffer[:length], self.buffer[length + 2:]
            return data
        return line

    def command(self, *arguments):
        self.send(*arguments)
        return self.reply()

    def assert_closed(self):
        """The server closes the connection promptly: a blocking recv sees its end."""
        self.socket.settimeout(5 * SLOW)
        try:
            while self.socket.recv(65536):
                pass
        except ConnectionResetError:
            pass

    def close(self):
        self.socket.close()


def alive(connection):
    return connection.command("PING") == b"+PONG"


def test_kill_by_id(server, admin):
    victim, bystander = Raw(server), Raw(server)
    assert admin.execute_command("CLIENT", "KILL", "ID", victim.id) == 1
    victim.assert_closed()
    assert alive(bystander)
    # Gone, so a second kill finds nobody.
    assert admin.execute_command("CLIENT", "KILL", "ID", victim.id) == 0
    assert b"id=%d " % victim.id not in admin.execute_command("CLIENT", "LIST")
    bystander.close()


def test_kill_by_addr_and_laddr(server, admin):
    victims = [Raw(server) for _ in range(3)]
    assert admin.execute_command("CLIENT", "KILL", "ADDR", victims[0].addr) == 1
    victims[0].assert_closed()
    assert admin.execute_command("CLIENT", "KILL", "ADDR", "10.9.8.7:6") == 0
    # Filters AND together: the right local address with the wrong id kills nobody.
    assert admin.execute_command("CLIENT", "KILL", "LADDR", victims[1].laddr, "ID",
                                 victims[2].id) == 1
    victims[2].assert_closed()
    assert admin.execute_command("CLIENT", "KILL", "LADDR", "127.0.0.1:1", "ID",
                                 victims[1].id) == 0
    assert admin.execute_command("CLIENT", "KILL", "ADDR", victims[1].addr, "TYPE",
                                 "pubsub") == 0
    assert alive(victims[1])
    assert admin.execute_command("CLIENT", "KILL", "ADDR", victims[1].addr, "LADDR",
                                 victims[1].laddr, "TYPE", "normal") == 1
    victims[1].assert_closed()


def test_kill_by_user_and_rights(server, admin):
    assert admin.execute_command("ACL", "SETUSER", "killme", "on", ">pw-killme", "~*") == b"OK"
    try:
        first, second, other = Raw(server), Raw(server), Raw(server)
        assert first.command("AUTH", "killme", "pw-killme") == b"+OK"
        assert second.command("AUTH", "killme", "pw-killme") == b"+OK"
        # Killing and watching are the server's own commands.
        assert first.command("CLIENT", "KILL", "ID", other.id) == (
            b"-NOPERM User killme has no permissions to run the 'client|kill' command")
        assert first.command("MONITOR").startswith(b"-NOPERM")
        assert first.command("CLIENT", "NO-EVICT", "on").startswith(b"-NOPERM")
        assert admin.execute_command("CLIENT", "KILL", "USER", "killme") == 2
        first.assert_closed()
        second.assert_closed()
        assert alive(other)
        with pytest.raises(redis.ResponseError, match="^No such user 'nobody'$"):
            admin.execute_command("CLIENT", "KILL", "USER", "nobody")
        other.close()
    finally:
        admin.execute_command("ACL", "DELUSER", "killme")


def test_skipme_and_old_form(server, admin):
    me = Raw(server)
    # SKIPME yes is the default: a filter that names only the caller kills nobody.
    assert me.command("CLIENT", "KILL", "ID", me.id) == b":0"
    assert me.command("CLIENT", "KILL", "ID", me.id, "SKIPME", "yes") == b":0"
    assert me.command("CLIENT", "KILL", "ID", me.id, "SKIPME", "no") == b":1"
    me.assert_closed()  # after its reply

    victim = Raw(server)
    assert admin.execute_command("CLIENT", "KILL", victim.addr) == b"OK"
    victim.assert_closed()
    with pytest.raises(redis.ResponseError, match="^No such client$"):
        admin.execute_command("CLIENT", "KILL", victim.addr)
    # The old form may kill the caller.
    me = Raw(server)
    assert me.command("CLIENT", "KILL", me.addr) == b"+OK"
    me.assert_closed()


def test_kill_errors(server, admin):
    errors = {
        ("ID", "0"): "client-id should be greater than 0",
        ("ID", "abc"): "client-id should be greater than 0",
        ("SKIPME", "maybe"): "syntax error",
        ("ID", "5", "SKIPME"): "syntax error",
        ("BOGUS", "1"): "syntax error",
        ("TYPE", "bogus"): "Unknown client type 'bogus'",
        (): "wrong number of arguments for 'client|kill' command",
    }
    for arguments, message in errors.items():
        with pytest.raises(redis.ResponseError) as failure:
            admin.execute_command("CLIENT", "KILL", *arguments)
        assert str(failure.value) == message, arguments
    # "CLIENT KILL ID" is the old form, with the address "ID".
    with pytest.raises(redis.ResponseError, match="^No such client$"):
        admin.execute_command("CLIENT", "KILL", "ID")
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "master") == 0


def test_no_evict_and_no_touch(server):
    connection = Raw(server)

    def flags():
        info = connection.command("CLIENT", "INFO").decode()
        return re.search(r" flags=(\S+) ", info).group(1)

    assert flags() == "N"
    assert connection.command("CLIENT", "NO-EVICT", "on") == b"+OK"
    assert flags() == "e"
    assert connection.command("CLIENT", "NO-TOUCH", "ON") == b"+OK"
    assert flags() == "eT"
    assert connection.command("CLIENT", "NO-EVICT", "maybe") == b"-ERR syntax error"
    assert connection.command("CLIENT", "NO-EVICT", "off") == b"+OK"
    assert connection.command("CLIENT", "NO-TOUCH", "off") == b"+OK"
    assert flags() == "N"
    assert connection.command("CLIENT", "NO-EVICT", "on") == b"+OK"
    assert connection.command("RESET") == b"+RESET"
    assert flags() == "N"
    connection.close()


def read_monitor_lines(process, count):
    """COUNT lines of `redis-cli monitor`, within a deadline."""
    lines = []
    deadline = time.time() + 10 * SLOW
    while len(lines) < count and time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.decode().rstrip("\n"))
    return lines


def test_redis_cli_monitor_sees_every_connection(server, admin):
    process = subprocess.Popen(["redis-cli", "-p", str(server.port), "monitor"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert read_monitor_lines(process, 1) == ["OK"]
        clients = [server.client() for _ in range(4)]
        for number, client in enumerate(clients):
            client.set(f"monitor:{number}", b'a"b\\c\n\r\t\x07\x08\x00\xff z')
        admin.execute_command("ACL", "SETUSER", "watched", "on", ">secret-pw", "~*")
        clients[0].execute_command("AUTH", "watched", "secret-pw")
        clients[1].execute_command("HELLO", "2", "AUTH", "watched", "secret-pw")
        clients[2].config_get("maxmemory")  # CONFIG is the server's own: not shown
        clients[3].get("monitor:3")
        lines = read_monitor_lines(process, 7)
        value = r'"a\"b\\c\n\r\t\a\b\x00\xff z"'
        for number in range(4):
            assert re.fullmatch(rf'\d+\.\d{{6}} \[0 127\.0\.0\.1:\d+\] "SET" "monitor:{number}" '
                                + re.escape(value), lines[number]), lines[number]
        assert lines[4].endswith('"AUTH" "(redacted)" "(redacted)"')
        assert lines[5].endswith('"HELLO" "2" "AUTH" "(redacted)" "(redacted)"')
        assert lines[6].endswith('"GET" "monitor:3"')
        # The four connections' own addresses.
        addresses = {re.search(r"\[0 (\S+)\]", line).group(1) for line in lines[:4]}
        assert len(addresses) == 4
        assert "secret-pw" not in "".join(lines)
        for client in clients:
            client.close()
    finally:
        process.terminate()
        process.wait()
        admin.execute_command("ACL", "DELUSER", "watched")


def test_redis_py_monitor(server, admin):
    other = server.client()
    with admin.monitor() as monitor:
        other.set("py:key", "hello world")
        other.incr("py:counter")
        first, second = monitor.next_command(), monitor.next_command()
    assert first["command"] == "SET py:key hello world"
    assert first["client_type"] == "tcp" and first["db"] == 0
    assert abs(first["time"] - time.time()) < 60
    assert second["command"] == "INCRBY py:counter 1"  # redis-py sends INCRBY
    other.close()


def test_monitor_shows_scripts_before_their_commands(server, admin):
    """EVAL and FCALL reach monitors as they start, and the commands they run follow,
    from "lua", as in Redis 7.0."""
    other = server.client()
    other.function_load("#!lua name=monlib\n"
                        "redis.register_function('test', function(keys, args) "
                        "return redis.call('set', keys[1], args[1]) end)", replace=True)
    with admin.monitor() as monitor:
        other.eval("redis.call('set', KEYS[1], ARGV[1])", 1, "foo", "bar")
        other.fcall("test", 1, "foo", "baz")
        lines = [monitor.next_command() for _ in range(4)]
    assert lines[0]["command"].startswith("EVAL ") and lines[0]["client_type"] == "tcp"
    assert lines[1]["command"] == "set foo bar" and lines[1]["client_type"] == "lua"
    assert lines[2]["command"] == "FCALL test 1 foo baz"
    assert lines[3]["command"] == "set foo baz" and lines[3]["client_type"] == "lua"
    other.function_delete("monlib")
    other.close()


def test_monitor_own_commands_reset_and_quit(server, admin):
    watcher = Raw(server)
    assert watcher.command("MONITOR") == b"+OK"
    flags = admin.execute_command("CLIENT", "LIST", "ID", watcher.id)
    assert b" flags=O " in flags
    # A second MONITOR is ignored without a reply; a monitor sees its own commands,
    # after their replies.
    watcher.send("MONITOR")
    watcher.send("PING")
    assert watcher.reply() == b"+PONG"
    assert watcher.reply().endswith(b'[0 %s] "PING"' % watcher.addr.encode())
    assert watcher.command("RESET") == b"+RESET"
    admin.set("after-reset", "1")
    assert watcher.command("ECHO", "only this") == b"only this"
    assert b" flags=N " in admin.execute_command("CLIENT", "LIST", "ID", watcher.id)
    # QUIT ends it with the connection.
    assert watcher.command("MONITOR") == b"+OK"
    assert watcher.command("QUIT") == b"+OK"
    watcher.assert_closed()
    deadline = time.time() + 5 * SLOW
    while b"flags=O" in admin.execute_command("CLIENT", "LIST") and time.time() < deadline:
        time.sleep(0.01)
    assert b"flags=O" not in admin.execute_command("CLIENT", "LIST")


def test_monitor_that_does_not_read_is_closed(server, admin):
    admin.config_set("client-output-limit", "1mb")
    try:
        watcher = socket.socket()
        watcher.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        watcher.connect(("127.0.0.1", server.port))
        watcher.sendall(b"MONITOR\r\n")
        assert watcher.recv(5) == b"+OK\r\n"
        writer = server.client()
        pipe = writer.pipeline(transaction=False)
        for number in range(200):
            # 16,000 bytes: below the 16 KiB of a value block, whose MONITOR line shows only
            # its first 128 bytes; about 64 KB a line once quoted.
            pipe.set(f"flood:{number}", b"\x01" * 16000)
        pipe.execute()
        deadline = time.time() + 10 * SLOW
        while "event=monitor_output_limit" not in server.read_log() and time.time() < deadline:
            time.sleep(0.01)
        assert "event=monitor_output_limit" in server.read_log()
        assert b"flags=O" not in admin.execute_command("CLIENT", "LIST")
        watcher.close()
        writer.close()
    finally:
        admin.config_set("client-output-limit", "256mb")


def test_monitor_and_reset_in_transactions(server):
    watcher, client = Raw(server), Raw(server)
    assert watcher.command("MONITOR") == b"+OK"
    assert client.command("MULTI") == b"+OK"
    for arguments in (("SET", "tx", "v"), ("MONITOR",), ("GET", "tx")):
        assert client.command(*arguments) == b"+QUEUED"
    assert client.command("EXEC") == b"*3"
    assert [client.reply() for _ in range(3)] == [
        b"+OK", b"-ERR MONITOR isn't allowed for DENY BLOCKING client", b"v"]
    # Queued commands are shown as EXEC runs them, EXEC itself after them.
    lines = [watcher.line() for _ in range(4)]
    assert [line.split(b"] ", 1)[1] for line in lines] == [
        b'"MULTI"', b'"SET" "tx" "v"', b'"GET" "tx"', b'"EXEC"']
    # RESET is never queued: it ends MULTI and WATCH.
    assert client.command("WATCH", "tx") == b"+OK"
    assert client.command("MULTI") == b"+OK"
    assert client.command("SET", "tx", "w") == b"+QUEUED"
    assert client.command("RESET") == b"+RESET"
    assert client.command("EXEC") == b"-ERR EXEC without MULTI"
    assert b" multi=-1 " in client.command("CLIENT", "INFO")
    watcher.close()
    client.close()
