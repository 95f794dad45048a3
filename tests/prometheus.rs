//! `--metrics-bind` scraped by a real Prometheus server (Debian's
//! `prometheus` package, installed by scripts/setup.sh): traffic through
//! the proxy, then the counters read back through Prometheus's HTTP query
//! API; `promtool check metrics` on the exposition. Loopback only.

mod common;

use common::process::*;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed: run scripts/setup.sh (Debian package `prometheus`)"
    );
    String::from_utf8(found.stdout).unwrap().trim().to_string()
}

fn curl(args: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A loopback port nobody holds now (Prometheus takes its listen address
/// as a flag and cannot report a port 0 back).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of a PromQL query with one result, if it has one yet.
fn query(prom: &str, q: &str) -> Option<f64> {
    let body = curl(&[
        "-G",
        &format!("http://{prom}/api/v1/query"),
        "--data-urlencode",
        &format!("query={q}"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    let value = result.first()?["value"][1].as_str()?;
    value.parse().ok()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_counters() {
    let prometheus = tool("prometheus");
    let promtool = tool("promtool");
    let dir = scratch("prometheus");
    let (mut proxy_child, proxy) = spawn(
        &dir,
        &[
            "--metrics-bind",
            "127.0.0.1:0",
            "--user",
            "alice:pw",
            "--user",
            r#"q"u\o:pw"#,
        ],
    )
    .await;
    let ready = std::fs::read_to_string(dir.join("ready")).unwrap();
    let metrics = ready
        .lines()
        .find_map(|l| l.strip_prefix("metrics "))
        .expect("a metrics line")
        .to_string();

    // Traffic: 5 sessions as alice, 1000 bytes each way.
    let echo = echo_server("127.0.0.1:0").await;
    for _ in 0..5 {
        let (mut s, rep, _) = request(proxy, Some(("alice", "pw")), &connect_ip(echo)).await;
        assert_eq!(rep, 0);
        echo_round_trip(&mut s, &[1u8; 1000]).await;
    }

    // A user name with a quote and a backslash (allowed) must not break
    // the exposition.
    let (mut s, rep, _) = request(proxy, Some((r#"q"u\o"#, "pw")), &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, b"x").await;
    drop(s);

    // The exposition itself passes promtool.
    let text = curl(&[&format!("http://{metrics}/metrics")]);
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scrapes it every second.
    let port = free_port();
    let prom = format!("127.0.0.1:{port}");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: actor-socks\n    \
             static_configs:\n      - targets: [\"{metrics}\"]\n"
        ),
    )
    .unwrap();
    let mut server = Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let mut got = (None, None, None, None);
    let want = (Some(5001.0), Some(5.0), Some(1.0), Some(1.0));
    for _ in 0..150 {
        got = (
            query(&prom, r#"actor_socks_bytes_total{direction="up"}"#),
            query(&prom, r#"actor_socks_user_sessions_total{user="alice"}"#),
            query(&prom, r#"up{job="actor-socks"}"#),
            query(&prom, r#"actor_socks_user_sessions_total{user!="alice"}"#),
        );
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = curl(&[
        "-G",
        &format!("http://{prom}/api/v1/query"),
        "--data-urlencode",
        "query=actor_socks_user_sessions_total",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    // The awkward name came through whole.
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    let users: Vec<&str> = all["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["metric"]["user"].as_str())
        .collect();
    assert!(users.contains(&r#"q"u\o"#), "{users:?}");
    assert_eq!(
        got,
        want,
        "prometheus log: {}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
    signal(&proxy_child, "-TERM");
    assert_eq!(
        wait_exit(&mut proxy_child, Duration::from_secs(10)).await,
        Some(0)
    );
}

/// The endpoint's HTTP: 404 elsewhere, 405 for other methods, the 0.0.4
/// format unless OpenMetrics is asked for.
#[tokio::test]
async fn the_endpoint_speaks_plain_http() {
    let dir = scratch("metrics-http");
    let (mut child, _) = spawn(&dir, &["--metrics-bind", "127.0.0.1:0"]).await;
    let ready = std::fs::read_to_string(dir.join("ready")).unwrap();
    let m = ready
        .lines()
        .find_map(|l| l.strip_prefix("metrics "))
        .unwrap()
        .to_string();
    let code =
        |args: &[&str]| curl(&[&["-o", "/dev/null", "-w", "%{http_code}"][..], args].concat());
    assert_eq!(code(&[&format!("http://{m}/")]), "404");
    assert_eq!(code(&["-X", "POST", &format!("http://{m}/metrics")]), "405");
    let plain = curl(&["-i", &format!("http://{m}/metrics")]);
    assert!(plain.contains("text/plain; version=0.0.4"), "{plain}");
    assert!(!plain.contains("# EOF"));
    let om = curl(&[
        "-i",
        "-H",
        "Accept: application/openmetrics-text; version=1.0.0",
        &format!("http://{m}/metrics"),
    ]);
    assert!(om.contains("application/openmetrics-text") && om.trim_end().ends_with("# EOF"));
    // Idle connections cannot keep a scraper out: a new one closes the
    // oldest.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&m).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        code(&[&format!("http://{m}/metrics")]),
        "200",
        "a scrape with 20 idle"
    );
    drop(idle);
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
}
