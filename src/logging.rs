//! slog setup: human-readable text (default) or one JSON object per line, on
//! stderr, through an async drain so logging never blocks a session.
//!
//! Values in a log record may come from the network (a domain name, a user
//! name a client chose, a manager peer's input). In the text format every
//! message, key and value is written through [`escape`], so no client can
//! end a line, start a forged one, move the cursor or flip the text
//! direction: control characters become `\n`, `\r`, `\t`, `\x1b`,
//! `\u{85}`..., invisible and bidirectional formatting characters
//! `\u{202e}`..., and a backslash `\\`. A value that could pass for more
//! fields (one holding `, ` or `"`, or empty, or with spaces at an end) is
//! written in double quotes, a `"` inside as `\"`: `target: "evil, user:
//! root:80"` cannot be read as a `user` field. The JSON format is escaped
//! by serde_json and stays one valid object per line.

use slog::{o, Drain, Level, Logger};
use std::borrow::Cow;
use std::io;

use crate::config::{LogFormat, LogLevel};

fn level(l: LogLevel) -> Level {
    match l {
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    }
}

/// The root logger for the process.
pub fn init(format: LogFormat, min: LogLevel) -> Logger {
    let drain: Box<
        dyn Drain<Ok = (), Err = slog::Never>
            + Send
            + Sync
            + std::panic::RefUnwindSafe
            + std::panic::UnwindSafe,
    > = match format {
        LogFormat::Text => {
            let decorator = Escaping(slog_term::TermDecorator::new().stderr().build());
            let d = slog_term::FullFormat::new(decorator).build().fuse();
            Box::new(slog_async::Async::new(d).chan_size(4096).build().fuse())
        }
        LogFormat::Json => {
            // One write per record (serde_json writes a record in many
            // pieces): another writer or an exit at once cannot cut a line.
            let d = slog_json::Json::new(std::io::LineWriter::new(std::io::stderr()))
                .add_default_keys()
                .build()
                .fuse();
            Box::new(slog_async::Async::new(d).chan_size(4096).build().fuse())
        }
    };
    let drain = drain.filter_level(level(min)).fuse();
    Logger::root(drain, o!())
}

/// A logger that drops everything (tests that do not care about logs).
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// Characters written as escapes: controls (C0, DEL, C1) and the invisible
/// or bidirectional formatting characters a terminal would act on.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\' || crate::protocol::credentials::is_invisible_format(c)
}

/// `s` with every character that could forge or hide log text escaped (see
/// the module header); unchanged, without allocating, when there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A slog-term decorator that escapes messages, keys and values (not the
/// separators and the line's own newline, which the formatter writes).
pub struct Escaping<D>(pub D);

impl<D: slog_term::Decorator> slog_term::Decorator for Escaping<D> {
    fn with_record<F>(
        &self,
        record: &slog::Record,
        logger_values: &slog::OwnedKVList,
        f: F,
    ) -> io::Result<()>
    where
        F: FnOnce(&mut dyn slog_term::RecordDecorator) -> io::Result<()>,
    {
        self.0.with_record(record, logger_values, |inner| {
            let mut rd = EscapingRecord {
                inner,
                escape: false,
                value: None,
            };
            f(&mut rd)?;
            rd.end_value()
        })
    }
}

struct EscapingRecord<'a> {
    inner: &'a mut dyn slog_term::RecordDecorator,
    /// Inside a message, key or value: escape what is written.
    escape: bool,
    /// Inside a value: collected whole, to be quoted if it needs it.
    value: Option<Vec<u8>>,
}

/// Whether a value, written as it is, could pass for more than one value.
fn needs_quotes(v: &str) -> bool {
    v.is_empty() || v.contains(", ") || v.contains('"') || v.starts_with(' ') || v.ends_with(' ')
}

impl EscapingRecord<'_> {
    /// Writes the value collected since `start_value`, quoted if needed.
    fn end_value(&mut self) -> io::Result<()> {
        let Some(bytes) = self.value.take() else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&bytes);
        let escaped = escape(&text);
        if needs_quotes(&text) {
            let quoted = escaped.replace('"', "\\\"");
            write!(self.inner, "\"{quoted}\"")
        } else {
            self.inner.write_all(escaped.as_bytes())
        }
    }

    /// Leaves the current part (value or other) before a new one starts.
    fn leave(&mut self, escape: bool) -> io::Result<()> {
        self.end_value()?;
        self.escape = escape;
        Ok(())
    }
}

impl io::Write for EscapingRecord<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(v) = &mut self.value {
            v.extend_from_slice(buf);
            return Ok(buf.len());
        }
        if !self.escape {
            return self.inner.write(buf);
        }
        // Whole `str`s arrive here (fmt writes them one by one); bytes that
        // are not UTF-8 are written as `\xNN`.
        let mut rest = buf;
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.inner.write_all(escape(s).as_bytes())?;
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    let good = std::str::from_utf8(good).expect("valid prefix");
                    self.inner.write_all(escape(good).as_bytes())?;
                    let n = e.error_len().unwrap_or(bad.len());
                    for b in &bad[..n] {
                        write!(self.inner, "\\x{b:02x}")?;
                    }
                    rest = &bad[n..];
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.end_value()?;
        self.inner.flush()
    }
}

impl slog_term::RecordDecorator for EscapingRecord<'_> {
    fn reset(&mut self) -> io::Result<()> {
        self.leave(false)?;
        self.inner.reset()
    }
    fn start_whitespace(&mut self) -> io::Result<()> {
        self.leave(false)?;
        self.inner.start_whitespace()
    }
    fn start_msg(&mut self) -> io::Result<()> {
        self.leave(true)?;
        self.inner.start_msg()
    }
    fn start_timestamp(&mut self) -> io::Result<()> {
        self.leave(false)?;
        self.inner.start_timestamp()
    }
    fn start_level(&mut self) -> io::Result<()> {
        self.leave(false)?;
        self.inner.start_level()
    }
    fn start_comma(&mut self) -> io::Result<()> {
        self.leave(false)?;
        self.inner.start_comma()
    }
    fn start_key(&mut self) -> io::Result<()> {
        self.leave(true)?;
        self.inner.start_key()
    }
    fn start_value(&mut self) -> io::Result<()> {
        self.leave(true)?;
        self.value = Some(Vec::new());
        self.inner.start_value()
    }
    fn start_location(&mut self) -> io::Result<()> {
        self.leave(false)?;
        self.inner.start_location()
    }
    fn start_separator(&mut self) -> io::Result<()> {
        self.leave(false)?;
        self.inner.start_separator()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::{info, Drain};
    use std::sync::{Arc, Mutex};

    #[test]
    fn escapes_what_could_forge_or_hide_text() {
        assert!(matches!(escape("alice@example.org é"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape("\x1b[31m\0\x7f"), "\\x1b[31m\\x00\\x7f");
        assert_eq!(
            escape("\u{85}\u{202e}\u{2028}\u{feff}"),
            "\\u{85}\\u{202e}\\u{2028}\\u{feff}"
        );
        assert_eq!(
            escape("C:\\x\\n"),
            "C:\\\\x\\\\n",
            "a backslash is escaped too"
        );
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_forged_line_stays_inside_its_record() {
        let buf = Buf::default();
        let decorator = Escaping(slog_term::PlainSyncDecorator::new(buf.clone()));
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        let log = Logger::root(drain, o!());
        let forged = "mallory\nNov 29 00:00:00.000 INFO user added, user: root";
        info!(log, "session"; "user" => forged, "target" => "x\x1b]0;pwned\x07:80");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("mallory\\nNov 29"), "{text}");
        assert!(text.contains("x\\x1b]0;pwned\\x07:80"), "{text}");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn a_value_cannot_pass_for_more_fields() {
        let buf = Buf::default();
        let decorator = Escaping(slog_term::PlainSyncDecorator::new(buf.clone()));
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        let log = Logger::root(drain, o!());
        info!(log, "session"; "user" => "alice", "target" => "evil.invalid, user: root:80",
              "end" => "said \"hi\"", "empty" => "", "client" => "127.0.0.1:5");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(r#"target: "evil.invalid, user: root:80""#),
            "{text}"
        );
        assert!(text.contains(r#"end: "said \"hi\"""#), "{text}");
        assert!(text.contains(r#"empty: """#), "{text}");
        assert!(
            text.contains("client: 127.0.0.1:5") && text.contains("user: alice"),
            "{text}"
        );
        // Exactly one `user` field outside quotes.
        let outside: String = text.split('"').step_by(2).collect();
        assert_eq!(outside.matches("user: ").count(), 1, "{text}");
    }
}
