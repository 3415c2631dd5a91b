"""User administration: the cluster's user table lives in Redis (see
``coordinator.accounts``); every statement here needs ADMIN_PRIV except
changing or showing your own password and grants.

Over a relaying MySQL backend each user also has an account of its own there
(``frontend.backend_accounts``): CREATE USER, DROP USER, SET PASSWORD, GRANT
and REVOKE change the backend first, under the account's server-wide lock,
then the cluster table; an error from the backend leaves the table unchanged,
and an error writing the table undoes the backend change. An OK therefore means
both changed; the sync repairs whatever an FE that died midway left.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.privileges import GRANTS_COLUMNS, SCOPED_PRIVILEGES, Scope, granted, grants_row, parse_scope, revoked
from coordinator.users import KNOWN_PRIVILEGES, UserRecord, native_password_hash
from frontend.result import OK, Result
from frontend.sqltext import FLAGS, STRING, USER, unescape, unquote
from frontend.statements import Handlers, Services

if TYPE_CHECKING:
    from frontend.backend_accounts import BackendAccounts
    from frontend.session import Session

log = logging.getLogger("fecluster.users")

_WITH_LIMIT = r"(?:\s+with\s+max_user_connections\s+(\d{1,9}))?"
_CREATE_USER = re.compile(
    rf"^create\s+user\s+(if\s+not\s+exists\s+)?{USER}(?:\s+identified\s+by\s+(password\s+)?{STRING})?{_WITH_LIMIT}$",
    FLAGS,
)
_ALTER_USER_LIMIT = re.compile(rf"^alter\s+user\s+(?:if\s+exists\s+)?{USER}{_WITH_LIMIT}$", FLAGS)
# Doris: SET PROPERTY [FOR 'user'] 'max_user_connections' = 'n'
_SET_PROPERTY = re.compile(rf"^set\s+property(?:\s+for\s+{USER})?\s+{STRING}\s*=\s*(?:{STRING}|(\d+))$", FLAGS)
_DROP_USER = re.compile(rf"^drop\s+user\s+(if\s+exists\s+)?{USER}$", FLAGS)
_GRANT = re.compile(rf"^grant\s+(.+?)\s+on\s+(\S+)\s+to\s+{USER}$", FLAGS)
_REVOKE = re.compile(rf"^revoke\s+(.+?)\s+on\s+(\S+)\s+from\s+{USER}$", FLAGS)
_SET_PASSWORD = re.compile(
    rf"^set\s+password(?:\s+for\s+{USER})?\s*=\s*(?:password\s*\(\s*{STRING}\s*\)|{STRING})$", FLAGS
)
_SHOW_GRANTS = re.compile(rf"^show\s+grants(?:\s+for\s+(?:current_user(?:\s*\(\s*\))?|{USER}))?$", FLAGS)


async def need_admin(services: Services, session: Session) -> None:
    """ADMIN_PRIV as the user table says now (a REVOKE elsewhere counts at once)."""
    user = await services.accounts.fresh(session.user)
    if user is None or not user.is_admin:
        raise SqlError(
            errors.SPECIFIC_ACCESS_DENIED,
            "Access denied; you need (at least one of) the ADMIN_PRIV privilege(s) for this operation",
        )


def backend_accounts(services: Services) -> BackendAccounts | None:
    """The backend's per-user accounts when the backend relays."""
    return services.backend_accounts


async def _undo(what: str, work: Awaitable[object]) -> None:
    """Put the backend back after the cluster table refused a change; a failure
    here is left to the sync (logged), the original error is what the client sees."""
    try:
        await work
    except Exception as e:  # noqa: BLE001 - any failure: the sync repairs it, the first error is reported
        log.warning("could not undo %s on the backend (the sync will repair it): %s", what, e)


def _password_hash(text: str) -> str:
    """``IDENTIFIED BY PASSWORD '*<40 hex>'``: the stored mysql_native_password hash itself."""
    if re.fullmatch(r"\*[0-9A-Fa-f]{40}", text):
        return text[1:].lower()
    raise SqlError(errors.PARSE_ERROR, "IDENTIFIED BY PASSWORD takes a hash: '*' and 40 hex digits")


def _privileges(text: str, scope: Scope) -> frozenset[str]:
    names = {p.strip().upper().replace(" ", "_") for p in text.split(",")}
    if names & {"ALL", "ALL_PRIVILEGES"}:
        return KNOWN_PRIVILEGES if scope.is_global else SCOPED_PRIVILEGES
    unknown = names - KNOWN_PRIVILEGES
    if unknown:
        raise SqlError(errors.PARSE_ERROR, f"Unknown privilege: {', '.join(sorted(unknown))}")
    if not scope.is_global and names - SCOPED_PRIVILEGES:
        # Doris: ADMIN_PRIV, NODE_PRIV, GRANT_PRIV and USAGE_PRIV exist only on *.*.*
        raise SqlError(
            errors.WRONG_GRANT_USAGE,
            f"Incorrect usage of DB GRANT and GLOBAL PRIVILEGES: {', '.join(sorted(names - SCOPED_PRIVILEGES))}"
            f" only on *.*.*",
        )
    return frozenset(names)


def _scope(text: str, fold_case: bool) -> Scope:
    try:
        return parse_scope(text, fold_case)
    except ValueError as e:
        raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax: {e}") from e


async def create_user(services: Services, session: Session, m: re.Match[str]) -> Result:
    await need_admin(services, session)
    name, password = unquote(m.group(2)), unescape(m.group(4) or "")
    auth_string = _password_hash(password) if m.group(3) else None
    limit = int(m.group(5) or 0)
    if_not_exists = bool(m.group(1))
    ba = backend_accounts(services)
    if ba is not None:
        ba.check_name(name)
    if ba is None or not ba.managed(name):
        await services.accounts.create(
            name, password, if_not_exists, auth_string=auth_string, max_user_connections=limit
        )
        return OK
    async with ba.lock(name):
        if await services.accounts.fresh(name) is not None:
            if if_not_exists:
                return OK
            raise SqlError(errors.CANNOT_USER, f"Operation CREATE USER failed for '{name}'@'%'")
        stored = native_password_hash(password) if auth_string is None else auth_string
        await ba.create(UserRecord(name, stored, max_user_connections=limit))
        try:
            await services.accounts.create(
                name, password, if_not_exists, auth_string=auth_string, max_user_connections=limit
            )
        except BaseException:
            await _undo(f"CREATE USER '{name}'", ba.drop(name))
            raise
    return OK


async def alter_user_limit(services: Services, session: Session, m: re.Match[str]) -> Result:
    await need_admin(services, session)
    if m.group(2) is None:
        raise SqlError(errors.NOT_SUPPORTED, "ALTER USER supports WITH MAX_USER_CONNECTIONS n only")
    await services.accounts.set_max_user_connections(unquote(m.group(1)), int(m.group(2)))
    return OK


async def set_property(services: Services, session: Session, m: re.Match[str]) -> Result:
    name = unquote(m.group(1)) if m.group(1) else session.user
    await need_admin(services, session)
    key, value = unescape(m.group(2)).lower(), m.group(3) if m.group(3) is not None else m.group(4)
    if key != "max_user_connections":
        raise SqlError(errors.NOT_SUPPORTED, f"Unknown property: {key} (supported: max_user_connections)")
    if not (value or "").isdigit() or len(value) > 9:
        raise SqlError(errors.WRONG_VALUE_FOR_VAR, f"max_user_connections must be a number, not '{value}'")
    await services.accounts.set_max_user_connections(name, int(value))
    return OK


async def drop_user(services: Services, session: Session, m: re.Match[str]) -> Result:
    await need_admin(services, session)
    name, if_exists = unquote(m.group(2)), bool(m.group(1))
    ba = backend_accounts(services)
    if ba is None or not ba.managed(name):
        await services.accounts.drop(name, if_exists)
        return OK
    async with ba.lock(name):
        user = await services.accounts.fresh(name)
        dropped = user is not None and await ba.drop(name)
        try:
            await services.accounts.drop(name, if_exists)
        except BaseException:
            if dropped and user is not None:
                await _undo(f"DROP USER '{name}'", ba.create(user))
            raise
    return OK


async def grant(services: Services, session: Session, m: re.Match[str]) -> Result:
    return await _change_grants(services, session, m, grant=True)


async def revoke(services: Services, session: Session, m: re.Match[str]) -> Result:
    return await _change_grants(services, session, m, grant=False)


async def _change_grants(services: Services, session: Session, m: re.Match[str], *, grant: bool) -> Result:
    """GRANT or REVOKE: the backend account first (under its lock), then the
    cluster table; a refusal of the table undoes the backend's change."""
    await need_admin(services, session)
    scope = _scope(m.group(2), services.backend.names_fold_case)
    name, privileges = unquote(m.group(3)), _privileges(m.group(1), scope)
    write = services.accounts.grant if grant else services.accounts.revoke
    ba = backend_accounts(services)
    if ba is None or not ba.managed(name):
        await write(name, privileges, scope)
        return OK
    if grant:
        ba.check_scope(session.user, scope)
    async with ba.lock(name):
        user = await services.accounts.fresh(name)
        if user is not None:
            await ba.apply_grants((granted if grant else revoked)(user, scope, privileges))
        try:
            await write(name, privileges, scope)
        except BaseException:
            if user is not None:
                what = f"GRANT to '{name}'" if grant else f"REVOKE from '{name}'"
                await _undo(what, ba.apply_grants(user))
            raise
    return OK


async def set_password(services: Services, session: Session, m: re.Match[str]) -> Result:
    name = unquote(m.group(1)) if m.group(1) else session.user
    if name != session.user:
        await need_admin(services, session)
    password = unescape((m.group(2) if m.group(2) is not None else m.group(3)) or "")
    ba = backend_accounts(services)
    if ba is None or not ba.managed(name):
        await services.accounts.set_password(name, password)
        return OK
    async with ba.lock(name):
        user = await services.accounts.fresh(name)
        if user is not None:
            await ba.set_password(replace(user, auth_string=native_password_hash(password)))
        try:
            await services.accounts.set_password(name, password)
        except BaseException:
            if user is not None:
                await _undo(f"SET PASSWORD for '{name}'", ba.set_password(user))
            raise
    return OK


async def show_grants(services: Services, session: Session, m: re.Match[str]) -> Result:
    name = unquote(m.group(1)) if m.group(1) else session.user
    if name != session.user:
        await need_admin(services, session)
    user = await services.accounts.fresh(name)
    if user is None:
        raise SqlError(errors.NO_SUCH_USER, f"There is no such grant defined for user '{name}' on host '%'")
    return Result(list(GRANTS_COLUMNS), [grants_row(user)])


# SET PASSWORD must come before the variables module's generic SET.
HANDLERS: Handlers = [
    (_SET_PASSWORD, set_password),
    (_SHOW_GRANTS, show_grants),
    (_SET_PROPERTY, set_property),
    (_CREATE_USER, create_user),
    (_ALTER_USER_LIMIT, alter_user_limit),
    (_DROP_USER, drop_user),
    (_GRANT, grant),
    (_REVOKE, revoke),
]
