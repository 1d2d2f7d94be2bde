-- Failed logins of the last quarter hour, per key (`a:<email>` or `i:<address>`),
-- so every server on one database throttles the same attempts
-- (`portal::web::throttle`). Rows older than the window are deleted as new ones
-- are written; nothing here is business data (backups leave it out).
CREATE TABLE login_failures (
    key TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX login_failures_by_key ON login_failures (key, at);
CREATE INDEX login_failures_by_age ON login_failures (at);
