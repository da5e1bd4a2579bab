"""Redis's introspection of commands: INFO commandstats, errorstats and cpu, SLOWLOG and
LATENCY, with Redis 7.0's counting rules and reply formats (checked against redis-server
7.0.15)."""
import threading
import time

import pytest
import redis

from conftest import SANITIZED, write_users_file
from resp import Connection, Null

ERROR_FIELDS = ("calls", "usec", "usec_per_call", "rejected_calls", "failed_calls")


def raw(server):
    return Connection(server.port)


def command_stats(client):
    """INFO commandstats as redis-py parses it: {name: {calls: ...}} without cmdstat_."""
    return {name[len("cmdstat_"):]: fields
            for name, fields in client.info("commandstats").items()}


def test_commandstats_count_calls_failures_and_refusals(start_server):
    server = start_server("--memory", "64mb")
    client = server.client()
    assert command_stats(client) == {}  # a fresh server has run nothing
    client.set("k", "1")
    client.set("s", "text")
    client.get("k")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        client.execute_command("INCR", "s")  # runs and replies an error: a failed call
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get'"):
        client.execute_command("GET")  # refused before it runs
    with pytest.raises(redis.ResponseError, match="'client|id'"):
        client.execute_command("CLIENT", "ID", "extra")
    client.execute_command("CLIENT", "LIST")
    with pytest.raises(redis.ResponseError, match="unknown subcommand"):
        client.execute_command("CLIENT", "NOPE")  # counted nowhere, as in Redis
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command("NOPE")
    stats = command_stats(client)
    assert set(stats) == {"info", "set", "get", "incr", "client|id", "client|list"}
    assert stats["info"]["calls"] == 1  # the first INFO, counted once it had run
    assert stats["set"]["calls"] == 2 and stats["set"]["failed_calls"] == 0
    assert stats["set"]["rejected_calls"] == 0
    assert stats["get"]["calls"] == 1 and stats["get"]["rejected_calls"] == 1
    assert stats["incr"]["calls"] == 1 and stats["incr"]["failed_calls"] == 1
    assert stats["client|id"] == {"calls": 0, "usec": 0, "usec_per_call": 0.0,
                                  "rejected_calls": 1, "failed_calls": 0}
    assert stats["client|list"]["calls"] == 1
    for fields in stats.values():
        assert set(fields) == set(ERROR_FIELDS)
        if fields["calls"]:
            assert fields["usec_per_call"] == pytest.approx(fields["usec"] / fields["calls"],
                                                            abs=0.01)
    assert command_stats(client)["info"]["calls"] == 2
    errors = client.info("errorstats")
    assert errors == {"errorstat_ERR": "count=5"}  # (redis-py 4.3 parses no further)
    assert client.info("stats")["total_error_replies"] == 5
    # CONFIG RESETSTAT starts them again (and then counts itself, as Redis does).
    client.config_resetstat()
    assert list(command_stats(client)) == ["config|resetstat"]
    assert client.info("errorstats") == {}
    assert client.info("stats")["total_error_replies"] == 0
    client.close()


def test_counts_across_threads_while_read(server):
    """Connections on several worker threads count into their own slots while INFO, the
    slow log and the latency monitor are read: the sums are exact (and ThreadSanitizer
    sees the threads race on nothing)."""
    client = server.client()
    client.config_set("slowlog-log-slower-than", "0")
    client.config_set("latency-monitor-threshold", "1")
    client.config_resetstat()
    errors = []

    def work():
        try:
            other = server.client()
            for _ in range(10):
                pipeline = other.pipeline(transaction=False)
                for _ in range(20):
                    pipeline.incr("counter")
                    pipeline.execute_command("SELECT", "1")
                pipeline.execute(raise_on_error=False)
            other.close()
        except Exception as error:  # reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        client.info("commandstats")
        client.info("errorstats")
        client.slowlog_get(5)
        client.execute_command("LATENCY", "LATEST")
    for thread in threads:
        thread.join()
    assert not errors
    try:
        stats = command_stats(client)
        assert stats["incrby"]["calls"] == 800 and stats["incrby"]["failed_calls"] == 0
        assert stats["select"]["calls"] == 800 and stats["select"]["failed_calls"] == 800
        assert client.info("errorstats")["errorstat_ERR"] == "count=800"
        assert client.slowlog_len() == 128
    finally:
        client.config_set("slowlog-log-slower-than", "10000")
        client.config_set("latency-monitor-threshold", "0")
        client.slowlog_reset()
        client.close()


# The password "pw", hashed with libsodium's cheapest Argon2id parameters (8 KiB, one
# pass) so that checking it takes no time; --hash-password's take 0.2 s or more.
CHEAP_HASH = "$argon2id$v=19$m=8,t=1,p=1$pqGBKOjAF9oV/IOvmUOJHA$VwDXWOj6/FyoNx97IuDk8lOxRVS0Vf9g6NCZgtlBOQY"


def test_refusals_before_authentication_and_errorstats_prefixes(start_server, tmp_path):
    users = write_users_file(str(tmp_path / "users"),
                             f"user default off\n"
                             f"user admin on #{CHEAP_HASH} namespace:*=all\n"
                             f"user reader on #{CHEAP_HASH} namespace:default=read\n")
    server = start_server("--memory", "64mb", "--users", users)
    with raw(server) as connection:
        assert connection.call("GET", "k").startswith("NOAUTH")
        assert connection.call("AUTH", "reader", "wrong").startswith("WRONGPASS")
        assert connection.call("AUTH", "reader", "pw") == "OK"
        assert connection.call("GET", "k") == Null("$-1")
        assert connection.call("SET", "k", "v").startswith("NOPERM")
        assert connection.call("SELECT", "1") == "ERR DB index is out of range"
        assert connection.call("SELECT", "x").startswith("ERR value is not an integer")
    with raw(server) as connection:
        assert connection.call("AUTH", "admin", "pw") == "OK"
        text = bytes(connection.call("INFO", "commandstats")).decode()
        stats = {line.split(":")[0]: line.split(":")[1] for line in text.split("\r\n")[1:-1]}
        assert stats["cmdstat_get"].startswith("calls=1,usec=")
        assert stats["cmdstat_get"].endswith(",rejected_calls=1,failed_calls=0")
        assert stats["cmdstat_set"] == \
            "calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0"
        assert stats["cmdstat_auth"].startswith("calls=3,")
        assert stats["cmdstat_auth"].endswith(",rejected_calls=0,failed_calls=1")
        assert stats["cmdstat_select"].endswith(",rejected_calls=0,failed_calls=2")
        text = bytes(connection.call("INFO", "errorstats")).decode()
        # In name order, as Redis lists them.
        assert text == ("# Errorstats\r\nerrorstat_ERR:count=2\r\nerrorstat_NOAUTH:count=1\r\n"
                        "errorstat_NOPERM:count=1\r\nerrorstat_WRONGPASS:count=1\r\n")


def test_info_sections_as_redis_7(server):
    connection = raw(server)

    def titles(*arguments):
        text = bytes(connection.call("INFO", *arguments)).decode()
        return [line[2:] for line in text.split("\r\n") if line.startswith("# ")]

    default = titles()
    assert default[:7] == ["Server", "Clients", "Memory", "Stats", "Replication", "CPU",
                           "Errorstats"]
    assert "Keyspace" in default and "Commandstats" not in default
    assert titles("default") == default
    for everything in ("all", "everything"):
        assert titles(everything) == default + ["Commandstats"]
    assert titles("cpu") == ["CPU"]
    assert titles("replication", "server") == ["Server", "Replication"]
    assert titles("commandstats", "errorstats", "keyspace") == ["Errorstats", "Keyspace",
                                                                "Commandstats"]
    # Sections are apart by one blank line, whichever module wrote them.
    text = bytes(connection.call("INFO", "all")).decode()
    assert text.count("\r\n\r\n# ") == len(default)
    assert "\r\n\r\n\r\n" not in text and not text.startswith("\r\n")
    connection.close()


def test_cpu_fields_increase(server, client):
    fields = ("used_cpu_sys", "used_cpu_user", "used_cpu_sys_children",
              "used_cpu_user_children", "used_cpu_sys_main_thread", "used_cpu_user_main_thread")
    before = client.info("cpu")
    assert list(before) == list(fields)
    with raw(server) as connection:
        text = bytes(connection.call("INFO", "cpu")).decode()
    for line in text.split("\r\n")[1:-1]:
        assert len(line.split(":")[1].split(".")[1]) == 6  # seconds with 6 decimals
    pipeline = client.pipeline(transaction=False)
    for i in range(2000):
        pipeline.set(f"cpu{i % 10}", "v")
    pipeline.execute()
    after = client.info("cpu")
    assert after["used_cpu_sys"] + after["used_cpu_user"] > \
        before["used_cpu_sys"] + before["used_cpu_user"]
    for field in fields:
        assert after[field] >= before[field]


@pytest.fixture
def slowlog(client):
    client.config_set("slowlog-log-slower-than", "0")
    client.slowlog_reset()
    yield client
    client.config_set("slowlog-log-slower-than", "10000")
    client.config_set("slowlog-max-len", "128")
    client.slowlog_reset()


def test_slowlog_logs_commands_with_their_arguments(server, slowlog):
    assert slowlog.config_get("slowlog-*") == {"slowlog-log-slower-than": "0",
                                              "slowlog-max-len": "128"}
    slowlog.client_setname("logged")
    slowlog.set("key", "x" * 200)
    slowlog.exists(*[f"k{i}" for i in range(40)])
    with raw(server) as connection:
        entries = connection.call("SLOWLOG", "GET", "3")
    assert len(entries) == 3
    exists, set_, setname = entries  # newest first; the GET itself is logged after it
    assert exists[0] == set_[0] + 1 and set_[0] == setname[0] + 1
    assert setname[3] == [b"CLIENT", b"SETNAME", b"logged"]
    # Redis's truncation: 32 arguments at most, the last saying how many more, and 128
    # bytes of each with how many more.
    assert len(exists[3]) == 32
    assert exists[3][:31] == [b"EXISTS"] + [f"k{i}".encode() for i in range(30)]
    assert exists[3][31] == b"... (10 more arguments)"
    assert set_[3] == [b"SET", b"key", b"x" * 128 + b"... (72 more bytes)"]
    for entry in (exists, set_):
        assert len(entry) == 6
        assert abs(entry[1] - time.time()) < 60
        assert entry[2] >= 0
        assert entry[4].startswith(b"127.0.0.1:") and entry[5] == b"logged"
    # redis-py parses them.
    parsed = slowlog.slowlog_get(3)  # the SLOWLOG GET above, EXISTS, SET
    assert parsed[0]["command"] == b"SLOWLOG GET 3"
    assert parsed[2]["command"] == b"SET key " + b"x" * 128 + b"... (72 more bytes)"
    assert parsed[2]["id"] == set_[0] and parsed[2]["duration"] == set_[2]
    length = slowlog.slowlog_len()
    assert length >= 6
    assert len(slowlog.slowlog_get(-1)) == length + 1  # and the LEN
    for _ in range(3):
        slowlog.ping()
    assert len(slowlog.slowlog_get()) == 10  # Redis's default count


def test_slowlog_length_reset_and_threshold(server, slowlog):
    assert slowlog.slowlog_reset()
    assert slowlog.slowlog_len() == 1  # the RESET itself, as in Redis
    slowlog.config_set("slowlog-max-len", "3")
    for i in range(5):
        slowlog.get("k")
    assert slowlog.slowlog_len() == 3
    assert [entry["command"] for entry in slowlog.slowlog_get()] == [b"SLOWLOG LEN", b"GET k",
                                                                     b"GET k"]
    slowlog.config_set("slowlog-log-slower-than", "-1")  # logged: it ran under 0
    slowlog.slowlog_reset()
    for i in range(5):
        slowlog.get("k")
    assert slowlog.slowlog_len() == 0
    slowlog.config_set("slowlog-log-slower-than", "10000000")
    slowlog.get("k")
    assert slowlog.slowlog_len() == 0
    with raw(server) as connection:
        assert connection.call("SLOWLOG", "GET", "-2") == \
            "ERR count should be greater than or equal to -1"
        assert connection.call("SLOWLOG", "GET", "x") == \
            "ERR count should be greater than or equal to -1"
        assert connection.call("SLOWLOG", "LEN", "x") == \
            "ERR wrong number of arguments for 'slowlog|len' command"
        assert connection.call("SLOWLOG", "NOPE") == \
            "ERR unknown subcommand 'NOPE'. Try SLOWLOG HELP."
        assert connection.call("SLOWLOG", "HELP")[0] == \
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    with pytest.raises(redis.ResponseError, match="slowlog-max-len"):
        slowlog.config_set("slowlog-max-len", "-1")


def test_slowlog_hides_passwords(server, slowlog):
    with raw(server) as connection:
        assert connection.call("AUTH", "secret").startswith("ERR AUTH <password> called")
        entry = connection.call("SLOWLOG", "GET", "1")[0]
        assert entry[3] == [b"AUTH", b"(redacted)"]
        connection.call("CONFIG", "SET", "max-clients", "10000", "requirepass", "")
        entry = connection.call("SLOWLOG", "GET", "1")[0]
    assert entry[3] == [b"CONFIG", b"SET", b"max-clients", b"10000", b"requirepass",
                        b"(redacted)"]


def test_latency_monitor(server, client):
    with raw(server) as connection:
        assert connection.call("CONFIG", "GET", "latency-monitor-threshold") == \
            [b"latency-monitor-threshold", b"0"]
        connection.call("LATENCY", "RESET")  # (an earlier test may have left events)
        # Off by default: nothing is recorded, however slow.
        assert connection.call("DEBUG", "SLEEP", "0.003") == "OK"
        assert connection.call("LATENCY", "LATEST") == []
        assert connection.call("CONFIG", "SET", "latency-monitor-threshold", "1") == "OK"
        try:
            client.get("fast")  # well under a millisecond (but not always when sanitized)
            assert SANITIZED or connection.call("LATENCY", "LATEST") == []
            connection.call("LATENCY", "RESET")
            now = int(time.time())
            assert connection.call("DEBUG", "SLEEP", "0.005") == "OK"
            latest = connection.call("LATENCY", "LATEST")
            assert len(latest) == 1
            event, when, latency, highest = latest[0]
            assert event == b"command" and abs(when - now) <= 2
            assert 5 <= latency < 1000 and highest == latency
            history = connection.call("LATENCY", "HISTORY", "command")
            assert history == [[when, latency]]
            assert connection.call("LATENCY", "HISTORY", "nothing") == []
            assert connection.call("LATENCY", "RESET", "command", "nothing") == 1
            assert connection.call("LATENCY", "LATEST") == []
            assert connection.call("LATENCY", "HISTORY", "command") == []
        finally:
            assert connection.call("CONFIG", "SET", "latency-monitor-threshold", "0") == "OK"
        assert connection.call("LATENCY", "HISTORY") == \
            "ERR wrong number of arguments for 'latency|history' command"
        assert connection.call("LATENCY", "HELP")[0] == \
            "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
        stats = command_stats(client)
        assert stats["latency|history"]["rejected_calls"] >= 1
        assert stats["debug"]["calls"] >= 2


def test_slow_log_and_monitor_after_set_gave_its_value_away(start_server):
    """SET takes a large value's block without a copy, and a SET that stores nothing (XX
    on a missing key) frees it at once: the slow log and MONITOR, which read the arguments
    after the command, show the value's first 128 bytes and how many more, never freed
    memory (AddressSanitizer checks that in the sanitized run)."""
    server = start_server()
    value = bytes(range(256)) * 80  # 20,480 bytes: a value block
    with raw(server) as monitor, raw(server) as connection:
        assert monitor.call("MONITOR") == "OK"
        connection.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
        assert connection.call("SET", "absent", value, "XX") == Null("$-1")
        assert connection.call("SET", "kept", value) == "OK"
        entries = connection.call("SLOWLOG", "GET", "10")
        sets = [entry[3] for entry in entries if entry[3][0].upper() == b"SET"]
        assert len(sets) == 2
        for arguments in sets:
            assert arguments[2] == value[:128] + b"... (20352 more bytes)"
        lines = []
        while len([line for line in lines if '"SET"' in line.upper()]) < 2:
            lines.append(monitor.read())
        for line in [line for line in lines if '"SET"' in line.upper()]:
            assert line.endswith(("... (20352 more bytes)", "... (20352 more bytes) \"XX\"")), line
        assert connection.call("STRLEN", "kept") == len(value)
