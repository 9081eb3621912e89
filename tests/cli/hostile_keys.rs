//! No exported object replaces another, incremental runs miss no artifact, and a full rerun
//! leaves earlier runs verifiable: formats that can merge keys are refused with the config,
//! keys are claimed before they are written, and state is kept per record version and artifact.

use crate::common::{Art, Env, sha256, text};

fn refused_format(format: &str, works: &str) {
    let env = Env::new(&format!("filename_format = \"{format}\""));
    env.conversation("acme", 1, "victim", &[("x-a.wav", b"victim")]);
    env.conversation("acme", 1, "victim-x", &[("a.wav", b"attacker")]);
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    let located = format!(
        "{}:14: policies.export.filename_format:",
        env.config().display()
    );
    assert!(msg.contains(&located), "{msg}");
    assert!(msg.contains(&format!("for example `{works}`")), "{msg}");
    assert!(!env.archive().exists(), "nothing may be written");
}

#[test]
fn format_joining_id_and_file_in_one_component_is_refused_with_the_config() {
    refused_format("{tenant}/{id}-{file}", "{tenant}/{id}/{file}");
}

#[test]
fn format_naming_files_by_stem_is_refused_with_the_config() {
    refused_format("{tenant}/{yyyy}/{id}/{stem}", "{tenant}/{yyyy}/{id}/{file}");
}

#[test]
fn format_without_tenant_is_refused_unless_the_filter_names_one_tenant() {
    refused_format("{id}/{file}", "{tenant}/{id}/{file}");
    let env = Env::new(
        "filename_format = \"{id}/{file}\"\n[policies.export.filter]\ntenants = [\"acme\"]",
    );
    env.conversation("acme", 1, "c1", &[("a.wav", b"one")]);
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(
        std::fs::read(env.archive().join("c1/a.wav")).unwrap(),
        b"one"
    );
}

/// Two policies writing to one target with formats that each pass the rule, but whose keys
/// meet: tenant `acme` id `globex` under one is tenant `globex` id `acme` under the other.
#[test]
fn key_written_for_another_conversation_is_never_replaced() {
    let env = Env::new("filename_format = \"{tenant}/{id}/{file}\"\nmode = \"full\"");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!(
        "{config}\n[policies.swapped]\naction = \"export\"\ntarget = \"archive\"\n\
         filename_format = \"{{id}}/{{tenant}}/{{file}}\"\n"
    ));
    // Refused and free keys alternate, in one batch of claims: each answer is its own.
    env.conversation("acme", 1, "globex", &[("call.wav", b"acme's call")]);
    env.conversation("initech", 2, "free-1", &[("call.wav", b"free one")]);
    env.conversation("globex", 3, "acme", &[("call.wav", b"globex's call")]);
    env.conversation("initech", 4, "free-2", &[("call.wav", b"free two")]);
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");

    let (code, s) = env.json(&["run", "swapped"]);
    assert_eq!(code, 1, "{s}");
    assert_eq!(s["status"], "completed_with_failures");
    assert_eq!(s["counters"]["failed"], 2);
    assert_eq!(s["counters"]["exported"], 2, "{s}");
    assert_eq!(s["counters"]["objects"], 4, "{s}");
    for id in ["free-1", "free-2"] {
        assert!(
            env.archive().join(id).join("initech/call.wav").exists(),
            "{id}"
        );
    }
    let failures = s["failures"].as_array().unwrap();
    for (mine, holder) in [
        ("acme/globex", "globex/acme"),
        ("globex/acme", "acme/globex"),
    ] {
        let f = failures
            .iter()
            .find(|f| f["subject"] == mine)
            .unwrap_or_else(|| panic!("{mine} failed: {s}"));
        let error = f["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("of {mine} (")) && error.contains(&format!("holds {holder} (")),
            "{error}"
        );
    }
    assert_eq!(
        std::fs::read(env.archive().join("acme/globex/call.wav")).unwrap(),
        b"acme's call"
    );
    assert_eq!(
        std::fs::read(env.archive().join("globex/acme/call.wav")).unwrap(),
        b"globex's call"
    );
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.archive().join("acme/globex/conversation.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["conversation"]["tenant"], "acme");

    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "the holder reclaims its own keys on a rerun: {s}");
}

fn metadata(env: &Env, key: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(env.archive().join(key)).unwrap()).unwrap()
}

#[test]
fn artifact_added_to_an_exported_conversation_is_exported_by_the_next_incremental_run() {
    let env = Env::new("");
    let wav = Art::plain("call.wav", "audio_recording", b"RIFF-call");
    env.record("acme", 1, "c1", "voice", std::slice::from_ref(&wav));
    env.conversation("acme", 2, "c2", &[("other.wav", b"RIFF-other")]);
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["objects"], 4);
    let call = env.archive().join("acme/2026/01/01/c1/call.wav");
    let before = std::fs::metadata(&call).unwrap().modified().unwrap();

    let transcript = Art::plain("call.txt", "transcript", b"hello");
    env.record("acme", 1, "c1", "voice", &[wav, transcript]);
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["selected"], 1);
    assert_eq!(s["counters"]["exported"], 1);
    assert_eq!(
        s["counters"]["objects"], 2,
        "the transcript and the metadata file: {s}"
    );
    assert_eq!(
        std::fs::read(env.archive().join("acme/2026/01/01/c1/call.txt")).unwrap(),
        b"hello"
    );
    assert_eq!(
        std::fs::metadata(&call).unwrap().modified().unwrap(),
        before
    );
    let meta = metadata(&env, "acme/2026/01/01/c1/conversation.json");
    let files = meta["export"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{meta}");
    assert_eq!(files[0]["key"], "acme/2026/01/01/c1/call.wav");
    assert_eq!(files[0]["sha256"], sha256(b"RIFF-call"));
    assert_eq!(files[1]["key"], "acme/2026/01/01/c1/call.txt");
    assert_eq!(
        meta["conversation"]["artifacts"].as_array().unwrap().len(),
        2
    );

    let (_, events) = env.json(&["audit", "list", "--conversation", "c1"]);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1]["details"]["artifacts"],
        serde_json::json!(["call.txt"])
    );

    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0);
    assert_eq!(s["counters"]["selected"], 0);
}

#[test]
fn artifact_whose_recorded_checksum_changed_is_exported_again() {
    let env = Env::new("");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-first")]);
    assert_eq!(env.json(&["run", "export"]).0, 0);
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-second, longer")]);
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["objects"], 2);
    assert_eq!(
        std::fs::read(env.archive().join("acme/2026/01/01/c1/call.wav")).unwrap(),
        b"RIFF-second, longer"
    );
}

#[test]
fn full_rerun_leaves_earlier_runs_verifiable() {
    let env = Env::new("mode = \"full\"");
    env.conversation("acme", 1, "c1", &[("call.wav", b"RIFF-one")]);
    env.conversation("acme", 2, "c2", &[("call.wav", b"RIFF-two")]);
    let (code, first) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{first}");
    let (code, second) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{second}");
    for run in [&first["run"], &second["run"]] {
        let out = env.run(&["verify", &run.to_string()]);
        assert_eq!(out.status.code(), Some(0), "run {run}: {}", text(&out));
        assert!(text(&out).contains("all match"), "{}", text(&out));
    }
    let meta = metadata(&env, "acme/2026/01/01/c1/conversation.json");
    assert!(meta["export"].get("run").is_none(), "{meta}");
}

/// A batch of claims the catalog fails is claimed again a conversation at a time: only the
/// conversation whose claim fails alone fails, naming the catalog, and the next run exports it.
#[cfg(feature = "failpoints")]
#[test]
fn a_claim_the_catalog_fails_fails_only_its_own_conversation() {
    let env = Env::new("");
    for (day, id) in [(1, "c1"), (2, "c2"), (3, "c3"), (4, "c4")] {
        env.conversation("acme", day, id, &[("call.wav", id.as_bytes())]);
    }
    let out = env
        .command(&["--json", "run", "export"])
        .env("FAILPOINTS", "claim-keys=return(c2)")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["counters"]["exported"], 3, "{s}");
    assert_eq!(s["counters"]["failed"], 1, "{s}");
    assert_eq!(s["failures"][0]["subject"], "acme/c2", "{s}");
    let error = s["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("claiming object keys at target `archive`")
            && error.contains("failpoint claim-keys"),
        "{error}"
    );
    assert!(!env.archive().join("acme/2026/01/02/c2").exists());

    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["exported"], 1, "{s}");
    assert!(env.archive().join("acme/2026/01/02/c2/call.wav").exists());
}
