-- Where the entries written before the log had a key end (audit_status.legacy_until) is
-- vouched for by an HMAC under the log's key, written once by the server that first
-- starts on this version (see app/src/store/audit.rs). A boundary that is not signed
-- counts as none: stripping every HMAC no longer passes as "written before the key".
ALTER TABLE audit_status ADD COLUMN legacy_mac TEXT NOT NULL DEFAULT '';
