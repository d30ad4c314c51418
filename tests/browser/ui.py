"""Page helpers for driving the app in Chromium: keyed widgets, the chat box, waiting for a run to end.

Selectors are Streamlit's stable hooks: `data-testid` attributes and the `st-key-<key>` class each
keyed widget's container gets; never generated CSS class names.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

LONG = 180_000  # ms: the embedded model on a loaded 2-core machine, or a cold kernel


def keyed(page, key: str):
    """The container of the widget created with `key=`."""
    return page.locator(f".st-key-{key}")


def open_mode(page, base_url: str, mode: str = "", timeout: int = LONG):
    """Go to /<mode> and wait until the page has finished its first run."""
    page.goto(f"{base_url}/{mode}")
    page.get_by_test_id("stChatInput").wait_for(timeout=timeout)
    wait_idle(page, timeout)
    return page


def wait_idle(page, timeout: int = LONG) -> None:
    """Wait until no script run is in progress (the chat box's button is a send button again)."""
    page.wait_for_function(
        """() => {
            const running = document.querySelector('[data-testid="stStatusWidget"]');
            const stop = document.querySelector('[data-testid="stChatInput"] button[aria-label*="top"]');
            return !running && !stop;
        }""",
        timeout=timeout,
    )
    page.wait_for_timeout(300)  # let the last deltas of the run paint
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')""", timeout=timeout
    )


def set_slider(page, key: str, end: str) -> None:
    """Move a keyed slider to its minimum ('Home') or maximum ('End') with the keyboard."""
    thumb = keyed(page, key).get_by_role("slider")
    thumb.focus()
    thumb.press(end)
    wait_idle(page)


def set_number(page, key: str, value) -> None:
    field = keyed(page, key).get_by_test_id("stNumberInputField")
    field.fill(str(value))
    field.press("Enter")
    wait_idle(page)


def greedy(page, mode: str, max_new: int | None = None) -> None:
    """Temperature 0 (the embedded model is deterministic only then)."""
    set_slider(page, f"{mode}_temperature", "Home")
    if max_new is not None:
        set_number(page, f"{mode}_max_new", max_new)


def send(page, text: str, wait: bool = True) -> None:
    """Type into the chat box and press Enter; wait until the message is shown and the run has ended."""
    before = messages(page).count()
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=\"stChatMessage\"]').length > n", arg=before, timeout=LONG)
    if wait:
        wait_idle(page)


def after_action(page, appears: str | None = None) -> None:
    """Wait for the run an action started: until `appears` is on the page (when given), then until idle.

    Without `appears`, give the run a moment to show its running indicator first (a loaded machine can
    take a while to start it)."""
    if appears is not None:
        page.get_by_text(appears).first.wait_for(timeout=LONG)
    else:
        try:
            page.wait_for_function(
                """() => document.querySelector('[data-testid="stStatusWidget"]')
                         || document.querySelector('[data-testid="stChatInputStopButton"]')""", timeout=5_000)
        except Exception:  # the run may have come and gone already: idle below is what matters
            pass
    wait_idle(page)


def messages(page):
    return page.get_by_test_id("stChatMessage")


def assistant_texts(page) -> list[str]:
    return [m.inner_text() for m in messages(page).all()]


def click(page, key: str) -> None:
    keyed(page, key).locator("button").first.click()


def sidebar_text(page) -> str:
    return page.get_by_test_id("stSidebar").inner_text()


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def goto_nav(page, title: str) -> None:
    """Switch pages through the app's navigation menu, as a user does."""
    page.get_by_test_id("stSidebarNavLink").filter(has_text=re.compile(rf"{re.escape(title)}$")).click()
    page.wait_for_timeout(500)
    page.get_by_role("heading", level=1).filter(has_text=title).wait_for(timeout=LONG)
    wait_idle(page)


def use_model(page, path: str, name: str) -> None:
    """Type a model folder into the sidebar's model path (empty: the embedded model); wait until `name` is loaded."""
    box = keyed(page, "model_path").locator("input")
    if not box.is_visible():
        expander = page.get_by_test_id("stSidebar").get_by_test_id("stExpander").filter(has=keyed(page, "model_path"))
        expander.locator("summary").click()
    box.fill(path)
    box.press("Enter")
    page.get_by_test_id("stSidebar").get_by_text(name).first.wait_for(timeout=LONG)
    wait_idle(page)


def switch_on(page, key: str) -> None:
    """Turn a keyed st.toggle on."""
    switch = keyed(page, key).get_by_role("switch")
    if not switch.is_checked():
        keyed(page, key).locator("label").click()
        wait_idle(page)
    assert switch.is_checked()


SHOTS = Path(os.environ.get("COMPOSITE_SCREENSHOTS", Path(__file__).parent / "screenshots")) / time.strftime(
    "%Y%m%d-%H%M%S")


def shoot(page, name: str) -> Path | None:
    """Save a full-page screenshot as <SHOTS>/<name>.png (the run prints the folder)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception:  # deliberately broad: a crashed page still lets the test report its own failure
        return None
    return path
