"""The embedded model's trainer and training phrasings: device choice, workers, fine-tuning lineage, held-out phrasings."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from composite.embedded import MODEL_DIR, data, phrasing
from composite.errors import ConfigError

# A model small enough to train a few steps in seconds; every phase of the schedule is visited.
TINY = ["--hidden", "32", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--intermediate", "64",
        "--row-len", "448", "--batch", "1", "--tool-rows", "1", "--induction-rows", "2", "--induction-row-len", "64",
        "--induction-until", "1", "--copy-until", "2", "--warmup", "1", "--steps", "3", "--device", "cpu",
        "--threads", "1", "--no-progress"]


def _train(workdir: Path, *extra: str) -> list[dict]:
    from composite.embedded.__main__ import main

    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "tokenizer.model").exists() and "--init-from" not in extra:
        shutil.copyfile(MODEL_DIR / "tokenizer.model", workdir / "tokenizer.model")  # skip tokenizer training
    assert main(["train", "--workdir", str(workdir), *TINY, *extra]) == 0
    return [json.loads(line) for line in (workdir / "train_log.jsonl").read_text().splitlines()]


def test_batches_built_by_workers_train_exactly_like_in_process(tmp_path: Path) -> None:
    in_process = _train(tmp_path / "a", "--workers", "0")
    with_worker = _train(tmp_path / "b", "--workers", "1")
    assert [r["step"] for r in in_process] == [1, 2, 3]
    assert [(r["loss"], r["targets"], r["docs"]) for r in in_process] == \
           [(r["loss"], r["targets"], r["docs"]) for r in with_worker]


def test_fine_tuning_records_the_run_it_started_from(tmp_path: Path) -> None:
    import torch

    from composite.embedded.train import export

    _train(tmp_path / "base")
    base = torch.load(tmp_path / "base" / "checkpoint.pt", map_location="cpu", weights_only=False)
    log = _train(tmp_path / "ft", "--init-from", str(tmp_path / "base" / "checkpoint.pt"), "--lr", "0.0001")
    assert log[0]["step"] == 1  # a fresh schedule, not a resume
    tuned = torch.load(tmp_path / "ft" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert tuned["stages"] == [{"steps": 3, "config": base["config"]}]
    assert not torch.equal(tuned["model"]["lm_head.weight"], base["model"]["lm_head.weight"])
    assert (tmp_path / "ft" / "tokenizer.model").read_bytes() == (tmp_path / "base" / "tokenizer.model").read_bytes()
    facts = json.loads((export(tmp_path / "ft", tmp_path / "out") / "training.json").read_text())
    assert facts["earlier_stages"][0]["steps"] == 3 and facts["train_config"]["lr"] == 0.0001


def test_averaging_two_exported_models_mixes_their_weights_and_records_it(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from composite.embedded.__main__ import main
    from composite.embedded.train import average, export

    _train(tmp_path / "a")
    _train(tmp_path / "b", "--seed", "5")
    first, second = export(tmp_path / "a", tmp_path / "A"), export(tmp_path / "b", tmp_path / "B")
    assert main(["average", "--first", str(first), "--second", str(second), "--weight", "0.25",
                 "--out", str(tmp_path / "mix")]) == 0
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    mix = load_file(str(tmp_path / "mix" / "model.safetensors"))
    assert mix.keys() == a.keys()
    for name in a:
        want = 0.75 * a[name].float() + 0.25 * b[name].float()
        assert mix[name].dtype == a[name].dtype and (mix[name].float() - want).abs().max() <= 1e-3 * (1 + want.abs().max())
    assert not (mix["lm_head.weight"] == a["lm_head.weight"]).all()
    facts = json.loads((tmp_path / "mix" / "training.json").read_text())
    assert facts["train_config"]["seed"] == 5 and facts["averaged_with"]["weight_of_this_run"] == 0.25
    assert facts["averaged_with"]["train_config"]["seed"] != 5
    assert (tmp_path / "mix" / "tokenizer.model").read_bytes() == (second / "tokenizer.model").read_bytes()
    with pytest.raises(ConfigError, match="between 0 and 1"):
        average(first, second, 1.0, tmp_path / "bad")
    with pytest.raises(ConfigError, match="not an exported model folder"):
        average(first, tmp_path / "b", 0.5, tmp_path / "bad")
    hand_made = tmp_path / "hand"  # weights and facts copied by hand, without the config and tokenizer
    hand_made.mkdir()
    for name in ("model.safetensors", "training.json"):
        shutil.copy(second / name, hand_made / name)
    with pytest.raises(ConfigError, match="lacks config.json, tokenizer.model, composite.json"):
        average(first, hand_made, 0.5, tmp_path / "bad")
    _train(tmp_path / "c", "--hidden", "48")
    with pytest.raises(ConfigError, match="differ in shape"):
        average(first, export(tmp_path / "c", tmp_path / "C"), 0.5, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing written on a refused average


def test_fine_tuning_from_a_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    from composite.embedded.train import TrainConfig, train

    with pytest.raises(ConfigError, match="init_from"):
        train(tmp_path / "w", TrainConfig(init_from=str(tmp_path / "nope.pt"), device="cpu"), progress=False)


def test_training_device_names_are_checked() -> None:
    import torch

    from composite.embedded.train import resolve_device

    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="expected auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


FAMILIES = [
    ("weather_en", data.WEATHER_Q_EN, 2), ("weather_zh", data.WEATHER_Q_ZH, 1), ("time_en", data.TIME_Q_EN, 1),
    ("time_zh", data.TIME_Q_ZH, 1), ("calc_en", data.CALC_Q_EN, 1), ("calc_zh", data.CALC_Q_ZH, 1),
    ("rand_en", data.RAND_Q_EN, 1), ("rand_zh", data.RAND_Q_ZH, 1), ("arith_en", data.ARITH_Q_EN, 1),
    ("arith_zh", data.ARITH_Q_ZH, 1), ("stats_en", data.STATS_Q_EN, 1), ("stats_zh", data.STATS_Q_ZH, 1),
]


@pytest.mark.parametrize("index", range(len(FAMILIES)))
def test_training_never_asks_with_a_held_out_phrasing(index: int) -> None:
    family, templates, heldout = FAMILIES[index]
    held = templates[-heldout:]
    extra = data.extra_forms(family)
    rng = random.Random(index)
    seen = {data.pick(rng, "train", templates, heldout, extra) for _ in range(3000)}
    assert not any(h in s for s in seen for h in held)  # not even wrapped in an opener or a closer
    assert len(seen) > len(templates)  # the composed forms are used
    eval_rng = random.Random(index)
    assert {data.pick(eval_rng, "eval", templates, heldout, extra) for _ in range(200)} == set(held)


def test_string_questions_never_use_their_held_out_phrasing() -> None:
    rng = random.Random(4)
    held = {t.split("{")[0] for t in data.STR_Q_HELDOUT.values()}
    for _ in range(2000):
        question = data.ex_string(rng, "train").messages[0].content
        assert not any(question.startswith(h) or (" " + h) in question for h in held)


def test_the_interpreters_string_forms_are_no_near_copy_of_a_held_out_phrasing() -> None:
    from composite.embedded import skills

    def plain(form: str) -> str:  # as a reader compares them: case, quotes and punctuation do not count
        return re.sub(r"""['"“”‘’?.,:!]""", " ", form.lower())

    for op, (english, _, _) in skills.STR_OPS.items():
        if op in data.STR_Q_HELDOUT:
            forms = [plain(f) for f in english]
            assert phrasing.far_from(forms, [plain(data.STR_Q_HELDOUT[op])], zh=False) == forms, op


def test_near_copies_of_held_out_phrasings_are_dropped() -> None:
    held = ["With seed {s}, roll a number from {a} to {b}."]
    forms = ["With seed {s}, pick a number from {a} to {b}.",  # one word swapped: a near copy
             "With seed {s}, roll a number from {a} to {b}",  # only the full stop differs
             "Using seed {s}, pick a number from {a} to {b}.",  # two words apart: kept
             "Roll a number between {a} and {b}, seed {s}."]
    assert phrasing.far_from(forms, held, zh=False) == forms[2:]
    zh_held = ["请告诉我{c}的天气情况。"]
    assert phrasing.far_from(["请告诉我{c}的天气。", "帮我查一下{c}的天气"], zh_held, zh=True) == ["帮我查一下{c}的天气"]
    assert all(f != "Give me the weather report for {c}." for f in data.extra_forms("weather_en"))


def test_composed_phrasings_format_with_their_fields() -> None:
    fields = {"c": "Zubq", "z": "Asia/Tokyo", "e": "3 + 4", "a": 1, "b": 9, "s": 5, "l": "[1, 2]", "w": "abc"}
    for family, _, _ in FAMILIES:
        for template in data.extra_forms(family):
            text = template.format(**fields)
            assert "{" not in text and "}" not in text
    for forms in phrasing.STRING_EN.values():
        for template in forms:
            assert "'abc'" in template.format(**fields)


def test_tool_conversations_under_other_prompts_always_list_the_tools_they_call() -> None:
    """Training under another system prompt / tool list (an MCP server's, a caller's): every call made is to a
    listed tool, and the variety is real (other prompts, subsets, other orders)."""
    from composite.prompts import SYSTEM_PROMPTS

    rng = random.Random(5)
    full = [s["name"] for s in data.tool_schemas()]
    systems, lists = set(), set()
    for _ in range(60):
        conv = data.sample_varied_tool_conversation(rng)
        listed = [s["name"] for s in conv.tools]
        assert conv.mode == "tool" and conv.messages()[0].content == conv.system
        for ex in conv.exchanges:
            if ex.kind == "tool":
                assert ex.tool in listed, (ex.tool, listed)
        systems.add(conv.system)
        lists.add(tuple(listed))
    assert SYSTEM_PROMPTS["tool"] in systems and len(systems) >= 6
    assert any(len(names) < len(full) for names in lists) and any(list(names) != full and len(names) == len(full) for names in lists)


def test_contrast_conversations_ask_other_operations_of_the_same_data() -> None:
    """Each conversation reuses one list, string, pair of numbers, written-out expression's numbers, x range or
    uploaded file; the operations (so the code and the results) all differ."""
    from composite.embedded.newcomer import near_newcomer

    rng = random.Random(11)
    kinds: set[str] = set()
    for _ in range(120):
        conv = data.sample_contrast_conversation(rng)
        assert conv.mode == "code" and 2 <= len(conv.exchanges) <= 4
        codes = [ex.messages[1].content for ex in conv.exchanges]
        plain = [code for code in codes if "data = " not in code and '"' not in code]  # arithmetic: print(a op b)
        arithmetic = bool(plain) and plain[0] == codes[0] and len(plain) == len(codes) - 1  # then one statistic
        # another operation each time (the arithmetic asks may repeat an operator in other words)
        assert len(set(codes)) == len(codes) or arithmetic and codes[-1] not in codes[:-1]
        if "np.linspace" in codes[0]:  # function plots: the same range, other functions
            kind, shared = "plot", [set(re.findall(r"np\.linspace\([^)]*\)", code)) for code in codes]
            assert len({re.search(r"plt\.plot\(x, (.*)\)", code).group(1) for code in codes}) == len(codes)
        elif "read_csv" in codes[0]:  # one uploaded file, asked other things
            kind, shared = "csv", [set(re.findall(r"read_csv\([^)]*\)", code)) for code in codes]
        elif arithmetic and (len(codes) > 2 or not re.search(r"\d[+*/%-]|[+*/%-] ?\d+ ?[+*/%-]", codes[0])):
            kind, shared = "numbers", [set(re.findall(r"\d+", code)) for code in codes]
            assert "data = [" in codes[-1] and all("data" not in code for code in codes[:-1])
        elif len(plain) == 1:  # a Chinese written-out expression, and statistics of exactly its numbers
            kind = "expression"
            question = conv.exchanges[codes.index(plain[0])].messages[0].content
            numbers = re.findall(r"\d+(?:\.\d+)?", plain[0])
            assert re.search(r"[\u4e00-\u9fff]", question) and all(n in question for n in numbers), question
            written = [str(float(n)) if "." in n else n for n in numbers]  # "9.10" is listed as 9.1
            shared = [{", ".join(written)} if code == plain[0] else set(re.findall(r"data = \[([^\]]*)\]", code))
                      for code in codes]
        else:  # the list (data = [...]) or the string (a string literal)
            kind = "list or string"
            shared = [set(re.findall(r"data = \[[^\]]*\]", code)) | set(re.findall(r'"(?:[^"\\]|\\.)+"', code))
                      for code in codes]
        assert set.intersection(*shared) - {'"aeiouAEIOU"'}, codes
        assert not any(near_newcomer(ex.messages[0].content, []) for ex in conv.exchanges)
        kinds.add(kind)
    assert kinds == {"plot", "csv", "numbers", "expression", "list or string"}


def test_a_deeper_model_grown_from_a_checkpoint_starts_as_the_same_function(tmp_path: Path) -> None:
    import torch
    from transformers import GlmForCausalLM

    from composite.embedded.train import TrainConfig, grow_layers, model_config
    from composite.tokenizer import ChatGLMTokenizer

    tok = ChatGLMTokenizer(MODEL_DIR / "tokenizer.model")
    small = TrainConfig(hidden=32, layers=2, heads=2, kv_heads=1, intermediate=64)
    torch.manual_seed(0)
    source = GlmForCausalLM(model_config(tok, small)).eval()
    for deeper in (3, 4):
        grown = GlmForCausalLM(model_config(tok, TrainConfig(**{**small.__dict__, "layers": deeper}))).eval()
        grown.load_state_dict(grow_layers(source.state_dict(), grown.state_dict()))
        ids = torch.randint(3, 1000, (1, 40))
        with torch.no_grad():
            assert torch.allclose(source(ids).logits, grown(ids).logits, atol=1e-5)
        # the new layers are not copies: their attention and MLP inputs are fresh weights
        names = {n.split(".")[2] for n in grown.state_dict() if n.startswith("model.layers.")}
        assert len(names) == deeper


def test_a_model_can_only_grow_in_depth(tmp_path: Path) -> None:
    from transformers import GlmForCausalLM

    from composite.embedded.train import TrainConfig, grow_layers, model_config
    from composite.tokenizer import ChatGLMTokenizer

    tok = ChatGLMTokenizer(MODEL_DIR / "tokenizer.model")
    base = TrainConfig(hidden=32, layers=2, heads=2, kv_heads=1, intermediate=64)
    two = GlmForCausalLM(model_config(tok, base)).state_dict()
    one = GlmForCausalLM(model_config(tok, TrainConfig(**{**base.__dict__, "layers": 1}))).state_dict()
    wide = GlmForCausalLM(model_config(tok, TrainConfig(**{**base.__dict__, "layers": 3, "hidden": 64,
                                                             "heads": 4}))).state_dict()
    with pytest.raises(ConfigError, match="can only grow"):
        grow_layers(two, one)
    with pytest.raises(ConfigError, match="only the number of layers can grow"):
        grow_layers(two, wide)


def test_fine_tuning_can_grow_the_model(tmp_path: Path) -> None:
    import torch

    _train(tmp_path / "base")
    log = _train(tmp_path / "deep", "--init-from", str(tmp_path / "base" / "checkpoint.pt"), "--layers", "2")
    state = torch.load(tmp_path / "deep" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["config"]["layers"] == 2 and state["stages"][0]["config"]["layers"] == 1
    assert "model.layers.1.mlp.down_proj.weight" in state["model"]
    assert log[0]["loss"] > 0


def test_a_training_csv_preview_shows_what_pandas_prints_for_that_table(tmp_path: Path) -> None:
    """The observation after `print(df.shape); print(df.head())` in training is pandas' real output for a
    real CSV of those rows (an earlier home-made layout did not match what the sandbox returns)."""
    import pandas as pd

    from composite.embedded import skills

    rng = random.Random(11)
    for i in range(25):
        cols = rng.sample(data.CSV_COLUMNS + ["zorb", "flim"], rng.randint(2, 5))
        rows = rng.randint(3, 3000)
        head, shown = skills.preview_table(rng, "train", cols, rows)
        path = tmp_path / f"t{i}.csv"
        pd.DataFrame(head, columns=cols).to_csv(path, index=False)
        df = pd.read_csv(path)
        first, rest = shown.split("\n", 1)
        assert first == f"({rows}, {len(cols)})"
        assert rest == str(df.head())


def test_training_asks_about_a_csv_as_the_code_page_does_after_an_upload() -> None:
    from composite.embedded import skills
    from composite.prompts import with_uploads

    rng = random.Random(12)
    exchanges = [skills.ex_csv_any(rng, "train") for _ in range(300)]
    asked = [ex.messages[0].content for ex in exchanges]
    noted = [q for q in asked if "(Uploaded files in the working directory: " in q]
    assert 0.15 < len(noted) / len(asked) < 0.45
    # a file the note says was uploaded is never missing in the sandbox
    missing = [ex.messages[0].content for ex in exchanges if "FileNotFoundError" in ex.messages[2].content]
    assert missing and not set(missing) & set(noted)
    for q in noted:
        name = re.search(r"working directory: (\S+)\)$", q).group(1)
        assert q == with_uploads(q.split("\n\n(Uploaded", 1)[0], [name]) and name.endswith(".csv")


def test_shared_digit_random_requests_keep_seed_and_range_apart() -> None:
    """The seed and both bounds start with the same two digits; the call takes each from its own place."""
    from composite.embedded import skills

    rng = random.Random(5)
    for _ in range(60):
        ex = skills.ex_random_shared_digits(rng, "train")
        seed, (lo, hi) = ex.args["seed"], ex.args["range"]
        assert len({str(seed)[:2], str(lo)[:2], str(hi)[:2]}) == 1
        assert lo < hi and not any(data.is_heldout_number(n) for n in (seed, lo, hi))
        question = ex.messages[0].content
        numbers = [int(n) for n in re.findall(r"\d+", question)]
        assert sorted(numbers) == sorted([seed, lo, hi])  # each one asked once, nothing else
        assert f"seed={seed}, range=({lo}, {hi})" in ex.messages[1].content
