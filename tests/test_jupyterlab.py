"""Run notebook twins in JupyterLab in headless Chromium, as a Binder reader does.

Run after the book build (part of `make reader`); it reuses the build's stage cache, so the pages
load their trained models instead of training them again. JupyterLab is started from this
environment on copies of two twins (JupyterLab may save a notebook it runs: the committed twins
stay untouched). For each notebook, Run > Run All Cells must finish without an error, every plotly
figure must draw its SVG (JupyterLab draws plotly's mime type with the `jupyterlab-plotly`
extension of the plotly wheel) and every ipywidget must render. Moving a slider of a live widget
must redraw the figure inside it, and send nothing that lands in JupyterLab's log console.
Screenshots of each notebook, after Run All Cells and after the slider moved, go to
_build/screenshots/lab/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import live_kernel
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.reader

ROOT = Path(__file__).resolve().parents[1]
STAGE_CACHE = live_kernel.STAGE_CACHE  # benchmarks/binder_memory.py points it at an empty one
SCREENSHOTS = ROOT / "_build" / "screenshots" / "lab"
NOTEBOOKS = ["book/transformers/attention.ipynb", "book/ppo/training.ipynb"]
RUN_TIMEOUT = 300  # seconds for Run All Cells; the PPO page loads its stages and evaluates them

# A new reader's JupyterLab asks whether to fetch Jupyter's news: answer "never" up front, so no
# toast covers the notebook and nothing tries to reach the internet.
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    }
}

# The kernel's side, from the notebook model (`window.jupyterapp`, exposed by
# --LabApp.expose_app_in_browser): the prompts, the errors (in the page, an error and tqdm's stderr
# look alike) and how many figures and widgets the cells output, which the page must then show.
NOTEBOOK_STATE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const state = {prompts: [], errors: [], figures: 0, widgets: 0};
    for (const cell of panel.content.model.cells) {
        if (cell.type !== 'code') continue;
        state.prompts.push(cell.executionCount);
        for (const out of cell.outputs.toJSON()) {
            if (out.output_type === 'error') state.errors.push(out.traceback.join('\\n'));
            const data = out.data || {};
            if (data['application/vnd.plotly.v1+json']) state.figures += 1;
            if (data['application/vnd.jupyter.widget-view+json']) state.widgets += 1;
        }
    }
    state.busy = [...panel.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
        .some(prompt => prompt.textContent.includes('*'));  // [*]: running or queued
    state.kernel = panel.sessionContext.session.kernel.status;
    return state;
}"""

KERNEL_READY = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.context && panel.context.isReady
        && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

# What the page shows: each plotly figure (drawn by jupyterlab-plotly, or by plotly.js in HTML)
# and whether it has its SVG; each widget view; and the placeholders of widgets that did not load.
RENDERED = """panel => ({
    figures: [...panel.querySelectorAll('.jp-RenderedPlotly, .js-plotly-plot')]
        .filter(el => !el.parentElement.closest('.jp-RenderedPlotly, .js-plotly-plot'))
        .map(el => el.querySelector('svg.main-svg') !== null),
    widgets: panel.querySelectorAll('.jp-OutputArea-output > .jupyter-widgets').length,
    text: panel.innerText,
})"""

# The figure inside the widget whose slider is labelled `label`, as its traces and x-axis range.
WIDGET_FIGURE = """([panel, label]) => {
    const box = [...panel.querySelectorAll('.widget-vbox')].find(box =>
        [...box.querySelectorAll('.widget-slider .widget-label')]
            .some(l => l.textContent.trim() === label));
    const gd = box && box.querySelector('.js-plotly-plot');
    if (!gd || !gd._fullLayout) return null;
    return {data: JSON.stringify(gd.data), xrange: gd._fullLayout.xaxis.range};
}"""
WIDGET_FIGURE_CHANGED = f"""([panel, label, old]) => {{
    const figure = ({WIDGET_FIGURE})([panel, label]);
    return figure !== null && figure.data !== old;
}}"""

# Each entry of JupyterLab's log console, as "level: mime type text".
LOG_ENTRIES = """entries => entries.map(entry => {
    const level = entry.querySelector('[data-log-level]').dataset.logLevel;
    const output = entry.querySelector('.jp-OutputArea-output');
    return `${level}: ${output.dataset.mimeType} ${JSON.stringify(output.innerText.slice(0, 200))}`;
})"""


# From the top of the notebook to the bottom of its last cell, in pixels.
NOTEBOOK_HEIGHT = """scroller => {
    const cells = scroller.querySelectorAll('.jp-Cell');
    const bottom = cells[cells.length - 1].getBoundingClientRect().bottom;
    return Math.ceil(bottom - scroller.getBoundingClientRect().top + scroller.scrollTop);
}"""


class Lab(NamedTuple):
    url: str
    token: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_env(folder: Path) -> dict[str, str]:
    """A reader's kernel: the build's stage cache, nothing of the build, a fresh Lab config."""
    env = live_kernel.reader_env(STAGE_CACHE)
    env["JUPYTER_CONFIG_DIR"] = str(folder / "config")  # no settings or workspace of this machine
    env["JUPYTER_RUNTIME_DIR"] = str(folder / "runtime")
    return env


def wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop_server(base: str, token: str, process: subprocess.Popen) -> None:
    """Ask the server to shut down (it stops its kernels); then make sure its processes are gone."""
    try:
        request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        process.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_all_cells(page, name: str) -> dict:
    """Run > Run All Cells, as a reader would; fail on an error. Return the NOTEBOOK_STATE."""
    started = time.monotonic()
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()  # Run All Cells
    while True:
        state = page.evaluate(NOTEBOOK_STATE)
        if state["errors"]:
            pytest.fail(f"{name}: a cell failed in JupyterLab:\n" + strip_ansi(state["errors"][0]))
        if all(state["prompts"]) and not state["busy"] and state["kernel"] == "idle":
            return state | {"seconds": time.monotonic() - started}
        if time.monotonic() - started > RUN_TIMEOUT:
            pytest.fail(f"{name}: not finished after {RUN_TIMEOUT} s: {state}")
        time.sleep(1)


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def screenshot(page, path: Path) -> None:
    """The whole notebook: JupyterLab scrolls inside its panel, so grow the window to fit it.

    Cells out of view are only estimated in height (JupyterLab's content-visibility windowing),
    so grow until the height stops changing. (The scroll height would not do: the notebook pads
    its end by a share of the window's height.)
    """
    scroller = page.locator(".jp-NotebookPanel .jp-WindowedPanel-outer")
    height = 0
    for _ in range(5):
        if height == (height := scroller.evaluate(NOTEBOOK_HEIGHT)):
            break
        page.set_viewport_size({"width": 1280, "height": min(height + 200, 16_000)})
        page.wait_for_timeout(1000)  # cells render and plotly figures resize to the new window
    scroller.evaluate("el => el.scrollTo(0, 0)")  # Run All Cells left it at the last cell
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path)
    page.set_viewport_size({"width": 1280, "height": 900})


def check_figures_and_widgets(page, name: str, state: dict, min_figures: int) -> None:
    """Every figure and widget the kernel sent is drawn, and every figure has its SVG."""
    panel = page.locator(".jp-NotebookPanel").element_handle()
    complete = (
        f"f => f.figures.length >= {state['figures']} && f.figures.every(Boolean)"
        f" && f.widgets >= {state['widgets']}"
    )
    try:  # they render a moment after their output arrives
        page.wait_for_function(f"p => ({complete})(({RENDERED})(p))", arg=panel, timeout=30_000)
    except PlaywrightTimeout:
        pass  # the asserts below say what is missing
    shown = page.evaluate(RENDERED, panel)
    figures = shown["figures"]
    assert state["widgets"] >= 1, f"{name}: no cell output a widget"
    assert len(figures) >= max(min_figures, state["figures"]), (
        f"{name}: {len(figures)} figures shown, {state['figures']} sent, {min_figures}+ expected"
    )
    assert all(figures), f"{name}: only {sum(figures)} of {len(figures)} figures drew their SVG"
    assert shown["widgets"] >= state["widgets"], (
        f"{name}: {shown['widgets']} of {state['widgets']} widgets rendered"
    )
    for bad in ("Loading widget...", "Error displaying widget"):
        assert bad not in shown["text"], f"{name}: a widget shows {bad!r}"


def log_console(page) -> list[str]:
    """What JupyterLab's log console holds: kernel output that belongs to no cell, such as what a
    widget callback displays or prints. A reader sees it as a warning count in the status bar."""
    page.evaluate("window.jupyterapp.commands.execute('logconsole:open')")
    page.locator(".jp-LogConsolePanel").wait_for()
    page.wait_for_timeout(500)  # its entries render just after it opens
    return page.locator(".jp-LogConsolePanel .jp-OutputArea-child").evaluate_all(LOG_ENTRIES)


def move_slider(page, label: str, key: str, presses: int) -> tuple[dict, dict, str]:
    """Press `key` on the handle of the slider `label`; return the widget's figure before/after.

    The book's sliders have continuous_update=False: each key press sends one new value, and the
    kernel redraws the figure inside the widget's Output, which replaces the old figure.
    """
    panel = page.locator(".jp-NotebookPanel").element_handle()
    before = figure = page.evaluate(WIDGET_FIGURE, [panel, label])
    assert before, f"no figure inside the widget with slider {label!r}"
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label))
    handle = slider.locator(".noUi-handle")
    handle.scroll_into_view_if_needed()
    for _ in range(presses):
        handle.press(key)
        page.wait_for_function(
            WIDGET_FIGURE_CHANGED, arg=[panel, label, figure["data"]], timeout=60_000
        )
        figure = page.evaluate(WIDGET_FIGURE, [panel, label])
    return before, figure, slider.locator(".widget-readout").inner_text().strip()


@contextlib.contextmanager
def running_jupyterlab(folder: Path, twins: list[str]) -> Iterator[tuple[Lab, subprocess.Popen]]:
    """JupyterLab serving copies of ``twins`` from ``folder``; stopped (with its kernels) on exit.

    Also used by benchmarks/binder_memory.py, which samples the memory of the server's processes.
    """
    notebooks = folder / "notebooks"
    notebooks.mkdir()
    for twin in twins:
        shutil.copy(ROOT / twin, notebooks)
    for path, settings in USER_SETTINGS.items():
        target = folder / "config" / "lab" / "user-settings" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(settings))
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}",
        "--LabApp.news_url=None",  # no news feed, no update check, no PyPI for extensions
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: see NOTEBOOK_STATE
        "--ServerApp.allow_root=True",  # containers and CI often run as root
    ]  # fmt: skip
    log = folder / "jupyterlab.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command, env=lab_env(folder), stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group to kill if it ignores the shutdown request
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{url}/api/status?token={token}", process, log)
        yield Lab(url, token), process
    finally:
        stop_server(url, token, process)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not (STAGE_CACHE.exists() and any(STAGE_CACHE.iterdir())):
        pytest.fail("No stage cache in _build/stage-cache: run `make book` first.")
    with running_jupyterlab(tmp_path_factory.mktemp("jupyterlab"), NOTEBOOKS) as (lab, _):
        yield lab


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def run_notebook(browser, lab: Lab, name: str, min_figures: int):
    """Open `name`, run all its cells and check what they show; return the page, still open."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    js_errors = []
    page.on("pageerror", lambda error: js_errors.append(str(error)))
    # A workspace of its own, so JupyterLab does not reopen the notebooks of earlier tests.
    page.goto(f"{lab.url}/lab/workspaces/{name}/tree/{name}.ipynb?token={lab.token}")
    # The toolbar says "idle" before the notebook has loaded; Run All Cells then asks for a kernel.
    page.wait_for_function(KERNEL_READY, timeout=120_000)
    state = run_all_cells(page, name)
    check_figures_and_widgets(page, name, state, min_figures)
    screenshot(page, SCREENSHOTS / f"{name}-1-run.png")
    print(f"{name}: Run All Cells took {state['seconds']:.0f} s")
    return page, js_errors


def close_quietly(page, name: str, js_errors: list[str]) -> None:
    """Close the page; fail if it raised JavaScript errors or the kernel sent output to the log."""
    logged = log_console(page)
    page.close()
    assert not js_errors, f"{name}: JavaScript errors: {js_errors}"
    assert not logged, f"{name}: the widget's redraws sent output to the log console: {logged}"


def test_attention_in_jupyterlab(lab, browser):
    page, js_errors = run_notebook(browser, lab, "attention", min_figures=3)
    before, after, readout = move_slider(page, "max_len", "ArrowRight", 3)
    screenshot(page, SCREENSHOTS / "attention-2-max_len.png")
    close_quietly(page, "attention", js_errors)

    # The heatmap spans the positions: its x range follows max_len (64 -> 64 + 3 steps of 8).
    assert before["xrange"] == [-0.5, 63.5], before["xrange"]
    assert readout == "88", f"the max_len slider shows {readout}"
    assert after["xrange"] == [-0.5, 87.5], f"the figure did not follow max_len: {after['xrange']}"


def test_ppo_training_in_jupyterlab(lab, browser):
    page, js_errors = run_notebook(browser, lab, "training", min_figures=3)
    before, after, readout = move_slider(page, "smoothing", "ArrowRight", 4)
    screenshot(page, SCREENSHOTS / "training-2-smoothing.png")
    close_quietly(page, "training", js_errors)

    assert readout == "0.20", f"the smoothing slider shows {readout}"
    assert after["data"] != before["data"], "the dashboard did not redraw for the new smoothing"
