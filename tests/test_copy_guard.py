"""The copy guard (composite/backends/copy_guard.py): quotations in calls and code stay true to the user's words,
and everything else is left to the model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from composite.backends.copy_guard import CopyGuard, PieceTable, token_pieces
from composite.backends.local import copy_guard_ratio
from composite.embedded import MODEL_DIR
from composite.errors import ConfigError
from composite.messages import Message, SamplingParams
from composite.tokenizer import ChatGLMTokenizer

TOK = ChatGLMTokenizer(MODEL_DIR / "tokenizer.model")
PIECES = token_pieces(TOK, TOK.vocab_size)
TABLE = PieceTable(PIECES)


def _guard(source: str | list[str], written: str, ratio: float = 0.05, openers: list[str] | None = None) -> CopyGuard:
    """A guard over `source` (one message or several) that has seen the model write `written`."""
    guard = CopyGuard(TABLE, [source] if isinstance(source, str) else source, ratio, openers=openers)
    for token in TOK.encode(written):
        guard.feed(token)
    return guard


def _id(piece: str) -> int:
    """The token id whose piece is exactly `piece` (a leading space written as a space)."""
    wanted = piece.encode()
    return next(i for i, p in enumerate(PIECES) if p == wanted)


def _logits(prefs: dict[int, float]) -> np.ndarray:
    out = np.full(len(PIECES), -10.0, dtype=np.float32)
    for token, value in prefs.items():
        out[token] = value
    return out


def _choice(guard: CopyGuard, prefs: dict[int, float]) -> int:
    return int(np.argmax(guard.apply(_logits(prefs), np.full_like)))


CODE = 'interpreter\n```python\nprint("'


def test_a_slip_while_copying_is_replaced_by_the_close_continuation() -> None:
    guard = _guard("spell 'stressed' in reverse order please", CODE + "stresse")
    r, d = _id("r"), _id("d")
    # the model slightly prefers the slip: "stresser"; "stressed" is close behind
    assert _choice(guard, {r: 2.0, d: 1.0}) == d
    assert guard.steered == 1


def test_a_confident_choice_that_leaves_the_words_is_kept() -> None:
    guard = _guard("how's the weather in Reykjavik tonight", 'get_weather\n```python\ntool_call(city_name="Reykja')
    # unquoted words: the guard only breaks near-ties; a continuation 1e-5 times as likely loses
    v, other = _id("v"), _id("x")
    assert _choice(guard, {other: 5.0, v: 5.0 + math.log(1e-5)}) == other
    assert guard.steered == 0


def test_words_the_user_quoted_are_copied_to_their_end() -> None:
    guard = _guard('"hello there" but backwards pls', CODE + "hello")
    space, for_ = _id(" "), _id(" for")
    closing = _id('"')
    # the model would write "hello for" or stop at "hello": quoted words are finished, however unlikely
    assert _choice(guard, {for_: 8.0, closing: 7.0, space: -5.0}) == space


def test_a_quotation_may_not_stop_inside_a_word() -> None:
    guard = _guard("need the Montreal weather", 'get_weather\n```python\ntool_call(city_name="Montr')
    closing = _id('"')
    e = _id("e")
    assert _choice(guard, {closing: 3.0, e: 2.0}) == e
    allowed, _, _ = guard.allowed()
    assert closing not in allowed


def test_a_quotation_may_stop_at_the_end_of_a_word() -> None:
    guard = _guard("how's the weather in Reykjavik tonight", 'get_weather\n```python\ntool_call(city_name="Reykjavik')
    allowed, strict, _ = guard.allowed()
    closing = _id('"')
    assert closing in allowed and not strict


def test_a_latin_name_may_end_where_chinese_text_begins() -> None:
    guard = _guard("请告诉我Zoj的天气情况。", 'get_weather\n```python\ntool_call(city_name="Zoj')
    closing = _id('"')
    assert closing in guard.allowed()[0]
    accented = _guard("how cold is Zürich now", 'get_weather\n```python\ntool_call(city_name="Z')
    assert closing not in accented.allowed()[0]  # "Z|ürich": the same word goes on


def test_a_file_name_is_not_cut_at_its_dot() -> None:
    guard = _guard("How many rows are in sales.csv?", 'interpreter\n```python\ndf = pd.read_csv("sales')
    closing = _id('"')
    assert closing not in guard.allowed()[0]


def test_chinese_names_are_copied_byte_by_byte() -> None:
    guard = _guard("乌鲁木齐早上气温低吗", 'get_weather\n```python\ntool_call(city_name="乌鲁')
    allowed, _, sure = guard.allowed()
    nxt = "木".encode()
    assert sure
    assert all(PIECES[i] and nxt.startswith(PIECES[i]) or b'"' in PIECES[i] for i in allowed)


def test_expressions_without_letters_are_the_models_own() -> None:
    # "3.5" is in the user's words, but "3.5 * 2.4" is not a quotation: no guard at all
    guard = _guard("multiply 3.5 by 2.4", 'calculator\n```python\ntool_call(expression="3.5')
    assert guard.allowed() is None


def test_made_up_text_is_left_alone() -> None:
    guard = _guard("plot y = x squared", 'interpreter\n```python\nplt.title("Sq')
    assert guard.allowed() is None


def test_a_literal_begins_the_words_the_user_quoted_when_they_are_close() -> None:
    guard = _guard("'python' 全部变成大写字母", CODE, openers=["'python' 全部变成大写字母"])
    g, p = _id("g"), _id("p")
    # 'python' is 20-400 times less likely than "g": within the ratio squared, the quoted words win
    assert _choice(guard, {g: 2.0, p: 2.0 + math.log(0.01)}) == p
    assert guard.steered == 1


def test_a_confident_literal_of_other_words_is_kept() -> None:
    guard = _guard("plot 'sales' over time", 'interpreter\n```python\nplt.plot(x, y, marker="')
    o, s = _id("o"), _id("s")
    assert _choice(guard, {o: 5.0, s: 5.0 + math.log(1e-4)}) == o
    assert guard.steered == 0


def test_only_the_users_quotes_open_a_literal() -> None:
    # a quoted value in an observation ({"city": "Paris"}) is a source to copy from, not words the user marked
    guard = _guard(["weather pls", '{"city": "Paris"}'], CODE, openers=["weather pls"])
    assert guard.allowed() is None


def test_a_list_that_copies_the_users_numbers_goes_on_with_the_next_one() -> None:
    guard = _guard("make a histogram for these ages: 23 25 31 35 35 40", 'interpreter\n```python\ndata = [23, 25, 31, 3')
    one, five = _id("1"), _id("5")
    # the model would repeat 31; the user's next number is 35
    assert _choice(guard, {one: 2.0, five: 1.0}) == five
    assert guard.steered == 1


def test_a_copied_list_may_close_after_any_of_the_users_numbers() -> None:
    # x's numbers run straight into y's in the user's words: the list still closes where the model wants
    guard = _guard("scatter x = 1, 2, 3 and y = 5, 3, 4", 'interpreter\n```python\nx = [1, 2, 3')
    close = _id("]\n")
    comma = _id(",")
    assert close in guard.allowed()[0]
    assert _choice(guard, {close: 2.0, comma: 1.9}) == close


def test_a_list_of_the_models_own_numbers_is_left_alone() -> None:
    guard = _guard("plot the points 7 9 11", 'interpreter\n```python\nx = [0, 1, ')
    assert guard.allowed() is None


def test_a_list_of_the_users_labelled_words_goes_on_to_the_next_one() -> None:
    source = "Make a bar chart of apples 3, pears 5, plums 2"
    guard = _guard(source, 'interpreter\n```python\nlabels = ["apples", "pears"')
    close = _id("]\n")
    comma = _id(",")
    # the model would drop plums: " 5, " follows pears as " 3, " follows apples, so the list goes on
    assert _choice(guard, {close: 2.0, comma: 1.6}) == comma
    assert _guard(source, 'interpreter\n```python\nlabels = ["apples", "pears", "plums"').allowed() is None


def test_a_message_full_of_numbers_keeps_the_lists_work_bounded() -> None:
    from composite.backends import copy_guard

    source = "mean of " + " ".join(str(n) for n in range(5000))
    guard = _guard(source, "interpreter\n```python\ndata = [" + ", ".join(str(n) for n in range(3000)) + ", 300")
    assert len(guard.numbers[0]) == copy_guard._MAX_NUMBERS  # only the first numbers are kept
    # the list is placed by its last few numbers: ..., 2999, 300 goes on to 3000 only if 3000 was kept
    assert guard.allowed() is None


def test_words_with_bare_spaces_between_them_are_not_a_labelled_list() -> None:
    guard = _guard("sort these words: kiwi fig date plum", 'interpreter\n```python\nwords = ["kiwi", "fig"')
    assert guard.allowed() is None


@pytest.mark.parametrize("written", [
    "Sure, I will reverse 'stresse",  # prose, no code block
    'interpreter\n```python\n# reverse "stresse',  # a comment
    'interpreter\n```python\nprint("stressed")\n```\nThe answer is "stresse',  # after the block closed
    'interpreter\n```python\ns = """stresse',  # a triple-quoted string is prose
    'interpreter\n```python\nprint("stresse\\',  # an escape: the guard does not model escapes
])
def test_only_one_line_literals_inside_code_are_guarded(written: str) -> None:
    assert _guard("spell 'stressed' in reverse order", written).allowed() is None


def test_a_special_token_ends_the_open_quotation() -> None:
    guard = _guard("spell 'stressed' in reverse", CODE + "stresse")
    assert guard.allowed() is not None
    guard.feed(TOK["<|assistant|>"])
    assert guard.allowed() is None


def test_observations_are_sources_too() -> None:
    guard = _guard(["what is the mean revenue", "   region  revenue_usd\n0  north  12.5"],
                   'interpreter\n```python\nprint(df["revenue_u')
    assert guard.allowed() is not None


def test_no_quotation_runs_from_one_message_into_the_next() -> None:
    guard = _guard(["reverse abc", "def"], CODE + "abc")
    allowed, _, _ = guard.allowed()
    assert all(b"d" not in (PIECES[i] or b"") for i in allowed)


def test_the_ratio_is_checked() -> None:
    with pytest.raises(ConfigError, match="expected 0 < ratio <= 1"):
        CopyGuard(TABLE, ["x"], 0.0)
    assert copy_guard_ratio({"copy_guard": 0.05}) == 0.05
    assert copy_guard_ratio({}) == 0.0
    with pytest.raises(ConfigError, match="between 0 \\(off\\) and 1"):
        copy_guard_ratio({"copy_guard": "lots"})


def test_the_evals_ratio_is_checked() -> None:
    from composite.embedded.evaluate import load

    with pytest.raises(ConfigError, match="--copy-guard.*between 0 \\(off\\) and 1"):
        load(MODEL_DIR, copy_guard=2.0)
    assert load(MODEL_DIR, copy_guard=0.0).guard_for([Message("user", "hi")]) is None


def test_the_environment_overrides_the_models_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPOSITE_COPY_GUARD", "0")
    assert copy_guard_ratio({"copy_guard": 0.05}) == 0.0
    monkeypatch.setenv("COMPOSITE_COPY_GUARD", "2")
    with pytest.raises(ConfigError, match="COMPOSITE_COPY_GUARD"):
        copy_guard_ratio({})


# -- in the runtime's decode loop --------------------------------------------------------------------------


class _ScriptedEngine:
    """A stand-in for NumpyGlm whose logits prefer, at each step, the next token of a script, with
    an optional runner-up: enough to see the guard act inside the real generation loop."""

    def __init__(self, script: list[tuple[int, int | None]]):
        import numpy

        self.np = numpy
        self.vocab_size = len(PIECES)
        self.script = script
        self.step = 0
        self.parameters = 0

    def new_cache(self):
        return _Cache()

    def forward(self, ids, cache):
        cache.n += len(ids)
        top, second = self.script[min(self.step, len(self.script) - 1)]
        self.step += 1
        prefs = {top: 3.0}
        if second is not None:
            prefs[second] = 2.0
        return _logits(prefs)


class _Cache:
    def __init__(self) -> None:
        self.n = 0

    def get_seq_length(self) -> int:
        return self.n

    def crop(self, n: int) -> None:
        self.n = n

    nbytes = 0


def _runtime(engine: _ScriptedEngine, ratio: float):
    from composite.backends.base import ModelInfo
    from composite.backends.numpy_glm import NumpyRuntime
    from composite.backends.prefix_cache import PrefixCache
    from composite.dialect import ChatGLM3Dialect

    info = ModelInfo(name="scripted", path="", device="cpu", dtype="float32", parameters=0, context_length=2048,
                     dialect="chatglm3")
    runtime = NumpyRuntime(engine, ChatGLM3Dialect(TOK, tools_indent=None), info, PrefixCache(max_entries=0))
    runtime.copy_guard = ratio
    return runtime


@pytest.mark.parametrize("ratio, expected", [(0.05, 'print("stressed"[::-1])'), (0.0, 'print("stresser"[::-1])')])
def test_the_runtime_applies_the_guard_it_was_loaded_with(ratio: float, expected: str) -> None:
    head = TOK.encode('interpreter\n```python\nprint("stresse')
    tail = TOK.encode('"[::-1])\n```')
    script = [(t, None) for t in head] + [(_id("r"), _id("d"))] + [(t, None) for t in tail]
    script.append((TOK["<|observation|>"], None))
    runtime = _runtime(_ScriptedEngine(script), ratio)
    messages = [Message("system", "code"), Message("user", "spell 'stressed' in reverse order")]
    events = list(runtime.stream_turn(messages, None, SamplingParams(temperature=0, max_new_tokens=len(script) + 2)))
    turn = events[-1].turns[0]
    assert turn.code.strip() == expected
