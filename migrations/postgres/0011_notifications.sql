-- Notifications (see app/src/store/notify.rs): channels administrators configure, which
-- events go to which channel for which VM group, each user's own e-mail settings, and an
-- outbox written in the transaction of the change it tells about.

-- Where a user's own messages go, whether they want them, and how long before a grant
-- ends they are warned.
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN notify_email BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN warn_minutes BIGINT NOT NULL DEFAULT 10;

CREATE TABLE notification_channels (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    -- webhook, slack, teams or email.
    kind TEXT NOT NULL,
    -- The URL to post to; for e-mail the SMTP server as host:port.
    target TEXT NOT NULL,
    -- The webhook signing key, or the SMTP password: never shown back.
    secret TEXT NOT NULL DEFAULT '',
    -- E-mail only: security, user name, sender, recipients (JSON).
    settings TEXT NOT NULL DEFAULT '{}',
    enabled BIGINT NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A channel hears an event for VMs of a group ('' = every group).
CREATE TABLE notification_routes (
    id TEXT PRIMARY KEY NOT NULL,
    channel_id TEXT NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    resource_group TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (channel_id, event, resource_group)
);

CREATE TABLE notification_outbox (
    id TEXT PRIMARY KEY NOT NULL,
    event TEXT NOT NULL,
    -- A channel's message, or (channel unset) one user's e-mail to `recipient`.
    channel_id TEXT REFERENCES notification_channels(id) ON DELETE CASCADE,
    recipient TEXT NOT NULL DEFAULT '',
    -- The message (JSON): subject, text, link path, facts.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- pending, delivered or failed (gave up).
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- A replica delivering the row holds it until this time.
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_attempt_at BIGINT,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX notification_outbox_due ON notification_outbox(status, next_attempt_at);
CREATE INDEX notification_outbox_channel ON notification_outbox(channel_id, created_at);

-- The end a grant's "ends soon" warning was sent for: an extension moves the end, and
-- the new end gets its own warning.
ALTER TABLE access_requests ADD COLUMN warned_end_at BIGINT;
-- Set when the VM's administrators were told its agent went silent; cleared when the
-- agent is heard again. The enforcement error they were last told about.
ALTER TABLE vms ADD COLUMN silence_notified_at BIGINT;
ALTER TABLE vms ADD COLUMN error_notified TEXT NOT NULL DEFAULT '';

-- The notification job looks for these every few seconds: partial indexes keep that to
-- the few VMs concerned, however many there are.
CREATE INDEX vms_error_news ON vms(id) WHERE agent_error <> error_notified;
CREATE INDEX vms_silence_news ON vms(agent_last_seen)
    WHERE agent_id IS NOT NULL AND silence_notified_at IS NULL;
