//! A local S3 server over a directory (s3s + s3s-fs, the server the tests use), for
//! benchmarks that compare S3 clients side by side on loopback.
//!
//! ```text
//! cargo run --release --example s3_server -- ROOT PORT ACCESS_KEY SECRET_KEY [--listed]
//! ```
//!
//! Each directory under ROOT is a bucket. Serves until killed. With `--listed`, listings are
//! answered from the prefix's own directory with an ETag per object (tests/support/listed_fs.rs)
//! instead of s3s-fs's walk of the whole bucket without ETags, as a repository in a bucket
//! needs at scale.

use std::path::PathBuf;

#[path = "../tests/support/listed_fs.rs"]
mod listed_fs;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let listed = args.last().is_some_and(|a| a == "--listed");
    if listed {
        args.pop();
    }
    let [root, port, access, secret] = args.as_slice() else {
        anyhow::bail!("usage: s3_server ROOT PORT ACCESS_KEY SECRET_KEY [--listed]");
    };
    let root = PathBuf::from(root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let auth = s3s::auth::SimpleAuth::from_single(access.as_str(), secret.as_str());
        let service = if listed {
            let mut builder = s3s::service::S3ServiceBuilder::new(listed_fs::ListedFs::new(&root));
            builder.set_auth(auth);
            builder.build()
        } else {
            let mut builder = s3s::service::S3ServiceBuilder::new(
                s3s_fs::FileSystem::new(&root)
                    .map_err(|e| anyhow::anyhow!("{}: {e:?}", root.display()))?,
            );
            builder.set_auth(auth);
            builder.build()
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
        eprintln!(
            "serving {} at http://{}",
            root.display(),
            listener.local_addr()?
        );
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let (socket, _) = listener.accept().await?;
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    })
}
