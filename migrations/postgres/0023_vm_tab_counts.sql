-- Every JIT tab's title holds how many VMs each of the four tabs has. Counting them read
-- the tabs' partial indexes (0017) whole: 100,000 entries at 100,000 VMs, 8–11 ms here,
-- half of a page, and too slow with 16 users at once. The counts now live here per
-- resource group, kept by triggers, so a title reads a row per group the viewer sees.
-- The tab conditions are word for word those of the partial indexes and of
-- `VmTab::condition`; the store counts the VMs instead when a search or a scope of
-- single VMs narrows the tabs, or when these triggers are missing (Store::connect warns).
CREATE TABLE vm_tab_counts (
    resource_group TEXT PRIMARY KEY,
    configured BIGINT NOT NULL DEFAULT 0,
    recommended BIGINT NOT NULL DEFAULT 0,
    not_configured BIGINT NOT NULL DEFAULT 0,
    unsupported BIGINT NOT NULL DEFAULT 0
);

-- A VM written between the count below and the triggers' creation would be missed for
-- good: nothing else may write VMs until this migration commits.
LOCK TABLE vms IN SHARE ROW EXCLUSIVE MODE;

INSERT INTO vm_tab_counts (resource_group, configured, recommended, not_configured, unsupported)
    SELECT resource_group,
        SUM(CASE WHEN jit_configured = 1 THEN 1 ELSE 0 END),
        SUM(CASE WHEN jit_configured = 0 AND agent_error = '' AND exposed_ports <> ''
            THEN 1 ELSE 0 END),
        SUM(CASE WHEN jit_configured = 0 AND agent_error = '' AND exposed_ports = ''
            THEN 1 ELSE 0 END),
        SUM(CASE WHEN jit_configured = 0 AND agent_error <> '' THEN 1 ELSE 0 END)
    FROM vms GROUP BY resource_group;

-- Adds `delta` (1 or -1) to the count of the tab a VM with these columns is on; a group's
-- row goes when its last VM does, so the titles read a row per group that holds VMs.
-- The search path is the migration's, so that writes still find the table under another
-- (pg_restore --data-only runs with an empty one).
CREATE FUNCTION vm_tab_counts_add(grp TEXT, delta BIGINT, configured_ BIGINT, error_ TEXT,
    exposed_ TEXT) RETURNS void LANGUAGE sql SET search_path FROM CURRENT AS $$
    INSERT INTO vm_tab_counts AS t
        (resource_group, configured, recommended, not_configured, unsupported)
    VALUES (grp,
        delta * CASE WHEN configured_ = 1 THEN 1 ELSE 0 END,
        delta * CASE WHEN configured_ = 0 AND error_ = '' AND exposed_ <> '' THEN 1 ELSE 0 END,
        delta * CASE WHEN configured_ = 0 AND error_ = '' AND exposed_ = '' THEN 1 ELSE 0 END,
        delta * CASE WHEN configured_ = 0 AND error_ <> '' THEN 1 ELSE 0 END)
    ON CONFLICT (resource_group) DO UPDATE SET
        configured = t.configured + EXCLUDED.configured,
        recommended = t.recommended + EXCLUDED.recommended,
        not_configured = t.not_configured + EXCLUDED.not_configured,
        unsupported = t.unsupported + EXCLUDED.unsupported;
    DELETE FROM vm_tab_counts WHERE delta < 0 AND resource_group = grp AND configured = 0
        AND recommended = 0 AND not_configured = 0 AND unsupported = 0;
$$;

CREATE FUNCTION vm_tab_counts_keep() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM vm_tab_counts_add(NEW.resource_group, 1, NEW.jit_configured, NEW.agent_error,
            NEW.exposed_ports);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM vm_tab_counts_add(OLD.resource_group, -1, OLD.jit_configured, OLD.agent_error,
            OLD.exposed_ports);
    -- Writers take the store's advisory lock one at a time; should one ever not, a VM
    -- moving between groups still locks both groups' rows in name order, so that two
    -- moves the opposite way cannot deadlock.
    ELSIF OLD.resource_group <= NEW.resource_group THEN
        PERFORM vm_tab_counts_add(OLD.resource_group, -1, OLD.jit_configured, OLD.agent_error,
            OLD.exposed_ports);
        PERFORM vm_tab_counts_add(NEW.resource_group, 1, NEW.jit_configured, NEW.agent_error,
            NEW.exposed_ports);
    ELSE
        PERFORM vm_tab_counts_add(NEW.resource_group, 1, NEW.jit_configured, NEW.agent_error,
            NEW.exposed_ports);
        PERFORM vm_tab_counts_add(OLD.resource_group, -1, OLD.jit_configured, OLD.agent_error,
            OLD.exposed_ports);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER vm_tab_counts_insert AFTER INSERT ON vms
    FOR EACH ROW EXECUTE FUNCTION vm_tab_counts_keep();
CREATE TRIGGER vm_tab_counts_delete AFTER DELETE ON vms
    FOR EACH ROW EXECUTE FUNCTION vm_tab_counts_keep();
CREATE TRIGGER vm_tab_counts_update
    AFTER UPDATE OF resource_group, jit_configured, agent_error, exposed_ports ON vms
    FOR EACH ROW
    WHEN (OLD.resource_group IS DISTINCT FROM NEW.resource_group
        OR OLD.jit_configured IS DISTINCT FROM NEW.jit_configured
        OR OLD.agent_error IS DISTINCT FROM NEW.agent_error
        OR OLD.exposed_ports IS DISTINCT FROM NEW.exposed_ports)
    EXECUTE FUNCTION vm_tab_counts_keep();
