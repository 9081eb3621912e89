//! One export run shared by several node processes over one PostgreSQL catalog: units claimed
//! with SKIP LOCKED under renewed leases, a killed node's units finished by the others after
//! its lease expires, one run, one manifest, one audit event per conversation.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, text};
use crate::postgres::{Scratch, env_with_catalog};

const CONVERSATIONS: usize = 60;

fn node(env: &Env, name: &str, failpoints: Option<&str>) -> Child {
    node_with(env, name, failpoints, &[])
}

/// `custodian --json run export --node NAME` in units of `unit_size` under a 2 s lease.
pub fn node_command(env: &Env, name: &str, unit_size: &str, extra: &[&str]) -> Command {
    env.command(
        &[
            &[
                "--json",
                "run",
                "export",
                "--node",
                name,
                "--unit-size",
                unit_size,
                "--lease",
                "2s",
            ],
            extra,
        ]
        .concat(),
    )
}

fn node_with(env: &Env, name: &str, failpoints: Option<&str>, extra: &[&str]) -> Child {
    let mut cmd = node_command(env, name, "5", extra);
    if let Some(f) = failpoints {
        cmd.env("FAILPOINTS", f);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait(child: Child, within: Duration) -> (i32, serde_json::Value, String) {
    let deadline = Instant::now() + within;
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "a node did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), report, text(&out))
}

#[test]
fn three_nodes_share_a_run_and_finish_a_killed_nodes_units() {
    let scratch = Scratch::new("cluster");
    let env = env_with_catalog(&scratch.url());
    for i in 0..CONVERSATIONS {
        env.conversation(
            "acme",
            1 + (i % 20) as u32,
            &format!("n{i:03}"),
            &[("a.wav", format!("audio {i}").as_bytes())],
        );
    }
    let out = env.run(&["index"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Every item is slow, the doomed node's slower still (a unit of its items takes about a
    // second), so it holds a unit when it is killed even on a loaded machine.
    let slow = Some("export-item=sleep(100)");
    let doomed = node(&env, "doomed", Some("export-item=sleep(400)"));
    std::thread::sleep(Duration::from_millis(1200));
    let others = [node(&env, "a", slow), node(&env, "b", slow)];
    std::thread::sleep(Duration::from_millis(300));
    let mut doomed = doomed;
    doomed.kill().unwrap();
    doomed.wait().unwrap();

    let results: Vec<_> = others
        .into_iter()
        .map(|c| wait(c, Duration::from_secs(120)))
        .collect();
    for (code, _, printed) in &results {
        assert_eq!(*code, 0, "{printed}");
    }
    let finished: Vec<_> = results
        .iter()
        .filter(|(_, r, _)| !r["finished"].is_null())
        .collect();
    assert_eq!(
        finished.len(),
        1,
        "exactly one node ends the run: {results:?}"
    );
    let report = &finished[0].1;
    assert_eq!(report["finished"]["status"], "succeeded", "{report}");
    assert_eq!(
        report["finished"]["counters"]["exported"], CONVERSATIONS,
        "{report}"
    );
    let reclaimed: u64 = results
        .iter()
        .map(|(_, r, _)| r["reclaimed"].as_u64().unwrap())
        .sum();
    assert!(
        reclaimed >= 1,
        "the killed node's unit was not reclaimed: {results:?}"
    );

    // One run, one manifest, one audit event per conversation, every file at the target.
    let (_, runs) = env.json(&["jobs", "list"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(scratch.count("audit_events"), CONVERSATIONS as i64);
    let (code, verified) = env.json(&["audit", "verify"]);
    assert_eq!(code, 0, "{verified}");
    let (code, checked) = env.json(&["verify", &runs[0]["id"].to_string()]);
    assert_eq!(code, 0, "{checked}");
    let files = env.archive_files();
    for i in 0..CONVERSATIONS {
        let day = 1 + i % 20;
        assert!(
            files.contains(&format!("acme/2026/01/{day:02}/n{i:03}/a.wav")),
            "{files:?}"
        );
    }
}

#[test]
fn nodes_need_a_shared_catalog() {
    let env = Env::new("");
    let out = env.run(&["run", "export", "--node", "a"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--node needs a catalog the nodes share"),
        "{}",
        text(&out)
    );
}

#[test]
fn nodes_starting_at_once_share_one_run() {
    let scratch = Scratch::new("together");
    let env = env_with_catalog(&scratch.url());
    for i in 0..20 {
        env.conversation(
            "acme",
            2,
            &format!("t{i:02}"),
            &[("a.wav", format!("t {i}").as_bytes())],
        );
    }
    assert_eq!(env.run(&["index"]).status.code(), Some(0));
    let nodes: Vec<_> = ["x", "y", "z"]
        .iter()
        .map(|n| node(&env, n, None))
        .collect();
    let results: Vec<_> = nodes
        .into_iter()
        .map(|c| wait(c, Duration::from_secs(60)))
        .collect();
    for (code, _, printed) in &results {
        assert_eq!(*code, 0, "{printed}");
    }
    let began = results
        .iter()
        .filter(|(_, r, _)| r["began"] == true)
        .count();
    assert_eq!(began, 1, "{results:?}");
    let (_, runs) = env.json(&["jobs", "list"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["counters"]["exported"], 20, "{runs}");
    assert_eq!(scratch.count("audit_events"), 20);
}

/// A TCP proxy to the PostgreSQL server that can drop every connection and refuse new ones
/// for a while: the catalog going away under a running node.
struct Flaky {
    port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Flaky {
    fn start(upstream: &str) -> Flaky {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (down2, open2, upstream) = (down.clone(), open.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if down2.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                for s in [&client, &server] {
                    open2.lock().unwrap().push(s.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Flaky { port, down, open }
    }

    /// Drops every connection and refuses new ones until `restore`.
    fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.down.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Drops every connection and refuses new ones for `outage`.
    fn outage(&self, outage: Duration) {
        self.cut();
        std::thread::sleep(outage);
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// `env`'s config with the catalog reached through this proxy.
    fn config_through(&self, env: &Env) -> (String, String) {
        let config = std::fs::read_to_string(env.config()).unwrap();
        assert!(config.contains("127.0.0.1:5432"), "{config}");
        let proxied = config.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", self.port));
        (config, proxied)
    }
}

#[test]
fn a_node_rides_out_a_catalog_outage() {
    let scratch = Scratch::new("outage");
    let env = env_with_catalog(&scratch.url());
    for i in 0..40 {
        env.conversation(
            "acme",
            3,
            &format!("o{i:02}"),
            &[("a.wav", format!("o {i}").as_bytes())],
        );
    }
    assert_eq!(env.run(&["index"]).status.code(), Some(0));
    let flaky = Flaky::start("127.0.0.1:5432");
    env.write_config(&flaky.config_through(&env).1);
    let child = node(&env, "survivor", Some("export-item=sleep(100)"));
    std::thread::sleep(Duration::from_millis(800));
    flaky.outage(Duration::from_secs(3));
    let (code, report, printed) = wait(child, Duration::from_secs(120));
    assert_eq!(code, 0, "{printed}");
    assert!(printed.contains("retrying in"), "{printed}");
    assert_eq!(report["finished"]["status"], "succeeded", "{report}");
    assert_eq!(report["finished"]["counters"]["exported"], 40, "{report}");
    assert_eq!(scratch.count("audit_events"), 40);
}

#[test]
fn a_node_that_loses_the_catalog_for_good_gives_up_and_the_others_finish_its_unit() {
    let scratch = Scratch::new("lost");
    let env = env_with_catalog(&scratch.url());
    for i in 0..40 {
        env.conversation(
            "acme",
            4,
            &format!("l{i:02}"),
            &[("a.wav", format!("l {i}").as_bytes())],
        );
    }
    assert_eq!(env.run(&["index"]).status.code(), Some(0));
    let flaky = Flaky::start("127.0.0.1:5432");
    let (direct, proxied) = flaky.config_through(&env);
    env.write_config(&proxied);
    // Slow items keep the cut node inside a unit (not between two) when its catalog goes.
    let cut = node_with(
        &env,
        "cut",
        Some("export-item=sleep(200)"),
        &["--catalog-patience", "3s"],
    );
    std::thread::sleep(Duration::from_millis(800));
    env.write_config(&direct);
    let rescuer = node(&env, "rescuer", Some("export-item=sleep(100)"));
    std::thread::sleep(Duration::from_millis(300));
    flaky.cut();

    let (code, _, printed) = wait(cut, Duration::from_secs(60));
    assert_eq!(code, 2, "{printed}");
    assert!(
        printed.contains("the catalog stayed unreachable for 3s")
            && printed.contains("node `cut` stops; the other nodes take over its unit"),
        "{printed}"
    );
    let (code, report, printed) = wait(rescuer, Duration::from_secs(120));
    assert_eq!(code, 0, "{printed}");
    assert_eq!(report["finished"]["status"], "succeeded", "{report}");
    assert_eq!(report["finished"]["counters"]["exported"], 40, "{report}");
    assert!(
        report["reclaimed"].as_u64().unwrap() >= 1,
        "the cut node's unit was not reclaimed: {report}"
    );
    assert_eq!(scratch.count("audit_events"), 40);
    let (_, runs) = env.json(&["jobs", "list"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
}

#[test]
fn a_full_target_stops_the_node_and_running_it_again_finishes_the_run() {
    let scratch = Scratch::new("clusterfull");
    let env = env_with_catalog(&scratch.url());
    let n = 40;
    let payload = crate::common::payload;
    for i in 0..n {
        env.conversation("acme", 1, &format!("c{i:02}"), &[("call.wav", &payload(i))]);
    }
    let out = env.run(&["index"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let disk = crate::common::SmallDisk::mount(&env.archive(), "1m");
    let (code, report, out) = wait(node(&env, "solo", None), Duration::from_secs(60));
    assert_eq!(code, 1, "{out}");
    assert!(report["finished"].is_null(), "{report}");
    assert!(
        report["stopped"]
            .as_str()
            .unwrap()
            .contains("the target is out of space"),
        "{report}"
    );
    assert!(report["units"].as_u64().unwrap() < 8, "{report}");

    // Once there is room, running the node again rejoins the run, takes the full unit over
    // when its lease expires, and ends the run.
    disk.resize("16m");
    let (code, report, out) = wait(node(&env, "solo", None), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["finished"]["status"], "succeeded", "{report}");
    assert_eq!(report["finished"]["counters"]["exported"], n, "{report}");
    let (_, events) = env.json(&["audit", "list", "--limit", "1000"]);
    let mut ids: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["conversation_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), events.as_array().unwrap().len()), (n, n));
    for i in 0..n {
        let key = format!("acme/2026/01/01/c{i:02}/call.wav");
        assert_eq!(
            std::fs::read(env.archive().join(&key)).unwrap(),
            payload(i),
            "{key}"
        );
    }
}
