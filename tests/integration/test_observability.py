"""Operators' view: a real Prometheus server scrapes strata, headless Chromium renders the
status page while a load runs, and the log file is structured, complete and rotatable."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from conftest import SLOW


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
        screenshot = tmp_path / "status-page.png"
        shot = chromium(f"--screenshot={screenshot}", "--window-size=1280,900",
                        "--virtual-time-budget=5000", page, directory=tmp_path / "profile-shot")
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
    assert shot.returncode == 0, shot.stderr.decode()[-2000:]
    assert screenshot.stat().st_size > 10000
    print(f"status page screenshot: {screenshot}")
    target = os.environ.get("STRATA_SCREENSHOT")
    if target:
        shutil.copy(screenshot, target)


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
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(b"*-5\r\n")
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
                    sock.sendall(b"*-5\r\n")  # a protocol error: a log line per client
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
