"""The MySQL protocol adapter, on mysql-mimic's extension points.

- ``FeIdentityProvider``: users from the cluster's user table (cached).
- ``FeControl``: connection ids from this FE's id space.
- ``MysqlSession``: binds a mysql-mimic connection to a ``frontend.session.Session``.
- ``FeConnection``: mysql-mimic's ``Connection`` with three changes it has no
  hook for: a refused login ends the connection (mysql-mimic would go on to the
  command phase), COM_QUERY answers carry affected rows and the warning count,
  and broken clients end quietly instead of with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import string
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mysql_mimic import IdentityProvider, User, packets
from mysql_mimic import errors as mimic_errors
from mysql_mimic.auth import AuthInfo, AuthState, Forbidden, NativePasswordAuthPlugin, Success
from mysql_mimic.connection import Connection
from mysql_mimic.control import Control, TooManyConnections
from mysql_mimic.errors import MysqlError
from mysql_mimic.results import AllowedResult, ResultColumn, infer_type
from mysql_mimic.server import MysqlServer
from mysql_mimic.session import BaseSession
from mysql_mimic.stream import ConnectionClosed, MysqlStream
from mysql_mimic.types import ColumnType
from mysql_mimic.variables import GlobalVariables, SessionVariables

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.ids import IdsExhausted
from frontend import tls
from frontend.executor import redact
from frontend.result import Result
from frontend.session import Session

if TYPE_CHECKING:
    from frontend.node import Node

log = logging.getLogger("fecluster.mysql")

# Error packets carry the SQLSTATE of our codes (mysql-mimic knows only its own).
mimic_errors.SQLSTATES.update({code: state.encode() for code, state in errors.SQLSTATES.items()})

_CLIENT_GONE = (ConnectionClosed, ConnectionError, asyncio.IncompleteReadError, EOFError)


_NONCE_CHARS = (string.ascii_letters + string.digits).encode()  # Connector/J decodes the nonce as ASCII


def fast_nonce(size: int = 20) -> bytes:
    """One urandom call (mysql-mimic makes one getrandom syscall per byte)."""
    return bytes(_NONCE_CHARS[b % len(_NONCE_CHARS)] for b in os.urandom(size))


class FastNativePassword(NativePasswordAuthPlugin):
    async def auth(self, auth_info: AuthInfo | None = None) -> AuthState:
        if auth_info and auth_info.handshake_plugin_name == self.name and auth_info.handshake_auth_data:
            nonce = auth_info.handshake_auth_data.rstrip(b"\x00")
        else:
            nonce = fast_nonce()
            auth_info = yield nonce + b"\x00"  # some clients expect the NUL
        if self.password_matches(user=auth_info.user, scramble=auth_info.data, nonce=nonce):
            yield Success(auth_info.user.name)
        else:
            yield Forbidden()


class FeIdentityProvider(IdentityProvider):
    def __init__(self, node: Node) -> None:
        self.node = node
        self._plugins = [FastNativePassword()]

    def get_plugins(self) -> list[NativePasswordAuthPlugin]:
        return self._plugins

    async def get_user(self, username: str) -> User | None:
        user = await self.node.users.get(username)
        if user is None:
            # An unknown user gets the same 1045 as a wrong password: a hash
            # nobody's scramble can match, so names cannot be probed.
            return User(name=username, auth_string=secrets.token_hex(20), auth_plugin=NativePasswordAuthPlugin.name)
        return User(name=user.name, auth_string=user.auth_string, auth_plugin=NativePasswordAuthPlugin.name)


class FeControl(Control):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def add(self, connection: Connection) -> int:
        try:
            return self.node.reserve_id()
        except IdsExhausted as e:
            raise TooManyConnections() from e

    async def remove(self, connection_id: int) -> None:
        self.node.release_id(connection_id)

    async def kill(self, connection_id: int, kind: Any = None) -> None:  # routed by our executor instead
        raise NotImplementedError


class MysqlSession(BaseSession):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.variables = SessionVariables(GlobalVariables(node.variable_schema))
        self.username: str | None = None
        self.database: str | None = None
        self.core: Session | None = None

    async def init(self, connection: Connection) -> None:
        assert isinstance(connection, FeConnection) and self.username is not None
        if not self.node.accepting:
            raise SqlError(errors.SERVER_SHUTDOWN, "Server shutdown in progress")
        user = await self.node.users.get(self.username)
        if user is None:
            raise SqlError(errors.ACCESS_DENIED, f"Access denied for user '{self.username}'")
        core = Session(
            self.node,
            connection.connection_id,
            user,
            connection.peer,
            "mysql",
            connection.close_by_kill,
            self.variables,
        )
        if self.database:
            await core.use(self.database)
        self.core = core
        self.node.open_session(core)

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> AllowedResult:
        """Prepared statements and COM_FIELD_LIST come here; COM_QUERY is FeConnection's."""
        assert self.core is not None
        try:
            result = await self.core.execute(sql)
        except SqlError as e:
            raise MysqlError(e.message, e.code) from e  # type: ignore[arg-type]
        return (result.rows, result.columns) if result.columns else None

    async def use(self, database: str) -> None:
        assert self.core is not None
        try:
            await self.core.use(database)
        except SqlError as e:
            raise MysqlError(e.message, e.code) from e  # type: ignore[arg-type]

    async def close(self) -> None:
        if self.core is not None:
            await self.node.close_session(self.core)


class FeConnection(Connection):
    session: MysqlSession

    @property
    def peer(self) -> str:
        try:
            peer = self.stream.writer.get_extra_info("peername") or ("", 0)
        except RuntimeError:  # uvloop: the client already closed the transport
            return "?"
        return f"{peer[0]}:{peer[1]}"

    def close_by_kill(self) -> None:
        # Stop reading and hand the command loop an EOF: it ends after the
        # running statement (if any) has written its 1317. A client that has
        # stopped reading can keep us in a write forever: cut it off after 1 s.
        transport = self.stream.writer.transport
        if not transport.is_closing():
            transport.pause_reading()
            asyncio.get_running_loop().call_later(1.0, _abort_if_open, transport)
        self.stream.reader.feed_eof()

    async def _start(self) -> None:
        try:
            await self.connection_phase()
        except Exception as e:  # noqa: BLE001 - bad handshakes must never take the node down
            log.debug("handshake from %s failed: %r", self.peer, e)
            return
        if self.session.username is None:
            return  # login refused; the client has its 1045
        try:
            await self.session.init(self)
        except SqlError as e:
            await self._write_error(e)
            return
        try:
            await self.command_phase()
        except _CLIENT_GONE:
            pass
        except MysqlError as e:  # malformed framing from the client
            log.info("closing connection %d: %s", self.connection_id, e.msg)
        except Exception as e:  # noqa: BLE001 - a broken client ends its own connection only
            log.info("connection %d ended: %r", self.connection_id, e)
        finally:
            await self.session.close()

    async def handle_change_user(self, data: bytes) -> None:
        # mysql-mimic would rename the session but keep the old user's
        # privileges and registry row; refuse rather than get that wrong.
        await self._write_error(SqlError(errors.NOT_SUPPORTED, "COM_CHANGE_USER is not supported: reconnect instead"))

    async def _write_error(self, e: SqlError) -> None:
        await self.stream.write(self.error(msg=e.message, code=e.code))

    async def handle_query(self, data: bytes) -> None:
        try:
            com_query = packets.parse_com_query(
                capabilities=self.capabilities, client_charset=self.client_charset, data=data
            )
        except (UnicodeDecodeError, ValueError, IndexError) as e:
            await self._write_error(SqlError(errors.INVALID_STRING, f"Malformed COM_QUERY: {e}"))
            return
        assert self.session.core is not None
        try:
            result = await self.session.core.execute(com_query.sql)
        except SqlError as e:
            await self._write_error(e)
            return
        except Exception as e:  # a bug of ours: say so in the log, answer 1105, keep the session
            log.exception("statement failed on connection %d: %r", self.connection_id, redact(com_query.sql)[:200])
            await self._write_error(SqlError(errors.UNKNOWN_ERROR, f"internal error: {e!r}"))
            return
        if not result.has_rows:
            await self.stream.write(self.ok(affected_rows=result.affected_rows, warnings=len(result.warnings)))
            return
        await self._write_rows(result)

    async def _write_rows(self, result: Result) -> None:
        columns = result_columns(result)
        header = [packets.make_column_count(capabilities=self.capabilities, column_count=len(columns))]
        header.extend(
            packets.make_column_definition_41(
                server_charset=self.server_charset,
                name=column.name,
                column_type=column.type,
                character_set=column.character_set,
            )
            for column in columns
        )
        if not self.deprecate_eof():
            header.append(self.eof())
        self.stream.write_many(header)
        if result.rows:
            self.stream.write_text_rows(result.rows, columns)
        await self.stream.write(self.ok_or_eof(affected_rows=len(result.rows), warnings=len(result.warnings)))


def _abort_if_open(transport: asyncio.BaseTransport) -> None:
    with contextlib.suppress(Exception):
        if not transport.is_closing():
            transport.abort()  # type: ignore[attr-defined]


@lru_cache(maxsize=4096)
def _column(name: str, column_type: ColumnType) -> ResultColumn:
    return ResultColumn(name=name, type=column_type)


def result_columns(result: Result) -> list[ResultColumn]:
    """Column types from the first non-NULL value of each column (mysql-mimic's
    rule), computed synchronously: its ``ensure_result_set`` wraps every result
    in an async generator, which costs a task and an extra loop turn per answer."""
    columns = []
    for i, name in enumerate(result.columns):
        value = next((row[i] for row in result.rows if row[i] is not None), None)
        columns.append(_column(name, ColumnType.NULL if value is None else infer_type(value)))
    return columns


FENCED_MESSAGE = "this FE lost its registry lease; reconnect"


class FeMysqlServer(MysqlServer):
    def __init__(self, node: Node, **kwargs: Any) -> None:
        super().__init__(
            session_factory=lambda: MysqlSession(node),
            control=FeControl(node),
            identity_provider=FeIdentityProvider(node),
            **kwargs,
        )
        self.connections: set[FeConnection] = set()

    async def _client_connected_cb(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = MysqlStream(reader, writer)
        connection = FeConnection(
            stream=stream,
            session=MysqlSession(self.control.node),  # type: ignore[attr-defined]
            control=self.control,
            server_capabilities=self.capabilities,
            identity_provider=self.identity_provider,
            ssl=self.ssl,
        )
        if self.control.node.membership.fenced:  # type: ignore[attr-defined]
            # before the handshake, like "Too many connections": the client sees it at connect()
            await stream.write(connection.error(msg=FENCED_MESSAGE, code=errors.SERVER_SHUTDOWN))
            writer.close()
            return
        try:
            connection.connection_id = await self.control.add(connection)
        except TooManyConnections:
            await stream.write(connection.error(msg="Too many connections", code=errors.TOO_MANY_CONNECTIONS))
            writer.close()
            return
        self.connections.add(connection)
        try:
            await connection.start()
        except Exception:
            log.exception("connection %d failed", connection.connection_id)
        finally:
            self.connections.discard(connection)
            writer.close()
            await self.control.remove(connection.connection_id)


class MysqlListener:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.server = FeMysqlServer(node, ssl=tls.mysql_ssl_context(node.config))

    async def start(self) -> None:
        cfg = self.node.config
        await self.server.start_server(host=cfg.bind_host, port=cfg.mysql_port, reuse_address=True, backlog=4096)

    async def stop_accepting(self) -> None:
        self.server.close()

    async def stop(self) -> None:
        for connection in list(self.server.connections):
            _abort_if_open(connection.stream.writer.transport)
