//! The SQLite catalog's schema, one migration per `PRAGMA user_version`.

/// Schema migrations; entry `i` moves `user_version` from `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE conversations (
    pk INTEGER PRIMARY KEY,
    rel_dir TEXT NOT NULL UNIQUE,
    day TEXT NOT NULL,
    json_mtime_ns INTEGER NOT NULL,
    json_size INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_platform TEXT NOT NULL,
    direction TEXT NOT NULL,
    start_text TEXT NOT NULL,
    end_text TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    confidential INTEGER NOT NULL,
    cdr_only INTEGER NOT NULL,
    imported INTEGER NOT NULL,
    legal_hold INTEGER NOT NULL,
    channel TEXT,
    UNIQUE (tenant, id)
);
CREATE INDEX conversations_start ON conversations (start_ms);
CREATE INDEX conversations_day ON conversations (day);
CREATE TABLE participants (
    conversation INTEGER NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    user_name TEXT,
    extension TEXT,
    role TEXT NOT NULL,
    PRIMARY KEY (conversation, ordinal)
) WITHOUT ROWID;
CREATE TABLE artifacts (
    conversation INTEGER NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    file TEXT NOT NULL,
    kind TEXT NOT NULL,
    audio_type TEXT,
    extension TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    key_id TEXT,
    PRIMARY KEY (conversation, ordinal)
) WITHOUT ROWID;
CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY,
    policy TEXT NOT NULL,
    mode TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    resumed INTEGER NOT NULL DEFAULT 0,
    selected INTEGER NOT NULL DEFAULT 0,
    exported INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    index_errors INTEGER NOT NULL DEFAULT 0,
    manifest_key TEXT,
    error_summary TEXT
);
CREATE INDEX job_runs_policy ON job_runs (policy, id);
CREATE TABLE run_items (
    run INTEGER NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    tenant TEXT,
    conversation_id TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    at TEXT NOT NULL
);
CREATE INDEX run_items_run ON run_items (run, tenant, conversation_id);
CREATE TABLE run_objects (
    run INTEGER NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE TABLE export_state (
    policy TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    run INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (policy, tenant, conversation_id)
) WITHOUT ROWID;
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    policy TEXT,
    run INTEGER,
    tenant TEXT,
    conversation_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_run ON audit_events (run);
CREATE INDEX audit_events_conversation ON audit_events (conversation_id);
"#,
    r#"
CREATE TABLE open_uploads (
    target TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    key TEXT NOT NULL,
    started_at TEXT NOT NULL,
    PRIMARY KEY (target, upload_id)
) WITHOUT ROWID;
"#,
    r#"
CREATE INDEX conversations_end ON conversations (start_ms + duration_ms);
CREATE TABLE lifecycle_policies (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    artifact_type TEXT NOT NULL,
    audio_type TEXT,
    enabled INTEGER NOT NULL DEFAULT 0,
    active_version TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE lifecycle_versions (
    policy TEXT NOT NULL REFERENCES lifecycle_policies (name),
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    days INTEGER,
    published_at TEXT NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (policy, name)
) WITHOUT ROWID;
CREATE TABLE artifact_deletions (
    conversation INTEGER NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    file TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (conversation, file)
) WITHOUT ROWID;
CREATE TABLE delete_intents (
    conversation INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    rel_dir TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    due TEXT NOT NULL,
    PRIMARY KEY (conversation, ordinal)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE job_runs ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_runs ADD COLUMN log_path TEXT;
ALTER TABLE job_runs ADD COLUMN notification TEXT;
CREATE TABLE confidential_flags (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    value INTEGER NOT NULL,
    policy TEXT NOT NULL,
    run INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE open_uploads ADD COLUMN run INTEGER;
"#,
    r#"
ALTER TABLE job_runs ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
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
ALTER TABLE export_state ADD COLUMN json_mtime_ns INTEGER;
ALTER TABLE export_state ADD COLUMN json_size INTEGER;
UPDATE export_state SET json_mtime_ns = c.json_mtime_ns, json_size = c.json_size
    FROM conversations c WHERE c.tenant = export_state.tenant AND c.id = export_state.conversation_id;
CREATE TABLE export_artifacts (
    policy TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    key TEXT,
    size INTEGER,
    out_sha256 TEXT,
    run INTEGER NOT NULL,
    PRIMARY KEY (policy, tenant, conversation_id, file)
) WITHOUT ROWID;
INSERT INTO export_artifacts (policy, tenant, conversation_id, file, sha256, run)
    SELECT s.policy, s.tenant, s.conversation_id, a.file, a.sha256, s.run FROM export_state s
    JOIN conversations c ON c.tenant = s.tenant AND c.id = s.conversation_id
    JOIN artifacts a ON a.conversation = c.pk;
CREATE TABLE object_keys (
    target TEXT NOT NULL,
    key TEXT NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file TEXT NOT NULL,
    run INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (target, key)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE audit_events ADD COLUMN key_id TEXT;
"#,
    // Legal holds (docs/operations.md, "Legal holds"): matters, and the holds placed under
    // them; a standing hold is its criteria (JSON) in one row, an explicit one its list of
    // conversations.
    r#"
CREATE TABLE matters (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE legal_holds (
    id INTEGER PRIMARY KEY,
    matter TEXT NOT NULL REFERENCES matters (name),
    criteria TEXT,
    placed_at TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    released_at TEXT,
    released_by TEXT
);
CREATE INDEX legal_holds_matter ON legal_holds (matter);
CREATE TABLE hold_conversations (
    hold INTEGER NOT NULL REFERENCES legal_holds (id),
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    PRIMARY KEY (hold, tenant, conversation_id)
) WITHOUT ROWID;
CREATE INDEX hold_conversations_conversation ON hold_conversations (tenant, conversation_id);
"#,
    // Four eyes (docs/operations.md, "Four eyes"): changes that make a delete version take
    // effect, waiting for a second user's approval; at most one pending per policy.
    r#"
CREATE TABLE lifecycle_changes (
    id INTEGER PRIMARY KEY,
    policy TEXT NOT NULL REFERENCES lifecycle_policies (name),
    change TEXT NOT NULL,
    version TEXT NOT NULL,
    enabled_before INTEGER NOT NULL,
    version_before TEXT,
    acknowledgments TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT
);
CREATE UNIQUE INDEX lifecycle_changes_pending ON lifecycle_changes (policy) WHERE state = 'pending';
"#,
    // The quarantine window (docs/operations.md, "Quarantine"): what the sweep moved into the
    // quarantine area (and the intents to move, restore or purge, by state), and the artifacts
    // a user restored, exempt from the version that quarantined them.
    r#"
CREATE TABLE quarantine (
    conversation INTEGER NOT NULL,
    file TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    rel_dir TEXT NOT NULL,
    size INTEGER NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    exempt INTEGER NOT NULL,
    run INTEGER,
    quarantined_ms INTEGER,
    PRIMARY KEY (conversation, file)
);
CREATE INDEX quarantine_state ON quarantine (state);
CREATE INDEX quarantine_run ON quarantine (run);
CREATE INDEX quarantine_conversation_id ON quarantine (tenant, conversation_id);
CREATE TABLE restore_exemptions (
    conversation INTEGER NOT NULL,
    file TEXT NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    restored_at TEXT NOT NULL,
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
    created_at INTEGER NOT NULL
);
CREATE TABLE account_tokens (
    hash TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX account_tokens_account ON account_tokens (account);
CREATE TABLE web_sessions (
    hash TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_account ON web_sessions (account);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
CREATE INDEX job_runs_status ON job_runs (status, id);
CREATE INDEX job_runs_policy_status ON job_runs (policy, status, id);
"#,
    // The service's reads (docs/operations.md, "The JSON API", "Metrics"): conversations by id
    // alone and by tenant newest first, a conversation's exports and key claims, the runs going
    // now, and each policy's finished runs totalled by outcome, kept by a trigger as each run
    // ends so a scrape reads a row per policy and outcome (`catalog/totals.rs`).
    r#"
CREATE INDEX conversations_id ON conversations (id);
CREATE INDEX conversations_tenant_start ON conversations (tenant, start_ms);
CREATE INDEX export_artifacts_conversation ON export_artifacts (tenant, conversation_id);
CREATE INDEX object_keys_conversation ON object_keys (tenant, conversation_id);
CREATE INDEX job_runs_running ON job_runs (policy) WHERE status = 'running';
CREATE TABLE run_totals (
    policy TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    exported INTEGER NOT NULL,
    objects INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    last_finished_at TEXT NOT NULL,
    PRIMARY KEY (policy, status)
) WITHOUT ROWID;
INSERT INTO run_totals
    SELECT policy, status, count(*),
        sum(max(0, CAST(round((julianday(finished_at) - julianday(started_at)) * 86400000) AS INTEGER))),
        sum(exported), sum(objects), sum(bytes), sum(failed), sum(deleted), max(finished_at)
    FROM job_runs WHERE status <> 'running' AND finished_at IS NOT NULL GROUP BY policy, status;
CREATE TRIGGER run_totals_on_finish AFTER UPDATE OF status ON job_runs
WHEN OLD.status = 'running' AND NEW.status <> 'running' AND NEW.finished_at IS NOT NULL
BEGIN
    INSERT INTO run_totals (policy, status, runs, duration_ms, exported, objects, bytes, failed,
        deleted, last_finished_at)
    VALUES (NEW.policy, NEW.status, 1,
        max(0, CAST(round((julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400000) AS INTEGER)),
        NEW.exported, NEW.objects, NEW.bytes, NEW.failed, NEW.deleted, NEW.finished_at)
    ON CONFLICT (policy, status) DO UPDATE SET runs = runs + 1,
        duration_ms = duration_ms + excluded.duration_ms, exported = exported + excluded.exported,
        objects = objects + excluded.objects, bytes = bytes + excluded.bytes,
        failed = failed + excluded.failed, deleted = deleted + excluded.deleted,
        last_finished_at = max(last_finished_at, excluded.last_finished_at);
END;
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
ALTER TABLE participants ADD COLUMN start_ms INTEGER;
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
    generation INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, conversation_id)
) WITHOUT ROWID;
"#,
    // Run durations by bucket (docs/operations.md, "Metrics"): for each policy and outcome,
    // how many finished runs took no longer than each bound of `run_duration_bounds`, added
    // by a trigger as each run ends, like `run_totals`, so the metrics' histogram has buckets.
    r#"
CREATE TABLE run_duration_bounds (le_ms INTEGER PRIMARY KEY);
INSERT INTO run_duration_bounds VALUES
    (1000), (10000), (60000), (300000), (900000), (3600000), (14400000), (86400000);
CREATE TABLE run_duration_buckets (
    policy TEXT NOT NULL,
    status TEXT NOT NULL,
    le_ms INTEGER NOT NULL,
    runs INTEGER NOT NULL,
    PRIMARY KEY (policy, status, le_ms)
) WITHOUT ROWID;
INSERT INTO run_duration_buckets
    SELECT r.policy, r.status, b.le_ms, count(*) FROM job_runs r JOIN run_duration_bounds b
        ON max(0, CAST(round((julianday(r.finished_at) - julianday(r.started_at)) * 86400000) AS INTEGER)) <= b.le_ms
    WHERE r.status <> 'running' AND r.finished_at IS NOT NULL
    GROUP BY r.policy, r.status, b.le_ms;
CREATE TRIGGER run_duration_buckets_on_finish AFTER UPDATE OF status ON job_runs
WHEN OLD.status = 'running' AND NEW.status <> 'running' AND NEW.finished_at IS NOT NULL
BEGIN
    INSERT INTO run_duration_buckets (policy, status, le_ms, runs)
    SELECT NEW.policy, NEW.status, le_ms, 1 FROM run_duration_bounds
    WHERE max(0, CAST(round((julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400000) AS INTEGER)) <= le_ms
    ON CONFLICT (policy, status, le_ms) DO UPDATE SET runs = runs + 1;
END;
"#,
];
