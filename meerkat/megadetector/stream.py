"""A results file's top level and the byte spans of its "images" entries, found without parsing it whole.

A project's file lists a million images (300 MB); parsed at once, Python's objects take about
eight times that. `scan` walks the bytes instead: the top-level values other than "images" are
parsed (they are small), and each entry of "images" is parsed only to find where it ends, then
dropped. Callers keep the bytes and the spans and parse one entry at a time (`json.loads` of its
span), as often as they need it.

The bytes are decoded a window at a time (UTF-8; a window never ends inside a character), and
each value is parsed by the json module's own scanner, so the values are exactly json.loads'.
A value that runs past its window is parsed again in a larger one.
"""

import json
import re
from array import array

WINDOW = 1 << 22  # bytes decoded at a time: large enough for most entries, small beside the file
BOM = b"\xef\xbb\xbf"
_SPACE = re.compile(rb"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class NotJSON(ValueError):
    """The bytes are not one JSON object; `message` and `line` say where."""

    def __init__(self, message: str, line: int):
        super().__init__(f"{message} at line {line}")
        self.message, self.line = message, line


class NotResults(ValueError):
    """JSON, but not an object with an "images" list."""


class _Window:
    """Decoded text of raw[start:end]. Values are read front to back, so a cursor (a byte and the
    character there) turns offsets of one into the other without decoding the window again."""

    def __init__(self, raw: bytes, start: int, size: int):
        end = min(len(raw), start + size)
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # not inside a UTF-8 character
            end -= 1
        self.raw, self.start, self.end = raw, start, end
        self.text = raw[start:end].decode("utf-8")
        self.ascii = self.text.isascii()
        self._byte, self._char = start, 0

    def holds(self, byte: int) -> bool:
        return self._byte <= byte < self.end

    def byte(self, char: int) -> int:
        """The offset in the file of the text's character `char` (at or after the cursor)."""
        if self.ascii:
            return self.start + char
        self._byte += len(self.text[self._char : char].encode("utf-8"))
        self._char = char
        return self._byte

    def char(self, byte: int) -> int:
        """The text's character at the file's offset `byte` (at or after the cursor)."""
        if self.ascii:
            return byte - self.start
        self._char += len(self.raw[self._byte : byte].decode("utf-8"))
        self._byte = byte
        return self._char


class _Reader:
    def __init__(self, raw: bytes):
        self.raw = raw
        self.window: _Window | None = None

    def line(self, byte: int) -> int:
        return self.raw.count(b"\n", 0, byte) + 1

    def fail(self, message: str, byte: int):
        raise NotJSON(message, self.line(byte))

    def space(self, pos: int) -> int:
        return _SPACE.match(self.raw, pos).end()

    def expect(self, pos: int, chars: bytes) -> int:
        """The position of the next of `chars` after whitespace; anything else is an error."""
        pos = self.space(pos)
        if pos >= len(self.raw) or self.raw[pos] not in chars:
            what = "end of file" if pos >= len(self.raw) else repr(chr(self.raw[pos]))
            self.fail(f"Expecting {' or '.join(repr(chr(c)) for c in chars)}, found {what}", pos)
        return pos

    def value(self, pos: int):
        """(the JSON value at byte `pos`, the byte after it)."""
        window, size = self.window, WINDOW
        if window is None or not window.holds(pos):
            window = _Window(self.raw, pos, size)
        while True:
            try:
                value, end = _DECODER.raw_decode(window.text, window.char(pos))
            except json.JSONDecodeError as e:
                if window.end >= len(self.raw):
                    raise NotJSON(e.msg, self.line(window.byte(e.pos))) from None
            else:
                # A value that ends where the window does may go on (a number cut short).
                if end < len(window.text) or window.end >= len(self.raw):
                    self.window = window
                    return value, window.byte(end)
            size = max(size, 2 * (window.end - pos))  # it runs past the window: read it in a larger one
            window = _Window(self.raw, pos, size)


def scan(raw: bytes, each=None) -> tuple[list[tuple[str, object]], array]:
    """The top level of a results file: (key, value) pairs in the file's order, "images" with the
    value None, and the spans of the images' entries, start and end byte of entry i at [2i, 2i + 1].
    `each(i, value)` sees every entry as it is parsed."""
    reader = _Reader(raw)
    pos = len(BOM) if raw.startswith(BOM) else 0
    pos = reader.space(pos)
    if pos >= len(raw):
        reader.fail("Expecting value", pos)
    if raw[pos] != ord("{"):
        value, _ = reader.value(pos)  # a valid array or number is not results; invalid JSON says where
        raise NotResults(type(value).__name__)
    items: list[tuple[str, object]] = []
    spans = None
    pos = reader.space(pos + 1)
    while raw[pos : pos + 1] != b"}":
        key, pos = reader.value(pos)
        if not isinstance(key, str):
            reader.fail("Expecting property name enclosed in double quotes", pos)
        pos = reader.space(reader.expect(pos, b":") + 1)
        if key == "images" and raw[pos : pos + 1] == b"[":
            spans, pos = _entries(reader, pos + 1, each)
            value = None
        else:
            value, pos = reader.value(pos)
            spans = None if key == "images" else spans
        items = [(k, v) for k, v in items if k != key] + [(key, value)]  # the last of a repeated key wins, as in json
        pos = reader.expect(pos, b",}")
        if raw[pos] == ord(","):
            pos = reader.space(pos + 1)
            if raw[pos : pos + 1] == b"}":
                reader.fail("Illegal trailing comma before end of object", pos)
    if reader.space(pos + 1) != len(raw):
        reader.fail("Extra data", reader.space(pos + 1))
    if spans is None:
        raise NotResults("no images list")
    return items, spans


def _entries(reader: _Reader, pos: int, each) -> tuple[array, int]:
    spans = array("q")
    pos = reader.space(pos)
    if reader.raw[pos : pos + 1] == b"]":
        return spans, pos + 1
    while True:
        value, end = reader.value(pos)
        if each is not None:
            each(len(spans) // 2, value)
        spans.append(pos)
        spans.append(end)
        pos = reader.expect(end, b",]")
        if reader.raw[pos] == ord("]"):
            return spans, pos + 1
        pos = reader.space(pos + 1)
