"""engine serve over real HTTP: a uvicorn server on a free loopback port, answers equal to engine lookup,
limits and bad input (4xx JSON, next request served), and the web page in a real headless Chromium."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import math
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.commands.cli import main
from engine.jobs.lookup import RepositorySearcher, read_query_file
from engine.jobs.serve import ServiceLimits, create_app, server

DATA = Path(__file__).resolve().parents[1] / "data"
MGF = DATA / "massbank" / "massbank.mgf"
MZML = DATA / "raw" / "matchms_testdata.mzML"
USI = "mzspec:MSV000000001:massbank:index:3"
SMILES = "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"  # caffeine
CHROMEDRIVER, CHROMIUM = Path("/usr/bin/chromedriver"), Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.jobs.artifacts import open_model
    from engine.jobs.repository import add_files

    path = tmp_path_factory.mktemp("serve") / "repo"
    model = open_model()
    add_files([MGF], path, model, dataset="MSV000000001", progress=False)
    add_files([MZML], path, model, dataset="MSV000000002", progress=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(repo: Path) -> Iterator[str]:
    limits = ServiceLimits(max_body_bytes=20_000, body_timeout_s=1.5, max_top_k=50)
    app = create_app(RepositorySearcher(repo), limits=limits)
    port = free_port()
    srv = server(app, port=port)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def call(url: str, *, data: bytes | None = None, ctype: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype} if data is not None else {},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if resp.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def cli_hits(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["lookup", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["hits"]


def same_hits(served: list[dict[str, Any]], cli: list[dict[str, Any]]) -> None:
    assert len(served) == len(cli) > 0
    for a, b in zip(served, cli, strict=True):
        assert (a["rank"], a["usi"], a["dataset"], a["ion_mode"]) == (b["rank"], b["usi"], b["dataset"], b["ion_mode"])
        for key in ("precursor_mz", "cosine", "predicted_tanimoto", "mass_difference"):
            assert (a[key] is None and b[key] is None) or a[key] == pytest.approx(b[key], abs=1e-4)


@pytest.fixture(scope="module")
def query(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The fourth MassBank record as an MGF file and as the JSON body of POST /lookup."""
    text = MGF.read_text()
    records = text.split("END IONS")
    path = tmp_path_factory.mktemp("q") / "query.mgf"
    path.write_text(records[3].strip() + "\nEND IONS\n")
    batch = read_query_file(path)
    row = batch.to_pylist()[0]
    body = {"peaks": [[m, i] for m, i in zip(row["mz"], row["intensity"], strict=True)],
            "precursor_mz": row["precursor_mz"], "ion_mode": row["ion_mode"]}
    return path, body


def test_health_and_docs_work_offline(base_url: str) -> None:
    status, health = call(base_url + "/health")
    assert status == 200 and health["status"] == "ok" and health["spectra"] == 50 and health["structures"]
    status, page = call(base_url + "/docs")
    assert status == 200 and b"/docs-assets/swagger-ui-bundle.js" in page and b"cdn" not in page.lower()
    assert call(base_url + "/docs-assets/swagger-ui-bundle.js")[0] == 200
    status, schema = call(base_url + "/openapi.json")
    assert status == 200 and {"/lookup", "/structure", "/spectrum/{usi}", "/health"} <= set(schema["paths"])
    status, page = call(base_url + "/")
    assert status == 200 and b"/static/app.js" in page and call(base_url + "/static/app.js")[0] == 200


@pytest.mark.parametrize("settings", [{"mode": "analogue", "top_k": 5}, {"mode": "identity", "top_k": 3},
                                      {"mode": "analogue", "top_k": 8, "cross_mode": True}])
def test_spectrum_lookup_equals_the_command(base_url: str, repo: Path, query: tuple[Path, dict[str, Any]],
                                            settings: dict[str, Any]) -> None:
    path, body = query
    status, served = call(base_url + "/lookup", data=json.dumps({**body, **settings}).encode())
    assert status == 200, served
    args = ["--mode", settings["mode"], "--top-k", str(settings["top_k"])]
    args += ["--cross-mode"] if settings.get("cross_mode") else []
    cli = cli_hits(str(path), "--repo", str(repo), *args)
    same_hits(served["hits"], cli)
    assert served["hits"][0]["usi"] == USI  # the record itself is in the repository
    # the same spectrum posted as MGF text
    params = urllib.parse.urlencode({k: str(v).lower() for k, v in settings.items()})
    status, as_mgf = call(f"{base_url}/lookup?{params}", data=path.read_bytes(), ctype="text/plain")
    assert status == 200, as_mgf
    same_hits(as_mgf["hits"], cli)


def test_usi_and_structure_lookups_equal_the_command(base_url: str, repo: Path) -> None:
    status, served = call(f"{base_url}/lookup?usi={urllib.parse.quote(USI)}&top_k=4&cross_mode=true")
    assert status == 200, served
    same_hits(served["hits"], cli_hits("--repo", str(repo), "--usi", USI, "--top-k", "4", "--cross-mode"))
    status, served = call(f"{base_url}/structure?smiles={urllib.parse.quote(SMILES)}&top_k=5")
    assert status == 200, served
    same_hits(served["hits"], cli_hits("--repo", str(repo), "--smiles", SMILES, "--top-k", "5"))
    status, served = call(f"{base_url}/structure?smiles={urllib.parse.quote(SMILES)}&mode=identity"
                          f"&adduct={urllib.parse.quote('[M+H]+')}")
    assert status == 200
    same_hits(served["hits"], cli_hits("--repo", str(repo), "--smiles", SMILES, "--mode", "identity",
                                       "--adduct", "[M+H]+")) if served["hits"] else None
    status, spectrum = call(f"{base_url}/spectrum/{urllib.parse.quote(USI)}")
    assert status == 200 and spectrum["usi"] == USI and len(spectrum["peaks"]) > 0
    assert spectrum["dataset"] == "MSV000000001"


def test_concurrent_clients_get_their_own_answers(base_url: str, query: tuple[Path, dict[str, Any]]) -> None:
    _, body = query
    single = call(base_url + "/lookup", data=json.dumps(body).encode())[1]["hits"]
    usi_single = call(f"{base_url}/lookup?usi={urllib.parse.quote(USI)}")[1]["hits"]

    def one(i: int) -> tuple[int, Any]:
        if i % 2:
            return call(f"{base_url}/lookup?usi={urllib.parse.quote(USI)}")
        return call(base_url + "/lookup", data=json.dumps(body).encode())

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(32)))
    for i, (status, answer) in enumerate(answers):
        assert status == 200
        same_hits(answer["hits"], usi_single if i % 2 else single)


def raw(url: str, path: str, body: bytes) -> tuple[int, Any]:
    return call(url + path, data=body)


BAD: list[tuple[str, str, bytes | None, int, str]] = [
    ("malformed JSON", "/lookup", b'{"peaks": [[100, 1]', 400, "malformed JSON"),
    ("NaN peak", "/lookup", b'{"peaks": [[NaN, 1]], "precursor_mz": 200}', 400, "NaN"),
    ("non-finite number", "/lookup", b'{"peaks": [[100, 1e999]], "precursor_mz": 200}', 422, "peaks"),
    ("negative intensity", "/lookup", b'{"peaks": [[100, -1]], "precursor_mz": 200, "ion_mode": "positive"}',
     422, "negative"),
    ("no peaks", "/lookup", b'{"peaks": [], "precursor_mz": 200}', 422, "peaks"),
    ("absurd top_k", "/lookup", b'{"peaks": [[100, 1]], "precursor_mz": 200, "top_k": 1000000}', 422, "top_k"),
    ("unknown field", "/lookup", b'{"peaks": [[100, 1]], "precursor_mz": 200, "foo": 1}', 422, "foo"),
    ("bad mode", "/lookup", b'{"peaks": [[100, 1]], "precursor_mz": 200, "mode": "fuzzy"}', 422, "mode"),
    ("JSON not an object", "/lookup", b'[1, 2]', 422, "object"),
    ("bad MGF", "/lookup?top_k=3", b"BEGIN IONS\nPEPMASS=abc\n100 1\nEND IONS\n", 422, ""),
    ("unknown USI", "/lookup?usi=mzspec:MSV000000009:x:scan:1", None, 404, "not in the repository"),
    ("absurd top_k (GET)", f"/lookup?usi={USI}&top_k=99999", None, 422, "top_k"),
    ("negative top_k", f"/lookup?usi={USI}&top_k=-3", None, 422, "top_k"),
    ("invalid SMILES", "/structure?smiles=C1CC(", None, 422, "SMILES"),
    ("unknown adduct", "/structure?smiles=CCO&adduct=[M+Xx]+", None, 422, "adduct"),
    ("missing query", "/structure", None, 422, "smiles"),
    ("unknown spectrum", "/spectrum/mzspec:MSV000000009:x:scan:1", None, 404, "not in the repository"),
]


@pytest.mark.parametrize(("name", "path", "body", "status", "says"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_json_error_and_the_next_request_is_served(
        base_url: str, name: str, path: str, body: bytes | None, status: int, says: str) -> None:
    got, answer = call(base_url + path.replace("[", "%5B").replace("]", "%5D").replace("+", "%2B"), data=body,
                       ctype="text/plain" if body and body.startswith(b"BEGIN") else "application/json")
    assert got == status, answer
    assert answer["status"] == status and says.lower() in answer["error"].lower()
    assert call(base_url + "/health")[0] == 200


def test_oversized_body_is_refused(base_url: str) -> None:
    big = json.dumps({"peaks": [[100 + i * 0.01, 1.0] for i in range(5000)], "precursor_mz": 500}).encode()
    status, answer = call(base_url + "/lookup", data=big)
    assert status == 413 and "larger than" in answer["error"]
    assert call(base_url + "/health")[0] == 200


def test_slow_body_does_not_block_others_and_times_out(base_url: str) -> None:
    host, port = urllib.parse.urlsplit(base_url).netloc.split(":")
    slow = socket.create_connection((host, int(port)))
    slow.sendall(b"POST /lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
                 b'{"peaks": [[100')
    try:
        t = time.monotonic()
        assert call(f"{base_url}/lookup?usi={urllib.parse.quote(USI)}")[0] == 200
        assert time.monotonic() - t < 1.0  # served while the slow client still holds its request open
        slow.settimeout(10)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = slow.recv(4096)
            if not chunk:
                break
            reply += chunk
    finally:
        slow.close()
    assert reply.startswith(b"HTTP/1.1 408") and b"not received within" in reply
    assert call(base_url + "/health")[0] == 200


def _browser() -> Any:
    if not (CHROMEDRIVER.exists() and CHROMIUM.exists() and shutil.which(str(CHROMIUM))):
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


@pytest.mark.slow
def test_web_page_renders_hits_and_mirror_plots(base_url: str, query: tuple[Path, dict[str, Any]],
                                                tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, body = query
    driver = _browser()
    try:
        driver.get(base_url + "/")
        peaks = "\n".join(f"{m} {i}" for m, i in body["peaks"])
        driver.find_element(By.ID, "peaks").send_keys(peaks)
        driver.find_element(By.ID, "precursor").send_keys(str(body["precursor_mz"]))
        driver.find_element(By.ID, "top-k").clear()
        driver.find_element(By.ID, "top-k").send_keys("5")
        driver.find_element(By.ID, "search").click()
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits tbody tr")) == 5)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "svg.mirror")) == 5)
        rows = driver.find_elements(By.CSS_SELECTOR, "#hits tbody tr")
        assert USI in rows[0].text
        first = driver.find_elements(By.CSS_SELECTOR, "svg.mirror")[0]
        assert len(first.find_elements(By.CSS_SELECTOR, "line.q")) == len(body["peaks"])
        assert len(first.find_elements(By.CSS_SELECTOR, "line.h")) > 0
        assert driver.find_element(By.ID, "error").text == ""
        # a bad query shows the service's message instead of hits
        driver.find_element(By.CSS_SELECTOR, "input[value=smiles]").click()
        driver.find_element(By.ID, "smiles").send_keys("C1CC(")
        driver.find_element(By.ID, "search").click()
        wait.until(lambda d: "SMILES" in d.find_element(By.ID, "error").text)
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
    assert math.isfinite(body["precursor_mz"])


def test_reference_library_names_the_query(repo: Path, query: tuple[Path, dict[str, Any]]) -> None:
    from engine.core.paths import DEFAULT_LIBRARY
    from engine.jobs.serve import LookupWorker, _Job
    from engine.queries.lookup import LookupSettings

    path, _ = query
    searcher = RepositorySearcher(repo, library=DEFAULT_LIBRARY)
    worker = LookupWorker(searcher, ServiceLimits())
    try:
        result = worker.submit(_Job("spectra", read_query_file(path), LookupSettings(top_k=3), library_k=2)).result(60)
    finally:
        worker.close()
    assert result["hits"][0]["usi"] == USI
    matches = result["library_matches"]
    assert 0 < len(matches) <= 2 and all(m["library_id"] and m["name"] for m in matches)
    prec = read_query_file(path).column("precursor_mz")[0].as_py()
    assert all(abs(m["precursor_mz"] - prec) <= prec * 20e-6 for m in matches)


@pytest.mark.slow
def test_several_worker_processes_serve_the_same_answers(base_url: str, repo: Path,
                                                         query: tuple[Path, dict[str, Any]]) -> None:
    """``engine serve --workers 2``: two processes on one port, each answering as the one-process service."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "-q", "serve", "--repo", str(repo), "--port", str(port),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        processes: set[int] = set()
        deadline = time.monotonic() + 120
        while len(processes) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                status, health = call(url + "/health")  # a new connection each call
                if status == 200:
                    processes.add(health["process"])
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert len(processes) == 2 and proc.pid not in processes
        _, body = query
        payload = json.dumps({**body, "top_k": 5}).encode()
        want = call(base_url + "/lookup", data=payload)
        answered: set[int] = set()
        # the kernel hands new connections to either process, not in turn: ask until both have answered,
        # a lookup and then /health on one keep-alive connection, so one process answers both
        for _ in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("POST", "/lookup", body=payload, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                assert resp.status == 200 and json.loads(resp.read())["hits"] == want[1]["hits"]
                conn.request("GET", "/health")
                answered.add(json.loads(conn.getresponse().read())["process"])
            finally:
                conn.close()
            if answered == processes:
                break
        assert answered == processes
    finally:
        proc.terminate()
        proc.communicate(timeout=30)  # waits and closes the pipe
