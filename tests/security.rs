//! What an attacker tries, end to end, in-process on loopback port 0: an
//! authentication that switches itself off, the unspecified address past the
//! loopback rules, users-file injection through the manager, brute force of
//! the administrator's password, stale temporary users files, UDP senders
//! the client rules refuse. (Forged log lines and bad numbers are in
//! tests/cli.rs: they need the binary's own stderr and flags.)

mod common;

use common::manager::*;
use common::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actor_socks::auth::throttle::ThrottlePolicy;
use actor_socks::auth::AuthPolicy;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Sends a greeting offering `methods`; returns the method the server chose.
async fn chosen_method(proxy: SocketAddr, methods: &[u8]) -> u8 {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let mut greeting = vec![0x05, methods.len() as u8];
    greeting.extend_from_slice(methods);
    s.write_all(&greeting).await.unwrap();
    let reply = read_n(&mut s, 2).await;
    assert_eq!(reply[0], 0x05);
    reply[1]
}

/// Every way a client might ask: no auth, username/password, both.
async fn assert_refused_whatever_offered(proxy: SocketAddr) {
    for methods in [
        &[0x00][..],
        &[0x02],
        &[0x00, 0x02],
        &[0x02, 0x00],
        &[0x01, 0x00, 0x80],
    ] {
        assert_eq!(
            chosen_method(proxy, methods).await,
            0xFF,
            "offered {methods:02x?}"
        );
    }
}

fn remove_user_msg(user: &str) -> Vec<u8> {
    let mut v = vec![0x05, 0x04, user.len() as u8];
    v.extend_from_slice(user.as_bytes());
    v
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("actor-socks-sec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// --- 1. Authentication never switches itself off -----------------------------

#[actix_rt::test]
async fn removing_the_last_user_refuses_everyone() {
    let mut c = mgr_config();
    c.users = vec![user("alice", "secret")];
    let server = start(c).await;
    let (proxy, mgr) = (server.socks_addrs[0], manager_addr(&server));
    assert_eq!(chosen_method(proxy, &[0x00]).await, 0xFF, "alice exists");
    assert_eq!(
        command(mgr, &remove_user_msg("alice")).await,
        [0x05, 0x04, 0x00]
    );
    assert_refused_whatever_offered(proxy).await;
    // A rotation done as remove + add: the window refuses, never opens.
    assert_eq!(
        command(mgr, &add_user_msg("alice", "rotated")).await,
        [0x05, 0x00, 0x00]
    );
    assert_eq!(chosen_method(proxy, &[0x00]).await, 0xFF);
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, rep, _) = request(proxy, Some(("alice", "rotated")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);
    echo_round_trip(&mut s, b"through").await;
    // Five refusals for want of any user (offering no method is not counted).
    assert_eq!(snapshot(&server).await.auth_failures, 5);
}

#[actix_rt::test]
async fn an_emptied_users_file_reloaded_refuses_everyone() {
    let dir = scratch("emptied");
    let path = dir.join("users");
    std::fs::write(&path, "bob:builder\n").unwrap();
    let mut c = config();
    c.users_file = Some(path.clone());
    let server = start(c).await;
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;
    let (_s, rep, _) = request(proxy, Some(("bob", "builder")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);
    for emptied in ["", "# nobody\n", "\n\n"] {
        std::fs::write(&path, emptied).unwrap();
        assert_eq!(server.reload_users().await, Ok(0));
        assert_refused_whatever_offered(proxy).await;
    }
    // A file that does not parse changes nothing (still refused).
    std::fs::write(&path, "no colon here\n").unwrap();
    assert!(server.reload_users().await.unwrap_err().contains("line 1"));
    assert_refused_whatever_offered(proxy).await;
}

#[actix_rt::test]
async fn auth_policies() {
    // required, no users: nobody gets in.
    let mut c = config();
    c.auth = AuthPolicy::Required;
    let server = start(c).await;
    assert_refused_whatever_offered(server.socks_addrs[0]).await;
    // A users file that does not exist yet: required (auto), nobody in.
    let mut c = config();
    c.users_file = Some(scratch("missing").join("users"));
    let server = start(c).await;
    assert_refused_whatever_offered(server.socks_addrs[0]).await;
    // none: open.
    let mut c = config();
    c.auth = AuthPolicy::None;
    let server = start(c).await;
    assert_eq!(chosen_method(server.socks_addrs[0], &[0x00]).await, 0x00);
    // auto with no users (the loopback default): open, until a user is
    // added, then never open again.
    let server = start(mgr_config()).await;
    let (proxy, mgr) = (server.socks_addrs[0], manager_addr(&server));
    assert_eq!(chosen_method(proxy, &[0x00, 0x02]).await, 0x00);
    assert_eq!(
        command(mgr, &add_user_msg("carl", "pw")).await,
        [0x05, 0x00, 0x00]
    );
    assert_eq!(chosen_method(proxy, &[0x00, 0x02]).await, 0x02);
    assert_eq!(
        command(mgr, &remove_user_msg("carl")).await,
        [0x05, 0x04, 0x00]
    );
    assert_refused_whatever_offered(proxy).await;
}

#[actix_rt::test]
async fn credentials_outside_the_rules_get_an_rfc1929_failure() {
    let mut c = config();
    c.users = vec![user("alice", "secret")];
    let server = start(c).await;
    let proxy = server.socks_addrs[0];
    let field = |v: &[u8]| [&[v.len() as u8][..], v].concat();
    for (name, pass) in [
        (
            &b"mallory\nNov 29 00:00:00.000 INFO user added, user: root"[..],
            &b"x"[..],
        ),
        (b"al:ice", b"secret"),
        (b"#alice", b"secret"),
        (b"\x1b[2Jalice", b"secret"),
        (b"alice", b"secret\n"),
        (b"alice", b"sec\0ret"),
        (b"\xff", b"secret"),
        (b"", b"secret"),
        (b"alice", b""),
    ] {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&[0x05, 0x01, 0x02]).await.unwrap();
        assert_eq!(read_n(&mut s, 2).await, [0x05, 0x02]);
        let msg = [&[0x01][..], &field(name), &field(pass)].concat();
        s.write_all(&msg).await.unwrap();
        assert_eq!(read_n(&mut s, 2).await, [0x01, 0x01], "{name:?}");
        assert!(closed(&mut s).await);
    }
}

// --- 2. The unspecified address and other encodings of the local host ---------

/// A TCP service bound only to 127.0.0.1, counting who reaches it.
async fn loopback_service() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((_s, _)) = l.accept().await {
            let _ = tx.send(());
        }
    });
    (addr, rx)
}

fn connect_v6(ip: &str, port: u16) -> Vec<u8> {
    let ip: std::net::Ipv6Addr = ip.parse().unwrap();
    connect_ip(SocketAddr::new(IpAddr::V6(ip), port))
}

#[actix_rt::test]
async fn the_unspecified_address_never_reaches_the_host() {
    let (service, mut reached) = loopback_service().await;
    let port = service.port();
    let recipe = || {
        let mut c = config();
        c.targets.deny = vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        c
    };
    let local = || {
        let mut c = config();
        c.targets.deny = vec!["local".parse().unwrap()];
        c
    };
    for (what, c) in [
        ("recipe", recipe()),
        ("no rules", config()),
        ("local", local()),
    ] {
        let server = start(c).await;
        let proxy = server.socks_addrs[0];
        let mut asks = vec![
            connect_ip(SocketAddr::new([0, 0, 0, 0].into(), port)),
            connect_ip(SocketAddr::new([0, 1, 2, 3].into(), port)),
            connect_v6("::", port),
            connect_v6("::ffff:0.0.0.0", port),
            connect_domain("0.0.0.0", port),
        ];
        if what != "no rules" {
            asks.extend([
                connect_v6("::ffff:127.0.0.1", port),
                connect_v6("::127.0.0.1", port),
                connect_domain("localhost", port),
                connect_domain("127.1", port),
                connect_domain("2130706433", port),
                connect_ip(service),
            ]);
        }
        for ask in asks {
            let (_s, rep, _) = request(proxy, None, &ask).await;
            assert_eq!(rep, 0x02, "{what}: {ask:02x?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        reached.try_recv().is_err(),
        "the loopback service was reached"
    );
}

#[actix_rt::test]
async fn deny_local_covers_every_address_of_the_host() {
    let mut c = config();
    c.targets.deny = vec!["local".parse().unwrap()];
    let server = start(c).await;
    for i in if_addrs::get_if_addrs().unwrap() {
        if let IpAddr::V6(v6) = i.ip() {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                continue; // link-local: SOCKS cannot name its scope
            }
        }
        let (_s, rep, _) = request(
            server.socks_addrs[0],
            None,
            &connect_ip(SocketAddr::new(i.ip(), 9)),
        )
        .await;
        assert_eq!(rep, 0x02, "{}", i.ip());
    }
}

#[actix_rt::test]
async fn udp_datagrams_to_the_unspecified_address_are_dropped() {
    let service = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = service.local_addr().unwrap().port();
    let server = start(config()).await;
    let (_control, client) = udp_associate(server.socks_addrs[0], ("127.0.0.1", 0)).await;
    for to in ["0.0.0.0", "::", "::ffff:0.0.0.0", "0.0.0.1"] {
        let to = SocketAddr::new(to.parse().unwrap(), port);
        client
            .send(&udp_datagram(0, &addr_bytes(to), b"to the host itself"))
            .await
            .unwrap();
    }
    assert_eq!(recv_timeout(&service, 300).await, None);
}

// --- 3. The users file cannot be injected through the manager -----------------

#[actix_rt::test]
async fn manager_refuses_names_and_passwords_that_would_corrupt_the_file() {
    let dir = scratch("inject");
    let path = dir.join("users");
    let mut c = mgr_config();
    c.users_file = Some(path.clone());
    let server = start(c).await;
    let mgr = manager_addr(&server);
    assert_eq!(
        command(mgr, &add_user_msg("carl", "pw")).await,
        [0x05, 0x00, 0x00]
    );
    let before = std::fs::read_to_string(&path).unwrap();
    for (name, pass) in [
        ("carl2", "pw\nmallory:evil"),
        ("carl3", "pw\r\nmallory:evil"),
        ("carl4", "pw\0"),
        ("mal\nlory", "pw"),
        ("mal:lory", "pw"),
        ("#mallory", "pw"),
        (" mallory", "pw"),
        ("mal\x1blory", "pw"),
        ("mal\u{85}lory", "pw"),
    ] {
        assert_eq!(
            command(mgr, &add_user_msg(name, pass)).await,
            [0x05, 0x00, 0x05],
            "{name:?} {pass:?}"
        );
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    // After a reload (as after SIGHUP or a restart): carl only.
    assert_eq!(server.reload_users().await, Ok(1));
    let list = command(mgr, &[0x05, 0x01]).await;
    assert_eq!(list, [&[0x05, 0x01, 0x01, 4][..], b"carl"].concat());
    let proxy = server.socks_addrs[0];
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[0x05, 0x01, 0x02]).await.unwrap();
    read_n(&mut s, 2).await;
    s.write_all(&auth_bytes("mallory", "evil")).await.unwrap();
    assert_eq!(read_n(&mut s, 2).await, [0x01, 0x01]);
}

// --- 5. The administrator's password cannot be guessed at wire speed ----------

fn throttled_config() -> actor_socks::config::Config {
    let mut c = mgr_config();
    c.manager_throttle = ThrottlePolicy {
        base_delay: Duration::from_millis(40),
        max_delay: Duration::from_millis(320),
        lockout_after: 5,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(60),
        capacity: 64,
        global_failures: 10,
    };
    c
}

#[actix_rt::test]
async fn failed_logins_slow_down_then_lock_the_source_out() {
    let server = start(throttled_config()).await;
    let mgr = manager_addr(&server);
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let list = [0x05, 0x01];
    // Each failure waits longer before its reply: 40, 80, 160, 320, 320 ms.
    let mut took = Vec::new();
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        let (auth, _) = exchange_from(mgr, here, (ADMIN.0, "guess"), &list).await;
        assert_eq!(auth, [0x05, 0x02]);
        took.push(t0.elapsed());
    }
    for (t, min) in took.iter().zip([40, 80, 160, 320, 320]) {
        assert!(*t >= Duration::from_millis(min), "{took:?}");
    }
    // Locked out: even the right password is refused, at once.
    let t0 = std::time::Instant::now();
    let (auth, _) = exchange_from(mgr, here, ADMIN, &list).await;
    assert_eq!(auth, [0x05, 0x02]);
    assert!(t0.elapsed() < Duration::from_millis(300));
    // Another address is not slowed by someone else's failures.
    let t0 = std::time::Instant::now();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let (auth, reply) = exchange_from(mgr, other, ADMIN, &list).await;
    assert_eq!(
        (auth, reply),
        (vec![0x05, 0x00], Some(vec![0x05, 0x01, 0x00]))
    );
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    let s = snapshot(&server).await;
    assert_eq!((s.admin_auth_failures, s.admin_locked_out), (5, 1));
}

/// 200 guesses as fast as the client can send them: only the first five
/// are ever checked.
#[actix_rt::test]
async fn a_guessing_flood_gets_five_guesses() {
    let server = start(throttled_config()).await;
    let mgr = manager_addr(&server);
    let here: IpAddr = "127.0.0.3".parse().unwrap();
    for batch in 0..10 {
        let guesses = (0..20).map(|i| {
            let pass = format!("guess-{batch}-{i}");
            async move { exchange_from(mgr, here, (ADMIN.0, &pass), &[0x05, 0x01]).await }
        });
        for (auth, reply) in futures::future::join_all(guesses).await {
            assert_eq!((auth, reply), (vec![0x05, 0x02], None));
        }
    }
    let s = snapshot(&server).await;
    // Logins are judged one at a time: the fifth failure locks the source.
    assert_eq!(
        (s.admin_auth_failures, s.admin_locked_out),
        (5, 195),
        "{s:?}"
    );
}

/// One guess from each of many addresses (a local user owns all of
/// 127.0.0.0/8): past the global budget, new sources are refused unchecked,
/// even with the right password; a source that logged in before is not.
#[actix_rt::test]
async fn guesses_from_many_addresses_share_one_budget() {
    let server = start(throttled_config()).await;
    let mgr = manager_addr(&server);
    let list = [0x05, 0x01];
    let admin: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(
        exchange_from(mgr, admin, ADMIN, &list).await.0,
        [0x05, 0x00]
    );
    for i in 0..40u8 {
        let from = IpAddr::from([127, 7, 0, i + 1]);
        let pass = if i == 35 { ADMIN.1 } else { "guess" };
        let (auth, _) = exchange_from(mgr, from, (ADMIN.0, pass), &list).await;
        assert_eq!(auth, [0x05, 0x02], "guess {i} from {from}");
    }
    let s = snapshot(&server).await;
    assert_eq!(
        (s.admin_auth_failures, s.admin_locked_out),
        (10, 30),
        "{s:?}"
    );
    // The administrator's known address still gets in, at once.
    let t0 = std::time::Instant::now();
    let (auth, reply) = exchange_from(mgr, admin, ADMIN, &list).await;
    assert_eq!(
        (auth, reply),
        (vec![0x05, 0x00], Some(vec![0x05, 0x01, 0x00]))
    );
    assert!(t0.elapsed() < Duration::from_millis(300));
}

// --- 6. Plaintext at rest ------------------------------------------------------

#[actix_rt::test]
async fn stale_temporary_users_files_are_removed_at_start() {
    let dir = scratch("stale");
    let path = dir.join("users");
    std::fs::write(&path, "").unwrap();
    let stale = dir.join(".users.tmp-4242");
    std::fs::write(&stale, "alice:every-password\n").unwrap();
    let mut c = config();
    c.users_file = Some(path);
    let _server = start(c).await;
    assert!(!stale.exists());
}

// --- 7. UDP senders obey the client rules -------------------------------------

#[actix_rt::test]
async fn udp_senders_the_client_rules_refuse_are_dropped() {
    let echo = udp_echo("127.0.0.1:0").await;
    for (sender, relayed) in [("127.0.0.3", false), ("127.0.0.4", true)] {
        let mut c = config();
        c.clients.deny = vec!["127.0.0.3".parse().unwrap()];
        let server = start(c).await;
        // The control connection comes from an allowed address, and names
        // another host as the UDP sender.
        let (_control, third) = udp_associate(server.socks_addrs[0], (sender, 0)).await;
        third
            .send(&udp_datagram(0, &addr_bytes(echo), b"via a third host"))
            .await
            .unwrap();
        let got = recv_timeout(&third, if relayed { 3000 } else { 300 }).await;
        assert_eq!(got.is_some(), relayed, "sender {sender}");
        let bytes = snapshot(&server).await.bytes;
        assert_eq!(bytes > 0, relayed, "sender {sender}: {bytes} bytes relayed");
    }
}
