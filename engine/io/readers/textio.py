"""Chunked line reading for the text formats (MGF, MSP): big reads, UTF-8 checked, line numbers kept.

Files are read in chunks of about ``chunk_bytes`` cut at a line end, so memory stays flat for any file
size while per-line work happens on large decoded strings. Bytes that are not UTF-8 do not stop the
file: the chunk is decoded with ``surrogateescape`` and marked ``dirty``, and the format reader turns the
offending line into a per-record error (see :func:`undecodable`). ``\\r\\n`` line ends are accepted.
A ``.gz`` file is decompressed while it streams; a corrupt or truncated one is a file error.
A line longer than :data:`MAX_LINE_BYTES` is a file error naming the line, so memory stays bounded
whatever the input (a gigabyte of one character without a line end is refused after 8 MiB).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from engine.core.errors import FileFormatError
from engine.io.readers.files import GZIP_ERRORS, open_binary

CHUNK_BYTES = 4 << 20
#: The longest line the text readers accept.
MAX_LINE_BYTES = 8 << 20
_SNIFF_BYTES = 1 << 16
#: An unreadable file, or a corrupt or truncated .gz.
_READ_ERRORS: tuple[type[Exception], ...] = (OSError, *GZIP_ERRORS)


@dataclass(frozen=True, slots=True)
class TextChunk:
    """Consecutive whole lines of a file; ``first_line`` is the 1-based number of the first line.

    ``text`` has ``\n`` line ends and ends with one unless it is the end of a file without one.
    ``dirty`` says it holds bytes that are not UTF-8 (as lone surrogates, see :func:`undecodable`).
    """

    text: str
    first_line: int
    dirty: bool

    def lines(self) -> list[str]:
        """The lines, line ends removed."""
        lines = self.text.split("\n")
        if self.text.endswith("\n"):
            lines.pop()
        return lines


def iter_text_chunks(path: str | Path, *, chunk_bytes: int = CHUNK_BYTES,
                     boundary: bytes | None = None, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[TextChunk]:
    """Yield a text file in chunks of whole lines.

    With ``boundary`` (e.g. ``b"END IONS"``) a chunk ends, where possible, after the last line that
    starts with it, so that a chunk holds whole records. Raises :class:`FileFormatError` for an empty
    file, one that looks binary (NUL bytes) or a line longer than ``max_line_bytes``.
    """
    marker = b"\n" + boundary if boundary else b""
    with open_binary(path) as handle:
        try:
            yield from _chunks(handle, path, chunk_bytes, marker, max_line_bytes)
        except _READ_ERRORS as exc:
            raise FileFormatError(f"cannot read the file: {type(exc).__name__}: {exc}", path=str(path),
                                  reason="file_error") from None


def _chunks(handle: IO[bytes], path: str | Path, chunk_bytes: int, marker: bytes,
            max_line_bytes: int) -> Iterator[TextChunk]:
    data = handle.read(chunk_bytes)
    if not data:
        raise FileFormatError("empty file (0 bytes)", path=str(path), reason="file_error")
    nul = data.find(b"\x00", 0, _SNIFF_BYTES)
    if nul != -1:
        raise FileFormatError(f"binary file, not text (NUL byte at offset {nul}); is it compressed?",
                              path=str(path), reason="file_error")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    carry = b""
    line_no = 1
    while True:
        buf = carry + data if carry else data
        more = len(data) > 0
        if more:
            cut = 0
            if marker:
                at = buf.rfind(marker)
                if at != -1:
                    cut = buf.find(b"\n", at + len(marker)) + 1
            if cut == 0:
                cut = buf.rfind(b"\n") + 1
            if (cut == 0 and len(buf) > max_line_bytes) or (carry and buf.find(b"\n", 0, cut) > max_line_bytes):
                raise FileFormatError(f"line {line_no} is longer than {max_line_bytes:,} bytes (the limit): "
                                      f"not a spectrum text file?", path=str(path), reason="file_error")
            if cut == 0:
                carry = buf
                data = handle.read(chunk_bytes)
                continue
            carry, buf = buf[cut:], buf[:cut]
        elif not buf:
            return
        try:
            text = buf.decode("utf-8")
            dirty = False
        except UnicodeDecodeError:
            text = buf.decode("utf-8", "surrogateescape")
            dirty = True
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        yield TextChunk(text, line_no, dirty)
        line_no += text.count("\n")
        if not more:
            return
        data = handle.read(chunk_bytes)
        if not data and not carry:
            return


def undecodable(line: str) -> str | None:
    """Describe the first byte of ``line`` that is not UTF-8 (from a dirty chunk), or return None."""
    if line.isascii():
        return None
    for col, ch in enumerate(line, start=1):
        if "\udc80" <= ch <= "\udcff":
            return f"byte 0x{ord(ch) - 0xDC00:02X} at column {col} is not UTF-8"
    return None
