"""Database statements: USE, CREATE/DROP DATABASE, SHOW DATABASES/TABLES,
answered from the backend's catalogue."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.privileges import CREATE_PRIV, DROP_PRIV, Need, check, folded, may_see_database, may_see_table
from frontend.backend import check_db_name
from frontend.result import OK, Result
from frontend.sqltext import FLAGS, unquote
from frontend.statements import Handlers, Services
from frontend.statements.metadata import views_of

if TYPE_CHECKING:
    from frontend.session import Session

_USE = re.compile(r"^use\s+(`[^`]+`|\S+)$", FLAGS)
_CREATE_DB = re.compile(r"^create\s+(?:database|schema)\s+(if\s+not\s+exists\s+)?(`[^`]+`|\S+)$", FLAGS)
_DROP_DB = re.compile(r"^drop\s+(?:database|schema)\s+(if\s+exists\s+)?(`[^`]+`|\S+)$", FLAGS)
_SHOW_DATABASES = re.compile(r"^show\s+(?:databases|schemas)$", FLAGS)
_SHOW_TABLES = re.compile(r"^show\s+(full\s+)?tables(?:\s+(?:from|in)\s+(\S+))?$", FLAGS)


def _denied_database(session: Session, db: str) -> SqlError:
    return SqlError(errors.DB_ACCESS_DENIED, f"Access denied for user '{session.user}'@'%' to database '{db}'")


async def use(services: Services, session: Session, m: re.Match[str]) -> Result:
    db = unquote(m.group(1))
    if db.lower() in _SYSTEM:  # a server's own schema the backend has not: as MySQL answers one without access
        raise _denied_database(session, db)
    if db.lower() != "information_schema" and not may_see_database(
        services.accounts.cached(session.user), db, services.backend.names_fold_case
    ):
        raise _denied_database(session, db)
    await session.use(db)
    return OK


async def show_databases(services: Services, session: Session, m: re.Match[str]) -> Result:
    user = services.accounts.cached(session.user)
    names = [
        "information_schema",
        *(n for n in await services.backend.databases() if may_see_database(user, n, services.backend.names_fold_case)),
    ]
    return Result(["Database"], [(n,) for n in names])


async def show_tables(services: Services, session: Session, m: re.Match[str]) -> Result:
    db = unquote(m.group(2)) if m.group(2) else session.db
    if db is None:
        raise SqlError(errors.NO_DB, "No database selected")
    user = services.accounts.cached(session.user)
    if db.lower() in _SYSTEM or not may_see_database(user, db, services.backend.names_fold_case):
        raise _denied_database(session, db)
    if not await services.backend.has_database(db):
        raise SqlError(errors.BAD_DB, f"Unknown database '{db}'")
    views = set(await views_of(services, db))  # listed with the tables, as MySQL does
    names = sorted(
        t
        for t in await services.backend.tables(db) + list(views)
        if may_see_table(user, db, t, services.backend.names_fold_case)
    )
    if m.group(1):  # FULL: tools (SQLAlchemy's get_table_names) read the type column
        return Result([f"Tables_in_{db}", "Table_type"], [(t, "VIEW" if t in views else "BASE TABLE") for t in names])
    return Result([f"Tables_in_{db}"], [(t,) for t in names])


_RESERVED = {"information_schema", "mysql", "performance_schema", "sys"}
_SYSTEM = _RESERVED - {"information_schema"}  # a MySQL server's own schemas: the embedded backend has none


async def create_database(services: Services, session: Session, m: re.Match[str]) -> Result:
    name = check_db_name(unquote(m.group(2)))
    if name.lower() in _RESERVED:  # would shadow (or pose as) the FE's own schemas
        raise _denied_database(session, name)
    check(
        services.accounts.cached(session.user),
        session.user,
        [Need(CREATE_PRIV, "CREATE", folded(name, services.backend.names_fold_case))],
    )
    await services.backend.create_database(name, bool(m.group(1)))
    if services.backend_accounts is not None:  # users granted on *.*.* reach it on the backend now
        users = await services.accounts.registry.users()
        await services.backend_accounts.on_database_created(name, users.values())
    return Result(affected_rows=1)


async def drop_database(services: Services, session: Session, m: re.Match[str]) -> Result:
    name = unquote(m.group(2))
    check(
        services.accounts.cached(session.user),
        session.user,
        [Need(DROP_PRIV, "DROP", folded(name, services.backend.names_fold_case))],
    )
    await services.backend.drop_database(check_db_name(name), bool(m.group(1)))
    if session.db and session.db.lower() == name.lower():
        session.db = None
    return OK


HANDLERS: Handlers = [
    (_USE, use),
    (_SHOW_DATABASES, show_databases),
    (_SHOW_TABLES, show_tables),
    (_CREATE_DB, create_database),
    (_DROP_DB, drop_database),
]
