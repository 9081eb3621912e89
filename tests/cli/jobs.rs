//! Unattended jobs: run control (time limit, keep-alive, a panic), the per-run log file,
//! email notifications through a real SMTP server (aiosmtpd), confidential-flag policies, and
//! `custodian serve` with its signals.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, text};

/// An SMTP server on loopback (Python's aiosmtpd) that stores what it receives in a Maildir.
pub struct Smtpd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn python() -> PathBuf {
    let python = std::env::var_os("CUSTODIAN_SMTPD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/custodian-smtpd/bin/python")
        });
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/test.sh`, which installs aiosmtpd from PyPI",
        python.display()
    );
    python
}

impl Smtpd {
    /// A plain server.
    pub fn start() -> Smtpd {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Mailbox"])
            .args(["-l", &format!("127.0.0.1:{port}")])
            .arg(dir.path().join("maildir"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Smtpd::ready(child, port, dir)
    }

    /// A server that requires STARTTLS (a certificate for `localhost` from a test CA made
    /// with openssl, whose certificate is [`Smtpd::cert`]) and AUTH as `user` with `password`.
    fn start_secure(user: &str, password: &str) -> Smtpd {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(d)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
        };
        // A test CA (trusted by the client through SSL_CERT_FILE) and a server certificate for
        // localhost signed by it.
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=custodian test CA",
            "-keyout",
            "ca.key",
            "-out",
            "cert.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "cert.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        let child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/smtpd.py"))
            .arg(port.to_string())
            .arg(dir.path().join("maildir"))
            .arg(dir.path().join("server.pem"))
            .arg(dir.path().join("key.pem"))
            .args([user, password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Smtpd::ready(child, port, dir)
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn ready(child: Child, port: u16, dir: tempfile::TempDir) -> Smtpd {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtpd { child, port, dir }
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir/new");
        let mut out: Vec<String> = std::fs::read_dir(new)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        out.sort();
        out
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn email_table(port: u16) -> String {
    format!(
        "\n[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsecurity = \"none\"\n\
         from = \"custodian@example.com\"\nportal_url = \"https://portal.example.com/\"\ntimeout_secs = 5\n"
    )
}

fn with_conversations(policy_extra: &str, n: usize) -> Env {
    let env = Env::new(policy_extra);
    for i in 0..n {
        env.conversation(
            "acme",
            1 + (i % 28) as u32,
            &format!("c{i:03}"),
            &[("a.wav", format!("audio {i}").as_bytes())],
        );
    }
    env
}

/// `custodian run export` with fault injection (tikv's `fail`: `name=action;…`).
fn run_with_failpoints(env: &Env, failpoints: &str) -> std::process::Output {
    env.command(&["run", "export"])
        .env("FAILPOINTS", failpoints)
        .output()
        .unwrap()
}

fn last_run(env: &Env) -> serde_json::Value {
    let (code, runs) = env.json(&["jobs", "list", "--limit", "1"]);
    assert_eq!(code, 0);
    runs[0].clone()
}

#[test]
fn a_run_past_its_time_limit_is_timed_out_and_the_next_run_goes_on() {
    let env = with_conversations("concurrency = 1\ntime_limit = \"1s\"", 12);
    let out = run_with_failpoints(&env, "export-item=sleep(250)");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = last_run(&env);
    assert_eq!(run["status"], "timed_out", "{run}");
    let done = run["counters"]["exported"].as_u64().unwrap();
    assert!((1..12).contains(&done), "{run}");
    assert!(
        run["error_summary"]
            .as_str()
            .unwrap()
            .contains("execution time limit (1s)"),
        "{run}"
    );
    // Without the slow items the next (incremental) run exports only the rest.
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["counters"]["exported"].as_u64().unwrap(), 12 - done);
    let (_, events) = env.json(&["audit", "list", "--kind", "conversation_exported"]);
    assert_eq!(events.as_array().unwrap().len(), 12);
}

#[test]
fn a_run_without_progress_is_stalled_and_ended() {
    let env = with_conversations("concurrency = 1\nkeep_alive = \"1s\"", 3);
    let started = Instant::now();
    let out = run_with_failpoints(&env, "export-item=sleep(30000)");
    assert!(started.elapsed() < Duration::from_secs(25), "not ended");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("keep-alive timeout (1s)"),
        "{}",
        text(&out)
    );
    let run = last_run(&env);
    assert_eq!(run["status"], "stalled", "{run}");
    assert!(run["finished_at"].is_string(), "{run}");
    // Nothing was lost: the next run exports all three.
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["counters"]["exported"], 3);
}

#[test]
fn sigterm_cancels_a_run_cleanly_and_the_next_run_goes_on() {
    let env = with_conversations("concurrency = 1", 10);
    let child = env
        .command(&["run", "export"])
        .env("FAILPOINTS", "export-item=sleep(300)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = last_run(&env);
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(run["manifest_key"].is_string(), "{run}");
    let done = run["counters"]["exported"].as_u64().unwrap();
    assert!(done < 10, "{run}");
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["counters"]["exported"].as_u64().unwrap(), 10 - done);
}

#[test]
fn a_panicking_run_is_recorded_as_failed() {
    let env = with_conversations("", 2);
    let out = run_with_failpoints(&env, "export-panic=return(export)");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("panicked"), "{}", text(&out));
    let run = last_run(&env);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error_summary"]
            .as_str()
            .unwrap()
            .contains("failpoint export-panic"),
        "{run}"
    );
}

#[test]
fn a_run_keeps_a_detailed_log_file() {
    let env = with_conversations("log_dir = \"logs\"", 3);
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0);
    let run = summary["run"].as_i64().unwrap();
    let path = env.path().join(format!("logs/export-{run}.log"));
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(log.contains("export run started"), "{log}");
    assert!(log.contains("exported acme/c001: 2 object(s)"), "{log}");
    assert!(log.contains("export run finished"), "{log}");
    let (_, shown) = env.json(&["jobs", "show", &run.to_string()]);
    assert_eq!(shown["log_path"], path.display().to_string());
}

#[test]
fn notifications_go_over_smtp_every_time_or_first_of_consecutive() {
    let smtpd = Smtpd::start();
    let env = with_conversations(
        "[policies.export.notify]\nto = \"a@example.com, Compliance <c@example.org>\"\n\
         on_completion = \"first_of_consecutive\"\non_failure = \"every_time\"",
        2,
    );
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}{}", email_table(smtpd.port)));
    for _ in 0..2 {
        let out = env.run(&["run", "export"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let mail = smtpd.messages();
    assert_eq!(mail.len(), 1, "{mail:?}");
    let first = &mail[0];
    assert!(
        first.contains("Subject: custodian: export run 1 succeeded"),
        "{first}"
    );
    assert!(
        first.contains("a@example.com") && first.contains("Compliance <c@example.org>"),
        "{first}"
    );
    assert!(
        first.contains("https://portal.example.com/runs/1"),
        "{first}"
    );
    assert!(first.contains("2 exported"), "{first}");
    let (_, runs) = env.json(&["jobs", "list"]);
    assert!(
        runs[1]["notification"]
            .as_str()
            .unwrap()
            .starts_with("sent to a@example.com, c@example.org")
    );
    assert!(runs[0]["notification"].is_null(), "{runs}");
    // A failure is sent every time (the new conversation panics in both runs).
    env.conversation("acme", 9, "new", &[("a.wav", b"x")]);
    for _ in 0..2 {
        let out = run_with_failpoints(&env, "export-panic=return(export)");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }
    let mail = smtpd.messages();
    assert_eq!(mail.len(), 3, "{mail:?}");
    assert!(
        mail.iter()
            .filter(|m| m.contains("FAILED (failed)"))
            .count()
            == 2
    );
}

#[test]
fn an_unreachable_smtp_server_does_not_fail_the_run() {
    let env = with_conversations(
        "[policies.export.notify]\nto = \"a@example.com\"\non_completion = \"every_time\"",
        1,
    );
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}{}", email_table(free_port())));
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("notification: failed: email to a@example.com through 127.0.0.1:"),
        "{}",
        text(&out)
    );
    let run = last_run(&env);
    assert_eq!(run["status"], "succeeded");
    assert!(
        run["notification"].as_str().unwrap().starts_with("failed:"),
        "{run}"
    );
}

#[test]
fn notifications_use_starttls_and_a_password_from_the_environment() {
    let smtpd = Smtpd::start_secure("custodian", "s3cret");
    let env = with_conversations(
        "[policies.export.notify]\nto = \"a@example.com\"\non_completion = \"every_time\"",
        1,
    );
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!(
        "{config}\n[email]\nsmtp_host = \"localhost\"\nsmtp_port = {}\nsecurity = \"starttls\"\n\
         username = \"custodian\"\npassword_env = \"TEST_SMTP_PASSWORD\"\nfrom = \"custodian@example.com\"\n",
        smtpd.port
    ));
    let run = |password: Option<&str>| {
        let mut cmd = env.command(&["run", "export"]);
        cmd.env("SSL_CERT_FILE", smtpd.cert());
        match password {
            Some(p) => cmd.env("TEST_SMTP_PASSWORD", p),
            None => cmd.env_remove("TEST_SMTP_PASSWORD"),
        };
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        text(&out)
    };
    let out = run(Some("s3cret"));
    assert!(out.contains("notification: sent to a@example.com"), "{out}");
    assert_eq!(smtpd.messages().len(), 1);
    let out = run(Some("wrong"));
    assert!(out.contains("notification: failed:"), "{out}");
    let out = run(None);
    assert!(
        out.contains("environment variable TEST_SMTP_PASSWORD (email.password_env) is not set"),
        "{out}"
    );
    assert_eq!(smtpd.messages().len(), 1);
}

const FLAG_POLICIES: &str = r#"
[policies.flag]
action = "confidential"
flag = "set"
mode = "incremental"
[policies.flag.filter]
tenants = ["acme"]

[policies.unflag]
action = "confidential"
flag = "clear"
mode = "full"

[policies.export.filter]
confidential = true
"#;

#[test]
fn confidential_policies_set_and_clear_the_flag_with_audit_events() {
    let env = Env::new("");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}{FLAG_POLICIES}"));
    for i in 0..3 {
        env.conversation("acme", 2, &format!("a{i}"), &[("a.wav", b"acme")]);
    }
    env.conversation("globex", 2, "g0", &[("a.wav", b"globex")]);
    let (code, plan) = env.json(&["plan", "flag"]);
    assert_eq!(code, 0);
    assert_eq!(
        (plan["conversations"].as_u64(), plan["changes"].as_u64()),
        (Some(3), Some(3))
    );

    let (code, s) = env.json(&["run", "flag"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(
        (s["processed"].as_u64(), s["counters"]["flagged"].as_u64()),
        (Some(3), Some(3))
    );
    // Incremental: processed conversations are remembered.
    let (_, s) = env.json(&["run", "flag"]);
    assert_eq!(s["processed"], 0, "{s}");
    let (_, events) = env.json(&["audit", "list", "--kind", "confidential_flag_changed"]);
    assert_eq!(events.as_array().unwrap().len(), 3);
    assert_eq!(events[0]["details"]["confidential"], true);
    assert_eq!(events[0]["policy"], "flag");

    // The flag survives reindexing a changed record, filters see it, and the export's
    // metadata files carry it.
    let dir = env.root().join(Env::rel_dir("acme", 2, "a0"));
    let record = std::fs::read_to_string(dir.join("conversation.json")).unwrap();
    std::fs::write(dir.join("conversation.json"), format!("{record}\n")).unwrap();
    let (code, s) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["counters"]["exported"], 3);
    let meta = env.archive().join("acme/2026/01/02/a0/conversation.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    assert_eq!(
        meta["conversation"]["flags"]["confidential"], true,
        "{meta}"
    );
    assert!(!env.archive().join("globex").exists());

    // Full mode goes through every match each run; only real changes are audited.
    let (_, s) = env.json(&["run", "unflag"]);
    assert_eq!(
        (s["processed"].as_u64(), s["counters"]["flagged"].as_u64()),
        (Some(4), Some(3))
    );
    let (_, s) = env.json(&["run", "unflag"]);
    assert_eq!(
        (s["processed"].as_u64(), s["counters"]["flagged"].as_u64()),
        (Some(4), Some(0))
    );
    let (_, events) = env.json(&["audit", "list", "--kind", "confidential_flag_changed"]);
    assert_eq!(events.as_array().unwrap().len(), 6);
    let (code, verified) = env.json(&["audit", "verify"]);
    assert_eq!(code, 0, "{verified}");
}

/// Waits until `custodian jobs list` shows `n` finished runs of `policy` (`serve` logging to
/// `log`).
pub fn wait_for_runs(
    env: &Env,
    log: &Path,
    policy: &str,
    n: usize,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, runs) = env.json(&["jobs", "list", "--policy", policy]);
        let done = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] != "running")
            .count();
        if done >= n {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{policy}: no run within {within:?}: {runs}\nserve said: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// Starts `custodian serve` with `failpoints`, its stderr going to the returned log file.
pub fn serve_with(env: &Env, failpoints: &str) -> (Child, PathBuf) {
    serve_with_grace(env, failpoints, "20s")
}

fn serve_with_grace(env: &Env, failpoints: &str, grace: &str) -> (Child, PathBuf) {
    let log = env.path().join("serve.log");
    let serve = env
        .command(&["serve", "--shutdown-grace", grace])
        .env("FAILPOINTS", failpoints)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (serve, log)
}

/// Sends SIGTERM to `serve` and returns its exit code and log once it has stopped.
pub fn terminate(mut serve: Child, log: &Path) -> (Option<i32>, String) {
    signal(&serve, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = serve.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.code(), std::fs::read_to_string(log).unwrap())
}

#[test]
fn serve_runs_due_policies_survives_a_panic_reloads_and_stops_on_sigterm() {
    let env = with_conversations("schedule = \"cron * * * * *\"\ntimezone = \"UTC\"", 3);
    let config = std::fs::read_to_string(env.config()).unwrap();
    let config = format!(
        "{config}\n[policies.boom]\naction = \"export\"\ntarget = \"archive\"\nschedule = \"cron * * * * *\"\n"
    );
    env.write_config(&config);
    let (serve, log) = serve_with(&env, "export-panic=return(boom)");
    let runs = wait_for_runs(&env, &log, "boom", 1, Duration::from_secs(150));
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    assert!(
        runs[0]["error_summary"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{runs}"
    );
    let runs = wait_for_runs(&env, &log, "export", 1, Duration::from_secs(30));
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    assert_eq!(runs[0]["counters"]["exported"], 3);

    // A bad config is refused on SIGHUP and the running one kept.
    let wait_for_log = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logged = std::fs::read_to_string(&log).unwrap();
            if logged.contains(needle) {
                return logged;
            }
            assert!(Instant::now() < deadline, "no `{needle}` in: {logged}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    env.write_config(&config.replace("cron * * * * *\"\ntimezone", "cron 61 * * * *\"\ntimezone"));
    signal(&serve, nix::sys::signal::Signal::SIGHUP);
    let logged = wait_for_log("not reloaded");
    assert!(logged.contains("policies.export.schedule"), "{logged}");
    env.write_config(&config);
    signal(&serve, nix::sys::signal::Signal::SIGHUP);
    wait_for_log("reloaded: 2 scheduled jobs");

    let (code, logged) = terminate(serve, &log);
    assert_eq!(code, Some(0), "{logged}");
    assert!(logged.contains("run started"), "{logged}");
    assert!(logged.contains("stopped"), "{logged}");
}

#[test]
fn serve_records_a_run_that_cannot_start_and_cancels_one_in_flight_on_sigterm() {
    let env = with_conversations(
        "schedule = \"cron * * * * *\"\ntimezone = \"UTC\"\nconcurrency = 1",
        10,
    );
    let blocked = env.path().join("blocked");
    std::fs::write(&blocked, b"a file where the target directory should be").unwrap();
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!(
        "{config}\n[targets.blocked]\nkind = \"filesystem\"\npath = \"{}\"\n\n\
         [policies.stuck]\naction = \"export\"\ntarget = \"blocked\"\nschedule = \"cron * * * * *\"\n",
        blocked.display()
    ));
    let (serve, log) = serve_with(&env, "export-item=sleep(500)");

    // A run process that stops before its run begins is still recorded, with its reason.
    let runs = wait_for_runs(&env, &log, "stuck", 1, Duration::from_secs(150));
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    let summary = runs[0]["error_summary"].as_str().unwrap();
    assert!(
        summary.contains("could not start") && summary.contains("target `blocked` is not usable"),
        "{runs}"
    );

    // SIGTERM while the export is going: serve passes it on, the run ends `cancelled` with what
    // it finished, and the next run exports the rest.
    wait_for_running(&env, &log, "export", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(600));
    let (code, logged) = terminate(serve, &log);
    assert_eq!(code, Some(0), "{logged}");
    let (_, runs) = env.json(&["jobs", "list", "--policy", "export"]);
    assert_eq!(runs[0]["status"], "cancelled", "{runs}\n{logged}");
    let done = runs[0]["counters"]["exported"].as_u64().unwrap();
    assert!(done < 10, "{runs}");
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["counters"]["exported"].as_u64().unwrap(), 10 - done);
    let (_, events) = env.json(&["audit", "list", "--kind", "conversation_exported"]);
    assert_eq!(events.as_array().unwrap().len(), 10);
}

/// Waits until `policy`'s latest run is going.
fn wait_for_running(env: &Env, log: &Path, policy: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (_, runs) = env.json(&["jobs", "list", "--policy", policy]);
        if runs[0]["status"] == "running" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{policy} never started: {runs}\nserve said: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_run_still_going_after_the_shutdown_grace_is_killed_and_recorded_cancelled() {
    let env = with_conversations(
        "schedule = \"cron * * * * *\"\ntimezone = \"UTC\"\nconcurrency = 1",
        3,
    );
    let (serve, log) = serve_with_grace(&env, "export-item=sleep(30000)", "1s");
    wait_for_running(&env, &log, "export", Duration::from_secs(150));
    let (code, logged) = terminate(serve, &log);
    assert_eq!(code, Some(0), "{logged}");
    assert!(
        logged.contains("did not stop within 1s; killing it"),
        "{logged}"
    );
    let (_, runs) = env.json(&["jobs", "list", "--policy", "export"]);
    assert_eq!(runs[0]["status"], "cancelled", "{runs}\n{logged}");
    assert!(
        runs[0]["error_summary"]
            .as_str()
            .unwrap()
            .contains("did not end within the shutdown grace"),
        "{runs}"
    );
    let (code, summary) = env.json(&["run", "export"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["counters"]["exported"], 3, "{summary}");
}

#[test]
fn processes_starting_together_on_a_new_catalog_all_open_it() {
    // `serve` and a `jobs list` started at once on a new catalog once failed with "database is
    // locked" (once in 180 such processes, 6 at a time, on this machine).
    for _ in 0..12 {
        let env = Env::new("");
        let children: Vec<_> = (0..6)
            .map(|_| {
                env.command(&["jobs", "list"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
    }
}
