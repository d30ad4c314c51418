"""Ordered outputs of one sandboxed execution: the Output/ExecutionResult dataclasses, Jupyter
message conversion (ANSI stripping, images saved into the workdir) and capped collection."""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Output",
    "ExecutionResult",
    "OutputCollector",
    "STDIN_NOTE",
    "strip_ansi",
    "cut_middle",
    "image_size",
    "decode_large_stream",
]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

#: image mime types we save, most preferred first, with their file extension
IMAGE_MIMES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}


def strip_ansi(text: str) -> str:
    """Remove terminal colour/cursor escape sequences (IPython colours its tracebacks)."""
    return _ANSI.sub("", text)


@dataclass
class Output:
    """One item of ordered output of an execution."""

    kind: str  # "stdout" | "stderr" | "result" | "display" | "error" | "image"
    text: str = ""
    mime: str = ""
    data: bytes = b""
    filename: str = ""
    width: int | None = None
    height: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON-able form used by `python -m composite exec` (image bytes left out)."""
        item: dict[str, Any] = {"kind": self.kind, "text": self.text, "filename": self.filename}
        if self.kind == "image":
            item.update(mime=self.mime, width=self.width, height=self.height)
        return item


@dataclass
class ExecutionResult:
    """Everything one execution produced, in order, and how it ended."""

    outputs: list[Output] = field(default_factory=list)
    status: str = "ok"  # "ok" | "error" | "timeout" | "interrupted" | "died" | "aborted" | "no_code"
    message: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def text(self, kinds: tuple[str, ...] = ("stdout", "stderr", "result", "display", "error")) -> str:
        """The concatenated text of the outputs of the given kinds (handy in tests and logs)."""
        return "".join(o.text for o in self.outputs if o.kind in kinds)

    @property
    def images(self) -> list[Output]:
        return [o for o in self.outputs if o.kind == "image"]

    def observation(self, max_chars: int = 2000) -> str:
        """Text for the model: outputs in order, images as "[image: plot_1.png 640x480]", then the
        status message; longer than max_chars is cut in the middle with a marker saying how much."""
        parts: list[str] = []
        for out in self.outputs:
            if out.kind == "image":
                size = f" {out.width}x{out.height}" if out.width and out.height else ""
                piece = f"[image: {out.filename or out.mime}{size}]"
            else:
                piece = out.text
            if not piece:
                continue
            if out.kind not in ("stdout", "stderr") and parts and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append(piece)
            if out.kind not in ("stdout", "stderr") and not piece.endswith("\n"):
                parts.append("\n")
        text = "".join(parts)
        # an error's traceback is already in the outputs; other endings need the message
        told = self.status == "error" and any(o.kind == "error" for o in self.outputs)
        if self.status != "ok" and self.message and not told:
            sep = "" if not text or text.endswith("\n") else "\n"
            text += f"{sep}[{self.status}: {self.message}]"
        elif not text.strip():
            text = "[no output]" if self.status == "ok" else f"[{self.status}]"
        return cut_middle(text.rstrip("\n"), max_chars)


def cut_middle(text: str, max_chars: int) -> str:
    """Keep the head and the tail of text, with a marker saying how many characters were cut."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    cut = len(text) - max_chars
    while True:
        # the marker's own length shifts the count; once more when the count gains a digit (it only grows)
        marker = f"\n[... {cut} characters cut ...]\n"
        keep = max(max_chars - len(marker), 2)
        if len(text) - keep == cut:
            break
        cut = len(text) - keep
    head = keep // 2
    tail = keep - head
    return text[:head] + marker + text[len(text) - tail :]


def image_size(mime: str, data: bytes) -> tuple[int | None, int | None]:
    """Pixel size read from a PNG/JPEG header, or the width/height attributes of an SVG."""
    try:
        if mime == "image/png" and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if mime == "image/jpeg":
            return _jpeg_size(data)
        if mime == "image/svg+xml":
            head = data[:4096].decode("utf-8", "replace")
            tag = re.search(r"<svg\b[^>]*>", head, re.S)
            if tag:
                w = re.search(r'\bwidth="([\d.]+)', tag.group(0))
                h = re.search(r'\bheight="([\d.]+)', tag.group(0))
                if w and h:
                    return round(float(w.group(1))), round(float(h.group(1)))
    except (struct.error, ValueError, IndexError):
        pass
    return None, None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None, None


STDIN_NOTE = (
    "input() is not available in the sandbox: code cannot wait for keyboard input; "
    "put the values directly in the code instead"
)
_CUT_NOTE = "[output cut: {dropped} more characters were not kept (limit {limit} characters per execution)]"


class OutputCollector:
    """Turns the IOPub messages of one request into Outputs, keeping at most max_chars of text
    and max_images images; what is dropped is counted and reported by cut_marker()."""

    def __init__(
        self,
        max_chars: int,
        max_images: int,
        save_image: Callable[[str, bytes], str],
        max_image_bytes: int = 20 * 2**20,
        max_total_image_bytes: int = 64 * 2**20,
        max_message_bytes: int = 32 * 2**20,
    ) -> None:
        self.max_chars = max_chars
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes
        self.max_total_image_bytes = max_total_image_bytes
        self.max_message_bytes = max_message_bytes
        self.image_bytes = 0
        self.dropped_messages = 0  # kernel messages over max_message_bytes, dropped unread
        self.save_image = save_image
        self.kept_chars = 0
        self.dropped_chars = 0
        self.images = 0
        self.dropped_images = 0

    def _budget(self, text: str) -> str:
        room = self.max_chars - self.kept_chars
        if len(text) <= room:
            self.kept_chars += len(text)
            return text
        kept = text[: max(room, 0)]
        self.kept_chars += len(kept)
        self.dropped_chars += len(text) - len(kept)
        return kept

    def stream(self, name: str, text: str, extra_dropped: int = 0) -> Output | None:
        self.dropped_chars += extra_dropped
        kept = self._budget(text)
        if not kept:
            return None
        return Output(kind="stderr" if name == "stderr" else "stdout", text=kept)

    def error(self, ename: str, evalue: str, traceback: list[str]) -> Output:
        text = strip_ansi("\n".join(traceback)) if traceback else f"{ename}: {evalue}"
        if ename == "StdinNotImplementedError":
            # the traceback runs through ipykernel internals; the model needs the one fact
            text = f"{ename}: {STDIN_NOTE}"
        # errors are what the model most needs to see: kept even past the text budget, but an
        # exception can carry a huge message, so each one is cut to the budget's size
        text = cut_middle(text, max(self.max_chars, 2000))
        self.kept_chars += len(text)
        return Output(kind="error", text=text)

    def rich(self, kind: str, data: dict[str, Any], metadata: dict[str, Any]) -> Output | None:
        """Convert execute_result/display_data content; kind is "result" or "display"."""
        for mime, ext in IMAGE_MIMES.items():
            if mime in data:
                return self._image(
                    mime, ext, data[mime], metadata.get(mime) or {}, data.get("text/plain", "")
                )
        text = data.get("text/plain")
        if text is None:
            other = sorted(k for k in data if not k.startswith("application/vnd.jupyter"))
            text = f"[{other[0]} output]" if other else ""
        text = self._budget(strip_ansi(str(text)))
        return Output(kind=kind, text=text) if text else None

    def _image(self, mime: str, ext: str, payload: Any, meta: dict[str, Any], alt: str) -> Output | None:
        if self.images >= self.max_images:
            self.dropped_images += 1
            return None
        try:
            if mime == "image/svg+xml":
                raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
            else:
                raw = base64.b64decode(payload, validate=False)
        except (binascii.Error, TypeError, ValueError):
            return Output(kind="stderr", text=f"[an {mime} image could not be decoded]\n")
        if len(raw) > self.max_image_bytes:
            self.dropped_images += 1
            return Output(
                kind="stderr", text=f"[an {mime} image of {len(raw)} bytes was too large to keep]\n"
            )
        if self.image_bytes + len(raw) > self.max_total_image_bytes:
            self.dropped_images += 1
            return None  # counted in cut_marker()
        self.image_bytes += len(raw)
        width, height = image_size(mime, raw)
        if isinstance(meta, dict):
            # Jupyter metadata gives the display size (e.g. retina figures); prefer the pixel size
            width = width or _int_or_none(meta.get("width"))
            height = height or _int_or_none(meta.get("height"))
        self.images += 1
        filename = self.save_image(ext, raw)
        return Output(
            kind="image", text=str(alt), mime=mime, data=raw, filename=filename, width=width, height=height
        )

    def cut_marker(self) -> Output | None:
        notes = []
        if self.dropped_chars:
            notes.append(_CUT_NOTE.format(dropped=self.dropped_chars, limit=self.max_chars))
        if self.dropped_images:
            notes.append(
                f"[{self.dropped_images} images were not kept (limits: {self.max_images} images and "
                f"{self.max_total_image_bytes} bytes of images per execution)]"
            )
        if self.dropped_messages:
            notes.append(
                f"[{self.dropped_messages} kernel messages larger than {self.max_message_bytes} bytes "
                "were dropped unread; output sent right after them may be missing]"
            )
        return Output(kind="stderr", text="\n" + "\n".join(notes) + "\n") if notes else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


_STREAM_NAME = re.compile(rb'"name"\s*:\s*"(stdout|stderr)"')
_TEXT_KEY = re.compile(rb'"text"\s*:\s*"')


def decode_large_stream(raw: memoryview | bytes, keep_chars: int) -> tuple[str, str, int]:
    """Read (name, head of text, approximate number of characters not decoded) from the JSON
    content of a huge stream message without parsing all of it (bounded memory on our side)."""
    view = memoryview(raw)
    head = bytes(view[:256])
    name_match = _STREAM_NAME.search(head)
    name = name_match.group(1).decode() if name_match else "stdout"
    text_match = _TEXT_KEY.search(bytes(view[:4096]))
    if text_match is None:
        return name, "", len(view)
    start = text_match.end()
    # JSON escapes take at most 6 bytes per character (\uXXXX), usually 1
    chunk = bytes(view[start : start + max(keep_chars, 0) * 6 + 16])
    end = chunk.find(b'"')
    while end > 0 and _odd_backslashes_before(chunk, end):
        end = chunk.find(b'"', end + 1)
    if end >= 0:
        chunk = chunk[:end]
    text = _decode_json_fragment(chunk)[:keep_chars]
    consumed = start + len(text.encode("utf-8"))
    return name, text, max(len(view) - consumed - 2, 0)


def _odd_backslashes_before(buf: bytes, pos: int) -> bool:
    count = 0
    while pos - count - 1 >= 0 and buf[pos - count - 1] == 0x5C:
        count += 1
    return count % 2 == 1


def _decode_json_fragment(chunk: bytes) -> str:
    # drop a trailing partial escape or partial UTF-8 sequence, then decode as a JSON string
    for trim in range(0, 12):
        piece = chunk[: len(chunk) - trim] if trim else chunk
        try:
            return json.loads(b'"' + piece + b'"')
        except ValueError:
            continue
    return chunk.decode("utf-8", "replace")
