//! `--config PATH`: a TOML file with a key for every flag, named as the flag
//! (`max-clients = 500`, `allow-target = ["10.0.0.0/8"]`, `fault-injection =
//! true`). The file's keys become flags placed before the command line's,
//! so every value goes through the flag's own parser and means exactly
//! what the flag means; a flag given on the command line (or through its
//! environment variable) replaces the file's key entirely, arrays included.
//!
//! Errors name the file, the line and the key: an unknown key, a value of
//! the wrong shape (an array for a single-valued flag, a boolean for a
//! valued one), or a value the flag's parser refuses.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};
use toml_edit::{Item, Value};

/// Why a config file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--config needs a PATH")]
    NoPath,
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: String },
    #[error("{path}: {error}")]
    Syntax { path: PathBuf, error: String },
    #[error("{path} line {line}: {key}: {error}")]
    Key {
        path: PathBuf,
        line: usize,
        key: String,
        error: String,
    },
}

/// Keys a file may not hold.
const NOT_IN_A_FILE: &[&str] = &["config", "help", "version"];

/// The `--config` path in `argv`, if any (`--config P` or `--config=P`).
pub fn path_in(argv: &[OsString]) -> Result<Option<PathBuf>, ConfigError> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        if s == "--config" {
            return it
                .next()
                .map(|p| Some(PathBuf::from(p)))
                .ok_or(ConfigError::NoPath);
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Ok(Some(PathBuf::from(p)));
        }
    }
    Ok(None)
}

/// The long flags `argv` gives (before a `--`).
fn given(argv: &[OsString]) -> HashSet<String> {
    argv.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .take_while(|s| *s != "--")
        .filter_map(|s| s.strip_prefix("--"))
        .map(|s| s.split('=').next().unwrap_or(s).to_string())
        .collect()
}

/// `argv` with the config file's flags inserted after the program name,
/// leaving out those the command line or the environment gives.
pub fn expand(cmd: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = path_in(&argv)? else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
        path: path.clone(),
        error: e.to_string(),
    })?;
    let from_file = file_args(cmd, &path, &text, &given(&argv))?;
    let mut out = Vec::with_capacity(argv.len() + from_file.len());
    let mut rest = argv.into_iter();
    out.extend(rest.next());
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend(rest);
    Ok(out)
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A scalar as a flag's value; None for what no flag takes (a table, an
/// array, a date).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.value().clone()),
        Value::Integer(i) => Some(i.value().to_string()),
        // No flag takes a fraction: `1.0` or `1e3` would be a surprise.
        Value::Float(_) => None,
        Value::Boolean(b) => Some(b.value().to_string()),
        _ => None,
    }
}

/// The file's keys as flags, in the file's order; see the module header.
pub fn file_args(
    cmd: &Command,
    path: &Path,
    text: &str,
    skip: &HashSet<String>,
) -> Result<Vec<String>, ConfigError> {
    // The error's position and message only: its usual rendering quotes
    // the line, which may hold a password.
    let doc = text
        .parse::<toml_edit::ImDocument<String>>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            error: match e.span() {
                Some(span) => format!(
                    "line {}: {}",
                    line_of(text, span.start),
                    e.message().trim_end().replace('\n', "; ")
                ),
                None => e.message().trim_end().replace('\n', "; "),
            },
        })?;
    let mut out = Vec::new();
    for (key, item) in doc.as_table().iter() {
        let line = doc
            .as_table()
            .key(key)
            .and_then(|k| k.span())
            .map_or(0, |s| line_of(text, s.start));
        let err = |error: String| ConfigError::Key {
            path: path.to_path_buf(),
            line,
            key: key.to_string(),
            error,
        };
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key))
            .filter(|_| !NOT_IN_A_FILE.contains(&key))
            .ok_or_else(|| err("unknown key (keys are the flags' names, as in --help)".into()))?;
        let env_given = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if skip.contains(key) || env_given {
            continue;
        }
        let value = match item {
            Item::Value(v) => v,
            _ => return Err(err("expected a value, found a table".into())),
        };
        let flag = format!("--{key}");
        let mut values = Vec::new();
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, Value::Boolean(b)) => {
                if *b.value() {
                    out.push(flag);
                }
                continue;
            }
            (ArgAction::SetTrue, _) => return Err(err("expected true or false".into())),
            (ArgAction::Append, Value::Array(a)) if a.is_empty() => {
                // An empty allow-list would silently mean "any".
                return Err(err(
                    "an empty array sets nothing: leave the key out (or comment it)".into(),
                ));
            }
            (ArgAction::Append, Value::Array(a)) => {
                for v in a.iter() {
                    values
                        .push(scalar(v).ok_or_else(|| err("expected strings or numbers".into()))?);
                }
            }
            (_, Value::Array(_)) => {
                return Err(err("takes one value, not an array".into()));
            }
            (_, Value::Boolean(_)) => return Err(err("expected a string or a number".into())),
            (_, v) => {
                values.push(scalar(v).ok_or_else(|| err("expected a string or a number".into()))?)
            }
        }
        for v in values {
            // `--flag=value`: a value may start with `-`. Each value goes
            // through the flag's own parser, alone, so that a refusal names
            // this key and line.
            let token = format!("{flag}={v}");
            let alone = [cmd.get_name().to_string(), token.clone()];
            if let Err(e) = cmd.clone().try_get_matches_from(alone) {
                let msg = e.to_string();
                let first = msg
                    .lines()
                    .next()
                    .unwrap_or("invalid value")
                    .trim_start_matches("error: ");
                return Err(err(first.to_string()));
            }
            out.push(token);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::{CommandFactory, Parser};

    fn args(text: &str, skip: &[&str]) -> Result<Vec<String>, ConfigError> {
        let skip = skip.iter().map(|s| s.to_string()).collect();
        file_args(&Cli::command(), Path::new("f.toml"), text, &skip)
    }

    #[test]
    fn every_shape_of_key() {
        let a = args(
            "# a comment\nbind = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\nmax-clients = 500\n\
             idle-timeout = \"30s\"\nfault-injection = true\nauth = \"required\"\n\
             supervise = [\"registry:intensity=1/10s\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            a,
            [
                "--bind=127.0.0.1:0",
                "--bind=127.0.0.2:0",
                "--max-clients=500",
                "--idle-timeout=30s",
                "--fault-injection",
                "--auth=required",
                "--supervise=registry:intensity=1/10s"
            ]
        );
        assert!(args("fault-injection = false\n", &[]).unwrap().is_empty());
        assert!(
            args("max-clients = 5\n", &["max-clients"])
                .unwrap()
                .is_empty(),
            "the CLI wins"
        );
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        for (text, line, key, says) in [
            (
                "bind = [\"127.0.0.1:0\"]\n\ncolour = \"red\"\n",
                3,
                "colour",
                "unknown key",
            ),
            ("max-clients = -1\n", 1, "max-clients", "invalid value"),
            ("max-clients = [1, 2]\n", 1, "max-clients", "not an array"),
            ("\nidle-timeout = \"0\"\n", 2, "idle-timeout", "more than 0"),
            (
                "fault-injection = \"yes\"\n",
                1,
                "fault-injection",
                "true or false",
            ),
            ("auth = true\n", 1, "auth", "a string or a number"),
            ("config = \"other.toml\"\n", 1, "config", "unknown key"),
            ("[bind]\nx = 1\n", 1, "bind", "a table"),
            (
                "allow-target = [\"10.0.0.0/33\"]\n",
                1,
                "allow-target",
                "invalid value",
            ),
            ("allow-target = []\n", 1, "allow-target", "empty array"),
            (
                "max-clients = 1.0\n",
                1,
                "max-clients",
                "a string or a number",
            ),
            ("deny-port = [2.5]\n", 1, "deny-port", "strings or numbers"),
        ] {
            match args(text, &[]) {
                Err(ConfigError::Key {
                    line: l,
                    key: k,
                    error,
                    ..
                }) => {
                    assert_eq!((l, k.as_str()), (line, key), "{text}");
                    assert!(error.contains(says), "{text}: {error}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            args("bind = \n", &[]),
            Err(ConfigError::Syntax { .. })
        ));
        // A syntax error never quotes the file: the line may hold a password.
        match args("bind = [\"127.0.0.1:0\"]\nuser = [SECRET\n", &[]) {
            Err(e @ ConfigError::Syntax { .. }) => {
                let said = e.to_string();
                assert!(
                    said.contains("line 2") && !said.contains("SECRET"),
                    "{said}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// Every flag is a key: a sample value for each (a new flag without
    /// one fails here), all in one file, each accepted.
    #[test]
    fn every_flag_is_a_key() {
        let samples: &[(&str, &str)] = &[
            ("bind", "[\"127.0.0.1:0\"]"),
            ("user", "[\"alice:pw\"]"),
            ("auth", "\"required\""),
            ("users-file", "\"/tmp/users\""),
            ("max-clients", "5"),
            ("max-clients-per-ip", "2"),
            ("max-users", "10"),
            ("handshake-timeout", "\"5s\""),
            ("connect-timeout", "\"5s\""),
            ("idle-timeout", "\"60s\""),
            ("bind-timeout", "\"10s\""),
            ("udp-timeout", "\"10s\""),
            ("udp-advertise", "\"192.0.2.1\""),
            ("grace-period", "\"3s\""),
            ("relay", "\"copy\""),
            ("allow-client", "[\"10.0.0.0/8\"]"),
            ("deny-client", "[\"10.1.0.0/16\"]"),
            ("allow-target", "[\"0.0.0.0/0\"]"),
            ("deny-target", "[\"local\"]"),
            ("allow-port", "[\"1-65535\"]"),
            ("deny-port", "[25]"),
            ("outgoing-ip", "[\"127.0.0.1\"]"),
            ("workers", "2"),
            ("admin", "\"admin:pw\""),
            ("supervise", "[\"root:intensity=2/60s\"]"),
            ("fault-injection", "true"),
            ("metrics-bind", "\"127.0.0.1:0\""),
            ("manager-bind", "\"127.0.0.1:0\""),
            ("manager-transport", "\"udp\""),
            ("manager-timeout", "\"5s\""),
            ("manager-auth-timeout", "\"2s\""),
            ("log-format", "\"json\""),
            ("log-level", "\"debug\""),
            ("ready-file", "\"/tmp/ready\""),
        ];
        let cmd = Cli::command();
        for a in cmd.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if NOT_IN_A_FILE.contains(&long) {
                continue;
            }
            assert!(
                samples.iter().any(|(k, _)| *k == long),
                "--{long} has no sample here: add one"
            );
        }
        let text: String = samples
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        let out = args(&text, &[]).unwrap();
        assert_eq!(
            out.iter().filter(|a| a.starts_with("--")).count(),
            samples.len(),
            "{out:?}"
        );
        let mut argv = vec!["actor-socks".to_string()];
        argv.extend(out);
        let cli = Cli::try_parse_from(&argv).expect("the file's flags parse together");
        assert_eq!(cli.max_clients, 5);
        assert!(cli.supervision.fault_injection);
    }

    #[test]
    fn the_path_and_the_order() {
        let argv = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            path_in(&argv(&["x", "--config", "a.toml"])).unwrap(),
            Some("a.toml".into())
        );
        assert_eq!(
            path_in(&argv(&["x", "--config=b.toml"])).unwrap(),
            Some("b.toml".into())
        );
        assert_eq!(path_in(&argv(&["x", "--config"])), Err(ConfigError::NoPath));
        assert_eq!(path_in(&argv(&["x", "--", "--config", "a"])).unwrap(), None);
        let g = given(&argv(&[
            "x",
            "--max-clients=5",
            "--bind",
            "a",
            "--",
            "--user",
        ]));
        assert!(g.contains("max-clients") && g.contains("bind") && !g.contains("user"));
    }
}
