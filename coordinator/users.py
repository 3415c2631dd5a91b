"""Users, mysql_native_password hashes and the KILL access rule."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from hashlib import sha1

ADMIN_PRIV = "ADMIN_PRIV"
ROOT = "root"
KNOWN_PRIVILEGES = frozenset(
    {
        ADMIN_PRIV,
        "NODE_PRIV",
        "GRANT_PRIV",
        "SELECT_PRIV",
        "LOAD_PRIV",
        "ALTER_PRIV",
        "CREATE_PRIV",
        "DROP_PRIV",
        "USAGE_PRIV",
    }
)


def native_password_hash(password: str) -> str:
    """The stored form of mysql_native_password: hex(SHA1(SHA1(password))), '' for no password."""
    if not password:
        return ""
    return sha1(sha1(password.encode()).digest()).hexdigest()


@dataclass(frozen=True)
class UserRecord:
    """``privileges`` are global (``ON *.*.*``); ``grants`` are scoped: pairs of
    (scope, privilege), the scope ``db`` or ``db.table`` in lower case (see
    ``coordinator.privileges``). Records written before scoped grants existed
    have no ``grants`` key and load with none."""

    name: str
    auth_string: str = ""
    privileges: frozenset[str] = field(default_factory=frozenset)
    grants: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    max_user_connections: int = 0  # sessions across the cluster; 0: the cluster default

    @property
    def is_admin(self) -> bool:
        return ADMIN_PRIV in self.privileges

    def to_json(self) -> str:
        data: dict[str, object] = {"auth_string": self.auth_string, "privileges": sorted(self.privileges)}
        if self.max_user_connections:
            data["max_user_connections"] = self.max_user_connections
        if self.grants:
            scoped: dict[str, list[str]] = {}
            for scope, privilege in sorted(self.grants):
                scoped.setdefault(scope, []).append(privilege)
            data["grants"] = scoped
        return json.dumps(data)

    @classmethod
    def from_json(cls, name: str, raw: str | bytes) -> UserRecord:
        data = json.loads(raw)
        grants = frozenset((str(scope), str(p)) for scope, names in (data.get("grants") or {}).items() for p in names)
        return cls(
            name,
            data.get("auth_string", ""),
            frozenset(data.get("privileges", ())),
            grants,
            int(data.get("max_user_connections", 0)),
        )


def root_user(password: str) -> UserRecord:
    return UserRecord(ROOT, native_password_hash(password), frozenset({ADMIN_PRIV, "NODE_PRIV", "GRANT_PRIV"}))


def may_kill(requester: UserRecord | None, owner_user: str) -> bool:
    """The seed page's rule: the connection's own user, or ADMIN_PRIV."""
    if requester is None:
        return False
    return requester.name == owner_user or requester.is_admin


def connection_limit(user: UserRecord, cluster_default: int) -> int:
    """How many sessions ``user`` may hold across the cluster; 0: no limit.
    Admins keep one slot beyond it, so they can always get in to fix things."""
    limit = user.max_user_connections or cluster_default
    return limit + 1 if limit and user.is_admin else limit
