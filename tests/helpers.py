"""Test doubles shared by several test files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from composite.dialect import parse_chatglm3_turn
from composite.events import TextDelta, TurnEnd
from composite.messages import Message


@dataclass
class ScriptedBackend:
    """Replays fixed assistant turns ("metadata\\ncontent") and records what it was shown."""

    script: list[str]
    seen: list[list[Message]] = field(default_factory=list)
    seen_tools: list[Any] = field(default_factory=list)

    def stream_turn(self, messages, tools, params, stop=None):
        self.seen.append(list(messages))
        self.seen_tools.append(tools)
        text = self.script.pop(0)
        for i in range(0, len(text), 4):
            if stop is not None and stop.is_set():
                yield TurnEnd([parse_chatglm3_turn(text[:i])], "cancelled")
                return
            yield TextDelta(text[i : i + 4])
        yield TurnEnd([parse_chatglm3_turn(text)], "stop", 10, len(text))


def short_greedy(at: Any, mode: str, max_new: int) -> Any:
    """Set a page's sampling to short, greedy answers and rerun it (an AppTest). Sampled answers of the random
    tiny model are empty now and then (1.5 % at temperature 0.8), which would make a turn's assertions flaky."""
    at.number_input(key=f"{mode}_max_new").set_value(max_new)
    at.slider(key=f"{mode}_temperature").set_value(0.0)
    return at.run()
