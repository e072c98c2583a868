-- Access ends when its authority ends (see app/src/store/access.rs).
-- Per port rule: how long a request may wait for approval, and the widest source a
-- "per request" rule accepts per address family.
ALTER TABLE port_rules ADD COLUMN approval_timeout_secs INTEGER NOT NULL DEFAULT 3600;
ALTER TABLE port_rules ADD COLUMN widest_prefix_v4 INTEGER NOT NULL DEFAULT 24;
ALTER TABLE port_rules ADD COLUMN widest_prefix_v6 INTEGER NOT NULL DEFAULT 64;
-- A request waiting for approval is closed at this time if nobody decided it.
ALTER TABLE access_requests ADD COLUMN approval_expires_at INTEGER;
-- Where the current window of an active request began: its start, or its last extension.
-- A policy's maximum is counted from here when a policy edit shortens grants.
ALTER TABLE access_requests ADD COLUMN window_start_at INTEGER;
UPDATE access_requests SET approval_expires_at = created_at + 3600000 WHERE status = 'pending_approval';
UPDATE access_requests SET window_start_at = start_at WHERE start_at IS NOT NULL;
-- Moved forward by a password change or reset: sessions signed in before it end.
ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
CREATE INDEX access_requests_waiting ON access_requests(status, approval_expires_at);
CREATE INDEX request_ports_request ON request_ports(request_id);
CREATE INDEX request_ports_vm_end ON request_ports(vm_id, status, end_at);
