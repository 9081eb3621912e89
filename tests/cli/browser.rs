//! The web portal in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (chromedriver) with fantoccini. Log in, open a run from the runs list, enable a lifecycle
//! policy through its acknowledgment checkboxes, find a conversation and open it, and see an XSS
//! payload from a record as text with no script run. With `CUSTODIAN_SCREENSHOTS=DIR` each page's screenshot is saved there.
//!
//! Without chromium and chromedriver the test says why and passes, unless
//! `CUSTODIAN_REQUIRE_BROWSER_TESTS` is set (scripts/test.sh installs them and sets it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::{Env, text};
use crate::web::{IMG, LIFECYCLE_ROLES, PASSWORD, Portal, SCRIPT, lifecycle_env};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser is installed; when not, says why, or fails under
/// `CUSTODIAN_REQUIRE_BROWSER_TESTS`.
fn available() -> bool {
    if std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let why = format!(
        "needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver; scripts/test.sh does)"
    );
    assert!(
        std::env::var_os("CUSTODIAN_REQUIRE_BROWSER_TESTS").is_none(),
        "{why} (CUSTODIAN_REQUIRE_BROWSER_TESTS is set)"
    );
    eprintln!("skipped: {why}");
    false
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Saves a screenshot of the page as `name`.png under `CUSTODIAN_SCREENSHOTS`, when set.
async fn screenshot(b: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("CUSTODIAN_SCREENSHOTS") {
        let png = b.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// Waits for the page that shows `marker` (a click navigates asynchronously), then returns
/// its text. The page before the click may show the marker too and be replaced while it is
/// read (a stale element): then it is read again, for at most 30 s.
async fn page_with(b: &Client, marker: Locator<'_>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.wait()
            .at_most(Duration::from_secs(30))
            .for_element(marker)
            .await
            .unwrap();
        let read = match b.find(Locator::Css("body")).await {
            Ok(body) => body.text().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(text) => return text,
            Err(e) if Instant::now() < deadline => {
                eprintln!("page changed while read ({e}); reading it again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the page showing {marker:?} could not be read: {e}"),
        }
    }
}

#[test]
fn in_a_browser_log_in_open_a_run_enable_a_policy_and_see_a_payload_as_text() {
    if !available() {
        return;
    }
    let env = lifecycle_env("", &format!("{SCRIPT} {IMG}"));
    std::fs::write(
        env.path().join("roles.toml"),
        format!(
            "[users]\n\"*\" = [\"ARTIFACTS_LIFECYCLE_POLICY_READ\", \"JOBS_READ\", \"AUDIT_READ\", \"LEGAL_HOLD_READ\", \"CONVERSATIONS_READ\"]\n{LIFECYCLE_ROLES}"
        ),
    )
    .unwrap();
    env.conversation(
        "acme",
        1,
        &format!("c1{SCRIPT}"),
        &[(&format!("{IMG}.wav"), b"RIFF-a")],
    );
    let out = env.run(&["run", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let portal = Portal::start(&env, &[]);
    let driver = Driver::start();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(walk(&env, &portal, &driver));
}

async fn walk(env: &Env, portal: &Portal, driver: &Driver) {
    let b = browser(driver).await;
    let base = &portal.url;

    b.goto(&format!("{base}/runs")).await.unwrap();
    assert!(
        b.current_url().await.unwrap().path() == "/login",
        "sent to log in"
    );
    screenshot(&b, "login").await;
    b.find(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    b.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    b.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_with(&b, Locator::Css("a[href='/runs/1']")).await;
    assert_eq!(b.current_url().await.unwrap().path(), "/runs");
    screenshot(&b, "runs").await;

    b.find(Locator::Css("a[href='/runs/1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let run = page_with(&b, Locator::XPath("//h1[text()='Run 1']")).await;
    assert_eq!(b.current_url().await.unwrap().path(), "/runs/1");
    assert!(run.contains("Run 1") && run.contains("succeeded"), "{run}");
    // The payload in the conversation id is text on the page, and no script ran.
    assert!(run.contains(&format!("c1{SCRIPT}")), "{run}");
    assert!(
        b.get_alert_text().await.is_err(),
        "an alert opened: a script ran"
    );
    screenshot(&b, "run").await;

    b.goto(&format!("{base}/lifecycle")).await.unwrap();
    let page = page_with(&b, Locator::XPath("//h1[text()='Lifecycle']")).await;
    assert!(
        page.contains(&format!("{SCRIPT} {IMG}")),
        "the description as text: {page}"
    );
    screenshot(&b, "lifecycle").await;
    let form = "form[action='/lifecycle/policies/voice-30d/enable']";
    let boxes = b
        .find_all(Locator::Css(&format!("{form} input[name=ack]")))
        .await
        .unwrap();
    assert_eq!(boxes.len(), 2);
    for checkbox in &boxes {
        checkbox.click().await.unwrap();
    }
    b.find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = page_with(&b, Locator::Css("p.good")).await;
    assert!(done.contains("now enabled"), "{done}");
    screenshot(&b, "enabled").await;
    let (_, listed) = env.json(&["lifecycle", "list"]);
    assert_eq!(listed[0]["enabled"], true, "{listed}");

    for page in ["policies", "audit"] {
        b.goto(&format!("{base}/{page}")).await.unwrap();
        assert!(b.get_alert_text().await.is_err(), "{page}: a script ran");
        screenshot(&b, page).await;
    }

    // Find the conversation by its tenant, and open it from the results.
    b.goto(&format!("{base}/conversations")).await.unwrap();
    page_with(&b, Locator::XPath("//h1[text()='Conversations']")).await;
    b.find(Locator::Css("input[name=tenant]"))
        .await
        .unwrap()
        .send_keys("acme")
        .await
        .unwrap();
    b.find(Locator::Css("form.filter button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let found = page_with(&b, Locator::Css("table td a")).await;
    assert!(found.contains(&format!("c1{SCRIPT}")), "{found}");
    screenshot(&b, "conversations").await;
    b.find(Locator::Css("table td a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let conversation = page_with(&b, Locator::XPath("//h2[text()='Exports']")).await;
    assert!(
        conversation.contains(&format!("{IMG}.wav")) && conversation.contains("archive"),
        "{conversation}"
    );
    assert!(b.get_alert_text().await.is_err(), "a script ran");
    screenshot(&b, "conversation").await;
    b.close().await.unwrap();
}
