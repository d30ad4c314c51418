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


# --- pinned by mutation testing (benchmarks/mutation.py sandbox-outputs) ------------------------------


@pytest.mark.parametrize(
    ("outputs", "text"),
    [
        # streams are joined as a terminal shows them, stdout and stderr alike
        ([("stdout", "progress "), ("stderr", "warning"), ("stdout", " done")], "progress warning done"),
        # results and displays start on their own line and end it
        ([("stdout", "a"), ("result", "3"), ("stdout", "b")], "a\n3\nb"),
        ([("stdout", "a"), ("stdout", "b\n"), ("stdout", "c"), ("display", "<table>")], "ab\nc\n<table>"),
        ([("result", "3\n"), ("stdout", "x")], "3\nx"),
        # empty outputs are skipped without hiding the ones after them
        ([("stdout", ""), ("result", ""), ("stdout", "after")], "after"),
        # only the final newlines go: spaces and a last "X" are output too
        ([("stdout", "row  \n\n")], "row  "),
        ([("stdout", "X\n")], "X"),
    ],
)
def test_observation_joins_outputs_like_a_notebook_cell(outputs, text):
    result = ExecutionResult(outputs=[Output(kind=kind, text=piece) for kind, piece in outputs])
    assert result.observation() == text


def test_observation_shows_an_image_size_only_when_both_sides_are_known():
    half = ExecutionResult(outputs=[Output(kind="image", mime="image/png", filename="plot_1.png", width=640)])
    assert half.observation() == "[image: plot_1.png]"


def test_observation_says_how_a_run_ended_unless_the_traceback_already_does():
    traceback = Output(kind="error", text="Traceback\nKeyboardInterrupt")
    stopped = ExecutionResult(outputs=[traceback], status="interrupted", message="stopped by the user")
    assert stopped.observation() == "Traceback\nKeyboardInterrupt\n[interrupted: stopped by the user]"
    no_traceback = ExecutionResult(outputs=[Output(kind="stdout", text="a")], status="error", message="kernel lost")
    assert no_traceback.observation() == "a\n[error: kernel lost]"
    ended_line = ExecutionResult(outputs=[Output(kind="stdout", text="a\n")], status="timeout", message="past 5 s")
    assert ended_line.observation() == "a\n[timeout: past 5 s]"
    fine = ExecutionResult(outputs=[Output(kind="stdout", text="1")], status="ok", message="finished")
    assert fine.observation() == "1"  # a successful run adds nothing


def test_observation_is_cut_to_2000_characters_by_default():
    result = ExecutionResult(outputs=[Output(kind="stdout", text="x" * 5000)])
    text = result.observation()
    assert len(text) == 2000 and "characters cut" in text
    assert result.observation(max_chars=100) == cut_middle("x" * 5000, 100)


def test_an_error_uses_up_the_text_budget(collector):
    collector.stream("stdout", "12345")
    error = collector.error("E", "", ["E: ten chr"])
    assert len(error.text) == 10 and collector.kept_chars == 15
    assert collector.stream("stdout", "abcdefghij").text == "abcde"  # 5 left of 20
    assert collector.dropped_chars == 5


def test_cut_marker_reports_messages_dropped_unread():
    collector = OutputCollector(max_chars=10, max_images=1, save_image=lambda e, r: "f", max_message_bytes=1000)
    collector.dropped_messages = 2
    assert collector.cut_marker() == Output(kind="stderr", text=(
        "\n[2 kernel messages larger than 1000 bytes were dropped unread; output sent right after them may be "
        "missing]\n"))


STREAM_TEXTS = ["", "plain", 'say "hi"', '"quoted" first', "C:\\dir\\", 'a \\"quoted\\" b', '\\"', "tab\there\nnext", "é 中文 😀"]


@pytest.mark.parametrize("text", STREAM_TEXTS)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_large_stream_decoding_reads_a_whole_text_exactly(text, ascii_only):
    """Quotes, backslashes and \\u escapes (surrogate pairs too) end where JSON says, even with fields after."""
    content = json.dumps({"name": "stderr", "text": text, "metadata": {"note": "more fields " * 3}},
                         ensure_ascii=ascii_only).encode()
    assert decode_large_stream(content, 1000)[:2] == ("stderr", text)
    plain = json.dumps({"name": "stdout", "text": text}, ensure_ascii=ascii_only).encode()
    name, head, rest = decode_large_stream(plain, 1000)
    assert (name, head) == ("stdout", text)
    escapes = len(json.dumps(text, ensure_ascii=ascii_only).encode()) - 2 - len(text.encode())
    assert rest == 0 if not escapes else 0 < rest <= escapes  # approximate by design: escapes count as decoded


def test_large_stream_decoding_counts_the_undecoded_rest_exactly_for_plain_text():
    content = json.dumps({"name": "stdout", "text": "a" * 5000}).encode()
    assert decode_large_stream(content, 10) == ("stdout", "a" * 10, 4990)
    assert decode_large_stream(content, 5000) == ("stdout", "a" * 5000, 0)
    assert decode_large_stream(content, 0) == ("stdout", "", 5000)


def test_large_stream_decoding_stops_inside_escapes_cleanly():
    """A head cut in the middle of a \\u escape or a UTF-8 sequence drops the partial character."""
    for ascii_only in (True, False):
        content = json.dumps({"name": "stdout", "text": "é" * 5000}, ensure_ascii=ascii_only).encode()
        name, head, rest = decode_large_stream(content, 10)
        assert (name, head) == ("stdout", "é" * 10) and rest > 4900


def test_large_stream_without_a_name_is_stdout_and_a_malformed_one_does_not_raise():
    assert decode_large_stream(b'{"text": "hello"}', 100) == ("stdout", "hello", 0)
    malformed = b'{"name": "stderr", "text": "bad \xff byte and a raw\nnewline in a long enough text'
    name, head, _ = decode_large_stream(malformed, 100)
    assert (name, head) == ("stderr", "bad \ufffd byte and a raw\nnewline in a long enough text")


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _camera_jpeg(width: int, height: int, sof: int = 0xC2) -> bytes:
    """A JPEG laid out as cameras write it: an EXIF block (large, with a whole thumbnail JPEG inside, frame
    header included), quantization and Huffman tables (DHT is 0xC4, inside the frame-header range), then the
    frame header of the picture."""
    thumbnail = _jpeg(160, 120)
    exif = b"Exif\x00\x00" + b"\x00" * 30_000 + thumbnail + b"\x00" * 5_000  # longer than 32,767 bytes
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return (b"\xff\xd8" + _segment(0xE1, exif) + _segment(0xDB, b"\x00" + bytes(64))
            + _segment(0xC4, b"\x00" + bytes(16) + b"\x01") + _segment(sof, frame) + b"\xff\xda\x00\x02\xff\xd9")


def test_jpeg_size_is_the_pictures_not_the_thumbnails_or_a_table():
    assert image_size("image/jpeg", _camera_jpeg(4000, 3000)) == (4000, 3000)
    assert image_size("image/jpeg", _camera_jpeg(40_000, 2_000, sof=0xC0)) == (40_000, 2_000)  # a wide panorama
    padded = _jpeg(320, 200)
    frame_at = padded.index(b"\xff\xc0")
    padded = padded[:frame_at] + b"\x00" + padded[frame_at:]  # a stray byte between two segments is skipped
    assert image_size("image/jpeg", padded) == (320, 200)
    header_end = padded.index(b"\xff\xc0") + 10  # a file cut short right after the frame header
    assert image_size("image/jpeg", padded[:header_end]) == (320, 200)


def test_image_size_reads_only_the_format_the_mime_type_names():
    assert image_size("image/jpeg", _png(3, 2)) == (None, None)
    latin1 = '<?xml version="1.0" encoding="ISO-8859-1"?><!-- caf\xe9 --><svg width="8" height="9">'.encode("latin-1")
    assert image_size("image/svg+xml", latin1) == (8, 9)  # not UTF-8: still read
    assert image_size("image/svg+xml", b'<svg width="8">') == (None, None)  # one side only: no size


def test_a_budget_that_ran_out_stays_out_and_counts_every_cut(collector):
    collector.stream("stdout", "x" * 15)
    assert collector.stream("stdout", "y" * 10).text == "yyyyy"
    assert collector.stream("stdout", "z") is None and collector.stream("stderr", "abc") is None
    assert (collector.kept_chars, collector.dropped_chars, collector.dropped_messages) == (20, 9, 0)


def test_rich_outputs_without_text_have_none(collector, saved):
    fresh = OutputCollector(max_chars=100, max_images=1, save_image=lambda e, r: "f")
    assert fresh.rich("display", {"application/vnd.jupyter.widget-view+json": {}}, {}) is None
    png = _png(2, 2)
    image = collector.rich("display", {"image/png": base64.b64encode(png).decode()}, {})
    assert image.text == ""  # no text/plain alternative: no caption
    svg = collector.rich("display", {"image/svg+xml": b'<svg width="5" height="6"/>'}, {})  # bytes, not text
    assert (svg.kind, svg.width, svg.data) == ("image", 5, b'<svg width="5" height="6"/>')


def test_base64_with_line_breaks_is_decoded(collector, saved):
    """Notebook-style base64 is wrapped at 76 characters; the image must still come through."""
    png = _png(30, 20)
    wrapped = base64.encodebytes(png).decode()
    assert "\n" in wrapped
    out = collector.rich("display", {"image/png": wrapped}, {})
    assert (out.kind, out.data, out.width) == ("image", png, 30)


def test_image_byte_limits_are_inclusive_and_counted_per_image(saved):
    collector = OutputCollector(max_chars=100, max_images=9, save_image=lambda e, r: "f", max_image_bytes=4_000,
                                max_total_image_bytes=8_000)
    exactly = base64.b64encode(b"\x89PNG" + b"\x00" * 3_996).decode()  # 4,000 bytes: at both limits
    too_big = base64.b64encode(b"\x89PNG" + b"\x00" * 3_997).decode()
    assert collector.rich("display", {"image/png": too_big}, {}).kind == "stderr"
    assert collector.rich("display", {"image/png": too_big}, {}).kind == "stderr"
    assert collector.rich("display", {"image/png": exactly}, {}).kind == "image"
    assert collector.rich("display", {"image/png": exactly}, {}).kind == "image"  # 8,000 of 8,000
    assert collector.rich("display", {"image/png": exactly}, {}) is None
    assert collector.rich("display", {"image/png": exactly}, {}) is None
    assert (collector.image_bytes, collector.images, collector.dropped_images) == (8_000, 2, 4)
    collector.stream("stdout", "x" * 101)
    assert collector.cut_marker().text == (
        "\n[output cut: 1 more characters were not kept (limit 100 characters per execution)]\n"
        "[4 images were not kept (limits: 9 images and 8000 bytes of images per execution)]\n")


def test_cut_middle_is_exactly_the_limit_and_balanced():
    for size in (101, 1_000, 10_000, 123_456):
        text = "".join(chr(ord("a") + i % 26) for i in range(size))
        for limit in (60, 100, 2_000):
            cut = cut_middle(text, limit)
            if size <= limit:
                assert cut == text
                continue
            head, rest = cut.split("\n[... ", 1)
            count, tail = rest.split(" characters cut ...]\n", 1)
            assert len(cut) == limit and len(head) + int(count) + len(tail) == size
            assert len(tail) - len(head) in (0, 1) and text.startswith(head) and text.endswith(tail)
    assert cut_middle("x" * 100, 100) == "x" * 100
    assert cut_middle("abcdefghijklmnopqrstuvwxyz" * 10, 5) == "a\n[... 258 characters cut ...]\nz"
