"""make install into a temporary root (DESTDIR) and use what it installed, as a user of
the installed strata would (issue 21, docs/install.md): pkg-config, a C program built
with its flags (shared and static) against the installed headers and library, the
Python package imported from outside the repository (pip into a venv, and make
install's own copy), the installed server started from the sample config, the man page
rendered, and the systemd unit verified by systemd-analyze.

It runs once, in the release suite: the install is of the release build, and the
sanitizer suites would only repeat it."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, SANITIZED, Server

pytestmark = pytest.mark.skipif(SANITIZED, reason="installs the release build; the release "
                                "suite runs it, the sanitizer suites need not repeat it")

PYTHON = "/usr/bin/python3"

C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strata.h>

int main(int argc, char **argv) {
    struct strata_config config = {.host = "127.0.0.1", .port = atoi(argv[1]),
                                   .name_space = "default"};
    strata_client *client;
    int status = strata_connect(&config, &client);
    if (status != 0) {
        fprintf(stderr, "connect: %s\n", strata_strerror(status));
        return 1;
    }
    const char value[] = "installed libstrata";
    status = strata_put(client, "install/c", 9, value, sizeof(value));
    char buffer[64];
    size_t length = 0;
    if (status == 0) status = strata_get(client, "install/c", 9, buffer, sizeof(buffer), &length);
    strata_close(client);
    if (status != 0 || length != sizeof(value) || memcmp(buffer, value, length) != 0) {
        fprintf(stderr, "put/get: %s\n", strata_strerror(status));
        return 1;
    }
    printf("c-ok\n");
    return 0;
}
"""

PYTHON_PROGRAM = r"""
import os, sys
import strata
assert not os.path.abspath(strata.__file__).startswith(sys.argv[2]), strata.__file__
assert strata._lib._name == "libstrata.so.0", strata._lib._name
with strata.Client(port=int(sys.argv[1])) as client:
    client.put(b"install/py", b"x" * 100000)
    value = client.get(b"install/py")
    assert isinstance(value, bytearray) and value == b"x" * 100000
print("py-ok", strata.__file__)
"""


def run(command, **options):
    options.setdefault("timeout", 300)
    result = subprocess.run(command, capture_output=True, text=True, **options)
    assert result.returncode == 0, f"{command}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed_server(installed, tmp_path_factory):
    """The installed strata-server, started from the installed sample config."""
    config = installed / "usr/local/etc/strata/strata.conf"
    instance = Server(tmp_path_factory.mktemp("server"), "--config", config,
                      binary=str(installed / "usr/local/bin/strata-server"))
    yield instance
    instance.stop()


def test_files_and_soname(installed):
    lib = installed / "usr/local/lib"
    assert os.readlink(lib / "libstrata.so") == "libstrata.so.0"
    assert os.readlink(lib / "libstrata.so.0") == "libstrata.so.0.1.0"
    dynamic = run(["readelf", "-d", str(lib / "libstrata.so.0.1.0")]).stdout
    assert "Library soname: [libstrata.so.0]" in dynamic
    for path in ("usr/local/bin/strata-server", "usr/local/lib/libstrata.a",
                 "usr/local/include/strata.h", "usr/local/include/strata_protocol.h",
                 "usr/local/share/man/man1/strata-server.1",
                 "usr/local/lib/systemd/system/strata.service"):
        assert (installed / path).is_file(), path


def pkg_config(installed, *arguments):
    environment = {**os.environ, "PKG_CONFIG_PATH": str(installed / "usr/local/lib/pkgconfig"),
                   "PKG_CONFIG_SYSROOT_DIR": str(installed)}
    return run(["pkg-config", *arguments, "strata"], env=environment).stdout.split()


def test_c_program_with_pkg_config(installed, installed_server, tmp_path):
    flags = pkg_config(installed, "--cflags", "--libs")
    assert f"-I{installed}/usr/local/include" in flags
    assert f"-L{installed}/usr/local/lib" in flags and "-lstrata" in flags
    assert pkg_config(installed, "--modversion") == ["0.1.0"]
    source = tmp_path / "program.c"
    source.write_text(C_PROGRAM)
    environment = {**os.environ, "LD_LIBRARY_PATH": str(installed / "usr/local/lib")}
    port = str(installed_server.native_port)
    # Shared: the program records libstrata.so.0 and finds it through LD_LIBRARY_PATH.
    run(["cc", "-std=c11", "-Wall", "-Werror", str(source), *flags, "-o", str(tmp_path / "shared")])
    assert "libstrata.so.0" in run(["readelf", "-d", str(tmp_path / "shared")]).stdout
    assert run([str(tmp_path / "shared"), port], env=environment).stdout == "c-ok\n"
    # Static: libstrata.a with what --static adds (isa-l, OpenSSL, pthread).
    static = [("-l:libstrata.a" if flag == "-lstrata" else flag)
              for flag in pkg_config(installed, "--cflags", "--libs", "--static")]
    run(["cc", "-std=c11", "-Wall", "-Werror", str(source), *static, "-o", str(tmp_path / "static")])
    assert "libstrata" not in run(["readelf", "-d", str(tmp_path / "static")]).stdout
    assert run([str(tmp_path / "static"), port]).stdout == "c-ok\n"


def test_python_package_from_pip_and_from_make_install(installed, installed_server, tmp_path):
    """import strata from /tmp: pip-installed into a venv, and make install's copy."""
    environment = {k: v for k, v in os.environ.items() if k not in ("STRATA_LIBRARY", "PYTHONPATH")}
    environment["LD_LIBRARY_PATH"] = str(installed / "usr/local/lib")
    venv = tmp_path / "venv"
    run([PYTHON, "-m", "venv", "--system-site-packages", str(venv)])
    # pip builds in the source folder: build a copy, so the repository stays clean.
    source = tmp_path / "python"
    shutil.copytree(os.path.join(ROOT, "client", "python"), source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    run([str(venv / "bin/python"), "-m", "pip", "install", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--quiet", str(source)], env=environment)
    port = str(installed_server.native_port)
    result = run([str(venv / "bin/python"), "-c", PYTHON_PROGRAM, port, ROOT],
                 env=environment, cwd="/tmp")
    assert result.stdout.startswith("py-ok") and str(venv) in result.stdout
    # make install's copy, on Debian's path for PREFIX=/usr/local.
    version = "%d.%d" % sys.version_info[:2]
    copy = installed / f"usr/local/lib/python{version}/dist-packages"
    result = run([PYTHON, "-c", PYTHON_PROGRAM, port, ROOT],
                 env={**environment, "PYTHONPATH": str(copy)}, cwd="/tmp")
    assert result.stdout.startswith("py-ok") and str(copy) in result.stdout


def test_sample_config_is_accepted_as_is_and_uncommented(installed, installed_server, tmp_path):
    """The installed server started from the sample config (installed_server); and the
    same file with every option line uncommented, which must mean the defaults."""
    assert installed_server.client().ping()
    text = (installed / "usr/local/etc/strata/strata.conf").read_text()
    lines = []
    for block in text.split("\n\n")[1:]:
        last = block.strip("\n").split("\n")[-1]
        if not last.startswith("# ---- "):
            lines.append(last[2:])
    assert "memory 1gb" in lines and "native-port 6380" in lines
    uncommented = tmp_path / "uncommented.conf"
    uncommented.write_text("\n".join(lines) + "\n")
    server = Server(tmp_path / "server", "--config", uncommented,
                    binary=str(installed / "usr/local/bin/strata-server"))
    try:
        assert server.client().config_get("maxmemory")["maxmemory"] == str(1 << 30)
    finally:
        server.stop()


def test_man_page_renders_without_warnings(installed):
    page = installed / "usr/local/share/man/man1/strata-server.1"
    result = run(["groff", "-man", "-Tutf8", "-ww", "-P", "-c", "-P", "-b", "-P", "-u",
                  str(page)])
    assert result.stderr == ""
    assert "STRATA-SERVER(1)" in result.stdout and "--native-port PORT" in result.stdout


def test_systemd_unit_verifies(installed):
    """systemd-analyze verify on the unit, its paths pointed into DESTDIR (verify checks
    that ExecStart's binary and the man page exist). It exits 0 even on a bad setting,
    so any output fails the test."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = (installed / "usr/local/lib/systemd/system/strata.service").read_text()
    for line in ("Type=notify", "DynamicUser=yes", "StateDirectory=strata",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "NoNewPrivileges=yes", "LimitNOFILE=65536",
                 "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in unit.split("\n"), line
    assert ("ExecStart=/usr/local/bin/strata-server --config "
            "/usr/local/etc/strata/strata.conf --dir /var/lib/strata") in unit
    copy = installed / "strata.service"
    copy.write_text(unit.replace(" /usr/local/", f" {installed}/usr/local/")
                    .replace("=/usr/local/", f"={installed}/usr/local/"))
    environment = {**os.environ, "MANPATH": str(installed / "usr/local/share/man")}
    result = run(["systemd-analyze", "verify", str(copy)], env=environment)
    assert result.stdout == "" and result.stderr == "", result.stdout + result.stderr
