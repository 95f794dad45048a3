//! slog setup: human-readable text (default) or one JSON object per line, on
//! stderr, through an async drain so logging never blocks a session.

use slog::{o, Drain, Level, Logger};

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
            let decorator = slog_term::TermDecorator::new().stderr().build();
            let d = slog_term::FullFormat::new(decorator).build().fuse();
            Box::new(slog_async::Async::new(d).chan_size(4096).build().fuse())
        }
        LogFormat::Json => {
            let d = slog_json::Json::new(std::io::stderr())
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
