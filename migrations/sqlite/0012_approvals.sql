-- N-of-M approvals: a port rule may require up to five distinct approvers; a request
-- opens when the last of them approves (see app/src/services/requests.rs `approve`).

-- How many distinct approvers a rule's requests need (1–5); only meaningful with
-- approval_required.
ALTER TABLE port_rules ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 1;

-- A waiting request's N: the largest among its ports' rules that require approval, set
-- when it is made and again at every decision and policy edit, so that the request lists
-- show "k of N" without reading the policy.
ALTER TABLE access_requests ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 1;

-- The approvals given, one per approver per request. k is counted over the primary key
-- (at most five rows a request).
CREATE TABLE request_approvals (
    request_id TEXT NOT NULL REFERENCES access_requests(id) ON DELETE CASCADE,
    approver_id TEXT NOT NULL REFERENCES users(id),
    -- The approver's user name at the time, as the log shows it.
    approver_name TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    approved_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver_id)
);
