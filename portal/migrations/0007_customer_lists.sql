-- Schema 7 (issue 14, both engines): a customer's lists on their own indexes,
-- so that "Meine Lizenzen" and "Meine Angebote" cost what their page costs,
-- not what the customer's whole history costs (BENCHMARKS.md, "Issue 14",
-- "customer lists on their own indexes").
--
-- `mutations.account_id` is the account of the mutation's license, kept by
-- the store whenever either is written (`store::put_license`,
-- `store::put_mutation`); `licenses.listed` says the license has an ordered or
-- activated mutation, the licenses "Meine Lizenzen" shows. Both are derived
-- from the records, not carried in backups, and made again after a restore;
-- `pls admin verify` checks them.
ALTER TABLE mutations ADD COLUMN account_id BIGINT REFERENCES accounts (id);
ALTER TABLE licenses ADD COLUMN listed BOOLEAN NOT NULL DEFAULT FALSE;
-- pls: derive list columns

-- The quote list, newest first, with what its filters read: the count and the
-- page are walks of this index, and the records are read for the page only.
CREATE INDEX mutations_by_account ON mutations (
    account_id, created_at DESC, license_number, number, kind, state, quote_valid_until
);
-- The license list: the listed licenses of an account in number order.
CREATE INDEX licenses_listed_by_account ON licenses (account_id, number) WHERE listed;
