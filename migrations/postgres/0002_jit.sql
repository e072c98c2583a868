-- VMs, JIT policies, access requests and the hash-chained activity log.
CREATE TABLE vms (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    resource_group TEXT NOT NULL,
    addresses TEXT NOT NULL,
    os TEXT NOT NULL,
    -- Management ports seen listening (by the agent, or recorded by an admin), comma-separated.
    exposed_ports TEXT NOT NULL DEFAULT '',
    agent_id TEXT,
    agent_last_seen BIGINT,
    generation BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX vms_group ON vms(resource_group);

CREATE TABLE jit_policies (
    vm_id TEXT PRIMARY KEY NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE port_rules (
    id TEXT PRIMARY KEY NOT NULL,
    vm_id TEXT NOT NULL REFERENCES jit_policies(vm_id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    port BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    allowed_sources TEXT NOT NULL,
    max_duration_secs BIGINT NOT NULL,
    justification_required BIGINT NOT NULL,
    approval_required BIGINT NOT NULL,
    UNIQUE (vm_id, port, protocol)
);

CREATE TABLE access_requests (
    id TEXT PRIMARY KEY NOT NULL,
    batch_id TEXT NOT NULL,
    vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    requester_id TEXT NOT NULL REFERENCES users(id),
    source_prefix TEXT NOT NULL,
    duration_secs BIGINT NOT NULL,
    justification TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    start_at BIGINT,
    end_at BIGINT,
    decided_by TEXT,
    decided_at BIGINT,
    decision_comment TEXT NOT NULL DEFAULT ''
);
CREATE INDEX access_requests_vm ON access_requests(vm_id, created_at);
CREATE INDEX access_requests_status ON access_requests(status);
CREATE INDEX access_requests_requester ON access_requests(requester_id, created_at);

CREATE TABLE request_ports (
    id TEXT PRIMARY KEY NOT NULL,
    request_id TEXT NOT NULL REFERENCES access_requests(id) ON DELETE CASCADE,
    vm_id TEXT NOT NULL,
    port BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    source_prefix TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    end_at BIGINT
);
CREATE INDEX request_ports_active ON request_ports(status, end_at);
CREATE INDEX request_ports_vm ON request_ports(vm_id, status);

CREATE TABLE activity_log (
    seq BIGINT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    action TEXT NOT NULL,
    vm TEXT NOT NULL,
    ports TEXT NOT NULL,
    source TEXT NOT NULL,
    justification TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX activity_log_at ON activity_log(at);
CREATE INDEX activity_log_vm ON activity_log(vm);
CREATE INDEX activity_log_actor ON activity_log(actor);
