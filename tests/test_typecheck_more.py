"""More bugs the type checker (mypy, issue 24) found, each as a user meets it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.errors import SqlError
from frontend.sqlite_backend import SqliteBackend, SqliteSession

# ---------------------------------------------------------------- 1062 names a negated quoted number


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[SqliteSession]:
    backend = SqliteBackend(tmp_path)
    await backend.create_database("d", False)
    session = backend.session()
    await session.execute("CREATE TABLE t (id INT PRIMARY KEY)", "d")
    await session.execute("INSERT INTO t VALUES (-5)", "d")
    yield session
    session.close()
    backend.shutdown()


@pytest.mark.parametrize("value", ["-5", "-'5'", "- '5'"])
async def test_a_duplicate_negated_quoted_number_answers_1062(session: SqliteSession, value: str) -> None:
    """The value shown in 1062 came from negating the literal's Python value: a quoted
    number is text there, and `-'5'` raised TypeError instead of answering 1062."""
    with pytest.raises(SqlError) as err:
        await session.execute(f"INSERT INTO t VALUES ({value})", "d")
    assert (err.value.code, err.value.message) == (1062, "Duplicate entry '-5' for key 'PRIMARY'")
