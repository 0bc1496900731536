"""The study as a web page: the smoke profile's report, as `aclaudio report` writes it and as
headless Chromium shows it."""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import websocket
from conftest import NOTEBOOKS, ROOT, execute_smoke_notebook

import aclaudio
from aclaudio import cli
from aclaudio.study import artifacts, report

pytestmark = pytest.mark.slow  # the report, run_all.sh and a browser: not in ./run_tests.sh --fast

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
    "--remote-debugging-port=0",
]

# What a page shows once loaded: its title, the images that did not decode, the math drawn.
PAGE_STATE = """({
    title: document.title,
    images: document.images.length,
    broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
                 .map(i => i.alt || i.src.slice(0, 60)),
    math: Array.from(document.querySelectorAll("math"))
               .filter(m => m instanceof MathMLElement && m.getBoundingClientRect().width > 0)
               .length,
})"""


@pytest.fixture(scope="module")
def smoke_report(smoke_study) -> tuple[dict, Path]:
    """`aclaudio report` on the smoke study's executed notebooks (the notebook tests usually
    executed them already in this session)."""
    for notebook in NOTEBOOKS:
        execute_smoke_notebook(notebook, smoke_study)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(["report", "--results", str(smoke_study / "results" / "smoke")])
    assert code == 0
    summary = json.loads(stdout.getvalue().splitlines()[-1])
    return summary, Path(summary["report"])


def expected_titles() -> dict[str, str]:
    """Page name -> the first heading of the notebook, read from the notebooks folder."""
    return {
        f"{notebook.stem}.html": report.title(nbformat.read(notebook, as_version=4), "")
        for notebook in NOTEBOOKS
    }


def test_the_report_is_an_index_and_one_self_contained_page_per_notebook(smoke_report):
    summary, folder = smoke_report
    titles = expected_titles()
    assert summary["ok"] and summary["pages"] == ["index.html", *titles]
    assert sorted(p.name for p in folder.iterdir()) == sorted(summary["pages"])
    assert summary["bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    assert all(title and not title.startswith("#") for title in titles.values())

    index = (folder / "index.html").read_text()
    for name, title in titles.items():
        assert f'<a href="{name}">{html.escape(title)}</a>' in index
    results = folder.parent
    for verdict in pd.read_csv(artifacts.PRETRAINING_PAIRED.path(results))["verdict"]:
        assert html.escape(verdict) in index
    key_figure = artifacts.ABLATION_HEATMAP_FIGURE.path(results).read_bytes()
    assert base64.b64encode(key_figure).decode() in index

    study = folder.parents[2]  # the smoke study: data, runs and results of the notebooks
    for name in summary["pages"]:
        page = (folder / name).read_text()
        assert str(study) not in page and str(ROOT) not in page, f"{name} shows a machine path"
        assert not re.search(r'\ssrc="(?!data:)', page), f"{name} loads something from outside"
        # no library's warning on a page: the study fixes their causes; its own RunWarnings
        # (a smoke run's monitor without clips, say) are notes to its reader
        assert not re.search(r"(?<!Run)Warning:", page), f"{name} shows a warning"
        if name != "index.html":  # the code is there, hidden until "show code" is ticked
            assert '<input type="checkbox" id="show-code">' in page, name
            assert ".jp-CodeCell .jp-Cell-inputWrapper { display: none; }" in page, name
    first = (folder / "01_why_an_angular_margin.html").read_text()
    assert "<math" in first and "\\alpha" not in first  # TeX drawn as MathML, none left raw


def test_the_executed_notebooks_keep_no_machine_path_after_the_report(smoke_report):
    """Not in the outputs, nor in the parameters cell that papermill injects, nor in its
    metadata: the whole file, as it is committed under results/."""
    study = smoke_report[1].parents[2]
    for path in sorted((study / "results" / "smoke" / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        for machine in (str(study), str(ROOT), str(Path.home())):
            assert machine not in text, f"{path.name} names {machine}"
        notebook = nbformat.read(path, as_version=4)
        tags = [cell.metadata.get("tags", []) for cell in notebook.cells]
        injected = notebook.cells[tags.index(["injected-parameters"])]
        assert 'data_dir = "data"' in injected.source, path.name
        assert notebook.metadata.papermill.parameters.results_root == "results", path.name


def test_pages_carry_no_id_that_changes_from_run_to_run(smoke_report):
    """Papermill's parameters cell, pandas' styled tables and the progress bars' widgets each
    draw a random id on every execution: a rerun with the same results would change the page."""
    summary, folder = smoke_report
    widget = "application/vnd.jupyter.widget-view+json"
    notebooks = sorted((folder.parent / "notebooks").glob("*.ipynb"))
    executed = [nbformat.read(path, as_version=4) for path in notebooks]
    outputs = [out for nb in executed for cell in nb.cells for out in cell.get("outputs", [])]
    assert any(widget in out.get("data", {}) for out in outputs)  # kept for JupyterLab
    for name in summary["pages"][1:]:
        page = (folder / name).read_text()
        assert widget not in page, name
        assert 'id="cell-id=injected-parameters"' in page, name
        assert set(re.findall(r'<table id="T_(\w+?)"', page)) <= {
            "sizes",
            "noise",
            "difficulty",
            "toy",
        }, name


def papermill_notebook(
    parameters: dict, source: str, text: str, png: str = ""
) -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: its parameters in the metadata, one cell that prints
    `text` and shows a figure."""
    outputs = [nbformat.v4.new_output("stream", text=text)]
    if png:
        outputs.append(nbformat.v4.new_output("display_data", {"image/png": png}))
    notebook = nbformat.v4.new_notebook(metadata={"papermill": {"parameters": parameters}})
    notebook.cells.append(nbformat.v4.new_code_cell(source, outputs=outputs))
    return notebook


def test_machine_paths_are_rewritten_where_they_are_whole_paths(tmp_path):
    checkout, home = tmp_path / "checkout", Path.home()
    stdlib = sysconfig.get_paths()["stdlib"]
    notebook = papermill_notebook(
        {"data_dir": "/elsewhere/fsd", "results_root": str(checkout / "results")},
        f'data_dir = "/elsewhere/fsd"\nresults_root = "{checkout}/results"',
        f"read {checkout}/runs/a, {checkout}2/b, /elsewhere/fsd_old and /elsewhere/fsd/x.csv: "
        f"/usr/lib/python3/site-packages/torch/nn.py, {stdlib}/json/decoder.py, {home}/.cache/c",
        png=f"iVBOR/{checkout}/x",
    )
    report.without_machine_paths(notebook)
    cell = notebook.cells[0]
    assert cell.source == 'data_dir = "fsd"\nresults_root = "results"'
    assert cell.outputs[0].text == (
        f"read runs/a, {checkout}2/b, /elsewhere/fsd_old and fsd/x.csv: "
        "torch/nn.py, json/decoder.py, ~/.cache/c"
    )
    assert cell.outputs[1].data["image/png"] == f"iVBOR/{checkout}/x"  # a figure is data
    assert notebook.metadata.papermill.parameters == {"data_dir": "fsd", "results_root": "results"}

    # results at the top of the file system: no checkout to be relative to, "/" stays "/"
    top = papermill_notebook(
        {"data_dir": "/data/fsd", "results_root": "/results"},
        "x = a / b",
        "a / b, /data/fsd/train.csv",
    )
    report.without_machine_paths(top)
    assert (top.cells[0].source, top.cells[0].outputs[0].text) == (
        "x = a / b",
        "a / b, fsd/train.csv",
    )

    # run by hand (no parameters): installed modules and the home folder still go
    by_hand = papermill_notebook({}, "", f"/opt/site-packages/numpy/a.py {home}/data")
    report.without_machine_paths(by_hand)
    assert by_hand.cells[0].outputs[0].text == "numpy/a.py ~/data"


def test_this_packages_files_are_named_from_the_package_in_every_layer(tmp_path, monkeypatch):
    """A warning from any layer of the package (an editable checkout's lib/, not
    site-packages) reads aclaudio/<layer>/<module>.py, wherever the report is made."""
    package = Path(aclaudio.__file__).parent
    monkeypatch.chdir(tmp_path)  # not the checkout: its paths cannot be made relative to it
    notebook = papermill_notebook({}, "", f"{package}/recipes/pretrain.py:9: {package}/losses.py")
    report.without_machine_paths(notebook)
    assert notebook.cells[0].outputs[0].text == "aclaudio/recipes/pretrain.py:9: aclaudio/losses.py"


def test_the_path_search_stays_linear_on_long_strings():
    """An output can be one long string without a space (a quadratic search takes hours on a
    few MB): run in a process of its own, so that a regression fails instead of hanging."""
    code = (
        "import nbformat; from aclaudio.study import report\n"
        "nb = nbformat.v4.new_notebook(metadata={'papermill': {'parameters': "
        "{'results_root': '/work/x/results'}}})\n"
        "nb.cells.append(nbformat.v4.new_code_cell('', outputs=["
        "nbformat.v4.new_output('stream', text='A' * 2_000_000)]))\n"
        "report.without_machine_paths(nb)\n"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert time.perf_counter() - start < 60


def chromium() -> str:
    """Debian's chromium; in CI (ACLAUDIO_REQUIRE_BROWSER=1) a missing one is a failure."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("ACLAUDIO_REQUIRE_BROWSER") == "1":
            pytest.fail("ACLAUDIO_REQUIRE_BROWSER=1 but chromium is not installed")
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    return path


def test_a_missing_browser_skips_here_and_fails_in_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("ACLAUDIO_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        chromium()
    monkeypatch.setenv("ACLAUDIO_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        chromium()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """The folder over HTTP on 127.0.0.1, as a reader's web server would show it."""
    handler = functools.partial(_QuietHandler, directory=folder)
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()


class DevTools:
    """One browser tab over the DevTools protocol: commands in order, the events kept."""

    def __init__(self, url: str) -> None:
        self.socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.events: list[dict] = []
        self.last_id = 0

    def __call__(self, method: str, **params) -> dict:
        self.last_id += 1
        self.socket.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.last_id:
                assert "error" not in message, (method, message["error"])
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(json.loads(self.socket.recv()))

    def errors(self) -> list[str]:
        """JavaScript exceptions, console errors and failed loads since the events were cleared."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description", details["text"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append(str(params["args"]))
        return found


@contextlib.contextmanager
def browser(profile: Path):
    """Headless Chromium with a fresh profile, driven through its first tab."""
    process = subprocess.Popen(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while len(port_file.read_text().split() if port_file.exists() else []) < 2:
            assert process.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
            tab = next(t for t in json.load(answer) if t["type"] == "page")
        devtools = DevTools(tab["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            devtools(f"{domain}.enable")
        yield devtools
    finally:
        process.terminate()
        process.wait(timeout=30)


def load(tab: DevTools, url: str) -> dict:
    """Open URL in the tab, wait for its load event, and return PAGE_STATE."""
    tab.events.clear()
    tab("Page.navigate", url=url)
    tab.wait_for("Page.loadEventFired")
    return tab("Runtime.evaluate", expression=PAGE_STATE, returnByValue=True)["result"]["value"]


def test_every_page_loads_in_chromium_without_errors_and_shows_every_image(smoke_report, tmp_path):
    summary, folder = smoke_report
    titles = {"index.html": "aclaudio: the study (smoke)"} | expected_titles()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with serve(folder) as site, browser(tmp_path / "chromium-profile") as tab:
        broken_page = "data:text/html,<img src='missing.png' alt='gone'><script>gone()</script>"
        state = load(tab, broken_page)  # the check itself sees a broken page
        assert state["broken"] == ["gone"] and "gone is not defined" in tab.errors()[0]
        for name in summary["pages"]:
            state = load(tab, f"{site}/{name}")
            assert tab.errors() == [], name
            assert state["title"] == titles[name]
            assert state["images"] > 0 and state["broken"] == [], (name, state)
            shot = tab("Page.captureScreenshot", format="png")["data"]
            (shots / name.replace(".html", ".png")).write_bytes(base64.b64decode(shot))
            if name == "01_why_an_angular_margin.html":
                assert state["math"] > 10, "the math is not drawn as MathML"
    assert sorted(p.stem for p in shots.iterdir()) == sorted(n[:-5] for n in summary["pages"])


def test_run_all_runs_only_the_named_notebooks_into_the_named_results(tmp_path):
    """`run_all.sh --only 01 --results DIR`: notebook 01 alone, executed into DIR/smoke/, whose
    report indexes it without the tables and figure of the notebooks that did not run."""
    env = os.environ | {"ACLAUDIO_RUNS": str(tmp_path / "runs")}
    command = [
        "bash",
        "run_all.sh",
        "--profile",
        "smoke",
        "--only",
        "01",
        "--results",
        str(tmp_path / "results"),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[run_all] 01_why_an_angular_margin.ipynb (smoke)" in done.stdout
    assert "[run_all] 02" not in done.stdout
    smoke = tmp_path / "results" / "smoke"
    assert [p.name for p in (smoke / "notebooks").iterdir()] == ["01_why_an_angular_margin.ipynb"]
    index = (smoke / "report" / "index.html").read_text()
    assert '<a href="01_why_an_angular_margin.html">' in index
    assert "paired by seed" not in index and "<img" not in index
