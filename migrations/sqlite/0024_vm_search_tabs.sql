-- A search held by thousands of VMs ("vm-00" at 100,000 VMs holds 10,000) still read every
-- VM to count the matches on each tab: 20–25 ms, and 370 ms at p95 with 16 users at once.
-- Its page walked the tab in name order until it had 25 matches: where they come last
-- ("group-9": groups 90 to 99), past 90,000 VMs, 30–45 ms. The index of 0022 finds the
-- matches in a few ms but could do no more: which tab a match is on, and its name to sort
-- by, lived in `vms`, one lookup of a VM per match. Now the index holds each VM's tab, as a
-- mark of its own, and the keys table its name: a title is one count of the index, and a
-- page sorts the keys of its tab's matches (Store::list_vms).
--
-- For those counts and pages to be the search's own, the index must match exactly what the
-- search's LIKE matches, not a superset: it holds the text with ASCII letters folded by
-- lower() (which folds ASCII alone, as LIKE does) and its tokenizer folds nothing. A search
-- is folded the same way. The marks are in capitals, which the folded text columns never
-- hold, so a query needs name no column: a folded search cannot match a mark, nor a mark
-- the text. The tab conditions are word for word those of `VmTab::condition`, 0017 and
-- 0023. (As with 0023, an INSERT OR REPLACE into `vms` would leave the replaced VM's row
-- here, as its delete trigger would not fire; the store never writes one.)
DROP TRIGGER IF EXISTS vm_search_insert;
DROP TRIGGER IF EXISTS vm_search_delete;
DROP TRIGGER IF EXISTS vm_search_update;
DROP TABLE vm_search;

-- Where a trigger of 0022 had gone (Store::connect warned), the keys may have missed VMs
-- since: the index is built from every VM as it is now.
INSERT OR IGNORE INTO vm_search_keys (vm_id) SELECT id FROM vms;
DELETE FROM vm_search_keys WHERE vm_id NOT IN (SELECT id FROM vms);
ALTER TABLE vm_search_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
UPDATE vm_search_keys SET name = (SELECT v.name FROM vms v WHERE v.id = vm_search_keys.vm_id);

CREATE VIRTUAL TABLE vm_search USING fts5(
    name, resource_group, tab, tokenize = 'trigram case_sensitive 1'
);

INSERT INTO vm_search (rowid, name, resource_group, tab)
    SELECT k.key, lower(v.name), lower(v.resource_group),
        CASE WHEN v.jit_configured = 1 THEN 'CFG'
            WHEN v.jit_configured = 0 AND v.agent_error = '' AND v.exposed_ports <> ''
                THEN 'REC'
            WHEN v.jit_configured = 0 AND v.agent_error = '' AND v.exposed_ports = ''
                THEN 'NCF'
            WHEN v.jit_configured = 0 AND v.agent_error <> '' THEN 'UNS'
            ELSE '' END
    FROM vm_search_keys k JOIN vms v ON v.id = k.vm_id;

-- As in 0022: a later migration that rebuilds `vms` drops these with the old table and
-- must create them again (Store::connect warns, and searches read every VM, without them).
CREATE TRIGGER vm_search_insert AFTER INSERT ON vms BEGIN
    INSERT INTO vm_search_keys (vm_id, name) VALUES (new.id, new.name);
    INSERT INTO vm_search (rowid, name, resource_group, tab)
        SELECT key, lower(new.name), lower(new.resource_group),
            CASE WHEN new.jit_configured = 1 THEN 'CFG'
                WHEN new.jit_configured = 0 AND new.agent_error = ''
                    AND new.exposed_ports <> '' THEN 'REC'
                WHEN new.jit_configured = 0 AND new.agent_error = ''
                    AND new.exposed_ports = '' THEN 'NCF'
                WHEN new.jit_configured = 0 AND new.agent_error <> '' THEN 'UNS'
                ELSE '' END
        FROM vm_search_keys WHERE vm_id = new.id;
END;

CREATE TRIGGER vm_search_delete AFTER DELETE ON vms BEGIN
    DELETE FROM vm_search
        WHERE rowid = (SELECT key FROM vm_search_keys WHERE vm_id = old.id);
    DELETE FROM vm_search_keys WHERE vm_id = old.id;
END;

CREATE TRIGGER vm_search_update
AFTER UPDATE OF id, name, resource_group, jit_configured, agent_error, exposed_ports ON vms
WHEN old.id IS NOT new.id OR old.name IS NOT new.name
    OR old.resource_group IS NOT new.resource_group
    OR old.jit_configured IS NOT new.jit_configured OR old.agent_error IS NOT new.agent_error
    OR old.exposed_ports IS NOT new.exposed_ports
BEGIN
    UPDATE vm_search_keys SET vm_id = new.id, name = new.name WHERE vm_id = old.id;
    UPDATE vm_search SET name = lower(new.name), resource_group = lower(new.resource_group),
        tab = CASE WHEN new.jit_configured = 1 THEN 'CFG'
            WHEN new.jit_configured = 0 AND new.agent_error = ''
                AND new.exposed_ports <> '' THEN 'REC'
            WHEN new.jit_configured = 0 AND new.agent_error = ''
                AND new.exposed_ports = '' THEN 'NCF'
            WHEN new.jit_configured = 0 AND new.agent_error <> '' THEN 'UNS'
            ELSE '' END
        WHERE rowid = (SELECT key FROM vm_search_keys WHERE vm_id = new.id);
END;

-- A search held by too many VMs for the index to pay (more than 20,000) still walks its
-- tab in name order, as do searches sorted by group or OS. Each VM passed read its row for
-- the LIKE on its group; with the group in each tab's index the LIKE reads the index
-- alone, and a row is read only for a match ("group-9" on Not configured, past 35,000 VMs:
-- 30 -> 7 ms).
DROP INDEX vms_tab_configured;
DROP INDEX vms_tab_recommended;
DROP INDEX vms_tab_not_configured;
DROP INDEX vms_tab_unsupported;
CREATE INDEX vms_tab_configured ON vms(name, resource_group) WHERE jit_configured = 1;
CREATE INDEX vms_tab_recommended ON vms(name, resource_group)
    WHERE jit_configured = 0 AND agent_error = '' AND exposed_ports <> '';
CREATE INDEX vms_tab_not_configured ON vms(name, resource_group)
    WHERE jit_configured = 0 AND agent_error = '' AND exposed_ports = '';
CREATE INDEX vms_tab_unsupported ON vms(name, resource_group)
    WHERE jit_configured = 0 AND agent_error <> '';
