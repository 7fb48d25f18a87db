CREATE INDEX "audit_log_contact_id_id" ON "audit_log" (contact_id, id);
CREATE INDEX "audit_log_user_id_id" ON "audit_log" (user_id, id);
CREATE UNIQUE INDEX "auth_sessions_token_hash" ON "auth_sessions" (token_hash);
CREATE INDEX "auth_sessions_user_id" ON "auth_sessions" (user_id);
CREATE UNIQUE INDEX "broadcast_texts_broadcast_id_language" ON "broadcast_texts" (broadcast_id, language);
CREATE UNIQUE INDEX "broadcasts_parent_id_send_at" ON "broadcasts" (parent_id, send_at) WHERE parent_id IS NOT NULL;
CREATE INDEX "broadcasts_status_send_at" ON "broadcasts" (status, send_at);
CREATE INDEX "checkins_contact_id_due_at" ON "checkins" (contact_id, due_at);
CREATE UNIQUE INDEX "checkins_contact_id_kind_flow_due_at" ON "checkins" (contact_id, kind, flow, due_at);
CREATE INDEX "checkins_session_id" ON "checkins" (session_id);
CREATE INDEX "checkins_status_contact_id" ON "checkins" (status, contact_id);
CREATE INDEX "consents_contact_id_id" ON "consents" (contact_id, id);
CREATE UNIQUE INDEX "contact_tags_contact_id_tag" ON "contact_tags" (contact_id, tag);
CREATE INDEX "contact_tags_tag_contact_id" ON "contact_tags" (tag, contact_id);
CREATE UNIQUE INDEX "contacts_channel_address" ON "contacts" (channel, address);
CREATE INDEX "contacts_person_id" ON "contacts" (person_id);
CREATE UNIQUE INDEX "enrollments_contact_id" ON "enrollments" (contact_id);
CREATE INDEX "enrollments_status_team" ON "enrollments" (status, team);
CREATE UNIQUE INDEX "escalations_contact_id" ON "escalations" (contact_id) WHERE status IN ('waiting', 'claimed');
CREATE INDEX "escalations_status_deadline_at" ON "escalations" (status, deadline_at);
CREATE INDEX "escalations_status_id" ON "escalations" (status, id);
CREATE INDEX "inbox_channel_address" ON "inbox" (channel, address);
CREATE UNIQUE INDEX "inbox_channel_provider_id" ON "inbox" (channel, provider_id);
CREATE INDEX "inbox_privacy_received_at" ON "inbox" (received_at) WHERE text NOT IN ('[redacted]', '[erased]');
CREATE INDEX "inbox_received_at" ON "inbox" (received_at) WHERE processed_at IS NULL;
CREATE INDEX "jobs_contact_id_kind" ON "jobs" (contact_id, kind);
CREATE UNIQUE INDEX "jobs_dedupe_key" ON "jobs" (dedupe_key);
CREATE INDEX "jobs_status_due_at" ON "jobs" (status, due_at);
CREATE INDEX "outbox_broadcast_id_status_channel_error" ON "outbox" (broadcast_id, status, channel, error) WHERE broadcast_id IS NOT NULL;
CREATE INDEX "outbox_contact_id_id" ON "outbox" (contact_id, id);
CREATE INDEX "outbox_contact_id_status_priority" ON "outbox" (contact_id, status, priority) WHERE contact_id IS NOT NULL;
CREATE INDEX "outbox_privacy_created_at" ON "outbox" (created_at) WHERE text NOT IN ('[redacted]', '[erased]');
CREATE INDEX "outbox_provider_id" ON "outbox" (provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX "outbox_status_channel_priority_next_attempt_at" ON "outbox" (status, channel, priority, next_attempt_at);
CREATE INDEX "readings_contact_id_concept_at" ON "readings" (contact_id, concept, at);
CREATE INDEX "schedules_contact_id_status" ON "schedules" (contact_id, status);
CREATE INDEX "schedules_status_next_due_at" ON "schedules" (status, next_due_at);
CREATE INDEX "sessions_contact_id_id" ON "sessions" (contact_id, id);
CREATE INDEX "sessions_status_updated_at" ON "sessions" (status, updated_at);
CREATE INDEX "ticket_notes_escalation_id_id" ON "ticket_notes" (escalation_id, id);
CREATE INDEX "transcript_contact_id_at_id" ON "transcript" (contact_id, at, id);
CREATE INDEX "transcript_privacy_at" ON "transcript" (at) WHERE text NOT IN ('[redacted]', '[erased]');
CREATE UNIQUE INDEX "users_username" ON "users" (username);
CREATE TABLE "audit_log" (
   "id" INTEGER PRIMARY KEY,
   "at" TEXT NOT NULL,
   "user_id" INTEGER REFERENCES "users"("id"),
   "username" TEXT,
   "action" TEXT NOT NULL,
   "contact_id" INTEGER REFERENCES "contacts"("id"),
   "escalation_id" INTEGER REFERENCES "escalations"("id"),
   "detail" TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE TABLE "auth_sessions" (
   "id" INTEGER PRIMARY KEY,
   "user_id" INTEGER NOT NULL REFERENCES "users"("id"),
   "token_hash" TEXT NOT NULL,
   "csrf_token" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "expires_at" TEXT NOT NULL,
   "last_seen_at" TEXT NOT NULL,
   "revoked_at" TEXT
) STRICT;
CREATE TABLE "broadcast_texts" (
   "id" INTEGER PRIMARY KEY,
   "broadcast_id" INTEGER NOT NULL REFERENCES "broadcasts"("id"),
   "language" TEXT NOT NULL,
   "text" TEXT NOT NULL,
   "sms_text" TEXT
) STRICT;
CREATE TABLE "broadcasts" (
   "id" INTEGER PRIMARY KEY,
   "name" TEXT NOT NULL,
   "status" TEXT NOT NULL,
   "created_by" INTEGER NOT NULL REFERENCES "users"("id"),
   "created_by_name" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "approved_by" INTEGER REFERENCES "users"("id"),
   "approved_by_name" TEXT,
   "approved_at" TEXT,
   "send_at" TEXT,
   "recurrence" TEXT,
   "timezone" TEXT,
   "next_due_at" TEXT,
   "parent_id" INTEGER REFERENCES "broadcasts"("id"),
   "correction_of" INTEGER REFERENCES "broadcasts"("id"),
   "urgent" INTEGER NOT NULL DEFAULT 0,
   "audience" TEXT NOT NULL DEFAULT '{}',
   "whatsapp_template" TEXT,
   "default_language" TEXT NOT NULL,
   "fan_out_cursor" INTEGER NOT NULL DEFAULT 0,
   "fan_out_last" INTEGER,
   "enqueued" INTEGER NOT NULL DEFAULT 0,
   "started_at" TEXT,
   "fanned_out_at" TEXT,
   "cancelled_by" INTEGER REFERENCES "users"("id"),
   "cancelled_by_name" TEXT,
   "cancelled_at" TEXT,
   "updated_at" TEXT NOT NULL
) STRICT;
CREATE TABLE "checkins" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "kind" TEXT NOT NULL,
   "flow" TEXT NOT NULL,
   "schedule_id" INTEGER REFERENCES "schedules"("id"),
   "due_at" TEXT NOT NULL,
   "not_before" TEXT NOT NULL,
   "status" TEXT NOT NULL,
   "session_id" INTEGER REFERENCES "sessions"("id"),
   "created_at" TEXT NOT NULL,
   "started_at" TEXT,
   "resolved_at" TEXT
) STRICT;
CREATE TABLE "consents" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "purpose" TEXT NOT NULL,
   "granted" INTEGER NOT NULL,
   "source" TEXT,
   "at" TEXT NOT NULL
) STRICT;
CREATE TABLE "contact_tags" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "tag" TEXT NOT NULL
) STRICT;
CREATE TABLE "contacts" (
   "id" INTEGER PRIMARY KEY,
   "channel" TEXT NOT NULL,
   "address" TEXT NOT NULL,
   "language" TEXT NOT NULL DEFAULT 'en',
   "opted_out" INTEGER NOT NULL DEFAULT 0,
   "consent_care" INTEGER,
   "consent_broadcast" INTEGER,
   "created_at" TEXT NOT NULL,
   "updated_at" TEXT NOT NULL,
   "opted_out_at" TEXT,
   "consent_care_at" TEXT,
   "consent_broadcast_at" TEXT,
   "last_inbound_at" TEXT
, "person_id" INTEGER, "region" TEXT, "timezone" TEXT, "preferred" INTEGER NOT NULL DEFAULT 0, "language_set" INTEGER NOT NULL DEFAULT 0, "forgotten_at" TEXT, "test" INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE "enrollments" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "status" TEXT NOT NULL,
   "conditions" TEXT NOT NULL DEFAULT '[]',
   "checkin_time" TEXT NOT NULL,
   "timezone" TEXT NOT NULL,
   "team" TEXT,
   "baselines" TEXT NOT NULL DEFAULT '{}',
   "session_id" INTEGER REFERENCES "sessions"("id"),
   "enrolled_by" TEXT,
   "created_at" TEXT NOT NULL,
   "updated_at" TEXT NOT NULL,
   "activated_at" TEXT
) STRICT;
CREATE TABLE "escalations" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "session_id" INTEGER REFERENCES "sessions"("id"),
   "level" TEXT NOT NULL,
   "reason" TEXT NOT NULL,
   "flow" TEXT,
   "red_flags" TEXT NOT NULL DEFAULT '[]',
   "summary" TEXT NOT NULL DEFAULT '{}',
   "status" TEXT NOT NULL,
   "opened_at" TEXT NOT NULL,
   "updated_at" TEXT NOT NULL,
   "appended" INTEGER NOT NULL DEFAULT 0,
   "claimed_by" TEXT,
   "claimed_at" TEXT,
   "closed_at" TEXT
, "priority" TEXT, "deadline_at" TEXT, "assignee_id" INTEGER REFERENCES users(id), "first_response_at" TEXT, "resolved_at" TEXT, "announced_at" TEXT, "announcements" INTEGER NOT NULL DEFAULT 0, "raised_at" TEXT) STRICT;
CREATE TABLE "inbox" (
   "id" INTEGER PRIMARY KEY,
   "channel" TEXT NOT NULL,
   "provider_id" TEXT NOT NULL,
   "address" TEXT NOT NULL,
   "text" TEXT NOT NULL,
   "language_hint" TEXT,
   "received_at" TEXT NOT NULL,
   "raw" TEXT,
   "processed_at" TEXT
) STRICT;
CREATE TABLE "jobs" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER REFERENCES "contacts"("id"),
   "kind" TEXT NOT NULL,
   "flow" TEXT,
   "due_at" TEXT NOT NULL,
   "payload" TEXT NOT NULL DEFAULT '{}',
   "dedupe_key" TEXT,
   "status" TEXT NOT NULL,
   "worker" TEXT,
   "claimed_at" TEXT,
   "finished_at" TEXT
) STRICT;
CREATE TABLE "outbox" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER REFERENCES "contacts"("id"),
   "channel" TEXT NOT NULL,
   "address" TEXT NOT NULL,
   "text" TEXT NOT NULL,
   "choices" TEXT NOT NULL DEFAULT '[]',
   "kind" TEXT NOT NULL,
   "meta" TEXT NOT NULL DEFAULT '{}',
   "status" TEXT NOT NULL,
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "next_attempt_at" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "claimed_at" TEXT,
   "sent_at" TEXT,
   "finished_at" TEXT,
   "provider_id" TEXT,
   "error" TEXT,
   "error_code" TEXT
, "priority" INTEGER NOT NULL DEFAULT 0, "broadcast_id" INTEGER REFERENCES broadcasts(id)) STRICT;
CREATE TABLE "readings" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "session_id" INTEGER REFERENCES "sessions"("id"),
   "concept" TEXT NOT NULL,
   "value" REAL NOT NULL,
   "unit" TEXT,
   "at" TEXT NOT NULL
) STRICT;
CREATE TABLE "schedules" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "flow" TEXT NOT NULL,
   "label" TEXT NOT NULL,
   "rule" TEXT NOT NULL,
   "timezone" TEXT NOT NULL,
   "next_due_at" TEXT,
   "status" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "updated_at" TEXT
) STRICT;
CREATE TABLE "schema_migrations" (
   "version" INTEGER PRIMARY KEY,
   "name" TEXT NOT NULL,
   "applied_at" TEXT NOT NULL
) STRICT;
CREATE TABLE "sessions" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "flow" TEXT,
   "node" TEXT,
   "status" TEXT NOT NULL,
   "state" TEXT NOT NULL,
   "started_at" TEXT NOT NULL,
   "updated_at" TEXT NOT NULL
, "nudged_at" TEXT, "expired_at" TEXT, "reviewed_at" TEXT) STRICT;
CREATE TABLE "ticket_notes" (
   "id" INTEGER PRIMARY KEY,
   "escalation_id" INTEGER NOT NULL REFERENCES "escalations"("id"),
   "user_id" INTEGER NOT NULL REFERENCES "users"("id"),
   "text" TEXT NOT NULL,
   "at" TEXT NOT NULL
) STRICT;
CREATE TABLE "transcript" (
   "id" INTEGER PRIMARY KEY,
   "contact_id" INTEGER NOT NULL REFERENCES "contacts"("id"),
   "session_id" INTEGER REFERENCES "sessions"("id"),
   "direction" TEXT NOT NULL,
   "text" TEXT NOT NULL,
   "channel" TEXT NOT NULL,
   "at" TEXT NOT NULL
, "author" TEXT) STRICT;
CREATE TABLE "users" (
   "id" INTEGER PRIMARY KEY,
   "username" TEXT NOT NULL,
   "password_hash" TEXT NOT NULL,
   "role" TEXT NOT NULL,
   "disabled" INTEGER NOT NULL DEFAULT 0,
   "must_change_password" INTEGER NOT NULL DEFAULT 1,
   "failed_logins" INTEGER NOT NULL DEFAULT 0,
   "locked_until" TEXT,
   "last_login_at" TEXT,
   "created_at" TEXT NOT NULL,
   "updated_at" TEXT NOT NULL
, "totp_secret" TEXT) STRICT;
CREATE TRIGGER "audit_log_no_delete" BEFORE DELETE ON "audit_log" BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER "audit_log_no_update" BEFORE UPDATE ON "audit_log" BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER "broadcasts_two_people_insert" BEFORE INSERT ON "broadcasts" WHEN NEW.approved_by = NEW.created_by OR NEW.approved_by_name = NEW.created_by_name BEGIN SELECT RAISE(ABORT, 'a broadcast cannot be approved by its creator'); END;
CREATE TRIGGER "broadcasts_two_people_update" BEFORE UPDATE OF approved_by, approved_by_name ON "broadcasts" WHEN NEW.approved_by = NEW.created_by OR NEW.approved_by_name = NEW.created_by_name BEGIN SELECT RAISE(ABORT, 'a broadcast cannot be approved by its creator'); END;
CREATE TRIGGER "consents_no_delete" BEFORE DELETE ON "consents" BEGIN SELECT RAISE(ABORT, 'consents is append-only'); END;
CREATE TRIGGER "consents_no_update" BEFORE UPDATE ON "consents" BEGIN SELECT RAISE(ABORT, 'consents is append-only'); END;
CREATE TRIGGER "contacts_person" AFTER INSERT ON "contacts" WHEN NEW.person_id IS NULL BEGIN UPDATE contacts SET person_id = coalesce(CASE WHEN NEW.channel IN ('sms', 'whatsapp') THEN (SELECT o.person_id FROM contacts o WHERE o.channel IN ('sms', 'whatsapp') AND o.address = NEW.address AND o.id <> NEW.id ORDER BY o.id LIMIT 1) END, NEW.id) WHERE id = NEW.id; END;
CREATE TRIGGER "contacts_test" AFTER INSERT ON "contacts" WHEN NEW.channel = 'web' BEGIN UPDATE contacts SET test = 1 WHERE id = NEW.id; END;
