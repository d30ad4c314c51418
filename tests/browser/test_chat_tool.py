"""Chat and Tool mode in a real Chromium against `streamlit run main.py` with the embedded model.

One server for the module; the first test is a deep link (/tool) as the server's first request.
Assertions are on structure (a tool step, its observation, an answer that uses it), at temperature 0.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser import ui

pytestmark = pytest.mark.browser


def _nav_labels(page) -> list[str]:
    return [ui.squash(link.inner_text()) for link in page.get_by_test_id("stSidebarNavLink").all()]


def test_deep_link_to_tool_as_the_first_request_after_a_start(server, page):
    ui.open_mode(page, server.url, "tool")
    assert "/tool" in page.url
    assert page.get_by_role("heading", level=1).inner_text().strip().endswith("Tool")
    # the app's menu (not Streamlit's file-name menu of pages/), each entry with a bundled Material icon
    nav = page.get_by_test_id("stSidebarNav")
    labels = _nav_labels(page)
    assert [label.split(" ", 1)[-1] for label in labels][:3] == ["Chat", "Tool", "Code Interpreter"], labels
    assert nav.get_by_test_id("stIconMaterial").count() == len(labels)
    assert not any(name in " ".join(labels).lower() for name in ("shared", "_app", "history"))
    welcome = ui.squash(ui.keyed(page, "tool_welcome").inner_text())
    assert "calling Python tools" in welcome and "composite-embedded" in welcome and "Sandbox:" in welcome


def _tool_steps(page):
    """The expandable call / observation blocks in the conversation (st.status)."""
    return page.get_by_test_id("stMainBlockContainer").get_by_test_id("stExpander")


def test_tool_step_appears_and_the_answer_uses_the_observation(server, page):
    ui.open_mode(page, server.url, "tool")
    ui.greedy(page, "tool")
    ui.send(page, "What is 317*24?")
    steps = [ui.squash(s.inner_text()) for s in _tool_steps(page).all()]
    assert any("calculator" in s for s in steps), steps  # the call step names the tool
    observation = next(s for s in steps if s.startswith("Observation") or "Observation" in s)
    value = re.search(r"Observation[^·]*·[^·]*· (\S+)", observation).group(1)  # the tool's result, as previewed
    answer = ui.squash(ui.messages(page).last.inner_text())
    assert value in answer and "Observation" not in answer, (value, answer)


def test_manual_mode_sends_the_typed_observation(server, page):
    ui.open_mode(page, server.url, "tool")
    ui.greedy(page, "tool")
    ui.switch_on(page, "tool_manual")
    ui.send(page, "What is 12*7?")
    form = page.get_by_test_id("stForm")
    form.get_by_role("textbox").fill("4242")
    form.get_by_role("button", name="Send observation").click()
    ui.after_action(page, appears="typed by you")
    text = ui.squash(page.get_by_test_id("stMainBlockContainer").inner_text())
    assert "typed by you" in text
    assert "4242" in ui.squash(ui.messages(page).last.inner_text())  # the answer states what was typed


def test_reject_in_ask_before_running_mode(server, page):
    ui.open_mode(page, server.url, "tool")
    ui.greedy(page, "tool")
    ui.switch_on(page, "tool_ask")
    ui.send(page, "What is 317*24?")
    ui.click(page, "tool_reject")
    ui.after_action(page, appears="declined")
    main = ui.squash(page.get_by_test_id("stMainBlockContainer").inner_text())
    assert "7608" not in main  # the tool never ran
    assert "declined" in main, main
    assert not ui.keyed(page, "tool_reject").count()  # no call is waiting any more


def test_chat_streams_an_answer_retry_replaces_it_and_export_downloads_it(server, page):
    ui.open_mode(page, server.url, "")
    welcome = ui.squash(ui.keyed(page, "chat_welcome").inner_text())
    assert "composite-embedded" in welcome
    ui.greedy(page, "chat")
    ui.send(page, "Hello!")
    assert ui.messages(page).count() == 2
    first = ui.squash(ui.messages(page).last.inner_text())
    assert len(first) > 5 and not ui.keyed(page, "chat_welcome").count()
    ui.click(page, "chat_retry")
    ui.after_action(page)
    assert ui.messages(page).count() == 2  # replaced, not appended
    with page.expect_download() as download:
        ui.click(page, "chat_export_json")
    exported = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert [m["role"] for m in exported] == ["system", "user", "assistant"]
    assert exported[1]["content"] == "Hello!"
    assert ui.squash(exported[2]["content"]) in ui.squash(ui.messages(page).last.inner_text())


def test_stop_mid_answer_keeps_the_partial_text(server, page, long_talker):
    # The embedded model answers in well under a second; a random-weight model at temperature 0 never
    # reaches a stop token, so its answer streams until max_new_tokens: long enough to press stop in the middle.
    ui.open_mode(page, server.url, "")
    try:
        ui.use_model(page, str(long_talker), "tiny-random")
        ui.greedy(page, "chat", max_new=3000)
        ui.send(page, "hi", wait=False)
        stop = page.get_by_test_id("stChatInputStopButton")
        stop.wait_for(timeout=ui.LONG)
        page.get_by_test_id("stChatMessage").nth(1).wait_for(timeout=ui.LONG)
        page.wait_for_timeout(1000)
        stop.click()
        ui.wait_idle(page)
        ui.set_number(page, "chat_seed", 7)  # any rerun: the partial answer is now in the history
        page.get_by_text("(stopped)").wait_for()
        answer = ui.squash(ui.messages(page).last.inner_text())
        assert "(stopped)" in answer and len(answer) > len("(stopped)") + 5
        with page.expect_download() as download:
            ui.click(page, "chat_export_json")
        exported = json.loads(open(download.value.path(), encoding="utf-8").read())
        assert [m["role"] for m in exported] == ["system", "user", "assistant"]
        assert exported[2]["content"].strip()  # the partial text was saved as the answer, not dropped
    finally:
        ui.use_model(page, "", "composite-embedded")


def test_switching_pages_keeps_each_history(server, page):
    ui.open_mode(page, server.url, "")
    ui.greedy(page, "chat")
    ui.send(page, "Hello!")
    ui.goto_nav(page, "Tool")
    ui.greedy(page, "tool")
    ui.send(page, "What is 12*7?")
    tool_count = ui.messages(page).count()
    ui.goto_nav(page, "Chat")
    assert ui.messages(page).count() == 2 and "Hello!" in ui.messages(page).first.inner_text()
    ui.goto_nav(page, "Tool")
    assert ui.messages(page).count() == tool_count and "12*7" in ui.messages(page).first.inner_text()


def test_the_pages_fetch_nothing_from_outside_the_machine(server, page):
    """Offline and private: every page (icons, favicon, fonts included) loads from the app's own server.
    A Material icon as the favicon made the browser ask fonts.gstatic.com for it on every page."""
    from urllib.parse import urlsplit

    own = urlsplit(server.url).hostname
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if urlsplit(r.url).scheme in ("http", "https", "ws", "wss")
            and urlsplit(r.url).hostname != own else None)
    for mode in ("", "tool", "code"):
        ui.open_mode(page, server.url, mode)
    page.wait_for_timeout(1000)  # the favicon is asked for after the first paint
    assert not outside, outside


def test_two_browser_sessions_see_separate_histories(server, chromium):
    words = ("Hello!", "Who are you?")
    sessions = []
    try:
        for _ in words:
            ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
            sessions.append((ctx, ui.open_mode(ctx.new_page(), server.url, "")))
        for (_, pg), word in zip(sessions, words):
            ui.greedy(pg, "chat")
            ui.send(pg, word, wait=False)  # both sessions generate at the same time
        for (_, pg), word in zip(sessions, words):
            ui.wait_idle(pg)
            pg.wait_for_timeout(500)
            ui.wait_idle(pg)
        for (_, pg), word in zip(sessions, words):
            other = words[1 - words.index(word)]
            shown = [ui.squash(m.inner_text()) for m in ui.messages(pg).all()]
            assert len(shown) == 2 and word in shown[0], shown
            assert not any(other in text for text in shown), shown
    finally:
        for n, (ctx, pg) in enumerate(sessions):
            ui.shoot(pg, f"test_two_browser_sessions_{n}")
            ctx.close()
