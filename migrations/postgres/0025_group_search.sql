-- A search finds a group's VMs through the groups whose names hold the text, read from
-- the per-group counts (0023, Store::list_vms): the group index then finds their VMs with
-- no text to check again on each. With many groups (one VM each, say) reading every
-- group's row cost more than the search saved (100,000 groups: 22 ms), so the groups
-- get a trigram index of their own, like the VMs' (0021), where pg_trgm is there.
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS vm_tab_counts_trigrams ON vm_tab_counts USING gin ((LOWER(resource_group COLLATE "C")) %I.gin_trgm_ops)',
            trgm_schema);
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'the groups'' trigram index could not be created (%): a search reads every group''s counts', SQLERRM;
END
$$;
