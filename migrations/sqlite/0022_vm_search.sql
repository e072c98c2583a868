-- The JIT tabs' search finds what is typed anywhere in a VM's name or resource group. No
-- btree answers LIKE '%…%', so each search read every VM twice (the tab counts, then the
-- page walking the tab in name order until it had a page of matches): 30–60 ms at 100,000
-- VMs, 0.3–0.9 s with 16 users at once. An FTS5 table with the trigram tokenizer finds the
-- VMs that hold a text of three characters or more (3 ms for a thousand matches).
-- It is a pre-filter only: the search still applies its LIKE to the VMs it finds (the
-- tokenizer folds more than ASCII letters, so it finds a superset), and when a text
-- matches too many VMs for the index to pay, the search reads every VM as before
-- (Store::narrow_search decides).
CREATE VIRTUAL TABLE vm_search USING fts5(name, resource_group, tokenize = 'trigram');

-- FTS5 rows are keyed by an integer; a VM by its text id. The key lives here, where an
-- INTEGER PRIMARY KEY keeps it through VACUUM (the vms table's own rowid does not).
CREATE TABLE vm_search_keys (
    key INTEGER PRIMARY KEY,
    vm_id TEXT NOT NULL UNIQUE
);

INSERT INTO vm_search_keys (vm_id) SELECT id FROM vms;
INSERT INTO vm_search (rowid, name, resource_group)
    SELECT k.key, v.name, v.resource_group
    FROM vm_search_keys k JOIN vms v ON v.id = k.vm_id;

-- Kept by triggers, so that no write of a VM, now or later, can leave the index behind.
-- A later migration that rebuilds `vms` (create, copy, drop, rename) drops them with the
-- old table and must create them again; without all three the server warns at start and
-- searches read every VM (Store::connect).
CREATE TRIGGER vm_search_insert AFTER INSERT ON vms BEGIN
    INSERT INTO vm_search_keys (vm_id) VALUES (new.id);
    INSERT INTO vm_search (rowid, name, resource_group)
        SELECT key, new.name, new.resource_group FROM vm_search_keys WHERE vm_id = new.id;
END;

CREATE TRIGGER vm_search_delete AFTER DELETE ON vms BEGIN
    DELETE FROM vm_search
        WHERE rowid = (SELECT key FROM vm_search_keys WHERE vm_id = old.id);
    DELETE FROM vm_search_keys WHERE vm_id = old.id;
END;

CREATE TRIGGER vm_search_update AFTER UPDATE OF id, name, resource_group ON vms
WHEN old.id IS NOT new.id OR old.name IS NOT new.name
    OR old.resource_group IS NOT new.resource_group
BEGIN
    UPDATE vm_search_keys SET vm_id = new.id WHERE vm_id = old.id;
    UPDATE vm_search SET name = new.name, resource_group = new.resource_group
        WHERE rowid = (SELECT key FROM vm_search_keys WHERE vm_id = new.id);
END;
