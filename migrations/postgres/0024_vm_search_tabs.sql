-- SQLite's 0024 lets its FTS5 search index count each tab's matches; PostgreSQL counts
-- them from its trigram indexes (0021): nothing changes here. Kept so that a version means
-- the same schema on both.
SELECT 1;
