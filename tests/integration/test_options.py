"""Options: --help, config files, bad options and values, and docs/configuration.md
checked against the option table."""
import os
import re
import subprocess

import pytest

from conftest import BINARY, ROOT, Server


def run(*arguments, timeout=10):
    return subprocess.run([BINARY, *arguments], capture_output=True, text=True, timeout=timeout)


def help_options():
    """{option: default} as --help lists them."""
    result = run("--help")
    assert result.returncode == 0
    options = {}
    current = None
    for line in result.stdout.splitlines():
        match = re.match(r"^  --([a-z0-9-]+)(?: \S+)?\s{2,}", line)
        if match:
            current = match.group(1)
            options[current] = None
            continue
        match = re.match(r"^\s+\(default: (.*)\)$", line)
        if match and current:
            options[current] = match.group(1)
    return options


def test_help_lists_every_option_with_its_default():
    options = help_options()
    for name in ["bind", "port", "dir", "memory", "threads", "max-clients", "max-value",
                 "client-output-limit", "log-level", "config"]:
        assert name in options, name
    assert options["bind"] == "127.0.0.1"
    assert options["port"] == "6379"
    assert options["dir"] == "./strata-data"
    assert options["memory"] == "1gb"
    assert options["threads"] == "auto"
    assert options["max-value"] == "512mb"


def test_configuration_document_matches_the_table():
    with open(os.path.join(ROOT, "docs", "configuration.md")) as document:
        text = document.read()
    rows = dict(re.findall(r"^\| `--([a-z0-9-]+)` \| `([^`]*)` \|", text, re.M))
    options = help_options()
    documented = {name: ("" if default == "(none)" else default) for name, default in rows.items()}
    listed = {name: (default or "") for name, default in options.items()
              if name not in ("help", "version")}
    assert documented == listed


@pytest.mark.parametrize("arguments, fragment", [
    (["--memory", "lots"], "invalid value 'lots' for --memory"),
    (["--port", "70000"], "invalid value '70000' for --port"),
    (["--threads", "0"], "invalid value '0' for --threads"),
    (["--log-level", "loud"], "invalid value 'loud' for --log-level"),
    (["--bogus", "1"], "unknown option '--bogus'"),
    (["--port"], "option '--port' needs a value"),
    (["stray"], "unexpected argument 'stray'"),
    (["--max-value", "2gb"], "max-request (1gb) must be at least max-value (2gb)"),
    (["--max-request", "512"], "invalid value '512' for --max-request"),
    (["--config", "/nonexistent/strata.conf"], "cannot read config file"),
])
def test_bad_options_exit_2_with_one_line(arguments, fragment):
    result = run(*arguments)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("strata-server: ")
    assert fragment in lines[0], lines[0]


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert re.match(r"^strata-server \d+\.\d+\.\d+$", result.stdout.strip())


def test_config_file_and_command_line_precedence(tmp_path):
    config = tmp_path / "strata.conf"
    config.write_text(
        "# a comment\n"
        "\n"
        "memory 48mb\n"
        "max-clients   123\n"
        'log-level "debug"\n'
        "client-output-limit 2mb\n"
    )
    server = Server(tmp_path / "server", "--config", config, "--max-clients", "321")
    try:
        client = server.client()
        values = client.config_get("*")
        assert values["memory"] == str(48 * 1024 * 1024)
        assert values["max-clients"] == "321"  # the command line wins
        assert values["log-level"] == "debug"
        assert values["client-output-limit"] == str(2 * 1024 * 1024)
        assert values["config"] == str(config)
        assert client.info("server")["config_file"] == str(config)
        client.close()
    finally:
        server.stop()


def test_bad_config_file_names_file_and_line(tmp_path):
    config = tmp_path / "bad.conf"
    config.write_text("memory 64mb\nmax-clients many\n")
    result = run("--config", str(config))
    assert result.returncode == 2
    assert f"{config}:2: invalid value 'many' for max-clients" in result.stderr
    config.write_text("memry 64mb\n")
    result = run("--config", str(config))
    assert result.returncode == 2
    assert f"{config}:1: unknown option 'memry'" in result.stderr


def test_defaults_with_no_arguments(tmp_path):
    """With no arguments: 127.0.0.1:6379, ./strata-data, 1 GiB, all cores. The server runs
    in a network namespace of its own (with only a loopback), so the default ports are
    free even while `make run` holds them on this machine."""
    process = subprocess.Popen(["unshare", "--net", "--", "sh", "-c",
                                f"ip link set lo up && exec {BINARY}"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def cli(*arguments):
        return subprocess.run(["nsenter", f"--net=/proc/{process.pid}/ns/net", "redis-cli",
                               "-p", "6379", *arguments],
                              capture_output=True, text=True).stdout.split()

    try:
        for _ in range(200):
            if cli("PING") == ["PONG"]:
                break
            assert process.poll() is None, process.stdout.read().decode()
            subprocess.run(["sleep", "0.05"])
        assert cli("PING") == ["PONG"]
        assert cli("CONFIG", "GET", "memory") == ["memory", str(1024 ** 3)]
        assert cli("CONFIG", "GET", "bind") == ["bind", "127.0.0.1"]
        threads = cli("CONFIG", "GET", "threads")
        assert int(threads[1]) == len(os.sched_getaffinity(0))
        assert cli("CONFIG", "GET", "http-port") == ["http-port", "6381"]
        assert cli("CONFIG", "GET", "native-port") == ["native-port", "6380"]
        assert (tmp_path / "strata-data" / "LOCK").exists()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_data_directory_is_locked(tmp_path):
    first = Server(tmp_path / "one")
    try:
        result = run("--port", "0", "--http-port", "0", "--native-port", "0", "--dir",
                     os.path.join(first.directory, "data"))
        assert result.returncode == 1
        assert "in use by another strata-server" in result.stderr
    finally:
        first.stop()


def test_port_in_use(tmp_path):
    first = Server(tmp_path / "one")
    try:
        result = run("--port", str(first.port), "--http-port", "0", "--native-port", "0",
                     "--dir", str(tmp_path / "other"))
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1 port {first.port}" in result.stderr
    finally:
        first.stop()


def test_ipv6_and_several_bind_addresses(tmp_path):
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.fail("this machine has no IPv6 loopback")
    server = Server(tmp_path / "server", "--bind", "127.0.0.1,::1")
    try:
        import socket
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect((host, server.port))
                sock.sendall(b"PING\r\n")
                assert sock.recv(100) == b"+PONG\r\n"
    finally:
        server.stop()
