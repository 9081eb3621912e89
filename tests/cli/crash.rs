//! `kill -9` in the middle of an export, then a rerun: every matching conversation is exported
//! exactly once, the run's manifest is complete, and nothing partial sits under a final name.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::{Env, sha256};

const CONVERSATIONS: usize = 300;

#[test]
fn killed_export_resumes_and_exports_everything_exactly_once() {
    let env = Env::new("concurrency = 2");
    let payload: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    for i in 0..CONVERSATIONS {
        let mut bytes = payload.clone();
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        env.conversation("acme", 1, &format!("c{i:04}"), &[("call.wav", &bytes)]);
    }
    let mut child = env.command(&["run", "export"]).spawn().unwrap();
    let day = env.archive().join("acme/2026/01/01");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = std::fs::read_dir(&day).map(|d| d.count()).unwrap_or(0);
        if started >= 20 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the export never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, runs) = env.json(&["jobs", "list"]);
    assert_eq!(
        runs[0]["status"], "running",
        "the killed run is left unfinished: {runs}"
    );

    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["resumed"], true);
    assert_eq!(summary["run"], 1, "the rerun finishes the interrupted run");
    assert_eq!(
        summary["counters"]["exported"].as_u64(),
        Some(CONVERSATIONS as u64)
    );

    let (_, events) = env.json(&["audit", "list", "--limit", "100000"]);
    let mut per_conversation: HashMap<String, usize> = HashMap::new();
    for e in events.as_array().unwrap() {
        *per_conversation
            .entry(e["conversation_id"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert_eq!(per_conversation.len(), CONVERSATIONS);
    assert!(
        per_conversation.values().all(|&n| n == 1),
        "one audit event per conversation"
    );

    let manifest =
        std::fs::read_to_string(env.archive().join(summary["manifest"].as_str().unwrap())).unwrap();
    let objects: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("key").is_some())
        .collect();
    assert_eq!(
        objects.len(),
        2 * CONVERSATIONS,
        "every object of the run is in its manifest"
    );
    for o in &objects {
        let bytes = std::fs::read(env.archive().join(o["key"].as_str().unwrap())).unwrap();
        assert_eq!(sha256(&bytes), o["sha256"].as_str().unwrap());
    }
    for entry in std::fs::read_dir(&day).unwrap() {
        for f in std::fs::read_dir(entry.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            assert!(
                name == "call.wav"
                    || name == "conversation.json"
                    || name.starts_with(".custodian-tmp-"),
                "unexpected file {name}"
            );
        }
    }
    let (code, _) = env.json(&["verify", "1"]);
    assert_eq!(code, 0);
    let (code, again) = env.json(&["run", "export"]);
    assert_eq!(code, 0);
    assert_eq!(again["counters"]["selected"], 0);
}
