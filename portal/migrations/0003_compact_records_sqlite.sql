-- Schema 3 (issue 14, SQLite): the records as compact binary instead of JSON
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
