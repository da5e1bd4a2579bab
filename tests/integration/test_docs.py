"""Docs that run (issue 21): every code block of README.md and docs/*.md marked runnable
(docs/install.md, "Examples that run", says how to mark one) is run against a real
server, as a reader would run it, with what `make install` installed: C compiled with
`cc $(pkg-config --cflags --libs strata)` against the installed header and library,
Python with /usr/bin/python3 importing the installed package, shell with bash, and
console transcripts command by command, their output compared with the page's.

The server is the installed strata-server on the documented default ports (6379, 6380,
6381): it and the blocks run in network and mount namespaces of their own (a loopback
only, a private /run), so the examples keep the defaults a reader types, and the suite
still runs beside `make run` or a system server. One test per page; its blocks run in
order in one directory, so a block may use a file an earlier block of the page wrote.

It runs once, in the release suite: it uses the installed release build (as
test_install.py does), which the sanitizer suites would only run again."""
import glob
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field

import pytest

from conftest import INSTALL_PREFIX, ROOT, SANITIZED, Server

pytestmark = pytest.mark.skipif(SANITIZED, reason="runs the installed release build; the "
                                "release suite runs it, the sanitizer suites need not repeat it")

PAGES = ["README.md"] + sorted(os.path.relpath(path, ROOT)
                               for path in glob.glob(os.path.join(ROOT, "docs", "*.md")))
MARKER = re.compile(r"^<!--\s*runnable\b(.*?)-->\s*$")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
LANGUAGES = {"c", "python", "sh", "bash", "console"}
ATTRIBUTES = {"server", "file", "files"}
PROMPT = re.compile(r"^(\S+:\d+)> (.*)$")  # redis-cli's prompt, 127.0.0.1:6379> CMD
BLOCK_SECONDS = 120

# The server's namespaces: a loopback that is up, and an empty /run (the documented
# --unix-socket /run/strata/strata.sock); "$@" is the server's command line.
NAMESPACES = ["unshare", "--net", "--mount", "--", "sh", "-c",
              "ip link set lo up && mount -t tmpfs -o mode=0755 tmpfs /run && "
              "mkdir /run/strata && exec \"$@\"", "sh"]


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    attributes: dict = field(default_factory=dict)

    def where(self):
        return f"{self.page}:{self.line} ({self.language})"


def parse(page):
    """The runnable blocks of PAGE, in order. A marker must be followed by a fence and
    carry only known attributes; a runnable block must be in a known language."""
    with open(os.path.join(ROOT, page)) as file:
        lines = file.read().split("\n")
    blocks = []
    fence = None  # the backticks of the fenced block we are in (a marker there is text)
    for index, line in enumerate(lines):
        ticks = re.match(r"^(`{3,})", line)
        if ticks and fence is None:
            fence = ticks.group(1)
        elif ticks and line.strip() == ticks.group(1) and len(ticks.group(1)) >= len(fence):
            fence = None
        marker = MARKER.match(line)
        if fence is not None or not marker:
            continue
        where = f"{page}:{index + 1}"
        opening = FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
        assert opening, f"{where}: a runnable marker must be followed by a ``` line"
        language = opening.group(1)
        assert language in LANGUAGES, f"{where}: runnable blocks are {sorted(LANGUAGES)}"
        attributes = {}
        for word in shlex.split(marker.group(1)):
            name, equals, value = word.partition("=")
            assert equals and name in ATTRIBUTES, f"{where}: unknown attribute {word!r}"
            attributes[name] = value
        end = index + 2
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        assert end < len(lines), f"{where}: the block has no closing ```"
        blocks.append(Block(page, index + 2, language, "\n".join(lines[index + 2:end]) + "\n",
                            attributes))
    return blocks


BLOCKS = {page: parse(page) for page in PAGES}
RUNNABLE_PAGES = [page for page in PAGES if BLOCKS[page]]


def test_the_guides_have_runnable_examples():
    """The pages whose examples issue 21 asks to run have runnable blocks."""
    languages = {page: sorted({block.language for block in BLOCKS[page]}) for page in PAGES}
    assert languages["docs/kv-cache.md"] == ["c", "python"]
    assert languages["docs/install.md"] == ["c", "sh"]
    assert languages["README.md"] == ["console", "python", "sh"]


def matches(expected, actual):
    """Whether ACTUAL output matches the EXPECTED lines shown on a page: a line `...`
    stands for any lines, and a number for any number (sizes and counts vary)."""
    pattern = ""
    for line in expected:
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += re.sub(r"\d+", lambda _: r"\d+", re.escape(line.rstrip())) + r"[ \t]*\n"
    text = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    return re.fullmatch(pattern, text) is not None


class Page:
    """The blocks of one page, run in order in one directory, each inside the
    namespaces of the server it names."""

    def __init__(self, installed, directory):
        self.installed = installed
        self.directory = directory
        self.work = directory / "work"
        self.work.mkdir()
        self.server = None
        self.options = None
        self.servers = 0
        prefix = installed / INSTALL_PREFIX.lstrip("/")
        version = subprocess.run(["/usr/bin/python3", "-c",
                                  "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        (directory / "home").mkdir()
        # A reader's environment after `make install`, and nothing of the suite's: no
        # PYTHONPATH into the repository, no STRATA_LIBRARY, no AWS configuration.
        self.environment = {
            "PATH": f"{prefix}/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(directory / "home"),
            "LANG": "C.UTF-8",
            "TMPDIR": str(directory),
            "PKG_CONFIG_PATH": f"{prefix}/lib/pkgconfig",
            "PKG_CONFIG_SYSROOT_DIR": str(installed),
            "LD_LIBRARY_PATH": f"{prefix}/lib",
            "PYTHONPATH": f"{prefix}/lib/python{version}/dist-packages",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_PAGER": "",
        }

    def start(self, options):
        if self.server is not None and options == self.options:
            return
        self.stop()
        self.options = options
        self.servers += 1
        self.server = Server(self.directory / f"server{self.servers}", *shlex.split(options),
                             port=6379, http_port=6381, native_port=6380,
                             binary=str(self.installed / INSTALL_PREFIX.lstrip("/") /
                                        "bin/strata-server"),
                             prefix=NAMESPACES)

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None

    def inside(self, command):
        """COMMAND, run in the server's network and mount namespaces."""
        pid = self.server.process.pid
        return ["nsenter", f"--net=/proc/{pid}/ns/net", f"--mount=/proc/{pid}/ns/mnt",
                f"--wd={self.work}", "--",
                *command]

    def execute(self, block, command, inside=True):
        """Runs COMMAND for BLOCK; a failure fails the test with its output and the log."""
        result = subprocess.run(self.inside(command) if inside else command, cwd=self.work,
                                env=self.environment, capture_output=True, text=True,
                                timeout=BLOCK_SECONDS)
        if result.returncode != 0:
            pytest.fail(f"{block.where()}: {shlex.join(command)} exited with "
                        f"{result.returncode}\n--- block ---\n{block.text}--- output ---\n"
                        f"{result.stdout}{result.stderr}--- server log (tail) ---\n"
                        f"{self.server.read_log()[-3000:]}", pytrace=False)
        return result.stdout

    def run(self, block):
        self.start(block.attributes.get("server", ""))
        for name in filter(None, block.attributes.get("files", "").split(",")):
            path = self.work / name
            if not path.exists():  # a file the block reads: a few bytes stand in for it
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(os.urandom(1000))
        if block.language == "console":
            return self.transcript(block)
        extension = {"c": "c", "python": "py", "sh": "sh", "bash": "sh"}[block.language]
        name = block.attributes.get("file", f"block{block.line}.{extension}")
        (self.work / name).write_text(block.text)
        if block.language == "c":
            program = os.path.splitext(name)[0]
            self.execute(block, ["sh", "-c", f"cc -std=c11 -Wall -Wextra -Werror {name} "
                                 f"$(pkg-config --cflags --libs strata) -o {program}"],
                         inside=False)
            self.execute(block, [f"./{program}"])
        elif block.language == "python":
            self.execute(block, ["/usr/bin/python3", name])
        else:
            self.execute(block, ["bash", "-euo", "pipefail", name])

    def transcript(self, block):
        """`$ COMMAND` lines run with bash; after `$ redis-cli`, each `HOST:PORT> COMMAND`
        line runs as `redis-cli COMMAND` with redis-cli's terminal formatting. The lines
        that follow a command are its output."""
        steps = []  # [command, expected lines]
        redis = None  # redis-cli's arguments while its prompt is shown
        for line in block.text.rstrip("\n").split("\n"):
            prompt = PROMPT.match(line)
            if line.startswith("$ "):
                redis = None
                steps.append([["bash", "-o", "pipefail", "-c", line[2:]], []])
            elif prompt and (redis is not None or (steps and not steps[-1][1] and
                                                   steps[-1][0][-1].startswith("redis-cli"))):
                if redis is None:  # `$ redis-cli` started an interactive session
                    redis = shlex.split(steps.pop()[0][-1])[1:]
                steps.append([["redis-cli", "--no-raw", *redis, *shlex.split(prompt.group(2))],
                              []])
            else:
                assert steps, f"{block.where()}: output before the first command"
                steps[-1][1].append(line)
        for command, expected in steps:
            output = self.execute(block, command)
            if not matches(expected, output):
                pytest.fail(f"{block.where()}: {shlex.join(command)} printed\n{output}"
                            f"--- the page shows ---\n" + "\n".join(expected), pytrace=False)


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_runnable_blocks(page, installed, tmp_path):
    runner = Page(installed, tmp_path)
    try:
        for block in BLOCKS[page]:
            runner.run(block)
    finally:
        runner.stop()
