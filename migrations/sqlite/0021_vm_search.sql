-- PostgreSQL's 0021 adds trigram indexes for the JIT search. SQLite has no such index (its
-- search reads every VM, with LIKE, which ignores the case of ASCII letters as the search
-- does): nothing changes here. Kept so that a version means the same schema on both.
SELECT 1;
