"""What tools read about tables: DESCRIBE, SHOW [FULL] COLUMNS, SHOW CREATE
TABLE, SHOW INDEX, and ``information_schema`` SCHEMATA, TABLES, COLUMNS,
STATISTICS and KEY_COLUMN_USAGE (built by the FE from the backend's catalogue,
only what the user may see, then the query evaluated over those rows off the
event loop)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.privileges import may_see_database, may_see_table
from frontend.backend import Column, Index
from frontend.result import Result
from frontend.sqltext import FLAGS, STRING, like, unescape, unquote
from frontend.statements import Handlers, Services

if TYPE_CHECKING:
    from frontend.session import Session

_NAME = r"(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)"
_TABLE = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
_DESCRIBE = re.compile(rf"^(?:describe|desc)\s+{_TABLE}$", FLAGS)
_SHOW_COLUMNS = re.compile(
    rf"^show\s+(full\s+)?(?:columns|fields)\s+(?:from|in)\s+{_TABLE}(?:\s+(?:from|in)\s+{_NAME})?"
    rf"(?:\s+like\s+{STRING})?$",
    FLAGS,
)
_SHOW_CREATE_TABLE = re.compile(rf"^show\s+create\s+table\s+{_TABLE}$", FLAGS)
_SHOW_INDEX = re.compile(
    rf"^show\s+(?:index|indexes|keys)\s+(?:from|in)\s+{_TABLE}(?:\s+(?:from|in)\s+{_NAME})?$", FLAGS
)
_SHOW_TABLE_STATUS = re.compile(rf"^show\s+table\s+status(?:\s+(?:from|in)\s+{_NAME})?(?:\s+like\s+{STRING})?$", FLAGS)
_SHOW_STATUS = re.compile(rf"^show\s+(?:global\s+|session\s+)?status(?:\s+like\s+{STRING})?$", FLAGS)
_SHOW_ENGINES = re.compile(r"^show\s+(?:storage\s+)?engines$", FLAGS)
_SHOW_CHARSET = re.compile(rf"^show\s+(?:charset|character\s+set)(?:\s+like\s+{STRING})?$", FLAGS)
_SHOW_COLLATION = re.compile(rf"^show\s+collation(?:\s+like\s+{STRING})?$", FLAGS)
INFORMATION_SCHEMA = "information_schema"
# A MySQL server's own schemas, which the embedded backend does not have: tools
# probe them, and are answered as a user without access to them is (1044, 1142).
SYSTEM_SCHEMAS = frozenset({"mysql", "performance_schema", "sys"})

# What the embedded backend offers, in MySQL's rows (values as MariaDB 10.11 gives them).
# One engine: SQLite, named InnoDB as every table reports it (SHOW CREATE TABLE,
# information_schema.TABLES), since tools look for InnoDB to decide that
# transactions, savepoints and foreign keys are there. No XA.
ENGINES = (("InnoDB", "DEFAULT", "SQLite (embedded): transactions, savepoints, foreign keys", "YES", "NO", "YES"),)
CHARSETS = (  # (Charset, Description, Default collation, Maxlen)
    ("ascii", "US ASCII", "ascii_general_ci", 1),
    ("binary", "Binary pseudo charset", "binary", 1),
    ("latin1", "cp1252 West European", "latin1_swedish_ci", 1),
    ("utf8mb3", "UTF-8 Unicode", "utf8mb3_general_ci", 3),
    ("utf8mb4", "UTF-8 Unicode", "utf8mb4_general_ci", 4),
)
COLLATIONS = (  # (Collation, Charset, Id, Default, Compiled, Sortlen)
    ("ascii_bin", "ascii", 65, "", "Yes", 1),
    ("ascii_general_ci", "ascii", 11, "Yes", "Yes", 1),
    ("binary", "binary", 63, "Yes", "Yes", 1),
    ("latin1_bin", "latin1", 47, "", "Yes", 1),
    ("latin1_general_ci", "latin1", 48, "", "Yes", 1),
    ("latin1_swedish_ci", "latin1", 8, "Yes", "Yes", 1),
    ("utf8mb3_bin", "utf8mb3", 83, "", "Yes", 1),
    ("utf8mb3_general_ci", "utf8mb3", 33, "Yes", "Yes", 1),
    ("utf8mb3_unicode_ci", "utf8mb3", 192, "", "Yes", 8),
    ("utf8mb4_bin", "utf8mb4", 46, "", "Yes", 1),
    ("utf8mb4_general_ci", "utf8mb4", 45, "Yes", "Yes", 1),
    ("utf8mb4_unicode_520_ci", "utf8mb4", 246, "", "Yes", 8),
    ("utf8mb4_unicode_ci", "utf8mb4", 224, "", "Yes", 8),
)


def mysql_type(declared: str) -> str:
    """The backend's declared type as MySQL's DESCRIBE spells it."""
    text = declared.strip()
    base, _, rest = text.partition("(")
    args = f"({rest}" if rest else ""
    upper = base.strip().upper()
    mapping = {
        "INTEGER": "int",
        "INT": "int",
        "UINT": "int unsigned",
        "BIGINT": "bigint",
        "REAL": "double",
        "DOUBLE": "double",
        "FLOAT": "float",
        "TEXT": "varchar" if args else "text",
        "BLOB": "blob",
        "": "text",
    }
    return mapping.get(upper, upper.lower()) + args.replace(" ", "")


def _table_ref(session: Session, first: str, second: str | None, from_db: str | None = None) -> tuple[str, str]:
    db: str | None
    if second is not None:
        db, table = unquote(first), unquote(second)
    else:
        db, table = (unquote(from_db) if from_db else session.db), unquote(first)
    if not db:
        raise SqlError(errors.NO_DB, "No database selected")
    return db, table


def system_table_denied(session: Session, table: str) -> SqlError:
    return SqlError(
        errors.TABLE_ACCESS_DENIED, f"SELECT command denied to user '{session.user}'@'%' for table '{table}'"
    )


async def _columns(services: Services, session: Session, db: str, table: str) -> list[Column]:
    if db.lower() in SYSTEM_SCHEMAS:
        raise system_table_denied(session, table)
    if not may_see_table(services.accounts.cached(session.user), db, table, services.backend.names_fold_case):
        raise SqlError(
            errors.TABLE_ACCESS_DENIED, f"SELECT command denied to user '{session.user}'@'%' for table '{table}'"
        )
    return await services.backend.columns(db, table)


def _default(column: Column) -> str | None:
    value = column.default
    if value is None or value.upper() == "NULL":
        return None
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


async def describe(services: Services, session: Session, m: re.Match[str]) -> Result:
    db, table = _table_ref(session, m.group(1), m.group(2))
    return describe_rows(await _columns(services, session, db, table))


async def show_columns(services: Services, session: Session, m: re.Match[str]) -> Result:
    db, table = _table_ref(session, m.group(2), m.group(3), m.group(4))
    columns = await _columns(services, session, db, table)
    if m.group(5) is not None:
        pattern = unescape(m.group(5))
        columns = [c for c in columns if like(pattern, c.name)]
    if not m.group(1):
        return describe_rows(columns)
    rows = [
        (c.name, mysql_type(c.declared_type), _charset(c)[1], "YES" if c.nullable else "NO",
         "PRI" if c.primary_key else "", _default(c), _extra(c), "select,insert,update,references",
         getattr(c, "comment", ""))
        for c in columns
    ]  # fmt: skip
    names = ["Field", "Type", "Collation", "Null", "Key", "Default", "Extra", "Privileges", "Comment"]
    return Result(names, rows)


def _extra(column: Column) -> str:
    return "auto_increment" if getattr(column, "auto_increment", False) else ""


def _charset(column: Column) -> tuple[str | None, str | None]:
    """(CHARACTER_SET_NAME, COLLATION_NAME) as MySQL reports them: text columns only."""
    if mysql_type(column.declared_type).split("(")[0] not in _TEXT_TYPES:
        return None, None
    charset = getattr(column, "charset", None) or "utf8mb4"
    collation = getattr(column, "collation", None) or f"{charset}_general_ci"
    return charset, collation


_TEXT_TYPES = {"varchar", "char", "text", "tinytext", "mediumtext", "longtext", "enum", "set"}


def describe_rows(columns: list[Column]) -> Result:
    rows = [
        (c.name, mysql_type(c.declared_type), "YES" if c.nullable else "NO", "PRI" if c.primary_key else "",
         _default(c), _extra(c))
        for c in columns
    ]  # fmt: skip
    return Result(["Field", "Type", "Null", "Key", "Default", "Extra"], rows)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def create_table_text(table: str, columns: list[Column], notes: Any = None, indexes: list[Index] | None = None) -> str:
    """SHOW CREATE TABLE's text, in the shape MySQL prints (tools parse it line by line:
    SQLAlchemy reads the keys from it). ``notes``: the backend's table notes
    (COMMENT, FOREIGN KEYs), if it keeps them; ``indexes``: its secondary keys."""
    lines = []
    for c in columns:
        line = f"  {_quote(c.name)} {mysql_type(c.declared_type)}"
        charset, collation = getattr(c, "charset", None), getattr(c, "collation", None)
        if charset:
            line += f" CHARACTER SET {charset}"
        if collation:
            line += f" COLLATE {collation}"
        if not c.nullable:
            line += " NOT NULL"
        default = c.default
        if default is not None:
            line += f" DEFAULT {default}"
        elif c.nullable:
            line += " DEFAULT NULL"
        if _extra(c):
            line += " AUTO_INCREMENT"
        if getattr(c, "comment", ""):
            line += f" COMMENT {_string(c.comment)}"  # type: ignore[attr-defined]
        lines.append(line)
    keys = [_quote(c.name) for c in columns if c.primary_key]
    if keys:
        lines.append(f"  PRIMARY KEY ({','.join(keys)})")
    others = [i for i in indexes or () if i.name.upper() != "PRIMARY"]
    for index in sorted(others, key=lambda i: not i.unique):  # MySQL lists UNIQUE keys first
        kind = "UNIQUE KEY" if index.unique else "KEY"
        lines.append(f"  {kind} {_quote(index.name)} ({','.join(map(_quote, index.columns))})")
    for key in getattr(notes, "foreign_keys", ()):
        line = (
            f"  CONSTRAINT {_quote(key.name)} FOREIGN KEY ({', '.join(map(_quote, key.columns))})"
            f" REFERENCES {_quote(key.referenced_table)} ({', '.join(map(_quote, key.referenced_columns))})"
        )
        for verb, action in (("DELETE", key.on_delete), ("UPDATE", key.on_update)):
            if action and action.upper() not in ("NO ACTION", "RESTRICT"):
                line += f" ON {verb} {action.upper()}"
        lines.append(line)
    body = ",\n".join(lines)
    text = f"CREATE TABLE {_quote(table)} (\n{body}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    comment = getattr(notes, "comment", "")
    return text + (f" COMMENT={_string(comment)}" if comment else "")


async def _table_notes(services: Services, db: str, table: str) -> Any:
    read = getattr(services.backend, "table_notes", None)  # the embedded backend's; a server has its own
    return await read(db, table) if read is not None else None


async def show_create_table(services: Services, session: Session, m: re.Match[str]) -> Result:
    db, table = _table_ref(session, m.group(1), m.group(2))
    columns = await _columns(services, session, db, table)
    notes = await _table_notes(services, db, table)
    indexes = await services.backend.indexes(db, table)
    return Result(["Table", "Create Table"], [(table, create_table_text(table, columns, notes, indexes))])


_INDEX_COLUMNS = (
    "Table", "Non_unique", "Key_name", "Seq_in_index", "Column_name", "Collation", "Cardinality", "Sub_part",
    "Packed", "Null", "Index_type", "Comment", "Index_comment", "Visible", "Expression",
)  # fmt: skip


def _keys(columns: list[Column], indexes: list[Index]) -> list[Index]:
    """The table's keys as MySQL lists them: PRIMARY (from the columns, in key
    order when the backend gives positions), then the backend's other indexes."""
    primary = sorted((c for c in columns if c.primary_key), key=lambda c: int(c.primary_key))
    keys = [Index("PRIMARY", True, [c.name for c in primary])] if primary else []
    return keys + [i for i in indexes if i.name.upper() != "PRIMARY"]


def _key_parts(columns: list[Column], keys: list[Index]) -> list[tuple[Index, int, str, str]]:
    """(key, position in it, column, NULLABLE as MySQL spells it) for every column of every key.
    A PRIMARY KEY's columns are NOT NULL in MySQL whatever was declared."""
    nullable = {c.name.lower(): c.nullable for c in columns}
    return [
        (key, seq, name, "YES" if key.name != "PRIMARY" and nullable.get(name.lower(), True) else "")
        for key in keys
        for seq, name in enumerate(key.columns, 1)
    ]


async def show_index(services: Services, session: Session, m: re.Match[str]) -> Result:
    db, table = _table_ref(session, m.group(1), m.group(2), m.group(3))
    columns = await _columns(services, session, db, table)
    keys = _keys(columns, await services.backend.indexes(db, table))
    rows = [
        (table, 0 if key.unique else 1, key.name, seq, name, "A", None, None, None, null, "BTREE", "", "", "YES",
         None)
        for key, seq, name, null in _key_parts(columns, keys)
    ]  # fmt: skip
    return Result(list(_INDEX_COLUMNS), rows)


_TABLE_STATUS_COLUMNS = (
    "Name", "Engine", "Version", "Row_format", "Rows", "Avg_row_length", "Data_length", "Max_data_length",
    "Index_length", "Data_free", "Auto_increment", "Create_time", "Update_time", "Check_time", "Collation",
    "Checksum", "Create_options", "Comment",
)  # fmt: skip


async def show_table_status(services: Services, session: Session, m: re.Match[str]) -> Result:
    db = unquote(m.group(1)) if m.group(1) else session.db
    if not db:
        raise SqlError(errors.NO_DB, "No database selected")
    user = services.accounts.cached(session.user)
    if db.lower() in SYSTEM_SCHEMAS or not may_see_database(user, db, services.backend.names_fold_case):
        raise SqlError(errors.DB_ACCESS_DENIED, f"Access denied for user '{session.user}'@'%' to database '{db}'")
    if not await services.backend.has_database(db):
        raise SqlError(errors.BAD_DB, f"Unknown database '{db}'")
    names = [
        t for t in await services.backend.tables(db) if may_see_table(user, db, t, services.backend.names_fold_case)
    ]
    if m.group(2) is not None:
        pattern = unescape(m.group(2))
        names = [t for t in names if like(pattern, t)]
    rows = [
        (t, "InnoDB", 10, "Dynamic", None, None, None, None, None, None, None, None, None, None,
         "utf8mb4_general_ci", None, "", "")
        for t in names
    ]  # fmt: skip
    return Result(list(_TABLE_STATUS_COLUMNS), rows)


async def show_status(services: Services, session: Session, m: re.Match[str]) -> Result:
    """The client link's TLS (how libmariadb clients learn they are encrypted);
    the FE keeps no other MySQL status counters."""
    version, cipher = session.tls or ("", "")
    rows = [("Ssl_cipher", cipher), ("Ssl_version", version)]
    if m.group(1) is not None:
        pattern = unescape(m.group(1))
        rows = [r for r in rows if like(pattern, r[0])]
    return Result(["Variable_name", "Value"], rows)


def _like_filtered(rows: tuple[tuple[Any, ...], ...], pattern: str | None) -> list[tuple[Any, ...]]:
    if pattern is None:
        return list(rows)
    text = unescape(pattern)
    return [r for r in rows if like(text, r[0])]


async def show_engines(services: Services, session: Session, m: re.Match[str]) -> Result:
    return Result(["Engine", "Support", "Comment", "Transactions", "XA", "Savepoints"], list(ENGINES))


async def show_charset(services: Services, session: Session, m: re.Match[str]) -> Result:
    return Result(["Charset", "Description", "Default collation", "Maxlen"], _like_filtered(CHARSETS, m.group(1)))


async def show_collation(services: Services, session: Session, m: re.Match[str]) -> Result:
    return Result(
        ["Collation", "Charset", "Id", "Default", "Compiled", "Sortlen"], _like_filtered(COLLATIONS, m.group(1))
    )


# ------------------------------------------------------------------ information_schema

_SCHEMATA = ("CATALOG_NAME", "SCHEMA_NAME", "DEFAULT_CHARACTER_SET_NAME", "DEFAULT_COLLATION_NAME", "SQL_PATH")
_TABLES = (
    "TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "TABLE_TYPE", "ENGINE", "VERSION", "ROW_FORMAT", "TABLE_ROWS",
    "CREATE_TIME", "UPDATE_TIME", "TABLE_COLLATION", "TABLE_COMMENT",
)  # fmt: skip
_COLUMNS = (
    "TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "COLUMN_NAME", "ORDINAL_POSITION", "COLUMN_DEFAULT",
    "IS_NULLABLE", "DATA_TYPE", "CHARACTER_MAXIMUM_LENGTH", "CHARACTER_OCTET_LENGTH", "NUMERIC_PRECISION",
    "NUMERIC_SCALE", "DATETIME_PRECISION", "CHARACTER_SET_NAME", "COLLATION_NAME", "COLUMN_TYPE", "COLUMN_KEY",
    "EXTRA", "PRIVILEGES", "COLUMN_COMMENT", "IS_GENERATED", "GENERATION_EXPRESSION",
)  # fmt: skip
_REFERENTIAL_CONSTRAINTS = (
    "CONSTRAINT_CATALOG", "CONSTRAINT_SCHEMA", "CONSTRAINT_NAME", "UNIQUE_CONSTRAINT_CATALOG",
    "UNIQUE_CONSTRAINT_SCHEMA", "UNIQUE_CONSTRAINT_NAME", "MATCH_OPTION", "UPDATE_RULE", "DELETE_RULE",
    "TABLE_NAME", "REFERENCED_TABLE_NAME",
)  # fmt: skip
_TABLE_CONSTRAINTS = (
    "CONSTRAINT_CATALOG", "CONSTRAINT_SCHEMA", "CONSTRAINT_NAME", "TABLE_SCHEMA", "TABLE_NAME", "CONSTRAINT_TYPE",
)  # fmt: skip
_ROUTINES = (
    "SPECIFIC_NAME", "ROUTINE_CATALOG", "ROUTINE_SCHEMA", "ROUTINE_NAME", "ROUTINE_TYPE", "DATA_TYPE",
    "CHARACTER_MAXIMUM_LENGTH", "CHARACTER_OCTET_LENGTH", "NUMERIC_PRECISION", "NUMERIC_SCALE", "DATETIME_PRECISION",
    "CHARACTER_SET_NAME", "COLLATION_NAME", "DTD_IDENTIFIER", "ROUTINE_BODY", "ROUTINE_DEFINITION", "EXTERNAL_NAME",
    "EXTERNAL_LANGUAGE", "PARAMETER_STYLE", "IS_DETERMINISTIC", "SQL_DATA_ACCESS", "SQL_PATH", "SECURITY_TYPE",
    "CREATED", "LAST_ALTERED", "SQL_MODE", "ROUTINE_COMMENT", "DEFINER", "CHARACTER_SET_CLIENT",
    "COLLATION_CONNECTION", "DATABASE_COLLATION",
)  # fmt: skip
_TRIGGERS = (
    "TRIGGER_CATALOG", "TRIGGER_SCHEMA", "TRIGGER_NAME", "EVENT_MANIPULATION", "EVENT_OBJECT_CATALOG",
    "EVENT_OBJECT_SCHEMA", "EVENT_OBJECT_TABLE", "ACTION_ORDER", "ACTION_CONDITION", "ACTION_STATEMENT",
    "ACTION_ORIENTATION", "ACTION_TIMING", "ACTION_REFERENCE_OLD_TABLE", "ACTION_REFERENCE_NEW_TABLE",
    "ACTION_REFERENCE_OLD_ROW", "ACTION_REFERENCE_NEW_ROW", "CREATED", "SQL_MODE", "DEFINER",
    "CHARACTER_SET_CLIENT", "COLLATION_CONNECTION", "DATABASE_COLLATION",
)  # fmt: skip
_VIEWS = (
    "TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "VIEW_DEFINITION", "CHECK_OPTION", "IS_UPDATABLE", "DEFINER",
    "SECURITY_TYPE", "CHARACTER_SET_CLIENT", "COLLATION_CONNECTION", "ALGORITHM",
)  # fmt: skip
# Empty here: the embedded backend has no stored routines, and its triggers and views are not listed yet.
_EMPTY = {"routines": _ROUTINES, "triggers": _TRIGGERS, "views": _VIEWS}
_STATISTICS = (
    "TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "NON_UNIQUE", "INDEX_SCHEMA", "INDEX_NAME", "SEQ_IN_INDEX",
    "COLUMN_NAME", "COLLATION", "CARDINALITY", "SUB_PART", "PACKED", "NULLABLE", "INDEX_TYPE", "COMMENT",
    "INDEX_COMMENT",
)  # fmt: skip
_KEY_COLUMN_USAGE = (
    "CONSTRAINT_CATALOG", "CONSTRAINT_SCHEMA", "CONSTRAINT_NAME", "TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME",
    "COLUMN_NAME", "ORDINAL_POSITION", "POSITION_IN_UNIQUE_CONSTRAINT", "REFERENCED_TABLE_SCHEMA",
    "REFERENCED_TABLE_NAME", "REFERENCED_COLUMN_NAME",
)  # fmt: skip
_ENGINES = ("ENGINE", "SUPPORT", "COMMENT", "TRANSACTIONS", "XA", "SAVEPOINTS")
_CHARACTER_SETS = ("CHARACTER_SET_NAME", "DEFAULT_COLLATE_NAME", "DESCRIPTION", "MAXLEN")
_COLLATIONS = ("COLLATION_NAME", "CHARACTER_SET_NAME", "ID", "IS_DEFAULT", "IS_COMPILED", "SORTLEN")
# The same rows as SHOW ENGINES / CHARSET / COLLATION, in the tables' column order.
_FIXED: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {
    "engines": (_ENGINES, list(ENGINES)),
    "character_sets": (_CHARACTER_SETS, [(c, collation, d, n) for c, d, collation, n in CHARSETS]),
    "collations": (_COLLATIONS, list(COLLATIONS)),
}
SUPPORTED = {
    "schemata", "tables", "columns", "statistics", "key_column_usage", "referential_constraints",
    "table_constraints", "routines", "triggers", "views", *_FIXED,
}  # fmt: skip


def information_schema_tables(tree: exp.Expr, current_db: str | None) -> set[str] | None:
    """The information_schema tables ``tree`` reads, or None if it reads none.
    SqlError 1235 for a query mixing them with data tables, 1109 for one we do not have."""
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    found, other = set(), False
    for t in tree.find_all(exp.Table):
        if not t.name or (not t.db and t.name.lower() in ctes):
            continue
        db = (t.db or current_db or "").lower()
        if db == INFORMATION_SCHEMA:
            found.add(t.name.lower())
        else:
            other = True
    if not found:
        return None
    if other:
        raise SqlError(errors.NOT_SUPPORTED, "information_schema cannot be joined with data tables")
    unknown = found - SUPPORTED
    if unknown:
        raise SqlError(errors.UNKNOWN_TABLE, f"Unknown table '{sorted(unknown)[0]}' in information_schema")
    return found


async def _visible(services: Services, session: Session) -> list[tuple[str, list[str]]]:
    user = services.accounts.cached(session.user)
    out = []
    for db in await services.backend.databases():
        if may_see_database(user, db, services.backend.names_fold_case):
            out.append(
                (
                    db,
                    [
                        t
                        for t in await services.backend.tables(db) + await views_of(services, db)
                        if may_see_table(user, db, t, services.backend.names_fold_case)
                    ],
                )
            )
    return out


async def views_of(services: Services, db: str) -> list[str]:
    """The database's views, when the backend lists them apart (the embedded one)."""
    views = getattr(services.backend, "views", None)
    return list(await views(db)) if views is not None else []


def _rule(action: str) -> str:
    """A FOREIGN KEY's action as InnoDB reports it (SQLite's default NO ACTION is InnoDB's RESTRICT)."""
    action = (action or "").upper()
    return "RESTRICT" if action in ("", "NO ACTION") else action


# CHARACTER_MAXIMUM_LENGTH of the BLOB and TEXT types (bytes: their octet length too)
_LOB_LENGTHS = {
    "tinyblob": 255, "blob": 65535, "mediumblob": 16777215, "longblob": 4294967295,
    "tinytext": 255, "text": 65535, "mediumtext": 16777215, "longtext": 4294967295,
}  # fmt: skip
_INT_PRECISION = {"tinyint": 3, "smallint": 5, "mediumint": 7, "int": 10, "bigint": 19}


def _type_parts(declared: str) -> tuple[str, int | None, int | None, int | None]:
    column_type = mysql_type(declared)
    base, _, rest = column_type.partition("(")
    numbers = [int(n) for n in re.findall(r"\d+", rest)]
    if base in ("varchar", "char"):
        return base, numbers[0] if numbers else None, None, None
    if base in _LOB_LENGTHS:
        return base, _LOB_LENGTHS[base], None, None
    if base == "decimal":
        return base, None, numbers[0] if numbers else 10, numbers[1] if len(numbers) > 1 else 0
    return base.split(" ")[0], None, None, None


def _octets(data_type: str, length: int | None) -> int | None:
    if length is None:
        return None
    return length if data_type in _LOB_LENGTHS else length * 4  # utf8mb4: 4 bytes a character


class _Catalogue:
    """One query's reads of the backend's catalogue, each table's read once
    (a join of COLUMNS and STATISTICS asks twice). A table dropped since it was
    listed has no rows."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._columns: dict[tuple[str, str], list[Column]] = {}
        self._key_parts: dict[tuple[str, str], list[tuple[Index, int, str, str]]] = {}
        self._notes: dict[tuple[str, str], Any] = {}

    async def notes(self, db: str, table: str) -> Any:
        """The backend's table notes (COMMENT, FOREIGN KEYs), None when it keeps none."""
        if (db, table) not in self._notes:
            try:
                self._notes[db, table] = await _table_notes(self.services, db, table)
            except SqlError as e:
                if e.code not in (errors.NO_SUCH_TABLE, errors.BAD_DB):
                    raise
                self._notes[db, table] = None
        return self._notes[db, table]

    async def columns(self, db: str, table: str) -> list[Column]:
        if (db, table) not in self._columns:
            try:
                self._columns[db, table] = await self.services.backend.columns(db, table)
            except SqlError as e:
                if e.code not in (errors.NO_SUCH_TABLE, errors.BAD_DB):
                    raise
                self._columns[db, table] = []
        return self._columns[db, table]

    async def key_parts(self, db: str, table: str) -> list[tuple[Index, int, str, str]]:
        if (db, table) not in self._key_parts:
            columns = await self.columns(db, table)
            try:
                indexes = await self.services.backend.indexes(db, table) if columns else []
            except SqlError as e:
                if e.code not in (errors.NO_SUCH_TABLE, errors.BAD_DB):
                    raise
                columns, indexes = [], []
            self._key_parts[db, table] = _key_parts(columns, _keys(columns, indexes))
        return self._key_parts[db, table]


async def information_schema_query(services: Services, session: Session, tree: exp.Expr, names: set[str]) -> Result:
    visible = await _visible(services, session)
    catalogue = _Catalogue(services)
    tables: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {}
    rows: list[tuple[Any, ...]]  # each table's own shape
    if "schemata" in names:
        rows = [("def", INFORMATION_SCHEMA, "utf8mb4", "utf8mb4_general_ci", None)]
        rows += [("def", db, "utf8mb4", "utf8mb4_general_ci", None) for db, _ in visible]
        tables["schemata"] = (_SCHEMATA, rows)
    if "tables" in names:
        views = {(db, v) for db, _ in visible for v in await views_of(services, db)}
        rows = [
            ("def", db, t, "VIEW", None, None, None, None, None, None, None, "VIEW")
            if (db, t) in views
            else ("def", db, t, "BASE TABLE", "InnoDB", 10, "Dynamic", None, None, None, "utf8mb4_general_ci",
                  getattr(await catalogue.notes(db, t), "comment", ""))
            for db, names_ in visible
            for t in names_
        ]  # fmt: skip
        tables["tables"] = (_TABLES, rows)
    if "columns" in names:
        rows = []
        for db, names_ in visible:
            for t in names_:
                for i, c in enumerate(await catalogue.columns(db, t), 1):
                    data_type, length, precision, scale = _type_parts(c.declared_type)
                    charset, collation = _charset(c)
                    if data_type in ("int", "bigint", "smallint", "tinyint", "mediumint") and precision is None:
                        precision, scale = _INT_PRECISION.get(data_type), 0
                        if data_type == "bigint" and mysql_type(c.declared_type).endswith("unsigned"):
                            precision = 20
                    elif data_type in ("double", "float") and precision is None:
                        precision = 22 if data_type == "double" else 12
                    rows.append(
                        ("def", db, t, c.name, i, _default(c), "YES" if c.nullable else "NO", data_type, length,
                         _octets(data_type, length), precision, scale,
                         0 if data_type in ("datetime", "timestamp", "time") else None, charset, collation,
                         mysql_type(c.declared_type), "PRI" if c.primary_key else "", _extra(c),
                         "select,insert,update,references", getattr(c, "comment", ""), "NEVER", None)
                    )  # fmt: skip
        tables["columns"] = (_COLUMNS, rows)
    if "statistics" in names:
        rows = [
            ("def", db, t, 0 if key.unique else 1, db, key.name, seq, column, "A", None, None, None, null, "BTREE",
             "", "")
            for db, names_ in visible
            for t in names_
            for key, seq, column, null in await catalogue.key_parts(db, t)
        ]  # fmt: skip
        tables["statistics"] = (_STATISTICS, rows)
    if "key_column_usage" in names:  # PRIMARY and UNIQUE keys, then FOREIGN KEYs
        rows = [
            ("def", db, key.name, "def", db, t, column, seq, None, None, None, None)
            for db, names_ in visible
            for t in names_
            for key, seq, column, _ in await catalogue.key_parts(db, t)
            if key.unique
        ]
        rows += [
            ("def", db, fk.name, "def", db, t, column, seq, seq, db, fk.referenced_table, referenced)
            for db, names_ in visible
            for t in names_
            for fk in getattr(await catalogue.notes(db, t), "foreign_keys", ())
            for seq, (column, referenced) in enumerate(zip(fk.columns, fk.referenced_columns, strict=False), 1)
        ]
        tables["key_column_usage"] = (_KEY_COLUMN_USAGE, rows)
    if "referential_constraints" in names:
        rows = [
            ("def", db, fk.name, "def", db, "PRIMARY", "NONE", _rule(fk.on_update), _rule(fk.on_delete), t,
             fk.referenced_table)
            for db, names_ in visible
            for t in names_
            for fk in getattr(await catalogue.notes(db, t), "foreign_keys", ())
        ]  # fmt: skip
        tables["referential_constraints"] = (_REFERENTIAL_CONSTRAINTS, rows)
    if "table_constraints" in names:
        rows = []
        for db, names_ in visible:
            for t in names_:
                seen = set()
                for key, _, _, _ in await catalogue.key_parts(db, t):
                    if key.unique and key.name not in seen:
                        seen.add(key.name)
                        kind = "PRIMARY KEY" if key.name == "PRIMARY" else "UNIQUE"
                        rows.append(("def", db, key.name, db, t, kind))
                for fk in getattr(await catalogue.notes(db, t), "foreign_keys", ()):
                    rows.append(("def", db, fk.name, db, t, "FOREIGN KEY"))
        tables["table_constraints"] = (_TABLE_CONSTRAINTS, rows)
    for name, columns in _EMPTY.items():
        if name in names:
            tables[name] = (columns, [])
    for name, fixed in _FIXED.items():
        if name in names:
            tables[name] = fixed
    query = tree.copy()
    for table in query.find_all(exp.Table):
        if table.name.lower() in tables:
            table.set("db", None)
            table.set("catalog", None)
            table.set("this", exp.to_identifier(table.name.lower()))
    return await services.backend.query_tables(query, tables)


HANDLERS: Handlers = [
    (_DESCRIBE, describe),
    (_SHOW_COLUMNS, show_columns),
    (_SHOW_CREATE_TABLE, show_create_table),
    (_SHOW_INDEX, show_index),
    (_SHOW_TABLE_STATUS, show_table_status),
    (_SHOW_STATUS, show_status),
    (_SHOW_ENGINES, show_engines),
    (_SHOW_CHARSET, show_charset),
    (_SHOW_COLLATION, show_collation),
]
