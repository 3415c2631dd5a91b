-- The FEs' service account (created by the image from MARIADB_USER/PASSWORD):
-- every privilege on the data, and the right to KILL any FE's backend thread
-- (an FE kills the threads of a dead FE, and a KILL from any FE stops the statement).
GRANT ALL PRIVILEGES ON *.* TO 'fecluster'@'%';
FLUSH PRIVILEGES;
