-- The JIT tabs (Configured, Recommended, Not configured, Unsupported) each filter every
-- VM. Asking "has it a policy?" of jit_policies once per VM made a tab over 100,000 VMs
-- an index probe per VM for its count and again for its order; the answer now lives on
-- the VM, kept by the store's set_policy and delete_policy (the only writers of
-- jit_policies), and each tab has a partial index in name order holding only its VMs,
-- so that a tab's count and its first page read that tab alone.
ALTER TABLE vms ADD COLUMN jit_configured BIGINT NOT NULL DEFAULT 0;
UPDATE vms SET jit_configured = 1 WHERE id IN (SELECT vm_id FROM jit_policies);

CREATE INDEX vms_tab_configured ON vms(name) WHERE jit_configured = 1;
CREATE INDEX vms_tab_recommended ON vms(name)
    WHERE jit_configured = 0 AND agent_error = '' AND exposed_ports <> '';
CREATE INDEX vms_tab_not_configured ON vms(name)
    WHERE jit_configured = 0 AND agent_error = '' AND exposed_ports = '';
CREATE INDEX vms_tab_unsupported ON vms(name)
    WHERE jit_configured = 0 AND agent_error <> '';
