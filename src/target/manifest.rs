//! The run manifest: every object a run wrote, with its size and SHA-256, written to the
//! target last. JSON Lines, so it is written and verified streaming whatever its length: a
//! header line, one line per object, and a trailer whose totals prove the file is complete.
//!
//! The header also anchors the audit chain outside the catalog: the sequence number and hash
//! of its head when the run ended. The chain only grows, so every anchor must still match the
//! catalog; `audit verify` checks the newest one of each policy, which a small pointer object
//! per policy (`latest.json`, rewritten after each manifest) finds without listing the target.

use std::io::{self, BufRead, BufReader, Read, Write};

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Headway, Keep, ObjectKey, Target, TargetError, WriteContext};
use crate::audit::{Anchor, AuditHead};
use crate::catalog::{Catalog, CatalogError, ObjectRecord, RunId};
use crate::progress::Progress;

/// Reserved key prefix for custodian's own objects at a target.
pub const RESERVED_PREFIX: &str = "_custodian/";

/// Manifest format version.
pub const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub manifest: u32,
    pub policy: String,
    pub run: i64,
    pub target: String,
    pub created_at: DateTime<Utc>,
    /// The audit chain's head at the run's end; absent in manifests written before anchoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditHead>,
}

/// What `latest.json` of a policy says: its newest manifest and that manifest's anchor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latest {
    pub run: i64,
    pub manifest: String,
    pub audit: AuditHead,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Object(ObjectRecord),
    Trailer { end: Trailer },
}

/// Where a run's manifest is stored.
pub fn key_for(policy: &str, run: RunId) -> ObjectKey {
    ObjectKey::new(format!(
        "{RESERVED_PREFIX}manifests/{policy}/run-{run}.jsonl"
    ))
    .expect("policy names are safe key components")
}

/// Where the pointer to a policy's newest manifest is stored.
pub fn latest_key(policy: &str) -> ObjectKey {
    ObjectKey::new(format!("{RESERVED_PREFIX}manifests/{policy}/latest.json"))
        .expect("policy names are safe key components")
}

/// Why a manifest could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Writes the manifest of `run` from the objects recorded in the catalog; its bytes count in
/// the run's `headway`.
pub fn write(
    target: &dyn Target,
    catalog: &dyn Catalog,
    policy: &str,
    run: RunId,
    headway: &Headway,
) -> Result<ObjectKey, ManifestError> {
    let cx = WriteContext {
        run: Some(run),
        headway: headway.clone(),
        ..WriteContext::default()
    };
    let key = key_for(policy, run);
    let io_err = |source| TargetError::Io {
        target: target.name().to_owned(),
        key: key.to_string(),
        cause: source,
    };
    // Every event of the run is committed by now, so the head read here covers them all.
    let head = catalog.audit_head()?;
    let mut w = io::BufWriter::new(super::HashingWriter::new(
        target.create(&key, None, &cx)?,
        headway.clone(),
    ));
    let header = Header {
        manifest: FORMAT,
        policy: policy.to_owned(),
        run: run.0,
        target: target.name().to_owned(),
        created_at: Utc::now(),
        audit: Some(head.clone()),
    };
    json_line(&mut w, &header).map_err(io_err)?;
    let mut totals = Trailer {
        objects: 0,
        bytes: 0,
    };
    catalog
        .run_objects(run, &mut |obj| {
            totals.objects += 1;
            totals.bytes += obj.size;
            json_line(&mut w, &obj)
        })?
        .map_err(io_err)?;
    json_line(&mut w, &serde_json::json!({ "end": totals })).map_err(io_err)?;
    let hashing = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    let (inner, _, sha256) = hashing.finish();
    inner.commit(&sha256)?;
    target.settle()?;
    // The pointer only finds the newest anchor quickly; the anchor itself is in the manifest
    // just committed. A target that takes the manifest but not the pointer (full right then)
    // leaves the previous pointer, an older anchor that still holds, until the next run.
    if let Err(e) = write_latest(target, policy, run, &key, head, &cx) {
        tracing::warn!("{e}; `audit verify` checks an older anchor of {policy} until its next run");
    }
    Ok(key)
}

/// Points `latest.json` of `policy` at the manifest of `run`, stored at `key`.
fn write_latest(
    target: &dyn Target,
    policy: &str,
    run: RunId,
    key: &ObjectKey,
    head: AuditHead,
    cx: &WriteContext,
) -> Result<(), TargetError> {
    let latest = Latest {
        run: run.0,
        manifest: key.to_string(),
        audit: head,
    };
    let body = serde_json::to_vec(&latest).expect("a pointer serializes");
    let sha256 = hex::encode(Sha256::digest(&body));
    let pointer = latest_key(policy);
    let cx = WriteContext {
        keep: Keep {
            pointer: true,
            ..cx.keep
        },
        ..cx.clone()
    };
    let mut w = target.create(&pointer, Some(&sha256), &cx)?;
    w.write_all(&body).map_err(|cause| TargetError::Io {
        target: target.name().to_owned(),
        key: pointer.to_string(),
        cause,
    })?;
    w.commit(&sha256)?;
    target.settle()
}

/// Why an anchor could not be read from a target.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{key} at target {target}: {reason}")]
    Malformed {
        target: String,
        key: String,
        reason: String,
    },
}

/// Most bytes read of a pointer object or of a manifest's first line: either is far smaller,
/// and a hostile target must not make custodian read without end.
const ANCHOR_READ_LIMIT: u64 = 64 * 1024;

/// The newest anchor of `policy` at `target`: its `latest.json`, then the header of the
/// manifest it names (only the first line is read), which must agree. None when the policy
/// has written no anchored manifest there.
pub fn newest_anchor(target: &dyn Target, policy: &str) -> Result<Option<Anchor>, AnchorError> {
    let pointer = latest_key(policy);
    let malformed = |key: &ObjectKey, reason: String| AnchorError::Malformed {
        target: target.name().to_owned(),
        key: key.to_string(),
        reason,
    };
    let read_err = |key: &ObjectKey, cause: io::Error| {
        AnchorError::Target(TargetError::Io {
            target: target.name().to_owned(),
            key: key.to_string(),
            cause,
        })
    };
    let reader = match target.open(&pointer) {
        Ok(r) => r,
        Err(TargetError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut body = Vec::new();
    reader
        .take(ANCHOR_READ_LIMIT)
        .read_to_end(&mut body)
        .map_err(|e| read_err(&pointer, e))?;
    let latest: Latest =
        serde_json::from_slice(&body).map_err(|e| malformed(&pointer, e.to_string()))?;
    let manifest = ObjectKey::new(latest.manifest.clone()).map_err(|e| malformed(&pointer, e))?;
    if manifest != key_for(policy, RunId(latest.run)) {
        return Err(malformed(
            &pointer,
            format!("names {manifest}, not the manifest of run {}", latest.run),
        ));
    }
    let mut line = String::new();
    BufReader::new(target.open(&manifest)?.take(ANCHOR_READ_LIMIT))
        .read_line(&mut line)
        .map_err(|e| read_err(&manifest, e))?;
    let header: Header =
        serde_json::from_str(&line).map_err(|e| malformed(&manifest, format!("line 1: {e}")))?;
    let Some(head) = header.audit else {
        return Err(malformed(
            &manifest,
            "its header has no audit anchor".into(),
        ));
    };
    if head != latest.audit || header.run != latest.run {
        return Err(malformed(
            &pointer,
            format!(
                "says run {} anchored {:?}, the manifest's header says run {} anchored {head:?}",
                latest.run, latest.audit, header.run
            ),
        ));
    }
    Ok(Some(Anchor {
        target: target.name().to_owned(),
        policy: policy.to_owned(),
        run: header.run,
        manifest: manifest.to_string(),
        head,
    }))
}

fn json_line<T: Serialize>(w: &mut impl Write, v: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *w, v).map_err(io::Error::other)?;
    w.write_all(b"\n")
}

/// One object that did not verify.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub key: String,
    pub problem: String,
}

/// Result of verifying a manifest against its target.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub objects: u64,
    pub bytes: u64,
    pub mismatches: Vec<Mismatch>,
}

/// Why verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("manifest {key}: line {line}: {reason}")]
    Malformed {
        key: String,
        line: u64,
        reason: String,
    },
}

fn hash_object(target: &dyn Target, obj: &ObjectRecord) -> Option<String> {
    let key = match ObjectKey::new(obj.key.clone()) {
        Ok(k) => k,
        Err(e) => return Some(e),
    };
    let mut reader = match target.open(&key) {
        Ok(r) => r,
        Err(e) => return Some(e.to_string()),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; super::COPY_BUFFER];
    let mut size = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(format!("read failed: {e}")),
        }
    }
    let sha = hex::encode(hasher.finalize());
    if size != obj.size {
        Some(format!("size is {size}, manifest says {}", obj.size))
    } else if sha != obj.sha256 {
        Some(format!("sha256 is {sha}, manifest says {}", obj.sha256))
    } else {
        None
    }
}

/// What is wrong with the Object Lock retention of an object read back whole, when its target
/// writes under Object Lock.
fn retention_problem(target: &dyn Target, obj: &ObjectRecord) -> Option<String> {
    let key = ObjectKey::new(obj.key.clone()).ok()?;
    match target.retention_problem(&key) {
        Ok(problem) => problem,
        Err(e) => Some(format!("cannot read its retention: {e}")),
    }
}

/// Reads every object listed in the manifest at `key` back from the target and compares
/// its size and SHA-256, and, on a target under Object Lock, reads its retention back.
pub fn verify(
    target: &dyn Target,
    key: &ObjectKey,
    progress: &dyn Progress,
) -> Result<VerifyReport, VerifyError> {
    let malformed = |line: u64, reason: String| VerifyError::Malformed {
        key: key.to_string(),
        line,
        reason,
    };
    let mut lines = BufReader::new(target.open(key)?).lines();
    let mut line_no = 1u64;
    let mut next_line = |lines: &mut io::Lines<_>| -> Result<Option<String>, VerifyError> {
        let l = lines
            .next()
            .transpose()
            .map_err(|e: io::Error| malformed(line_no, e.to_string()));
        line_no += 1;
        l
    };
    let header = next_line(&mut lines)?.ok_or_else(|| malformed(1, "empty".into()))?;
    let header: Header = serde_json::from_str(&header).map_err(|e| malformed(1, e.to_string()))?;
    if header.manifest != FORMAT {
        return Err(malformed(
            1,
            format!("unsupported manifest format {}", header.manifest),
        ));
    }
    let mut report = VerifyReport::default();
    let mut batch: Vec<ObjectRecord> = Vec::with_capacity(256);
    let check = |batch: &mut Vec<ObjectRecord>, report: &mut VerifyReport| {
        let bad: Vec<Mismatch> = batch
            .par_iter()
            .filter_map(|obj| {
                let problem = hash_object(target, obj).or_else(|| retention_problem(target, obj));
                progress.advance(1);
                problem.map(|problem| Mismatch {
                    key: obj.key.clone(),
                    problem,
                })
            })
            .collect();
        report.mismatches.extend(bad);
        batch.clear();
    };
    let mut trailer = None;
    let mut n = 1u64;
    while let Some(text) = next_line(&mut lines)? {
        n += 1;
        if trailer.is_some() {
            return Err(malformed(n, "content after the trailer".into()));
        }
        match serde_json::from_str::<Line>(&text).map_err(|e| malformed(n, e.to_string()))? {
            Line::Object(obj) => {
                report.objects += 1;
                // Sizes come from the file: a sum past u64 is a forged manifest, and a wrapped
                // total could be made to match a forged trailer.
                report.bytes = report.bytes.checked_add(obj.size).ok_or_else(|| {
                    malformed(n, "the object sizes add up to more than 2^64 bytes".into())
                })?;
                batch.push(obj);
                if batch.len() == batch.capacity() {
                    check(&mut batch, &mut report);
                }
            }
            Line::Trailer { end } => trailer = Some(end),
        }
    }
    check(&mut batch, &mut report);
    let trailer =
        trailer.ok_or_else(|| malformed(n, "no trailer: the manifest is truncated".into()))?;
    if trailer.objects != report.objects || trailer.bytes != report.bytes {
        return Err(malformed(
            n,
            format!(
                "trailer says {} objects / {} bytes, lines list {} / {}",
                trailer.objects, trailer.bytes, report.objects, report.bytes
            ),
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use crate::target::Durability;
    use crate::target::fs::FsTarget;
    use crate::target::put_bytes;

    /// Object sizes come from the manifest file: sizes whose sum passes u64 are a malformed
    /// manifest (a wrapped total could match a forged trailer), not an overflow.
    #[test]
    fn object_sizes_that_overflow_their_total_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let target = FsTarget::new("archive", dir.path(), Durability::Durable);
        let half = u64::MAX / 2 + 1;
        let object = |name: &str| {
            format!(
                r#"{{"key":"{name}","size":{half},"sha256":"{}"}}"#,
                "0".repeat(64)
            )
        };
        let manifest = [
            r#"{"manifest":1,"policy":"p","run":1,"target":"archive","created_at":"2026-03-01T02:30:00Z"}"#.to_owned(),
            object("a.wav"),
            object("b.wav"),
            r#"{"end":{"objects":2,"bytes":0}}"#.to_owned(),
        ]
        .join("\n");
        let key = key_for("p", RunId(1));
        put_bytes(&target, &key, manifest.as_bytes(), &WriteContext::default()).unwrap();
        target.settle().unwrap();
        let err = verify(&target, &key, &Silent).unwrap_err();
        assert!(
            matches!(&err, VerifyError::Malformed { line: 3, reason, .. }
                if reason.contains("add up to more than 2^64 bytes")),
            "{err}"
        );
    }
}
