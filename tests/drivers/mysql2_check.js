// The node mysql2 cells of tests/test_drivers.py.
// node mysql2_check.js LB FE1 FE2 USER PASSWORD DATABASE CA_PEM
// One JSON object per line: {"check": ..., "ok": true|false, ...}; the Python test asserts.
'use strict';
const fs = require('fs');
const mysql = require('mysql2/promise');

const [lb, fe1, fe2, user, password, database, ca] = process.argv.slice(2);
const TEXT = 'h\u00e9llo w\u00f6rld \u{1F600}\u{1F389}';
const BLOB = Buffer.from([...Array(256).keys()]);
const SELECT_CONSTANTS =
  'SELECT 2147483647 AS i, CAST(18446744073709551615 AS UNSIGNED) AS u,' +
  " CAST('12345678901234567890.0123456789' AS DECIMAL(30,10)) AS d, CAST(3.141592653589793 AS DOUBLE) AS f," +
  " DATE '2026-11-27' AS dt, CAST('2026-11-27 14:26:03.123456' AS DATETIME(6)) AS ts," +
  ` CAST('12:34:56' AS TIME) AS tm, '${TEXT}' AS s, NULL AS n`;
const DDL =
  ' (id INT PRIMARY KEY, i INT, u BIGINT UNSIGNED, d DECIMAL(30,10), f DOUBLE, dt DATE,' +
  ' ts DATETIME(6), tm TIME, s VARCHAR(64), b BLOB, n INT)';

// Through the balancer: no database (fecluster's tables live on one FE: data cells use fe1).
function connect(port, u = 'root', pw = '', extra = {}) {
  return mysql.createConnection({
    host: '127.0.0.1', port: Number(port), user: u, password: pw,
    database: port === fe1 ? database : undefined, charset: 'utf8mb4', connectTimeout: 10000,
    supportBigNumbers: true, bigNumberStrings: true, dateStrings: true, decimalNumbers: false, ...extra,
  });
}

function text(v) {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return v.toString('hex');
  return String(v);
}

function values(row) {
  const out = {};
  for (const [k, v] of Object.entries(row)) out[k] = text(v);
  return out;
}

function error(out, e) {
  out.code = e.code;
  out.errno = e.errno === undefined ? null : e.errno;
  out.sqlstate = e.sqlState === undefined ? null : e.sqlState;
  out.fatal = Boolean(e.fatal);
  out.message = e.message;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function scalar(conn, sql) {
  const [rows] = await conn.query({ sql, rowsAsArray: true });
  return text(rows[0][0]);
}

async function sessionGone(watcher, id, seconds) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const [rows] = await watcher.query('SHOW FULL PROCESSLIST');
    if (!rows.some((r) => Number(r.Id) === id && String(r.Info).toUpperCase().includes('SLEEP'))) return true;
    await sleep(100);
  }
  return false;
}

async function waitSleeping(conn, id) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const [rows] = await conn.query('SHOW FULL PROCESSLIST');
    if (rows.some((r) => Number(r.Id) === id && String(r.Info).toUpperCase().includes('SLEEP'))) return;
    await sleep(50);
  }
  throw new Error(`connection ${id} never showed SELECT SLEEP in SHOW FULL PROCESSLIST`);
}

async function freshTable(conn, name) {
  await conn.query(`DROP TABLE IF EXISTS ${name}`);
  await conn.query(`CREATE TABLE ${name}${DDL}`);
}

async function kill(out, kind) {
  const victim = await connect(fe1);
  const killer = await connect(fe2);
  victim.on('error', () => {});
  try {
    const id = Number(await scalar(victim, 'SELECT CONNECTION_ID()'));
    let end = 0;
    const running = victim.query('SELECT SLEEP(30)').then(
      () => { end = Date.now(); return null; },
      (e) => { end = Date.now(); return e; },
    );
    await waitSleeping(killer, id);
    const sent = Date.now();
    await killer.query(`KILL ${kind} ${id}`);
    const e = await Promise.race([running, sleep(15000).then(() => 'timeout')]);
    out.finished = e !== 'timeout';
    out.seconds = (end - sent) / 1000;
    if (e instanceof Error) error(out, e);
    else out.outcome = String(e);
    try {
      out.after = await scalar(victim, 'SELECT 2');
    } catch (e2) {
      out.after_error = e2.message;
    }
  } finally {
    victim.destroy();
    await killer.end();
  }
}

const checks = {
  async login_root(out) {
    const c = await connect(lb);
    out.value = await scalar(c, 'SELECT 1');
    await c.end();
  },
  async login_password(out) {
    const c = await connect(lb, user, password);
    out.current_user = await scalar(c, 'SELECT CURRENT_USER()');
    await c.end();
  },
  async login_wrong_password(out) {
    try {
      const c = await connect(lb, user, 'wrong');
      out.connected = true;
      await c.end();
    } catch (e) {
      error(out, e);
    }
  },
  async login_tls(out) {
    const c = await connect(lb, user, password, { ssl: { ca: fs.readFileSync(ca) } });
    out.encrypted = Boolean(c.connection.stream.encrypted);
    out.value = await scalar(c, 'SELECT 1');
    await c.end();
  },
  async types_select(out) {
    const c = await connect(lb);
    const [rows] = await c.query(SELECT_CONSTANTS);
    out.values = values(rows[0]);
    await c.end();
  },
  async blob_select(out) {
    const c = await connect(lb);
    const [rows] = await c.query(`SELECT X'${BLOB.toString('hex')}' AS b`);
    out.values = values(rows[0]);
    await c.end();
  },
  async prepared(out) {
    const c = await connect(fe1);
    await freshTable(c, 't_mysql2_prepared');
    const [res] = await c.execute(
      'INSERT INTO t_mysql2_prepared (id, i, u, d, f, dt, ts, tm, s, b, n) VALUES (?,?,?,?,?,?,?,?,?,?,?)',
      [1, 2147483647, '18446744073709551615', '12345678901234567890.0123456789', 3.141592653589793,
        '2026-11-27', '2026-11-27 14:26:03.123456', '12:34:56', TEXT, BLOB, null],
    );
    out.inserted = res.affectedRows;
    const sql = 'SELECT i, u, d, f, dt, ts, tm, s, b, n FROM t_mysql2_prepared WHERE id = ? AND s = ? AND b = ?';
    for (let round = 0; round < 2; round++) {  // the second execute reuses the prepared statement
      const [rows] = await c.execute(sql, [1, TEXT, BLOB]);
      out[`found${round}`] = rows.length;
      if (round === 1) out.values = values(rows[0]);
    }
    await c.end();
  },
  async txn(out) {
    const c = await connect(fe1);
    const other = await connect(fe1);
    await freshTable(c, 't_mysql2_txn');
    await c.beginTransaction();
    await c.query('INSERT INTO t_mysql2_txn (id, i) VALUES (1, 1)');
    await c.rollback();
    out.after_rollback = await scalar(c, 'SELECT COUNT(*) FROM t_mysql2_txn');
    await c.beginTransaction();
    await c.query('INSERT INTO t_mysql2_txn (id, i) VALUES (2, 2)');
    out.other_before_commit = await scalar(other, 'SELECT COUNT(*) FROM t_mysql2_txn');
    await c.commit();
    out.other_after_commit = await scalar(other, 'SELECT COUNT(*) FROM t_mysql2_txn');
    await c.end();
    await other.end();
  },
  kill_query: (out) => kill(out, 'QUERY'),
  kill_connection: (out) => kill(out, 'CONNECTION'),
  // mysql2's `timeout`: the client gives up after 1 s and closes its connection (no KILL).
  // The server must then drop the statement of the client that went away.
  async query_timeout(out) {
    const c = await connect(lb);
    c.on('error', () => {});
    const watcher = await connect(lb);
    const id = Number(await scalar(c, 'SELECT CONNECTION_ID()'));
    const start = Date.now();
    try {
      await c.query({ sql: 'SELECT SLEEP(30)', timeout: 1000 });
      out.completed = true;
    } catch (e) {
      error(out, e);
    }
    out.seconds = (Date.now() - start) / 1000;
    c.destroy();
    const fresh = await connect(lb);
    out.after = await scalar(fresh, 'SELECT 1');
    await fresh.end();
    const gone = Date.now();
    out.server_dropped = await sessionGone(watcher, id, 8);
    out.server_dropped_seconds = (Date.now() - gone) / 1000;
    await watcher.end();
  },
};

(async () => {
  for (const [name, fn] of Object.entries(checks)) {
    const out = { check: name };
    try {
      await fn(out);
      out.ok = true;
    } catch (e) {
      out.ok = false;
      out.error = `${e.code || e.name}: ${e.message}`;
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  }
  process.exit(0);
})();
