-- Schema 1 of the SQL store (issue 14). Applied in one transaction by
-- `portal::store` (table `schema_migrations` records it).
--
-- Written in the SQL that SQLite and PostgreSQL share: BIGINT times (Unix
-- seconds), BOOLEAN flags, TEXT for everything else (hashes as hex, never BLOB).
-- Ids are assigned by the store inside the writing transaction (largest + 1),
-- so no engine's auto-increment is needed. The one part that is SQLite's own is
-- the FTS5 search table, kept apart in 0002_search_sqlite.sql (PostgreSQL:
-- pg_trgm).
--
-- Every table has the columns its keys, references, constraints and queries
-- need. Three domain records with deep structure (a license's licensee, license
-- data, entitlements and binding history; a mutation's content and priced
-- summary; an account's names) are also kept whole as JSON in `record`, which is
-- what the server decodes; the columns beside it are written from the same value
-- in the same statement and `pls admin verify` checks that they agree.

CREATE TABLE accounts (
    id BIGINT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE CHECK (email <> '' AND email = lower(trim(email))),
    trusted BOOLEAN NOT NULL,
    admin BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL CHECK (created_at >= 0),
    record TEXT NOT NULL
);

CREATE TABLE licenses (
    id BIGINT PRIMARY KEY,
    number TEXT NOT NULL UNIQUE CHECK (length(number) = 10),
    account_id BIGINT REFERENCES accounts (id),
    license_type TEXT NOT NULL CHECK (license_type IN ('standard', 'engineering')),
    protection TEXT NOT NULL CHECK (protection IN ('soft_dongle', 'hard_dongle', 'engineering')),
    created_at BIGINT NOT NULL CHECK (created_at >= 0),
    serial BIGINT NOT NULL CHECK (serial >= 0),
    current_grant BIGINT CHECK (current_grant >= 1 AND current_grant <= serial),
    next_mutation BIGINT NOT NULL CHECK (next_mutation >= 1),
    record TEXT NOT NULL,
    CHECK ((license_type = 'engineering') = (protection = 'engineering'))
);
CREATE INDEX licenses_by_account ON licenses (account_id, number);

CREATE TABLE mutations (
    license_number TEXT NOT NULL REFERENCES licenses (number),
    number BIGINT NOT NULL CHECK (number >= 1),
    kind TEXT NOT NULL CHECK (kind IN ('new', 'upgrade', 'renewal')),
    state TEXT NOT NULL CHECK (state IN ('quote', 'ordered', 'activated', 'deleted', 'expired')),
    created_at BIGINT NOT NULL,
    quote_valid_until BIGINT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (license_number, number)
);
CREATE INDEX mutations_by_state ON mutations (state, quote_valid_until);

CREATE TABLE grants (
    license_number TEXT NOT NULL REFERENCES licenses (number),
    serial BIGINT NOT NULL CHECK (serial >= 1),
    signed TEXT NOT NULL,
    PRIMARY KEY (license_number, serial)
);

CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    license_number TEXT REFERENCES licenses (number),
    account_id BIGINT REFERENCES accounts (id),
    action TEXT NOT NULL CHECK (action <> ''),
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_license ON audit (license_number, seq);

-- The latest check-in per license ("last seen"), and the ones that changed
-- something.
CREATE TABLE checkins (
    license_number TEXT PRIMARY KEY REFERENCES licenses (number),
    hardware_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    running BOOLEAN NOT NULL,
    ge_seats BIGINT NOT NULL CHECK (ge_seats >= 0),
    pwa_seats BIGINT NOT NULL CHECK (pwa_seats >= 0),
    daemon_version TEXT NOT NULL,
    from_addr TEXT NOT NULL
);
CREATE TABLE checkin_history (
    seq BIGINT PRIMARY KEY,
    license_number TEXT NOT NULL REFERENCES licenses (number),
    hardware_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    running BOOLEAN NOT NULL,
    ge_seats BIGINT NOT NULL CHECK (ge_seats >= 0),
    pwa_seats BIGINT NOT NULL CHECK (pwa_seats >= 0),
    daemon_version TEXT NOT NULL,
    from_addr TEXT NOT NULL
);
CREATE INDEX checkin_history_by_license ON checkin_history (license_number, seq);

-- The web portal's own state. Sessions and emailed link tokens are kept as
-- SHA-256 hashes (hex) only; backups leave them and the mail queue out.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY CHECK (length(id_hash) = 64),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    persistent BOOLEAN NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_by_account ON sessions (account_id);

CREATE TABLE email_tokens (
    token_hash TEXT PRIMARY KEY CHECK (length(token_hash) = 64),
    purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    expires_at BIGINT NOT NULL,
    used BOOLEAN NOT NULL
);

CREATE TABLE prefs (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id),
    lang TEXT NOT NULL CHECK (lang IN ('de', 'en'))
);

-- Renewal reminders already sent: `<license>:<valid_until>:<days>`.
CREATE TABLE reminders (
    key TEXT PRIMARY KEY
);

CREATE TABLE mail_queue (
    id BIGINT PRIMARY KEY,
    next_attempt BIGINT NOT NULL,
    job TEXT NOT NULL
);

-- Small server secrets (the CSRF key, hex).
CREATE TABLE web_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Answers to admin commands by the idempotency key the CLI sent, so a retry
-- after a lost answer gets the first answer instead of doing it again.
CREATE TABLE admin_requests (
    key TEXT PRIMARY KEY CHECK (length(key) BETWEEN 16 AND 128),
    at BIGINT NOT NULL,
    reply TEXT NOT NULL
);
