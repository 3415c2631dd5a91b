"""mysql_native_password and the auth switch.

The stored credential is ``hex(SHA1(SHA1(password)))`` (``""`` = no password).
The client answers the 20-byte nonce with::

    scramble = SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))

so the server, holding ``stage2 = SHA1(SHA1(password))``, recovers
``stage1 = scramble XOR SHA1(nonce + stage2)`` and accepts when
``SHA1(stage1) == stage2``. An empty password is an empty scramble.

AuthSwitchRequest (server -> client), sent when the client opened with another
plugin (MySQL 8 drivers default to caching_sha2_password)::

    int<1>      0xFE
    string<NUL> plugin name
    string<EOF> plugin data: the 20-byte nonce + NUL

The AuthSwitchResponse is the new plugin's answer, the whole payload.
"""

from __future__ import annotations

import hmac
import os
from hashlib import sha1

from frontend.wire.handshake import NATIVE_PASSWORD

_UNKNOWN_USER_STAGE2 = os.urandom(20)
"""What an unknown user is checked against: no scramble matches it, and the
check costs the same as for a real user, so names cannot be probed."""


def scramble(password: str | bytes, nonce: bytes) -> bytes:
    """The client's side (tests and tooling)."""
    if not password:
        return b""
    if isinstance(password, str):
        password = password.encode()
    stage1 = sha1(password).digest()
    stage2 = sha1(stage1).digest()
    mask = sha1(nonce + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def verify_native(auth_string: str | None, nonce: bytes, response: bytes) -> bool:
    """Check a mysql_native_password scramble.

    ``auth_string`` is the stored ``hex(SHA1(SHA1(pw)))``, ``""`` for a user
    without password, or None for an unknown user (always refused, in the same
    time as a wrong password).
    """
    if auth_string == "":
        return response == b""
    stage2 = _UNKNOWN_USER_STAGE2
    if auth_string is not None:
        try:
            stage2 = bytes.fromhex(auth_string)
        except ValueError:
            stage2 = _UNKNOWN_USER_STAGE2
        if len(stage2) != 20:
            stage2 = _UNKNOWN_USER_STAGE2
    # A wrong-length answer goes through the same work with a padded value.
    candidate = response if len(response) == 20 else response[:20].ljust(20, b"\x00")
    mask = sha1(nonce[:20] + stage2).digest()
    stage1 = (int.from_bytes(candidate, "big") ^ int.from_bytes(mask, "big")).to_bytes(20, "big")
    ok = hmac.compare_digest(sha1(stage1).digest(), stage2)
    return ok and len(response) == 20 and auth_string is not None and stage2 is not _UNKNOWN_USER_STAGE2


def stage1(auth_string: str, nonce: bytes, response: bytes) -> bytes | None:
    """SHA1(password) recovered from a scramble that verifies (``b""`` for a user
    without password), else None. The FE logs in to a MySQL backend as the
    user with it (``scramble_with_stage1``): no second secret is kept."""
    if auth_string == "":
        return b"" if response == b"" else None
    if len(response) != 20 or not verify_native(auth_string, nonce, response):
        return None
    mask = sha1(nonce[:20] + bytes.fromhex(auth_string)).digest()
    return bytes(a ^ b for a, b in zip(response, mask, strict=True))


def stage1_of_password(password: str) -> bytes:
    """SHA1(password), ``b""`` for no password (gRPC and HTTP logins carry the password)."""
    return sha1(password.encode()).digest() if password else b""


def scramble_with_stage1(stage1_hash: bytes, nonce: bytes) -> bytes:
    """The client's scramble computed from SHA1(password) instead of the password."""
    if not stage1_hash:
        return b""
    mask = sha1(nonce[:20] + sha1(stage1_hash).digest()).digest()
    return bytes(a ^ b for a, b in zip(stage1_hash, mask, strict=True))


def auth_switch_request(nonce: bytes, plugin: str = NATIVE_PASSWORD) -> bytes:
    """The AuthSwitchRequest payload for ``plugin`` with ``nonce`` (20 bytes, no NUL)."""
    return b"\xfe" + plugin.encode() + b"\x00" + nonce + b"\x00"


def parse_auth_switch_response(payload: bytes) -> bytes:
    """The scramble in an AuthSwitchResponse: the whole payload.

    Some clients end an empty answer with a lone NUL; that is "no password".
    """
    return b"" if payload == b"\x00" else payload


def needs_switch(client_plugin: str | None, response: bytes) -> bool:
    """True when the client's first answer was for another plugin and must be redone.

    An empty answer means "no password" in every plugin, so it needs no switch.
    Without CLIENT_PLUGIN_AUTH (``client_plugin`` None) the answer is native.
    """
    return client_plugin not in (None, "", NATIVE_PASSWORD) and response != b""


def access_denied_message(user: str, host: str, used_password: bool) -> str:
    """Error 1045's text, as MySQL words it."""
    return f"Access denied for user '{user}'@'{host}' (using password: {'YES' if used_password else 'NO'})"
