-- The activity log's VM and user filters match a prefix, ignoring case (issue 15): the
-- store asks for a range of lower(vm) (and of lower(actor)), which these indexes answer,
-- and the filters' suggestions step through them one name at a time. They replace the
-- exact-match indexes, which nothing reads any more.
DROP INDEX IF EXISTS activity_log_vm;
DROP INDEX IF EXISTS activity_log_actor;
CREATE INDEX activity_log_vm_folded ON activity_log(LOWER(vm));
CREATE INDEX activity_log_actor_folded ON activity_log(LOWER(actor));
