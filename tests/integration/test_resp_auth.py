"""RESP authentication and rights (docs/security.md, "RESP"): AUTH, HELLO AUTH, NOAUTH,
NOPERM, the ACL subset, CLIENT LIST's user=, throttled failures and protected mode, with
redis-cli, redis-py and a raw socket.

Every first AUTH of a password costs an Argon2id check (about 0.2 s, more under the
sanitizers), so the tests share a few servers and a few passwords."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import redis

from conftest import BINARY, SLOW, Server, hash_passwords, write_users_file
from resp import Connection, Error, Map, Null

NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
NOPERM_KEY = "NOPERM No permissions to access a key"


def raw(server, source=None):
    """A raw RESP connection, from the loopback address SOURCE if given."""
    if source is None:
        return Connection(server.port, timeout=30 * SLOW)
    connection = Connection.__new__(Connection)
    connection.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30 * SLOW,
                                               source_address=(source, 0))
    connection.buffer = b""
    return connection


def login(server, user, password):
    connection = raw(server)
    assert connection.call("AUTH", user, password) == "OK"
    return connection


def stat(connection, field):
    info = connection.call("INFO", "stats").decode()
    return int(re.search(rf"^{field}:(\d+)", info, re.M).group(1))


def redis_cli(server, *arguments):
    """redis-cli's standard error (where a failed AUTH goes), if any, and its output."""
    result = subprocess.run(["redis-cli", "-p", str(server.port), *arguments],
                            capture_output=True, text=True, timeout=60 * SLOW)
    return "\n".join(text for text in (result.stderr.strip(), result.stdout.strip()) if text)


# ---- --requirepass ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pass_server(tmp_path_factory):
    instance = Server(tmp_path_factory.mktemp("requirepass"), "--memory", "64mb",
                      "--requirepass", "pw-one")
    yield instance
    instance.stop()


def test_requirepass_with_redis_cli(pass_server):
    assert redis_cli(pass_server, "-a", "pw-one", "--no-auth-warning", "ping") == "PONG"
    assert redis_cli(pass_server, "set", "k", "v") == NOAUTH
    assert redis_cli(pass_server, "-a", "pw-one", "--no-auth-warning", "get", "k") == ""
    with login(pass_server, "default", "pw-one") as connection:
        before = stat(connection, "acl_access_denied_auth")
        assert redis_cli(pass_server, "-a", "bad", "--no-auth-warning", "ping") == \
            f"AUTH failed: {WRONGPASS}\n{NOAUTH}"
        assert stat(connection, "acl_access_denied_auth") == before + 1


def test_requirepass_with_redis_py(pass_server):
    client = pass_server.client(password="pw-one")
    assert client.set("py", "1") and client.get("py") == b"1"
    client.close()
    # redis-py 4.3 raises WRONGPASS as a ResponseError, later versions as an
    # AuthenticationError.
    with pytest.raises((redis.AuthenticationError, redis.ResponseError),
                       match="invalid username-password"):
        pass_server.client(password="wrong").ping()
    with pytest.raises(redis.AuthenticationError, match="Authentication required"):
        pass_server.client().get("py")


def test_unauthenticated_connection_does_nothing(pass_server):
    with raw(pass_server) as connection:
        for command in (["SET", "x", "1"], ["GET", "x"], ["PING"], ["INFO"], ["ACL", "WHOAMI"],
                        ["CLIENT", "ID"], ["FLUSHALL"], ["CONFIG", "GET", "*"]):
            assert connection.call(*command) == NOAUTH, command
        # Unknown commands and arity are answered as Redis does, before the check.
        assert connection.call("NOSUCH").startswith("ERR unknown command")
        assert connection.call("AUTH", "a", "b", "c") == "ERR syntax error"
        assert connection.call("AUTH", "pw-one") == "OK"
        assert connection.call("GET", "x") == Null("$-1")
        assert connection.call("ACL", "WHOAMI") == b"default"


def test_unauthenticated_limits(pass_server):
    """Before AUTH, as in Redis: at most 10 arguments and (strata) 16 KiB per command; more
    closes the connection unread."""
    with raw(pass_server) as connection:
        connection.send_raw(Connection.encode("SET", "big", b"x" * 20000))
        assert connection.read_all_raw() == b"-ERR Protocol error: invalid bulk length\r\n"
    with raw(pass_server) as connection:
        connection.send_raw(Connection.encode("MGET", *["k"] * 11))
        assert connection.read_all_raw() == b"-ERR Protocol error: invalid multibulk length\r\n"
    with raw(pass_server) as connection:
        # AUTH and the next command in one write: the limits follow the user.
        connection.send_raw(Connection.encode("AUTH", "pw-one") +
                            Connection.encode("SET", "big", b"x" * 20000) +
                            Connection.encode("MGET", *["big"] * 11))
        assert connection.read() == "OK" and connection.read() == "OK"
        assert connection.read() == [b"x" * 20000] * 11


def test_hello_auth(pass_server):
    with raw(pass_server) as connection:
        assert connection.call("HELLO", "3").startswith("NOAUTH HELLO must be called")
        # A failed HELLO changes neither the user nor the protocol.
        assert connection.call("HELLO", "3", "AUTH", "default", "nope") == WRONGPASS
        assert connection.call("GET", "k") == NOAUTH
        reply = connection.call("HELLO", "3", "AUTH", "default", "pw-one", "SETNAME", "h")
        assert isinstance(reply, Map) and reply[b"proto"] == 3
        assert connection.call("GET", "missing").encoding == "_"
        assert b"name=h " in connection.call("CLIENT", "INFO")
        assert b"user=default " in connection.call("CLIENT", "INFO")


def test_secrets_hidden_and_no_users_file(pass_server):
    client = pass_server.client(password="pw-one")
    assert client.config_get("requirepass") == {"requirepass": "(hidden)"}
    assert client.config_get("s3-secret-key") == {"s3-secret-key": ""}
    for command in ("LOAD", "SAVE"):
        with pytest.raises(redis.ResponseError, match="no users file.*--users"):
            client.execute_command("ACL", command)
    client.close()


def test_throttling_per_address(pass_server):
    """Last of the tests on pass_server: it leaves 127.0.0.1 throttled for a while."""
    with raw(pass_server) as connection:
        reply = connection.call("AUTH", "wrong")
        # Passwords over 1024 bytes are wrong without being hashed: quicker failures.
        for _ in range(10):
            if reply != WRONGPASS:
                break
            reply = connection.call("AUTH", "x" * 1025)
        assert reply.startswith("ERR too many failed authentication attempts from this address"), \
            reply
        # The right password is refused too while the address waits.
        reply = connection.call("AUTH", "pw-one")
        match = re.fullmatch(r"ERR too many failed authentication attempts from this address; "
                             r"try again in (\d+) ms", reply)
        assert match, reply
        # Another address is not slowed down.
        with raw(pass_server, source="127.0.0.2") as other:
            started = time.time()
            assert other.call("AUTH", "pw-one") == "OK"
            assert time.time() - started < 5 * SLOW
            assert stat(other, "strata_auth_throttled") >= 2
            assert stat(other, "acl_access_denied_auth") >= 5
        time.sleep(int(match.group(1)) / 1000 + 0.05)
        assert connection.call("AUTH", "pw-one") == "OK"


# ---- a users file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hashes():
    admin, secret = hash_passwords("admin-pw", "secret")
    return {"admin-pw": admin, "secret": secret}


def users_text(hashes):
    return (f"# test users\n"
            f"user default off\n"
            f"user admin on {hashes['admin-pw']} namespace:*=all bucket:*=all\n"
            f"user alice on {hashes['secret']} namespace:default=read,write\n"
            f"user reader on {hashes['secret']} namespace:default=read\n"
            f"user writer on {hashes['secret']} namespace:default=write\n"
            f"user nobody on {hashes['secret']} namespace:other=read,write\n"
            f"user sleeper off {hashes['secret']} namespace:*=all\n")


def users_server_with(directory, text):
    os.makedirs(directory, exist_ok=True)
    path = write_users_file(os.path.join(directory, "users"), text)
    return Server(directory, "--memory", "64mb", "--users", path), path


@pytest.fixture(scope="module")
def users_server(tmp_path_factory, hashes):
    instance, _ = users_server_with(str(tmp_path_factory.mktemp("users")), users_text(hashes))
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def admin(users_server):
    client = users_server.client(username="admin", password="admin-pw")
    yield client
    client.close()


def test_users_with_redis_cli_and_redis_py(users_server, admin):
    common = ["--user", "alice", "--pass", "secret", "--no-auth-warning"]
    assert redis_cli(users_server, *common, "set", "cli", "1") == "OK"
    assert redis_cli(users_server, *common, "get", "cli") == "1"
    alice = users_server.client(username="alice", password="secret")
    assert alice.get("cli") == b"1"
    assert alice.acl_whoami() == "alice"
    alice.close()
    # default is off: a connection must authenticate.
    assert redis_cli(users_server, "get", "cli") == NOAUTH
    with raw(users_server) as connection:
        assert connection.call("AUTH", "secret") == WRONGPASS  # default has no password
        reply = connection.call("HELLO", "3", "AUTH", "alice", "secret")
        assert reply[b"proto"] == 3 and connection.call("GET", "cli") == b"1"


def test_wrong_unknown_and_disabled_users(users_server):
    with raw(users_server) as connection:
        assert connection.call("AUTH", "ghost", "secret") == WRONGPASS
        assert connection.call("AUTH", "sleeper", "secret") == WRONGPASS
        assert connection.call("GET", "k") == NOAUTH
        assert connection.call("AUTH", "alice", "secret") == "OK"  # and failures forgotten
    with pytest.raises((redis.AuthenticationError, redis.ResponseError), match="WRONGPASS|invalid"):
        users_server.client(username="sleeper", password="secret").ping()


def test_read_only_user(users_server, admin):
    admin.set("shared", "original")
    with login(users_server, "reader", "secret") as reader:
        before = stat(reader, "acl_access_denied_cmd")
        assert reader.call("GET", "shared") == b"original"
        assert reader.call("EXISTS", "shared") == 1
        for command in (["SET", "shared", "changed"], ["DEL", "shared"], ["APPEND", "shared", "x"],
                        ["EXPIRE", "shared", "1"], ["GETDEL", "shared"]):
            assert reader.call(*command) == NOPERM_KEY, command
        assert stat(reader, "acl_access_denied_cmd") == before + 5
    assert admin.get("shared") == b"original" and admin.ttl("shared") == -1


def test_a_refused_command_inside_multi_aborts_the_transaction(users_server, admin):
    admin.delete("queued")
    with login(users_server, "reader", "secret") as reader:
        assert reader.call("MULTI") == "OK"
        assert reader.call("GET", "queued") == "QUEUED"
        assert reader.call("SET", "queued", "v") == NOPERM_KEY
        assert reader.call("EXEC") == "EXECABORT Transaction discarded because of previous errors."
    assert admin.exists("queued") == 0


def test_write_only_user_cannot_read_through_writes(users_server, admin):
    """Writes that answer with the stored value, or carry it to another key, need read
    as well; plain writes do not."""
    admin.set("kept", "topsecret")
    admin.set("number", "41")
    with login(users_server, "writer", "secret") as writer:
        assert writer.call("SET", "mine", "v") == "OK"
        for command in (["GET", "kept"], ["GETEX", "kept"], ["GETDEL", "kept"],
                        ["SET", "kept", "other", "GET"], ["INCR", "number"],
                        ["APPEND", "kept", "x"], ["SETRANGE", "kept", "0", "x"],
                        ["COPY", "kept", "copied"], ["RENAME", "kept", "renamed"]):
            assert writer.call(*command) == NOPERM_KEY, command
    assert admin.get("kept") == b"topsecret" and admin.get("number") == b"41"
    assert admin.exists("copied", "renamed") == 0


def test_user_without_rights_on_default(users_server, admin):
    admin.set("secret-key", "v")
    with login(users_server, "nobody", "secret") as nobody:
        assert nobody.call("GET", "secret-key") == NOPERM_KEY
        assert nobody.call("MGET", "secret-key", "x") == NOPERM_KEY
        assert nobody.call("DBSIZE") == \
            "NOPERM User nobody has no permissions to run the 'dbsize' command"
        assert nobody.call("KEYS", "*").startswith("NOPERM User nobody")
        # Commands about the connection itself need only a user.
        assert nobody.call("PING") == "PONG"
        assert nobody.call("ECHO", "e") == b"e"
        assert b"redis_version" in nobody.call("INFO", "server")
        assert isinstance(nobody.call("CLIENT", "ID"), int)
        assert nobody.call("CLIENT", "SETNAME", "n") == "OK"
        assert nobody.call("SELECT", "0") == "OK"
        assert nobody.call("ACL", "WHOAMI") == b"nobody"
        assert len(nobody.call("ACL", "GENPASS")) == 64


def test_admin_commands_refused_to_others(users_server, admin):
    admin.set("survivor", "1")
    with login(users_server, "alice", "secret") as alice:
        refused = {
            ("CONFIG", "SET", "maxclients", "5"): "config",
            ("CONFIG", "GET", "maxclients"): "config",
            ("SHUTDOWN",): "shutdown",
            ("FLUSHALL",): "flushall",
            ("FLUSHDB",): "flushdb",
            ("DEBUG", "FAULT", "RESET"): "debug",
            ("ACL", "SETUSER", "alice", "+@all"): "acl|setuser",
            ("ACL", "LIST"): "acl|list",
            ("ACL", "DELUSER", "admin"): "acl|deluser",
            ("ACL", "LOAD"): "acl|load",
            ("CLIENT", "LIST"): "client|list",
            ("CLIENT", "KILL", "ID", "1"): "client|kill",
        }
        for command, name in refused.items():
            assert alice.call(*command) == \
                f"NOPERM User alice has no permissions to run the '{name}' command", command
        assert alice.call("SET", "mine", "1") == "OK"
    assert admin.get("survivor") == b"1" and admin.ping()
    assert admin.config_get("maxclients") != {"maxclients": "5"}
    assert admin.acl_getuser("alice")["categories"] == ["+@all", "-@admin"]


def test_client_list_shows_users(users_server, admin):
    with login(users_server, "alice", "secret") as alice:
        alice.call("CLIENT", "SETNAME", "alices")
        lines = admin.execute_command("CLIENT", "LIST").decode().splitlines()
        line = [line for line in lines if " name=alices " in line]
        assert line and " user=alice " in line[0]
        assert b" user=alice " in alice.call("CLIENT", "INFO")
        with raw(users_server) as anonymous:
            anonymous.call("CLIENT", "ID")  # NOAUTH, but the connection is listed
            lines = admin.execute_command("CLIENT", "LIST").decode().splitlines()
            assert any(" user= " in line for line in lines)
    assert admin.client_info()["user"] == "admin"


def test_acl_setuser_getuser_deluser(users_server, admin, hashes):
    assert admin.execute_command("ACL", "SETUSER", "newbie", "on", hashes["secret"], "~*") == b"OK"
    assert "newbie" in admin.acl_users()
    user = admin.acl_getuser("newbie")
    assert user["enabled"] and user["flags"] == ["on"]
    assert user["keys"] == ["~*"] and user["categories"] == ["+@all", "-@admin"]
    assert len(user["passwords"]) == 1 and user["passwords"][0].startswith("$argon2id$")
    assert user["namespaces"] == [b"*=read,write"] and user["buckets"] == []
    assert admin.acl_getuser("admin")["categories"] == ["+@all"]
    assert admin.acl_getuser("reader")["keys"] == ["%R~*"]
    assert admin.acl_getuser("nobody")["keys"] == []
    assert admin.acl_getuser("no-such-user") is None
    listing = admin.acl_list()
    assert any(line.startswith("user newbie on #$argon2id$") for line in listing)
    # redis-py's own acl_setuser() sends rules strata takes.
    assert admin.acl_setuser("pyuser", enabled=True, keys=["~*"],
                             hashed_passwords=["+" + hashes["secret"][1:]])
    assert admin.acl_getuser("pyuser")["keys"] == ["~*"]
    assert admin.acl_deluser("pyuser") == 1
    with pytest.raises(redis.ResponseError, match="Error in ACL SETUSER modifier 'bogus'"):
        admin.execute_command("ACL", "SETUSER", "newbie", "bogus")

    newbie = login(users_server, "newbie", "secret")
    assert newbie.call("SET", "n", "1") == "OK"
    assert admin.execute_command("ACL", "DELUSER", "newbie", "never-was") == 1
    # A deleted user's connection stays open but is no longer authenticated.
    assert newbie.call("GET", "n") == NOAUTH
    assert newbie.call("AUTH", "alice", "secret") == "OK"
    assert newbie.call("GET", "n") == b"1"
    newbie.close()
    with pytest.raises(redis.ResponseError, match="'default' user cannot be removed"):
        admin.execute_command("ACL", "DELUSER", "default")


def test_setuser_off_takes_rights_at_next_command(users_server, admin, hashes):
    admin.execute_command("ACL", "SETUSER", "temp", "on", hashes["secret"],
                          "namespace:default=read")
    with login(users_server, "temp", "secret") as temp:
        assert temp.call("SET", "t", "1") == NOPERM_KEY
        admin.execute_command("ACL", "SETUSER", "temp", "namespace:default=read,write")
        assert temp.call("SET", "t", "1") == "OK"
        admin.execute_command("ACL", "SETUSER", "temp", "off")
        assert temp.call("GET", "t") == NOAUTH
    admin.execute_command("ACL", "DELUSER", "temp")


def test_acl_small_subcommands(users_server, admin):
    assert "read" in admin.acl_cat() and "string" in admin.acl_cat()
    assert "get" in admin.acl_cat("string") and "set" not in admin.acl_cat("read")
    with pytest.raises(redis.ResponseError, match="Unknown category"):
        admin.acl_cat("nope")
    assert admin.acl_log() == [] and admin.acl_log_reset()
    assert re.fullmatch(r"[0-9a-f]{64}", admin.acl_genpass())
    # (redis-py 4.3's acl_genpass() does not send its bits argument.)
    assert len(admin.execute_command("ACL", "GENPASS", "5")) == 2
    with pytest.raises(redis.ResponseError, match="GENPASS argument"):
        admin.execute_command("ACL", "GENPASS", "0")
    with pytest.raises(redis.ResponseError, match="unknown subcommand 'NOPE'. Try ACL HELP."):
        admin.execute_command("ACL", "NOPE")
    with pytest.raises(redis.ResponseError, match=re.escape("wrong number of arguments for 'acl|getuser'")):
        admin.execute_command("ACL", "GETUSER")
    assert admin.execute_command("ACL", "HELP")[0].startswith(b"ACL <subcommand>")
    with login(users_server, "admin", "admin-pw") as connection:
        auth, acl = connection.call("COMMAND", "INFO", "auth", "acl")
        assert auth[:2] == [b"auth", -2] and "no-auth" in auth[2]
        assert acl[:2] == [b"acl", -2] and "@admin" in acl[6]
        assert connection.call("COMMAND", "DOCS", "acl")[0] == b"acl"


# ---- the users file: ACL SAVE, ACL LOAD, SIGHUP ----------------------------------------


def test_users_file_save_load_and_sighup(tmp_path, hashes):
    server, path = users_server_with(str(tmp_path / "file"), users_text(hashes))
    try:
        admin = server.client(username="admin", password="admin-pw")
        admin.execute_command("ACL", "SETUSER", "saved", "on", ">pw-four", "namespace:default=read")
        assert admin.execute_command("ACL", "SAVE") == b"OK"
        text = open(path).read()
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert re.search(r"^user saved on #\$argon2id\$\S+ namespace:default=read$", text, re.M)
        assert "pw-four" not in text and "secret" not in text

        # LOAD brings the file back over what changed since.
        admin.execute_command("ACL", "DELUSER", "saved")
        assert admin.execute_command("ACL", "LOAD") == b"OK"
        saved = login(server, "saved", "pw-four")

        # A broken file is refused whole; the users stay.
        with open(path, "a") as users:
            users.write("user broken on bogusrule\n")
        with pytest.raises(redis.ResponseError, match=r"line \d+: rule 'bogusrule'"):
            admin.execute_command("ACL", "LOAD")
        assert saved.call("GET", "k").encoding == "$-1"

        # SIGHUP reads the file again: an already connected client's rights change at its
        # next command.
        assert saved.call("SET", "k", "v") == NOPERM_KEY
        with open(path, "w") as users:
            users.write(re.sub(r"^(user saved .* namespace:default=read)$", r"\1,write", text,
                               flags=re.M))
        loaded = server.read_log().count("event=users_loaded")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.time() + 10 * SLOW
        while server.read_log().count("event=users_loaded") == loaded:
            assert time.time() < deadline, server.read_log()
            time.sleep(0.02)
        assert saved.call("SET", "k", "v") == "OK"
        saved.close()
        admin.close()
    finally:
        server.stop()


# ---- protected mode --------------------------------------------------------------------------


def test_protected_mode(tmp_path, start_server):
    result = subprocess.run([BINARY, "--bind", "0.0.0.0", "--port", "0", "--http-port", "0",
                             "--native-port", "0", "--dir", str(tmp_path / "refused")],
                            capture_output=True, text=True, timeout=60 * SLOW)
    assert result.returncode != 0
    assert "protected mode: refusing to listen on '0.0.0.0'" in result.stderr + result.stdout

    insecure = start_server("--bind", "0.0.0.0", "--insecure", "yes", "--memory", "64mb")
    with raw(insecure) as connection:
        assert connection.call("SET", "open", "1") == "OK"  # default: every right
    protected = start_server("--bind", "0.0.0.0", "--requirepass", "x", "--memory", "64mb")
    with raw(protected) as connection:
        assert connection.call("GET", "open") == NOAUTH
        assert connection.call("AUTH", "x") == "OK"
        # Protected mode holds while it runs: default cannot be opened beyond loopback.
        reply = connection.call("ACL", "SETUSER", "default", "nopass")
        assert isinstance(reply, Error) and "protected mode" in reply, reply
        assert connection.call("ACL", "SETUSER", "default", "resetpass", ">y") == "OK"
