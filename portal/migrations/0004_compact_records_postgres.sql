-- Schema 4 (issue 14, PostgreSQL): the records as compact binary instead of
-- JSON text. `accounts.record`, `licenses.record`, `mutations.record` and
-- `grants.signed` become BYTEA holding postcard, the compact binary form of the
-- same serde types (`store::to_record`); see 0004_compact_records_sqlite.sql.
--
-- A new column beside each old one, filled by the store's own code at the
-- marker line below (`store::recode_records`), then the old column dropped and
-- the new one renamed, all in the migration's one transaction.
ALTER TABLE accounts ADD COLUMN record_bin BYTEA NOT NULL DEFAULT ''::bytea;
ALTER TABLE licenses ADD COLUMN record_bin BYTEA NOT NULL DEFAULT ''::bytea;
ALTER TABLE mutations ADD COLUMN record_bin BYTEA NOT NULL DEFAULT ''::bytea;
ALTER TABLE grants ADD COLUMN signed_bin BYTEA NOT NULL DEFAULT ''::bytea;
-- pls: recode records
ALTER TABLE accounts DROP COLUMN record;
ALTER TABLE accounts RENAME COLUMN record_bin TO record;
ALTER TABLE accounts ALTER COLUMN record DROP DEFAULT;
ALTER TABLE licenses DROP COLUMN record;
ALTER TABLE licenses RENAME COLUMN record_bin TO record;
ALTER TABLE licenses ALTER COLUMN record DROP DEFAULT;
ALTER TABLE mutations DROP COLUMN record;
ALTER TABLE mutations RENAME COLUMN record_bin TO record;
ALTER TABLE mutations ALTER COLUMN record DROP DEFAULT;
ALTER TABLE grants DROP COLUMN signed;
ALTER TABLE grants RENAME COLUMN signed_bin TO signed;
ALTER TABLE grants ALTER COLUMN signed DROP DEFAULT;
