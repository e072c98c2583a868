-- SQLite's 0022 gives the JIT search an FTS5 trigram index; PostgreSQL has its pg_trgm
-- indexes since 0021: nothing changes here. Kept so that a version means the same schema
-- on both.
SELECT 1;
