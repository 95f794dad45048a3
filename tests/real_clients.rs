//! Clients written by others talk to the proxy: curl and the `socks` crate.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::Command;

async fn curl(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(&args)
            .output()
            .expect("curl is installed (.ci/run installs it)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[actix_rt::test]
async fn curl_through_the_proxy_without_auth() {
    let server = start(config()).await;
    let web = http_server("hello from the origin").await;
    let (ok, body) = curl(vec![
        "--socks5-hostname".into(),
        server.socks_addrs[0].to_string(),
        format!("http://localhost:{}/", web.port()),
    ])
    .await;
    assert!(ok);
    assert_eq!(body, "hello from the origin");
}

#[actix_rt::test]
async fn curl_with_username_and_password() {
    let mut c = config();
    c.users = vec![user("carol", "s3cret")];
    let server = start(c).await;
    let web = http_server("authenticated page").await;
    let proxy = server.socks_addrs[0].to_string();
    let url = format!("http://127.0.0.1:{}/", web.port());
    let (ok, body) = curl(vec![
        "--socks5-hostname".into(),
        proxy.clone(),
        "--proxy-user".into(),
        "carol:s3cret".into(),
        url.clone(),
    ])
    .await;
    assert!(ok);
    assert_eq!(body, "authenticated page");
    let (ok, _) = curl(vec![
        "--socks5-hostname".into(),
        proxy.clone(),
        "--proxy-user".into(),
        "carol:wrong".into(),
        url.clone(),
    ])
    .await;
    assert!(!ok, "a wrong password must fail");
    let (ok, _) = curl(vec!["--socks5-hostname".into(), proxy, url]).await;
    assert!(!ok, "no credentials must fail");
}

#[actix_rt::test]
async fn socks_crate_client_connects_with_password() {
    let mut c = config();
    c.users = vec![user("dave", "pw")];
    let server = start(c).await;
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;
    tokio::task::spawn_blocking(move || {
        let mut s = socks::Socks5Stream::connect_with_password(proxy, echo, "dave", "pw").unwrap();
        s.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        assert!(socks::Socks5Stream::connect_with_password(proxy, echo, "dave", "nope").is_err());
    })
    .await
    .unwrap();
}
