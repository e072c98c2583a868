-- Every agent poll and report looks its VM up by agent id: without this index each one
-- read the whole VM table (10,000 VMs: milliseconds per poll, on every poll). Unique,
-- as enrollment makes it: one identity names one VM.
CREATE UNIQUE INDEX vms_agent ON vms(agent_id);
-- The Configured tab's "last access" per VM: the latest start of each VM's requests,
-- read from the index instead of every request of the VM.
CREATE INDEX access_requests_vm_start ON access_requests(vm_id, start_at);
