-- Schema 4 (issue 14, SQLite): the records as compact binary instead of JSON
-- text. `accounts.record`, `licenses.record`, `mutations.record` and
-- `grants.signed` become BLOBs holding postcard, the compact binary form of the
-- same serde types (`store::to_record`): no field names, integers as varints,
-- a grant's signed payload and signature as bytes (JSON wrote each byte as a
-- decimal number). About a third of the space (BENCHMARKS.md, "Issue 14").
--
-- A new column beside each old one, filled by the store's own code at the
-- marker line below (`store::recode_records`: every JSON record decoded and
-- written again), then the old column dropped and the new one renamed, all in
-- the migration's one transaction. (SQLite can add a NOT NULL column only with
-- a default; every write of the store gives the value.)
ALTER TABLE accounts ADD COLUMN record_bin BLOB NOT NULL DEFAULT x'';
ALTER TABLE licenses ADD COLUMN record_bin BLOB NOT NULL DEFAULT x'';
ALTER TABLE mutations ADD COLUMN record_bin BLOB NOT NULL DEFAULT x'';
ALTER TABLE grants ADD COLUMN signed_bin BLOB NOT NULL DEFAULT x'';
-- pls: recode records
ALTER TABLE accounts DROP COLUMN record;
ALTER TABLE accounts RENAME COLUMN record_bin TO record;
ALTER TABLE licenses DROP COLUMN record;
ALTER TABLE licenses RENAME COLUMN record_bin TO record;
ALTER TABLE mutations DROP COLUMN record;
ALTER TABLE mutations RENAME COLUMN record_bin TO record;
ALTER TABLE grants DROP COLUMN signed;
ALTER TABLE grants RENAME COLUMN signed_bin TO signed;

-- `audit` and `checkin_history` again with `seq INTEGER PRIMARY KEY`: SQLite
-- keeps a `BIGINT PRIMARY KEY` as a separate index beside the rowid (82 B per
-- license in the server bench); as INTEGER PRIMARY KEY `seq` is the rowid.
-- (PostgreSQL has no rowid: its tables stay as they are.)
CREATE TABLE audit_new (
    seq INTEGER PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    license_number TEXT REFERENCES licenses (number),
    account_id BIGINT REFERENCES accounts (id),
    action TEXT NOT NULL CHECK (action <> ''),
    detail TEXT NOT NULL
);
INSERT INTO audit_new (seq, at, actor, license_number, account_id, action, detail)
    SELECT seq, at, actor, license_number, account_id, action, detail FROM audit;
DROP TABLE audit;
ALTER TABLE audit_new RENAME TO audit;
CREATE INDEX audit_by_license ON audit (license_number, seq);
CREATE TABLE checkin_history_new (
    seq INTEGER PRIMARY KEY,
    license_number TEXT NOT NULL REFERENCES licenses (number),
    hardware_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    running BOOLEAN NOT NULL,
    ge_seats BIGINT NOT NULL CHECK (ge_seats >= 0),
    pwa_seats BIGINT NOT NULL CHECK (pwa_seats >= 0),
    daemon_version TEXT NOT NULL,
    from_addr TEXT NOT NULL
);
INSERT INTO checkin_history_new (seq, license_number, hardware_id, at, running, ge_seats,
        pwa_seats, daemon_version, from_addr)
    SELECT seq, license_number, hardware_id, at, running, ge_seats, pwa_seats,
        daemon_version, from_addr FROM checkin_history;
DROP TABLE checkin_history;
ALTER TABLE checkin_history_new RENAME TO checkin_history;
CREATE INDEX checkin_history_by_license ON checkin_history (license_number, seq);
