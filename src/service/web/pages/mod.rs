//! The portal's pages, rendered on the server with maud: every value is escaped by the
//! template, and no script runs in the browser. One layout with the navigation; one module
//! per area.

mod audit;
mod conversations;
mod lifecycle;
mod policies;
mod runs;

use axum::Router;
use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::AppState;
use super::auth::Authed;

/// The pages' routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .merge(runs::routes())
        .merge(policies::routes())
        .merge(lifecycle::routes())
        .merge(audit::routes())
        .merge(conversations::routes())
}

/// `s` percent-encoded for a URL's path segment or query value.
fn component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The little styling the pages need, inline (no assets to serve).
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330}\
nav{background:#1d2330;padding:.6em 1em;display:flex;gap:1.2em;align-items:center}\
nav a{color:#fff;text-decoration:none}nav strong{color:#fff}nav .who{margin-left:auto;color:#bbc}\
nav form{display:inline}nav button{background:none;border:1px solid #889;color:#fff;cursor:pointer}\
main{padding:1em 1.5em}table{border-collapse:collapse;margin:.5em 0}\
td,th{border-bottom:1px solid #dde;padding:.3em .7em;text-align:left;vertical-align:top}\
th{background:#f3f4f8}.num{text-align:right}.bad{color:#a11}.good{color:#185}\
.error{background:#fde8e8;border:1px solid #e99;padding:.6em 1em}\
form.filter{display:flex;gap:.8em;align-items:end;margin:.5em 0}\
pre{background:#f6f6f9;padding:.5em;white-space:pre-wrap;word-break:break-all}\
td code{white-space:pre-wrap;word-break:break-all}td{max-width:45em}\
form.change{border:1px solid #dde;padding:.4em .8em;margin:.4em 0;max-width:60em}";

/// A page: the layout with its navigation around `body`, for `who` when logged in.
pub(super) fn page(title: &str, who: Option<&Authed>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · custodian" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                nav {
                    strong { "custodian" }
                    @if let Some(who) = who {
                        a href="/runs" { "Runs" }
                        a href="/policies" { "Policies" }
                        a href="/lifecycle" { "Lifecycle" }
                        a href="/audit" { "Audit" }
                        a href="/conversations" { "Conversations" }
                        span.who { (who.actor.user) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(who.csrf());
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The page of an error.
pub(super) fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        title,
        None,
        html! {
            p.error { (message) }
            p { a href="/runs" { "Back to the runs" } }
        },
    )
}

/// The login form, with its CSRF token, where to go next, and why the last try failed.
pub(super) fn login(csrf: &str, next: &str, failed: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            @if let Some(why) = failed {
                p.error { (why) }
            }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                p { label { "Account " input name="name" autocomplete="username" required; } }
                p { label { "Password " input type="password" name="password" autocomplete="current-password" required; } }
                p { button type="submit" { "Log in" } }
            }
        },
    )
}
