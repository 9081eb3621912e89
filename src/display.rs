//! Text that came from records (ids, file names, tenant and channel names, reasons, errors that
//! quote them) made safe to show: [`escape`] is the one function every output edge (the
//! command line, the log layers, notification mails) passes such text through, so an ESC, NUL
//! or CR in a record can never drive a terminal, forge a log line or rewrite a mail.

use std::borrow::Cow;
use std::fmt::Write as _;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// Bidirectional overrides and isolates reorder what a terminal shows without being control
/// characters in Unicode's sense, so a name could display as another.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character (C0, DEL, C1, tab and newline included) written as `\xNN`
/// and every bidirectional control as `\u{NNNN}`; borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && u32::from(c) < 0x80 {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else if c.is_control() || is_bidi_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The fields of a tracing event or span, formatted as tracing does by default and then
/// escaped: log messages quote record-derived names and errors.
#[derive(Debug, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut raw = String::new();
        DefaultFields::new().format_fields(Writer::new(&mut raw), fields)?;
        writer.write_str(&escape(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_writes_terminal_controls_as_visible_escapes() {
        assert_eq!(
            escape("a\u{1b}[2Jb\0c\rd\ne\tf\u{7f}"),
            "a\\x1b[2Jb\\x00c\\x0dd\\x0ae\\x09f\\x7f"
        );
    }

    #[test]
    fn escape_writes_c1_and_bidi_controls_as_code_points() {
        assert_eq!(
            escape("x\u{9b}31m\u{202e}gpj.exe"),
            "x\\u{9b}31m\\u{202e}gpj.exe"
        );
    }

    #[test]
    fn escape_keeps_plain_and_non_ascii_text_borrowed() {
        assert!(matches!(escape("conv-1/call é.wav"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_fields_escape_a_logged_message() {
        use tracing_subscriber::prelude::*;
        let logged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = logged.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(EscapedFields)
                .with_ansi(false)
                .with_writer(move || SinkWriter(sink.clone())),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(id = %"evil\u{1b}]0;x\u{7}", "cannot read conv\u{1b}[31m\r");
        });
        let text = String::from_utf8(logged.lock().unwrap().clone()).unwrap();
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("cannot read conv\\x1b[31m\\x0d"), "{text:?}");
        assert!(text.contains("id=evil\\x1b]0;x\\x07"), "{text:?}");
        assert!(text.ends_with('\n'));
    }

    struct SinkWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SinkWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
