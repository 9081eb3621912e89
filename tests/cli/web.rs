//! The web portal (`serve --listen`) end to end, over HTTP and HTTPS with a real client:
//! logging in and out, the login throttle, CSRF tokens, permissions from the roles file, the
//! runs pages, hostile text shown as text, and the refusal of plain HTTP off loopback.

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::common::{Env, text};

pub const PASSWORD: &str = "correct horse battery";

/// An installation whose roles file grants `grants` to every user, and, for named users,
/// the lines of `users` (TOML, under `[users]`).
fn env_granting(grants: &str, users: &str) -> Env {
    let env = Env::new("");
    std::fs::write(
        env.path().join("roles.toml"),
        format!("[users]\n\"*\" = {grants}\n{users}"),
    )
    .unwrap();
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}\n[lifecycle]\nroles = \"roles.toml\"\n"));
    env
}

/// `custodian user add NAME` with the password on stdin.
pub fn add_user(env: &Env, name: &str, password: &str) -> std::process::Output {
    let mut child = env
        .command(&["user", "add", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

/// `custodian serve --listen 127.0.0.1:0 ARGS…`, stopped (SIGTERM) when dropped.
pub struct Portal {
    child: Child,
    pub url: String,
    client: Client,
}

impl Portal {
    pub fn start(env: &Env, args: &[&str]) -> Portal {
        Portal::start_with(env, args, plain_client(), &[])
    }

    /// As [`Portal::start`], with serve's client and environment variables `vars`.
    fn start_with(env: &Env, args: &[&str], client: Client, vars: &[(&str, &str)]) -> Portal {
        let log = env.path().join("serve.log");
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let child = env
            .command(&all)
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let url = listening_url(&log);
        Portal { child, url, client }
    }

    fn get(&self, path: &str, session: Option<&str>) -> Response {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(s) = session {
            request = request.header(COOKIE, format!("custodian_session={s}"));
        }
        request.send().unwrap()
    }

    fn post(&self, path: &str, session: Option<&str>, form: &[(&str, &str)]) -> Response {
        let mut request = self.client.post(format!("{}{path}", self.url)).form(form);
        if let Some(s) = session {
            request = request.header(COOKIE, format!("custodian_session={s}"));
        }
        request.send().unwrap()
    }

    /// Logs in through the login form: the session id, or the refusal.
    fn login(&self, name: &str, password: &str) -> Result<String, Box<Response>> {
        let form = self
            .client
            .get(format!("{}/login", self.url))
            .send()
            .unwrap();
        assert_eq!(form.status(), StatusCode::OK);
        let login_cookie = cookie_value(&form, "custodian_login").expect("login cookie");
        let csrf = hidden(&form.text().unwrap(), "csrf");
        let response = self
            .client
            .post(format!("{}/login", self.url))
            .header(COOKIE, format!("custodian_login={login_cookie}"))
            .form(&[
                ("name", name),
                ("password", password),
                ("csrf", csrf.as_str()),
                ("next", "/runs"),
            ])
            .send()
            .unwrap();
        match cookie_value(&response, "custodian_session") {
            Some(session) if response.status() == StatusCode::SEE_OTHER => Ok(session),
            _ => Err(Box::new(response)),
        }
    }

    /// The CSRF token of the forms `session` is shown.
    fn csrf(&self, session: &str) -> String {
        hidden(&self.get("/runs", Some(session)).text().unwrap(), "csrf")
    }
}

impl Portal {
    /// Sends serve SIGTERM and waits for it to end.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.child.wait().unwrap()
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A client that follows no redirects (the tests look at them), over ring's TLS provider.
fn plain_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The portal's URL from serve's log, once it listens.
pub fn listening_url(log: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("web portal listening on "))
        {
            return line
                .rsplit("listening on ")
                .next()
                .unwrap()
                .trim()
                .to_owned();
        }
        assert!(Instant::now() < deadline, "serve did not listen: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value a `Set-Cookie` header of `response` gives cookie `name` (None when cleared).
pub fn cookie_value(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

/// The value of the first hidden input `name` of a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

/// An installation with one export run done (run 1) and account `alice`.
fn with_a_run(grants: &str) -> Env {
    let env = env_granting(grants, "");
    env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-a")]);
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = add_user(&env, "alice", PASSWORD);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    env
}

#[test]
fn an_account_logs_in_sees_the_runs_and_logs_out() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let portal = Portal::start(&env, &[]);

    let anonymous = portal.get("/runs", None);
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[LOCATION], "/login?next=/runs");

    let session = portal.login("alice", PASSWORD).expect("logged in");
    let runs = portal.get("/runs", Some(&session));
    assert_eq!(runs.status(), StatusCode::OK);
    let page = runs.text().unwrap();
    assert!(
        page.contains("href=\"/runs/1\"") && page.contains("succeeded"),
        "{page}"
    );

    let run = portal.get("/runs/1", Some(&session)).text().unwrap();
    assert!(
        run.contains("Run 1") && run.contains("conversation_exported"),
        "{run}"
    );

    // Logging out needs the session's CSRF token; without it nothing changes.
    let csrf = portal.csrf(&session);
    let refused = portal.post("/logout", Some(&session), &[]);
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(portal.get("/runs", Some(&session)).status(), StatusCode::OK);
    let out = portal.post("/logout", Some(&session), &[("csrf", &csrf)]);
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        portal.get("/runs", Some(&session)).status(),
        StatusCode::SEE_OTHER,
        "the session ended"
    );
    drop(portal);
}

#[cfg(feature = "postgres")]
#[test]
fn accounts_and_sessions_work_the_same_on_a_postgres_catalog() {
    let scratch = crate::postgres::Scratch::new("web");
    let env = env_granting(r#"["JOBS_READ"]"#, "");
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&config.replace("sqlite:catalog.db", &scratch.url()));
    env.conversation("acme", 1, "c1", &[("a.wav", b"RIFF-a")]);
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = add_user(&env, "alice", PASSWORD);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let portal = Portal::start(&env, &[]);
    assert!(portal.login("alice", "not the password").is_err());
    let session = portal.login("alice", PASSWORD).expect("logged in");
    let page = portal.get("/runs/1", Some(&session)).text().unwrap();
    assert!(page.contains("Run 1"), "{page}");
    let csrf = portal.csrf(&session);
    portal.post("/logout", Some(&session), &[("csrf", &csrf)]);
    assert_eq!(
        portal.get("/runs", Some(&session)).status(),
        StatusCode::SEE_OTHER
    );
}

#[test]
fn a_wrong_password_or_unknown_account_gets_no_session() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let portal = Portal::start(&env, &[]);
    for (name, password) in [("alice", "correct horse batterx"), ("mallory", PASSWORD)] {
        let refused = portal.login(name, password).expect_err("refused");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(
            refused
                .text()
                .unwrap()
                .contains("wrong account name or password")
        );
    }
    // A made-up session id is no session.
    let forged = "ab".repeat(32);
    assert_eq!(
        portal.get("/runs", Some(&forged)).status(),
        StatusCode::SEE_OTHER
    );
}

#[test]
fn logins_are_throttled_per_account_and_say_when_to_retry() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let portal = Portal::start(&env, &[]);
    for _ in 0..5 {
        let refused = portal
            .login("alice", "not the password")
            .expect_err("refused");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused, before it is checked.
    let throttled = portal.login("alice", PASSWORD).expect_err("throttled");
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    assert!(throttled.text().unwrap().contains("try again in"));
}

#[test]
fn a_login_post_without_the_login_forms_token_is_refused() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let portal = Portal::start(&env, &[]);
    let response = portal.post(
        "/login",
        None,
        &[("name", "alice"), ("password", PASSWORD), ("csrf", "guess")],
    );
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(cookie_value(&response, "custodian_session").is_none());
}

#[test]
fn a_user_without_jobs_read_cannot_see_runs_and_an_unknown_run_is_404() {
    let env = with_a_run(r#"[]"#);
    let out = add_user(&env, "bob", PASSWORD);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(
        env.path().join("roles.toml"),
        "[users]\nbob = [\"JOBS_READ\"]\n",
    )
    .unwrap();
    let portal = Portal::start(&env, &[]);
    let alice = portal.login("alice", PASSWORD).unwrap();
    for path in ["/runs", "/runs/1"] {
        let denied = portal.get(path, Some(&alice));
        assert_eq!(denied.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(denied.text().unwrap().contains("JOBS_READ"), "{path}");
    }
    let bob = portal.login("bob", PASSWORD).unwrap();
    for path in ["/runs/999", "/runs/nope"] {
        let missing = portal.get(path, Some(&bob));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(missing.text().unwrap().contains("no job run"), "{path}");
    }
}

#[test]
fn an_api_token_authenticates_and_a_revoked_one_does_not() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let out = env.run(&["user", "token", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let portal = Portal::start(&env, &[]);
    let bearer = |token: &str| {
        portal
            .client
            .get(format!("{}/runs", portal.url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(bearer(&token), StatusCode::OK);
    assert_eq!(bearer("cust_not-a-token"), StatusCode::UNAUTHORIZED);
    let out = env.run(&["user", "remove", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(bearer(&token), StatusCode::UNAUTHORIZED);
}

#[test]
fn plain_http_off_loopback_is_refused_unless_forced() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let out = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("--insecure-http") && said.contains("0.0.0.0"),
        "{said}"
    );
    // A port in use is a clear startup error too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = env.run(&["serve", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        text(&out)
    );
}

#[test]
fn tls_serves_with_a_certificate_and_marks_cookies_secure() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_file = env.path().join("cert.pem");
    let key_file = env.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let portal = Portal::start_with(
        &env,
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
        client,
        &[],
    );
    assert!(portal.url.starts_with("https://"), "{}", portal.url);
    let form = portal
        .client
        .get(format!("{}/login", portal.url))
        .send()
        .unwrap();
    let set = form.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let session = portal.login("alice", PASSWORD).expect("logged in over TLS");
    assert_eq!(portal.get("/runs", Some(&session)).status(), StatusCode::OK);
    // Plain HTTP to the TLS port gets nothing.
    let plain = plain_client()
        .get(portal.url.replace("https://", "http://") + "/login")
        .send();
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[test]
fn each_account_change_leaves_one_audit_event_naming_who_and_no_secret() {
    let env = env_granting(r#"["AUDIT_READ"]"#, "");
    let mut child = env
        .command(&["user", "add", "alice", "--group", "compliance"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = env.run(&["user", "token", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    for refused in [
        vec!["user", "token", "nobody"],
        vec!["user", "remove", "nobody"],
    ] {
        assert_eq!(env.run(&refused).status.code(), Some(2), "{refused:?}");
    }
    assert_eq!(add_user(&env, "alice", PASSWORD).status.code(), Some(2));
    let out = env.run(&["user", "remove", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let (code, events) = env.json(&["audit", "list"]);
    assert_eq!(code, 0);
    let events = events.as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["account_added", "account_token_issued", "account_removed"],
        "one event each, none for a refused command"
    );
    for event in events {
        assert_eq!(event["actor"], me.as_str(), "{event}");
        assert_eq!(event["details"]["account"], "alice", "{event}");
        assert_eq!(
            event["details"]["groups"],
            serde_json::json!(["compliance"])
        );
    }
    let (_, removed) = env.json(&["audit", "list", "--kind", "account_removed"]);
    assert_eq!(removed.as_array().unwrap().len(), 1, "{removed}");
    let trail = serde_json::to_string(&events).unwrap();
    for secret in [PASSWORD, token.as_str(), "argon2"] {
        assert!(!trail.contains(secret), "{secret} in {trail}");
    }
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn user_commands_refuse_bad_names_and_short_passwords() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    for (name, password, needle) in [
        ("<script>", PASSWORD, "is not valid"),
        ("a b", PASSWORD, "is not valid"),
        ("carol", "short", "too short"),
        ("alice", PASSWORD, "already exists"),
    ] {
        let out = add_user(&env, name, password);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains(needle), "{name}: {}", text(&out));
    }
    let out = env.run(&["user", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out)
    );
    let out = env.run(&["user", "remove", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no account named `nobody`"),
        "{}",
        text(&out)
    );
    let out = env.run(&["user", "token", "nobody"]);
    assert_eq!(out.status.code(), Some(2));

    // Only the catalog's owner manages accounts (handing the catalog to another user needs
    // root).
    if !crate::osusers::available("user_commands_refuse_bad_names_and_short_passwords") {
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    std::os::unix::fs::chown(env.path().join("catalog.db"), Some(nobody.as_raw()), None).unwrap();
    for args in [
        &["user", "list"][..],
        &["user", "token", "alice"],
        &["user", "remove", "alice"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("only the catalog's owner, nobody"),
            "{}",
            text(&out)
        );
    }
    let out = add_user(&env, "carol", PASSWORD);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// Roles for the lifecycle pages: alice requests changes (and could approve others'), bob
/// approves, reader only reads; root (the tests' command line) sets policies up.
pub const LIFECYCLE_ROLES: &str = r#"
root = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "LEGAL_HOLD_READ", "LEGAL_HOLD_MANAGE"]
alice = ["ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_APPROVE", "LEGAL_HOLD_READ"]
bob = ["ARTIFACTS_LIFECYCLE_POLICY_APPROVE"]
"#;

/// An installation with accounts alice, bob and reader, every user reading lifecycle
/// policies, and a delete policy `voice-30d` with version v1 (`lifecycle` adds to the
/// `[lifecycle]` table).
pub fn lifecycle_env(lifecycle: &str, description: &str) -> Env {
    let env = env_granting(
        r#"["ARTIFACTS_LIFECYCLE_POLICY_READ", "JOBS_READ"]"#,
        LIFECYCLE_ROLES,
    );
    let config = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{config}{lifecycle}\n"));
    for name in ["alice", "bob", "reader"] {
        let out = add_user(&env, name, PASSWORD);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    for args in [
        &[
            "lifecycle",
            "create",
            "voice-30d",
            "--artifact-type",
            "audio_recording",
            "--audio-type",
            "conference_customer",
            "--description",
            description,
        ][..],
        &[
            "lifecycle",
            "version",
            "voice-30d",
            "v1",
            "--delete-after-days",
            "30",
        ],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    }
    env
}

/// The lifecycle page's form posting to `action`: its acknowledgment values, which must be the
/// exact acknowledgments with their texts as labels.
fn acknowledgments(page: &str, action: &str) -> Vec<String> {
    let form = page
        .split("<form")
        .find(|f| f.contains(&format!("action=\"{action}\"")))
        .unwrap_or_else(|| panic!("no form posting to {action} in {page}"));
    let form = &form[..form.find("</form>").unwrap()];
    form.split("name=\"ack\" value=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .collect()
}

#[test]
fn a_policy_is_enabled_through_its_acknowledgment_checkboxes_and_not_by_a_reader() {
    let env = lifecycle_env("", "30 days");
    let portal = Portal::start(&env, &[]);
    let enable = "/lifecycle/policies/voice-30d/enable";

    let reader = portal.login("reader", PASSWORD).unwrap();
    let page = portal.get("/lifecycle", Some(&reader)).text().unwrap();
    assert!(
        page.contains("Artifacts deleted by this policy cannot be retrieved."),
        "{page}"
    );
    let acks = acknowledgments(&page, enable);
    assert_eq!(acks, ["storage-overage", "irreversible-delete"]);
    let csrf = hidden(&page, "csrf");
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend(acks.iter().map(|a| ("ack", a.as_str())));
    let denied = portal.post(enable, Some(&reader), &form);
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert!(
        denied
            .text()
            .unwrap()
            .contains("ARTIFACTS_LIFECYCLE_POLICY_CREATE")
    );

    let alice = portal.login("alice", PASSWORD).unwrap();
    let csrf = portal.csrf(&alice);
    // Without its CSRF token, or without every acknowledgment, nothing changes.
    let no_csrf = portal.post(
        enable,
        Some(&alice),
        &[("ack", "storage-overage"), ("ack", "irreversible-delete")],
    );
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let missing = portal.post(
        enable,
        Some(&alice),
        &[("csrf", &csrf), ("ack", "storage-overage")],
    );
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert!(missing.text().unwrap().contains("irreversible-delete"));
    let (_, listed) = env.json(&["lifecycle", "list"]);
    assert_eq!(listed[0]["enabled"], false, "{listed}");

    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend(acks.iter().map(|a| ("ack", a.as_str())));
    let done = portal.post(enable, Some(&alice), &form);
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().unwrap().contains("now enabled"));
    let (_, listed) = env.json(&["lifecycle", "list"]);
    assert_eq!(listed[0]["enabled"], true, "{listed}");
    // The acknowledgments are on the trail under alice's name.
    let page = portal.get("/lifecycle", Some(&alice)).text().unwrap();
    assert!(
        page.contains("lifecycle_acknowledged") && page.contains("alice"),
        "{page}"
    );
}

#[test]
fn under_four_eyes_a_requester_cannot_approve_its_own_change_and_another_user_can() {
    let env = lifecycle_env("approvals = 2", "30 days");
    let portal = Portal::start(&env, &[]);
    let alice = portal.login("alice", PASSWORD).unwrap();
    let page = portal.get("/lifecycle", Some(&alice)).text().unwrap();
    let activate = "/lifecycle/policies/voice-30d/activate";
    let acks = acknowledgments(&page, activate);
    let csrf = hidden(&page, "csrf");
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf), ("version", "v1")];
    form.extend(acks.iter().map(|a| ("ack", a.as_str())));
    let requested = portal.post(activate, Some(&alice), &form);
    assert_eq!(requested.status(), StatusCode::OK);
    assert!(requested.text().unwrap().contains("awaits approval"));

    let approve = "/lifecycle/changes/1/approve";
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend(acks.iter().map(|a| ("ack", a.as_str())));
    let own = portal.post(approve, Some(&alice), &form);
    assert_eq!(own.status(), StatusCode::BAD_REQUEST);
    assert!(own.text().unwrap().contains("alice"));

    let bob = portal.login("bob", PASSWORD).unwrap();
    let page = portal.get("/lifecycle", Some(&bob)).text().unwrap();
    assert_eq!(acknowledgments(&page, approve), acks);
    let csrf = hidden(&page, "csrf");
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    form.extend(acks.iter().map(|a| ("ack", a.as_str())));
    let approved = portal.post(approve, Some(&bob), &form);
    assert_eq!(approved.status(), StatusCode::OK);
    assert!(approved.text().unwrap().contains("approved"));
    let (_, listed) = env.json(&["lifecycle", "list"]);
    assert_eq!(listed[0]["active_version"], "v1", "{listed}");
}

pub const SCRIPT: &str = "<script>alert(1)";
pub const IMG: &str = "\"><img src=x onerror=alert(2)>";

#[test]
fn hostile_text_from_records_and_names_is_shown_escaped_on_every_page() {
    let env = lifecycle_env("", &format!("{SCRIPT} {IMG}"));
    let ok = env.conversation(
        "acme",
        1,
        &format!("c1{SCRIPT}"),
        &[(&format!("{IMG}.wav"), b"RIFF-a")],
    );
    assert!(ok.exists());
    // A second conversation whose recording is missing: a failed item naming the file.
    let missing = env.conversation("acme", 2, "c2", &[(&format!("{IMG}.wav"), b"RIFF-b")]);
    std::fs::remove_file(missing.join(format!("{IMG}.wav"))).unwrap();
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = env.run(&["hold", "create", "m", "--description", SCRIPT]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(
        env.path().join("roles.toml"),
        format!(
            "[users]\n\"*\" = [\"ARTIFACTS_LIFECYCLE_POLICY_READ\", \"JOBS_READ\", \"AUDIT_READ\", \"LEGAL_HOLD_READ\"]\n{LIFECYCLE_ROLES}"
        ),
    )
    .unwrap();

    let portal = Portal::start(&env, &[]);
    let reader = portal.login("reader", PASSWORD).unwrap();
    let run = portal.get("/runs/1", Some(&reader)).text().unwrap();
    assert!(
        run.contains("img src=x onerror"),
        "the failed item names the file: {run}"
    );
    for path in [
        "/runs/1",
        "/audit",
        "/lifecycle",
        "/runs?policy=%3Cscript%3E",
        "/audit?conversation=%3Cscript%3E",
    ] {
        let response = portal.get(path, Some(&reader));
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let page = response.text().unwrap();
        assert!(!page.contains("<script>"), "{path}: {page}");
        assert!(!page.contains("<img"), "{path}: {page}");
        assert!(
            page.contains("&lt;script&gt;") || page.contains("&lt;img"),
            "{path}: {page}"
        );
    }
}

#[test]
fn the_policies_and_audit_pages_need_their_permissions() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let portal = Portal::start(&env, &[]);
    let alice = portal.login("alice", PASSWORD).unwrap();
    let policies = portal.get("/policies", Some(&alice));
    assert_eq!(policies.status(), StatusCode::OK);
    let page = policies.text().unwrap();
    assert!(
        page.contains("export") && page.contains("manual") && page.contains("/runs/1"),
        "{page}"
    );
    let audit = portal.get("/audit", Some(&alice));
    assert_eq!(audit.status(), StatusCode::FORBIDDEN);
    assert!(audit.text().unwrap().contains("AUDIT_READ"));
    let lifecycle = portal.get("/lifecycle", Some(&alice));
    assert_eq!(lifecycle.status(), StatusCode::FORBIDDEN);

    std::fs::write(
        env.path().join("roles.toml"),
        "[users]\n\"*\" = [\"AUDIT_READ\"]\n",
    )
    .unwrap();
    let audit = portal.get("/audit?run=1", Some(&alice)).text().unwrap();
    assert!(
        audit.contains("has not been verified from the portal or the API yet")
            && audit.contains("conversation_exported"),
        "{audit}"
    );
    assert_eq!(
        portal.get("/policies", Some(&alice)).status(),
        StatusCode::FORBIDDEN
    );
}

/// The page at `path` once it holds `wanted` (serve's run process writes its history row as
/// it starts).
#[cfg(feature = "failpoints")]
fn page_once_it_shows(portal: &Portal, session: &str, path: &str, wanted: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = portal.get(path, Some(session)).text().unwrap();
        if page.contains(wanted) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never showed {wanted}: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(feature = "failpoints")]
#[test]
fn run_now_from_the_policies_page_starts_one_run_and_needs_jobs_run() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    // A new conversation, whose export waits long: the requests that follow come while it runs.
    env.conversation("acme", 1, "c2", &[("b.wav", b"RIFF-b")]);
    let portal = Portal::start_with(
        &env,
        &["--shutdown-grace", "1s"],
        plain_client(),
        &[("FAILPOINTS", "export-item=sleep(60000)")],
    );
    let alice = portal.login("alice", PASSWORD).unwrap();
    let page = portal.get("/policies", Some(&alice)).text().unwrap();
    assert!(page.contains(r#"action="/policies/export/run""#), "{page}");
    let csrf = hidden(&page, "csrf");
    let refused = portal.post(
        "/policies/export/run",
        Some(&alice),
        &[("csrf", csrf.as_str())],
    );
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().unwrap().contains("JOBS_RUN"));

    std::fs::write(
        env.path().join("roles.toml"),
        "[users]\n\"*\" = [\"JOBS_READ\", \"JOBS_RUN\"]\n",
    )
    .unwrap();
    let forged = portal.post("/policies/export/run", Some(&alice), &[("csrf", "forged")]);
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        !portal
            .get("/runs", Some(&alice))
            .text()
            .unwrap()
            .contains("/runs/2")
    );
    let started = portal.post(
        "/policies/export/run",
        Some(&alice),
        &[("csrf", csrf.as_str())],
    );
    assert_eq!(started.status(), StatusCode::OK);
    let said = started.text().unwrap();
    assert!(
        said.contains("Run of export started at") && said.contains(r#"href="/runs?policy=export""#),
        "{said}"
    );
    let process = said
        .split("(process ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .to_owned();
    let runs = page_once_it_shows(&portal, &alice, "/runs?policy=export", r#"href="/runs/2""#);
    assert!(runs.contains("running"), "{runs}");
    let again = portal.post(
        "/policies/export/run",
        Some(&alice),
        &[("csrf", csrf.as_str())],
    );
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let again = again.text().unwrap();
    assert!(
        again.contains("policy `export` is already running since ")
            && again.contains(&format!("(process {process})")),
        "{again}"
    );
    let unknown = portal.post(
        "/policies/nightly/run",
        Some(&alice),
        &[("csrf", csrf.as_str())],
    );
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[test]
fn audit_shows_the_last_verification_and_verifying_again_catches_an_earlier_edit() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let portal = Portal::start(&env, &[]);
    let alice = portal.login("alice", PASSWORD).unwrap();
    let csrf = portal.csrf(&alice);
    let refused = portal.post("/audit/verify", Some(&alice), &[("csrf", csrf.as_str())]);
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    std::fs::write(
        env.path().join("roles.toml"),
        "[users]\n\"*\" = [\"AUDIT_READ\"]\n",
    )
    .unwrap();
    let page = portal.get("/audit", Some(&alice)).text().unwrap();
    assert!(
        page.contains("has not been verified from the portal or the API yet"),
        "{page}"
    );
    let forged = portal.post("/audit/verify", Some(&alice), &[("csrf", "forged")]);
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let verified = portal.post("/audit/verify", Some(&alice), &[("csrf", csrf.as_str())]);
    assert_eq!(verified.status(), StatusCode::SEE_OTHER);
    assert_eq!(verified.headers()[LOCATION], "/audit");
    let page = portal.get("/audit", Some(&alice)).text().unwrap();
    assert!(
        page.contains("Last verified at")
            && page.contains(" by alice ")
            && page.contains("The chain verifies"),
        "{page}"
    );

    // An edit of the first event, before everything the last verification covered.
    let db = rusqlite::Connection::open(env.path().join("catalog.db")).unwrap();
    db.execute(
        "UPDATE audit_events SET details = '{\"edited\":true}' WHERE seq = 1",
        [],
    )
    .unwrap();
    let page = portal.get("/audit", Some(&alice)).text().unwrap();
    assert!(
        page.contains("The chain verifies"),
        "a page load shows the last verification, it does not verify: {page}"
    );
    portal.post("/audit/verify", Some(&alice), &[("csrf", csrf.as_str())]);
    let page = portal.get("/audit", Some(&alice)).text().unwrap();
    assert!(
        page.contains("The chain is broken at event 1") && !page.contains("The chain verifies"),
        "{page}"
    );
    let (_, recorded) = env.json(&["audit", "list", "--kind", "trail_verified"]);
    let recorded = recorded.as_array().unwrap();
    assert_eq!(
        recorded.len(),
        2,
        "each verification is an event: {recorded:?}"
    );
    assert_eq!(recorded[1]["actor"], "alice");
    assert_eq!(recorded[1]["details"]["broken"]["seq"], 1);

    // The last verification outlives serve.
    drop(portal);
    let portal = Portal::start(&env, &[]);
    let alice = portal.login("alice", PASSWORD).unwrap();
    let page = portal.get("/audit", Some(&alice)).text().unwrap();
    assert!(
        page.contains("The chain is broken at event 1") && page.contains(" by alice "),
        "after a restart: {page}"
    );
}

#[test]
fn a_trusted_header_is_believed_only_from_the_trusted_proxies() {
    let env = with_a_run(r#"[]"#);
    std::fs::write(
        env.path().join("roles.toml"),
        "[users]\nsso-carol = [\"JOBS_READ\"]\n",
    )
    .unwrap();
    let as_carol = |portal: &Portal| {
        portal
            .client
            .get(format!("{}/runs", portal.url))
            .header("X-Remote-User", "sso-carol")
            .send()
            .unwrap()
    };
    let behind_proxy = Portal::start(&env, &["--trusted-header", "X-Remote-User"]);
    let page = as_carol(&behind_proxy);
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().unwrap().contains("sso-carol"));
    let forged = behind_proxy
        .client
        .get(format!("{}/runs", behind_proxy.url))
        .header("X-Remote-User", "<script>")
        .send()
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    drop(behind_proxy);

    // Loopback is not the proxy here: the header is refused, not ignored.
    let elsewhere = Portal::start(
        &env,
        &[
            "--trusted-header",
            "X-Remote-User",
            "--trusted-proxy",
            "192.0.2.7",
        ],
    );
    let refused = as_carol(&elsewhere);
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().unwrap().contains("trusted proxies"));
}

#[test]
fn sigterm_stops_the_portal_with_the_scheduler() {
    let env = with_a_run(r#"["JOBS_READ"]"#);
    let mut portal = Portal::start(&env, &[]);
    let addr = portal.url.trim_start_matches("http://").to_owned();
    assert_eq!(portal.get("/login", None).status(), StatusCode::OK);
    let status = portal.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "nothing listens on {addr} once serve ended"
    );
}
