//! A local S3 server over a directory (s3s + s3s-fs, the server the tests use), for
//! benchmarks that compare S3 clients side by side on loopback.
//!
//! ```text
//! cargo run --release --example s3_server -- ROOT PORT ACCESS_KEY SECRET_KEY
//! ```
//!
//! Each directory under ROOT is a bucket. Serves until killed.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, port, access, secret] = args.as_slice() else {
        anyhow::bail!("usage: s3_server ROOT PORT ACCESS_KEY SECRET_KEY");
    };
    let root = PathBuf::from(root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = s3s::service::S3ServiceBuilder::new(
            s3s_fs::FileSystem::new(&root)
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", root.display()))?,
        );
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            access.as_str(),
            secret.as_str(),
        ));
        let service = builder.build();
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
