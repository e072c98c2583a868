-- A user's API tokens in force have distinct names, so that a name says which one to
-- revoke. Revoked tokens keep theirs (a name may be used again after revoking), hence the
-- partial index. Databases from before may hold several unrevoked tokens of one user
-- under one name: the oldest keeps it, each later one gets its prefix appended, which the
-- token list shows anyway, so that this migration never fails on existing data.
UPDATE api_tokens SET name = name || ' (' || prefix || ')'
WHERE revoked_at IS NULL
  AND EXISTS (
    SELECT 1 FROM api_tokens older
    WHERE older.user_id = api_tokens.user_id
      AND older.name = api_tokens.name
      AND older.revoked_at IS NULL
      AND (older.created_at < api_tokens.created_at
           OR (older.created_at = api_tokens.created_at AND older.id < api_tokens.id))
  );
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (user_id, name)
    WHERE revoked_at IS NULL;
