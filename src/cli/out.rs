//! Where the command line prints. Every line goes through here, so text from records is
//! escaped once at the edge ([`custodian::display::escape`]) and no write can panic: a reader
//! that closes the pipe early (`custodian run P | head -3`) turns the next stdout write into
//! [`StdoutClosed`], which ends the command quietly with exit 0, as ripgrep does. Commands
//! print only once their work is recorded, so a closed pipe never changes a run's outcome.
//! Writes to stderr ignore errors: there is nowhere left to report them. Progress bars are
//! drawn here too, on stderr.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

use serde::Serialize;

use custodian::display::escape;
use custodian::progress::Progress;

/// Standard output was closed by its reader; the command stops printing.
#[derive(Debug, thiserror::Error)]
#[error("standard output is closed")]
pub struct StdoutClosed;

fn to_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    written(
        out.write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush()),
    )
}

/// Bytes on stdout as they are: a generated document (a completion script, a man page) that
/// holds no text from records.
pub fn raw(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    written(out.write_all(bytes).and_then(|()| out.flush()))
}

/// A write to stdout's result: a closed pipe is [`StdoutClosed`].
fn written(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// One line on stdout, escaped.
pub fn line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    to_stdout(&escape(&args.to_string()))
}

/// One line on stdout of tab-separated fields, each escaped (so a tab in a field cannot split
/// it in two).
pub fn fields(fields: &[&dyn Display]) -> anyhow::Result<()> {
    let line = fields
        .iter()
        .map(|f| escape(&f.to_string()).into_owned())
        .collect::<Vec<_>>()
        .join("\t");
    to_stdout(&line)
}

/// `value` as a pretty JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    json(&serde_json::to_string_pretty(value)?)
}

/// A JSON document on stdout. serde_json escapes U+0000–U+001F in strings (below U+0020 there
/// is only the layout's own whitespace) but not DEL, the C1 controls or the bidirectional ones;
/// those can only occur inside strings, where `\uXXXX` means the same character, so they are
/// written that way.
fn json(text: &str) -> anyhow::Result<()> {
    to_stdout(&json_safe(text))
}

fn json_safe(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        if c > '\u{7e}' && escape(c.encode_utf8(&mut [0; 4])).len() > c.len_utf8() {
            safe.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            safe.push(c);
        }
    }
    safe
}

/// One line on stderr, escaped; a write error is ignored.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let text = escape(&args.to_string()).into_owned();
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `println!` that escapes and returns [`StdoutClosed`] instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that escapes and never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::out::err_line(format_args!($($arg)*))
    };
}

pub(crate) use {errln, outln};

/// `b` bytes in binary units, one decimal (`1.5 MiB`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A progress bar on stderr, drawn only on a terminal and never with `--json`.
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    pub fn new(json: bool) -> Bar {
        if json || !std::io::stderr().is_terminal() {
            return Bar(indicatif::ProgressBar::hidden());
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Bar(bar)
    }
}

impl Progress for Bar {
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn message(&self, text: &'static str) {
        self.0.set_message(text);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_what_serde_json_leaves_raw() {
        let text = serde_json::to_string_pretty(
            &serde_json::json!({"id": "a\u{7f}b\u{9b}c\u{202e}d\u{1b}", "n": [1]}),
        )
        .unwrap();
        let safe = json_safe(&text);
        assert!(
            safe.contains(r#""id": "a\u007fb\u009bc\u202ed\u001b""#),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["id"], "a\u{7f}b\u{9b}c\u{202e}d\u{1b}");
    }
}
