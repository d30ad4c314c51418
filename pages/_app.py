"""The app's entry point (navigation, page icons) and each page's welcome; main.py only calls run_app().

UI layer only. Icons are Streamlit's bundled Material Symbols, which render on every machine
(emoji need an emoji font that servers and CI images often lack); the favicon is a local PNG, because
Streamlit fetches a Material favicon from fonts.gstatic.com (offline: a failed request on every page).
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
MAIN_SCRIPT = ROOT / "main.py"
APP_ICON = str(ROOT / "assets" / "icon.png")  # a local file: a Material icon as the favicon is fetched from fonts.gstatic.com
# mode -> (title, icon): the navigation entry, the page title and its URL path (/chat, /tool, /code)
PAGES = {
    "chat": ("Chat", ":material/chat:"),
    "tool": ("Tool", ":material/build:"),
    "code": ("Code Interpreter", ":material/terminal:"),
    "runs": ("Runs", ":material/bar_chart:"),  # recorded batch experiments (not a chat mode)
}
WELCOME = {
    "chat": "Talk with the model; its answer streams token by token, and the stop button keeps what it wrote.",
    "tool": "The model answers by calling Python tools (listed in the sidebar); every call and its result "
            "is shown, and you can ask to approve each call or type the results yourself.",
    "code": "The model writes Python that runs in your own Jupyter kernel: it can compute, read the files "
            "you upload and draw plots; variables and files stay until you restart the kernel.",
}

_entry = threading.local()  # how deep this script-run thread is inside run_app()


def run_app() -> None:
    """Page config and navigation, then the page the URL asks for (the default: Chat)."""
    st.set_page_config(page_title="composite", page_icon=APP_ICON, layout="wide")
    pages = [
        st.Page(str(ROOT / "pages" / f"{mode}.py"), title=title, icon=icon, url_path=mode, default=mode == "chat")
        for mode, (title, icon) in PAGES.items()
    ]
    page = st.navigation(pages)
    _entry.depth = getattr(_entry, "depth", 0) + 1
    try:
        page.run()
    finally:
        _entry.depth -= 1


def ensure_app_navigation() -> None:
    """Run the app's navigation when Streamlit started a page file by itself; a no-op otherwise.

    Because a `pages/` folder sits next to main.py, Streamlit runs the app as "v1" multipage
    navigation until `st.navigation` has run once in the process: a deep link (/tool) as the first
    request after a start, and every AppTest run of main.py, execute pages/tool.py alone, without
    main.py's page config and menu. Rather than rerun (which drops the pending chat input) or patch
    Streamlit's pages flag, run the navigation here (it runs this page again, inside it) and end
    the outer run. A page file that is itself the main script (`streamlit run pages/chat.py`, or an
    AppTest of one page) runs as it is.
    """
    if getattr(_entry, "depth", 0):
        return
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or Path(ctx.main_script_path).resolve() != MAIN_SCRIPT:
        return
    run_app()
    st.stop()


def title(mode: str) -> str:
    name, icon = PAGES[mode]
    return f"{icon} {name}"


def welcome(mode: str, history: list, runtime, sandbox_note: str | None = None) -> None:
    """What this mode does and which model and sandbox are in use; shown while the conversation is empty."""
    _entry.welcome = None
    if len(history) > 1:  # index 0 is the system message
        return
    if runtime is None:
        model = "no model loaded (see the Model settings in the sidebar)"
    else:
        info = runtime.info
        where = f"{info.device} {info.dtype}" if getattr(info, "backend", "local") == "local" else info.path
        model = f"**{info.name}** ({where})"
    if mode == "code":
        sandbox = sandbox_note or "the sandboxed Jupyter kernel"
    elif mode == "tool":
        sandbox = "tools run in the app's process with a timeout; no sandbox"
    else:
        sandbox = "none needed: nothing runs in this mode"
    _entry.welcome = st.empty()  # hide_welcome() clears it when the first message is sent
    with _entry.welcome.container(border=True, key=f"{mode}_welcome"):
        st.markdown(f":material/waving_hand: {WELCOME[mode]}")
        st.caption(f":material/memory: Model: {model} · :material/shield: Sandbox: {sandbox}")


def hide_welcome() -> None:
    """The conversation starts in this run: remove the welcome drawn above it."""
    slot = getattr(_entry, "welcome", None)
    _entry.welcome = None
    if slot is not None:
        slot.empty()
