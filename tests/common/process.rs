//! Running the `actor-socks` binary in tests: a scratch directory, the
//! child started on port 0 with a ready file, signals, its exit status.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("actor-socks-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts the binary with `args`, waits for its ready file, returns the child
/// and the SOCKS address.
#[allow(clippy::zombie_processes)] // the caller reaps the child it is handed
pub async fn spawn(dir: &std::path::Path, args: &[&str]) -> (Child, std::net::SocketAddr) {
    let ready = dir.join("ready");
    let mut child = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
        .args(["--bind", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..250 {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let addr = text
                .lines()
                .find_map(|l| l.strip_prefix("socks "))
                .expect("socks line")
                .parse()
                .unwrap();
            return (child, addr);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "no ready file; log: {}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

pub async fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st.code().unwrap_or(-1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    None
}
