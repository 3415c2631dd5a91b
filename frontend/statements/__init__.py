"""Statements the FE answers itself, one module per concern:

- ``cluster``: KILL, SHOW PROCESSLIST, SHOW KILL AUDIT (routed through the cluster);
- ``users``: CREATE/DROP USER, GRANT/REVOKE, SET PASSWORD, SHOW GRANTS;
- ``databases``: USE, CREATE/DROP DATABASE, SHOW DATABASES/TABLES (only what the user may see);
- ``metadata``: DESCRIBE, SHOW [FULL] COLUMNS, SHOW CREATE TABLE, information_schema SCHEMATA/TABLES/COLUMNS;
- ``transactions``: BEGIN/START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, ROLLBACK TO, RELEASE;
- ``variables``: SET (``SET autocommit``, ``SET @v``), SHOW VARIABLES, SHOW WARNINGS, SLEEP.

Each module exports ``HANDLERS``, ``(pattern, handler)`` pairs matched against
``sqltext.statement_text``; ``frontend.executor`` tries them in order and hands
everything else to the backend. Handlers reach the rest of the FE only through
``Services``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.accounts import Accounts
    from coordinator.pb import fecluster_pb2 as pb
    from coordinator.routing import FeFailure, KillOutcome
    from frontend.backend import Backend
    from frontend.backend_accounts import BackendAccounts
    from frontend.result import Result
    from frontend.session import Session


@dataclass(frozen=True)
class Services:
    """What statements may use: the cluster's routing (as two functions), the
    user table, the backend and the audit."""

    kill: Callable[[pb.KillTarget, str, str], Awaitable[KillOutcome]]  # (target, requester, requester's host)
    # (requester, this FE only, WHERE evaluated on each owner)
    processlist: Callable[[str, bool, str], Awaitable[tuple[list[pb.ProcessRow], list[FeFailure]]]]
    accounts: Accounts
    backend: Backend
    read_audit: Callable[[int], Awaitable[list[dict[str, str]]]]  # newest first; SqlError 1105 without Redis
    set_global: Callable[[str, Any], Awaitable[None]]  # SET GLOBAL name = value, cluster-wide
    # A relaying backend's per-user accounts (``frontend.backend_accounts``): None on the embedded one.
    backend_accounts: BackendAccounts | None = None


Handler = Callable[["Services", "Session", re.Match[str]], Awaitable["Result"]]
Handlers = list[tuple[re.Pattern[str], Handler]]
