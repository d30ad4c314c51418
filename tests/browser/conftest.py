"""Fixtures for the real-browser tests: one `streamlit run main.py` per test module, Debian's Chromium,
and a screenshot of every test's final state under tests/browser/screenshots/<run>/ (printed at the end)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser.server import StreamlitServer, launch_chromium
from tests.browser.ui import SHOTS, shoot


def pytest_collection_modifyitems(items):
    # A real browser against a real server on 2 shared cores: a step can miss its wait when the
    # machine is loaded. Each browser test gets one retry (pytest-rerunfailures); a rerun is an "R" in
    # the progress line and is named in the rerun summary (-rR in pytest.ini), so a test that needs it
    # is visible, and a real bug fails twice.
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))


def pytest_terminal_summary(terminalreporter):
    if SHOTS.is_dir():
        terminalreporter.write_line(f"browser screenshots: {SHOTS}")


@pytest.fixture(scope="session")
def chromium():
    if not Path(os.environ.get("COMPOSITE_CHROMIUM", "/usr/bin/chromium")).exists():
        pytest.fail("Chromium is missing: apt-get install chromium (README install step)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One app server for the whole module (its model and kernels are shared by the module's tests)."""
    if os.environ.get("COMPOSITE_BROWSER_SERVER"):  # developing the tests: reuse a running server (url|pid)
        url, pid = os.environ["COMPOSITE_BROWSER_SERVER"].split("|")
        yield type("Running", (), {"url": url, "pid": int(pid)})()
        return
    srv = StreamlitServer(tmp_path_factory.mktemp("streamlit"))
    yield srv
    srv.stop()


@pytest.fixture
def context(chromium):
    ctx = chromium.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, request):
    """A fresh browser session; its final state is saved as <test name>.png."""
    pg = context.new_page()
    yield pg
    shoot(pg, request.node.name)


@pytest.fixture(scope="session")
def long_talker(tmp_path_factory):
    """A random-weight GLM with a 4k context: greedy, it never reaches a stop token, so it talks until stopped.
    16 layers: on the NumPy engine a 2-layer one finished its 3,000 tokens before the Stop click."""
    from tests.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("long-talker"), layers=16, max_length=4096)
