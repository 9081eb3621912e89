//! s3s-fs with listings an index can be measured and tested against: s3s-fs walks the whole
//! bucket for every listing and gives no ETags in it, so this wrapper answers ListObjectsV2
//! itself from the prefix's own directory (one directory with the delimiter `/`, the tree
//! below it without), a page at a time in S3's key order without visiting the tree before
//! its start, with an ETag per object that changes whenever it is written (from its
//! metadata: a listing reads no object), and hands every other request to s3s-fs. Shared by
//! the CLI tests (tests/cli/s3.rs) and the loopback server of examples/s3_server.rs
//! (`--listed`).

use std::path::{Path, PathBuf};

use s3s::dto::{
    CommonPrefix, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput, DeleteObjectsOutput,
    ETag, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput,
    HeadObjectOutput, ListObjectsV2Input, ListObjectsV2Output, Object, PutObjectInput,
    PutObjectOutput, Timestamp,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use sha2::{Digest, Sha256};

/// An s3s-fs file system over `root` (a bucket per directory) with its own listings.
pub struct ListedFs {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
}

impl ListedFs {
    pub fn new(root: &Path) -> ListedFs {
        ListedFs {
            fs: s3s_fs::FileSystem::new(root).expect("s3s-fs over the server's directory"),
            root: root.to_owned(),
        }
    }
}

/// The ETag of the file `meta` describes: 16 bytes of the SHA-256 of its size, inode and
/// modification and change times, in hex: opaque as S3's are, and new whenever the file is
/// written, without reading it (a listing reads no object, as S3's does not).
fn etag(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut hasher = Sha256::new();
    for n in [
        meta.size() as i64,
        meta.ino() as i64,
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ] {
        hasher.update(n.to_le_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

/// One listed entry: an object, or a common prefix (`None`).
type Entry = (String, Option<Object>);

fn object(key: String, path: &Path) -> std::io::Result<Entry> {
    let meta = std::fs::metadata(path)?;
    let object = Object {
        key: Some(key.clone()),
        size: Some(meta.len() as i64),
        e_tag: Some(ETag::Strong(etag(&meta))),
        last_modified: Some(Timestamp::from(meta.modified()?)),
        ..Object::default()
    };
    Ok((key, Some(object)))
}

/// What a listing asks of the tree.
struct Walk<'a> {
    prefix: &'a str,
    /// One level: objects and common prefixes; else every file below.
    one_level: bool,
    /// Only keys after this one.
    after: Option<&'a str>,
    /// Stop once this many are found.
    enough: usize,
}

/// The entries under `dir` (whose key is `dir_key`, empty or ending in `/`) that `asked` asks
/// for, in key order, until `asked.enough` are found. Siblings are visited in the order of
/// their keys (a directory's key ends in `/`), so the entries come in S3's order, and a
/// directory whose keys all sort before `asked.after` is not entered: a page costs the
/// directories on its way, not the tree before it.
fn walk(dir: &Path, dir_key: &str, asked: &Walk<'_>, out: &mut Vec<Entry>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut named = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_dir = entry.file_type()?.is_dir();
        let key = if is_dir {
            format!("{dir_key}{name}/")
        } else {
            format!("{dir_key}{name}")
        };
        named.push((key, is_dir, entry.path()));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let after = |key: &str| asked.after.is_none_or(|a| key > a);
    for (key, is_dir, path) in named {
        if out.len() >= asked.enough {
            break;
        }
        if is_dir {
            if !(key.starts_with(asked.prefix) || asked.prefix.starts_with(&key)) {
                continue;
            }
            if asked.one_level && key.starts_with(asked.prefix) {
                if after(&key) {
                    out.push((key, None));
                }
            } else if after(&key) || asked.after.is_some_and(|a| a.starts_with(&key)) {
                walk(&path, &key, asked, out)?;
            }
        } else if key.starts_with(asked.prefix) && after(&key) {
            out.push(object(key, &path)?);
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for ListedFs {
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let bucket = self.root.join(&input.bucket);
        if !bucket.is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        let prefix = input.prefix.clone().unwrap_or_default();
        if prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(s3_error!(InvalidArgument, "prefix with . or .. segments"));
        }
        let one_level = match input.delimiter.as_deref() {
            None | Some("") => false,
            Some("/") => true,
            Some(_) => return Err(s3_error!(NotImplemented, "only the delimiter / is listed")),
        };
        let dir_key = prefix.rfind('/').map_or("", |i| &prefix[..=i]).to_owned();
        let after = input.continuation_token.or(input.start_after);
        let max = input.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        let (dir, asked_prefix) = (bucket.join(&dir_key), prefix.clone());
        let mut entries = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let asked = Walk {
                prefix: &asked_prefix,
                one_level,
                after: after.as_deref(),
                enough: max + 1,
            };
            walk(&dir, &dir_key, &asked, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
        let truncated = entries.len() > max;
        entries.truncate(max);
        let next = truncated
            .then(|| entries.last().map(|e| e.0.clone()))
            .flatten();
        let key_count = entries.len() as i32;
        let (mut contents, mut prefixes) = (Vec::new(), Vec::new());
        for (key, object) in entries {
            match object {
                Some(o) => contents.push(o),
                None => prefixes.push(CommonPrefix { prefix: Some(key) }),
            }
        }
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(prefix),
            delimiter: input.delimiter,
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            is_truncated: Some(truncated),
            next_continuation_token: next,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            ..ListObjectsV2Output::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        // A key naming a directory (a prefix, such as rclone's probe of the path it lists) is
        // no object: S3 answers 404, where s3s-fs fails to open the directory with a 500 that
        // clients retry with backoff.
        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        if path.is_dir() {
            return Err(s3_error!(NoSuchKey));
        }
        self.fs.head_object(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.fs.put_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fs.delete_objects(req).await
    }
}
