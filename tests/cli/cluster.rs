//! One export run shared by several node processes over one PostgreSQL catalog: units claimed
//! with SKIP LOCKED under renewed leases, a killed node's units finished by the others after
//! its lease expires, one run, one manifest, one audit event per conversation.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, text};
use crate::postgres::{Scratch, env_with_catalog};

const CONVERSATIONS: usize = 60;

fn node(env: &Env, name: &str, failpoints: Option<&str>) -> Child {
    let mut cmd = env.command(&[
        "--json",
        "run",
        "export",
        "--node",
        name,
        "--unit-size",
        "5",
        "--lease",
        "2s",
    ]);
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

    // Every item is slow, so the doomed node holds a unit when it is killed.
    let slow = Some("export-item=sleep(100)");
    let doomed = node(&env, "doomed", slow);
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
