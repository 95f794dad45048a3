//! The `--users-file` format: one `name:password` per line. The first `:`
//! separates name from password (a password may contain `:`); blank lines and
//! lines starting with `#` are ignored; names and passwords are 1..=255 bytes.
//! Writes are atomic: a temporary file in the same directory, fsync, rename,
//! then fsync of the directory.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::config::check_credential_lengths;
use crate::protocol::Password;

/// Parses the file's text. Errors name the offending line (never its password).
pub fn parse(text: &str) -> Result<Vec<(String, Password)>, String> {
    let mut users: Vec<(String, Password)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (name, pass) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected name:password", i + 1))?;
        check_credential_lengths(name, pass).map_err(|e| format!("line {}: {e}", i + 1))?;
        if users.iter().any(|(n, _)| n == name) {
            return Err(format!("line {}: user {name:?} listed twice", i + 1));
        }
        users.push((name.to_string(), Password::new(pass)));
    }
    Ok(users)
}

/// Reads and parses a users file.
pub fn load(path: &Path) -> io::Result<Vec<(String, Password)>> {
    let text = fs::read_to_string(path)?;
    parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Renders users in the file format.
pub fn render(users: &[(String, Password)]) -> String {
    let mut out = String::from("# actor-socks users: name:password, one per line\n");
    for (name, pass) in users {
        out.push_str(name);
        out.push(':');
        out.push_str(pass.expose());
        out.push('\n');
    }
    out
}

/// Replaces the file atomically with `users`: either the old or the new
/// content is there after a crash, never a mix.
pub fn store(path: &Path, users: &[(String, Password)]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "users file has no name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(render(users).as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let users = parse("# c\n\nalice:pw\nbob:a:b\r\n").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].0, "bob");
        assert!(users[1].1.ct_eq("a:b"));
        assert_eq!(parse(&render(&users)).unwrap(), users);
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(parse("alice").unwrap_err().contains("line 1"));
        assert!(parse("ok:1\n:pw").unwrap_err().contains("line 2"));
        assert!(parse("a:1\na:2").unwrap_err().contains("twice"));
        let err = parse("x:secretpw\nbad").unwrap_err();
        assert!(!err.contains("secretpw"));
    }

    #[test]
    fn store_is_atomic_and_readable() {
        let dir = std::env::temp_dir().join(format!("as-users-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users");
        let users = vec![("a".to_string(), Password::new("b"))];
        store(&path, &users).unwrap();
        assert_eq!(load(&path).unwrap(), users);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
        fs::remove_dir_all(&dir).unwrap();
    }
}
