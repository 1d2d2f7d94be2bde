-- The admin license search (PostgreSQL engine): one document per license, its
-- search fields (`portal::search::fields`, already lowercased) one per line,
-- under a pg_trgm GIN index, which answers `doc LIKE '%query%'` from trigrams.
-- Written in the same transaction as the license row. (pg_trgm is a trusted
-- extension: the database's owner may create it.)
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE license_search (
    license_id BIGINT PRIMARY KEY REFERENCES licenses (id),
    doc TEXT NOT NULL
);
CREATE INDEX license_search_trigrams ON license_search USING gin (doc gin_trgm_ops);
