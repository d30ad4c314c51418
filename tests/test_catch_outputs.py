"""The sandbox's output collection without a kernel: Jupyter message contents in, ordered capped
Outputs and the model's observation text out (fast, so mutation testing can run them per mutant)."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from composite.sandbox.outputs import (
    STDIN_NOTE,
    ExecutionResult,
    Output,
    OutputCollector,
    cut_middle,
    decode_large_stream,
    image_size,
    strip_ansi,
)


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


@pytest.fixture
def saved():
    return []


@pytest.fixture
def collector(saved):
    def save(ext, raw):
        saved.append((ext, raw))
        return f"plot_{len(saved)}.{ext}"

    return OutputCollector(max_chars=20, max_images=2, save_image=save, max_image_bytes=10_000,
                           max_total_image_bytes=15_000)


def test_streams_keep_their_kind_and_stop_at_the_text_budget(collector):
    assert collector.stream("stdout", "0123456789") == Output(kind="stdout", text="0123456789")
    assert collector.stream("stderr", "abcdefghij") == Output(kind="stderr", text="abcdefghij")
    assert collector.stream("stdout", "more") is None  # the budget of 20 is used up
    assert (collector.kept_chars, collector.dropped_chars) == (20, 4)
    marker = collector.cut_marker()
    assert marker.kind == "stderr" and "4 more characters were not kept (limit 20 characters" in marker.text


def test_a_stream_is_cut_at_the_exact_remaining_room(collector):
    collector.stream("stdout", "x" * 15)
    assert collector.stream("stdout", "y" * 10).text == "yyyyy"
    assert collector.dropped_chars == 5
    collector.stream("stdout", "", extra_dropped=7)
    assert collector.dropped_chars == 12


def test_nothing_dropped_gives_no_marker(collector):
    collector.stream("stdout", "ok")
    assert collector.cut_marker() is None


def test_errors_are_kept_past_the_budget_without_ansi_colours(collector):
    collector.stream("stdout", "z" * 20)
    out = collector.error("ValueError", "bad", ["\x1b[31mTraceback\x1b[0m", "ValueError: bad"])
    assert out == Output(kind="error", text="Traceback\nValueError: bad")
    assert collector.error("KeyError", "'k'", []).text == "KeyError: 'k'"
    assert collector.error("StdinNotImplementedError", "x", ["long ipykernel trace"]).text == (
        f"StdinNotImplementedError: {STDIN_NOTE}")


def test_a_huge_error_is_cut_in_the_middle():
    collector = OutputCollector(max_chars=10, max_images=1, save_image=lambda e, r: "x")
    text = collector.error("E", "", ["a" * 3000 + "b" * 3000]).text
    assert len(text) == 2000 and text.startswith("a") and text.endswith("b") and "characters cut" in text


def test_rich_results_prefer_images_then_text_then_a_mime_label(collector, saved):
    assert collector.rich("result", {"text/plain": "\x1b[1m42\x1b[0m"}, {}) == Output(kind="result", text="42")
    assert collector.rich("display", {"text/html": "<b>x</b>", "application/vnd.jupyter.widget-view+json": {}},
                          {}).text == "[text/html output]"
    assert collector.rich("display", {"application/vnd.jupyter.widget-view+json": {}}, {}) is None
    png = _png(3, 2)
    out = collector.rich("display", {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}, {})
    assert (out.kind, out.mime, out.filename, out.width, out.height, out.text) == (
        "image", "image/png", "plot_1.png", 3, 2, "<Figure>")
    assert saved == [("png", png)] and out.data == png


def test_image_limits_count_and_report_what_was_dropped(saved):
    collector = OutputCollector(max_chars=100, max_images=2, save_image=lambda e, r: saved.append(r) or "f",
                                max_image_bytes=10_000, max_total_image_bytes=15_000)
    small = base64.b64encode(_png(2, 2)).decode()
    assert collector.rich("display", {"image/png": small}, {}).kind == "image"
    big = base64.b64encode(b"\x89PNG" + b"\x00" * 10_001).decode()
    too_big = collector.rich("display", {"image/png": big}, {})
    assert too_big.kind == "stderr" and "10005 bytes was too large" in too_big.text
    broken = collector.rich("display", {"image/jpeg": 12345}, {})
    assert broken.kind == "stderr" and "could not be decoded" in broken.text
    assert collector.rich("display", {"image/png": small}, {}).kind == "image"
    assert collector.rich("display", {"image/png": small}, {}) is None  # a third image: over max_images
    assert collector.dropped_images == 2 and len(saved) == 2
    assert "2 images were not kept (limits: 2 images and 15000 bytes" in collector.cut_marker().text


def test_total_image_bytes_are_bounded(saved):
    collector = OutputCollector(max_chars=100, max_images=9, save_image=lambda e, r: "f",
                                max_image_bytes=10_000, max_total_image_bytes=6_000)
    payload = base64.b64encode(b"\x89PNG" + b"\x00" * 3_996).decode()  # 4,000 bytes each
    assert collector.rich("display", {"image/png": payload}, {}) is not None
    assert collector.rich("display", {"image/png": payload}, {}) is None
    assert (collector.image_bytes, collector.dropped_images) == (4_000, 1)


def test_image_sizes_from_headers_and_metadata(collector):
    assert image_size("image/png", _png(640, 480)) == (640, 480)
    assert image_size("image/jpeg", _jpeg(320, 200)) == (320, 200)
    assert image_size("image/svg+xml", b'<svg xmlns="x" width="12.6" height="7">') == (13, 7)
    assert image_size("image/svg+xml", b"<svg viewBox='0 0 1 1'>") == (None, None)
    assert image_size("image/png", b"not a png at all, really") == (None, None)
    svg = collector.rich("display", {"image/svg+xml": '<svg width="5" height="6"></svg>'}, {})
    assert (svg.width, svg.height, svg.filename) == (5, 6, "plot_1.svg")
    meta = collector.rich("display", {"image/png": base64.b64encode(b"\x89PNG-no-header").decode()},
                          {"image/png": {"width": "30", "height": 40}})
    assert (meta.width, meta.height) == (30, 40)


def test_observation_orders_outputs_and_says_how_it_ended():
    result = ExecutionResult(outputs=[
        Output(kind="stdout", text="a"), Output(kind="stdout", text="b\n"), Output(kind="result", text="3"),
        Output(kind="image", mime="image/png", filename="plot_1.png", width=4, height=5),
        Output(kind="stderr", text="warn"),
    ])
    assert result.observation() == "ab\n3\n[image: plot_1.png 4x5]\nwarn"
    assert ExecutionResult().observation() == "[no output]"
    assert ExecutionResult(status="timeout", message="ran past 5 s").observation() == "[timeout: ran past 5 s]"
    assert ExecutionResult(status="died").observation() == "[died]"
    partial = ExecutionResult(outputs=[Output(kind="stdout", text="half")], status="interrupted", message="stopped")
    assert partial.observation() == "half\n[interrupted: stopped]"
    error = ExecutionResult(outputs=[Output(kind="error", text="Traceback\nZeroDivisionError")], status="error",
                            message="ZeroDivisionError")
    assert error.observation() == "Traceback\nZeroDivisionError"  # the message is not repeated
    assert ExecutionResult(outputs=[Output(kind="image", mime="image/png")]).observation() == "[image: image/png]"
    assert not error.ok and ExecutionResult().ok
    assert error.text() == "Traceback\nZeroDivisionError" and result.text(("stdout",)) == "ab\n"
    assert [o.filename for o in result.images] == ["plot_1.png"]


def test_cut_middle_keeps_head_and_tail_and_counts_exactly():
    text = "".join(chr(ord("a") + i % 26) for i in range(500))
    cut = cut_middle(text, 100)
    assert len(cut) == 100 and cut.startswith(text[:10]) and cut.endswith(text[-10:])
    dropped = int(cut.split("[... ")[1].split(" ")[0])
    head, tail = cut.split("\n[... ")[0], cut.split(" characters cut ...]\n")[1]
    assert len(head) + len(tail) + dropped == len(text)
    assert cut_middle("short", 100) == "short" and cut_middle(text, 0) == text


def test_strip_ansi_and_large_stream_decoding():
    assert strip_ansi("\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain") == "red plain"
    content = json.dumps({"name": "stderr", "text": "é\"x\\" + "y" * 5000}).encode()
    name, head, rest = decode_large_stream(content, 4)
    assert (name, head) == ("stderr", 'é"x\\')
    assert 5000 <= rest <= 5010  # approximate by design: escapes are counted as their decoded size
    assert decode_large_stream(b'{"name": "stdout", "nothing": 1}', 10) == ("stdout", "", 32)
