//! The PostgreSQL catalog's schema, one migration per row of `custodian_schema`.

/// Schema migrations; entry `i` is version `i + 1` in `custodian_schema`. The uniqueness of
/// (tenant, id) is DEFERRABLE so that it is checked at the end of each statement, not row by
/// row: one UPDATE of an index batch may hand an id from one directory to another.
/// Participants and artifacts have no foreign key to their conversation, unlike in SQLite: only
/// an index batch writes them, always with their conversation and deleting them with it, and a
/// key check (and lock) of the parent for every child row made indexing half again slower.
/// Instants are
/// TIMESTAMPTZ; a conversation's start and end also keep their RFC 3339 text, whose offset is
/// part of the record. Text that is ranged over or sorted (directories, object keys, policy
/// names) is `COLLATE "C"`, so it orders by bytes as in SQLite whatever the database's locale.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE conversations (
    pk BIGSERIAL PRIMARY KEY,
    rel_dir TEXT COLLATE "C" NOT NULL UNIQUE,
    day TEXT COLLATE "C" NOT NULL,
    json_mtime_ns BIGINT NOT NULL,
    json_size BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_platform TEXT NOT NULL,
    direction TEXT NOT NULL,
    start_text TEXT NOT NULL,
    end_text TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    confidential BOOLEAN NOT NULL,
    cdr_only BOOLEAN NOT NULL,
    imported BOOLEAN NOT NULL,
    legal_hold BOOLEAN NOT NULL,
    channel TEXT,
    CONSTRAINT conversations_tenant_id UNIQUE (tenant, id) DEFERRABLE INITIALLY IMMEDIATE
);
CREATE INDEX conversations_start ON conversations (start_ms);
CREATE INDEX conversations_day ON conversations (day);
CREATE INDEX conversations_end ON conversations ((start_ms + duration_ms));
CREATE TABLE participants (
    conversation BIGINT NOT NULL,
    ordinal BIGINT NOT NULL,
    user_name TEXT,
    extension TEXT,
    role TEXT NOT NULL,
    PRIMARY KEY (conversation, ordinal)
);
CREATE TABLE artifacts (
    conversation BIGINT NOT NULL,
    ordinal BIGINT NOT NULL,
    file TEXT NOT NULL,
    kind TEXT NOT NULL,
    audio_type TEXT,
    extension TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    key_id TEXT,
    PRIMARY KEY (conversation, ordinal)
);
CREATE TABLE job_runs (
    id BIGSERIAL PRIMARY KEY,
    policy TEXT NOT NULL,
    mode TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    resumed BIGINT NOT NULL DEFAULT 0,
    selected BIGINT NOT NULL DEFAULT 0,
    exported BIGINT NOT NULL DEFAULT 0,
    flagged BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    objects BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    index_errors BIGINT NOT NULL DEFAULT 0,
    manifest_key TEXT,
    error_summary TEXT,
    log_path TEXT,
    notification TEXT
);
CREATE INDEX job_runs_policy ON job_runs (policy, id);
CREATE TABLE run_items (
    id BIGSERIAL PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    tenant TEXT,
    conversation_id TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    objects BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX run_items_run ON run_items (run, tenant, conversation_id);
CREATE TABLE run_objects (
    run BIGINT NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (run, key)
);
CREATE TABLE export_state (
    policy TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    run BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (policy, tenant, conversation_id)
);
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    policy TEXT,
    run BIGINT,
    tenant TEXT,
    conversation_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_run ON audit_events (run);
CREATE INDEX audit_events_conversation ON audit_events (conversation_id);
CREATE TABLE audit_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (seq, hash)
    VALUES (0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE open_uploads (
    target TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    key TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (target, upload_id)
);
CREATE TABLE lifecycle_policies (
    name TEXT COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL,
    artifact_type TEXT NOT NULL,
    audio_type TEXT,
    enabled BOOLEAN NOT NULL DEFAULT FALSE,
    active_version TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE lifecycle_versions (
    policy TEXT COLLATE "C" NOT NULL REFERENCES lifecycle_policies (name),
    name TEXT NOT NULL,
    seq BIGINT NOT NULL,
    action TEXT NOT NULL,
    days BIGINT,
    published_at TIMESTAMPTZ NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (policy, name)
);
CREATE TABLE artifact_deletions (
    conversation BIGINT NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    file TEXT NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (conversation, file)
);
CREATE TABLE delete_intents (
    conversation BIGINT NOT NULL,
    ordinal BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    rel_dir TEXT NOT NULL,
    file TEXT NOT NULL,
    size BIGINT NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    due TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation, ordinal)
);
CREATE TABLE confidential_flags (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    value BOOLEAN NOT NULL,
    policy TEXT NOT NULL,
    run BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
);
"#,
    r#"
ALTER TABLE job_runs ADD COLUMN finisher TEXT;
ALTER TABLE job_runs ADD COLUMN finisher_since TIMESTAMPTZ;
CREATE TABLE work_units (
    id BIGSERIAL PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    node TEXT,
    lease_until TIMESTAMPTZ,
    claims BIGINT NOT NULL DEFAULT 0,
    exported BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    objects BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    finished_at TIMESTAMPTZ
);
CREATE INDEX work_units_open ON work_units (run, id) WHERE state <> 'done';
"#,
    r#"
ALTER TABLE open_uploads ADD COLUMN run BIGINT;
"#,
    r#"
ALTER TABLE job_runs ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
"#,
    r#"
CREATE INDEX audit_events_deletions ON audit_events (run) WHERE kind = 'artifact_deleted';
"#,
    // A run's failed subjects are those it never exported: without this index each failed
    // item's probe for an export of the same subject scanned all of the run's items.
    r#"
CREATE INDEX run_items_subject ON run_items (run, subject, outcome);
"#,
    // Incremental state per record version and per artifact (a transcript added to an exported
    // conversation is exported by the next run), and object keys claimed before they are
    // written (no object replaces another's). Conversations exported before count the record
    // version and the artifacts they have now as exported.
    r#"
ALTER TABLE export_state ADD COLUMN json_mtime_ns BIGINT;
ALTER TABLE export_state ADD COLUMN json_size BIGINT;
UPDATE export_state s SET json_mtime_ns = c.json_mtime_ns, json_size = c.json_size
    FROM conversations c WHERE c.tenant = s.tenant AND c.id = s.conversation_id;
CREATE TABLE export_artifacts (
    policy TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    key TEXT,
    size BIGINT,
    out_sha256 TEXT,
    run BIGINT NOT NULL,
    PRIMARY KEY (policy, tenant, conversation_id, file)
);
INSERT INTO export_artifacts (policy, tenant, conversation_id, file, sha256, run)
    SELECT s.policy, s.tenant, s.conversation_id, a.file, a.sha256, s.run FROM export_state s
    JOIN conversations c ON c.tenant = s.tenant AND c.id = s.conversation_id
    JOIN artifacts a ON a.conversation = c.pk;
CREATE TABLE object_keys (
    target TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file TEXT NOT NULL,
    run BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (target, key)
);
"#,
    r#"
ALTER TABLE audit_head ADD COLUMN key_id TEXT;
ALTER TABLE audit_events ADD COLUMN key_id TEXT;
"#,
    // Legal holds (docs/operations.md, "Legal holds"): matters, and the holds placed under
    // them; a standing hold is its criteria (JSON) in one row, an explicit one its list of
    // conversations.
    r#"
CREATE TABLE matters (
    name TEXT COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE legal_holds (
    id BIGSERIAL PRIMARY KEY,
    matter TEXT COLLATE "C" NOT NULL REFERENCES matters (name),
    criteria TEXT,
    placed_at TIMESTAMPTZ NOT NULL,
    placed_by TEXT NOT NULL,
    released_at TIMESTAMPTZ,
    released_by TEXT
);
CREATE INDEX legal_holds_matter ON legal_holds (matter);
CREATE TABLE hold_conversations (
    hold BIGINT NOT NULL REFERENCES legal_holds (id),
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    PRIMARY KEY (hold, tenant, conversation_id)
);
CREATE INDEX hold_conversations_conversation ON hold_conversations (tenant, conversation_id);
"#,
    // Four eyes (docs/operations.md, "Four eyes"): changes that make a delete version take
    // effect, waiting for a second user's approval; at most one pending per policy.
    r#"
CREATE TABLE lifecycle_changes (
    id BIGSERIAL PRIMARY KEY,
    policy TEXT COLLATE "C" NOT NULL REFERENCES lifecycle_policies (name),
    change TEXT NOT NULL,
    version TEXT NOT NULL,
    enabled_before BOOLEAN NOT NULL,
    version_before TEXT,
    acknowledgments TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    decided_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX lifecycle_changes_pending ON lifecycle_changes (policy) WHERE state = 'pending';
"#,
    // The quarantine window (docs/operations.md, "Quarantine"): what the sweep moved into the
    // quarantine area (and the intents to move, restore or purge, by state), and the artifacts
    // a user restored, exempt from the version that quarantined them.
    r#"
CREATE TABLE quarantine (
    conversation BIGINT NOT NULL,
    file TEXT NOT NULL,
    ordinal BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    rel_dir TEXT NOT NULL,
    size BIGINT NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    exempt BOOLEAN NOT NULL,
    run BIGINT,
    quarantined_ms BIGINT,
    PRIMARY KEY (conversation, file)
);
CREATE INDEX quarantine_state ON quarantine (state);
CREATE INDEX quarantine_run ON quarantine (run);
CREATE INDEX quarantine_conversation_id ON quarantine (tenant, conversation_id);
CREATE TABLE restore_exemptions (
    conversation BIGINT NOT NULL,
    file TEXT NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    restored_at TIMESTAMPTZ NOT NULL,
    restored_by TEXT NOT NULL,
    PRIMARY KEY (conversation, file)
);
"#,
    // Export before delete (docs/operations.md, "Export before delete"): the export policy a
    // version requires, and what a sweep held back for it, for the run's notification.
    r#"
ALTER TABLE lifecycle_versions ADD COLUMN require_export TEXT;
ALTER TABLE job_runs ADD COLUMN held_back TEXT;
"#,
    // Participant criteria as sets (docs/performance.md, "Lifecycle"): the conversations of
    // some users or extensions found through these, not by reading every conversation's
    // participants.
    r#"
CREATE INDEX participants_user ON participants (user_name);
CREATE INDEX participants_extension ON participants (extension);
"#,
    // Accounts of the web portal and JSON API (docs/operations.md, "The web portal"): tokens
    // and sessions are kept as SHA-256 digests; instants are seconds since the Unix epoch. The
    // portal's runs list filters the job history by policy and outcome, a page at a time.
    r#"
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    groups TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE account_tokens (
    hash TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE INDEX account_tokens_account ON account_tokens (account);
CREATE TABLE web_sessions (
    hash TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_account ON web_sessions (account);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
CREATE INDEX job_runs_status ON job_runs (status, id);
CREATE INDEX job_runs_policy_status ON job_runs (policy, status, id);
"#,
    // The service's reads (docs/operations.md, "The JSON API", "Metrics"): conversations by id
    // alone, newest first, and by tenant newest first, a conversation's exports and key claims,
    // the runs going now, and each policy's finished runs totalled by outcome, kept by a
    // trigger as each run ends so a scrape reads a row per policy and outcome
    // (`catalog/totals.rs`).
    r#"
CREATE INDEX conversations_id ON conversations (id);
CREATE INDEX conversations_tenant_start ON conversations (tenant, start_ms, pk);
CREATE INDEX conversations_start_pk ON conversations (start_ms, pk);
CREATE INDEX export_artifacts_conversation ON export_artifacts (tenant, conversation_id);
CREATE INDEX object_keys_conversation ON object_keys (tenant, conversation_id);
CREATE INDEX job_runs_running ON job_runs (policy) WHERE status = 'running';
CREATE TABLE run_totals (
    policy TEXT NOT NULL,
    status TEXT NOT NULL,
    runs BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    exported BIGINT NOT NULL,
    objects BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    last_finished_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (policy, status)
);
INSERT INTO run_totals
    SELECT policy, status, count(*),
        sum(greatest(0, CAST(round(extract(epoch FROM finished_at - started_at) * 1000) AS BIGINT))),
        sum(exported), sum(objects), sum(bytes), sum(failed), sum(deleted), max(finished_at)
    FROM job_runs WHERE status <> 'running' AND finished_at IS NOT NULL GROUP BY policy, status;
CREATE FUNCTION run_totals_on_finish() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO run_totals (policy, status, runs, duration_ms, exported, objects, bytes, failed,
        deleted, last_finished_at)
    VALUES (NEW.policy, NEW.status, 1,
        greatest(0, CAST(round(extract(epoch FROM NEW.finished_at - NEW.started_at) * 1000) AS BIGINT)),
        NEW.exported, NEW.objects, NEW.bytes, NEW.failed, NEW.deleted, NEW.finished_at)
    ON CONFLICT (policy, status) DO UPDATE SET runs = run_totals.runs + 1,
        duration_ms = run_totals.duration_ms + excluded.duration_ms,
        exported = run_totals.exported + excluded.exported,
        objects = run_totals.objects + excluded.objects, bytes = run_totals.bytes + excluded.bytes,
        failed = run_totals.failed + excluded.failed, deleted = run_totals.deleted + excluded.deleted,
        last_finished_at = greatest(run_totals.last_finished_at, excluded.last_finished_at);
    RETURN NULL;
END
$body$;
CREATE TRIGGER run_totals_on_finish AFTER UPDATE OF status ON job_runs FOR EACH ROW
    WHEN (OLD.status = 'running' AND NEW.status <> 'running' AND NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION run_totals_on_finish();
"#,
    // Artifacts by type (docs/performance.md, "`plan lifecycle` under ten standing holds"): a
    // lifecycle policy's due artifacts read from the artifacts of its type alone, in
    // conversation order, with the columns its queries read, not from every artifact.
    r#"
CREATE INDEX artifacts_kind ON artifacts (kind, audio_type, conversation, ordinal, file, size);
"#,
    // Conversations by participant, newest first (docs/performance.md, "The web portal and API
    // at 1 M runs and 1 M conversations"): each participant row carries its conversation's start,
    // so a search by user walks (user_name, start_ms, conversation) in order and stops after a
    // page, instead of reading and sorting every conversation of a busy user.
    r#"
ALTER TABLE participants ADD COLUMN start_ms BIGINT;
UPDATE participants SET start_ms = (SELECT c.start_ms FROM conversations c WHERE c.pk = participants.conversation);
CREATE INDEX participants_user_start ON participants (user_name, start_ms, conversation);
"#,
    // The portal's audit page shows the chain's last verification, an event of its own
    // (docs/operations.md, "The web portal"): found through this index, not by walking the
    // trail back from its head.
    r#"
CREATE INDEX audit_events_verifications ON audit_events (seq) WHERE kind = 'trail_verified';
"#,
    // Legal-hold syncs (docs/operations.md, "WORM exports"): conversations whose objects on
    // locked targets need their legal-hold status set again after a hold was placed or
    // released, queued in the transaction that changed the hold. A change while one is queued
    // bumps its generation, so a sync that read the older one leaves it queued.
    r#"
CREATE TABLE hold_syncs (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, conversation_id)
);
"#,
    // Run durations by bucket (docs/operations.md, "Metrics"): for each policy and outcome,
    // how many finished runs took no longer than each bound of `run_duration_bounds`, added
    // by a trigger as each run ends, like `run_totals`, so the metrics' histogram has buckets.
    r#"
CREATE TABLE run_duration_bounds (le_ms BIGINT PRIMARY KEY);
INSERT INTO run_duration_bounds VALUES
    (1000), (10000), (60000), (300000), (900000), (3600000), (14400000), (86400000);
CREATE TABLE run_duration_buckets (
    policy TEXT NOT NULL,
    status TEXT NOT NULL,
    le_ms BIGINT NOT NULL,
    runs BIGINT NOT NULL,
    PRIMARY KEY (policy, status, le_ms)
);
INSERT INTO run_duration_buckets
    SELECT r.policy, r.status, b.le_ms, count(*) FROM job_runs r JOIN run_duration_bounds b
        ON greatest(0, CAST(round(extract(epoch FROM r.finished_at - r.started_at) * 1000) AS BIGINT)) <= b.le_ms
    WHERE r.status <> 'running' AND r.finished_at IS NOT NULL
    GROUP BY r.policy, r.status, b.le_ms;
CREATE FUNCTION run_duration_buckets_on_finish() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO run_duration_buckets (policy, status, le_ms, runs)
    SELECT NEW.policy, NEW.status, le_ms, 1 FROM run_duration_bounds
    WHERE greatest(0, CAST(round(extract(epoch FROM NEW.finished_at - NEW.started_at) * 1000) AS BIGINT)) <= le_ms
    ON CONFLICT (policy, status, le_ms) DO UPDATE SET runs = run_duration_buckets.runs + 1;
    RETURN NULL;
END
$body$;
CREATE TRIGGER run_duration_buckets_on_finish AFTER UPDATE OF status ON job_runs FOR EACH ROW
    WHEN (OLD.status = 'running' AND NEW.status <> 'running' AND NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION run_duration_buckets_on_finish();
"#,
];
