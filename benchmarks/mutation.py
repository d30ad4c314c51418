"""Mutation testing (mutmut 3) of the modules where a silent mistake does harm, each with a fast test
selection; prints the kill rate per module. Run: python benchmarks/mutation.py [MODULE ...] [--workdir DIR]
[--rerun-timeouts]

Each module runs in a copy of the project under mutants-work/ (git-ignored): mutmut writes its
mutants/ there. The copy's tests reuse one prebuilt tiny model (COMPOSITE_TEST_MODEL_DIR) so that a
mutant's run does not train a tokenizer. Kill rate = killed / (killed + survived + timeouts);
mutants no selected test reaches are listed apart.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# module: (file to mutate, test files, pytest -k expression or "", mutant name patterns (space-separated) or "")
MODULES = {
    "toolcall-parsing": ("composite/dialects/calls.py",
                         ["tests/test_toolcall.py", "tests/test_catch_toolcall.py", "tests/test_dialect.py"],
                         "not property", ""),
    "toolcall-validation": ("tools/calling.py",
                            ["tests/test_toolcall.py", "tests/test_tools.py", "tests/test_catch_toolcall.py"],
                            "validation or registry_call or run_tool_call or observation",
                            "*validate* *.x__loc__mutmut_* *.x__short__mutmut_*"),
    "chatglm3-dialect": ("composite/dialects/chatglm3.py", ["tests/test_dialect.py"], "", ""),
    "sampling": ("composite/backends/local.py", ["tests/test_catch_sampling.py"],
                 "greedy_takes or repetition_penalty or smallest_set or scales_the_logits or seed_decides",
                 "*LocalRuntime*_pick__*"),
    "sandbox-outputs": ("composite/sandbox/outputs.py", ["tests/test_catch_outputs.py"], "", ""),
    "sandbox-isolation": ("composite/sandbox/isolation.py", ["tests/test_catch_isolation.py"], "",
                          "*.x_bwrap_argv__mutmut_* *.x__namespace_args__mutmut_* *.x__cap_args__mutmut_* "
                          "*.x__is_under__mutmut_*"),
}
SUPPORT = ["tests/__init__.py", "tests/conftest.py", "tests/helpers.py", "pytest.ini"]


def _copy(work: Path, tests: list[str]) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("composite", "tools"):
        shutil.copytree(ROOT / package, work / package, ignore=ignore)
    for name in SUPPORT + tests:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, work / name)
    conftest = work / "tests" / "conftest.py"
    text = conftest.read_text(encoding="utf-8")
    # reuse one prebuilt tiny model in every mutant's run (the copy only; the real suite builds its own)
    text = text.replace('    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))',
                        '    import os\n    return Path(os.environ["COMPOSITE_TEST_MODEL_DIR"])')
    conftest.write_text(text, encoding="utf-8")


def _config(target: str, tests: list[str], select: str) -> str:
    lines = ["[mutmut]", "source_paths=", "    composite", "    tools", f"only_mutate=", f"    {target}",
             "pytest_add_cli_args_test_selection="] + [f"    {t}" for t in tests]
    if select:
        lines += ["    -k", f"    {select}"]
    lines += ["pytest_add_cli_args=", "    -p", "    no:cacheprovider", ""]
    return "\n".join(lines)


def _statuses(work: Path, env: dict, patterns: list[str]) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                          capture_output=True, text=True)
    statuses = {}
    for line in done.stdout.splitlines():
        match = re.match(r"\s*(\S+): (.+)$", line)
        if match and (not patterns or any(fnmatch.fnmatch(match.group(1), p) for p in patterns)):
            statuses[match.group(1)] = match.group(2).strip()
    return statuses


def run_module(name: str, base: Path, rerun_timeouts: bool = False) -> dict:
    target, tests, select, pattern = MODULES[name]
    work = base / name
    _copy(work, tests)
    (work / "setup.cfg").write_text(_config(target, tests, select), encoding="utf-8")
    env = {**__import__("os").environ, "COMPOSITE_TEST_MODEL_DIR": str(base / "tiny-model")}
    patterns = pattern.split()
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", "2"]
    subprocess.run(command + patterns, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    statuses = _statuses(work, env, patterns)
    timeouts = [mutant for mutant, status in statuses.items() if status == "timeout"]
    if rerun_timeouts and timeouts:
        # on a loaded machine mutmut can report a quick failure as a timeout: judge those mutants once more
        subprocess.run(command + timeouts, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        statuses = _statuses(work, env, patterns)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = [mutant for mutant, status in statuses.items() if status == "survived"]
    killed = counts.get("killed", 0)
    judged = killed + counts.get("survived", 0) + counts.get("timeout", 0)
    return {"module": name, "file": target, "killed": killed, "judged": judged, "counts": counts,
            "kill_rate": killed / judged if judged else float("nan"), "survivors": survivors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--workdir", default=str(ROOT / "mutants-work"))
    parser.add_argument("--rerun-timeouts", action="store_true",
                        help="judge timed-out mutants once more (a loaded machine can turn a quick failure into a timeout)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; expected some of {', '.join(MODULES)}")
    base = Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "tiny-model" / "config.json").is_file():
        sys.path.insert(0, str(ROOT))
        from tests.conftest import build_tiny_model

        build_tiny_model(base / "tiny-model")
    for name in args.modules or list(MODULES):
        result = run_module(name, base, rerun_timeouts=args.rerun_timeouts)
        print(f"{name:20} {result['file']:32} killed {result['killed']}/{result['judged']} = "
              f"{result['kill_rate']:.1%}  (all statuses: {result['counts']})", flush=True)
        for survivor in result["survivors"]:
            print(f"    survived: {survivor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
