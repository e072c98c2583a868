-- Agents: one-time enrollment tokens, and per-VM agent identity and enforcement status.
CREATE TABLE enrollment_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
ALTER TABLE vms ADD COLUMN agent_secret_hash TEXT;
ALTER TABLE vms ADD COLUMN agent_hostname TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN agent_applied_generation INTEGER NOT NULL DEFAULT -1;
ALTER TABLE vms ADD COLUMN agent_error TEXT NOT NULL DEFAULT '';
