from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KillKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KILL_CONNECTION: _ClassVar[KillKind]
    KILL_QUERY: _ClassVar[KillKind]
KILL_CONNECTION: KillKind
KILL_QUERY: KillKind

class SqlError(_message.Message):
    __slots__ = ("code", "sqlstate", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SQLSTATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    sqlstate: str
    message: str
    def __init__(self, code: _Optional[int] = ..., sqlstate: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ProcessRow(_message.Message):
    __slots__ = ("id", "user", "host", "login_time", "catalog", "db", "command", "time", "state", "query_id", "info", "fe", "cloud_cluster", "trace_id", "backend_host", "backend_thread")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    LOGIN_TIME_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    DB_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    FE_FIELD_NUMBER: _ClassVar[int]
    CLOUD_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_HOST_FIELD_NUMBER: _ClassVar[int]
    BACKEND_THREAD_FIELD_NUMBER: _ClassVar[int]
    id: int
    user: str
    host: str
    login_time: str
    catalog: str
    db: str
    command: str
    time: int
    state: str
    query_id: str
    info: str
    fe: str
    cloud_cluster: str
    trace_id: str
    backend_host: str
    backend_thread: int
    def __init__(self, id: _Optional[int] = ..., user: _Optional[str] = ..., host: _Optional[str] = ..., login_time: _Optional[str] = ..., catalog: _Optional[str] = ..., db: _Optional[str] = ..., command: _Optional[str] = ..., time: _Optional[int] = ..., state: _Optional[str] = ..., query_id: _Optional[str] = ..., info: _Optional[str] = ..., fe: _Optional[str] = ..., cloud_cluster: _Optional[str] = ..., trace_id: _Optional[str] = ..., backend_host: _Optional[str] = ..., backend_thread: _Optional[int] = ...) -> None: ...

class KillTarget(_message.Message):
    __slots__ = ("connection_id", "query_id", "trace_id", "user", "kind", "spare_connection_id")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SPARE_CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    connection_id: int
    query_id: str
    trace_id: str
    user: str
    kind: KillKind
    spare_connection_id: int
    def __init__(self, connection_id: _Optional[int] = ..., query_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., user: _Optional[str] = ..., kind: _Optional[_Union[KillKind, str]] = ..., spare_connection_id: _Optional[int] = ...) -> None: ...

class KillResult(_message.Message):
    __slots__ = ("error", "owner_fe", "request_id", "killed", "target_user")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KILLED_FIELD_NUMBER: _ClassVar[int]
    TARGET_USER_FIELD_NUMBER: _ClassVar[int]
    error: SqlError
    owner_fe: str
    request_id: int
    killed: int
    target_user: str
    def __init__(self, error: _Optional[_Union[SqlError, _Mapping]] = ..., owner_fe: _Optional[str] = ..., request_id: _Optional[int] = ..., killed: _Optional[int] = ..., target_user: _Optional[str] = ...) -> None: ...

class PeerKillRequest(_message.Message):
    __slots__ = ("requester", "requester_fe", "target", "request_id", "requester_host", "issued_at_us", "not_after_unix_ms")
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_HOST_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_US_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    requester: str
    requester_fe: str
    target: KillTarget
    request_id: int
    requester_host: str
    issued_at_us: int
    not_after_unix_ms: int
    def __init__(self, requester: _Optional[str] = ..., requester_fe: _Optional[str] = ..., target: _Optional[_Union[KillTarget, _Mapping]] = ..., request_id: _Optional[int] = ..., requester_host: _Optional[str] = ..., issued_at_us: _Optional[int] = ..., not_after_unix_ms: _Optional[int] = ...) -> None: ...

class PeerListRequest(_message.Message):
    __slots__ = ("requester", "where")
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    requester: str
    where: str
    def __init__(self, requester: _Optional[str] = ..., where: _Optional[str] = ...) -> None: ...

class PeerListReply(_message.Message):
    __slots__ = ("rows", "fe")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    FE_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ProcessRow]
    fe: str
    def __init__(self, rows: _Optional[_Iterable[_Union[ProcessRow, _Mapping]]] = ..., fe: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("user", "password", "database")
    USER_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    user: str
    password: str
    database: str
    def __init__(self, user: _Optional[str] = ..., password: _Optional[str] = ..., database: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("connection_id", "fe", "server_version")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    FE_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    connection_id: int
    fe: str
    server_version: str
    def __init__(self, connection_id: _Optional[int] = ..., fe: _Optional[str] = ..., server_version: _Optional[str] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("hello", "sql")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    sql: str
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., sql: _Optional[str] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("null", "int", "float", "text", "blob")
    NULL_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    FLOAT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    null: bool
    int: int
    float: float
    text: str
    blob: bytes
    def __init__(self, null: _Optional[bool] = ..., int: _Optional[int] = ..., float: _Optional[float] = ..., text: _Optional[str] = ..., blob: _Optional[bytes] = ...) -> None: ...

class Row(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Warning(_message.Message):
    __slots__ = ("level", "code", "message")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    level: str
    code: int
    message: str
    def __init__(self, level: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StatementResult(_message.Message):
    __slots__ = ("columns", "rows", "affected_rows", "warnings", "error", "query_id", "more")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_ROWS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    rows: _containers.RepeatedCompositeFieldContainer[Row]
    affected_rows: int
    warnings: _containers.RepeatedCompositeFieldContainer[Warning]
    error: SqlError
    query_id: str
    more: bool
    def __init__(self, columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[Row, _Mapping]]] = ..., affected_rows: _Optional[int] = ..., warnings: _Optional[_Iterable[_Union[Warning, _Mapping]]] = ..., error: _Optional[_Union[SqlError, _Mapping]] = ..., query_id: _Optional[str] = ..., more: _Optional[bool] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("welcome", "result")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    result: StatementResult
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., result: _Optional[_Union[StatementResult, _Mapping]] = ...) -> None: ...

class ShowProcesslistRequest(_message.Message):
    __slots__ = ("full", "local_only")
    FULL_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    full: bool
    local_only: bool
    def __init__(self, full: _Optional[bool] = ..., local_only: _Optional[bool] = ...) -> None: ...

class FeError(_message.Message):
    __slots__ = ("fe", "message")
    FE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    fe: str
    message: str
    def __init__(self, fe: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ShowProcesslistReply(_message.Message):
    __slots__ = ("rows", "errors")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ProcessRow]
    errors: _containers.RepeatedCompositeFieldContainer[FeError]
    def __init__(self, rows: _Optional[_Iterable[_Union[ProcessRow, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[FeError, _Mapping]]] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("sql",)
    SQL_FIELD_NUMBER: _ClassVar[int]
    sql: str
    def __init__(self, sql: _Optional[str] = ...) -> None: ...
