"""Tests of the code sandbox (composite.sandbox): one adversarial test per protection, each ending
with a check that the kernel is still usable; plus outputs, state, files, manager and CLI."""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import composite
from composite.errors import ConfigError, SandboxError
from composite.sandbox import (
    REDUCED_NOTE,
    ExecutionResult,
    Output,
    Sandbox,
    SandboxConfig,
    SandboxManager,
    SandboxStartError,
    cleanup_stale_state,
    run_exec_cli,
)
from composite.sandbox.files import write_file_safely
from composite.sandbox.isolation import bwrap_argv, exit_reason, probe_bwrap
from composite.sandbox.outputs import cut_middle, decode_large_stream, image_size

BWRAP_OK, BWRAP_WHY = probe_bwrap("bwrap")
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap cannot run here: {BWRAP_WHY}")
PROJECT_DIR = Path(composite.__file__).resolve().parents[1]
MiB = 2**20


def cfg(**overrides) -> SandboxConfig:
    """Small, fast limits for tests (the defaults are tested separately)."""
    base = dict(
        prestart=0,
        timeout=60.0,  # generous: the shared machine is often loaded; timeouts are tested explicitly
        interrupt_grace=3.0,
        startup_timeout=60.0,
        max_file_bytes=64 * MiB,
        max_processes=64,
        max_output_chars=100_000,
    )
    base.update(overrides)
    return SandboxConfig(**base)


@pytest.fixture(scope="module")
def sb():
    sandbox = Sandbox(config=cfg())
    sandbox.start()
    yield sandbox
    sandbox.shutdown()


def assert_usable(sandbox: Sandbox) -> None:
    result = sandbox.execute("print(1+1)", timeout=30)
    assert result.status == "ok", (result.status, result.message, result.outputs)
    assert result.text().strip() == "2"


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def processes_of_uid(uid: int | None) -> list[int]:
    if uid is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                continue
    return found


# ----------------------------------------------------------------------- no kernel needed
def test_config_defaults_env_and_overrides():
    default = SandboxConfig()
    assert default.memory_bytes == 2 * 2**30 and default.timeout == 60.0 and default.isolation == "auto"
    env = {
        "COMPOSITE_SANDBOX_MEMORY_BYTES": "512M",
        "COMPOSITE_SANDBOX_TIMEOUT": "7.5",
        "COMPOSITE_SANDBOX_HIDE_PATHS": "/srv:/opt/data",
        "COMPOSITE_SANDBOX_KERNEL_UID": "12345",
    }
    conf = SandboxConfig.from_env(env, timeout=3)
    assert conf.memory_bytes == 512 * MiB
    assert conf.timeout == 3  # constructor argument wins over the environment
    assert conf.hide_paths == ("/srv", "/opt/data") and conf.kernel_uid == 12345
    with pytest.raises(ConfigError, match="COMPOSITE_SANDBOX_CPU_SECONDS"):
        SandboxConfig.from_env({"COMPOSITE_SANDBOX_CPU_SECONDS": "lots"})
    with pytest.raises(ConfigError, match="isolation"):
        SandboxConfig(isolation="maybe")
    with pytest.raises(ConfigError, match="timeout"):
        SandboxConfig(timeout=0)


def test_observation_orders_outputs_and_cuts_the_middle():
    result = ExecutionResult(
        outputs=[
            Output("stdout", "a\n"),
            Output("image", mime="image/png", filename="plot_1.png", width=640, height=480),
            Output("result", "42"),
            Output("stderr", "warn\n"),
        ],
        status="ok",
    )
    assert result.observation() == "a\n[image: plot_1.png 640x480]\n42\nwarn"
    timed_out = ExecutionResult(
        [Output("stdout", "x" * 5000)], "timeout", "timed out after 60 s; interrupted"
    )
    obs = timed_out.observation(max_chars=300)
    assert (
        len(obs) <= 300
        and "characters cut" in obs
        and obs.endswith("[timeout: timed out after 60 s; interrupted]")
    )
    cut = cut_middle("0123456789" * 100, 100)
    assert len(cut) == 100 and cut.startswith("0123") and cut.endswith("6789")
    marker_count = int(cut.split("[... ")[1].split(" ")[0])
    assert marker_count + len(cut) - len(cut.split("\n")[1]) - 2 == 1000
    assert ExecutionResult([], "ok").observation() == "[no output]"


def test_image_size_and_large_stream_decoding():
    png = (
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\rIHDR"
        + (640).to_bytes(4, "big")
        + (480).to_bytes(4, "big")
        + b"\x08"
    )
    assert image_size("image/png", png) == (640, 480)
    assert image_size("image/svg+xml", b'<svg width="460.8pt" height="345.6pt" viewBox="0 0 1 1">') == (
        461,
        346,
    )
    raw = json.dumps({"name": "stderr", "text": 'ab"\\c\u00e9' + "x" * 10_000}).encode()
    name, text, rest = decode_large_stream(raw, 6)
    assert (name, text) == ("stderr", 'ab"\\c\u00e9') and 9_990 <= rest <= 10_010


def test_bwrap_arguments_cover_the_required_isolation(tmp_path):
    work, run = tmp_path / "work", tmp_path / "run"
    work.mkdir()
    run.mkdir()
    argv = bwrap_argv(
        "bwrap",
        ro_paths=["/usr"],
        rw_paths=[str(work), str(run)],
        hide=["/home"],
        tmp_bytes=MiB,
        drop_to_uid=True,
    )
    joined = " ".join(argv)
    for flag in (
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
        "--ro-bind / /",
        "--dev /dev",
        "--proc /proc",
        "--tmpfs /tmp",
        f"--bind {work} {work}",
        "--cap-drop ALL",
    ):
        assert flag in joined
    # the bind of the workdir comes after the tmpfs that covers /tmp
    assert joined.index("--tmpfs /tmp") < joined.index(f"--bind {work}")
    # bubblewrap's init stays PID 1 (the code cannot replace the piece that takes the tree down)
    assert "--as-pid-1" not in argv


def test_exit_reasons_are_explained():
    assert exit_reason(1, True, 60) == "exit code 1"
    assert "SIGSEGV" in exit_reason(128 + 11, True, 60)
    assert "out of memory" in exit_reason(-9, False, 60)
    assert "CPU-time limit of 60 s" in exit_reason(-9, False, 60)


def test_write_file_safely_replaces_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data.csv").symlink_to(victim)
    write_file_safely(workdir, "data.csv", b"new", None)
    assert victim.read_text() == "original"
    assert not (workdir / "data.csv").is_symlink() and (workdir / "data.csv").read_bytes() == b"new"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create files owned by another user")
def test_stale_state_cleanup_trusts_only_our_own_directories(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    planted = tmp_path / "composite-sandbox-planted"
    planted.mkdir()
    (planted / "owner").write_text("999999999 1")  # a dead process
    (planted / "remove-workdir").write_text(str(victim))
    os.chown(planted / "remove-workdir", 65534, 65534)  # written by someone else
    assert cleanup_stale_state(str(tmp_path)) == 1
    assert victim.exists() and not planted.exists()
    foreign = tmp_path / "composite-sandbox-foreign"
    foreign.mkdir()
    (foreign / "owner").write_text("999999999 1")
    os.chown(foreign, 65534, 65534)
    assert cleanup_stale_state(str(tmp_path)) == 0 and foreign.exists()


def test_without_bubblewrap_isolation_is_reported_reduced(monkeypatch, caplog):
    monkeypatch.setattr("composite.sandbox.kernel.probe_bwrap", lambda path: (False, "test: bwrap disabled"))
    with caplog.at_level(logging.WARNING, logger="composite.sandbox"):
        sandbox = Sandbox(config=cfg(isolation="auto"))
    try:
        assert sandbox.isolation == "reduced"
        assert sandbox.isolation_note == "sandbox: reduced (no network/filesystem isolation)" == REDUCED_NOTE
        assert "test: bwrap disabled" in sandbox.isolation_detail
        assert REDUCED_NOTE in caplog.text  # never silently
    finally:
        sandbox.shutdown()
    with pytest.raises(SandboxStartError, match="isolation=full"):
        Sandbox(config=cfg(isolation="full"))


def test_empty_code_is_not_run_and_a_cold_start_is_not_timed():
    sandbox = Sandbox(config=cfg())
    try:
        result = sandbox.execute("   \n")
        assert result.status == "no_code" and not sandbox.alive
        # the first execution starts the kernel (about a second); that is not the code's time
        result = sandbox.execute("import time\ntime.sleep(0.5)\nprint('done')", timeout=1)
        assert result.status == "ok" and result.text() == "done\n"
    finally:
        sandbox.shutdown()


# ------------------------------------------------------------------- basic behaviour
@needs_bwrap
def test_full_isolation_is_reported(sb):
    assert sb.isolation == "full"
    assert sb.isolation_note.startswith("sandbox: full")


def test_state_is_kept_across_executions(sb):
    assert sb.execute("counter = 41").status == "ok"
    result = sb.execute("counter += 1\ncounter")
    assert result.status == "ok" and result.outputs[-1].kind == "result" and result.outputs[-1].text == "42"


def test_outputs_keep_their_order(sb):
    code = (
        "import sys, matplotlib.pyplot as plt\n"
        "print('first')\n"
        "plt.plot([1, 2, 3]); plt.show()\n"
        "print('to stderr', file=sys.stderr)\n"
        "40 + 2\n"
    )
    result = sb.execute(code)
    assert result.status == "ok", result.message
    assert [o.kind for o in result.outputs] == ["stdout", "image", "stderr", "result"]
    image = result.outputs[1]
    assert image.mime == "image/png" and image.data.startswith(b"\x89PNG") and image.width and image.height
    assert (sb.workdir / image.filename).read_bytes() == image.data
    assert result.observation().splitlines() == [
        "first",
        f"[image: {image.filename} {image.width}x{image.height}]",
        "to stderr",
        "42",
    ]


def test_figure_left_open_at_the_end_is_shown(sb):
    result = sb.execute("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar([1, 2], [3, 4]);")
    images = result.images
    assert len(images) == 1 and images[0].filename.startswith("plot_") and images[0].filename.endswith(".png")
    assert (sb.workdir / images[0].filename).exists()


def test_jpeg_and_svg_images_are_saved(sb):
    code = (
        "import io, matplotlib.pyplot as plt\n"
        "from IPython.display import SVG, Image, display\n"
        "fig, ax = plt.subplots()\n"
        "ax.plot([1, 2])\n"
        "buf = io.BytesIO()\n"
        "fig.savefig(buf, format='jpg')\n"
        "plt.close(fig)\n"
        "display(Image(data=buf.getvalue(), format='jpeg'))\n"
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30">'
        '<rect width="40" height="30"/></svg>\'))\n'
    )
    result = sb.execute(code)
    jpeg, svg = result.images
    assert (jpeg.mime, jpeg.width, jpeg.height) == ("image/jpeg", 640, 480) and jpeg.filename.endswith(".jpg")
    assert (svg.mime, svg.width, svg.height) == ("image/svg+xml", 40, 30) and svg.filename.endswith(".svg")
    assert (sb.workdir / svg.filename).read_bytes() == svg.data


def test_restart_loses_variables_but_keeps_files(sb):
    sb.execute("kept_in_memory = 1\nopen('kept_on_disk.txt', 'w').write('disk')")
    sb.restart()
    assert sb.ready
    assert sb.execute("kept_in_memory").status == "error"
    assert sb.execute("print(open('kept_on_disk.txt').read())").text() == "disk\n"


def test_restart_does_not_wait_for_code_that_ignores_the_interrupt(sb):
    """The page's Restart button is the way out of code that will not stop: it must not queue behind it."""
    import threading

    sb.execute("lost_variable = 1")
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('started', flush=True)\ntime.sleep(300)"
    results, started = [], threading.Event()
    runner = threading.Thread(target=lambda: results.append(sb.execute(
        code, timeout=300, on_output=lambda out: started.set())))
    runner.start()
    assert started.wait(60)
    sb.interrupt()  # ignored by the code
    sb.restart()  # returns once the fresh kernel is up, not after the code's 300 s
    runner.join(60)
    assert not runner.is_alive() and results[0].status == "died", results
    assert sb.execute("lost_variable").status == "error"  # a fresh kernel
    assert_usable(sb)


def test_errors_come_without_ansi_codes(sb):
    result = sb.execute("def f():\n    return 1/0\nf()")
    assert result.status == "error" and "ZeroDivisionError" in result.message
    assert "\x1b[" not in result.outputs[-1].text and "ZeroDivisionError" in result.outputs[-1].text
    assert_usable(sb)


def test_execute_iter_streams_outputs_as_they_come(sb):
    started = time.monotonic()
    gen = sb.execute_iter("print('a', flush=True)\nimport time; time.sleep(1.5)\nprint('b')")
    first = next(gen)
    first_at = time.monotonic() - started
    rest = list(gen)
    assert first.text == "a\n" and first_at < 1.2
    assert "".join(o.text for o in rest) == "b\n"
    assert sb.last_result is not None and sb.last_result.status == "ok"


# ------------------------------------------------------------------ adversarial tests
def test_busy_loop_times_out_and_is_interrupted(sb):
    result = sb.execute("while True:\n    pass", timeout=2)
    assert result.status == "timeout"
    assert result.message == "timed out after 2 s; interrupted"
    assert result.duration < 2 + 3
    assert_usable(sb)


def test_a_tiny_timeout_still_interrupts(sb):
    # the first SIGINT may land before ipykernel arms its handler; it is repeated
    result = sb.execute("while True:\n    pass", timeout=0.01)
    assert result.status == "timeout" and result.message == "timed out after 0.01 s; interrupted"
    assert_usable(sb)


def test_endless_sleep_times_out(sb):
    result = sb.execute("import time\ntime.sleep(10**9)", timeout=2)
    assert result.status == "timeout" and "interrupted" in result.message
    assert_usable(sb)


def test_ignored_interrupt_leads_to_a_restart(sb):
    sb.execute("lost_variable = 1")
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(100)"
    result = sb.execute(code, timeout=1)
    assert result.status == "timeout"
    assert "did not answer the interrupt within 3 s and was restarted (variables lost)" in result.message
    assert sb.execute("lost_variable").status == "error"
    assert_usable(sb)


def test_output_of_an_earlier_request_never_reaches_a_later_one(sb):
    # a thread started by request A keeps A's parent header and prints after A timed out
    code_a = (
        "import contextvars, threading, time\n"
        "def later():\n"
        "    time.sleep(1.5)\n"
        "    print('FROM-A', flush=True)\n"
        "threading.Thread(target=contextvars.copy_context().run, args=(later,), daemon=True).start()\n"
        "time.sleep(100)\n"
    )
    assert sb.execute(code_a, timeout=0.5).status == "timeout"
    result_b = sb.execute("import time\ntime.sleep(2.5)\nprint('B-done')")
    assert result_b.status == "ok" and result_b.text() == "B-done\n"
    assert_usable(sb)


def test_code_right_after_an_error_is_not_aborted(sb):
    for _ in range(20):
        assert sb.execute("1/0").status == "error"
        result = sb.execute("print('next')")
        assert result.status == "ok" and result.text() == "next\n"


def test_abandoned_stream_is_interrupted_before_the_next_execution(sb):
    gen = sb.execute_iter("print('A1', flush=True)\nimport time\ntime.sleep(100)")
    assert next(gen).text == "A1\n"
    gen.close()
    result = sb.execute("print('B')")
    assert result.status == "ok" and result.text() == "B\n"


def test_fork_bomb_is_stopped_by_the_process_limit(sb):
    # capped at 4x the limit so that a broken limit fails the test without hurting the machine
    code = (
        "import os, time\n"
        "pids, err = [], None\n"
        "try:\n"
        "    for _ in range(256):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        pids.append(pid)\n"
        "except OSError as exc:\n"
        "    err = exc\n"
        "for pid in pids:\n"
        "    os.kill(pid, 9)\n"
        "for pid in pids:\n"
        "    os.waitpid(pid, 0)\n"
        "print(len(pids), type(err).__name__)\n"
    )
    result = sb.execute(code, timeout=30)
    forked, error = result.text().split()
    assert error == "BlockingIOError" and int(forked) < 64
    assert_usable(sb)


def test_allocating_50_gb_fails_with_memory_error(sb):
    result = sb.execute("block = bytearray(50 * 2**30)")
    assert result.status == "error" and result.message.startswith("MemoryError")
    assert_usable(sb)


def test_a_10_gb_file_hits_the_file_size_limit(sb):
    code = (
        "import errno, os\n"
        "chunk = b'\\0' * (16 * 2**20)\n"
        "try:\n"
        "    with open('big.bin', 'wb') as fh:\n"
        "        for _ in range(640):\n"  # 10 GiB
        "            fh.write(chunk)\n"
        "except OSError as exc:\n"
        "    print(errno.errorcode[exc.errno])\n"
        "print(os.path.getsize('big.bin'))\n"
        "os.remove('big.bin')\n"
    )
    result = sb.execute(code, timeout=30)
    code_name, size = result.text().split()
    assert code_name == "EFBIG" and int(size) <= 64 * MiB
    assert_usable(sb)


@needs_bwrap
def test_no_network_no_dns_no_host_loopback(sb):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        code = (
            "import socket\n"
            "def attempt(name, fn):\n"
            "    try:\n"
            "        fn()\n"
            "        print(name, 'CONNECTED')\n"
            "    except OSError as exc:\n"
            "        print(name, 'failed', type(exc).__name__)\n"
            "attempt('internet', lambda: socket.create_connection(('1.1.1.1', 53), timeout=3))\n"
            "attempt('dns', lambda: socket.getaddrinfo('example.com', 80))\n"
            f"attempt('host-loopback', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=3))\n"
        )
        result = sb.execute(code)
    finally:
        server.close()
    assert "CONNECTED" not in result.text()
    assert result.text().count("failed") == 3
    assert_usable(sb)


@needs_bwrap
def test_host_filesystem_is_read_only(sb):
    targets = [
        "/etc/composite-sandbox-test",
        str(PROJECT_DIR / "composite-sandbox-test"),
        "/usr/composite-test",
    ]
    code = (
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
    )
    result = sb.execute(code)
    assert "WROTE" not in result.text() and result.text().count("refused") == 3
    assert not (PROJECT_DIR / "composite-sandbox-test").exists()
    assert_usable(sb)


@needs_bwrap
def test_sessions_cannot_see_each_other(sb):
    other = Sandbox(config=cfg())
    try:
        other.start()
        other.upload("secret.txt", b"top secret")
        assert other.execute("secret_variable = 'hidden'").status == "ok"
        code = (
            "import os\n"
            f"secret = {str(other.workdir / 'secret.txt')!r}\n"
            f"for fn in (lambda: os.listdir({str(other.workdir)!r}), lambda: open(secret).read()):\n"
            "    try:\n"
            "        print('READ', fn())\n"
            "    except OSError as exc:\n"
            "        print('refused', type(exc).__name__)\n"
        )
        result = sb.execute(code)
        assert "READ" not in result.text() and result.text().count("refused") == 2
        assert sb.execute("secret_variable").status == "error"
        assert other.execute("print(secret_variable)").text() == "hidden\n"
    finally:
        other.shutdown()
    assert_usable(sb)


def test_killing_the_parent_does_not_kill_the_host(sb):
    code = (
        "import os\n"
        f"for pid in (os.getppid(), {os.getpid()}):\n"
        "    try:\n"
        "        os.kill(pid, 9)\n"
        "        print('signalled', pid)\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
    )
    result = sb.execute(code)
    assert pid_alive(os.getpid())  # we are still here
    if sb.isolation == "full":
        # the host's processes do not exist in the kernel's PID namespace
        assert "refused ProcessLookupError" in result.text()
    assert_usable(sb)  # (the kernel may have been restarted; either way it answers)


def test_os_exit_is_reported_as_death_and_restarted(sb):
    sb.execute("doomed = 1")
    result = sb.execute("import os\nos._exit(1)")
    assert result.status == "died"
    assert result.message == "the kernel died (exit code 1); it was restarted and variables were lost"
    assert sb.execute("doomed").status == "error"
    assert_usable(sb)


def test_segfault_is_reported_as_death_and_restarted(sb):
    result = sb.execute("import ctypes\nctypes.string_at(0)")
    assert result.status == "died"
    assert (
        "signal 11" in result.message
        and "SIGSEGV" in result.message
        and "variables were lost" in result.message
    )
    assert_usable(sb)


def test_death_between_executions_is_noticed(sb):
    sb.execute("import os, threading\nthreading.Timer(0.3, os._exit, args=(3,)).start()")
    time.sleep(1.5)
    result = sb.execute("print(1+1)")
    assert result.status == "ok" and result.text() == "2\n"
    assert "had died since the last execution (exit code 3)" in result.message


def test_printing_100_mb_is_cut_and_bounded(sb):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = sb.execute("print('x' * 100_000_000)", timeout=60)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert result.status == "ok"
    kept = sum(len(o.text) for o in result.outputs if o.kind == "stdout")
    assert kept <= 100_000
    marker = result.outputs[-1]
    assert "output cut" in marker.text and "were not kept" in marker.text
    assert grown < 250 * MiB  # one raw message at most, never the whole text parsed
    assert len(result.observation()) <= 2000
    assert_usable(sb)


def test_a_huge_exception_message_is_cut(sb):
    result = sb.execute("raise ValueError('v' * 10_000_000)", timeout=60)
    assert result.status == "error" and len(result.message) <= 500
    assert sum(len(o.text) for o in result.outputs) <= 100_000
    assert_usable(sb)


def test_input_fails_fast_with_a_clear_message(sb):
    started = time.monotonic()
    result = sb.execute("name = input('your name? ')", timeout=30)
    assert time.monotonic() - started < 5
    assert result.status == "error"
    assert "input() is not available in the sandbox" in result.message
    assert "input() is not available in the sandbox" in result.observation()
    assert_usable(sb)


# ---------------------------------------------------------------------------- files
def test_upload_then_read_in_the_kernel(sb):
    path = sb.upload("../../etc/evil.txt", b"hello from the host")
    assert path == sb.workdir / "evil.txt"
    result = sb.execute("print(open('evil.txt').read())")
    assert result.text() == "hello from the host\n"
    assert "evil.txt" in [f.path for f in sb.list_files()]
    with pytest.raises(SandboxError, match="plain file name"):
        sb.upload("..", b"x")


def test_links_planted_by_the_code_are_not_followed(sb, tmp_path):
    host_file = tmp_path / "host-secret.txt"
    host_file.write_text("host secret")
    sb.execute(f"import os\nos.symlink({str(host_file)!r}, 'link.txt')")
    assert (sb.workdir / "link.txt").is_symlink()
    assert all(p.name != "link.txt" for p in sb.list_files())
    with pytest.raises(SandboxError):
        sb.read_file("link.txt")
    sb.upload("link.txt", b"replaced")
    assert host_file.read_text() == "host secret"
    assert sb.read_file("link.txt") == b"replaced"


# ------------------------------------------------------------------- other sandboxes
def test_cpu_time_limit_kills_and_restarts():
    sandbox = Sandbox(config=cfg(cpu_seconds=3))
    try:
        sandbox.start()
        result = sandbox.execute("while True:\n    pass", timeout=30)
        assert result.status == "died" and "CPU-time limit of 3 s" in result.message
        assert_usable(sandbox)
    finally:
        sandbox.shutdown()


def test_reduced_isolation_still_limits_resources():
    sandbox = Sandbox(config=cfg(isolation="reduced"))
    try:
        assert sandbox.isolation == "reduced" and sandbox.isolation_note == REDUCED_NOTE
        sandbox.start()
        assert sandbox.execute("block = bytearray(50 * 2**30)").message.startswith("MemoryError")
        assert_usable(sandbox)
    finally:
        sandbox.shutdown()


def test_manager_culls_idle_sessions_without_orphans(tmp_path):
    manager = SandboxManager(cfg(idle_timeout=0.6), base_dir=tmp_path / "sessions")
    try:
        sandbox = manager.get("alice")
        assert manager.get("alice") is sandbox
        assert sandbox.wait_ready(60)
        pid, uid, workdir = sandbox.pid, sandbox.kernel_uid, sandbox.workdir
        assert pid_alive(pid) and workdir.is_dir()
        deadline = time.monotonic() + 15
        while not sandbox.closed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "alice" not in manager and sandbox.closed
        assert not pid_alive(pid) and not workdir.exists()
        assert processes_of_uid(uid) == []
    finally:
        manager.shutdown_all()


def test_manager_hands_out_a_prestarted_kernel_and_shuts_all_down(tmp_path):
    manager = SandboxManager(cfg(prestart=1), base_dir=tmp_path / "sessions")
    sandboxes: list[Sandbox] = []
    try:
        manager.prestart()
        spare = manager._spares[0]
        assert spare.wait_ready(60)
        started = time.monotonic()
        bob = manager.get("bob")
        assert bob is spare and bob.ready and time.monotonic() - started < 0.5
        carol = manager.get("carol")
        assert carol is not bob and carol.workdir != bob.workdir
        assert carol.wait_ready(60)
        assert carol.execute("x = 1").status == "ok" and bob.execute("x").status == "error"
        sandboxes = [bob, carol, *manager._spares]
        for s in sandboxes:
            s.wait_ready(60)
        pids = [s.pid for s in sandboxes]
        uids = [s.kernel_uid for s in sandboxes]
        assert manager.cull_idle(now=time.monotonic()) == []
    finally:
        manager.shutdown_all()
    assert not any(pid_alive(pid) for pid in pids)
    left = {uid: processes_of_uid(uid) for uid in uids}
    assert all(not pids for pids in left.values()), [
        (p, open(f"/proc/{p}/stat").read()[:200]) for ps in left.values() for p in ps
    ]
    with pytest.raises(SandboxError):
        manager.get("dave")


_HOST_SCRIPT = """
import os, signal, sys
from composite.sandbox import Sandbox, SandboxConfig
sandbox = Sandbox(config=SandboxConfig(prestart=0, isolation=sys.argv[1], startup_timeout=60))
sandbox.start()
print(sandbox.pid, sandbox._inner_pid or sandbox.pid, sandbox._state_dir, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("isolation", ["full", "reduced"])
def test_kernel_dies_when_the_host_is_killed(isolation):
    if isolation == "full" and not BWRAP_OK:
        pytest.skip(f"bubblewrap cannot run here: {BWRAP_WHY}")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    proc = subprocess.run(
        [sys.executable, "-c", _HOST_SCRIPT, isolation], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == -9, proc.stderr
    kernel_pid = int(proc.stdout.split()[1])
    deadline = time.monotonic() + 10
    while pid_alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(kernel_pid):
        os.kill(kernel_pid, 9)  # do not leave it behind, then fail
        pytest.fail(f"the {isolation} kernel outlived its killed host process")
    state_dir = Path(proc.stdout.split()[2])
    assert state_dir.is_dir()
    assert cleanup_stale_state() >= 1  # what the dead host left behind is removed
    assert not state_dir.exists()


def test_run_exec_cli_prints_json_lines(tmp_path):
    out = io.StringIO()
    code = (
        "import sys, matplotlib.pyplot as plt\n"
        "print('hi')\n"
        "plt.plot([1, 2]); plt.show()\n"
        "print('careful', file=sys.stderr)\n"
        "1/0\n"
    )
    exit_code = run_exec_cli(code, 60, str(tmp_path / "work"), out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert exit_code == 1
    assert [line.get("kind") for line in lines[:-1]] == ["stdout", "image", "stderr", "error"]
    assert lines[0] == {"kind": "stdout", "text": "hi\n", "filename": ""}
    assert (tmp_path / "work" / lines[1]["filename"]).exists()
    # a directory we were given gets its owner and mode back (the kernel ran as its own uid)
    assert all(p.stat().st_uid == os.geteuid() for p in [tmp_path / "work", *(tmp_path / "work").iterdir()])
    final = lines[-1]
    assert final["status"] == "error" and "ZeroDivisionError" in final["message"]
    assert final["isolation"] in ("full", "reduced")


def test_run_exec_cli_reports_a_bad_configuration(monkeypatch):
    monkeypatch.setenv("COMPOSITE_SANDBOX_ISOLATION", "sometimes")
    out = io.StringIO()
    assert run_exec_cli("print(1)", 10, None, out) == 3
    assert json.loads(out.getvalue())["status"] == "sandbox_error"


def test_interrupt_from_another_thread(sb):
    timer = threading.Timer(1.0, sb.interrupt)
    timer.start()
    result = sb.execute("import time\ntime.sleep(30)", timeout=20)
    timer.join()
    assert result.status == "interrupted" and "KeyboardInterrupt" in result.message
    assert result.duration < 5
    assert_usable(sb)


def test_a_background_start_without_jupyter_client_fails_with_a_clear_error(monkeypatch):
    """start_async() imports jupyter_client on the caller's thread (not racing it from the start thread);
    when it does not import, wait_ready() raises a SandboxError that says what is missing, and no thread dies
    with a bare ImportError."""
    from composite.sandbox import kernel

    kernel._make_kernel_manager_class.cache_clear()
    monkeypatch.setitem(sys.modules, "jupyter_client", None)  # `import jupyter_client` raises ImportError
    threads_before = {t.name for t in threading.enumerate()}
    sandbox = Sandbox(config=cfg())
    try:
        sandbox.start_async()
        assert "composite-sandbox-start" not in {t.name for t in threading.enumerate()} - threads_before
        with pytest.raises(SandboxError, match="jupyter_client.*requirements.txt"):
            sandbox.wait_ready(5)
    finally:
        sandbox.shutdown()
        kernel._make_kernel_manager_class.cache_clear()  # the next sandbox imports the real one
