-- OpenID Connect sign-in. A federated user is an ordinary `users` row without a password,
-- linked here to exactly one (provider, subject): identities are never matched by email
-- or user name. `idp_groups` is the JSON array of IdP groups seen at the last sign-in; role
-- checks on later requests use it with the group rules below.
CREATE TABLE user_identities (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    idp_groups TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    last_sign_in_at BIGINT NOT NULL,
    UNIQUE (provider, subject)
);

-- Members of an IdP group (at one provider) hold a role in a scope, like a direct role
-- assignment, for as long as the provider lists them in the group.
CREATE TABLE group_role_rules (
    id TEXT PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    idp_group TEXT NOT NULL,
    role TEXT NOT NULL,
    scope_kind TEXT NOT NULL,
    scope_target TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (provider, idp_group, role, scope_kind, scope_target)
);
