-- When the VM's agent first reported a generation that holds the request's grants: the end
-- of the "open latency" (request stored to access in force) that /metrics reports. Unset
-- while the agent has not caught up, and for requests that never became grants.
ALTER TABLE access_requests ADD COLUMN enforced_at BIGINT;
