//! The `--users-file` format: one `name:password` per line, where the
//! password is either plaintext (as an operator wrote it) or an Argon2id PHC
//! string (`$argon2id$v=19$...`, what the manager stores and `actor-socks
//! hash-password` prints). The first `:` separates name from password (a
//! password may contain `:`); blank lines and lines starting with `#` are
//! ignored. Names and passwords follow the credential rules
//! ([`crate::protocol::credentials`]). Writes are atomic: a temporary file
//! (mode 0600) in the same directory, fsync, rename, then fsync of the
//! directory; temporary files a crash left behind are removed at start
//! ([`remove_stale_temporaries`]).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::auth::Credential;
use crate::protocol::UserName;

/// Why a users file was refused: always the line, never a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<Vec<(UserName, Credential)>, ParseError> {
    let mut users: Vec<(UserName, Credential)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |what: String| ParseError { line: i + 1, what };
        // `lines()` leaves a CR of a CRLF ending; nothing else is trimmed.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (name, pass) = line
            .split_once(':')
            .ok_or_else(|| err("expected name:password".into()))?;
        let name = UserName::new(name).map_err(|e| err(e.to_string()))?;
        let cred = Credential::from_file_field(pass).map_err(err)?;
        if users.iter().any(|(n, _)| *n == name) {
            return Err(err(format!("user {name:?} listed twice")));
        }
        users.push((name, cred));
    }
    Ok(users)
}

/// Reads and parses a users file.
pub fn load(path: &Path) -> io::Result<Vec<(UserName, Credential)>> {
    let text = fs::read_to_string(path)?;
    parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Renders users in the file format.
pub fn render<'a>(users: impl IntoIterator<Item = (&'a UserName, &'a Credential)>) -> String {
    let mut out = String::from(
        "# actor-socks users: name:password or name:$argon2id$... (actor-socks hash-password)\n",
    );
    for (name, cred) in users {
        out.push_str(name.as_str());
        out.push(':');
        out.push_str(cred.file_field());
        out.push('\n');
    }
    out
}

fn temporary_prefix(path: &Path) -> io::Result<String> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "users file has no name"))?;
    Ok(format!(".{}.tmp-", file_name.to_string_lossy()))
}

fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Removes `.NAME.tmp-PID` files that an interrupted write (a `kill -9`)
/// left beside the users file: they may hold every user. Only regular
/// files (never a directory or what a symlink points to) whose PID is not
/// a live process are removed; an entry that cannot be removed is skipped
/// and reported, the others are still removed. Returns how many were
/// removed and the errors met. A missing directory is not an error.
pub fn remove_stale_temporaries(path: &Path) -> io::Result<(usize, Vec<String>)> {
    let prefix = temporary_prefix(path)?;
    let entries = match fs::read_dir(directory(path)) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, Vec::new())),
        Err(e) => return Err(e),
    };
    let (mut removed, mut errors) = (0, Vec::new());
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Another process (another instance on the same file) may be writing it.
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let kind = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", entry.path().display()));
                continue;
            }
        };
        // A symlink is removed itself (its target is left alone); a
        // directory is not ours.
        if kind.is_dir() {
            errors.push(format!(
                "{}: a directory, left alone",
                entry.path().display()
            ));
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => errors.push(format!("{}: {e}", entry.path().display())),
        }
    }
    Ok((removed, errors))
}

/// Replaces the file atomically with `users`: either the old or the new
/// content is there after a crash, never a mix.
pub fn store<'a>(
    path: &Path,
    users: impl IntoIterator<Item = (&'a UserName, &'a Credential)>,
) -> io::Result<()> {
    let dir = directory(path);
    let tmp = dir.join(format!("{}{}", temporary_prefix(path)?, std::process::id()));
    let text = render(users);
    let result = (|| {
        // A file (or symlink) already at the temporary name is not ours to
        // write through: removed (the link itself), then created anew,
        // exclusively and without following links, mode 0600.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(text.as_bytes())?;
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
    use crate::protocol::Secret;

    fn plain(s: &str) -> Credential {
        Credential::Plain(Secret::new(s).unwrap())
    }

    fn pairs(v: &[(UserName, Credential)]) -> impl Iterator<Item = (&UserName, &Credential)> {
        v.iter().map(|(n, c)| (n, c))
    }

    #[test]
    fn parses_and_round_trips() {
        let h = crate::auth::password::hash(&Secret::new("x").unwrap()).unwrap();
        let text = format!("# c\n\nalice:pw\nbob:a:b\r\ncarl:{}\n", h.as_str());
        let users = parse(&text).unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users[1].0, "bob");
        assert_eq!(users[1].1, plain("a:b"));
        assert_eq!(users[2].1, Credential::Hashed(h));
        assert_eq!(parse(&render(pairs(&users))).unwrap(), users);
    }

    #[test]
    fn rejects_bad_lines_by_number() {
        let line = |t: &str| parse(t).unwrap_err().line;
        assert_eq!(line("alice"), 1);
        assert_eq!(line("ok:1\n:pw"), 2);
        assert_eq!(line("a:1\na:2"), 2);
        assert_eq!(line("ok:1\nb\x1bc:pw"), 2);
        assert_eq!(line("ok:1\n\nx:\0pw"), 3);
        assert_eq!(line("ok:1\nx:$argon2id$broken"), 2);
        let err = parse("x:secretpw\nbad").unwrap_err().to_string();
        assert!(err.starts_with("line 2") && !err.contains("secretpw"));
    }

    #[test]
    fn store_is_atomic_and_stale_temporaries_go() {
        let dir = std::env::temp_dir().join(format!("as-users-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users");
        let users = vec![(UserName::new("a").unwrap(), plain("b"))];
        store(&path, pairs(&users)).unwrap();
        assert_eq!(load(&path).unwrap(), users);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // What a kill -9 during a write leaves, and what is not ours: a
        // directory in the way does not stop the others from going.
        fs::write(dir.join(".users.tmp-4242"), "a:leaked\n").unwrap();
        fs::create_dir(dir.join(".users.tmp-2")).unwrap();
        fs::write(dir.join(".users.tmp-99999999"), "a:leaked\n").unwrap();
        fs::write(dir.join(".users.tmp-x"), "").unwrap();
        fs::write(dir.join(".other.tmp-1"), "").unwrap();
        // A live process's (ours) is left: it may be writing.
        let live = dir.join(format!(".users.tmp-{}", std::process::id()));
        fs::write(&live, "").unwrap();
        let (removed, errors) = remove_stale_temporaries(&path).unwrap();
        assert_eq!((removed, errors.len()), (2, 0), "{errors:?}");
        assert!(!dir.join(".users.tmp-4242").exists());
        assert!(!dir.join(".users.tmp-99999999").exists());
        assert!(dir.join(".users.tmp-x").exists() && dir.join(".other.tmp-1").exists());
        assert!(dir.join(".users.tmp-2").is_dir() && live.exists());
        fs::remove_file(&live).unwrap();
        // A file or symlink planted at our temporary name is not written
        // through, and the users file stays 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let victim = dir.join("victim");
            fs::write(&victim, "untouched").unwrap();
            std::os::unix::fs::symlink(&victim, &live).unwrap();
            store(&path, pairs(&users)).unwrap();
            assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
            assert!(!fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink());
            fs::write(&live, "").unwrap();
            fs::set_permissions(&live, fs::Permissions::from_mode(0o644)).unwrap();
            store(&path, pairs(&users)).unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
