-- PostgreSQL's 0019 makes its lower() fold ASCII letters only, as SQLite's lower() always
-- has: nothing changes here. Kept so that a version means the same schema on both.
SELECT 1;
