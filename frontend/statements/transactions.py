"""Transactions: BEGIN / START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT,
ROLLBACK TO SAVEPOINT, RELEASE SAVEPOINT, carried out by the session's
backend connection (``SET autocommit`` is in ``variables``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from frontend.result import OK, Result
from frontend.sqltext import FLAGS, unquote
from frontend.statements import Handlers, Services

if TYPE_CHECKING:
    from frontend.session import Session

_NAME = r"(`[^`]+`|[A-Za-z_][A-Za-z0-9_$]*)"
_BEGIN = re.compile(
    r"^(?:begin(?:\s+work)?|start\s+transaction(?:\s+(?:read\s+only|read\s+write|with\s+consistent\s+snapshot)"
    r"(?:\s*,\s*(?:read\s+only|read\s+write|with\s+consistent\s+snapshot))*)?)$",
    FLAGS,
)
_COMMIT = re.compile(r"^commit(?:\s+work)?(?:\s+and\s+no\s+chain)?(?:\s+no\s+release)?$", FLAGS)
_ROLLBACK = re.compile(r"^rollback(?:\s+work)?(?:\s+and\s+no\s+chain)?(?:\s+no\s+release)?$", FLAGS)
_ROLLBACK_TO = re.compile(rf"^rollback(?:\s+work)?\s+to\s+(?:savepoint\s+)?{_NAME}$", FLAGS)
_SAVEPOINT = re.compile(rf"^savepoint\s+{_NAME}$", FLAGS)
_RELEASE = re.compile(rf"^release\s+savepoint\s+{_NAME}$", FLAGS)


async def begin(services: Services, session: Session, m: re.Match[str]) -> Result:
    await session.backend.begin()
    return OK


async def commit(services: Services, session: Session, m: re.Match[str]) -> Result:
    await session.backend.commit()
    return OK


async def rollback(services: Services, session: Session, m: re.Match[str]) -> Result:
    await session.backend.rollback()
    return OK


async def rollback_to(services: Services, session: Session, m: re.Match[str]) -> Result:
    await session.backend.savepoint("ROLLBACK TO SAVEPOINT", unquote(m.group(1)))
    return OK


async def savepoint(services: Services, session: Session, m: re.Match[str]) -> Result:
    await session.backend.savepoint("SAVEPOINT", unquote(m.group(1)))
    return OK


async def release(services: Services, session: Session, m: re.Match[str]) -> Result:
    await session.backend.savepoint("RELEASE SAVEPOINT", unquote(m.group(1)))
    return OK


HANDLERS: Handlers = [
    (_BEGIN, begin),
    (_COMMIT, commit),
    (_ROLLBACK_TO, rollback_to),
    (_ROLLBACK, rollback),
    (_SAVEPOINT, savepoint),
    (_RELEASE, release),
]
