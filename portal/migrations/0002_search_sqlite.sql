-- The admin license search (SQLite engine): an FTS5 table with the trigram
-- tokenizer over the search fields of every license (`portal::search::fields`,
-- already lowercased, hence case_sensitive 1), one row per license with the
-- license's `licenses.id` as rowid. Written in the same transaction as the
-- license row. PostgreSQL will use a pg_trgm index instead.
CREATE VIRTUAL TABLE license_search USING fts5(
    f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10,
    tokenize = 'trigram case_sensitive 1'
);
