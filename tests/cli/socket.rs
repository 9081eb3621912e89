//! The service and its socket (docs/operations.md, "The service and its socket"): `custodian
//! serve` runs as a service account owning a 0600 catalog, and the test users' management
//! commands reach it over its socket, where the kernel names them. Every test runs the binary
//! as real non-root users (tests/cli/osusers.rs).

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::common::text;
use crate::osusers::{self, ALICE, BOB, EVE, GROUP, SERVICE, Shared};

/// Everyone reads policies; alice and bob manage and approve through their group.
const ROLES: &str = r#"
[users]
"*" = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "LEGAL_HOLD_READ"]
[groups]
"custodian-t-admins" = ["ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_APPROVE", "LEGAL_HOLD_MANAGE", "JOBS_RUN"]
"#;

const ACKS: [&str; 4] = [
    "--acknowledge",
    "storage-overage",
    "--acknowledge",
    "irreversible-delete",
];

/// `custodian serve` running as the service user; stopped (SIGTERM, then waited for) when
/// dropped.
struct Service {
    child: Child,
}

impl Service {
    /// Starts serve as [`SERVICE`] with `env` added, and waits until its socket is there.
    fn start(s: &Shared, env: &[(&str, &str)]) -> Service {
        Service::start_with(s, env, &[])
    }

    /// [`Service::start`] with more arguments for serve.
    fn start_with(s: &Shared, env: &[(&str, &str)], args: &[&str]) -> Service {
        let mut all = vec!["serve", "--shutdown-grace", "1s"];
        all.extend_from_slice(args);
        let mut cmd = s.command(SERVICE, &all);
        cmd.envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let socket = socket(s);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while UnixStream::connect(&socket).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("serve ended ({status}) before listening: {err}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not listen on {}",
                socket.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Service { child }
    }

    /// Stops serve and returns what it wrote to stderr.
    fn stop(mut self) -> String {
        self.terminate()
    }

    fn terminate(&mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        let _ = self.child.wait();
        err
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Starts serve as [`SERVICE`], which must refuse to start: its exit code 2 and what it said.
/// One still running after a generous deadline is stopped and the test fails.
fn refused_start(s: &Shared) -> String {
    let mut child = s
        .command(SERVICE, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    err
}

fn socket(s: &Shared) -> PathBuf {
    s.env.path().join("c.sock")
}

/// A shared installation under four eyes whose every config names the socket `c.sock`, given
/// to the users' group, with one conversation indexed by nobody yet.
fn installation() -> Shared {
    let s = Shared::new(ROLES, "approvals = 2");
    for user in [ALICE, BOB, EVE, SERVICE] {
        let config = s.config(user);
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            format!("{text}\n[serve]\nsocket = \"c.sock\"\nsocket_group = \"{GROUP}\"\n"),
        )
        .unwrap();
    }
    s.env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-1")]);
    s
}

fn with(args: &[&str], extra: &[&str]) -> Vec<String> {
    args.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Alice creates `voice-30d` with a delete version `v1` (not active under four eyes) and
/// requests its activation, over the socket; returns the change's id.
fn requested(s: &Shared) -> i64 {
    s.publish_voice_30d(ALICE);
    let out = s.ok(
        ALICE,
        &strs(&with(&["lifecycle", "activate", "voice-30d", "v1"], &ACKS)),
    );
    assert!(out.contains("requested"), "{out}");
    s.json(ALICE, &["lifecycle", "pending"])[0]["id"]
        .as_i64()
        .unwrap()
}

/// What the catalog holds of lifecycle policies and changes, as alice sees it over the socket.
fn snapshot(s: &Shared) -> (serde_json::Value, serde_json::Value) {
    (
        s.json(ALICE, &["lifecycle", "list"]),
        s.json(ALICE, &["lifecycle", "pending", "--all"]),
    )
}

#[test]
fn the_service_owns_a_private_catalog_and_acts_as_each_peer() {
    if !osusers::available("the_service_owns_a_private_catalog_and_acts_as_each_peer") {
        return;
    }
    let s = installation();
    let service = Service::start(&s, &[]);
    let catalog = s.env.path().join("catalog.db");
    let meta = std::fs::metadata(&catalog).unwrap();
    assert_eq!(meta.uid(), osusers::uid(SERVICE));
    assert_eq!(
        meta.mode() & 0o777,
        0o600,
        "the service's catalog is its own"
    );
    let sock = std::fs::symlink_metadata(socket(&s)).unwrap();
    assert_eq!(sock.mode() & 0o777, 0o660);
    assert_eq!(
        sock.gid(),
        nix::unistd::Group::from_name(GROUP)
            .unwrap()
            .unwrap()
            .gid
            .as_raw()
    );

    s.share_repository();
    s.ok(SERVICE, &["index"]);
    let change = requested(&s);
    let id = change.to_string();
    let own = s.fails(ALICE, &strs(&with(&["lifecycle", "approve", &id], &ACKS)));
    assert!(
        own.contains(&format!("change {id} was requested by {ALICE}")),
        "{own}"
    );
    let approved = s.ok(BOB, &strs(&with(&["lifecycle", "approve", &id], &ACKS)));
    assert!(
        approved.contains("policy `voice-30d` is disabled with version `v1` active"),
        "{approved}"
    );
    let decided = &s.json(EVE, &["lifecycle", "pending", "--all"])[0];
    assert_eq!(decided["requested_by"], ALICE);
    assert_eq!(decided["decided_by"], BOB);
    let policy = s.json(ALICE, &["lifecycle", "show", "voice-30d"]);
    assert_eq!(policy["created_by"], ALICE);
    assert_eq!(policy["active_version"], "v1");

    s.ok(ALICE, &["hold", "create", "smith-v-acme"]);
    let placed = s.json(
        ALICE,
        &["hold", "add", "smith-v-acme", "--conversation", "acme/c1"],
    );
    assert_eq!(placed["matter"], "smith-v-acme");
    assert_eq!(
        s.json(EVE, &["hold", "show", "smith-v-acme"])["holds"][0]["placed_by"],
        ALICE
    );
    let log = service.stop();
    assert!(
        log.contains(&format!("{BOB} (process")),
        "serve logs who asked: {log}"
    );
    assert_eq!(
        std::fs::metadata(&catalog).unwrap().uid(),
        osusers::uid(SERVICE)
    );
    assert!(
        !socket(&s).exists(),
        "serve removes its socket when it stops"
    );
}

#[test]
fn a_user_without_the_permission_is_refused_over_the_socket_and_cannot_go_around_it() {
    if !osusers::available(
        "a_user_without_the_permission_is_refused_over_the_socket_and_cannot_go_around_it",
    ) {
        return;
    }
    let s = installation();
    let _service = Service::start(&s, &[]);
    requested(&s);
    let before = snapshot(&s);
    let refused = s.fails(
        EVE,
        &[
            "lifecycle",
            "create",
            "evil",
            "--artifact-type",
            "transcript",
        ],
    );
    assert!(
        refused.contains(&format!(
            "user `{EVE}` lacks the permission ARTIFACTS_LIFECYCLE_POLICY_CREATE"
        )),
        "{refused}"
    );
    let refused = s.fails(EVE, &["hold", "create", "m"]);
    assert!(refused.contains("LEGAL_HOLD_MANAGE"), "{refused}");

    // The attack of issue 18: her own config and roles file, pointed at the service's catalog.
    let own_roles = s.env.path().join("eve-roles.toml");
    std::fs::write(
        &own_roles,
        format!(
            "[users]\n\"{EVE}\" = [\"ARTIFACTS_LIFECYCLE_POLICY_READ\", \"ARTIFACTS_LIFECYCLE_POLICY_CREATE\", \"ARTIFACTS_LIFECYCLE_POLICY_APPROVE\", \"LEGAL_HOLD_MANAGE\"]\n"
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&own_roles, Some(osusers::uid(EVE)), None).unwrap();
    let own_config = s.env.path().join("eve-own.toml");
    std::fs::write(
        &own_config,
        format!(
            "[catalog]\nurl = \"sqlite:catalog.db\"\n\n[repository]\nroot = \"repo\"\n\n[audit]\nkey_file = \"{EVE}.key\"\n\n[lifecycle]\nroles = \"eve-roles.toml\"\n"
        ),
    )
    .unwrap();
    for args in [
        with(
            &[
                "lifecycle",
                "create",
                "evil",
                "--artifact-type",
                "transcript",
            ],
            &[],
        ),
        with(&["lifecycle", "enable", "voice-30d"], &ACKS),
        with(&["hold", "create", "evil"], &[]),
        with(&["index"], &[]),
    ] {
        let out = s
            .command_with(EVE, &own_config, &strs(&args))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains(&format!(
                "belongs to {SERVICE} (uid {})",
                osusers::uid(SERVICE)
            )) && msg.contains("is refused"),
            "{args:?}: {msg}"
        );
    }
    assert_eq!(snapshot(&s), before, "nothing changed");
}

#[test]
fn racing_commands_get_a_clear_answer() {
    if !osusers::available("racing_commands_get_a_clear_answer") {
        return;
    }
    let s = installation();
    let _service = Service::start(&s, &[]);
    let id = requested(&s).to_string();
    let approve = with(&["lifecycle", "approve", &id], &ACKS);
    let racers: Vec<Child> = [BOB, BOB]
        .iter()
        .map(|user| {
            s.command(user, &strs(&approve))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = racers
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(2)),
        "{codes:?}: {}",
        outs.iter().map(text).collect::<Vec<_>>().join("\n")
    );
    let loser = outs.iter().find(|o| o.status.code() == Some(2)).unwrap();
    assert!(
        text(loser).contains(&format!("change {id} was approved already, by {BOB}")),
        "{}",
        text(loser)
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn a_run_on_demand_runs_once_at_a_time() {
    if !osusers::available("a_run_on_demand_runs_once_at_a_time") {
        return;
    }
    let s = installation();
    s.share_repository();
    // A second policy, which the service's config has (the others need only the socket).
    let config = s.config(SERVICE);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("[policies.export2]\naction = \"export\"\ntarget = \"archive\"\n{text}"),
    )
    .unwrap();
    // Each run's export waits long on its item: the requests that follow come while it runs.
    let _service = Service::start_with(
        &s,
        &[("FAILPOINTS", "export-item=sleep(60000)")],
        &["--max-concurrent", "1"],
    );
    let refused = s.fails(EVE, &["run", "export"]);
    assert!(
        refused.contains(&format!("user `{EVE}` lacks the permission JOBS_RUN")),
        "{refused}"
    );
    let started = s.json(ALICE, &["run", "export"]);
    let process = started["running"]["process"].as_u64().unwrap();
    assert_eq!(started["running"]["policy"], "export");
    let again = s.fails(BOB, &["run", "export"]);
    assert!(
        again.contains("policy `export` is already running since ")
            && again.contains(&format!(
                "(process {process}): one run per policy at a time"
            )),
        "{again}"
    );
    let queued = s.json(BOB, &["run", "export2"]);
    assert_eq!(queued, serde_json::json!({"queued": {"policy": "export2"}}));
    let waiting = s.fails(ALICE, &["run", "export2"]);
    assert!(
        waiting.contains("a run of policy `export2` is already waiting for a free slot"),
        "{waiting}"
    );
    let unknown = s.fails(ALICE, &["run", "nightly"]);
    assert!(unknown.contains("no policy named `nightly`"), "{unknown}");
}

#[test]
fn without_the_service_running_the_command_says_where_it_looked() {
    if !osusers::available("without_the_service_running_the_command_says_where_it_looked") {
        return;
    }
    let s = installation();
    let out = s.fails(ALICE, &["lifecycle", "list"]);
    assert!(
        out.contains(&format!(
            "cannot reach the custodian service at {}",
            socket(&s).display()
        )) && out.contains("custodian serve"),
        "{out}"
    );
    let unsent = s.fails(ALICE, &["run", "export", "--force"]);
    assert!(
        unsent.contains("--force is not sent to the service")
            && unsent.contains("`custodian run export --force --in-process`"),
        "{unsent}"
    );
    assert!(!s.env.path().join("catalog.db").exists(), "nothing opened");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_or_a_symlink_refused() {
    if !osusers::available("a_stale_socket_is_replaced_and_a_live_one_or_a_symlink_refused") {
        return;
    }
    let s = installation();
    let path = socket(&s);
    // A dead serve's socket: bound, then its listener gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    std::os::unix::fs::lchown(&path, Some(osusers::uid(SERVICE)), None).unwrap();
    let service = Service::start(&s, &[]);
    s.ok(ALICE, &["lifecycle", "list"]);
    let second = refused_start(&s);
    assert!(
        second.contains(&format!(
            "another custodian serve is listening on {}",
            path.display()
        )),
        "{second}"
    );
    s.ok(ALICE, &["lifecycle", "list"]);
    let log = service.stop();
    assert!(log.contains("no longer running"), "{log}");

    let victim = s.env.path().join("victim");
    std::fs::write(&victim, "kept").unwrap();
    std::os::unix::fs::chown(&victim, Some(osusers::uid(SERVICE)), None).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let refused = refused_start(&s);
    assert!(
        refused.contains(&format!(
            "socket {} is a symbolic link; custodian never follows one there",
            path.display()
        )),
        "{refused}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "kept");
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// Sends `bytes` on a connection of its own, shuts the sending side, returns the answer.
fn raw(s: &Shared, bytes: &[u8]) -> serde_json::Value {
    let mut stream = UnixStream::connect(socket(s)).unwrap();
    // The service answers before reading all of an oversized request (and reads the rest after).
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    serde_json::from_slice(&answer).unwrap()
}

#[test]
fn an_oversize_malformed_or_silent_request_is_refused_and_the_service_goes_on() {
    if !osusers::available(
        "an_oversize_malformed_or_silent_request_is_refused_and_the_service_goes_on",
    ) {
        return;
    }
    let s = installation();
    let _service = Service::start(&s, &[]);
    let mut silent = UnixStream::connect(socket(&s)).unwrap();
    // Far past the service's own limit, so that a service without one fails the test.
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let big = raw(&s, &vec![b'{'; 1024 * 1024]);
    assert_eq!(
        big["refused"]["error"],
        "request refused: larger than 65536 bytes"
    );
    let bad = raw(&s, b"{\"lifecycle\": \"list\", \"as\": \"root\"}");
    assert!(
        bad["refused"]["error"]
            .as_str()
            .unwrap()
            .starts_with("request refused: malformed:"),
        "{bad}"
    );
    let forged = raw(
        &s,
        br#"{"manage":{"hold":{"add":{"matter":"m","conversations":[{"tenant":"../x","id":"c"}],"criteria":{}}}}}"#,
    );
    assert!(
        forged["refused"]["error"]
            .as_str()
            .unwrap()
            .contains("holds no `/`"),
        "{forged}"
    );
    // While the silent peer holds its connection, others are served.
    s.ok(ALICE, &["lifecycle", "list"]);
    let mut answer = String::new();
    silent.read_to_string(&mut answer).unwrap();
    assert!(
        answer.contains("request refused: not complete within 10s"),
        "{answer}"
    );
    s.ok(ALICE, &["lifecycle", "list"]);
}
