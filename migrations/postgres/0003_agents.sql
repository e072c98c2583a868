-- Agents: one-time enrollment tokens, and per-VM agent identity and enforcement status.
CREATE TABLE enrollment_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    -- Set: binds to this VM. Unset: the agent registers a new VM in resource_group.
    vm_id TEXT REFERENCES vms(id) ON DELETE CASCADE,
    resource_group TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
ALTER TABLE vms ADD COLUMN agent_secret_hash TEXT;
ALTER TABLE vms ADD COLUMN agent_hostname TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN agent_applied_generation BIGINT NOT NULL DEFAULT -1;
ALTER TABLE vms ADD COLUMN agent_error TEXT NOT NULL DEFAULT '';
