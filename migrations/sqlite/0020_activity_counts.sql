-- PostgreSQL's 0020 makes its folded-name indexes of the activity log hold the columns a
-- count and a page need; SQLite's indexes hold the row's position (seq) already, and
-- SQLite reads an expression index alone without the column: nothing changes here. Kept
-- so that a version means the same schema on both.
SELECT 1;
