//! The remote upload engine against a real S3 server (s3s + s3s-fs) on loopback, through each
//! S3 client: 1 MiB objects (one request each) and a 64 MiB object (a multipart upload).
//! Whole-run comparisons against rclone live in `scripts/compare-s3.sh`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use custodian::config::Config;
use custodian::target::{ObjectKey, WriteContext, put_stream};

const ACCESS_KEY: &str = "bench";
const SECRET_KEY: &str = "bench-secret";

fn start_server(root: &std::path::Path) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move {
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    (endpoint, runtime)
}

fn upload(c: &mut Criterion) {
    // SAFETY: set before any thread of this process reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bench")).unwrap();
    let (endpoint, _server) = start_server(dir.path());
    let mut group = c.benchmark_group("upload");
    group.sample_size(10);
    let mut buffer = Vec::new();
    for client in ["aws_sdk", "object_store"] {
        let config = Config::parse(
            &dir.path().join("custodian.toml"),
            &format!(
                "[repository]\nroot = \"repo\"\n[targets.s3]\nkind = \"s3\"\nbucket = \"bench\"\n\
                 region = \"us-east-1\"\nendpoint = \"{endpoint}\"\npath_style = true\nclient = \"{client}\"\n"
            ),
        )
        .unwrap();
        let target = custodian::target::build("s3", &config.targets["s3"], None).unwrap();
        target.check().unwrap();
        for mib in [1usize, 64] {
            let data = vec![7u8; mib << 20];
            let key = ObjectKey::new(format!("{client}/{mib}.bin")).unwrap();
            group.throughput(Throughput::Bytes(data.len() as u64));
            group.bench_function(BenchmarkId::new(client, format!("{mib}MiB")), |b| {
                b.iter(|| {
                    put_stream(
                        target.as_ref(),
                        &key,
                        &mut &data[..],
                        &mut buffer,
                        None,
                        &WriteContext::default(),
                    )
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, upload);
criterion_main!(benches);
