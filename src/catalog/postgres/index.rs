//! The index: what the repository holds. A batch is planned against the rows it touches, as
//! SQLite would apply it change by change, then written with a few `unnest` statements.

use std::collections::HashMap;

use postgres::types::ToSql;

use super::pool::Tx;
use super::{Fallible, PostgresCatalog, int};
use crate::catalog::rows::{self, Fields};
use crate::catalog::{Fingerprint, IndexChange, Result, duplicate_id, sql, unstorable};
use crate::repository::record::Conversation;

/// The rows of an index batch, as the arrays `unnest` reads ($1..$18, in `CONVERSATION_ROWS`'
/// column order).
#[derive(Default)]
struct ConversationColumns<'a> {
    rel_dir: Vec<&'a str>,
    day: Vec<&'a str>,
    mtime_ns: Vec<i64>,
    json_size: Vec<i64>,
    tenant: Vec<&'a str>,
    id: Vec<&'a str>,
    kind: Vec<&'static str>,
    source_platform: Vec<&'a str>,
    direction: Vec<&'static str>,
    start_text: Vec<String>,
    end_text: Vec<String>,
    start_ms: Vec<i64>,
    duration_ms: Vec<i64>,
    confidential: Vec<bool>,
    cdr_only: Vec<bool>,
    imported: Vec<bool>,
    legal_hold: Vec<bool>,
    channel: Vec<Option<&'a str>>,
}

/// The conversations of `ConversationColumns`, with the confidential flag a policy set (kept
/// across reindexing) in place of the record's.
const CONVERSATION_ROWS: &str = "SELECT u.rel_dir, u.day, u.json_mtime_ns, u.json_size, u.tenant, u.id, \
     u.kind, u.source_platform, u.direction, u.start_text, u.end_text, u.start_ms, u.duration_ms, \
     COALESCE(f.value, u.confidential) AS confidential, u.cdr_only, u.imported, u.legal_hold, u.channel, u.n \
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[], $7::text[], \
     $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::int8[], $14::bool[], \
     $15::bool[], $16::bool[], $17::bool[], $18::text[]) WITH ORDINALITY AS u(rel_dir, day, \
     json_mtime_ns, json_size, tenant, id, kind, source_platform, direction, start_text, end_text, \
     start_ms, duration_ms, confidential, cdr_only, imported, legal_hold, channel, n) \
     LEFT JOIN confidential_flags f ON f.tenant = u.tenant AND f.conversation_id = u.id";

impl<'a> ConversationColumns<'a> {
    fn push(&mut self, rel_dir: &'a str, fp: Fingerprint, c: &'a Conversation) -> Fallible<()> {
        self.rel_dir.push(rel_dir);
        self.day
            .push(rel_dir.rsplit_once('/').map_or("", |(day, _)| day));
        self.mtime_ns.push(fp.mtime_ns);
        self.json_size.push(int(fp.size)?);
        self.tenant.push(&c.tenant);
        self.id.push(&c.id);
        self.kind.push(c.kind.as_str());
        self.source_platform.push(&c.source_platform);
        self.direction.push(c.direction.as_str());
        self.start_text.push(c.start.to_rfc3339());
        self.end_text.push(c.end.to_rfc3339());
        self.start_ms.push(c.start.timestamp_millis());
        self.duration_ms.push(c.duration_ms());
        self.confidential.push(c.flags.confidential);
        self.cdr_only.push(c.flags.cdr_only);
        self.imported.push(c.flags.imported);
        self.legal_hold.push(c.flags.legal_hold);
        self.channel.push(c.channel.as_deref());
        Ok(())
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 18] {
        [
            &self.rel_dir,
            &self.day,
            &self.mtime_ns,
            &self.json_size,
            &self.tenant,
            &self.id,
            &self.kind,
            &self.source_platform,
            &self.direction,
            &self.start_text,
            &self.end_text,
            &self.start_ms,
            &self.duration_ms,
            &self.confidential,
            &self.cdr_only,
            &self.imported,
            &self.legal_hold,
            &self.channel,
        ]
    }
}

/// What becomes of one directory an index batch touches.
#[derive(Clone, Copy)]
enum Fate {
    Untouched,
    Removed,
    /// Written by change `i`; `fresh` when a removal came first (the row is recreated).
    Upserted {
        change: usize,
        fresh: bool,
    },
}

struct Dir<'a> {
    /// The row before the batch.
    pk: Option<i64>,
    /// The tenant and id the directory holds at this point of the batch.
    key: Option<(&'a str, &'a str)>,
    fate: Fate,
}

/// The net effect of an index batch applied change by change, as SQLite applies it: an
/// error per refused change, rows to delete, rows to update (pk, change) and changes to insert.
#[derive(Default)]
pub(super) struct IndexPlan {
    pub(super) outcomes: Vec<Option<String>>,
    pub(super) delete: Vec<i64>,
    pub(super) update: Vec<(i64, usize)>,
    pub(super) insert: Vec<usize>,
}

/// Plans `changes` over `existing` rows (pk, rel_dir, tenant, id): every row whose directory
/// the batch names, and every row holding a tenant and id it upserts.
pub(super) fn plan_index<'a>(
    changes: &'a [IndexChange],
    existing: &'a [(i64, String, String, String)],
) -> IndexPlan {
    let mut dirs: HashMap<&str, Dir<'_>> = HashMap::new();
    let mut owner: HashMap<(&str, &str), &str> = HashMap::new();
    for (pk, rel_dir, tenant, id) in existing {
        dirs.insert(
            rel_dir.as_str(),
            Dir {
                pk: Some(*pk),
                key: Some((tenant.as_str(), id.as_str())),
                fate: Fate::Untouched,
            },
        );
        owner.insert((tenant.as_str(), id.as_str()), rel_dir.as_str());
    }
    let mut plan = IndexPlan::default();
    for (i, change) in changes.iter().enumerate() {
        let outcome = match change {
            IndexChange::Remove { rel_dir } => {
                if let Some(dir) = dirs.get_mut(rel_dir.as_str()) {
                    if let Some(key) = dir.key.take() {
                        owner.remove(&key);
                    }
                    dir.fate = Fate::Removed;
                }
                None
            }
            IndexChange::Upsert {
                rel_dir,
                conversation,
                fingerprint,
            } => {
                let key = (conversation.tenant.as_str(), conversation.id.as_str());
                if let Some(reason) = unstorable(conversation, *fingerprint) {
                    plan.outcomes.push(Some(reason));
                    continue;
                }
                match owner.get(&key) {
                    Some(&other) if other != rel_dir.as_str() => {
                        Some(duplicate_id(conversation, Some(other)))
                    }
                    _ => {
                        let dir = dirs.entry(rel_dir.as_str()).or_insert(Dir {
                            pk: None,
                            key: None,
                            fate: Fate::Untouched,
                        });
                        if let Some(old) = dir.key.replace(key)
                            && old != key
                        {
                            owner.remove(&old);
                        }
                        owner.insert(key, rel_dir.as_str());
                        let fresh = match dir.fate {
                            Fate::Removed => true,
                            Fate::Upserted { fresh, .. } => fresh,
                            Fate::Untouched => false,
                        };
                        dir.fate = Fate::Upserted { change: i, fresh };
                        None
                    }
                }
            }
        };
        plan.outcomes.push(outcome);
    }
    for dir in dirs.values() {
        match (dir.pk, dir.fate) {
            (Some(pk), Fate::Removed) => plan.delete.push(pk),
            (
                Some(pk),
                Fate::Upserted {
                    change,
                    fresh: true,
                },
            ) => {
                plan.delete.push(pk);
                plan.insert.push(change);
            }
            (Some(pk), Fate::Upserted { change, .. }) => plan.update.push((pk, change)),
            (None, Fate::Upserted { change, .. }) => plan.insert.push(change),
            (_, Fate::Untouched) | (None, Fate::Removed) => {}
        }
    }
    plan.insert.sort_unstable();
    plan
}

/// Writes the participants and artifacts of conversations stored at the given pks.
fn insert_children(s: &mut Tx<'_, '_>, rows: &[(i64, &Conversation)]) -> Fallible<()> {
    let mut p_conv = Vec::new();
    let mut p_ord = Vec::new();
    let mut p_user = Vec::new();
    let mut p_ext = Vec::new();
    let mut p_role = Vec::new();
    let mut a_conv = Vec::new();
    let mut a_ord = Vec::new();
    let mut a_file = Vec::new();
    let mut a_kind = Vec::new();
    let mut a_audio = Vec::new();
    let mut a_ext = Vec::new();
    let mut a_size = Vec::new();
    let mut a_sha = Vec::new();
    let mut a_key = Vec::new();
    for (pk, c) in rows {
        for (i, p) in c.participants.iter().enumerate() {
            p_conv.push(*pk);
            p_ord.push(i as i64);
            p_user.push(p.user.as_deref());
            p_ext.push(p.extension.as_deref());
            p_role.push(p.role.as_str());
        }
        for (i, a) in c.artifacts.iter().enumerate() {
            a_conv.push(*pk);
            a_ord.push(i as i64);
            a_file.push(a.file.as_str());
            a_kind.push(a.kind.as_str());
            a_audio.push(a.audio_type.map(|t| t.as_str()));
            a_ext.push(a.extension());
            a_size.push(int(a.size)?);
            a_sha.push(a.sha256.as_str());
            a_key.push(a.encryption.as_ref().map(|e| e.key_id.as_str()));
        }
    }
    if !p_conv.is_empty() {
        s.execute(
            "INSERT INTO participants (conversation, ordinal, user_name, extension, role, start_ms) \
             SELECT u.*, c.start_ms FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[]) \
             AS u (conversation, ordinal, user_name, extension, role) JOIN conversations c ON c.pk = u.conversation",
            &[&p_conv, &p_ord, &p_user, &p_ext, &p_role],
        )?;
    }
    if !a_conv.is_empty() {
        s.execute(
            "INSERT INTO artifacts (conversation, ordinal, file, kind, audio_type, extension, size, sha256, key_id) \
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::int8[], $8::text[], $9::text[])",
            &[
                &a_conv, &a_ord, &a_file, &a_kind, &a_audio, &a_ext, &a_size, &a_sha, &a_key,
            ],
        )?;
    }
    Ok(())
}

pub(super) fn fingerprints_under(
    cat: &PostgresCatalog,
    rel_prefix: &str,
) -> Result<Vec<(String, Fingerprint)>> {
    let lo = format!("{rel_prefix}/");
    let hi = format!("{rel_prefix}0");
    cat.autocommit(|s| {
        cat.rows(
            s.query(sql::FINGERPRINTS_UNDER.postgres, &[&lo, &hi])?,
            |r| rows::dir_fingerprint(r),
        )
    })
}

pub(super) fn indexed_days(cat: &PostgresCatalog) -> Result<Vec<String>> {
    cat.autocommit(|s| cat.rows(s.query(sql::INDEXED_DAYS.postgres, &[])?, |r| r.text(0)))
}

pub(super) fn apply_index(
    cat: &PostgresCatalog,
    changes: &[IndexChange],
) -> Result<Vec<Option<String>>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut dirs = Vec::with_capacity(changes.len());
    let mut tenants = Vec::new();
    let mut ids = Vec::new();
    for change in changes {
        match change {
            IndexChange::Upsert {
                rel_dir,
                conversation,
                ..
            } => {
                dirs.push(rel_dir.as_str());
                tenants.push(conversation.tenant.as_str());
                ids.push(conversation.id.as_str());
            }
            IndexChange::Remove { rel_dir } => dirs.push(rel_dir.as_str()),
        }
    }
    cat.transaction(|s| {
        // One index batch at a time, so the rows read below stay as read until commit.
        s.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&cat.lock_key("index", "")],
        )?;
        let existing: Vec<(i64, String, String, String)> = s
            .query(
                "SELECT pk, rel_dir, tenant, id FROM conversations WHERE rel_dir = ANY($1) \
                 UNION SELECT c.pk, c.rel_dir, c.tenant, c.id FROM conversations c \
                 JOIN unnest($2::text[], $3::text[]) AS k(tenant, id) \
                 ON c.tenant = k.tenant AND c.id = k.id",
                &[&dirs, &tenants, &ids],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Fallible<_>>()?;
        let plan = plan_index(changes, &existing);
        let upsert = |i: usize| match &changes[i] {
            IndexChange::Upsert {
                rel_dir,
                fingerprint,
                conversation,
            } => Some((rel_dir.as_str(), *fingerprint, conversation.as_ref())),
            IndexChange::Remove { .. } => None,
        };
        let stale: Vec<i64> = plan
            .delete
            .iter()
            .copied()
            .chain(plan.update.iter().map(|(pk, _)| *pk))
            .collect();
        if !stale.is_empty() {
            s.execute(
                "DELETE FROM participants WHERE conversation = ANY($1)",
                &[&stale],
            )?;
            s.execute(
                "DELETE FROM artifacts WHERE conversation = ANY($1)",
                &[&stale],
            )?;
        }
        if !plan.delete.is_empty() {
            s.execute(
                "DELETE FROM conversations WHERE pk = ANY($1)",
                &[&plan.delete],
            )?;
        }
        let mut children: Vec<(i64, &Conversation)> = Vec::new();
        if !plan.update.is_empty() {
            let mut rows = ConversationColumns::default();
            for &(pk, i) in &plan.update {
                if let Some((rel_dir, fp, c)) = upsert(i) {
                    rows.push(rel_dir, fp, c)?;
                    children.push((pk, c));
                }
            }
            // A recorder that changed a record's legal_hold flag: its exported objects'
            // legal-hold status follows through the sync queue (docs/operations.md, "WORM
            // exports"), queued with the change.
            s.execute(
                &format!(
                    "INSERT INTO hold_syncs (tenant, conversation_id) SELECT c.tenant, c.id \
                     FROM conversations c JOIN ({CONVERSATION_ROWS}) AS u ON c.rel_dir = u.rel_dir \
                     WHERE c.legal_hold IS DISTINCT FROM u.legal_hold \
                     AND EXISTS (SELECT 1 FROM object_keys o \
                       WHERE o.tenant = c.tenant AND o.conversation_id = c.id) \
                     ON CONFLICT (tenant, conversation_id) \
                     DO UPDATE SET generation = hold_syncs.generation + 1"
                ),
                &rows.params(),
            )?;
            s.execute(
                &format!(
                    "UPDATE conversations c SET day = u.day, json_mtime_ns = u.json_mtime_ns, \
                     json_size = u.json_size, tenant = u.tenant, id = u.id, kind = u.kind, \
                     source_platform = u.source_platform, direction = u.direction, \
                     start_text = u.start_text, end_text = u.end_text, start_ms = u.start_ms, \
                     duration_ms = u.duration_ms, confidential = u.confidential, \
                     cdr_only = u.cdr_only, imported = u.imported, legal_hold = u.legal_hold, \
                     channel = u.channel FROM ({CONVERSATION_ROWS}) AS u \
                     WHERE c.rel_dir = u.rel_dir"
                ),
                &rows.params(),
            )?;
        }
        if !plan.insert.is_empty() {
            let mut rows = ConversationColumns::default();
            for &i in &plan.insert {
                if let Some((rel_dir, fp, c)) = upsert(i) {
                    rows.push(rel_dir, fp, c)?;
                }
            }
            let inserted = s.query(
                &format!(
                    "INSERT INTO conversations (rel_dir, day, json_mtime_ns, json_size, tenant, id, \
                     kind, source_platform, direction, start_text, end_text, start_ms, duration_ms, \
                     confidential, cdr_only, imported, legal_hold, channel) \
                     SELECT rel_dir, day, json_mtime_ns, json_size, tenant, id, kind, source_platform, \
                     direction, start_text, end_text, start_ms, duration_ms, confidential, cdr_only, \
                     imported, legal_hold, channel FROM ({CONVERSATION_ROWS}) AS u ORDER BY u.n \
                     RETURNING pk, rel_dir"
                ),
                &rows.params(),
            )?;
            let at: HashMap<&str, usize> = plan
                .insert
                .iter()
                .filter_map(|&i| upsert(i).map(|(rel_dir, _, _)| (rel_dir, i)))
                .collect();
            for r in &inserted {
                let rel_dir: &str = r.try_get(1)?;
                if let Some((_, _, c)) = at.get(rel_dir).and_then(|&i| upsert(i)) {
                    children.push((r.try_get(0)?, c));
                }
            }
        }
        insert_children(s, &children)?;
        Ok(plan.outcomes)
    })
}

pub(super) fn conversation_count(cat: &PostgresCatalog) -> Result<u64> {
    cat.autocommit(|s| {
        let n: i64 = s
            .query_one(sql::CONVERSATION_COUNT.postgres, &[])?
            .try_get(0)?;
        cat.unsigned("count", n)
    })
}
