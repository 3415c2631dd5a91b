// The JDBC cells of tests/test_drivers.py: MariaDB Connector/J (Debian's libmariadb-java).
// java -cp mariadb-java-client.jar:. JdbcCheck LB FE1 FE2 USER PASSWORD DATABASE CA_PEM
// One JSON object per line: {"check": ..., "ok": true|false, ...}; the Python test asserts.
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Time;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;

public class JdbcCheck {
    static String lb, fe1, fe2, user, password, database, ca;

    static final String TEXT = "h\u00e9llo w\u00f6rld \uD83D\uDE00\uD83C\uDF89";
    static final String[] COLUMNS = {"i", "u", "d", "f", "dt", "ts", "tm", "s", "b", "n"};

    interface Check {
        void run(Map<String, Object> out) throws Exception;
    }

    public static void main(String[] args) throws Exception {
        lb = args[0]; fe1 = args[1]; fe2 = args[2]; user = args[3]; password = args[4]; database = args[5]; ca = args[6];
        Class.forName("org.mariadb.jdbc.Driver");
        run("login_root", out -> {
            try (Connection c = connect(lb, "root", "", "")) {
                out.put("value", scalar(c, "SELECT 1"));
            }
        });
        run("login_password", out -> {
            try (Connection c = connect(lb, user, password, "")) {
                out.put("current_user", scalar(c, "SELECT CURRENT_USER()"));
            }
        });
        run("login_wrong_password", out -> {
            try (Connection c = connect(lb, user, "wrong", "")) {
                out.put("connected", true);
            } catch (SQLException e) {
                error(out, e);
            }
        });
        run("login_tls", out -> {
            try (Connection c = connect(lb, user, password, "&useSsl=true&serverSslCert=" + ca)) {
                out.put("value", scalar(c, "SELECT 1"));
            }
        });
        run("types_select", out -> {
            try (Connection c = connect(lb, "root", "", ""); Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery(selectConstants())) {
                rs.next();
                out.put("values", values(rs));
            }
        });
        run("blob_select", out -> {
            try (Connection c = connect(lb, "root", "", ""); Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT X'" + hex(blob()) + "' AS b")) {
                rs.next();
                out.put("values", values(rs));
            }
        });
        run("prepared", out -> {
            try (Connection c = connect(fe1, "root", "", "&useServerPrepStmts=true")) {
                freshTable(c, "t_jdbc_prepared");
                try (PreparedStatement p = c.prepareStatement(
                        "INSERT INTO t_jdbc_prepared (id, i, u, d, f, dt, ts, tm, s, b, n) VALUES (?,?,?,?,?,?,?,?,?,?,?)")) {
                    p.setInt(1, 1);
                    p.setInt(2, 2147483647);
                    p.setBigDecimal(3, new BigDecimal("18446744073709551615"));
                    p.setBigDecimal(4, new BigDecimal("12345678901234567890.0123456789"));
                    p.setDouble(5, 3.141592653589793);
                    p.setDate(6, Date.valueOf("2026-11-27"));
                    p.setTimestamp(7, Timestamp.valueOf("2026-11-27 14:26:03.123456"));
                    p.setTime(8, Time.valueOf("12:34:56"));
                    p.setString(9, TEXT);
                    p.setBytes(10, blob());
                    p.setNull(11, Types.INTEGER);
                    out.put("inserted", p.executeUpdate());
                }
                try (PreparedStatement p = c.prepareStatement(
                        "SELECT i, u, d, f, dt, ts, tm, s, b, n FROM t_jdbc_prepared WHERE id = ? AND s = ? AND b = ?")) {
                    for (int round = 0; round < 2; round++) {  // the second execute reuses the bound types
                        p.setInt(1, 1);
                        p.setString(2, TEXT);
                        p.setBytes(3, blob());
                        try (ResultSet rs = p.executeQuery()) {
                            out.put("found" + round, rs.next());
                            if (round == 1) out.put("values", values(rs));
                        }
                    }
                }
            }
        });
        run("txn", out -> {
            try (Connection c = connect(fe1, "root", "", ""); Connection other = connect(fe1, "root", "", "")) {
                freshTable(c, "t_jdbc_txn");
                c.setAutoCommit(false);
                try (Statement s = c.createStatement()) {
                    s.executeUpdate("INSERT INTO t_jdbc_txn (id, i) VALUES (1, 1)");
                    c.rollback();
                    out.put("after_rollback", scalar(c, "SELECT COUNT(*) FROM t_jdbc_txn"));
                    s.executeUpdate("INSERT INTO t_jdbc_txn (id, i) VALUES (2, 2)");
                    out.put("other_before_commit", scalar(other, "SELECT COUNT(*) FROM t_jdbc_txn"));
                    c.commit();
                    out.put("other_after_commit", scalar(other, "SELECT COUNT(*) FROM t_jdbc_txn"));
                }
            }
        });
        run("metadata", JdbcCheck::metadata);
        run("kill_query", out -> kill(out, "QUERY"));
        run("kill_connection", out -> kill(out, "CONNECTION"));
        run("query_timeout", out -> {
            try (Connection c = connect(lb, "root", "", ""); Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                long start = System.nanoTime();
                try {
                    s.executeQuery("SELECT SLEEP(30)").close();
                    out.put("completed", true);
                } catch (SQLException e) {
                    error(out, e);
                }
                out.put("seconds", (System.nanoTime() - start) / 1e9);
                out.put("after", scalar(c, "SELECT 1"));
            }
        });
    }

    /** DatabaseMetaData as DBeaver reads it: every row of each call, each column as text. */
    static void metadata(Map<String, Object> out) throws Exception {
        try (Connection c = connect(fe1, "root", "", "")) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP VIEW IF EXISTS t_meta_view");
                s.execute("DROP TABLE IF EXISTS t_meta_child");
                s.execute("DROP TABLE IF EXISTS t_meta_parent");
                s.execute("CREATE TABLE t_meta_parent (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
                        + " code VARCHAR(20) NOT NULL, name VARCHAR(40) DEFAULT 'none',"
                        + " amount DECIMAL(10,2) NOT NULL DEFAULT 0.00, ratio DOUBLE, created DATETIME,"
                        + " note TEXT COMMENT 'free text', big BIGINT UNSIGNED, flag TINYINT(1) DEFAULT 1, raw BLOB,"
                        + " d DATE, tm TIME, ts TIMESTAMP NULL, ch CHAR(3), small SMALLINT UNSIGNED,"
                        + " UNIQUE KEY uq_code (code), KEY idx_name (name), KEY idx_pair (name, created))"
                        + " COMMENT 'the parents'");
                s.execute("CREATE TABLE t_meta_child (id INT PRIMARY KEY, parent_id INT NOT NULL,"
                        + " qty SMALLINT DEFAULT 1, KEY idx_parent (parent_id), CONSTRAINT fk_child_parent"
                        + " FOREIGN KEY (parent_id) REFERENCES t_meta_parent (id) ON DELETE CASCADE)");
                s.execute("CREATE VIEW t_meta_view AS SELECT id, code FROM t_meta_parent");
            }
            DatabaseMetaData md = c.getMetaData();
            String db = database;
            List<Object> catalogs = new ArrayList<>();
            for (Object row : rows(md.getCatalogs())) {
                if (db.equals(((Map<?, ?>) row).get("TABLE_CAT"))) catalogs.add(row);  // the others differ by server
            }
            out.put("getCatalogs", catalogs);
            out.put("getTables", rows(md.getTables(db, null, "t_meta%", null)));
            out.put("getTables_TABLE", rows(md.getTables(db, null, "t_meta%", new String[] {"TABLE", "VIEW"})));
            for (String t : new String[] {"t_meta_parent", "t_meta_child"}) {
                out.put("getColumns " + t, rows(md.getColumns(db, null, t, "%")));
                out.put("getPrimaryKeys " + t, rows(md.getPrimaryKeys(db, null, t)));
                out.put("getIndexInfo " + t, rows(md.getIndexInfo(db, null, t, false, true)));
                out.put("getIndexInfo unique " + t, rows(md.getIndexInfo(db, null, t, true, true)));
                out.put("getImportedKeys " + t, rows(md.getImportedKeys(db, null, t)));
                out.put("getExportedKeys " + t, rows(md.getExportedKeys(db, null, t)));
            }
            out.put("getColumns t_meta_view", rows(md.getColumns(db, null, "t_meta_view", "%")));
            out.put("getCrossReference", rows(md.getCrossReference(db, null, "t_meta_parent", db, null, "t_meta_child")));
            out.put("getProcedures", rows(md.getProcedures(db, null, "%")));
            out.put("getFunctions", rows(md.getFunctions(db, null, "%")));
        }
    }

    static List<Object> rows(ResultSet rs) throws SQLException {
        List<Object> found = new ArrayList<>();
        try (rs) {
            ResultSetMetaData meta = rs.getMetaData();
            while (rs.next()) {
                Map<String, Object> row = new LinkedHashMap<>();
                for (int i = 1; i <= meta.getColumnCount(); i++) row.put(meta.getColumnLabel(i), rs.getString(i));
                found.add(row);
            }
        }
        return found;
    }

    static void kill(Map<String, Object> out, String kind) throws Exception {
        try (Connection victim = connect(fe1, "root", "", ""); Connection killer = connect(fe2, "root", "", "")) {
            long id = Long.parseLong(scalar(victim, "SELECT CONNECTION_ID()"));
            AtomicReference<Object> outcome = new AtomicReference<>();
            long[] end = new long[1];
            Thread t = new Thread(() -> {
                try (Statement s = victim.createStatement()) {
                    s.executeQuery("SELECT SLEEP(30)").close();
                    outcome.set("completed");
                } catch (SQLException e) {
                    outcome.set(e);
                }
                end[0] = System.nanoTime();
            });
            t.start();
            waitSleeping(killer, id);
            long sent = System.nanoTime();
            try (Statement s = killer.createStatement()) {
                s.execute("KILL " + kind + " " + id);
            }
            t.join(15000);
            out.put("finished", !t.isAlive());
            out.put("seconds", (end[0] - sent) / 1e9);
            if (outcome.get() instanceof SQLException e) {
                error(out, e);
            } else {
                out.put("outcome", String.valueOf(outcome.get()));
            }
            try {
                out.put("after", scalar(victim, "SELECT 2"));
            } catch (SQLException e) {
                out.put("after_error", e.getClass().getSimpleName() + ": " + e.getMessage());
            }
        }
    }

    static void waitSleeping(Connection c, long id) throws Exception {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (System.nanoTime() < deadline) {
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW FULL PROCESSLIST")) {
                while (rs.next()) {
                    String info = rs.getString("Info");
                    if (rs.getLong("Id") == id && info != null && info.toUpperCase().contains("SLEEP")) return;
                }
            }
            Thread.sleep(50);
        }
        throw new IllegalStateException("connection " + id + " never showed SELECT SLEEP in SHOW FULL PROCESSLIST");
    }

    /** Through the balancer: no database (fecluster's tables live on one FE: data cells use fe1). */
    static Connection connect(String port, String u, String pw, String extra) throws SQLException {
        String db = port.equals(fe1) ? database : "";
        String url = "jdbc:mariadb://127.0.0.1:" + port + "/" + db + "?connectTimeout=10000&socketTimeout=60000"
                + (extra.contains("useSsl") ? "" : "&useSsl=false") + extra;
        return DriverManager.getConnection(url, u, pw);
    }

    static String scalar(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    static void freshTable(Connection c, String name) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS " + name);
            s.execute("CREATE TABLE " + name + " (id INT PRIMARY KEY, i INT, u BIGINT UNSIGNED, d DECIMAL(30,10),"
                    + " f DOUBLE, dt DATE, ts DATETIME(6), tm TIME, s VARCHAR(64), b BLOB, n INT)");
        }
    }

    static byte[] blob() {
        byte[] b = new byte[256];
        for (int i = 0; i < 256; i++) b[i] = (byte) i;
        return b;
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    static String selectConstants() {
        return "SELECT 2147483647 AS i, CAST(18446744073709551615 AS UNSIGNED) AS u,"
                + " CAST('12345678901234567890.0123456789' AS DECIMAL(30,10)) AS d, CAST(3.141592653589793 AS DOUBLE) AS f,"
                + " DATE '2026-11-27' AS dt, CAST('2026-11-27 14:26:03.123456' AS DATETIME(6)) AS ts,"
                + " CAST('12:34:56' AS TIME) AS tm, '" + TEXT + "' AS s, NULL AS n";
    }

    /** Each column through its typed getter, printed as text (BLOB as hex). */
    static Map<String, Object> values(ResultSet rs) throws SQLException {
        Map<String, Object> v = new LinkedHashMap<>();
        ResultSetMetaData md = rs.getMetaData();
        Map<String, Object> types = new LinkedHashMap<>();
        for (int i = 1; i <= md.getColumnCount(); i++) {
            String name = md.getColumnLabel(i);
            types.put(name, md.getColumnTypeName(i));
            Object value = switch (name) {
                case "i" -> String.valueOf(rs.getInt(i));
                case "u" -> rs.getObject(i);
                case "d" -> rs.getBigDecimal(i) == null ? null : rs.getBigDecimal(i).toPlainString();
                case "f" -> Double.toString(rs.getDouble(i));
                case "dt" -> rs.getDate(i);
                case "ts" -> rs.getTimestamp(i);
                case "tm" -> rs.getTime(i);
                case "b" -> rs.getBytes(i) == null ? null : hex(rs.getBytes(i));
                default -> rs.getString(i);
            };
            v.put(name, rs.wasNull() ? null : value == null ? null : value.toString());
        }
        v.put("_types", types);
        return v;
    }

    static void error(Map<String, Object> out, SQLException e) {
        out.put("exception", e.getClass().getName());
        out.put("code", e.getErrorCode());
        out.put("sqlstate", e.getSQLState());
        out.put("message", e.getMessage());
    }

    static void run(String name, Check check) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("check", name);
        try {
            check.run(out);
            out.put("ok", true);
        } catch (Throwable e) {
            out.put("ok", false);
            out.put("error", e.getClass().getName() + ": " + e.getMessage());
        }
        System.out.println(json(out));
        System.out.flush();
    }

    @SuppressWarnings("unchecked")
    static String json(Object o) {
        if (o == null) return "null";
        if (o instanceof Boolean || o instanceof Number) return o.toString();
        if (o instanceof List<?> l) {
            StringBuilder sb = new StringBuilder("[");
            for (Object x : l) sb.append(sb.length() > 1 ? ", " : "").append(json(x));
            return sb.append("]").toString();
        }
        if (o instanceof Map<?, ?> m) {
            StringBuilder sb = new StringBuilder("{");
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (sb.length() > 1) sb.append(", ");
                sb.append(json(String.valueOf(e.getKey()))).append(": ").append(json(e.getValue()));
            }
            return sb.append("}").toString();
        }
        String s = o.toString();
        StringBuilder sb = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') sb.append('\\').append(ch);
            else if (ch < 0x20 || ch > 0x7e) sb.append(String.format("\\u%04x", (int) ch));
            else sb.append(ch);
        }
        return sb.append("\"").toString();
    }
}
