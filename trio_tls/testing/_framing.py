"""Where TLS records begin and end in a byte stream, for the chaos transport's cuts.

A cut at a byte count would make replay depend on record sizes, which change between
sessions (a new certificate each session, ECDSA signatures that vary by a byte or
two in every handshake). A cut at "the middle of the second record" does not: the
same records are complete on both sides of it whatever their exact lengths.
"""

from __future__ import annotations

from collections import deque

#: TLS content types (change_cipher_spec, alert, handshake, application_data, heartbeat).
_CONTENT_TYPES = range(20, 25)

#: The longest record any TLS version may send: 2**14 bytes of plaintext plus the
#: largest expansion allowed (TLS 1.2's 2048; TLS 1.3 allows less).
_MAX_RECORD_BODY = 2**14 + 2048

_HEADER = 5


class RecordMarks:
    """The record middles and ends in the bytes fed so far, as absolute offsets.

    Bytes that do not parse as TLS records (plaintext under a chaos stream that wraps
    SSLStreams, or after ``unwrap()``) turn the marks off for the rest of the stream:
    :attr:`framed` becomes False and callers cut by byte count instead, which is safe
    there because plaintext sizes do not change between sessions.
    """

    def __init__(self) -> None:
        #: False once the stream has shown it is not a sequence of TLS records.
        self.framed = True
        self._header = bytearray()
        self._body_left = 0
        self._offset = 0  # absolute offset of the next byte to be fed
        self._marks: deque[int] = deque()

    def feed(self, data: bytes | bytearray) -> None:
        """Parse ``data``, the next bytes of the stream."""
        position = 0
        while self.framed and position < len(data):
            if self._body_left:
                step = min(self._body_left, len(data) - position)
                self._body_left -= step
                position += step
                continue
            take = min(_HEADER - len(self._header), len(data) - position)
            self._header += data[position : position + take]
            position += take
            if len(self._header) == _HEADER:
                self._start_record(self._offset + position - _HEADER)
        self._offset += len(data)

    def _start_record(self, start: int) -> None:
        content_type, major, minor = self._header[0], self._header[1], self._header[2]
        length = int.from_bytes(self._header[3:5], "big")
        self._header.clear()
        if (
            content_type not in _CONTENT_TYPES
            or major != 3
            or minor > 4
            or length > _MAX_RECORD_BODY
        ):
            self.framed = False
        if not self.framed:
            self._marks.clear()
            return
        end = start + _HEADER + length
        self._marks.append(start + (_HEADER + length) // 2)
        self._marks.append(end)
        self._body_left = length

    def cuts(self, consumed: int, limit: int) -> list[int]:
        """Cut points strictly inside the next ``limit`` bytes after offset ``consumed``.

        Marks at or before ``consumed`` are forgotten: the caller has handed those
        bytes out.
        """
        while self._marks and self._marks[0] <= consumed:
            self._marks.popleft()
        inside: list[int] = []
        for mark in self._marks:
            if mark - consumed >= limit:
                break
            inside.append(mark - consumed)
        return inside
