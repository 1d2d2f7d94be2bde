-- Schema 5 (issue 14, SQLite): less disk per license (BENCHMARKS.md, "Issue 14",
-- "Disk per license").
--
-- Grants: `grants.signed` keeps a grant this server signed as its fields
-- (postcard) and its signature instead of the whole envelope: the signed
-- payload is the canonical JSON of those fields and is made again on read,
-- byte for byte (`store::StoredGrant`; any other envelope stays whole). The
-- store's own code re-encodes every grant in place at the marker line below.
-- pls: recode grants

-- The search table smaller: contentless (`content=''`: no copy of the
-- fields; the fields are read from the license record), with deletes
-- (`contentless_delete=1`, SQLite 3.43) so a license's row can be replaced,
-- and without positions (`detail=none`: for each trigram only the licenses that
-- have it). A search asks for the licenses with every trigram of the query
-- (`store::trigram_query`), a superset of the matches as before, which
-- `search::matches` narrows to exactly the matches. `pls admin verify` checks
-- each license's row by asking for the trigrams of its fields. Rebuilt from the
-- licenses by the store's own code at the marker line below.
DROP TABLE license_search;
CREATE VIRTUAL TABLE license_search USING fts5(
    f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10,
    content = '', contentless_delete = 1, detail = none,
    tokenize = 'trigram case_sensitive 1'
);
-- pls: rebuild search
