"""The lexer and statement classifier (frontend.lexer): MariaDB's reading rules,
every FE family in several spellings, lookalikes that stay the engine's, and
linear cost on hostile text. One test checks a handful of rules against a
real mariadbd."""

from __future__ import annotations

import contextlib
import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontend.lexer import (
    ERROR,
    NUMBER,
    PUNCT,
    QUOTED_NAME,
    STRING,
    VARIABLE,
    WORD,
    QuoteModes,
    classify,
    normalized,
    quote_modes,
    split,
    tokens,
)

ANSI = QuoteModes(ansi_quotes=True)
NBE = QuoteModes(no_backslash_escapes=True)
FE_VARS = frozenset({"session_context", "query_timeout"})


def kinds(sql: str, **kw: object) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in tokens(sql, **kw)]  # type: ignore[arg-type]


def owned(sql: str, modes: QuoteModes = QuoteModes(), **kw: object) -> str | None:
    return classify(sql, modes, fe_variables=FE_VARS, **kw).owned  # type: ignore[arg-type]


# --- comments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1 # c\n, 2", ["SELECT", "1", ",", "2"]),
        ("SELECT 1 -- c\n, 2", ["SELECT", "1", ",", "2"]),
        ("SELECT 1 --\t, 2", ["SELECT", "1"]),
        ("SELECT 1 --\x01, 2", ["SELECT", "1"]),  # a control character opens the comment too
        ("SELECT 1 --", ["SELECT", "1"]),  # -- at the very end
        ("SELECT 1 --2", ["SELECT", "1", "-", "-", "2"]),  # no space: two minus signs
        ("SELECT 1 ---  x", ["SELECT", "1", "-"]),  # the second and third dash open it
        ("SELECT 1 /* a /* b */ , 2", ["SELECT", "1", ",", "2"]),  # not nested
        ("SELECT 1 /*+ hint */ , 2", ["SELECT", "1", ",", "2"]),  # hints are comments
        ("SELECT/**/1", ["SELECT", "1"]),
        ("SELECT 1 # c \x00, 2", ["SELECT", "1", "\x00", ",", "2"]),  # NUL ends a # comment (MY_LEX_COMMENT)
    ],
)
def test_comments(sql: str, expected: list[str]) -> None:
    assert [t for _, t in kinds(sql)] == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1 /*!, 2*/", ["SELECT", "1", ",", "2"]),
        ("SELECT 1 /*M!, 2*/", ["SELECT", "1", ",", "2"]),
        ("SELECT 1 /*!40101 , 2*/", ["SELECT", "1", ",", "2"]),
        ("SELECT 1 /*!99999 , 2*/", ["SELECT", "1"]),
        ("SELECT 1 /*!50700 , 2*/", ["SELECT", "1"]),  # MariaDB skips MySQL 5.7-9.x versions
        ("SELECT 1 /*M!50700 , 2*/", ["SELECT", "1", ",", "2"]),  # ... unless marked M!
        ("SELECT 1 /*!100000 , 2*/", ["SELECT", "1", ",", "2"]),  # 6 digits: 10.0.0
        ("SELECT 1 /*!101100 , 2*/", ["SELECT", "1", ",", "2"]),
        ("SELECT 1 /*!101101 , 2*/", ["SELECT", "1"]),
        ("SELECT 1 /*M!101101 , 2*/", ["SELECT", "1"]),
        ("SELECT 1 /*!1011000 , 2*/", ["SELECT", "1", "0", ",", "2"]),  # at most 6 digits
        ("SELECT 1 /*!5069, 2*/", ["SELECT", "1", "5069", ",", "2"]),  # 4 digits: not a version
        ("SELECT 1 /*!99999 /* x */ , 2 */, 3", ["SELECT", "1", ",", "3"]),  # one nested level when skipped
        ("SELECT 1 /*! , 2 /* c */ */", ["SELECT", "1", ",", "2"]),
        ("SELECT 1 /*! , 2 /*! , 3 */ , 4", ["SELECT", "1", ",", "2", ",", "3", ",", "4"]),
        ("SELECT 1 /*! , '*/' */", ["SELECT", "1", ",", "'*/'"]),  # a string inside is a string
        ("SELECT 2 */", ["SELECT", "2", "*", "/"]),  # */ outside an executable comment is code
    ],
)
def test_executable_comments(sql: str, expected: list[str]) -> None:
    assert [t for _, t in kinds(sql)] == expected


def test_executable_comment_versions_follow_the_server_version_and_flavour() -> None:
    assert [t for _, t in kinds("SELECT 1 /*!50700 , 2*/", mariadb=False, server_version=80030)][-1] == "2"
    assert [t for _, t in kinds("SELECT 1 /*M!, 2*/", mariadb=False)] == ["SELECT", "1"]  # MySQL: a comment
    assert [t for _, t in kinds("SELECT 1 /*!40101 , 2*/", server_version=40100)] == ["SELECT", "1"]


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1 /* open", "SELECT 1 /*! open", "SELECT 1 /*!99999 open", "SELECT 1 /*!99999 /* x */", "SELECT 'a"],
)
def test_unterminated_comment_or_string_ends_with_error(sql: str) -> None:
    toks = list(tokens(sql))
    assert toks[-1].kind == ERROR
    assert ERROR not in [t.kind for t in toks[:-1]]


# --- quotes ------------------------------------------------------------------


def test_strings_and_names() -> None:
    assert kinds("SELECT 'it''s', 'a\\'b', \"d\"\"q\"") == [
        (WORD, "SELECT"),
        (STRING, "'it''s'"),
        (PUNCT, ","),
        (STRING, "'a\\'b'"),
        (PUNCT, ","),
        (STRING, '"d""q"'),
    ]
    assert kinds("SELECT `a``b`, `x\\`") == [(WORD, "SELECT"), (QUOTED_NAME, "a`b"), (PUNCT, ","), (QUOTED_NAME, "x\\")]
    assert kinds('SELECT "a""b"', ansi_quotes=True) == [(WORD, "SELECT"), (QUOTED_NAME, 'a"b')]
    assert kinds("SELECT `a\x00`")[-1][0] == ERROR  # the server refuses a NUL in a quoted name


def test_literal_prefixes_and_numbers() -> None:
    assert kinds("SELECT _utf8mb4'x', _binary'y', N'z', X'0A', b'01', 0x0A, 0b01, 1.5e3, .5, 12abc, t.1e5") == [
        (WORD, "SELECT"),
        (WORD, "_UTF8MB4"),
        (STRING, "'x'"),
        (PUNCT, ","),
        (WORD, "_BINARY"),
        (STRING, "'y'"),
        (PUNCT, ","),
        (STRING, "N'z'"),
        (PUNCT, ","),
        (STRING, "X'0A'"),
        (PUNCT, ","),
        (STRING, "b'01'"),
        (PUNCT, ","),
        (NUMBER, "0x0A"),
        (PUNCT, ","),
        (NUMBER, "0b01"),
        (PUNCT, ","),
        (NUMBER, "1.5e3"),
        (PUNCT, ","),
        (NUMBER, ".5"),
        (PUNCT, ","),
        (WORD, "12ABC"),
        (PUNCT, ","),
        (WORD, "T"),
        (PUNCT, "."),
        (WORD, "1E5"),  # after name. a name follows, even with digits first
    ]
    assert kinds("SELECT X'0A1'")[-1][0] == ERROR  # odd number of hex digits
    assert kinds("SELECT x'0G'")[-1][0] == ERROR


def test_variables_and_placeholders() -> None:
    assert kinds("SELECT @a, @'b c', @`d`, @@sql_mode, @@GLOBAL.sql_mode, @@`x`, @a.b, ?") == [
        (WORD, "SELECT"),
        (VARIABLE, "@a"),
        (PUNCT, ","),
        (VARIABLE, "@b c"),
        (PUNCT, ","),
        (VARIABLE, "@d"),
        (PUNCT, ","),
        (VARIABLE, "@@sql_mode"),
        (PUNCT, ","),
        (VARIABLE, "@@global.sql_mode"),
        (PUNCT, ","),
        (VARIABLE, "@@x"),
        (PUNCT, ","),
        (VARIABLE, "@a.b"),
        (PUNCT, ","),
        ("PLACEHOLDER", "?"),
    ]
    assert kinds("SELECT @@ version")[-1][0] == ERROR  # as the server: a name must follow @@ at once


def test_sql_mode_quoting() -> None:
    # Default: \" escapes the quote, so the string runs on and is unterminated.
    assert kinds('SELECT "a\\" kill')[-1][0] == ERROR
    assert kinds('SELECT "a\\" kill', no_backslash_escapes=True) == [
        (WORD, "SELECT"),
        (STRING, '"a\\"'),
        (WORD, "KILL"),
    ]
    assert kinds('SELECT "a\\" kill', ansi_quotes=True) == [(WORD, "SELECT"), (QUOTED_NAME, "a\\"), (WORD, "KILL")]
    assert kinds("SELECT 'a\\' , 1", no_backslash_escapes=True) == [
        (WORD, "SELECT"),
        (STRING, "'a\\'"),
        (PUNCT, ","),
        (NUMBER, "1"),
    ]
    # The attack: under NO_BACKSLASH_ESCAPES the second string starts where the server says.
    sql = "SET @a = 'x\\', @b = (SELECT 1) #'"
    assert [t.kind for t in tokens(sql)][-1] == STRING
    assert [t.text for t in tokens(sql, no_backslash_escapes=True)][-3:] == ["SELECT", "1", ")"]


def test_quote_modes() -> None:
    assert quote_modes("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO") == QuoteModes(False, False)
    assert quote_modes("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI") == QuoteModes(True, False)
    assert quote_modes("ansi") == QuoteModes(True, False)
    assert quote_modes("NO_BACKSLASH_ESCAPES") == QuoteModes(False, True)
    assert quote_modes("ORACLE,NO_BACKSLASH_ESCAPES") == QuoteModes(True, True)
    assert quote_modes("1048576") == QuoteModes(False, True)
    assert quote_modes("4") == QuoteModes(True, False)
    assert quote_modes("") == QuoteModes(False, False)


# --- normalized text ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "text"),
    [
        ("KILL/**/QUERY 5", "KILL QUERY 5"),
        ("/*!KILL*/ 5", "KILL 5"),
        ("kill\n connection 5", "kill connection 5"),
        ("SHOW/* x */FULL PROCESSLIST", "SHOW FULL PROCESSLIST"),
        ("  SELECT f(x),a.b  -- c\n ;  ", "SELECT f(x),a.b"),
        ("/*!40101 SET NAMES utf8 */;", "SET NAMES utf8"),
        ("SELECT '/* not a comment */'", "SELECT '/* not a comment */'"),
    ],
)
def test_normalized(sql: str, text: str) -> None:
    assert normalized(sql) == text


def test_normalized_text_matches_the_statement_handlers() -> None:
    from frontend.statements import cluster, variables

    for sql in ("KILL/**/QUERY 5", "/*!KILL*/ 5", "kill\n connection 5", "KILL /*!HARD*/ 5;"):
        assert cluster._KILL.match(normalized(sql)), sql
    for sql in ("SHOW/* x */FULL PROCESSLIST", "show\tprocesslist ;", "/*M!SHOW PROCESSLIST*/"):
        assert cluster._PROCESSLIST.match(normalized(sql)), sql
    assert variables.SHOW_WARNINGS.match(normalized("SHOW/**/WARNINGS /*!LIMIT 5*/"))


# --- classification ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "family"),
    [
        ("KILL 5", "kill"),
        ("kill/**/query 5", "kill"),
        ("/*!KILL*/ 5", "kill"),
        ("/*M!100000 KILL */ CONNECTION 5", "kill"),
        ("# tag\nKILL HARD QUERY USER bob", "kill"),
        ("KILL 'unterminated", "kill"),  # an FE family never goes to the engine, even broken
        ("SHOW PROCESSLIST", "processlist"),
        ("show /* x */ full processlist;", "processlist"),
        ("SHOW KILL AUDIT WHERE Requester = 'bob' LIMIT 5", "kill_audit"),
        ("CREATE USER bob IDENTIFIED BY 'x'", "accounts"),
        ("CREATE OR REPLACE USER bob", "accounts"),
        ("DROP USER IF EXISTS bob", "accounts"),
        ("ALTER USER bob WITH MAX_USER_CONNECTIONS 3", "accounts"),
        ("RENAME USER a TO b", "accounts"),
        ("GRANT SELECT_PRIV ON *.* TO bob", "accounts"),
        ("revoke all on db.* from bob", "accounts"),
        ("SET PASSWORD FOR bob = 'x'", "accounts"),
        ("SHOW GRANTS FOR CURRENT_USER()", "accounts"),
        ("SHOW CREATE USER bob", "accounts"),
        ("SET PROPERTY FOR 'bob' 'max_user_connections' = '3'", "accounts"),
        ("CREATE ROLE r", "roles"),
        ("SET DEFAULT ROLE r FOR bob", "roles"),
        ("SET session_context = 'trace_id:x'", "set"),
        ("SET @@session.session_context = 'x'", "set"),
        ("set `query_timeout` = 5", "set"),
        ("SET autocommit = 1, query_timeout = 5", "set"),
        ("SET GLOBAL max_connections = 5", "set"),
        ("SET @@global.max_connections = 5", "set"),
        ("SET @@GLOBAL . max_connections = 5", "set"),
        ("SET PERSIST x = 1", "set"),
        ("SET a = 1, GLOBAL b = 2", "set"),
        ("SET STATEMENT query_timeout = 5 FOR SELECT 1", "set"),
        ("SET STATEMENT max_statement_time = 5 FOR KILL 7", "kill"),
        ("SELECT * FROM information_schema.processlist", "processlist_table"),
        ("select * from `information_schema`.`PROCESSLIST`", "processlist_table"),
        ("SELECT * FROM information_schema /* x */ . processlist", "processlist_table"),
        ("SELECT * FROM information_schema.PROCESSL\u0130ST", "processlist_table"),  # MariaDB finds this one
        ("SELECT 1 FROM t WHERE id IN (SELECT id FROM information_schema.processlist)", "processlist_table"),
        ("SELECT CONNECTION_ID()", "connection_id"),
        ("select connection_id ()", "connection_id"),
        ("SELECT `connection_id`()", "connection_id"),
        ("SHOW WARNINGS", "warnings"),
        ("SHOW ERRORS LIMIT 5", "warnings"),
        ("SHOW COUNT(*) WARNINGS", "warnings"),
        ("USE db", "use"),
        ("BEGIN", "transaction"),
        ("BEGIN WORK;", "transaction"),
        ("START TRANSACTION READ ONLY", "transaction"),
        ("COMMIT AND NO CHAIN", "transaction"),
        ("ROLLBACK TO SAVEPOINT s", "transaction"),
        ("SAVEPOINT s", "transaction"),
        ("RELEASE SAVEPOINT s", "transaction"),
        ("SELECT SLEEP(5)", "sleep"),
        ("select sleep ( 0.5 ) ;", "sleep"),
    ],
)
def test_owned_families(sql: str, family: str) -> None:
    assert owned(sql) == family


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'KILL 5'",
        "SELECT * FROM t /* SHOW PROCESSLIST */",
        "SELECT 1 -- kill 5",
        "/*!99999 KILL 5 */ SELECT 1",
        "/*!50700 KILL 5 */ SELECT 1",
        "SELECT 1 #\nKILL",
        "SELECT 'information_schema.processlist'",
        "SELECT * FROM mydb.processlist",
        "SELECT * FROM `information_schema.processlist`",  # one name, in the current database
        "SELECT * FROM information_schema.processlists",
        "SELECT @information_schema.processlist",
        "SELECT db.connection_id()",
        "SELECT connection_id",
        "SELECT SLEEP(5) + 1",
        "SELECT SLEEP(0x10)",
        "BEGIN NOT ATOMIC KILL 5; END",  # a compound block: the engine's
        "SET @a = (SELECT global FROM t)",
        "SET autocommit = 1",
        "SET @session_context = 1",
        "SET x = 'session_context'",
        "SHOW TABLES",
        "k\u0131ll 5",  # dotless i: a name, not KILL
        "SELECT * FROM information_schema.processlist WHERE x = 'unterminated",  # broken: the engine judges
        "INSERT INTO t VALUES (CONNECTION_ID())",  # calls it but is not a SELECT (see calls_connection_id)
        "",
        "/* only a comment */",
    ],
)
def test_lookalikes_are_not_owned(sql: str) -> None:
    assert owned(sql) is None


def test_bare_processlist_in_information_schema() -> None:
    assert owned("SELECT * FROM processlist", current_db="INFORMATION_SCHEMA") == "processlist_table"
    assert owned("SELECT * FROM processlist", current_db="test") is None
    assert owned("SELECT * FROM t.processlist", current_db="information_schema") is None


def test_sql_mode_changes_what_is_owned() -> None:
    # ANSI_QUOTES: "information_schema"."processlist" is the table; otherwise two strings.
    sql = 'SELECT * FROM "information_schema"."processlist"'
    assert owned(sql, ANSI) == "processlist_table"
    assert owned(sql) is None
    # NO_BACKSLASH_ESCAPES: the first string ends at \', so CONNECTION_ID() is code.
    sql = "SELECT 'a\\', CONNECTION_ID() -- '"
    assert owned(sql, NBE) == "connection_id"
    assert owned(sql) is None


def test_classification_details() -> None:
    c = classify("USE `my``db`;")
    assert (c.owned, c.database) == ("use", "my`db")
    assert classify("use MyDb").database == "MyDb"
    assert classify("USE a b").database is None
    c = classify("  /* x */ KILL/**/QUERY   5 ; ")
    assert c.first_words == ("KILL", "QUERY")
    assert c.text == "KILL QUERY 5"
    c = classify("SET STATEMENT max_statement_time=1 FOR KILL 5")
    assert c.owned == "kill" and c.text == "KILL 5"
    assert classify("INSERT INTO t VALUES (CONNECTION_ID())").calls_connection_id
    assert classify("SELECT a, b FROM t").first_words == ("SELECT", "A")
    assert classify("KILL 'x").error


# --- split -------------------------------------------------------------------


def parts(sql: str, modes: QuoteModes = QuoteModes()) -> list[str]:
    return [sql[s:e] for s, e in split(sql, modes)]


def test_split() -> None:
    assert parts("SELECT 1; KILL 5;; /* c */ SELECT ';' ;") == ["SELECT 1", "KILL 5", "SELECT ';' "]
    assert parts("SELECT `a;b`; SELECT 2 -- ;\n; SELECT 3") == ["SELECT `a;b`", "SELECT 2 -- ;\n", "SELECT 3"]
    assert parts('SELECT "a;b"; SELECT 2', ANSI) == ['SELECT "a;b"', "SELECT 2"]
    assert parts("SELECT 1 /*!99999 ; */; KILL 8") == ["SELECT 1 /*!99999 ; */", "KILL 8"]
    assert parts("SELECT 1 /*! ; SELECT 2 */") == ["SELECT 1 /*! ", "SELECT 2 */"]  # the server cuts there too
    assert parts("SELECT 'a;") == ["SELECT 'a;"]
    assert parts("") == [] and parts(" ; ;") == []
    assert parts("BEGIN; KILL 5") == ["BEGIN", "KILL 5"]


def test_split_keeps_compound_bodies_whole() -> None:
    assert parts("BEGIN NOT ATOMIC SELECT 1; KILL 5; END; KILL 6") == [
        "BEGIN NOT ATOMIC SELECT 1; KILL 5; END",
        "KILL 6",
    ]
    sql = "CREATE PROCEDURE p() BEGIN IF 1 THEN SELECT 1; END IF; CASE WHEN 1 THEN SELECT 2; END CASE; END; KILL 7"
    assert parts(sql)[-1] == "KILL 7" and len(parts(sql)) == 2
    assert parts("lbl: LOOP SELECT 1; END LOOP; KILL 7") == ["lbl: LOOP SELECT 1; END LOOP", "KILL 7"]
    assert parts("IF 1 THEN SELECT 1; ELSE SELECT 2; END IF; KILL 7")[-1] == "KILL 7"
    assert parts("CREATE TABLE t (event INT); KILL 7") == ["CREATE TABLE t (event INT)", "KILL 7"]


# --- robustness and cost -----------------------------------------------------

_ALPHABET = st.sampled_from([*"'\"`\\/*!-#;@.()?xXbBnN0159 \n\t\x00ÿ", "M!", "--", "/*", "*/", "kill", "0x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join), st.booleans(), st.booleans(), st.booleans())
def test_random_text_never_raises(sql: str, ansi: bool, nbe: bool, maria: bool) -> None:
    modes = QuoteModes(ansi, nbe)
    toks = list(tokens(sql, ansi_quotes=ansi, no_backslash_escapes=nbe, mariadb=maria))
    assert all(t.kind != ERROR for t in toks[:-1])
    assert all(0 <= t.start <= t.end <= len(sql) for t in toks)
    assert all(a.end <= b.start for a, b in itertools.pairwise(toks))
    normalized(sql, modes, mariadb=maria)
    c = classify(sql, modes, fe_variables=FE_VARS, current_db="information_schema", mariadb=maria)
    assert c.owned is None or c.text is not None
    assert c.first_words is not None
    for s, e in split(sql, modes, mariadb=maria):
        assert 0 <= s < e <= len(sql)


@settings(max_examples=100, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_split_pieces_tokenize_like_the_whole(sql: str) -> None:
    """Outside executable comments, the statements' tokens are the whole text's
    tokens without the separating semicolons."""
    if "/*!" in sql or "/*M!" in sql or "'" in sql or '"' in sql or "`" in sql or "*/" in sql:
        return
    whole = [(t.kind, t.text) for t in tokens(sql) if t.text != ";"]
    pieces = [(t.kind, t.text) for s, e in split(sql) for t in tokens(sql[s:e])]
    if not any(k == ERROR for k, _ in whole):
        assert pieces == whole


HOSTILE = {
    "comments": "/**/" * (1 << 18),
    "quotes": "'" * (1 << 20),
    "backslashes": "\\" * (1 << 20),
    "executable openers": "/*!" * 349_525,
    "versioned openers": "/*!00000" * 131_072,
    "dashes": "--" * (1 << 19),
    "backquotes": "`" * (1 << 20),
    "at signs": "@@" * (1 << 19),
    "semicolons": ";" * (1 << 20),
    "kill then backslashes": "KILL " + "\\" * (1 << 20),
    "select with processlist": "SELECT processlist " + "1+" * (1 << 19),
    "select with connection_id": "SELECT 'x' " + "'connection_id' " * 65_536,
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_megabyte_is_classified_fast(name: str) -> None:
    sql = HOSTILE[name]
    started = time.perf_counter()
    classify(sql, fe_variables=FE_VARS, current_db="information_schema")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("name", ["comments", "quotes", "executable openers", "dashes", "backquotes", "semicolons"])
def test_hostile_megabyte_normalizes_and_splits_fast(name: str) -> None:
    sql = HOSTILE[name]
    started = time.perf_counter()
    normalized(sql)
    split(sql)
    assert time.perf_counter() - started < 2.0


def _token_seconds(sql: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _tok in tokens(sql):
            pass
        best = min(best, time.perf_counter() - started)
    return best


def test_tokens_scale_linearly() -> None:
    import random

    rng = random.Random(20)
    pieces = ["SELECT", " ", "'a''b'", "`n`", "/* c */", "-- x\n", "1.5", "(", ")", ",", "@v", "/*!", "*/", "\\", "#\n"]
    small = "".join(rng.choice(pieces) for _ in range(2_000))[:10_000]
    big = "".join(rng.choice(pieces) for _ in range(20_000))[:100_000]
    assert _token_seconds(big) < 25 * max(_token_seconds(small), 1e-4)  # 10x the text: ~10x, generous


def test_classify_cost_is_microseconds() -> None:
    select = "SELECT id, name, price FROM products WHERE category_id = 42 AND price > 10.5 ORDER BY name LIMIT 20"
    for sql, bound in ((select, 50e-6), ("KILL QUERY 12345", 200e-6)):
        started = time.perf_counter()
        for _ in range(1000):
            classify(sql)
        assert (time.perf_counter() - started) / 1000 < bound  # generous: measured ~1 us and ~7 us


# --- the server agrees -------------------------------------------------------

AGREEMENT = [
    "SELECT 1 /*!, 2*/",
    "SELECT 1 /*M!, 2*/",
    "SELECT 1 /*!50700 , 2*/",
    "SELECT 1 /*M!50700 , 2*/",
    "SELECT 1 /*!100000 , 2*/",
    "SELECT 1 /*!999999 , 2*/",
    "SELECT 1 /*!99999 /* x */ , 2 */, 3",
    "SELECT 1 --\x01, 2",
    "SELECT 1 --\x0b\n, 2",
    "SELECT 1 /*+ , 2 */",
    "SELECT 'a''b', 2",
    "SELECT 'a\\'b', 2",
    "SELECT 1 /*! , '*/' */",
]


def test_column_counts_agree_with_mariadb(mariadb: object) -> None:
    """The server's column count for each statement is the lexer's count of
    top-level commas + 1: the two read comments and quotes alike."""
    server = mariadb
    conn = server.connect()  # type: ignore[attr-defined]
    with contextlib.closing(conn), conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        version_text = cur.fetchone()[0].split("-")[0]
        major, minor, patch = (int(x) for x in version_text.split("."))
        version = major * 10000 + minor * 100 + patch
        for sql in AGREEMENT:
            cur.execute(sql)
            expected = len(cur.description)
            toks = list(tokens(sql, server_version=version))
            assert sum(1 for t in toks if t.kind == PUNCT and t.text == ",") + 1 == expected, sql
        for sql in ('SELECT "a\\" , 2', "SELECT 'a\\' , 2 -- '"):
            cur.execute("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
            cur.execute(sql)
            assert len(cur.description) == 2
            assert sum(1 for t in tokens(sql, no_backslash_escapes=True) if t.text == ",") == 1
        cur.execute("SET SESSION sql_mode = DEFAULT")
