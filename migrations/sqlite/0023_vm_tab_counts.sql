-- Every JIT tab's title holds how many VMs each of the four tabs has. Counting them read
-- the tabs' partial indexes (0017) whole: 100,000 entries at 100,000 VMs, about 1 ms on
-- SQLite but 8–11 ms on PostgreSQL, half of a page there, and too slow with 16 users at
-- once. The counts now live here per resource group, kept by triggers, so a title reads
-- a row per group the viewer sees. The tab conditions are word for word those of the
-- partial indexes and of `VmTab::condition`; the store counts the VMs instead when a
-- search or a scope of single VMs narrows the tabs, or when these triggers are missing
-- (a later rebuild of `vms` drops them: Store::connect warns). A group's row goes when its
-- last VM does, so the titles read a row per group that holds VMs. (An INSERT OR REPLACE
-- into `vms` would count the replaced VM twice, as its delete trigger would not fire; the
-- store never writes one.)
CREATE TABLE vm_tab_counts (
    resource_group TEXT PRIMARY KEY,
    configured INTEGER NOT NULL DEFAULT 0,
    recommended INTEGER NOT NULL DEFAULT 0,
    not_configured INTEGER NOT NULL DEFAULT 0,
    unsupported INTEGER NOT NULL DEFAULT 0
);

INSERT INTO vm_tab_counts (resource_group, configured, recommended, not_configured, unsupported)
    SELECT resource_group,
        SUM(CASE WHEN jit_configured = 1 THEN 1 ELSE 0 END),
        SUM(CASE WHEN jit_configured = 0 AND agent_error = '' AND exposed_ports <> ''
            THEN 1 ELSE 0 END),
        SUM(CASE WHEN jit_configured = 0 AND agent_error = '' AND exposed_ports = ''
            THEN 1 ELSE 0 END),
        SUM(CASE WHEN jit_configured = 0 AND agent_error <> '' THEN 1 ELSE 0 END)
    FROM vms GROUP BY resource_group;

CREATE TRIGGER vm_tab_counts_insert AFTER INSERT ON vms BEGIN
    INSERT INTO vm_tab_counts (resource_group, configured, recommended, not_configured, unsupported)
    VALUES (new.resource_group,
        CASE WHEN new.jit_configured = 1 THEN 1 ELSE 0 END,
        CASE WHEN new.jit_configured = 0 AND new.agent_error = '' AND new.exposed_ports <> ''
            THEN 1 ELSE 0 END,
        CASE WHEN new.jit_configured = 0 AND new.agent_error = '' AND new.exposed_ports = ''
            THEN 1 ELSE 0 END,
        CASE WHEN new.jit_configured = 0 AND new.agent_error <> '' THEN 1 ELSE 0 END)
    ON CONFLICT (resource_group) DO UPDATE SET
        configured = configured + excluded.configured,
        recommended = recommended + excluded.recommended,
        not_configured = not_configured + excluded.not_configured,
        unsupported = unsupported + excluded.unsupported;
END;

CREATE TRIGGER vm_tab_counts_delete AFTER DELETE ON vms BEGIN
    UPDATE vm_tab_counts SET
        configured = configured - CASE WHEN old.jit_configured = 1 THEN 1 ELSE 0 END,
        recommended = recommended - CASE WHEN old.jit_configured = 0 AND old.agent_error = ''
            AND old.exposed_ports <> '' THEN 1 ELSE 0 END,
        not_configured = not_configured - CASE WHEN old.jit_configured = 0
            AND old.agent_error = '' AND old.exposed_ports = '' THEN 1 ELSE 0 END,
        unsupported = unsupported - CASE WHEN old.jit_configured = 0 AND old.agent_error <> ''
            THEN 1 ELSE 0 END
    WHERE resource_group = old.resource_group;
    DELETE FROM vm_tab_counts WHERE resource_group = old.resource_group AND configured = 0
        AND recommended = 0 AND not_configured = 0 AND unsupported = 0;
END;

-- The old row leaves its group's counts, then the new row joins its group's (the same
-- group or another).
CREATE TRIGGER vm_tab_counts_update
AFTER UPDATE OF resource_group, jit_configured, agent_error, exposed_ports ON vms
WHEN old.resource_group IS NOT new.resource_group OR old.jit_configured IS NOT new.jit_configured
    OR old.agent_error IS NOT new.agent_error OR old.exposed_ports IS NOT new.exposed_ports
BEGIN
    UPDATE vm_tab_counts SET
        configured = configured - CASE WHEN old.jit_configured = 1 THEN 1 ELSE 0 END,
        recommended = recommended - CASE WHEN old.jit_configured = 0 AND old.agent_error = ''
            AND old.exposed_ports <> '' THEN 1 ELSE 0 END,
        not_configured = not_configured - CASE WHEN old.jit_configured = 0
            AND old.agent_error = '' AND old.exposed_ports = '' THEN 1 ELSE 0 END,
        unsupported = unsupported - CASE WHEN old.jit_configured = 0 AND old.agent_error <> ''
            THEN 1 ELSE 0 END
    WHERE resource_group = old.resource_group;
    DELETE FROM vm_tab_counts WHERE resource_group = old.resource_group AND configured = 0
        AND recommended = 0 AND not_configured = 0 AND unsupported = 0;
    INSERT INTO vm_tab_counts (resource_group, configured, recommended, not_configured, unsupported)
    VALUES (new.resource_group,
        CASE WHEN new.jit_configured = 1 THEN 1 ELSE 0 END,
        CASE WHEN new.jit_configured = 0 AND new.agent_error = '' AND new.exposed_ports <> ''
            THEN 1 ELSE 0 END,
        CASE WHEN new.jit_configured = 0 AND new.agent_error = '' AND new.exposed_ports = ''
            THEN 1 ELSE 0 END,
        CASE WHEN new.jit_configured = 0 AND new.agent_error <> '' THEN 1 ELSE 0 END)
    ON CONFLICT (resource_group) DO UPDATE SET
        configured = configured + excluded.configured,
        recommended = recommended + excluded.recommended,
        not_configured = not_configured + excluded.not_configured,
        unsupported = unsupported + excluded.unsupported;
END;
