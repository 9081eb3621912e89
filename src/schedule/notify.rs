//! Email notifications of finished runs: who hears about which outcome, the message (with the
//! run's counters and its link in the web portal), and sending it over SMTP with lettre.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use serde::Deserialize;

use crate::catalog::{JobRun, RunStatus};
use crate::settings::Invalid;

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (refused if the server cannot); port 587.
    Starttls,
    /// TLS from the first byte ("SMTPS"); port 465.
    Tls,
    /// No encryption, for a relay on the same host or a trusted network; port 25.
    None,
}

impl SmtpSecurity {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// A secret written in the config, or the environment variable that holds it.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Value(String),
    Env(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret::Value(..)"),
            Secret::Env(var) => write!(f, "Secret::Env({var})"),
        }
    }
}

impl Secret {
    fn reveal(&self) -> Result<String, String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::Env(var) => std::env::var(var)
                .map_err(|_| format!("environment variable {var} (email.password_env) is not set")),
        }
    }
}

/// The `[email]` table: the SMTP server and the sender.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: Mailbox,
    /// The web portal's base URL; messages link to `{portal_url}/runs/{id}`.
    pub portal_url: Option<String>,
    pub timeout: Duration,
}

/// When an outcome is worth a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyWhen {
    Never,
    EveryTime,
    /// Only the first run of a streak with the same outcome.
    FirstOfConsecutive,
}

/// A policy's `notify` table.
#[derive(Clone, Debug)]
pub struct Notify {
    pub to: Vec<Mailbox>,
    /// For runs that succeeded.
    pub on_completion: NotifyWhen,
    /// For every other outcome (failed items, failed, timed out, stalled, cancelled).
    pub on_failure: NotifyWhen,
}

/// Comma-separated addresses, each `user@host` or `Name <user@host>`.
fn parse_addresses(list: &str) -> Result<Vec<Mailbox>, String> {
    let to: Vec<Mailbox> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse()
                .map_err(|e| format!("`{a}` is not an email address: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if to.is_empty() {
        return Err("list at least one address, such as \"compliance@example.com\"".into());
    }
    Ok(to)
}

impl Notify {
    /// Whether a run ending in `status` gets a message, given the outcome of the policy's run
    /// before it.
    pub fn wants(&self, status: RunStatus, previous: Option<RunStatus>) -> bool {
        let when = if status == RunStatus::Succeeded {
            self.on_completion
        } else {
            self.on_failure
        };
        match when {
            NotifyWhen::Never => false,
            NotifyWhen::EveryTime => true,
            NotifyWhen::FirstOfConsecutive => previous != Some(status),
        }
    }
}

/// The `[email]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    smtp_host: String,
    smtp_port: Option<u16>,
    security: Option<SmtpSecurity>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    from: String,
    portal_url: Option<String>,
    timeout_secs: Option<u64>,
}

impl EmailSettings {
    pub fn validate(&self) -> Result<EmailConfig, Invalid> {
        if self.smtp_host.is_empty() {
            return Err(Invalid::at("smtp_host", "name the SMTP server"));
        }
        let from = self.from.parse().map_err(|err| {
            Invalid::at("from", format!("`{}` is not an address: {err}", self.from))
        })?;
        let security = self.security.unwrap_or(SmtpSecurity::Starttls);
        if self.password.is_some() && self.password_env.is_some() {
            return Err(Invalid::at(
                "password_env",
                "set `password` or `password_env`, not both",
            ));
        }
        if (self.password.is_some() || self.password_env.is_some()) && self.username.is_none() {
            return Err(Invalid::at("username", "a password needs a `username`"));
        }
        if let Some(url) = &self.portal_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(Invalid::at(
                "portal_url",
                "the web portal's address, such as \"https://custodian.example.com\"",
            ));
        }
        let timeout = match self.timeout_secs {
            Some(0) => return Err(Invalid::at("timeout_secs", "must be at least 1 second")),
            Some(s) => Duration::from_secs(s),
            None => Duration::from_secs(30),
        };
        Ok(EmailConfig {
            host: self.smtp_host.clone(),
            port: self.smtp_port.unwrap_or(security.default_port()),
            security,
            username: self.username.clone(),
            password: match (&self.password, &self.password_env) {
                (Some(p), _) => Some(Secret::Value(p.clone())),
                (None, Some(var)) => Some(Secret::Env(var.clone())),
                (None, None) => None,
            },
            from,
            portal_url: self
                .portal_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            timeout,
        })
    }
}

/// A job's `notify` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    to: String,
    on_completion: Option<NotifyWhen>,
    on_failure: Option<NotifyWhen>,
}

impl NotifySettings {
    pub fn validate(&self) -> Result<Notify, Invalid> {
        Ok(Notify {
            to: parse_addresses(&self.to).map_err(|m| Invalid::at("to", m))?,
            on_completion: self.on_completion.unwrap_or(NotifyWhen::Never),
            on_failure: self.on_failure.unwrap_or(NotifyWhen::EveryTime),
        })
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
#[error("email to {to} through {server}: {message}")]
pub struct NotifyError {
    pub to: String,
    pub server: String,
    pub message: String,
}

/// The message about `run`.
pub fn message(email: &EmailConfig, to: &[Mailbox], run: &JobRun) -> Result<Message, String> {
    let outcome = if run.status == RunStatus::Succeeded {
        "succeeded".to_string()
    } else {
        format!("FAILED ({})", run.status.as_str())
    };
    let c = &run.counters;
    let mut body = format!(
        "Policy:   {}\nRun:      {}\nOutcome:  {}\nStarted:  {}\n",
        run.policy,
        run.id,
        run.status.as_str(),
        run.started_at.to_rfc3339()
    );
    if let Some(f) = run.finished_at {
        body.push_str(&format!("Finished: {}\n", f.to_rfc3339()));
    }
    body.push_str(&format!(
        "Counters: {} selected, {} exported, {} flagged, {} deleted, {} failed, {} objects, {} bytes\n",
        c.selected, c.exported, c.flagged, c.deleted, c.failed, c.objects, c.bytes
    ));
    if let Some(e) = &run.error_summary {
        // Error summaries quote record-derived ids and names.
        body.push_str(&format!("Errors:   {}\n", crate::display::escape(e)));
    }
    if let Some(h) = &run.held_back {
        body.push_str(&format!("Held back: {}\n", crate::display::escape(h)));
    }
    if let Some(log) = &run.log_path {
        body.push_str(&format!("Log file: {log}\n"));
    }
    match &email.portal_url {
        Some(url) => body.push_str(&format!("\nDetails: {url}/runs/{}\n", run.id)),
        None => body.push_str(&format!("\nDetails: custodian jobs show {}\n", run.id)),
    }
    let mut builder = Message::builder().from(email.from.clone()).subject(format!(
        "custodian: {} run {} {outcome}",
        run.policy, run.id
    ));
    for m in to {
        builder = builder.to(m.clone());
    }
    builder.body(body).map_err(|e| e.to_string())
}

/// Sends the message about `run` to `to`.
pub fn send(email: &EmailConfig, to: &[Mailbox], run: &JobRun) -> Result<(), NotifyError> {
    let error = |message: String| NotifyError {
        to: to
            .iter()
            .map(|m| m.email.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        server: format!("{}:{}", email.host, email.port),
        message,
    };
    let message = message(email, to, run).map_err(&error)?;
    let builder = match email.security {
        SmtpSecurity::Starttls => SmtpTransport::starttls_relay(&email.host),
        SmtpSecurity::Tls => SmtpTransport::relay(&email.host),
        SmtpSecurity::None => Ok(SmtpTransport::builder_dangerous(&email.host)),
    }
    .map_err(|e| error(e.to_string()))?;
    let mut builder = builder.port(email.port).timeout(Some(email.timeout));
    if let Some(user) = &email.username {
        let password = match &email.password {
            Some(secret) => secret.reveal().map_err(&error)?,
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    builder.build().send(&message).map(drop).map_err(|e| {
        error(format!(
            "{e}; check [email] in the config and that the server is up"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(on_completion: NotifyWhen, on_failure: NotifyWhen) -> Notify {
        Notify {
            to: parse_addresses("a@example.com").unwrap(),
            on_completion,
            on_failure,
        }
    }

    #[test]
    fn first_of_consecutive_skips_a_repeated_outcome() {
        use RunStatus::*;
        let n = notify(
            NotifyWhen::FirstOfConsecutive,
            NotifyWhen::FirstOfConsecutive,
        );
        assert!(n.wants(Succeeded, None));
        assert!(!n.wants(Succeeded, Some(Succeeded)));
        assert!(n.wants(Succeeded, Some(Failed)));
        assert!(n.wants(TimedOut, Some(Succeeded)));
        assert!(!n.wants(TimedOut, Some(TimedOut)));
        assert!(n.wants(Stalled, Some(TimedOut)));
    }

    #[test]
    fn every_time_and_never() {
        use RunStatus::*;
        let n = notify(NotifyWhen::Never, NotifyWhen::EveryTime);
        assert!(!n.wants(Succeeded, None));
        assert!(n.wants(Failed, Some(Failed)));
        assert!(n.wants(CompletedWithFailures, Some(CompletedWithFailures)));
    }

    fn email() -> EmailConfig {
        EmailConfig {
            host: "localhost".into(),
            port: 25,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "custodian@example.com".parse().unwrap(),
            portal_url: None,
            timeout: Duration::from_secs(1),
        }
    }

    fn failed_run() -> JobRun {
        JobRun {
            id: crate::catalog::RunId(7),
            policy: "export".into(),
            mode: crate::catalog::Mode::Full,
            target: "archive".into(),
            status: RunStatus::Failed,
            started_at: chrono::Utc::now(),
            finished_at: None,
            resumed: 0,
            counters: Default::default(),
            manifest_key: None,
            error_summary: Some("1 item failed: acme/evil\u{1b}[2J\r\nBcc: x@example.com".into()),
            log_path: None,
            notification: None,
            held_back: None,
        }
    }

    #[test]
    fn message_reports_what_a_sweep_held_back_for_export() {
        let run = JobRun {
            policy: "lifecycle".into(),
            status: RunStatus::Succeeded,
            error_summary: None,
            held_back: Some("t30: 3 due artifact(s) held back: not exported by archive".into()),
            ..failed_run()
        };
        let to = parse_addresses("ops@example.com").unwrap();
        let text = String::from_utf8(message(&email(), &to, &run).unwrap().formatted()).unwrap();
        assert!(
            text.contains("Held back: t30: 3 due artifact(s) held back: not exported by archive"),
            "{text}"
        );
    }

    #[test]
    fn message_escapes_control_characters_from_the_error_summary() {
        let (email, run) = (email(), failed_run());
        let to = parse_addresses("ops@example.com").unwrap();
        let text = String::from_utf8(message(&email, &to, &run).unwrap().formatted()).unwrap();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            text.contains("acme/evil\\x1b[2J\\x0d\\x0aBcc: x@example.com"),
            "{text}"
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert_eq!(
            parse_addresses(" a@example.com, Bob <b@example.org> ,")
                .unwrap()
                .len(),
            2
        );
        assert!(
            parse_addresses("a@example.com, nobody")
                .unwrap_err()
                .contains("`nobody`")
        );
        assert!(parse_addresses(" , ").is_err());
    }
}
