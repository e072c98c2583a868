-- Scheduled windows: a request may start later, within its port rules' lead time; it is
-- decided ahead and opens at its start after a last re-check (see
-- app/src/services/requests.rs `open_scheduled`).

-- How far ahead a request on a rule may start: 0 (only now) to 30 days; 7 days unless set.
ALTER TABLE port_rules ADD COLUMN max_lead_secs BIGINT NOT NULL DEFAULT 604800;

-- The start a request asked for, when it asked for a later one. start_at stays the time it
-- really opened (NULL until then), so "last access" and the approval counts are unchanged;
-- the planned end is planned_start_at + duration_secs.
ALTER TABLE access_requests ADD COLUMN planned_start_at BIGINT;

-- The job that opens scheduled windows looks only at the approved requests not yet open.
CREATE INDEX access_requests_scheduled ON access_requests(planned_start_at) WHERE status = 'approved';
