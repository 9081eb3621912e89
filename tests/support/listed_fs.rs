//! s3s-fs with listings an index can be measured and tested against: s3s-fs walks the whole
//! bucket for every listing and gives no ETags in it, so this wrapper answers ListObjectsV2
//! itself from the prefix's own directory (one directory with the delimiter `/`, the tree
//! below it without), with a content-derived ETag per object as S3 gives one, and hands every
//! other request to s3s-fs. Shared by the CLI tests (tests/cli/s3.rs) and the loopback server
//! of examples/store_scale.rs.

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

/// The ETag of `bytes`: 16 bytes of their SHA-256 in hex, opaque as S3's are.
fn etag(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

/// One listed entry: an object, or a common prefix (`None`).
type Entry = (String, Option<Object>);

fn object(key: String, path: &Path) -> std::io::Result<Entry> {
    let bytes = std::fs::read(path)?;
    let modified = std::fs::metadata(path)?.modified()?;
    let object = Object {
        key: Some(key.clone()),
        size: Some(bytes.len() as i64),
        e_tag: Some(ETag::Strong(etag(&bytes))),
        last_modified: Some(Timestamp::from(modified)),
        ..Object::default()
    };
    Ok((key, Some(object)))
}

/// Everything under `dir` (whose key is `dir_key`, empty or ending in `/`) whose key starts
/// with `prefix`: one level as objects and common prefixes when `one_level`, else every file.
fn walk(
    dir: &Path,
    dir_key: &str,
    prefix: &str,
    one_level: bool,
    out: &mut Vec<Entry>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let key = format!("{dir_key}{name}");
        let is_dir = entry.file_type()?.is_dir();
        if is_dir {
            let below = format!("{key}/");
            if !(below.starts_with(prefix) || prefix.starts_with(&below)) {
                continue;
            }
            if one_level && below.starts_with(prefix) {
                out.push((below, None));
            } else {
                walk(&entry.path(), &below, prefix, one_level, out)?;
            }
        } else if key.starts_with(prefix) {
            out.push(object(key, &entry.path())?);
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
        let (dir, prefix_c) = (bucket.join(&dir_key), prefix.clone());
        let mut entries = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &dir_key, &prefix_c, one_level, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let after = input.continuation_token.or(input.start_after);
        if let Some(after) = &after {
            entries.retain(|(k, _)| k > after);
        }
        let max = input.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
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
