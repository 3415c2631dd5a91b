"""MySQL error codes as fecluster reports them, and the exception carrying them."""

from __future__ import annotations

UNKNOWN_THREAD = 1094
NOT_OWNER = 1095
UNKNOWN_QUERY = 1097
UNKNOWN_ERROR = 1105
ACCESS_DENIED = 1045
SPECIFIC_ACCESS_DENIED = 1227
TABLE_ACCESS_DENIED = 1142
DB_ACCESS_DENIED = 1044
WRONG_GRANT_USAGE = 1221
NO_SUCH_TABLE = 1146
UNKNOWN_TABLE = 1109
PARSE_ERROR = 1064
QUERY_INTERRUPTED = 1317
NO_SUCH_USER = 1133
CANNOT_USER = 1396
BAD_DB = 1049
DB_CREATE_EXISTS = 1007
DB_DROP_EXISTS = 1008
NO_DB = 1046
UNKNOWN_SYSTEM_VARIABLE = 1193
NOT_SUPPORTED = 1235
TOO_MANY_CONNECTIONS = 1040
INVALID_STRING = 1300
EMPTY_QUERY = 1065
SERVER_SHUTDOWN = 1053
NO_SUCH_FUNCTION = 1305
READ_ONLY_VARIABLE = 1238
CONNECTION_KILLED = 1927
STATEMENT_TIMEOUT = 3024
IDLE_TIMEOUT = 4031
USER_LIMIT_REACHED = 1203
WRONG_VALUE_FOR_VAR = 1231
CONN_HOST_ERROR = 2003  # client-side codes, relayed for the FE's backend connection
SERVER_LOST = 2013

SQLSTATES = {
    UNKNOWN_THREAD: "HY000",
    NOT_OWNER: "HY000",
    UNKNOWN_QUERY: "HY000",
    ACCESS_DENIED: "28000",
    SPECIFIC_ACCESS_DENIED: "42000",
    TABLE_ACCESS_DENIED: "42000",
    DB_ACCESS_DENIED: "42000",
    NO_SUCH_TABLE: "42S02",
    PARSE_ERROR: "42000",
    QUERY_INTERRUPTED: "70100",
    BAD_DB: "42000",
    NO_DB: "3D000",
    NOT_SUPPORTED: "42000",
    UNKNOWN_SYSTEM_VARIABLE: "HY000",
    TOO_MANY_CONNECTIONS: "08004",
    NO_SUCH_USER: "42000",
    SERVER_SHUTDOWN: "08S01",
    EMPTY_QUERY: "42000",
    NO_SUCH_FUNCTION: "42000",
    WRONG_VALUE_FOR_VAR: "42000",
    STATEMENT_TIMEOUT: "HY000",
    CONNECTION_KILLED: "70100",
    IDLE_TIMEOUT: "HY000",
    USER_LIMIT_REACHED: "42000",
}


def sqlstate(code: int) -> str:
    return SQLSTATES.get(code, "HY000")


class SqlError(Exception):
    """An error the client sees as a MySQL error packet (or its gRPC twin)."""

    def __init__(self, code: int, message: str, state: str | None = None) -> None:
        super().__init__(f"({code}) {message}")
        self.code = code
        self.message = message
        self.state = state  # the SQLSTATE a backend server gave, relayed as it is

    @property
    def sqlstate(self) -> str:
        return self.state or sqlstate(self.code)


def unknown_thread(conn_id: int | str) -> SqlError:
    return SqlError(UNKNOWN_THREAD, f"Unknown thread id: {conn_id}")


def not_owner(conn_id: int | str) -> SqlError:
    return SqlError(NOT_OWNER, f"You are not owner of thread {conn_id}")


def unknown_query(query_id: str) -> SqlError:
    return SqlError(UNKNOWN_QUERY, f"Unknown query id: {query_id}")


def interrupted(reason: str = "") -> SqlError:
    """1317, with who or what interrupted it when known ("by KILL QUERY from ...");
    the code stays 1317 so drivers behave as with MySQL."""
    return SqlError(QUERY_INTERRUPTED, f"Query execution was interrupted {reason}".rstrip())


def statement_timeout(limit: str) -> SqlError:
    return SqlError(
        STATEMENT_TIMEOUT, f"Query execution was interrupted, maximum statement execution time exceeded ({limit})"
    )


def idle_timeout(limit: str) -> SqlError:
    return SqlError(
        IDLE_TIMEOUT,
        "The client was disconnected by the server because of inactivity. See wait_timeout and "
        f"interactive_timeout for configuring this behavior. ({limit})",
    )


def too_many_user_connections(user: str) -> SqlError:
    return SqlError(USER_LIMIT_REACHED, f"User {user} already has more than 'max_user_connections' active connections")


def connection_killed() -> SqlError:
    """What MariaDB answers a KILL of one's own connection, before it closes."""
    return SqlError(CONNECTION_KILLED, "Connection was killed")
