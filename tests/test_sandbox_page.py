"""Adversarial tests of the Code page's handling of the sandbox's workdir (issue 10, classes 1, 5
and 6): code run through the page plants links, hostile and duplicate names and a deep tree; the
page must read nothing of the host, stay up, and leave no files behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from composite.agent import Decision
from composite.messages import Message
from composite.prompts import system_prompt

ROOT = Path(__file__).resolve().parent.parent
SECRET = "HOST-SECRET-7f3a91"


@pytest.fixture(scope="module")
def page(tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("sessions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODEL_PATH", str(tiny_model_dir))
        mp.setenv("COMPOSITE_SANDBOX_BASE_DIR", str(base))
        mp.setenv("COMPOSITE_SANDBOX_PRESTART", "0")
        at = AppTest.from_file(str(ROOT / "pages" / "code.py"), default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        at.number_input(key="code_max_new").set_value(4)
        at.run()
        yield at, base
        st.cache_resource.clear()  # shuts the manager (and its kernels) down, as at the end of a session


def run_code(at: AppTest, code: str) -> Message:
    at.session_state["code_history"] = [
        Message("system", system_prompt("code")),
        Message("user", "compute"),
        Message("assistant", f"```python\n{code}\n```", "interpreter"),
    ]
    at.session_state["code_decision"] = Decision("run")
    at.run()
    assert not at.exception, at.exception
    return at.session_state["code_history"][3]


def page_alive(at: AppTest) -> None:
    at.run()
    assert not at.exception, at.exception
    assert at.chat_input, "the chat input did not render: the user could not even ask for a fix"


def everything_shown(at: AppTest) -> str:
    return repr(at._tree)


def test_a_plot_replaced_by_a_link_to_a_host_file_is_never_read(page, tmp_path):
    at, _ = page
    secret = tmp_path / "secret.svg"
    secret.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>{SECRET}</text></svg>')
    secret.chmod(0o600)  # root-only: only a host reading as root could show it
    obs = run_code(at, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()")
    [plot] = obs.extra["images"]
    history = list(at.session_state["code_history"])
    # the next round swaps the plot for a link to the host file, and a page rerun renders the old round
    run_code(at, f"import os\nos.remove({plot!r})\nos.symlink({str(secret)!r}, {plot!r})\nprint('swapped')")
    at.session_state["code_history"] = history
    page_alive(at)
    assert SECRET not in everything_shown(at)
    assert any("not shown" in c.value for c in at.caption)


def test_duplicate_and_hostile_file_names_do_not_break_the_page(page):
    at, _ = page
    obs = run_code(
        at,
        "import os\n"
        "for d in ('a', 'b', 'c/d'):\n"
        "    os.makedirs(d, exist_ok=True)\n"
        "    open(os.path.join(d, 'x.txt'), 'w').write(d)\n"
        "open('new\\nline.txt', 'w').write('1')\n"
        "open(os.fsdecode(b'bad-\\xff-utf8.txt'), 'w').write('2')\n"
        "open('[x](javascript:alert(1)).txt', 'w').write('3')\n"
        "open('z' * 250 + '.txt', 'w').write('4')\n"
        "os.mkfifo('pipe.txt')\n"
        "with open('sparse.bin', 'wb') as fh:\n"
        "    fh.truncate(1 << 29)\n",  # 512 MiB that use no disk
    )
    assert obs.extra["status"] == "ok", obs.content
    page_alive(at)
    buttons = at.get("download_button")
    labels = [b.proto.label for b in buttons]
    assert sum("x.txt" in label for label in labels) == 3  # a/x.txt, b/x.txt, c/d/x.txt: three buttons
    assert len({b.proto.id for b in buttons}) == len(buttons)
    assert not any("pipe.txt" in label for label in labels)  # special files are not offered
    sparse = [b for b in buttons if "sparse.bin" in b.proto.label]
    assert sparse and sparse[0].proto.disabled  # over the download limit: never read


def test_a_deep_tree_neither_breaks_the_listing_nor_outlives_the_session(page):
    at, base = page
    obs = run_code(
        at,
        "import os\n"
        "top = os.getcwd()\n"
        "for _ in range(1500):\n"
        "    os.mkdir('d')\n"
        "    os.chdir('d')\n"
        "open('bottom.txt', 'w').write('deep')\n"
        "os.chdir(top)\n"
        "open('top.txt', 'w').write('top')\n"
        "print('built')\n",
    )
    assert "built" in obs.content
    page_alive(at)
    assert any("top.txt" in b.proto.label for b in at.get("download_button"))
    sessions = [p for p in base.iterdir() if p.name.startswith("session-")]
    assert sessions
    st.cache_resource.clear()  # the session ends: its kernel and files go
    assert not [p for p in base.iterdir() if p.name.startswith("session-")]
    assert not any(p.name.startswith("composite-sandbox-") for p in Path(os.environ.get("TMPDIR", "/tmp")).iterdir()
                   if p.is_dir() and (p / "remove-workdir").exists()
                   and any(str(s) in (p / "remove-workdir").read_text() for s in sessions))


def test_restoring_kept_files_never_follows_a_link_planted_in_the_workdir(tmp_path):
    """A reopened conversation writes its kept files back (pages/_history.py through
    files.write_workdir_file): a link where a folder or the file should be is never written through."""
    from composite.errors import SandboxError
    from composite.sandbox.files import read_workdir_file, write_workdir_file

    workdir, outside = tmp_path / "work", tmp_path / "outside"
    workdir.mkdir()
    outside.mkdir()
    (outside / "target.txt").write_text(SECRET)
    os.symlink(outside, workdir / "linked")  # a folder link
    with pytest.raises(SandboxError, match="link or not a folder"):
        write_workdir_file(workdir, "linked/x.txt", b"through the link")
    (workdir / "a").mkdir()
    os.symlink(outside / "target.txt", workdir / "a" / "x.txt")  # a file link
    assert write_workdir_file(workdir, "a/x.txt", b"kept") == "a/x.txt"
    assert read_workdir_file(workdir, "a/x.txt") == b"kept" and not (workdir / "a" / "x.txt").is_symlink()
    (workdir / "plain").write_text("a file, not a folder")
    with pytest.raises(SandboxError, match="link or not a folder"):
        write_workdir_file(workdir, "plain/x.txt", b"x")
    for bad in ("../up.txt", "/abs.txt", "a/../../up.txt", ".ipython/startup.py", "a//b", "new\nline.txt"):
        with pytest.raises(SandboxError, match="invalid workdir path"):
            write_workdir_file(workdir, bad, b"x")
    assert sorted(p.name for p in outside.iterdir()) == ["target.txt"]
    assert (outside / "target.txt").read_text() == SECRET
    assert not (tmp_path / "up.txt").exists()
