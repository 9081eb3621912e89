//! The export action: copies of the selected conversations' artifacts (and a metadata file
//! per conversation) written to a target, in full or incremental mode, with a manifest and
//! one audit event per conversation. Originals are only read, never modified.

use std::collections::HashSet;
use std::io::{self, Read, Seek};
use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;

use super::index::IndexReport;
use crate::audit::{AuditKind, NewEvent};
use crate::catalog::{
    Catalog, CatalogError, Claimed, Counters, Exclude, ExportedArtifact, FailedItem, ItemOutcome,
    KeyClaim, Mode, ObjectRecord, RunId, RunStatus, Selected,
};
use crate::confined::{ConfinedError, Dir, is_plain_name};
use crate::filter::{Criteria, Filter, normalize_extension};
use crate::media::audio::{self, VoiceFormat, VoiceSpec};
use crate::media::keystore::Keystore;
use crate::media::scratch::Scratch;
use crate::media::stitch::{self, ChannelFolder, ChannelSegment};
use crate::pipeline::{self, Control, Stop};
use crate::policy::produce::{
    ItemError, MediaTools, Original, Place, Shared, Sink, Transform, Verified, Written,
    open_decrypted, run_ffmpeg, transform_for,
};
use crate::policy::template::{DEFAULT_FILENAME_FORMAT, FileName, Template};
use crate::progress::Progress;
use crate::repository::record::{
    Artifact, ArtifactType, Conversation, ConversationType, RECORD_FILE,
};
use crate::schedule::JobSettings;
use crate::schedule::runlog::RunLog;
use crate::settings::Invalid;
use crate::source::Repository;
#[cfg(feature = "remote")]
use crate::source::Store;
use crate::target::manifest::{self, ManifestError, RESERVED_PREFIX};
use crate::target::{Expected, Keep, ObjectKey, Target, TargetError, WriteContext};

use super::PolicySettings;

/// Conversations fetched from the catalog per page.
const PAGE: usize = 512;

/// Conversations whose object keys are claimed in one commit. No more than 64: a batch a
/// PostgreSQL catalog claims a conversation at a time (one refused) takes a subtransaction
/// each, and PostgreSQL caches 64 per session before every snapshot slows.
const CLAIM_BATCH: usize = 64;

/// An export policy's settings.
#[derive(Clone, Debug)]
pub struct ExportPolicy {
    pub name: String,
    pub enabled: bool,
    pub target: String,
    pub mode: Mode,
    pub job: JobSettings,
    pub filename: Template,
    pub metadata_file: bool,
    /// Only files with these extensions are exported (lower case, no dot); `None` = all.
    pub file_extensions: Option<Vec<String>>,
    pub concurrency: usize,
    /// Export encrypted artifacts decrypted (the originals stay encrypted).
    pub decrypt: bool,
    /// Produce a media file for CDR-only trader-voice records by stitching channel segments;
    /// when false only their metadata file is exported.
    pub stitch_cdr_only: bool,
    /// Export the attachment files of IM conversations.
    pub im_attachments: bool,
    /// One zip per conversation (media + metadata) instead of loose files.
    pub zip: bool,
    /// Container (file extension) video and screen recordings are transcoded to by ffmpeg.
    pub video_format: Option<String>,
    /// Voice recordings (and stitched CDR-only calls) are transcoded to this.
    pub voice: Option<VoiceSpec>,
    pub criteria: Criteria,
}

/// Default workers of an export to a remote target.
const REMOTE_CONCURRENCY: usize = 16;

/// Sample rates LAME encodes.
const MP3_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

impl ExportPolicy {
    /// The export-only keys of policy `name` (`remote_target`: whether its target is an
    /// object store), with its checked `job` settings.
    pub(super) fn from_settings(
        name: &str,
        p: &PolicySettings,
        job: JobSettings,
        remote_target: bool,
    ) -> Result<ExportPolicy, Invalid> {
        if p.flag.is_some() {
            return Err(Invalid::at(
                "flag",
                "`flag` belongs to confidential policies (action = \"confidential\")",
            ));
        }
        let target = p
            .target
            .clone()
            .ok_or_else(|| Invalid::at("action", "an export policy needs `target`"))?;
        let filename = Template::parse(
            p.filename_format
                .as_deref()
                .unwrap_or(DEFAULT_FILENAME_FORMAT),
        )
        .and_then(|t| t.check_distinct(p.filter.tenants.len() == 1).map(|()| t))
        .map_err(|m| Invalid::at("filename_format", m))?;
        let file_extensions = match &p.file_extensions {
            Some(list)
                if list.is_empty() || list.iter().any(|e| normalize_extension(e).is_empty()) =>
            {
                return Err(Invalid::at(
                    "file_extensions",
                    "list extensions such as [\"wav\", \"vtr\"]; leave the key out to export every file",
                ));
            }
            Some(list) => Some(list.iter().map(|e| normalize_extension(e)).collect()),
            None => None,
        };
        let concurrency = match p.concurrency {
            Some(0) => return Err(Invalid::at("concurrency", "must be at least 1")),
            Some(n) => n,
            // Uploads to a remote store mostly wait on the network, so more workers than
            // cores keep it busy.
            None if remote_target => REMOTE_CONCURRENCY,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let video_format = match &p.video_format {
            Some(f) if f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric()) => {
                return Err(Invalid::at(
                    "video_format",
                    "name the container as a file extension, such as \"mp4\" or \"webm\"",
                ));
            }
            f => f.clone(),
        };
        Ok(ExportPolicy {
            name: name.to_owned(),
            enabled: p.enabled,
            target,
            mode: p.mode.unwrap_or(Mode::Incremental),
            filename,
            metadata_file: p.metadata_file.unwrap_or(true),
            file_extensions,
            concurrency,
            decrypt: p.decrypt.unwrap_or(false),
            stitch_cdr_only: p.stitch_cdr_only.unwrap_or(false),
            im_attachments: p.im_attachments.unwrap_or(false),
            zip: p.zip.unwrap_or(false),
            video_format,
            voice: voice_spec(p)?,
            criteria: p.filter.clone(),
            job,
        })
    }
}

/// The voice output of a policy.
fn voice_spec(p: &PolicySettings) -> Result<Option<VoiceSpec>, Invalid> {
    let Some(format) = p.voice_format else {
        return match (p.voice_rate, p.voice_channels) {
            (None, None) => Ok(None),
            (Some(_), _) => Err(Invalid::at("voice_rate", "set `voice_format` too")),
            (None, Some(_)) => Err(Invalid::at("voice_channels", "set `voice_format` too")),
        };
    };
    match p.voice_rate {
        Some(r) if !(1000..=384_000).contains(&r) => {
            return Err(Invalid::at(
                "voice_rate",
                format!("{r} Hz is outside 1000..=384000"),
            ));
        }
        Some(r) if format == VoiceFormat::Mp3 && !MP3_RATES.contains(&r) => {
            return Err(Invalid::at(
                "voice_rate",
                format!("MP3 cannot be {r} Hz; use one of {MP3_RATES:?}"),
            ));
        }
        _ => {}
    }
    if let Some(c) = p.voice_channels
        && !(1..=8).contains(&c)
    {
        return Err(Invalid::at(
            "voice_channels",
            format!("{c} channels is outside 1..=8"),
        ));
    }
    Ok(Some(VoiceSpec {
        format,
        rate: p.voice_rate,
        channels: p.voice_channels,
    }))
}

/// Why a run could not go on (item failures are not errors; they are counted).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// One object an export would write.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedObject {
    pub key: String,
    /// The artifact file, or None for the metadata file and a zip.
    pub file: Option<String>,
    /// The size of the original (0 for generated files).
    pub size: u64,
    /// How the object is made from the original.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
}

/// What an export does to one conversation.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedConversation {
    pub tenant: String,
    pub id: String,
    pub objects: Vec<PlannedObject>,
}

/// The fixed inputs of one export run.
pub struct Export<'a> {
    pub policy: &'a ExportPolicy,
    /// The repository: every artifact and channel segment is read through it. On disk, through
    /// its root's handle, never through a link and never above it; in a store, never more
    /// than one byte past the size its record lists.
    pub repo: Repository,
    /// The repository's bucket, when the target copies from it inside the store
    /// (`target::copies_from`): artifacts exported unchanged are copied there, not streamed.
    pub in_store: Option<String>,
    /// This process's private scratch directory for transcode, stitch and ffmpeg files.
    pub scratch: Scratch,
    pub target: &'a dyn Target,
    pub catalog: &'a dyn Catalog,
    pub filter: Filter,
    pub tools: MediaTools<'a>,
    /// Who the audit events name as the actor (the OS user running the export).
    pub actor: String,
}

/// One file an export of a conversation produces.
struct Output<'c> {
    /// The artifact it is made from; None for a call stitched from its channel.
    artifact: Option<&'c Artifact>,
    transform: Transform,
    name: String,
}

impl Output<'_> {
    fn source(&self) -> String {
        match (self.artifact, &self.transform) {
            (Some(a), _) => a.file.clone(),
            (None, Transform::Stitch { channel, .. }) => format!("channels/{channel}"),
            (None, _) => String::new(),
        }
    }

    fn size(&self) -> u64 {
        self.artifact.map_or(0, |a| a.size)
    }
}

/// The end state of a run, as printed and as `--json`.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub run: RunId,
    pub policy: String,
    pub mode: Mode,
    pub target: String,
    pub status: RunStatus,
    /// True when this invocation finished a run an earlier process left unfinished.
    pub resumed: bool,
    pub index: Option<IndexReport>,
    pub counters: Counters,
    pub manifest: String,
    pub failures: Vec<FailedItem>,
    /// How this run treats media (for example whether video is transcoded or copied).
    pub media: Vec<String>,
    pub seconds: f64,
}

/// Metadata file written beside each exported conversation: the conversation's record and
/// where its files went. Nothing in it belongs to one run (no run id, no export time), so a
/// full-mode rerun that exports the same record and files writes the same bytes, and the
/// earlier runs' `verify` still finds their objects unchanged.
#[derive(Serialize)]
struct MetadataFile<'a> {
    schema: u32,
    conversation: &'a Conversation,
    /// The matters whose legal holds cover the conversation when it was exported
    /// (docs/operations.md, "Legal holds"); left out when none does.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    legal_holds: &'a [String],
    export: ExportInfo<'a>,
}

#[derive(Serialize)]
struct ExportInfo<'a> {
    policy: &'a str,
    files: Vec<ExportedFile<'a>>,
}

#[derive(Serialize)]
struct ExportedFile<'a> {
    /// The exported file's name.
    file: &'a str,
    /// The original artifact it was made from (`channels/<id>` for a stitched call).
    source: String,
    /// Its object key, or its entry name inside the conversation's zip.
    key: &'a str,
    /// Size and SHA-256 of the exported file; unknown for a file an earlier run exported
    /// before the catalog kept them.
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
    #[serde(flatten)]
    transform: &'a Transform,
}

/// What an export did to one conversation.
struct Done {
    objects: Vec<ObjectRecord>,
    artifacts: Vec<ExportedArtifact>,
}

impl Export<'_> {
    /// The artifacts of `c` this policy exports.
    fn artifacts<'c>(&self, c: &'c Conversation) -> impl Iterator<Item = &'c Artifact> {
        c.artifacts.iter().filter(move |a| {
            (self.policy.im_attachments
                || c.kind != ConversationType::Im
                || a.kind != ArtifactType::Attachment)
                && self.filter.artifact_matches(a)
                && self
                    .policy
                    .file_extensions
                    .as_ref()
                    .is_none_or(|list| list.contains(&a.extension()))
        })
    }

    fn key(
        &self,
        c: &Conversation,
        file: &str,
        artifact: Option<&Artifact>,
    ) -> Result<ObjectKey, String> {
        let key = self.policy.filename.render(
            c,
            &FileName {
                file,
                artifact_type: artifact.map(|a| a.kind),
            },
            self.policy.job.timezone,
        );
        if key.starts_with(RESERVED_PREFIX) {
            return Err(format!(
                "filename format gives `{key}`, inside the reserved {RESERVED_PREFIX}"
            ));
        }
        ObjectKey::new(key)
    }

    /// The files an export of `c` produces, each named once.
    fn outputs<'c>(&self, c: &'c Conversation) -> Result<Vec<Output<'c>>, String> {
        let mut outputs: Vec<Output<'c>> = Vec::new();
        let mut add = |artifact: Option<&'c Artifact>, transform: Transform, source: &str| {
            let name = transform.output_name(source);
            if name == RECORD_FILE || outputs.iter().any(|o| o.name == name) {
                return Err(format!(
                    "two files of the conversation would both be exported as `{name}`; rename one or change the policy's formats"
                ));
            }
            outputs.push(Output {
                artifact,
                transform,
                name,
            });
            Ok(())
        };
        for a in self.artifacts(c) {
            let transform = transform_for(
                a,
                self.policy.decrypt,
                self.policy.voice,
                self.policy.video_format.as_deref(),
                self.tools,
            );
            add(Some(a), transform, &a.file)?;
        }
        if c.flags.cdr_only
            && self.policy.stitch_cdr_only
            && let Some(channel) = &c.channel
        {
            let voice = self.policy.voice.unwrap_or(VoiceSpec {
                format: VoiceFormat::WavPcm16,
                rate: None,
                channels: None,
            });
            let transform = Transform::Stitch {
                channel: channel.clone(),
                voice,
            };
            add(None, transform, &c.id)?;
        }
        Ok(outputs)
    }

    /// What an earlier run of this policy exported of `o`'s artifact, when that is still
    /// current (same file, same SHA-256): then `o` needs no writing. Never for a zip, which
    /// is written whole, nor for a stitched call.
    fn earlier<'s>(&self, s: &'s Selected, o: &Output<'_>) -> Option<&'s ExportedArtifact> {
        let a = o.artifact.filter(|_| !self.policy.zip)?;
        s.exported
            .iter()
            .find(|e| e.file == a.file && e.sha256 == a.sha256)
    }

    /// The keys the export of `s` is about to write, as claims: the outputs not exported
    /// before unchanged, and the metadata file (or the zip).
    fn claims(&self, s: &Selected) -> Result<Vec<KeyClaim>, String> {
        let c = &s.conversation;
        let claim = |key: ObjectKey, file: &str| KeyClaim {
            key: key.to_string(),
            tenant: c.tenant.clone(),
            conversation_id: c.id.clone(),
            file: file.to_owned(),
        };
        let mut claims = Vec::new();
        if self.policy.zip {
            let file = format!("{}.zip", c.id);
            claims.push(claim(self.key(c, &file, None)?, &file));
        } else {
            for o in self.outputs(c)? {
                if self.earlier(s, &o).is_none() {
                    claims.push(claim(self.key(c, &o.name, o.artifact)?, &o.name));
                }
            }
            if self.policy.metadata_file {
                claims.push(claim(self.key(c, RECORD_FILE, None)?, RECORD_FILE));
            }
        }
        Ok(claims)
    }

    /// Claims in the catalog every key the exports of `batch` are about to write, in one
    /// commit made before any is written (docs/configuration.md, "Filename format"). Each answer
    /// is the conversation's keys claimed for the first time, or its failure: a key held by
    /// another conversation's file (named), a key that cannot be rendered, or the catalog's
    /// error (a batch the catalog fails is claimed again a conversation at a time, so that
    /// an error is its own, until two fail in a row or `control` is stopped).
    pub fn claim(
        &self,
        run: RunId,
        batch: &[Selected],
        control: &Control,
    ) -> Vec<Result<HashSet<String>, ItemError>> {
        // Each conversation's claims, or why its keys cannot be rendered (it claims nothing).
        let mut claims: Vec<Vec<KeyClaim>> = Vec::with_capacity(batch.len());
        let rendered: Vec<Result<usize, String>> = batch
            .iter()
            .map(|s| {
                self.claims(s).map(|mine| {
                    claims.push(mine);
                    claims.len() - 1
                })
            })
            .collect();
        let target = self.target.name();
        let failed = |e: CatalogError| format!("claiming object keys at target `{target}`: {e}");
        let ask = |claims: &[Vec<KeyClaim>]| -> Result<Vec<Claimed>, CatalogError> {
            // `claim-keys=return(ID)`: a claim of the conversation ID fails, as would one the
            // catalog cannot store.
            #[cfg(feature = "failpoints")]
            fail::fail_point!("claim-keys", |id: Option<String>| {
                if claims
                    .iter()
                    .flatten()
                    .any(|c| Some(&c.conversation_id) == id.as_ref())
                {
                    Err(CatalogError::Refused("failpoint claim-keys".into()))
                } else {
                    self.catalog.claim_keys(target, run, claims)
                }
            });
            self.catalog.claim_keys(target, run, claims)
        };
        let answers: Vec<Result<Claimed, String>> = match ask(&claims) {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            Err(e) if claims.len() == 1 => vec![Err(failed(e))],
            Err(e) => {
                tracing::debug!("a batch of key claims failed; each is claimed alone: {e}");
                // Two failing in a row is the catalog, not a conversation (out of reach,
                // say): the rest of the batch gets that error without asking again, and
                // so does all of it once the run is stopped.
                let mut failures = 0;
                let mut last = failed(e);
                claims
                    .iter()
                    .map(|one| {
                        if failures >= 2 || control.is_stopped() {
                            return Err(last.clone());
                        }
                        let answer = ask(std::slice::from_ref(one))
                            .map_err(failed)
                            .map(|mut a| a.pop().unwrap_or_default());
                        match &answer {
                            Ok(_) => failures = 0,
                            Err(e) => {
                                failures += 1;
                                last = e.clone();
                            }
                        }
                        answer
                    })
                    .collect()
            }
        };
        let mut answers = answers.into_iter();
        batch
            .iter()
            .zip(rendered)
            .map(|(s, r)| {
                let mine = &claims[r?];
                let claimed = answers
                    .next()
                    .expect("an answer per claiming conversation")?;
                match claimed.held.first() {
                    None => Ok(claimed.fresh.into_iter().collect()),
                    Some(h) => Err(held(&s.conversation, mine, h, target).into()),
                }
            })
            .collect()
    }

    /// The key of the zip holding `c`.
    fn zip_key(&self, c: &Conversation) -> Result<ObjectKey, String> {
        self.key(c, &format!("{}.zip", c.id), None)
    }

    /// The objects an export of `c` writes, without touching any file.
    pub fn plan(&self, s: &Selected) -> Result<PlannedConversation, String> {
        let c = &s.conversation;
        let outputs = self.outputs(c)?;
        let objects = if self.policy.zip {
            vec![PlannedObject {
                key: self.zip_key(c)?.to_string(),
                file: None,
                size: outputs.iter().map(Output::size).sum(),
                transform: None,
            }]
        } else {
            let mut objects = Vec::new();
            for o in outputs {
                if self.earlier(s, &o).is_some() {
                    continue;
                }
                objects.push(PlannedObject {
                    key: self.key(c, &o.name, o.artifact)?.to_string(),
                    file: o.artifact.map(|a| a.file.clone()),
                    size: o.size(),
                    transform: Some(o.transform),
                });
            }
            if self.policy.metadata_file {
                objects.push(PlannedObject {
                    key: self.key(c, RECORD_FILE, None)?.to_string(),
                    file: None,
                    size: 0,
                    transform: None,
                });
            }
            objects
        };
        Ok(PlannedConversation {
            tenant: c.tenant.clone(),
            id: c.id.clone(),
            objects,
        })
    }

    /// Exports one conversation whose keys [`Export::claim`] claimed (`fresh`: those claimed
    /// for the first time, or why its claim failed); every failure becomes a failed item
    /// naming the file. A target out of space also stops the run (`control`): every further
    /// item would fail alike.
    pub fn export_one(
        &self,
        run: RunId,
        buffer: &mut Vec<u8>,
        (s, fresh): (Selected, Result<HashSet<String>, ItemError>),
        control: &Control,
    ) -> ItemOutcome {
        #[cfg(feature = "failpoints")]
        {
            fail::fail_point!("export-item");
            if fail::eval("export-panic", |policy| policy)
                .flatten()
                .is_some_and(|p| p == self.policy.name)
            {
                panic!("failpoint export-panic in policy {}", self.policy.name);
            }
        }
        let c = &s.conversation;
        let subject = format!("{}/{}", c.tenant, c.id);
        let cx = WriteContext {
            run: Some(run),
            headway: control.headway().clone(),
            keep: Keep {
                from: Some(c.end.to_utc()),
                legal_hold: c.flags.legal_hold || !s.holds.is_empty(),
                pointer: false,
            },
            fresh_keys: HashSet::new(),
        };
        match fresh.and_then(|fresh| {
            self.write_conversation(
                WriteContext {
                    fresh_keys: fresh,
                    ..cx
                },
                buffer,
                &s,
            )
        }) {
            Ok(Done { objects, artifacts }) => ItemOutcome::Exported {
                tenant: c.tenant.clone(),
                conversation_id: c.id.clone(),
                fingerprint: s.fingerprint,
                audit: NewEvent {
                    at: Utc::now(),
                    kind: AuditKind::ConversationExported,
                    actor: self.actor.clone(),
                    policy: Some(self.policy.name.clone()),
                    run: Some(run.0),
                    tenant: Some(c.tenant.clone()),
                    conversation_id: Some(c.id.clone()),
                    details: serde_json::json!({
                        "target": self.target.name(),
                        "objects": objects,
                        "artifacts": artifacts.iter().map(|a| &a.file).collect::<Vec<_>>(),
                        "earlier": !s.exported.is_empty(),
                    }),
                },
                artifacts,
                objects,
            },
            Err(e) => {
                if e.target_full && control.stop(Stop::TargetFull) {
                    tracing::error!("{}; stopping the run", e.message);
                }
                ItemOutcome::Failed {
                    subject,
                    error: e.message,
                }
            }
        }
    }

    fn place(&self, c: &Conversation, name: &str, a: Option<&Artifact>) -> Result<Place, String> {
        Ok(if self.policy.zip {
            Place::Entry(name.to_owned())
        } else {
            Place::Object(self.key(c, name, a)?)
        })
    }

    fn write_conversation(
        &self,
        cx: WriteContext,
        buffer: &mut Vec<u8>,
        s: &Selected,
    ) -> Result<Done, ItemError> {
        let c = &s.conversation;
        let outputs = self.outputs(c)?;
        let cx = &cx;
        let mut sink = if self.policy.zip {
            Sink::zip(self.target, cx, self.zip_key(c)?, c.start.timestamp())?
        } else {
            Sink::loose(self.target, cx)
        };
        let mut written = Vec::with_capacity(outputs.len());
        let mut artifacts = Vec::new();
        for o in &outputs {
            if let Some(e) = self.earlier(s, o) {
                written.push(match &e.output {
                    Some(out) => Written {
                        at: out.key.clone(),
                        size: out.size,
                        sha256: out.sha256.clone(),
                    },
                    None => Written {
                        at: self.key(c, &o.name, o.artifact)?.to_string(),
                        size: 0,
                        sha256: String::new(),
                    },
                });
                continue;
            }
            let place = self.place(c, &o.name, o.artifact)?;
            let w = match o.artifact {
                Some(a) => self.produce(&mut sink, place, &s.rel_dir, a, &o.transform, buffer)?,
                None => {
                    let Transform::Stitch { channel, voice } = &o.transform else {
                        unreachable!("only stitches are made without an artifact")
                    };
                    self.produce_stitch(&mut sink, place, c, channel, voice, buffer)?
                }
            };
            if let Some(a) = o.artifact {
                artifacts.push(ExportedArtifact {
                    file: a.file.clone(),
                    sha256: a.sha256.clone(),
                    output: Some(ObjectRecord {
                        key: w.at.clone(),
                        size: w.size,
                        sha256: w.sha256.clone(),
                    }),
                });
            }
            written.push(w);
        }
        if self.policy.metadata_file {
            let files = outputs
                .iter()
                .zip(&written)
                .map(|(o, w)| {
                    let known = !w.sha256.is_empty();
                    ExportedFile {
                        file: &o.name,
                        source: o.source(),
                        key: &w.at,
                        size: known.then_some(w.size),
                        sha256: known.then_some(w.sha256.as_str()),
                        transform: &o.transform,
                    }
                })
                .collect();
            let meta = MetadataFile {
                schema: 1,
                conversation: c,
                legal_holds: &s.holds,
                export: ExportInfo {
                    policy: &self.policy.name,
                    files,
                },
            };
            let bytes = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
            let place = self.place(c, RECORD_FILE, None)?;
            sink.put_bytes(place, &bytes, RECORD_FILE)?;
        }
        Ok(Done {
            objects: sink.finish()?,
            artifacts,
        })
    }

    /// Opens an artifact through the repository's handle: a link anywhere on its path (the
    /// file, its conversation or day directory), a name that is not plain, or anything but a
    /// regular file fails the item and nothing is read.
    fn open_artifact(
        repo: &Dir,
        rel_dir: &str,
        a: &Artifact,
    ) -> Result<(std::fs::File, String), String> {
        let rel = Path::new(rel_dir).join(&a.file);
        let what = format!("artifact {}", repo.display_path(&rel).display());
        if !is_plain_name(&a.file) {
            return Err(format!(
                "{what}: its name in {RECORD_FILE} is not a plain file name in the conversation directory; nothing was read"
            ));
        }
        match repo.open_file(&rel) {
            Ok(file) => Ok((file, what)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "{what} is listed in {RECORD_FILE} but missing from the repository"
            )),
            Err(e @ (ConfinedError::Symlink { .. } | ConfinedError::NotRegular { .. })) => {
                Err(format!("artifact {e}; nothing was read"))
            }
            Err(e) => Err(format!("artifact {e}")),
        }
    }

    /// Makes one output from its artifact into `sink`.
    fn produce(
        &self,
        sink: &mut Sink<'_>,
        place: Place,
        rel_dir: &str,
        a: &Artifact,
        transform: &Transform,
        buffer: &mut Vec<u8>,
    ) -> Result<Written, ItemError> {
        let expect = Expected {
            size: a.size,
            sha256: &a.sha256,
        };
        match &self.repo {
            Repository::Local(repo) => {
                let (file, what) = Self::open_artifact(repo, rel_dir, a)?;
                if let Transform::Copy = transform {
                    return sink.put_original(place, Original::File(&file), expect, &what, buffer);
                }
                self.transform(sink, place, a, transform, file, expect, &what, buffer)
            }
            #[cfg(feature = "remote")]
            Repository::Store(store) => {
                self.produce_stored(store, sink, place, rel_dir, a, transform, buffer)
            }
        }
    }

    /// Makes one output from an artifact of a repository in a store: copied inside the store
    /// when the target can, otherwise read (at most one byte past its recorded size).
    #[cfg(feature = "remote")]
    #[allow(clippy::too_many_arguments)]
    fn produce_stored(
        &self,
        store: &Store,
        sink: &mut Sink<'_>,
        place: Place,
        rel_dir: &str,
        a: &Artifact,
        transform: &Transform,
        buffer: &mut Vec<u8>,
    ) -> Result<Written, ItemError> {
        let path = format!("{rel_dir}/{}", a.file);
        let what = format!("artifact {}{path}", store.location());
        if !is_plain_name(&a.file) || !rel_dir.split('/').all(is_plain_name) {
            return Err(format!(
                "{what}: its name in {RECORD_FILE} is not a plain file name in the conversation directory; nothing was read"
            )
            .into());
        }
        let expect = Expected {
            size: a.size,
            sha256: &a.sha256,
        };
        if let (Transform::Copy, Some(bucket)) = (transform, &self.in_store)
            && let Some(copied) =
                sink.copy_in_store(&place, bucket, &store.key(&path), expect, &what)
        {
            return copied;
        }
        let expect = Expected {
            size: a.size,
            sha256: &a.sha256,
        };
        let source = store.open(&path, a.size).map_err(|e| match e {
            crate::source::SourceError::NotFound { .. } => {
                format!("{what} is listed in {RECORD_FILE} but missing from the repository")
            }
            e => format!("artifact {e}"),
        })?;
        if let Transform::Copy = transform {
            return sink.put_original(
                place,
                Original::Stream(&mut { source }),
                expect,
                &what,
                buffer,
            );
        }
        self.transform(sink, place, a, transform, source, expect, &what, buffer)
    }

    /// Makes one output from an original's bytes, other than by copying them unchanged.
    #[allow(clippy::too_many_arguments)]
    fn transform<R: Read + Send + 'static>(
        &self,
        sink: &mut Sink<'_>,
        place: Place,
        a: &Artifact,
        transform: &Transform,
        file: R,
        expect: Expected<'_>,
        what: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<Written, ItemError> {
        let what = what.to_owned();
        let scratch_err = |e: crate::media::scratch::ScratchError| e.to_string();
        match transform {
            Transform::Copy => sink.put_reader(
                place,
                &mut Verified::new(file, expect, &what),
                &what,
                buffer,
            ),
            Transform::Stitch { .. } => unreachable!("stitches have no artifact"),
            Transform::Transcode { voice, decrypt } => {
                let verified = Verified::new(file, expect, &what);
                let source: Box<dyn Read + Send> = if *decrypt {
                    Box::new(open_decrypted(verified, self.keystore()?, &what)?)
                } else {
                    Box::new(verified)
                };
                let shared = Shared::new(source);
                let mut scratch = self.scratch.file().map_err(scratch_err)?;
                audio::transcode(shared.clone(), Some(&a.extension()), voice, &mut scratch)
                    .map_err(|e| format!("{what}: {e}"))?;
                shared.drain().map_err(|e| format!("{what}: {e}"))?;
                scratch.rewind().map_err(|e| format!("scratch file: {e}"))?;
                sink.put_reader(place, &mut scratch, &what, buffer)
            }
            Transform::Decrypt { .. } => {
                let mut plain =
                    open_decrypted(Verified::new(file, expect, &what), self.keystore()?, &what)?;
                sink.put_reader(place, &mut plain, &what, buffer)
            }
            Transform::Ffmpeg { format, decrypt } => {
                let ffmpeg = self
                    .tools
                    .ffmpeg
                    .expect("ffmpeg transforms only when configured");
                let work = self.scratch.dir("ffmpeg-").map_err(scratch_err)?;
                // ffmpeg gets a private copy of exactly the bytes checked against the record
                // (decrypted when asked), never the repository path: a file swapped or
                // rewritten after the check is not what it reads. A copy, unlike an inherited
                // descriptor, stays seekable for containers indexed at their end (mp4 with its
                // moov last) and needs no descriptor passed into the child.
                let staged_path = work.path().join(format!("in.{}", a.extension()));
                let mut staged = private_file(&staged_path)?;
                let verified = Verified::new(file, expect, &what);
                let copied = if *decrypt {
                    io::copy(
                        &mut open_decrypted(verified, self.keystore()?, &what)?,
                        &mut staged,
                    )
                } else {
                    io::copy(&mut { verified }, &mut staged)
                };
                copied.map_err(|e| format!("{what}: {e}"))?;
                drop(staged);
                let out_path = work.path().join(format!("out.{format}"));
                private_file(&out_path)?;
                run_ffmpeg(ffmpeg, &staged_path, &out_path).map_err(|e| format!("{what}: {e}"))?;
                let produced = std::fs::File::open(&out_path)
                    .map_err(|e| format!("ffmpeg output {}: {e}", out_path.display()))?;
                sink.put_reader(place, &mut &produced, &what, buffer)
            }
        }
    }

    /// What this run does with media beyond copying, in words.
    pub fn media_notes(&self) -> Vec<String> {
        let p = self.policy;
        let mut notes = Vec::new();
        notes.push(match (&p.video_format, self.tools.ffmpeg) {
            (Some(format), Some(ffmpeg)) => format!(
                "video and screen recordings are transcoded to {format} by {}",
                ffmpeg.display()
            ),
            (Some(format), None) => format!(
                "video and screen recordings are copied unchanged, not transcoded to {format}: no ffmpeg is configured ([media] ffmpeg)"
            ),
            (None, _) => "video and screen recordings are copied unchanged".to_owned(),
        });
        notes.push(
            if p.decrypt {
                "encrypted artifacts are exported decrypted"
            } else {
                "encrypted artifacts are exported as they are stored (encrypted)"
            }
            .to_owned(),
        );
        if p.zip {
            notes.push("each conversation is packaged as one zip".to_owned());
        }
        notes
    }

    /// The folder of `c`'s channel, `<tenant>/channels/<channel>`. The record comes from the
    /// catalog and is not trusted: the tenant and channel must be plain names, so the folder
    /// is the record's own tenant's.
    fn channel_rel(c: &Conversation, channel: &str) -> Result<String, String> {
        if !is_plain_name(&c.tenant) || !is_plain_name(channel) {
            return Err(format!(
                "{}/{}: channel `{}` is not a plain channel name (a folder of {}/channels/); nothing was read",
                c.tenant,
                c.id,
                channel.escape_debug(),
                c.tenant.escape_debug()
            ));
        }
        Ok(format!("{}/channels/{channel}", c.tenant))
    }

    /// Stitches a CDR-only call from its channel into `sink`.
    fn produce_stitch(
        &self,
        sink: &mut Sink<'_>,
        place: Place,
        c: &Conversation,
        channel: &str,
        spec: &VoiceSpec,
        buffer: &mut Vec<u8>,
    ) -> Result<Written, ItemError> {
        let rel = Self::channel_rel(c, channel)?;
        let subject = format!("{}/{}", c.tenant, c.id);
        match &self.repo {
            Repository::Local(repo) => {
                let dir = repo
                    .open_dir(&rel)
                    .map_err(|e| format!("{subject}: channel {e}"))?;
                let open = |s: &ChannelSegment| -> Result<Box<dyn Read + Send + Sync>, String> {
                    let file = dir.open_file(&s.record.file).map_err(|e| e.to_string())?;
                    self.segment(file, s)
                };
                self.stitch_into(sink, place, c, channel, spec, &dir, &open, buffer)
            }
            #[cfg(feature = "remote")]
            Repository::Store(store) => {
                let dir = store.folder(&rel);
                let open = |s: &ChannelSegment| -> Result<Box<dyn Read + Send + Sync>, String> {
                    let file = store
                        .open(&format!("{rel}/{}", s.record.file), s.record.size)
                        .map_err(|e| e.to_string())?;
                    self.segment(file, s)
                };
                self.stitch_into(sink, place, c, channel, spec, &dir, &open, buffer)
            }
        }
    }

    /// A segment's audio, checked against its record and decrypted when it is encrypted.
    fn segment<R: Read + Send + Sync + 'static>(
        &self,
        file: R,
        s: &ChannelSegment,
    ) -> Result<Box<dyn Read + Send + Sync>, String> {
        let what = format!("segment {}", s.path.display());
        let expect = Expected {
            size: s.record.size,
            sha256: &s.record.sha256,
        };
        let verified = Verified::new(file, expect, &what);
        Ok(match s.record.encryption {
            Some(_) => Box::new(open_decrypted(verified, self.keystore()?, &what)?),
            None => Box::new(verified),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn stitch_into(
        &self,
        sink: &mut Sink<'_>,
        place: Place,
        c: &Conversation,
        channel: &str,
        spec: &VoiceSpec,
        dir: &dyn ChannelFolder,
        open: &stitch::OpenSegment<'_>,
        buffer: &mut Vec<u8>,
    ) -> Result<Written, ItemError> {
        let segments = stitch::load_channel(dir, channel).map_err(|e| e.to_string())?;
        let mut scratch = self.scratch.file().map_err(|e| e.to_string())?;
        let out = scratch
            .try_clone()
            .map_err(|e| format!("scratch file: {e}"))?;
        let report = stitch::stitch(channel, &segments, c.start, c.end, spec, open, out)
            .map_err(|e| format!("stitching {}/{}: {e}", c.tenant, c.id))?;
        tracing::debug!(conversation = %c.id, frames = report.frames, silence = report.silence_frames, "stitched");
        scratch.rewind().map_err(|e| format!("scratch file: {e}"))?;
        let what = format!("stitched audio of {}/{}", c.tenant, c.id);
        sink.put_reader(place, &mut scratch, &what, buffer)
    }

    fn keystore(&self) -> Result<&Keystore, String> {
        self.tools.keystore.ok_or_else(|| {
            "decrypting needs a keystore: set `keystore` in the [media] table".to_owned()
        })
    }

    /// Streams the selection in pages to `each`; stops early when it returns false.
    pub fn for_each_selected(
        &self,
        exclude: &Exclude,
        each: impl FnMut(Selected) -> bool,
    ) -> Result<(), CatalogError> {
        self.for_each_selected_from(exclude, i64::MIN, each)
    }

    /// [`Export::for_each_selected`] from the conversations after rowid `after`.
    pub fn for_each_selected_from(
        &self,
        exclude: &Exclude,
        mut after: i64,
        mut each: impl FnMut(Selected) -> bool,
    ) -> Result<(), CatalogError> {
        loop {
            let page = self
                .catalog
                .select_page(&self.filter, exclude, after, PAGE)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.rowid;
            for s in page {
                if !each(s) {
                    return Ok(());
                }
            }
        }
    }

    /// Exports the selected conversations with `lo < rowid <= hi` into `run`, recording each
    /// outcome; returns what this call exported and failed.
    pub fn export_selected(
        &self,
        run: RunId,
        exclude: &Exclude,
        lo: i64,
        hi: i64,
        progress: &dyn Progress,
        control: &Control,
    ) -> Result<Counters, RunError> {
        let policy = &self.policy.name;
        let mut done = Counters::default();
        pipeline::run(
            pipeline::Options::with_concurrency(self.policy.concurrency),
            control,
            |emitter| {
                // Keys are claimed a batch at a time as conversations are selected, each
                // batch in one commit, before the workers write anything of it.
                let emit = |batch: Vec<Selected>| {
                    if control.is_stopped() {
                        return false;
                    }
                    let claimed = self.claim(run, &batch, control);
                    batch
                        .into_iter()
                        .zip(claimed)
                        .all(|item| emitter.emit(item))
                };
                let mut batch = Vec::with_capacity(CLAIM_BATCH);
                let mut open = true;
                self.for_each_selected_from(exclude, lo, |s| {
                    if s.rowid > hi {
                        return false;
                    }
                    batch.push(s);
                    if batch.len() == CLAIM_BATCH {
                        open = emit(std::mem::take(&mut batch));
                    }
                    open
                })?;
                if open && !batch.is_empty() {
                    emit(batch);
                }
                Ok(())
            },
            Vec::new,
            |buffer, s| self.export_one(run, buffer, s, control),
            |batch| {
                let n = batch.len() as u64;
                for o in &batch {
                    match o {
                        ItemOutcome::Failed { subject, error } => {
                            done.failed += 1;
                            tracing::warn!("{subject}: {error}");
                        }
                        ItemOutcome::Exported {
                            tenant,
                            conversation_id,
                            objects,
                            ..
                        } => {
                            let bytes = objects.iter().map(|o| o.size).sum::<u64>();
                            done.exported += 1;
                            done.objects += objects.len() as u64;
                            done.bytes += bytes;
                            tracing::info!(
                                "exported {tenant}/{conversation_id}: {} object(s), {bytes} bytes",
                                objects.len()
                            );
                        }
                    }
                }
                // Write-ahead: the batch's objects are durable before the catalog says so.
                self.target.settle()?;
                self.catalog.record_outcomes(run, policy, &batch)?;
                progress.advance(n);
                Ok::<_, RunError>(())
            },
        )?;
        Ok(done)
    }

    /// Aborts the target's multipart uploads that killed processes left open: those of runs
    /// no longer running, and those of `run`, which the caller holds alone.
    pub fn abort_abandoned_uploads(&self, run: Option<RunId>) -> Result<usize, RunError> {
        let aborted = self.target.recover(run)?;
        if aborted > 0 {
            tracing::warn!(
                target = self.target.name(),
                "aborted {aborted} unfinished upload(s) left by an interrupted run; their items are redone"
            );
        }
        Ok(aborted)
    }

    /// Ends `run`: writes its manifest, then records its outcome (from `control` and the
    /// recorded items) with `selected` and `index_errors` in its counters.
    pub fn finish(
        &self,
        run: RunId,
        selected: u64,
        index_errors: u64,
        control: &Control,
    ) -> Result<(RunStatus, Counters, ObjectKey, Vec<FailedItem>), RunError> {
        let policy = &self.policy.name;
        let key = manifest::write(self.target, self.catalog, policy, run, control.headway())?;
        let mut counters = self.catalog.run_counters(run)?;
        counters.selected = selected;
        counters.index_errors = index_errors;
        let stopped = control.stopped();
        let status = super::outcome(stopped, counters.failed);
        let failures = self.catalog.failed_items(run, 50)?;
        let summary = [
            stopped.map(|why| {
                format!(
                    "{}; {} of {selected} conversation(s) done, the next run goes on from there",
                    why.describe(self.policy.job.time_limit, self.policy.job.keep_alive),
                    counters.exported + counters.failed
                )
            }),
            failures.first().map(|f| {
                format!(
                    "{} failed; first: {}: {}",
                    counters.failed, f.subject, f.error
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        let summary = (!summary.is_empty()).then(|| summary.join("; "));
        tracing::info!(
            status = status.as_str(),
            exported = counters.exported,
            failed = counters.failed,
            objects = counters.objects,
            bytes = counters.bytes,
            manifest = %key,
            "export run finished"
        );
        self.catalog.finish_run(
            run,
            status,
            &counters,
            Some(key.as_str()),
            summary.as_deref(),
        )?;
        Ok((status, counters, key, failures))
    }

    /// Runs the export: resumes the policy's interrupted run if there is one, otherwise starts
    /// a new one. `index` is the index pass made just before, whose failures count as failed
    /// items of this run. The caller holds the policy lock.
    pub fn run(
        &self,
        index: Option<IndexReport>,
        progress: &dyn Progress,
        control: &Control,
        log: &RunLog,
    ) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let policy = &self.policy.name;
        let (run, resumed) = super::start_run(
            self.catalog,
            policy,
            self.policy.mode,
            self.target.name(),
            &self.policy.job,
            control,
            log,
        )?;
        tracing::info!(
            policy,
            run = run.0,
            mode = self.policy.mode.as_str(),
            target = self.target.name(),
            resumed,
            "export run started"
        );
        self.abort_abandoned_uploads(Some(run))?;
        let index_failures = super::index_failures(index.as_ref());
        self.catalog.record_outcomes(run, policy, &index_failures)?;
        let exclude = Exclude::for_mode(self.policy.mode, policy, resumed.then_some(run));
        let selected = self.catalog.count_selection(&self.filter, &exclude)?;
        progress.set_length(selected);
        tracing::info!(selected, "conversations selected");
        self.export_selected(run, &exclude, i64::MIN, i64::MAX, progress, control)?;
        let (status, counters, key, failures) =
            self.finish(run, selected, index_failures.len() as u64, control)?;
        Ok(RunSummary {
            run,
            policy: policy.clone(),
            mode: self.policy.mode,
            target: self.target.name().to_owned(),
            status,
            resumed,
            index,
            counters,
            manifest: key.to_string(),
            failures,
            media: self.media_notes(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Creates a new file readable by its owner only (0600), failing if the name is taken.
fn private_file(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("scratch file {}: {e}", path.display()))
}

/// The failure of a claim refused because `h` holds one of the keys `mine` claims for `c`.
fn held(c: &Conversation, mine: &[KeyClaim], h: &KeyClaim, target: &str) -> String {
    let file = mine
        .iter()
        .find(|m| m.key == h.key)
        .map_or("?", |m| m.file.as_str());
    format!(
        "object key `{}` of {}/{} ({file}) already holds {}/{} ({}) at target `{target}`; \
         nothing was written, so that object is not replaced: give each conversation and file \
         a key of its own (`{{id}}` and `{{file}}` as whole path components of the filename \
         format)",
        h.key, c.tenant, c.id, h.tenant, h.conversation_id, h.file,
    )
}
