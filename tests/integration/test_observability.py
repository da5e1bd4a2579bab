"""Operators' view: a real Prometheus server scrapes strata, headless Chromium renders the
status page while a load runs, and the log file is structured, complete and rotatable."""
import json
import os
import re
import shutil
import signal
import sys
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from conftest import ROOT, SANITIZED, SLOW

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_prometheus_scrapes_strata(start_server, tmp_path):
    server = start_server()
    client = server.client()
    client.set("scraped", "yes")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: strata\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.http_port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)

    def query(expression):
        address = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expression})
        with urllib.request.urlopen(address, timeout=5) as response:
            return json.load(response)["data"]["result"]

    try:
        deadline = time.time() + 60
        up, items = [], []
        while time.time() < deadline:
            try:
                up = query('up{job="strata"}')
                items = query('strata_tier_items{tier="dram"}')
            except OSError:
                pass  # Prometheus is still starting
            if up and up[0]["value"][1] == "1" and items:
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", (tmp_path / "prometheus.log").read_text()[-3000:]
        assert items and float(items[0]["value"][1]) >= 1
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()
        client.close()


def chromium(*arguments, directory):
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={directory}", *arguments],
        capture_output=True, timeout=120)


def test_status_page_draws_real_numbers_under_load(start_server, tmp_path):
    server = start_server("--memory", "64mb")
    stop = threading.Event()

    def load():
        client = server.client()
        index = 0
        while not stop.is_set():
            pipe = client.pipeline(transaction=False)
            for _ in range(50):
                pipe.set(f"load-{index % 5000}", "v" * 1000)
                pipe.get(f"load-{(index * 7) % 6000}")
                index += 1
            pipe.execute()
        client.close()

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(4)  # a few seconds of history under load
        page = f"http://127.0.0.1:{server.http_port}/"
        dom = chromium("--dump-dom", "--virtual-time-budget=5000", page,
                       directory=tmp_path / "profile-dom")
    finally:
        stop.set()
        worker.join()
    html = dom.stdout.decode("utf-8", "replace")
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]

    def attribute(chart, name):
        match = re.search(rf'<svg id="{chart}"[^>]*\b{name}="([^"]*)"', html)
        assert match, f"{chart} has no {name}: the page did not draw"
        return float(match.group(1))

    assert attribute("chart-throughput", "data-points") >= 3
    assert attribute("chart-throughput", "data-peak") > 100  # requests per second
    assert attribute("chart-usage", "data-last") > 0  # percent of the DRAM budget
    assert attribute("chart-hits", "data-peak") > 0  # percent of lookups that hit
    assert attribute("chart-latency", "data-peak") > 0  # p50 in microseconds
    assert re.search(r'id="figure-ops">[^<]*[1-9]', html)
    assert re.search(r'id="figure-ops-detail">RESP [1-9]', html)


def element_text(html, identifier):
    """The text of the element whose id is IDENTIFIER in HTML (tags inside it dropped)."""
    match = re.search(rf'id="{identifier}"[^>]*>(.*?)</(span|div|td)>', html, re.S)
    assert match, f"no element {identifier} in the page"
    return re.sub(r"<[^>]*>", "", match.group(1))


def test_status_page_shows_native_traffic_flash_namespaces_and_connections(start_server,
                                                                           tmp_path):
    """The AI path on the page: native-protocol traffic counts in requests/s, a flash tier
    shows its usage and bytes/s, each namespace its keys against its quota, and the
    connections their protocol. With STRATA_SCREENSHOT=PATH the load runs longer (with
    some RESP traffic beside it) and the page's screenshot is copied to PATH (how
    docs/status-page.png is made)."""
    target = os.environ.get("STRATA_SCREENSHOT")
    # For the screenshot, flash room for the longer run, and a paced load (a full flash
    # tier reclaims as it writes, which is not the picture of a server at work).
    flash_size = "1gb" if target else "256mb"
    pause = 0.02 if target else 0
    server = start_server("--memory", "32mb", "--ssd-size", flash_size,
                          "--namespaces", "tenant-a=8mb,tenant-b=4mb")
    stop = threading.Event()
    failures = []
    value = os.urandom(64 * 1024)

    def native(namespace, keys):
        try:
            client = strata.Client(port=server.native_port, namespace=namespace)
            buffer = bytearray(len(value))
            index = 0
            while not stop.is_set():
                client.put_batch([(f"block-{(index + j) % keys}", value) for j in range(16)])
                client.get_batch([(f"block-{(index * 3 + j) % keys}", buffer)
                                  for j in range(16)])
                index += 16
                time.sleep(pause)
            client.close()
        except Exception as error:  # reported by the test, not lost in the thread
            failures.append(repr(error))

    def resp():
        client = server.client()
        index = 0
        while not stop.is_set():
            pipe = client.pipeline(transaction=False)
            for _ in range(50):
                pipe.set(f"session-{index % 3000}", "v" * 500)
                pipe.get(f"session-{(index * 7) % 4000}")
                index += 1
            pipe.execute()
        client.close()

    # 2000 blocks of 64 KiB in default: 125 MiB, far past its 20 MiB of DRAM, so most
    # are on flash; tenant-a's 60 fit in its 8 MiB quota.
    workers = [threading.Thread(target=native, args=("default", 2000)),
               threading.Thread(target=native, args=("tenant-a", 60))]
    if target:
        workers.append(threading.Thread(target=resp))
    for worker in workers:
        worker.start()
    page = f"http://127.0.0.1:{server.http_port}/"
    try:
        # a few seconds of history under load (flash fills more slowly when sanitized)
        time.sleep(15 if target else 6 if SANITIZED else 3)
        dom = chromium("--dump-dom", "--virtual-time-budget=3000", page,
                       directory=tmp_path / "profile-dom")
        if target:
            screenshot = tmp_path / "status-page.png"
            shot = chromium(f"--screenshot={screenshot}", "--window-size=1280,1130",
                            "--hide-scrollbars", "--virtual-time-budget=3000", page,
                            directory=tmp_path / "profile-shot")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not failures, failures
    html = dom.stdout.decode("utf-8", "replace")
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]

    def attribute(pattern, name):
        match = re.search(rf'<[^>]*{pattern}[^>]*\b{name}="([^"]*)"', html)
        assert match, f"{pattern} has no {name}: the page did not draw it"
        return float(match.group(1))

    # Requests and bytes: the native frames count (before, the page showed 0 requests/s).
    assert attribute('id="chart-throughput"', "data-peak") > 0
    assert re.search(r"[1-9]", element_text(html, "figure-ops"))
    detail = element_text(html, "figure-ops-detail")
    assert re.search(r"native [1-9][^ ]* frames/s, [1-9][^ ]*( k)? keys/s", detail), detail
    assert attribute('id="chart-network"', "data-peak") > 1e6  # bytes in per second
    # Flash: usage against ssd-size, keys only on flash, bytes written per second.
    assert re.fullmatch(r"\d+\.\d %", element_text(html, "figure-flash"))
    capacity = "1.0 GiB" if target else "256.0 MiB"
    assert re.search(rf"of {re.escape(capacity)}, [1-9][\d.]*( k)? keys only on flash",
                     element_text(html, "figure-flash-detail"))
    assert attribute('id="chart-flash"', "data-peak-b") > 0  # bytes written per second
    assert re.search(r"keys with their value in DRAM", element_text(html, "figure-dram-items"))
    # Namespaces: default and each of --namespaces, with its quota and keys.
    quotas = {"tenant-a": 8 << 20, "tenant-b": 4 << 20}
    for name in ("default", "tenant-a", "tenant-b"):
        assert f'data-namespace="{name}"' in html, f"namespace {name} not on the page"
    for name, quota in quotas.items():
        assert attribute(f'data-namespace="{name}"', "data-quota") == quota
    assert attribute('data-namespace="tenant-a"', "data-keys") == 60
    assert attribute('data-namespace="tenant-a"', "data-used") > 60 * len(value)
    assert attribute('data-namespace="default"', "data-keys") > 0
    # Connections by protocol: the two native clients were connected while the page drew.
    assert attribute('data-protocol="native"', "data-open") >= 2
    assert attribute('data-protocol="http"', "data-open") >= 1
    assert re.fullmatch(r"[\d.]+ (µs|ms|s)", element_text(html, "figure-p50"))
    latency = element_text(html, "figure-latency-detail")
    assert re.search(r"native frames p50 [\d.]+ (µs|ms|s), p99 [\d.]+ (µs|ms|s)",
                     latency), latency

    # DRAM and flash items apart: the two add up to the default namespace's keys.
    info = json.loads(server.http("/info")[2])
    keys = int(re.match(r"keys=(\d+)", info["keyspace"]["db0"]).group(1))
    assert info["flash"]["flash_items"] > 0
    assert info["strata"]["strata_dram_items"] + info["flash"]["flash_items"] == keys
    assert info["strata"]["strata_native_requests"] > 0
    assert info["strata"]["strata_native_keys"] >= 16 * info["strata"]["strata_native_requests"] / 2
    if target:
        assert shot.returncode == 0, shot.stderr.decode()[-2000:]
        assert screenshot.stat().st_size > 10000
        shutil.copy(screenshot, target)


def test_status_page_formats_durations_in_fitting_units(server, tmp_path):
    """The page's own duration formatter (the script it serves, run in Chromium): a
    latency in seconds reads as seconds, not as millions of microseconds."""
    status, _, body = server.http("/")
    assert status == 200
    script = re.search(r"<script>(.*?)</script>", body.decode(), re.S).group(1)
    check = tmp_path / "durations.html"
    check.write_text(
        '<!DOCTYPE html><meta charset="utf-8"><span id="state"></span><pre id="out"></pre>'
        f"<script>{script}</script><script>document.getElementById('out').textContent = "
        "[2700500, 850, 12345, 5.5, 999999, 150000000].map(duration).join('|');</script>",
        encoding="utf-8")
    dom = chromium("--dump-dom", f"file://{check}", directory=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    out = re.search(r'<pre id="out">(.*?)</pre>', dom.stdout.decode()).group(1)
    assert out.split("|") == ["2.70 s", "850 µs", "12.3 ms", "5.5 µs", "1.00 s", "150 s"], out


def test_log_file_events_and_rotation(start_server, tmp_path):
    log_path = tmp_path / "strata.log"
    server = start_server("--log-file", str(log_path), "--memory", "4mb")
    client = server.client()
    client.config_set("max-clients", "500")
    client.set("x", "y")
    # a client error on each protocol
    with socket.create_connection(("127.0.0.1", server.http_port)) as connection:
        connection.sendall(b"NONSENSE\r\n\r\n")
        connection.recv(4096)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30 * SLOW) as connection:
        connection.sendall(b"*1\r\n$-1\r\n")  # a null bulk inside a command: Redis's error
        connection.recv(4096)
    # evictions: write well past the 4 MiB budget
    for index in range(2000):
        client.set(f"evict-{index}", "v" * 4000)
    deadline = time.time() + 15 * SLOW
    text = ""
    while time.time() < deadline:
        text = log_path.read_text()
        if "event=evictions" in text:
            break
        time.sleep(0.2)
    for event in ("event=start", "event=listening protocol=resp", "event=listening protocol=http",
                  "event=config name=max-clients value=500", "event=http_client_error",
                  "event=protocol_error", "event=evictions tier=dram evicted="):
        assert event in text, f"{event} missing from:\n{text}"
    for line in text.splitlines():
        assert re.match(r"^time=\S+ level=(debug|info|warning|error) event=\w+", line), line

    # rotation: move the file away, SIGHUP, and the server writes to a new file
    rotated = tmp_path / "strata.log.1"
    os.rename(log_path, rotated)
    server.process.send_signal(signal.SIGHUP)
    deadline = time.time() + 5 * SLOW
    while time.time() < deadline and not log_path.exists():
        time.sleep(0.05)
    assert log_path.exists()
    client.config_set("max-clients", "600")
    server.stop()
    new_text = log_path.read_text()
    assert "event=log_reopened" in new_text
    assert "event=config name=max-clients value=600" in new_text
    assert "event=stop" in new_text
    assert "value=600" not in rotated.read_text()
    client.close()


def log_descriptors(server, log_path):
    """The server's descriptor numbers that name LOG_PATH."""
    directory = f"/proc/{server.process.pid}/fd"
    found = []
    for name in os.listdir(directory):
        try:
            if os.readlink(os.path.join(directory, name)) == str(log_path):
                found.append(int(name))
        except FileNotFoundError:
            pass
    return found


def test_log_reopen_keeps_one_descriptor_and_never_writes_to_clients(start_server, tmp_path):
    """SIGHUP swaps the log file behind the same descriptor number (dup2): a worker that
    is about to log can never write into a socket that took a closed log's number."""
    log_path = tmp_path / "strata.log"
    server = start_server("--log-file", log_path, "--log-level", "debug")
    before = log_descriptors(server, log_path)
    assert len(before) == 1
    stop = threading.Event()
    failures = []

    def clients():
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                    sock.sendall(b"PING\r\n" * 20)
                    expected = b"+PONG\r\n" * 20
                    data = b""
                    while len(data) < len(expected):
                        piece = sock.recv(65536)
                        if not piece:
                            break
                        data += piece
                    if data != expected:
                        failures.append(data[:200])
                    sock.sendall(b"*1\r\n$-1\r\n")  # a protocol error: a log line per client
            except OSError as error:
                failures.append(repr(error))

    threads = [threading.Thread(target=clients) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for index in range(200):
            if index % 20 == 0:
                os.rename(log_path, tmp_path / f"strata.log.{index}")
            server.process.send_signal(signal.SIGHUP)
            time.sleep(0.005)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    time.sleep(0.2 * SLOW)
    assert log_descriptors(server, log_path) == before
    server.stop()
    assert "event=log_reopened" in log_path.read_text()
