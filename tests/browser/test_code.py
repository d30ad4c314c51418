"""Code Interpreter mode in a real Chromium: plots, uploads, downloads, interrupt, restart, per-session kernels.

One server for the module; the first test is a deep link (/code) as the server's first request.
"""

from __future__ import annotations

import re

import pytest

from tests.browser import ui

pytestmark = pytest.mark.browser

CSV = "name,kind,age\nrex,dog,3\ntom,cat,5\nkoi,fish,1\nbo,dog,7\nmia,cat,2\n"  # 5 rows, 3 columns


def _main_text(page) -> str:
    return ui.squash(page.get_by_test_id("stMainBlockContainer").inner_text())


def test_deep_link_to_code_as_the_first_request_and_a_plot_image_appears(server, page):
    ui.open_mode(page, server.url, "code")
    assert "/code" in page.url
    assert page.get_by_role("heading", level=1).inner_text().strip().endswith("Code Interpreter")
    welcome = ui.squash(ui.keyed(page, "code_welcome").inner_text())
    assert "Jupyter kernel" in welcome and "composite-embedded" in welcome and "Sandbox:" in welcome
    ui.greedy(page, "code")
    ui.send(page, "Plot sin(x) from 0 to 10.")
    main = page.get_by_test_id("stMainBlockContainer")
    image = main.get_by_test_id("stImage").locator("img").first
    image.wait_for()
    assert image.evaluate("img => img.complete && img.naturalWidth > 100")  # a real, decoded picture
    assert re.search(r"plot_\d+\.png", _main_text(page))


def test_a_produced_file_downloads_from_the_sidebar(server, page):
    ui.open_mode(page, server.url, "code")
    ui.greedy(page, "code")
    ui.send(page, "Plot cos(x) from 0 to 5.")
    button = page.get_by_test_id("stSidebar").get_by_test_id("stDownloadButton").filter(has_text=re.compile(r"plot_\d+"))
    button.first.wait_for()
    with page.expect_download() as download:
        button.first.locator("button").click()
    assert re.fullmatch(r"plot_\d+\.png", download.value.suggested_filename)
    with open(download.value.path(), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def _upload(page, tmp_path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    ui.keyed(page, "code_uploads").locator("input[type=file]").set_input_files(str(path))
    page.get_by_test_id("stSidebar").get_by_text(name).first.wait_for()
    ui.wait_idle(page)


def test_an_uploaded_csv_is_read_by_the_code(server, page, tmp_path):
    ui.open_mode(page, server.url, "code")
    ui.greedy(page, "code")
    _upload(page, tmp_path, "pets.csv", CSV)
    ui.send(page, "I uploaded pets.csv. Show me the first rows.")
    text = _main_text(page)
    assert 'read_csv("pets.csv")' in text
    assert "(5, 3)" in text  # the shape of the uploaded table, printed by the kernel
    # and the answer names the file and its shape from the real pandas preview (stages 8 and 12 write "pets.csv has
    # 5 rows and 3 columns", then garbled column names: see README's figures)
    assert re.search(r"pets\.csv has 5 rows and 3 columns", text)


def test_interrupt_a_long_run_then_restart_the_kernel(server, page):
    ui.open_mode(page, server.url, "code")
    ui.greedy(page, "code")
    ui.set_number(page, "code_timeout", 3000)  # far longer than this test waits: only the interrupt can end it
    ui.send(page, "What is 9**9**9? Use Python.", wait=False)  # print(9**9**9): runs until interrupted
    page.get_by_text(re.compile("running code")).wait_for(timeout=ui.LONG)
    page.wait_for_timeout(1500)
    ui.click(page, "code_interrupt")
    ui.wait_idle(page, timeout=120_000)
    text = _main_text(page)
    assert "Interrupted by the user" in text  # the interrupted run keeps its observation
    assert "9**9**9" in text  # the user's message is shown as typed, not as Markdown
    ui.click(page, "code_restart")
    page.get_by_test_id("stToast").filter(has_text="Kernel restarted").wait_for()
    ui.wait_idle(page)
    ui.send(page, "Compute 1234+4321 with Python.")
    assert "5555" in ui.squash(ui.messages(page).last.inner_text())  # the restarted kernel runs code


def _kernels(server) -> set[int]:
    import psutil

    found = set()
    for proc in psutil.Process(server.pid).children(recursive=True):
        try:
            if "ipykernel" in " ".join(proc.cmdline()):
                found.add(proc.pid)
        except psutil.Error:
            pass
    return found


def test_two_browser_sessions_have_separate_kernels_files_and_histories(server, chromium, tmp_path):
    sessions = []
    try:
        for _ in range(2):
            ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
            sessions.append((ctx, ui.open_mode(ctx.new_page(), server.url, "code")))
        (_, first), (_, second) = sessions
        before = _kernels(server)
        _upload(first, tmp_path, "only_first.csv", CSV)
        for _, pg in sessions:
            ui.greedy(pg, "code")
        ui.send(first, "Compute 1234+4321 with Python.", wait=False)
        ui.send(second, "Compute 12+30 with Python.", wait=False)
        for _, pg in sessions:
            ui.wait_idle(pg)
        assert "1234+4321" in _main_text(first) and "12+30" in _main_text(second)
        assert "1234+4321" not in _main_text(second) and "12+30" not in _main_text(first)
        assert "only_first.csv" in ui.sidebar_text(first) and "only_first.csv" not in ui.sidebar_text(second)
        assert len(_kernels(server) | before) >= 2  # one kernel per browser session
    finally:
        for n, (ctx, pg) in enumerate(sessions):
            ui.shoot(pg, f"test_two_code_sessions_{n}")
            ctx.close()
