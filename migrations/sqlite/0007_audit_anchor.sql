-- The activity log's anchor (see app/src/domain/audit.rs): an HMAC per entry under a key
-- kept outside the database, signed checkpoints of verified positions, and the state of
-- verification the log page shows without verifying anything itself.
ALTER TABLE activity_log ADD COLUMN mac TEXT NOT NULL DEFAULT '';
CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE audit_status (
    id INTEGER PRIMARY KEY NOT NULL,
    ok INTEGER NOT NULL,
    verified_seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    -- Entries up to here were written before the log had a key and carry no HMAC; the
    -- first signed checkpoint covers them. Set once.
    legacy_until INTEGER
);
CREATE INDEX activity_log_action ON activity_log(action);
