//! The PostgreSQL catalog as a user sees it: `catalog.url = "postgres://…"` in the config, the
//! same commands and results as with SQLite, and an unreachable server that stops the command
//! before anything runs (exit 2) with a message naming the catalog and never its password.
//! Each test works in a schema of its own on `CUSTODIAN_TEST_POSTGRES` (else the local server).

use postgres::{Client, NoTls};

use crate::common::{Env, text};

/// A schema of its own on the test server, dropped when the test ends, passed or failed.
pub struct Scratch {
    server: String,
    schema: String,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let server = std::env::var("CUSTODIAN_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("custodian_cli_{}_{name}", std::process::id());
        let mut client = Client::connect(&server, NoTls).unwrap_or_else(|e| {
            panic!(
                "the PostgreSQL tests need a server, and {} cannot be reached ({e:?}); start \
                 PostgreSQL there or set CUSTODIAN_TEST_POSTGRES to a URL such as \
                 postgres://USER@HOST:5432/DATABASE",
                custodian::catalog::redact_url(&server)
            )
        });
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .unwrap();
        Scratch { server, schema }
    }

    /// The catalog URL of this schema.
    pub fn url(&self) -> String {
        let separator = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.server, self.schema
        )
    }

    /// Drops the schema now: the catalog in it stops answering.
    pub fn drop_schema(&self) {
        let mut client = Client::connect(&self.server, NoTls).unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .unwrap();
    }

    pub fn count(&self, table: &str) -> i64 {
        let mut client = Client::connect(&self.server, NoTls).unwrap();
        client
            .query_one(
                &format!("SELECT count(*) FROM {}.{table}", self.schema),
                &[],
            )
            .unwrap()
            .get(0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut client) = Client::connect(&self.server, NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// An installation whose catalog is `url`.
pub fn env_with_catalog(url: &str) -> Env {
    let env = Env::new("mode = \"incremental\"");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&config.replace("sqlite:catalog.db", url));
    env
}

#[test]
fn index_export_jobs_and_audit_work_on_a_postgres_catalog() {
    let scratch = Scratch::new("export");
    let env = env_with_catalog(&scratch.url());
    env.conversation("acme", 1, "a1", &[("in.wav", b"RIFF-a1")]);
    env.conversation("acme", 2, "a2", &[("call.wav", b"RIFF-a2")]);
    env.conversation("globex", 3, "g1", &[("call.wav", b"RIFF-g1")]);

    let (code, report) = env.json(&["index"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(scratch.count("conversations"), 3);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["counters"]["exported"], 3);
    assert_eq!(
        std::fs::read(env.archive().join("globex/2026/01/03/g1/call.wav")).unwrap(),
        b"RIFF-g1"
    );

    env.conversation("acme", 4, "a4", &[("late.wav", b"RIFF-a4")]);
    let (code, again) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        again["counters"]["exported"], 1,
        "incremental: only the new one"
    );

    let (code, runs) = env.json(&["jobs", "list"]);
    assert_eq!(code, 0);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r["status"] == "succeeded" && r["policy"] == "export")
    );
    let (_, events) = env.json(&["audit", "list", "--limit", "100"]);
    assert_eq!(events.as_array().unwrap().len(), 4);
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("audit trail intact: 4 events"),
        "{}",
        text(&out)
    );
    assert_eq!(scratch.count("audit_events"), 4);
    assert!(
        !env.path().join("catalog.db").exists(),
        "nothing was written to a SQLite catalog"
    );
}

#[test]
fn an_unreachable_postgres_catalog_stops_index_and_a_node_with_exit_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = env_with_catalog(&format!(
        "postgres://custodian:s3cret@127.0.0.1:{port}/records"
    ));
    env.conversation("acme", 1, "a1", &[("in.wav", b"RIFF-a1")]);
    for args in [&["index"][..], &["run", "export", "--node", "a"]] {
        let out = env.run(args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains(&format!(
                "error: catalog postgres://custodian@127.0.0.1:{port}/records: cannot connect to PostgreSQL at 127.0.0.1:{port}"
            )) && said.contains("check that the server is running"),
            "{args:?}: {said}"
        );
        assert!(!said.contains("s3cret"), "{said}");
    }
}
