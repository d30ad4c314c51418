"""`python -m composite export-hf DST`: a ChatGLM3-dialect model as a standard Hugging Face folder that
third-party engines serve (`transformers serve DST`, vLLM): native weights, a `tokenizers` tokenizer
that `AutoTokenizer` loads without remote code, a chat template and ChatGLM3's stop ids.

The tokenizer is converted from the sentencepiece model and checked against ours before it is saved:
each text segment (between special tokens) is encoded as the ChatGLM3 dialect encodes a message,
its first line (metadata + newline) apart from the rest. Known difference: special-token text typed
by a user (`<|user|>`) becomes the special token there, as in every chat-template engine.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, TextIO

from ..errors import ModelLoadError

__all__ = ["export_hf", "build_fast_tokenizer", "chat_template", "check_tokenizer"]

# sentencepiece gives a user-defined symbol this score per character so that Viterbi always picks it
# (unigram_model.cc); the same score in a `tokenizers` Unigram reproduces that choice.
_USER_DEFINED = 4
_CONTROL = 3
_BYTE = 6

# The ChatGLM3 format as a Jinja chat template: tools (OpenAI or ChatGLM3 shape) appended to the first
# system message; a `python` tool is the model's own interpreter (not listed, its calls are
# `interpreter` turns); tool calls re-rendered as `NAME\n```python\ntool_call(k=v)\n```` with Python
# literals; `tool` messages are observations.
_TEMPLATE = r"""{%- macro pyval(v) -%}
{%- if v is boolean -%}{{ 'True' if v else 'False' }}
{%- elif v is none -%}None
{%- elif v is string -%}{{ v | tojson }}
{%- elif v is number -%}{{ v }}
{%- elif v is mapping -%}{{ '{' }}{%- for k, x in v.items() -%}{{ pyval(k) }}: {{ pyval(x) }}{{ ', ' if not loop.last }}{%- endfor -%}{{ '}' }}
{%- elif v is iterable -%}({%- for x in v -%}{{ pyval(x) }}{{ ', ' if not loop.last }}{%- endfor -%}{{ ',' if v | length == 1 }})
{%- else -%}{{ v }}
{%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(tools=[], system_done=false) -%}
{%- for t in (tools or []) -%}
{%- set f = t.function if t.function is defined else t -%}
{%- if f.name != 'python' -%}
{%- set ns.tools = ns.tools + [{'name': f.name, 'description': f.description | default(''), 'parameters': f.parameters | default({'type': 'object', 'properties': {}})}] -%}
{%- endif -%}
{%- endfor -%}
{%- set tools_json = (ns.tools | tojson(ensure_ascii=False__INDENT__)) if ns.tools else '' -%}
[gMASK]sop
{%- if ns.tools and (messages | length == 0 or messages[0].role != 'system') -%}
<|system|>
{{ tools_json }}
{%- endif -%}
{%- for m in messages -%}
{%- set content = m.content if m.content is string else (m.content | map(attribute='text') | join('') if m.content else '') -%}
{%- if m.role == 'system' -%}
<|system|>
{{ content }}{{ ('\n' + tools_json) if (loop.first and ns.tools) else '' }}
{%- elif m.role == 'user' -%}
<|user|>
{{ content }}
{%- elif m.role == 'assistant' and m.tool_calls -%}
{%- if content -%}<|assistant|>
{{ content }}{%- endif -%}
{%- for c in m.tool_calls -%}
{%- set f = c.function if c.function is defined else c -%}
{%- set args = f.arguments if f.arguments is mapping else {} -%}
{%- if f.name == 'python' and args.code is defined -%}
<|assistant|>interpreter
```python
{{ args.code }}
```
{%- else -%}
<|assistant|>{{ f.name }}
```python
tool_call({%- for k, v in args.items() -%}{{ k }}={{ pyval(v) }}{{ ', ' if not loop.last }}{%- endfor -%})
```
{%- endif -%}
{%- endfor -%}
{%- elif m.role == 'assistant' -%}
<|assistant|>{{ m.metadata | default('') }}
{{ content }}
{%- elif m.role == 'tool' or m.role == 'observation' -%}
<|observation|>
{{ content }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"""


def chat_template(tools_indent: int | None) -> str:
    """The Jinja template; `tools_indent` as the model was trained (None: compact JSON)."""
    indent = ", separators=(',', ':')" if tools_indent is None else f", indent={int(tools_indent)}"
    return _TEMPLATE.replace("__INDENT__", indent)


def build_fast_tokenizer(model_file: str | Path, chat_template_text: str | None = None):
    """A `PreTrainedTokenizerFast` equivalent to ChatGLMTokenizer (Unigram, byte fallback, the nine
    ChatGLM3 special tokens at the same ids)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ..tokenizer import SPECIAL_TOKENS

    proto = pb.ModelProto()
    proto.ParseFromString(Path(model_file).read_bytes())
    if proto.trainer_spec.model_type != 1:
        raise ModelLoadError(f"{model_file}: only unigram sentencepiece tokenizers convert so far (this one is "
                             f"type {proto.trainer_spec.model_type}); serve such a model with an engine that "
                             "loads its original tokenizer")
    if proto.normalizer_spec.precompiled_charsmap or proto.normalizer_spec.add_dummy_prefix:
        raise ModelLoadError(f"{model_file}: a normalizing or dummy-prefix sentencepiece model is not supported; "
                             "expected identity normalization without a dummy prefix (the embedded model's)")
    max_score = max((p.score for p in proto.pieces), default=0.0)
    vocab = []
    for piece in proto.pieces:
        score = piece.score
        if piece.type == _USER_DEFINED:
            score = len(piece.piece) * max_score - 0.1
        elif piece.type in (_CONTROL, _BYTE):
            score = -1e9  # never matched in text (bytes are the fallback for unknown characters only)
        vocab.append((piece.piece, score))
    tok = Tokenizer(models.Unigram(vocab, unk_id=proto.trainer_spec.unk_id, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    # the first line of each segment (a message's metadata and its newline) is encoded on its own
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\A[^\n]*\n"), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    # "sop"/"eop" are words: only whole ones are the special tokens (not the letters inside "isopropyl")
    tok.add_special_tokens([AddedToken(name, special=True, normalized=False, single_word=name in ("sop", "eop"))
                            for name in SPECIAL_TOKENS])
    pieces = [p.piece for p in proto.pieces]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=pieces[2] if len(pieces) > 2 else "</s>",
        unk_token=pieces[proto.trainer_spec.unk_id],
        pad_token=pieces[proto.trainer_spec.unk_id],
        chat_template=chat_template_text,
        clean_up_tokenization_spaces=False,
    )
    return fast


def check_tokenizer(fast: Any, ours: Any, texts: list[str]) -> list[str]:
    """Texts whose ids differ between the fast tokenizer and the dialect's encoding (empty: equal)."""
    bad = []
    for text in texts:
        head, newline, rest = text.partition("\n")
        expected = ours.encode(head + newline) + ours.encode(rest) if newline else ours.encode(text)
        if list(fast.encode(text, add_special_tokens=False)) != expected or fast.decode(expected) != text:
            bad.append(text)
    return bad


GENERIC_CHECK_TEXTS = [
    "", " ", "\n", "a\n\nb", "tabs\tand\r\nCRLF", "Hello, world! 12345 + 678 = 13023",
    "天气怎么样？北京 上海 成都", "tool_call(city=\"São Paulo\", n=3.5)", "```python\nprint(1)\n```",
    "emoji 😀 and accents: Reykjavík, Zürich", "x" * 500,
]


def export_hf(
    src: str | Path | None,
    dst: str | Path,
    force: bool = False,
    log: TextIO | None = None,
    check_texts: list[str] | None = None,
) -> Path:
    """Write the model at `src` (None: the embedded model) as a Hugging Face folder at `dst`.

    The converted tokenizer must encode `GENERIC_CHECK_TEXTS` and `check_texts` (the CLI passes the
    embedded generator's conversations) exactly as ours does, or nothing is written."""
    from ..tokenizer import ChatGLMTokenizer
    from .local import EMBEDDED_MODEL_DIR

    source = Path(src).expanduser() if src else EMBEDDED_MODEL_DIR
    target = Path(dst).expanduser()
    if target.exists() and any(target.iterdir()) and not force:
        raise ModelLoadError(f"{target} exists and is not empty; choose a new folder or pass --force")
    marker_file = source / "composite.json"
    config_file = source / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{source} has no config.json; expected a model folder")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    original = config.get("model_type") == "chatglm"
    if original:
        marker = {"dialect": "chatglm3", "tools_indent": 4, "max_length": config.get("seq_length") or 8192}
    elif marker_file.is_file():
        marker = json.loads(marker_file.read_text(encoding="utf-8"))
        if marker.get("dialect") != "chatglm3":
            raise ModelLoadError(f"{source} is not a ChatGLM3-dialect model; a chat-template model is a Hugging "
                                 "Face folder already")
    else:
        raise ModelLoadError(f"{source} is neither the embedded layout (composite.json) nor a ChatGLM3 checkpoint")
    # the tokenizer first: a model whose tokenizer cannot convert is refused before any weights are written
    model_file = source / "tokenizer.model"
    ours = ChatGLMTokenizer(model_file)
    fast = build_fast_tokenizer(model_file, chat_template(marker.get("tools_indent", 4)))
    bad = check_tokenizer(fast, ours, GENERIC_CHECK_TEXTS + list(check_texts or []))
    if bad:
        raise ModelLoadError(f"the converted tokenizer differs from the model's on {len(bad)} sample text(s), "
                             f"e.g. {bad[0][:80]!r}; not exporting a tokenizer that would change the ids")
    target.mkdir(parents=True, exist_ok=True)
    if original:  # original ChatGLM3 layout: its weights converted to the native GLM layout
        from .chatglm3_checkpoint import convert_chatglm3

        convert_chatglm3(source, target, overwrite=True)
    else:
        for item in source.iterdir():
            if item.name == "config.json" or item.suffix == ".safetensors" or item.name.endswith(".index.json"):
                shutil.copy2(item, target / item.name)
    fast.save_pretrained(target)
    stops = sorted({ours.eos_id, ours["<|user|>"], ours["<|observation|>"]})  # ChatGLM3Dialect.stop_ids
    config = json.loads((target / "config.json").read_text(encoding="utf-8"))
    config["eos_token_id"] = stops
    context = int(marker.get("max_length") or config.get("max_position_embeddings") or 8192)
    config["max_position_embeddings"] = max(int(config.get("max_position_embeddings") or 0), context)
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    generation = {"eos_token_id": stops, "pad_token_id": ours.pad_id, "do_sample": True, "temperature": 0.8,
                  "top_p": 0.8, "max_length": context}
    (target / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    if log is not None:
        log.write(f"tokenizer checked on the model's sample conversations; stop ids {stops}\n")
    return target
