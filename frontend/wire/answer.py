"""Where a server's answer to one command ends (pure): the relay's only reading
of what it relays.

The FE relays a backend's answer packet by packet, unchanged. To do that it
must know which packet is an answer's last, and it keeps what it must observe
from the packets as they pass: the status flags (in transaction, autocommit,
more results, cursor), and the error of a final ERR. Nothing else is decoded:
column definitions and rows are counted, not read.

An answer, by command (MySQL's client/server protocol):

- ``QUERY`` (COM_QUERY, COM_STMT_EXECUTE): OK | ERR | a result set:
  column count, that many column definitions, EOF (not under
  DEPRECATE_EOF), rows, then an EOF/OK (``0xFE``) or an ERR. A result whose
  status says MORE_RESULTS_EXISTS is followed by another. An execute that
  opened a cursor ends after its column definitions, with an end packet that
  says CURSOR_EXISTS.
- ``FETCH`` (COM_STMT_FETCH): rows, then an end packet or an ERR.
- ``PREPARE`` (COM_STMT_PREPARE): ERR, or a prepare-OK naming its
  parameter and column counts, then their definitions (each list followed by
  an EOF unless DEPRECATE_EOF).
- ``SIMPLE`` (COM_INIT_DB, COM_PING, COM_STMT_RESET, COM_SET_OPTION,
  COM_RESET_CONNECTION): one packet.

An end packet is told from a row by its first byte and length: a binary row
starts with ``0x00``; a text row can start with ``0xFE`` only as the prefix
of a length of 2**24 or more, so its payload is at least that long.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from frontend.wire.client import parse_column_definition, parse_eof, parse_ok, parse_text_row
from frontend.wire.packets import MalformedPacket
from frontend.wire.results import Column

SERVER_STATUS_IN_TRANS = 0x0001
SERVER_STATUS_AUTOCOMMIT = 0x0002
SERVER_MORE_RESULTS_EXISTS = 0x0008
SERVER_STATUS_CURSOR_EXISTS = 0x0040

_U16 = struct.Struct("<H")
_END_MAX = 0xFFFFFF  # an end packet under DEPRECATE_EOF is shorter; a row starting with 0xFE is longer
_EOF_MAX = 9  # a classic EOF packet is 5 bytes; anything from 9 bytes on is a row


class Command(IntEnum):
    QUERY = 0
    FETCH = 1
    PREPARE = 2
    SIMPLE = 3


class _Phase(IntEnum):
    FIRST = 0
    COLUMNS = 1
    COLUMNS_EOF = 2
    ROWS = 3
    PREPARE_OK = 4
    DEFINITIONS = 5  # a prepared statement's parameter and column definitions: counted
    ONE = 6


def _lenenc(payload: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of a length-encoded integer at ``pos``."""
    if pos >= len(payload):
        raise MalformedPacket("truncated length-encoded integer")
    first = payload[pos]
    if first < 0xFB:
        return first, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if size is None or pos + 1 + size > len(payload):
        raise MalformedPacket("bad length-encoded integer")
    return int.from_bytes(payload[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def ok_status(payload: bytes) -> tuple[int, int, int, int]:
    """(affected rows, last insert id, status flags, warnings) of an OK packet (``0x00`` or ``0xFE``)."""
    affected, pos = _lenenc(payload, 1)
    insert_id, pos = _lenenc(payload, pos)
    if pos + 4 > len(payload):
        return affected, insert_id, 0, 0
    return affected, insert_id, _U16.unpack_from(payload, pos)[0], _U16.unpack_from(payload, pos + 2)[0]


def err_fields(payload: bytes) -> tuple[int, str, str]:
    """(code, SQLSTATE, message) of an ERR packet."""
    code = _U16.unpack_from(payload, 1)[0] if len(payload) >= 3 else 0
    if payload[3:4] == b"#":
        return code, payload[4:9].decode("ascii", "replace"), payload[9:].decode("utf-8", "replace")
    return code, "HY000", payload[3:].decode("utf-8", "replace")


MAX_PAYLOAD = 0xFFFFFF  # a packet this long is continued by the next


def scan(answer: Answer, buf: bytearray, limit: int) -> tuple[int, int, bool]:
    """Whole packets at the start of ``buf`` that belong to ``answer``, up to
    about ``limit`` bytes: (bytes they take, the sequence id after them, whether
    the answer's last packet is among them). Rows are passed over by their
    headers alone."""
    pos, size, seq = 0, len(buf), -1
    while size - pos >= 4:
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        end = pos + 4 + length
        if end > size:
            break
        seq = buf[pos + 3]
        if answer.continued:
            answer.continued = length == MAX_PAYLOAD
        elif length == MAX_PAYLOAD:
            answer.continued = True  # a row of 16 MB or more: only rows are that long
        elif (length == 0 or not answer.is_row(buf[pos + 4], length)) and answer.feed(bytes(buf[pos + 4 : end])):
            return end, (seq + 1) & 0xFF, True
        pos = end
        if pos >= limit:
            break
    return pos, (seq + 1) & 0xFF, False


def last_packet(data: bytes) -> int:
    """Where the last of the whole packets in ``data`` starts (its header)."""
    pos = last = 0
    while pos + 4 <= len(data):
        last = pos
        pos += 4 + (data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16)
    return last


def next_seq(data: bytes) -> int:
    """The sequence id after the last packet in ``data``."""
    return (data[last_packet(data) + 3] + 1) & 0xFF


def with_more_results(data: bytes, deprecate_eof: bool) -> bytes:
    """``data`` with MORE_RESULTS_EXISTS set in its last packet (an OK, EOF or
    end packet): the FE answers several statements of one COM_QUERY, some
    relayed one by one. An ERR is left as it is (it ends the answer)."""
    start = last_packet(data)
    payload = data[start + 4 :]
    head = payload[:1]
    if head == b"\x00" or (head == b"\xfe" and deprecate_eof):
        pos = _lenenc(payload, _lenenc(payload, 1)[1])[1]
    elif head == b"\xfe":
        pos = 3
    else:
        return data
    if pos + 2 > len(payload):
        return data
    status = _U16.unpack_from(payload, pos)[0] | SERVER_MORE_RESULTS_EXISTS
    at = start + 4 + pos
    return data[:at] + _U16.pack(status) + data[at + 2 :]


def _end_status(payload: bytes, deprecate_eof: bool) -> int:
    """The status flags of an end packet: an OK under DEPRECATE_EOF, else an EOF."""
    if deprecate_eof:
        return ok_status(payload)[2]
    return _U16.unpack_from(payload, 3)[0] if len(payload) >= 5 else 0


class Answer:
    """Follows one command's answer: ``feed`` each payload in order; it returns
    True for the answer's last. ``status`` is the last status the server
    reported; ``error`` the final ERR's fields, if the answer ended with one.
    A row costs two comparisons: nothing is decoded."""

    __slots__ = ("_end_max", "_left", "_phase", "columns", "continued", "deprecate_eof", "error", "params", "status")

    _FIRST_PHASE = {
        Command.QUERY: _Phase.FIRST,
        Command.FETCH: _Phase.ROWS,
        Command.PREPARE: _Phase.PREPARE_OK,
        Command.SIMPLE: _Phase.ONE,
    }

    def __init__(self, command: Command, deprecate_eof: bool, status: int = 0) -> None:
        self.deprecate_eof = deprecate_eof
        self._end_max = _END_MAX if deprecate_eof else _EOF_MAX
        self._phase = self._FIRST_PHASE[command]
        self._left = 0
        self.status = status
        self.error: tuple[int, str, str] | None = None
        self.columns = 0  # of the latest result set, or of the prepared statement
        self.params = 0  # of a prepared statement
        self.continued = False  # inside a payload of 16 MB or more, split over several packets

    def is_row(self, head: int, length: int) -> bool:
        """Whether a packet of ``length`` bytes starting with ``head`` is a plain
        row (it changes nothing: the relay need not look further)."""
        return self._phase == _Phase.ROWS and head != 0xFF and (head != 0xFE or length >= self._end_max)

    def feed(self, payload: bytes) -> bool:
        if not payload:
            raise MalformedPacket("empty packet in an answer")
        head = payload[0]
        phase = self._phase
        if phase == _Phase.ROWS:
            if head == 0xFE and len(payload) < self._end_max:
                self.status = _end_status(payload, self.deprecate_eof)
                return self._result_ended()
            return head == 0xFF and self._failed(payload)
        if phase == _Phase.FIRST:
            if head == 0x00:
                self.status = ok_status(payload)[2]
                return self._result_ended()
            if head == 0xFF:
                return self._failed(payload)
            if head == 0xFB:  # LOCAL INFILE request: never asked for (no CLIENT_LOCAL_FILES)
                raise MalformedPacket("the server asked for a local file")
            self.columns = self._left = _lenenc(payload, 0)[0]
            self._phase = _Phase.COLUMNS
            return False
        if phase == _Phase.COLUMNS:
            self._left -= 1
            if self._left <= 0:
                self._phase = _Phase.ROWS if self.deprecate_eof else _Phase.COLUMNS_EOF
            return False
        if phase == _Phase.COLUMNS_EOF:
            self.status = _end_status(payload, False)
            if self.status & SERVER_STATUS_CURSOR_EXISTS:
                return True  # the rows come with COM_STMT_FETCH
            self._phase = _Phase.ROWS
            return False
        if phase == _Phase.DEFINITIONS:
            self._left -= 1
            return self._left <= 0
        if phase == _Phase.PREPARE_OK:
            # 0x00, statement id (4), columns (2), parameters (2), filler (1), warnings (2)
            if head == 0xFF:
                return self._failed(payload)
            if head != 0x00 or len(payload) < 9:
                raise MalformedPacket("bad prepare answer")
            self.columns = _U16.unpack_from(payload, 5)[0]
            self.params = _U16.unpack_from(payload, 7)[0]
            eofs = 0 if self.deprecate_eof else (self.params > 0) + (self.columns > 0)
            self._left = self.params + self.columns + eofs
            self._phase = _Phase.DEFINITIONS
            return self._left == 0
        # ONE: COM_INIT_DB, COM_PING, COM_STMT_RESET, COM_SET_OPTION ...
        if head == 0xFF:
            return self._failed(payload)
        if head == 0x00:
            self.status = ok_status(payload)[2]
        elif head == 0xFE and len(payload) < self._end_max:
            self.status = _end_status(payload, self.deprecate_eof)
        return True

    def _failed(self, payload: bytes) -> bool:
        self.error = err_fields(payload)
        self.status &= ~SERVER_MORE_RESULTS_EXISTS
        return True

    def _result_ended(self) -> bool:
        if self.status & SERVER_MORE_RESULTS_EXISTS:
            self._phase = _Phase.FIRST
            return False
        return True


class RowDecoder:
    """Decodes a relayed COM_QUERY answer (text protocol) chunk by chunk, for a
    client that wants values rather than packets (the gRPC API): ``feed`` a
    chunk of whole packets as the relay yields it and get the rows it held.
    Only those rows are kept, so a result of any size costs one chunk.

    ``columns`` is set once the first result set's definitions are read. An
    answer with several results (a CALL) gives the rows of its first result
    set; the later ones are read and dropped. After the last packet ``done``
    is True, with the final OK's figures or ``error`` (code, SQLSTATE, message)."""

    __slots__ = (
        "_count",
        "_end_max",
        "_left",
        "_partial",
        "_phase",
        "_sets",
        "affected_rows",
        "columns",
        "deprecate_eof",
        "done",
        "error",
        "info",
        "last_insert_id",
        "warnings",
    )

    def __init__(self, deprecate_eof: bool = True) -> None:
        self.deprecate_eof = deprecate_eof
        self._end_max = _END_MAX if deprecate_eof else _EOF_MAX
        self._phase = _Phase.FIRST
        self._count = 0
        self._left = 0
        self._sets = 0  # result sets begun
        self._partial: bytearray | None = None  # a payload of 16 MB or more, continued over packets
        self.columns: list[Column] | None = None
        self.affected_rows = 0
        self.last_insert_id = 0
        self.warnings = 0
        self.info = ""
        self.error: tuple[int, str, str] | None = None
        self.done = False

    def feed(self, chunk: bytes) -> list[tuple[bytes | None, ...]]:
        """The first result set's rows among ``chunk``'s packets (each whole, framed)."""
        rows: list[tuple[bytes | None, ...]] = []
        pos, size = 0, len(chunk)
        while size - pos >= 4 and not self.done:
            length = chunk[pos] | chunk[pos + 1] << 8 | chunk[pos + 2] << 16
            end = pos + 4 + length
            if end > size:
                raise MalformedPacket("a relayed chunk ends inside a packet")
            payload = chunk[pos + 4 : end]
            pos = end
            if self._partial is not None:
                self._partial += payload
                if length == MAX_PAYLOAD:
                    continue
                payload, self._partial = bytes(self._partial), None
            elif length == MAX_PAYLOAD:
                self._partial = bytearray(payload)
                continue
            self._packet(payload, rows)
        return rows

    def _packet(self, payload: bytes, rows: list[tuple[bytes | None, ...]]) -> None:
        if not payload:
            raise MalformedPacket("empty packet in an answer")
        head = payload[0]
        phase = self._phase
        if phase == _Phase.ROWS:
            if head == 0xFE and len(payload) < self._end_max:
                self._ended(payload, self.deprecate_eof)
            elif head == 0xFF:
                self._failed(payload)
            elif self._sets == 1:
                rows.append(parse_text_row(payload, self._count))
            return
        if phase == _Phase.FIRST:
            if head == 0x00:
                self._ended(payload, True)
            elif head == 0xFF:
                self._failed(payload)
            elif head == 0xFB:
                raise MalformedPacket("the server asked for a local file")
            else:
                self._count = self._left = _lenenc(payload, 0)[0]
                self._sets += 1
                if self._sets == 1:
                    self.columns = []
                self._phase = _Phase.COLUMNS if self._count else _Phase.ROWS
            return
        if phase == _Phase.COLUMNS:
            if self._sets == 1 and self.columns is not None:
                self.columns.append(parse_column_definition(payload))
            self._left -= 1
            if self._left <= 0:
                self._phase = _Phase.ROWS if self.deprecate_eof else _Phase.COLUMNS_EOF
            return
        if phase == _Phase.COLUMNS_EOF:
            self._phase = _Phase.ROWS
            return
        raise MalformedPacket(f"unexpected packet in a query's answer (phase {phase.name})")

    def _ended(self, payload: bytes, ok: bool) -> None:
        """An OK (or an end packet) closes a result: the answer's last unless MORE_RESULTS says otherwise."""
        if ok:
            fields = parse_ok(payload)
            self.affected_rows, self.last_insert_id = fields.affected_rows, fields.last_insert_id
            self.info = fields.info
            status, self.warnings = fields.status, fields.warnings
        else:
            eof = parse_eof(payload)
            status, self.warnings = eof.status, eof.warnings
        if status & SERVER_MORE_RESULTS_EXISTS:
            self._phase = _Phase.FIRST
        else:
            self.done = True

    def _failed(self, payload: bytes) -> None:
        self.error = err_fields(payload)
        self.done = True
