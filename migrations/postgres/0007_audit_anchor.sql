-- The activity log's anchor (see app/src/domain/audit.rs): an HMAC per entry under a key
-- kept outside the database, signed checkpoints of verified positions, and the state of
-- verification the log page shows without verifying anything itself.
ALTER TABLE activity_log ADD COLUMN mac TEXT NOT NULL DEFAULT '';
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE audit_status (
    id BIGINT PRIMARY KEY NOT NULL,
    ok BIGINT NOT NULL,
    verified_seq BIGINT NOT NULL,
    message TEXT NOT NULL,
    checked_at BIGINT NOT NULL,
    -- Entries up to here were written before the log had a key and carry no HMAC; the
    -- first signed checkpoint covers them. Set once.
    legacy_until BIGINT
);
CREATE INDEX activity_log_action ON activity_log(action);
