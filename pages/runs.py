"""Runs: the recorded `composite tool --batch` experiments, their accuracy per run, and a case-by-case comparison."""

import streamlit as st

from composite.batch import compare_runs
from composite.errors import StoreError
from pages import _history
from pages import _shared as ui

ui.page_header("runs")
st.caption("Each `python -m composite tool --batch prompts.jsonl` run is recorded here (and listed by "
           "`python -m composite runs`).")

allowed, user, why = _history.user_scope()
store = _history.store() if allowed else None
if store is None:
    st.warning(why or _history.problem() or "History is off.")
    st.stop()

try:
    runs = store.list_runs(user=user, limit=100)
except StoreError as exc:
    st.warning(f"History is off: {exc}")
    st.stop()
if not runs:
    st.info(f"No recorded runs yet in {store.where}. Record one with "
            "`python -m composite tool --batch prompts.jsonl`.")
    st.stop()


def _pct(summary: dict, key: str):
    value = summary.get(key)
    return None if value is None else round(100 * value, 1)


rows = [{
    "run": r.id, "when (UTC)": f"{r.created_at:%Y-%m-%d %H:%M}", "model": r.model, "backend": r.backend,
    "prompts": r.summary.get("prompts"), "tool name %": _pct(r.summary, "tool_name_accuracy"),
    "exact arguments %": _pct(r.summary, "exact_arguments_accuracy"), "prompts file": r.prompts_file.rsplit("/", 1)[-1],
    "file sha256": r.prompts_sha256[:12],
} for r in runs]
st.subheader("Accuracy per run")
chart = [{"run": row["run"], "tool name %": row["tool name %"] or 0.0, "exact arguments %": row["exact arguments %"] or 0.0}
         for row in reversed(rows)]  # oldest left
st.bar_chart(chart, x="run", y=["tool name %", "exact arguments %"], stack=False, y_label="accuracy (%)")
st.dataframe(rows, hide_index=True, width="stretch")

st.subheader("Compare two runs")
labels = {r.id: f"{r.id} · {r.created_at:%Y-%m-%d %H:%M} · {r.model}" for r in runs}
ids = list(labels)
c1, c2 = st.columns(2)
run_a = c1.selectbox("Run A", ids, index=min(1, len(ids) - 1), format_func=labels.get, key="runs_a")
run_b = c2.selectbox("Run B", ids, index=0, format_func=labels.get, key="runs_b")
try:
    (info_a, cases_a), (info_b, cases_b) = store.get_run(run_a, user=user), store.get_run(run_b, user=user)
except StoreError as exc:
    st.warning(str(exc))
    st.stop()
if info_a.prompts_sha256 != info_b.prompts_sha256:
    st.warning("The two runs used different prompts files; cases are matched by prompt text.")
changed = {k: (info_a.params.get(k), info_b.params.get(k)) for k in sorted(set(info_a.params) | set(info_b.params))
           if info_a.params.get(k) != info_b.params.get(k)}
if changed:
    st.caption("Parameters that differ: " + "; ".join(f"{k}: A {a!r}, B {b!r}" for k, (a, b) in changed.items()))
differences = compare_runs(cases_a, cases_b)
if not differences:
    st.success(f"No differences in {len(cases_a)} cases.")
else:
    st.markdown(f"**{len(differences)} of {max(len(cases_a), len(cases_b))} cases differ**")
    st.dataframe([{
        "prompt": d["prompt"],
        "A call": d["a"]["call"] if d["a"] else "(not in A)", "A": d["a"]["verdict"] if d["a"] else "",
        "B call": d["b"]["call"] if d["b"] else "(not in B)", "B": d["b"]["verdict"] if d["b"] else "",
    } for d in differences], hide_index=True, width="stretch")
