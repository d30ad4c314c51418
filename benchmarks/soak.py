"""Soak: N concurrent Chromium sessions x M turns mixing Chat, Tool and Code against one `streamlit run main.py`.

Checks 0 errors, no cross-session leakage (histories, files, the kernel's working directory), kernel
processes back to the baseline after the sessions close, and reports the app's peak memory.
Run: python benchmarks/soak.py [--sessions 8] [--turns 20] [--min-minutes 5] [--json soak.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import ui  # noqa: E402  (the browser tests' page helpers)
from tests.browser.server import StreamlitServer, launch_chromium  # noqa: E402

# file names the embedded model copies reliably into read_csv (one per session)
CSV_NAMES = ["pets.csv", "cars.csv", "iris.csv", "demo.csv", "test.csv", "table.csv", "hello.csv", "abc.csv",
             "xyz.csv"]
MODES = {"chat": "Chat", "tool": "Tool", "code": "Code Interpreter"}

UPLOAD_TRIES, UPLOAD_WAIT_MS = 3, 60_000  # a file choice the browser dropped is made again, at most twice
STEP_TIMEOUT_MS = int(os.environ.get("SOAK_STEP_TIMEOUT_S", "300")) * 1000  # one browser step (a click, a wait)


def app_processes(server_pid: int):
    import psutil

    try:
        root = psutil.Process(server_pid)
        return root, root.children(recursive=True)
    except psutil.Error:
        return None, []


def kernel_pids(server_pid: int) -> set[int]:
    """One pid per kernel: the outermost process of each kernel's tree (bubblewrap, or the kernel itself)."""
    import psutil

    _, children = app_processes(server_pid)
    matched = {}
    for proc in children:
        try:
            if "ipykernel" in " ".join(proc.cmdline()):
                matched[proc.pid] = proc.ppid()
        except psutil.Error:
            pass
    return {pid for pid, parent in matched.items() if parent not in matched}


def spare_kernels() -> int:
    """Kernels the sandbox manager keeps started ahead for the next session (COMPOSITE_SANDBOX_PRESTART)."""
    from composite.sandbox import SandboxConfig

    return SandboxConfig.from_env().prestart


class Sampler(threading.Thread):
    """Peak RSS of the app process (and with its kernels) and the peak kernel count, once a second."""

    def __init__(self, server_pid: int):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.peak_app = self.peak_total = 0
        self.peak_kernels = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stopped.is_set():
            root, children = app_processes(self.server_pid)
            if root is not None:
                try:
                    app = root.memory_info().rss
                    total = app + sum(c.memory_info().rss for c in children if c.is_running())
                except psutil.Error:
                    app = total = 0
                self.peak_app = max(self.peak_app, app)
                self.peak_total = max(self.peak_total, total)
                self.peak_kernels = max(self.peak_kernels, len(kernel_pids(self.server_pid)))
            self.stopped.wait(1.0)


class Session(threading.Thread):
    """One browser session (its own Playwright and Chromium: the sync API is per thread)."""

    def __init__(self, index: int, url: str, turns: int, deadline: float, cutoff: float, workdir: Path,
                 others: list[str]):
        super().__init__(name=f"session-{index}")
        self.index, self.url, self.turns, self.deadline, self.cutoff = index, url, turns, deadline, cutoff
        self.workdir = workdir
        self.csv = CSV_NAMES[index]
        self.rows = index + 2
        self.others = others  # the other sessions' CSV names
        self.sent: dict[str, list[str]] = {mode: [] for mode in MODES}
        self.errors: list[str] = []
        self.leaks: list[str] = []
        self.model_misses: list[str] = []
        self.upload_retries: list[str] = []
        self.turn_seconds: list[float] = []
        self.done_turns = 0

    # -- the turn plan: deterministic per session, every mode, unique numbers per session --------------
    def plan(self, turn: int) -> tuple[str, str, str | None]:
        """(mode, prompt, text the answer or observation should contain)."""
        i, k = self.index, turn
        kind = k % 6
        if kind == 0:
            return "chat", f"Hello! I am visitor {i}{k}.", None
        if kind == 1:
            a, b = 100 + 10 * i + k, 3 + k % 7
            return "tool", f"What is {a}*{b}?", str(a * b)
        if kind == 2:
            return "code", f"I uploaded {self.csv}. Show me the first rows.", f"({self.rows}, 3)"
        if kind == 3:
            a, b = 1000 + 37 * i + k, 2000 + k
            return "code", f"Compute {a}+{b} with Python.", str(a + b)
        if kind == 4:
            return "tool", "What time is it in Tokyo?", "Tokyo"
        return "code", f"Plot sin(x) from 0 to {5 + i}.", "plot_"

    def run(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                try:
                    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
                    context.set_default_timeout(STEP_TIMEOUT_MS)
                    page = context.new_page()
                    notes: collections.deque[str] = collections.deque(maxlen=200)
                    page.on("console", lambda m: notes.append(f"console {m.type}: {m.text[:300]}")
                            if m.type in ("error", "warning") else None)
                    page.on("requestfailed", lambda r: notes.append(f"failed {r.method} {r.url[:200]}: {r.failure}"))
                    page.on("response", lambda r: notes.append(f"HTTP {r.status} {r.request.method} {r.url[:200]}")
                            if r.status >= 400 else None)
                    try:
                        self._drive(page, notes)
                    except Exception:
                        # what the browser saw: console errors, failed requests and the sidebar as text
                        sidebar = page.get_by_test_id("stSidebar").inner_text(timeout=30_000)
                        running = page.evaluate("""() => [
                            (document.querySelector('[data-testid="stStatusWidget"]') || {}).outerHTML || 'no status widget',
                            [...document.querySelectorAll('[data-testid="stChatInput"] button')].map(
                                b => (b.getAttribute('aria-label') || '') + ' ' + (b.getAttribute('data-testid') || '')),
                            document.visibilityState]""")
                        (self.workdir / f"session-{self.index}.log").write_text(
                            "\n".join(notes) + f"\n--- running state ---\n{running}\n--- sidebar ---\n" + sidebar,
                            encoding="utf-8")
                        raise
                    finally:  # the final state, and the stuck one when a step failed
                        page.screenshot(path=str(self.workdir / f"session-{self.index}.png"), full_page=True,
                                        timeout=60_000)
                    context.close()
                finally:
                    browser.close()
        except Exception as exc:  # deliberately broad: any failure of a session is an error of the soak, reported
            self.errors.append(f"session {self.index}: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")

    def _drive(self, page, notes: collections.deque[str]) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        ui.open_mode(page, self.url, "", timeout=600_000)  # 8 first loads at once on a small machine
        current = "chat"
        visited = set()
        turn = 0
        uploaded = False
        while (turn < self.turns or time.monotonic() < self.deadline) and time.monotonic() < self.cutoff:
            mode, prompt, expect = self.plan(turn)
            if mode != current:
                ui.goto_nav(page, MODES[mode])
                current = mode
            if mode not in visited:
                ui.greedy(page, mode)
                visited.add(mode)
            if mode == "code" and not uploaded:
                path = self.workdir / f"s{self.index}" / self.csv
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("a,b,c\n" + "".join(f"{r},{r * 2},x{r}\n" for r in range(self.rows)), encoding="utf-8")
                listed = (page.get_by_test_id("stSidebar").get_by_test_id("stDownloadButton")
                          .filter(has_text=self.csv).first)
                uploader = ui.keyed(page, "code_uploads")
                for attempt in range(UPLOAD_TRIES):
                    # as a person does it: the Upload button, then the file chooser (setting the hidden input's
                    # files directly was sometimes not seen by the page: the input held the file, no chip came)
                    with page.expect_file_chooser() as chooser:
                        uploader.get_by_role("button").filter(has_text="Upload").first.click()
                    chooser.value.set_files(str(path))
                    try:
                        listed.wait_for(timeout=UPLOAD_WAIT_MS if attempt + 1 < UPLOAD_TRIES else None)
                        break
                    except PlaywrightTimeout:
                        # the browser dropped the file choice (seen under load: no chip, no request):
                        # choose it again, as a person would, and report it with what the page showed
                        self.upload_retries.append(f"session {self.index}: {self.csv} chosen again")
                        self._upload_diagnosis(page, attempt, notes)
                ui.wait_idle(page)
                uploaded = True
            started = time.monotonic()
            ui.send(page, prompt)
            self.turn_seconds.append(time.monotonic() - started)
            self.sent[mode].append(prompt)
            self._check_page(page, f"turn {turn} ({mode})")
            shown = ui.squash(page.get_by_test_id("stMainBlockContainer").inner_text())
            if expect and expect not in shown:
                self.model_misses.append(f"{mode}: {prompt!r} -> expected {expect!r}")
            turn += 1
            self.done_turns = turn
        self._final_checks(page, current)

    def _upload_diagnosis(self, page, attempt: int, notes: collections.deque[str]) -> None:
        """What the page showed when a chosen file did not appear: a screenshot, the uploader's inputs and
        text, the connection state, and the browser's errors so far."""
        state = page.evaluate("""() => {
            const box = document.querySelector('.st-key-code_uploads');
            const inputs = box ? [...box.querySelectorAll('input[type=file]')] : [];
            return {uploader: box ? box.innerText : 'no uploader',
                    inputs: inputs.map(i => ({disabled: i.disabled, files: i.files.length})),
                    status: (document.querySelector('[data-testid="stStatusWidget"]') || {}).innerText || 'idle',
                    connection: (document.querySelector('[data-testid="stConnectionStatus"]') || {}).innerText || ''};
        }""")
        page.screenshot(path=str(self.workdir / f"session-{self.index}-upload-{attempt}.png"), full_page=True,
                        timeout=60_000)
        (self.workdir / f"session-{self.index}-upload-{attempt}.log").write_text(
            json.dumps(state, indent=1) + "\n" + "\n".join(notes), encoding="utf-8")

    def _check_page(self, page, where: str) -> None:
        if page.get_by_test_id("stException").count():
            self.errors.append(f"session {self.index} {where}: {page.get_by_test_id('stException').first.inner_text()[:500]}")
        text = page.get_by_test_id("stMainBlockContainer").inner_text()
        for name in self.others:  # another session's file never shows up here
            if name in text:
                self.leaks.append(f"session {self.index} {where}: saw {name}")

    def _final_checks(self, page, current: str) -> None:
        # histories: each mode's export holds exactly this session's prompts, in order
        for mode, title in MODES.items():
            if mode != current:
                ui.goto_nav(page, title)
                current = mode
            with page.expect_download() as download:
                ui.click(page, f"{mode}_export_json")
            exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
            users = [m["content"].split("\n\n(Uploaded files")[0] for m in exported if m["role"] == "user"]
            if users != self.sent[mode]:
                self.leaks.append(f"session {self.index} {mode} history: {users} != {self.sent[mode]}")
        # files: the sidebar's file list (its download buttons) has this session's upload and no other session's
        # (the History list may name other sessions' conversations: one user, so that is by design)
        sidebar = " ".join(b.inner_text() for b in page.get_by_test_id("stSidebar").get_by_test_id("stDownloadButton").all())
        if self.csv not in sidebar:
            self.errors.append(f"session {self.index}: its own {self.csv} is missing from the file list")
        for name in self.others:
            if name in sidebar:
                self.leaks.append(f"session {self.index}: another session's {name} is in its file list")
        # the kernel's working directory: another session's file is not readable from this kernel
        other = self.others[0]
        ui.send(page, f"I uploaded {other}. Show me the first rows.")
        shown = ui.squash(page.get_by_test_id("stMainBlockContainer").inner_text())
        if f'read_csv("{other}")' in shown and "FileNotFoundError" not in shown and "No such file" not in shown:
            self.leaks.append(f"session {self.index}: its kernel read another session's {other}")


def machine() -> dict:
    import psutil

    from composite.bench import cpu_model

    cpu = cpu_model() or platform.processor() or ""
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_at_start": [round(x, 1) for x in os.getloadavg()], "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--turns", type=int, default=20, help="turns per session (at least)")
    parser.add_argument("--min-minutes", type=float, default=5.0, help="keep going until this much time has passed")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="start no new turn after this long (0: no limit); the final checks still run")
    parser.add_argument("--kernel-wait", type=float, default=400.0,
                        help="seconds to wait for kernels to go back to the baseline after the sessions close "
                             "(Streamlit keeps a closed session for server.disconnectedSessionTTL, 120 s)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= len(CSV_NAMES):
        parser.error(f"--sessions must be 1..{len(CSV_NAMES)}")
    workdir = Path(tempfile.mkdtemp(prefix="composite-soak-"))
    info = machine()
    print(f"soak: {args.sessions} sessions x >= {args.turns} turns, >= {args.min_minutes} min; workdir {workdir}", flush=True)
    server = StreamlitServer(workdir / "server")
    result: dict = {"machine": info, "sessions": args.sessions}
    try:
        baseline = kernel_pids(server.pid)
        sampler = Sampler(server.pid)
        sampler.start()
        started = time.monotonic()
        deadline = started + args.min_minutes * 60
        names = CSV_NAMES[: args.sessions]
        cutoff = started + args.max_minutes * 60 if args.max_minutes else float("inf")
        sessions = [Session(i, server.url, args.turns, deadline, cutoff, workdir, [n for n in names if n != names[i]] or ["none.csv"])
                    for i in range(args.sessions)]
        for session in sessions:
            session.start()
            time.sleep(2)  # stagger the first page loads a little
        while any(s.is_alive() for s in sessions):
            time.sleep(15)
            print(f"  {time.monotonic() - started:5.0f} s: turns {[s.done_turns for s in sessions]}", flush=True)
        elapsed = time.monotonic() - started
        closed_at = time.monotonic()
        spares = spare_kernels()  # started ahead once the first Code page opened; they stay by design

        def leftover() -> set[int]:
            now = kernel_pids(server.pid) - baseline
            return now if len(now) > spares else set()

        while leftover() and time.monotonic() - closed_at < args.kernel_wait:
            time.sleep(5)
        left = leftover()
        sampler.stopped.set()
        turn_times = sorted(t for s in sessions for t in s.turn_seconds)
        result.update({
            "minutes": round(elapsed / 60, 1),
            "turns": sum(s.done_turns for s in sessions),
            "turns_per_session": [s.done_turns for s in sessions],
            "errors": [e for s in sessions for e in s.errors],
            "leaks": [x for s in sessions for x in s.leaks],
            "model_misses": [x for s in sessions for x in s.model_misses],
            "upload_retries": [x for s in sessions for x in s.upload_retries],
            "kernels_baseline": len(baseline),
            "kernels_peak": sampler.peak_kernels,
            "kernels_spare_by_design": spares,
            "kernels_left_after_close": max(0, len(left) - spares),
            "kernels_back_after_s": round(time.monotonic() - closed_at),
            "app_peak_rss_mib": round(sampler.peak_app / 2**20),
            "app_and_kernels_peak_rss_mib": round(sampler.peak_total / 2**20),
            "turn_seconds_median": round(turn_times[len(turn_times) // 2], 1) if turn_times else None,
            "turn_seconds_max": round(turn_times[-1], 1) if turn_times else None,
            "screenshots": str(workdir),
        })
    finally:
        server.stop()
    # the turns asked for are part of the claim: a session stopped short by --max-minutes fails the soak
    result["short_sessions"] = [f"session {i}: {n} of {args.turns} turns before --max-minutes"
                                for i, n in enumerate(result.get("turns_per_session", [])) if n < args.turns]
    ok = (not result.get("errors") and not result.get("leaks") and not result.get("kernels_left_after_close")
          and not result["short_sessions"])
    result["ok"] = ok
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, load {info['load_average_at_start']}")
    for key in ("minutes", "turns", "turns_per_session", "kernels_baseline", "kernels_peak", "kernels_spare_by_design", "kernels_left_after_close", "kernels_back_after_s",
                "app_peak_rss_mib", "app_and_kernels_peak_rss_mib", "turn_seconds_median", "turn_seconds_max"):
        print(f"  {key:30} {result.get(key)}")
    print(f"  {'errors':30} {len(result.get('errors', []))}")
    print(f"  {'leaks':30} {len(result.get('leaks', []))}")
    print(f"  {'model misses (not errors)':30} {len(result.get('model_misses', []))}")
    print(f"  {'uploads chosen again':30} {len(result.get('upload_retries', []))}")
    for short in result["short_sessions"]:
        print(f"   ! {short}")
    for line in result.get("errors", []) + result.get("leaks", []):
        print("   !", line[:600])
    print(f"  screenshots: {result.get('screenshots')}")
    print("SOAK " + ("PASSED" if ok else "FAILED"))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
