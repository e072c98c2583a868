-- The JIT tabs' search finds what is typed anywhere in a VM's name or resource group. No
-- btree answers LIKE '%…%', so each search read every VM (50–70 ms at 100,000 VMs, and
-- 0.4–0.5 s with 16 users at once): trigram indexes answer it. pg_trgm comes with
-- PostgreSQL (contrib) and is trusted since PostgreSQL 13, so the database's owner may
-- create it. Where it is missing or may not be created, or its indexes fail, the search
-- still works by reading every VM, and the server warns when it starts (Store::connect).
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg_trgm could not be created (%): the JIT search reads every VM', SQLERRM;
END
$$;

-- The same expressions as the search (store::audit::folded): ASCII letters folded. The
-- operator class is named in the extension's own schema, which need not be on the
-- search path (some hosts keep extensions in a schema of their own).
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS vms_name_trigrams ON vms USING gin ((LOWER(name COLLATE "C")) %I.gin_trgm_ops)',
            trgm_schema);
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS vms_group_trigrams ON vms USING gin ((LOWER(resource_group COLLATE "C")) %I.gin_trgm_ops)',
            trgm_schema);
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'the trigram indexes could not be created (%): the JIT search reads every VM', SQLERRM;
END
$$;
