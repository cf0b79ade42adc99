"""The notebooks' widgets in a real browser: JupyterLab on 127.0.0.1 (a free port, a token, its own
runtime/config/settings folders, this venv's kernel) serving copies of the notebooks, Debian's
Chromium driven by Playwright's sync API (``executable_path``: no downloaded browser). Each test
opens a notebook, runs all its cells, drags a slider of its explorer with the mouse and asserts
that the explorer's rendered output changed. Screenshots (the whole page and the explorer) are
kept under ``outputs/test-artifacts/`` (git-ignored; ``PDLIB_TEST_ARTIFACTS`` moves them) and
named in the test report (``record_property("screenshot", ...)``).

Synchronisation is by condition only: the server's /api/status answering, the notebook's kernel
idle with every code cell executed (read from JupyterLab's own models), selectors appearing, the
output text differing. Skips only when Chromium or Playwright is missing (``make install``
installs both when run as root)."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.notebooks, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("PDLIB_TEST_ARTIFACTS") or ROOT / "outputs" / "test-artifacts")
SERVER_START_S, RUN_ALL_S, CHANGE_S = 120, 300, 90

# JupyterLab's state for the open notebook, read from its models (``expose_app_in_browser``):
# "error: ..." once a cell raised, true once the kernel is idle and every code cell has run.
_DONE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext || !w.sessionContext.session) return false;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  for (const c of cells) {
    const err = c.model.outputs.toJSON().find(o => o.output_type === 'error');
    if (err) return 'error: ' + err.ename + ': ' + err.evalue;
  }
  const k = w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && cells.length > 0
    && cells.every(c => c.model.executionCount !== null && c.model.executionCount !== undefined);
}"""
_KERNEL_READY_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && w.context.isReady;
}"""


# A lighter run of 02 than its defaults (those are tested by test_notebook_defaults.py): this test
# is about the explorer in the browser. Injected after the parameters cell, as papermill does;
# names the notebook does not declare are left out.
LIGHTER = {"02_kstar_vs_khat": {"num_requests": 48, "n_k": 3, "repeats": 1, "k_search": "spread"}}


def _inject(nb: dict, values: dict):
    at = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", []))
    declared = {line.split("=")[0].strip() for line in "".join(nb["cells"][at]["source"]).splitlines()
                if "=" in line and not line.lstrip().startswith("#")}
    src = "".join(f"{k} = {v!r}\n" for k, v in values.items() if k in declared)
    if src:
        nb["cells"].insert(at + 1, {"cell_type": "code", "execution_count": None, "id": "injected-parameters",
                                    "metadata": {"tags": ["injected-parameters"]}, "outputs": [], "source": src})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(proc, url: str, log: Path):
    """Poll /api/status until it answers 200 (the server is up), or fail with its log."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            try:                                   # between polls: wait on the server's exit, 0.25 s
                proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                pass
    pytest.fail(f"jupyter lab did not answer {url.split('?')[0]} within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_dir):
    """(base URL, token, notebook folder) of a JupyterLab serving copies of the notebooks."""
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed and could not be (make install runs "
                    "`apt-get install -y chromium` as root); no other browser is used")
    pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    jlab = Path(sys.executable).parent / "jupyter-lab"
    if not jlab.exists():
        pytest.fail(f"{jlab} missing: jupyterlab is in the notebooks extra (make install)")
    from pdlib.grid import kernel_name
    kernel = kernel_name()
    tmp = tmp_path_factory.mktemp("lab")
    nbdir = tmp / "notebooks"
    nbdir.mkdir()
    for name in ("02_kstar_vs_khat", "04_gpu_budget"):     # copies: autosave never touches the checkout
        nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
        nb["metadata"]["kernelspec"]["name"] = kernel
        _inject(nb, LIGHTER.get(name, {}))
        (nbdir / f"{name}.ipynb").write_text(json.dumps(nb))
    env = {k: v for k, v in os.environ.items() if k != "PDLIB_NONINTERACTIVE"}   # widgets, not static tables
    env.update(JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               PDLIB_OUTPUTS_DIR=str(tmp / "outputs"), PDLIB_CACHE_DIR=str(tmp / "cache"),
               PDLIB_DATA_DIR=str(data_dir), PDLIB_PROJECT_DIR=str(ROOT))
    notify = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notify.parent.mkdir(parents=True)                     # no "news?" toast over the screenshots
    notify.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp / "jupyter-lab.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(jlab), "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nbdir}",
             "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--ServerApp.terminals_enabled=False",
             "--LabApp.extension_manager=readonly", *(["--allow-root"] if os.geteuid() == 0 else [])],
            cwd=nbdir, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(proc, f"{base}/api/status?token={token}", log)
        yield base, token, nbdir
    finally:
        proc.send_signal(signal.SIGINT)          # jupyter's clean shutdown: kernels first
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _open_and_run(browser, lab, notebook: str):
    """A page with ``notebook`` open in JupyterLab and all its cells run (kernel idle)."""
    base, token, _ = lab
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.set_default_timeout(CHANGE_S * 1000)
    page.goto(f"{base}/lab/tree/{notebook}.ipynb?token={token}&reset")
    page.wait_for_function(_KERNEL_READY_JS, timeout=SERVER_START_S * 1000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    state = page.wait_for_function(_DONE_JS, timeout=RUN_ALL_S * 1000, polling=250).json_value()
    assert state is True, f"{notebook}: {state}"
    return page


def _drag(page, handle, dx: float):
    """A real mouse drag of a slider handle by ``dx`` pixels."""
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=12)
    page.mouse.up()


def _explorer(page):
    """The notebook's explorer once its widgets rendered their output (a table)."""
    explorer = page.locator(".pdlib-explorer").first
    explorer.locator(".pdlib-explorer-output table").first.wait_for(state="visible")
    return explorer


def _output_text(explorer) -> str:
    # textContent, not innerText: JupyterLab skips the layout of cells out of view (content-visibility)
    return explorer.locator(".pdlib-explorer-output").text_content()


def _shots(page, explorer, name: str, record_property) -> list[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    paths = [ARTIFACTS / f"browser_{name}.png", ARTIFACTS / f"browser_{name}_explorer.png"]
    page.screenshot(path=str(paths[0]))
    explorer.screenshot(path=str(paths[1]))
    for p in paths:
        record_property("screenshot", str(p))
        print(f"screenshot: {p}")
    return paths


def _drag_changes_output(page, explorer, slider_index: int, dx: float):
    """Drag the explorer's slider ``slider_index``; returns (readout, output text) before and after,
    waiting for the output to change (the kernel's callback re-rendered it)."""
    slider = explorer.locator(".widget-slider").nth(slider_index)
    slider.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout")
    before = (readout.text_content(), _output_text(explorer))
    _drag(page, slider.locator(".noUi-handle"), dx)
    page.wait_for_function(
        "([el, old]) => el.textContent !== old",
        arg=[explorer.locator(".pdlib-explorer-output").element_handle(), before[1]], timeout=CHANGE_S * 1000)
    return before, (readout.text_content(), _output_text(explorer))


def test_budget_explorer_slider_drag_changes_the_table(browser, lab, record_property):
    page = _open_and_run(browser, lab, "04_gpu_budget")
    explorer = _explorer(page)
    assert "rtx4080" in _output_text(explorer) and "b_mem" in _output_text(explorer)
    # slider 0: mean tokens per request; more tokens per request -> a smaller memory-bound batch
    (r0, t0), (r1, t1) = _drag_changes_output(page, explorer, 0, 60)
    assert int(r1.replace(",", "")) > int(r0.replace(",", "")), (r0, r1)
    assert t1 != t0
    shots = _shots(page, explorer, "04_gpu_budget", record_property)
    assert all(p.stat().st_size > 10_000 for p in shots)
    page.close()


def test_kstar_explorer_slider_drag_changes_k_star(browser, lab, record_property):
    page = _open_and_run(browser, lab, "02_kstar_vs_khat")
    explorer = _explorer(page)
    text = _output_text(explorer)
    assert "k* (paper, Theorem 1)" in text and "k* (length-aware" in text and "measured k̂" in text
    assert explorer.locator(".pdlib-explorer-output img").count() == 1
    # slider 0: N (slots), released further right: a larger N, another k* row and curve
    (r0, _), (r1, t1) = _drag_changes_output(page, explorer, 0, 25)
    assert int(r1) > int(r0), (r0, r1)
    assert f"the run used N = {r0}" in t1, t1          # the measured points belong to the run's N
    shots = _shots(page, explorer, "02_kstar_vs_khat", record_property)
    assert all(p.stat().st_size > 10_000 for p in shots)
    page.close()
