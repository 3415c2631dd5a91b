"""User administration: the cluster's user table lives in Redis (see
``coordinator.accounts``); every statement here needs ADMIN_PRIV except
changing or showing your own password and grants."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.privileges import GRANTS_COLUMNS, SCOPED_PRIVILEGES, Scope, grants_row, parse_scope
from coordinator.users import KNOWN_PRIVILEGES
from frontend.result import OK, Result
from frontend.sqltext import FLAGS, STRING, USER, unescape, unquote
from frontend.statements import Handlers, Services

if TYPE_CHECKING:
    from frontend.session import Session

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
    await services.accounts.create(
        name, password, bool(m.group(1)), auth_string=auth_string, max_user_connections=limit
    )
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
    await services.accounts.drop(unquote(m.group(2)), bool(m.group(1)))
    return OK


async def grant(services: Services, session: Session, m: re.Match[str]) -> Result:
    await need_admin(services, session)
    scope = _scope(m.group(2), services.backend.names_fold_case)
    await services.accounts.grant(unquote(m.group(3)), _privileges(m.group(1), scope), scope)
    return OK


async def revoke(services: Services, session: Session, m: re.Match[str]) -> Result:
    await need_admin(services, session)
    scope = _scope(m.group(2), services.backend.names_fold_case)
    await services.accounts.revoke(unquote(m.group(3)), _privileges(m.group(1), scope), scope)
    return OK


async def set_password(services: Services, session: Session, m: re.Match[str]) -> Result:
    name = unquote(m.group(1)) if m.group(1) else session.user
    if name != session.user:
        await need_admin(services, session)
    password = m.group(2) if m.group(2) is not None else m.group(3)
    await services.accounts.set_password(name, unescape(password or ""))
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
