//! Indexing a hostile repository: links, special files, out-of-range numbers, oversized
//! records and signals fail what they touch, never the whole index, and never hang it.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Env, text};

const RECORD: &str = "conversation.json";

/// Runs `custodian index`, killing it (and failing the test) if it is still going after a
/// generous deadline: a hang is the bug some of these tests guard against.
fn index_within_deadline(env: &Env) -> std::process::Output {
    let mut child = env
        .command(&["index"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("custodian index hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn index_never_follows_a_symlinked_conversation_directory() {
    let env = Env::new("");
    env.conversation("acme", 1, "c1", &[("a.wav", b"mine")]);
    // A conversation of acme's whose directory is a link to somewhere outside the repository.
    let outside = env.path().join("outside");
    let planted = env.conversation("acme", 1, "evil", &[("a.wav", b"not yours")]);
    std::fs::rename(&planted, &outside).unwrap();
    symlink(&outside, &planted).unwrap();
    let out = index_within_deadline(&env);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!(
            "{}: is a symbolic link; custodian never follows links",
            planted.display()
        )),
        "{all}"
    );
    let out = env.run(&["run", "export", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        env.archive_files(),
        vec![
            "acme/2026/01/01/c1/a.wav".to_owned(),
            "acme/2026/01/01/c1/conversation.json".to_owned()
        ]
    );
}

#[test]
fn a_fifo_as_conversation_json_fails_that_record_and_index_does_not_hang() {
    let env = Env::new("");
    env.conversation("acme", 1, "c1", &[("a.wav", b"x")]);
    let fifo = env.root().join(Env::rel_dir("acme", 1, "c2")).join(RECORD);
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let out = index_within_deadline(&env);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("1 indexed") && all.contains("is a FIFO, not a regular file"),
        "{all}"
    );
}

#[test]
fn an_out_of_range_size_fails_only_its_record_not_every_index_and_run() {
    let env = Env::new("");
    let bad = env.conversation("acme", 1, "big", &[("a.wav", b"12345")]);
    edit(
        &bad.join(RECORD),
        "\"size\": 5",
        "\"size\": 9223372036854775808",
    );
    env.conversation("globex", 1, "g1", &[("a.wav", b"fine")]);
    let out = env.run(&["index"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("{}: ", bad.join(RECORD).display()))
            && all.contains("size 9223372036854775808 is out of range"),
        "{all}"
    );
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        env.archive_files()
            .contains(&"globex/2026/01/01/g1/a.wav".to_owned()),
        "{:?}",
        env.archive_files()
    );
}

#[test]
fn a_channel_that_is_a_path_fails_its_record() {
    let env = Env::new("");
    let dir = env.conversation("acme", 1, "t1", &[]);
    edit(
        &dir.join(RECORD),
        "\"artifacts\": []",
        "\"artifacts\": [], \"flags\": {\"cdr_only\": true}, \"channel\": \"../../globex/channels/X\"",
    );
    let out = env.run(&["index"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("channel `../../globex/channels/X` is not a plain name"),
        "{all}"
    );
}

#[test]
fn a_record_over_max_record_bytes_is_refused_unread() {
    let env = Env::new("");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&config.replace(
        "root = \"repo\"",
        "root = \"repo\"\nmax_record_bytes = 1024",
    ));
    env.conversation("acme", 1, "small", &[("a.wav", b"x")]);
    let big = env.conversation("acme", 1, "big", &[("a.wav", b"x")]);
    edit(
        &big.join(RECORD),
        "\"source_platform\": \"cisco\"",
        &format!("\"source_platform\": \"cisco{}\"", "x".repeat(2000)),
    );
    let out = env.run(&["index"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("1 indexed") && all.contains("more than max_record_bytes (1024)"),
        "{all}"
    );
    env.write_config(&config.replace("root = \"repo\"", "root = \"repo\"\nmax_record_bytes = 10"));
    let out = env.run(&["index"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("custodian.toml:6: repository.max_record_bytes: the largest"),
        "{}",
        text(&out)
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn sigterm_stops_index_which_commits_what_it_found_and_the_next_index_completes() {
    let env = Env::new("");
    for i in 0..40 {
        env.conversation("acme", 1 + i % 4, &format!("c{i:02}"), &[("a.wav", b"x")]);
    }
    let child = env
        .command(&["--json", "index"])
        .env("FAILPOINTS", "index-record=sleep(250)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("stopping the index"), "{}", text(&out));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["stopped"], true, "{first}");
    let done = first["indexed"].as_u64().unwrap();
    assert!(done < 40, "{first}");
    let (code, second) = env.json(&["index"]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(second["stopped"], false, "{second}");
    assert_eq!(second["unchanged"].as_u64().unwrap(), done, "{second}");
    assert_eq!(second["indexed"].as_u64().unwrap(), 40 - done, "{second}");
}
