-- The activity log's VM and user filters ignore case for ASCII letters only, as SQLite's
-- lower() does: PostgreSQL's lower() folds by the database's locale (under C.UTF-8 or
-- en_US.UTF-8 "É" became "é", so a prefix typed as "É" found nothing here while it found
-- "Élan" on SQLite). lower() of a value in the C collation folds ASCII alone, and its
-- result is in the C collation, so ranges compare in code point order as before. These
-- indexes answer the new expression and replace those of 0018.
DROP INDEX IF EXISTS activity_log_vm_folded;
DROP INDEX IF EXISTS activity_log_actor_folded;
CREATE INDEX activity_log_vm_ascii_folded ON activity_log ((LOWER(vm COLLATE "C")));
CREATE INDEX activity_log_actor_ascii_folded ON activity_log ((LOWER(actor COLLATE "C")));
