"""fecluster benchmarks: ``python -m bench`` (see bench/README.md).

Starts its own redis-server and FE processes on free ports, measures
connect, ``SELECT 1``, KILL QUERY (same FE and cross FE), SHOW PROCESSLIST
with thousands of idle connections, how KILL scales with connections and FEs,
and memory per idle connection, side by side with MariaDB when one answers on
127.0.0.1:3306.
"""
