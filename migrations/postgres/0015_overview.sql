-- The Overview page (app/src/store/overview.rs) reads a few rows of each kind within the
-- viewer's scope. None of the earlier indexes reaches them without a scan (the
-- notification indexes leave out exactly the VMs administrators were already told
-- about), so each gets a partial index holding only the rows concerned: they are small
-- and change only when a VM or a request changes state, never on an agent's poll.

-- Silent agents administrators were told about (vms_silence_news holds the others).
CREATE INDEX vms_silenced ON vms(resource_group, agent_last_seen)
    WHERE silence_notified_at IS NOT NULL;
-- VMs whose agent reported an enforcement error.
CREATE INDEX vms_agent_errors ON vms(resource_group, name) WHERE agent_error <> '';
-- Recent denials, newest first.
CREATE INDEX access_requests_denied ON access_requests(status, decided_at)
    WHERE status = 'denied';
-- A requester's open requests (waiting, scheduled, in force), without their history.
CREATE INDEX access_requests_open ON access_requests(requester_id, created_at)
    WHERE status IN ('pending_approval', 'approved', 'active');
