//! The supervision tree under load, in-process on loopback port 0: for every
//! node, a panic injected (manager FAULT, `--fault-injection`) while bulk
//! transfers and new connections run; then every transfer finished with its
//! exact bytes, no new connection was refused, users and max clients are
//! unchanged, and TREE shows one restart with the node running.

mod common;

use common::manager::*;
use common::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actor_socks::config::Config;
use actor_socks::protocol::manager::tree::NodeState;
use actor_socks::protocol::manager::{Cmd, FaultAction, Reply, Request, TreeNode};
use actor_socks::supervision::policy::parse_override;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: (&str, &str) = ("alice", "alice-pw");

fn sup_config() -> Config {
    let mut c = mgr_config();
    c.users = vec![user(USER.0, USER.1)];
    c.supervision.fault_injection = true;
    c
}

async fn tree(mgr: std::net::SocketAddr) -> Vec<TreeNode> {
    let reply = command(mgr, &Request::Tree.to_vec()).await;
    match Reply::decode_for(Cmd::Tree, &reply).expect("a tree reply") {
        Reply::Tree(t) => t.nodes,
        other => panic!("not a tree: {other:?}"),
    }
}

fn node<'a>(nodes: &'a [TreeNode], name: &str) -> &'a TreeNode {
    nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name} in {nodes:?}"))
}

async fn fault(mgr: std::net::SocketAddr, node: &str, action: FaultAction) -> Vec<u8> {
    let req = Request::Fault {
        node: node.into(),
        action,
    };
    command(mgr, &req.to_vec()).await
}

/// A paced echo transfer of `n` bytes through the proxy: writes and reads
/// at once, checks every byte; returns the bytes echoed back.
async fn bulk(proxy: std::net::SocketAddr, target: std::net::SocketAddr, n: usize) -> usize {
    let (s, rep, _) = request(proxy, Some(USER), &connect_ip(target)).await;
    assert_eq!(rep, 0x00);
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk: Vec<u8> = (0..32 * 1024).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < n {
            let m = chunk.len().min(n - sent);
            w.write_all(&chunk[..m]).await.unwrap();
            sent += m;
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        w.shutdown().await.unwrap();
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let k = tokio::time::timeout(Duration::from_secs(20), r.read(&mut buf))
            .await
            .expect("the relay stalled")
            .expect("the relay failed");
        if k == 0 {
            break;
        }
        for (j, b) in buf[..k].iter().enumerate() {
            assert_eq!(
                *b,
                (((got + j) % (32 * 1024)) % 251) as u8,
                "byte {}",
                got + j
            );
        }
        got += k;
    }
    writer.await.unwrap();
    got
}

/// New clients, one after another: each a CONNECT and an echo round trip.
/// Returns (served, failed).
async fn churn(
    proxy: std::net::SocketAddr,
    target: std::net::SocketAddr,
    rounds: u32,
) -> (u32, u32) {
    let (mut ok, mut failed) = (0, 0);
    for i in 0..rounds {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(proxy).await.ok()?;
            s.write_all(&[0x05, 0x01, 0x02]).await.ok()?;
            let mut head = [0u8; 2];
            s.read_exact(&mut head).await.ok()?;
            s.write_all(&auth_bytes(USER.0, USER.1)).await.ok()?;
            s.read_exact(&mut head).await.ok()?;
            if head != [0x01, 0x00] {
                return None;
            }
            s.write_all(&connect_ip(target)).await.ok()?;
            let mut reply = [0u8; 10];
            s.read_exact(&mut reply).await.ok()?;
            if reply[1] != 0 {
                return None;
            }
            let payload = format!("round {i}");
            s.write_all(payload.as_bytes()).await.ok()?;
            let mut back = vec![0u8; payload.len()];
            s.read_exact(&mut back).await.ok()?;
            (back == payload.as_bytes()).then_some(())
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Some(())) => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (ok, failed)
}

/// The scenario of the module header for `name`.
async fn panic_under_load(name: &str) {
    let server = start(sup_config()).await;
    let mgr = manager_addr(&server);
    let proxy = server.socks_addrs[0];
    let target = echo_server("127.0.0.1:0").await;
    assert_eq!(command(mgr, &set_max_msg(500)).await, [0x05, 0x03, 0x00]);
    let before = tree(mgr).await;
    assert!(before.iter().all(|n| n.state == NodeState::Running));
    assert_eq!(node(&before, name).restarts, 0);

    const BULK: usize = 1 << 20;
    let transfers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(bulk(proxy, target, BULK)))
        .collect();
    let clients = tokio::spawn(churn(proxy, target, 40));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        fault(mgr, name, FaultAction::Panic).await,
        [0x05, 0x07, 0x00],
        "FAULT {name} accepted"
    );
    for t in transfers {
        assert_eq!(t.await.unwrap(), BULK, "{name}: a transfer lost bytes");
    }
    let (served, failed) = clients.await.unwrap();
    assert_eq!((served, failed), (40, 0), "{name}: new clients refused");

    // The node restarted once, on purpose, and runs.
    eventually(&format!("{name} running again"), || async move {
        node(&tree(mgr).await, name).state == NodeState::Running
    })
    .await;
    let after = tree(mgr).await;
    let n = node(&after, name);
    assert_eq!((n.restarts, n.injected, n.failures), (1, 1, 0), "{n:?}");
    let reason = &n
        .last_failure
        .as_ref()
        .expect("a failure time and reason")
        .1;
    assert!(reason.contains("fault injected"), "{reason}");
    for other in after.iter().filter(|o| o.name != name) {
        assert_eq!(other.restarts, 0, "one_for_one: {} untouched", other.name);
    }
    // Users and max clients as they were; the manager and the proxy serve.
    let users = command(mgr, &[0x05, 0x01]).await;
    assert_eq!(
        Reply::decode_for(Cmd::ListUsers, &users).unwrap(),
        Reply::Users(vec![user(USER.0, USER.1).0])
    );
    assert_eq!(server.max_clients(), 500);
    assert_eq!(churn(proxy, target, 3).await, (3, 0));
    let s = snapshot(&server).await;
    assert_eq!(s.restarts, 1);
    eventually("every slot given back", || async {
        server.active_clients() == 0
    })
    .await;
}

#[actix_rt::test]
async fn registry_panics_under_load() {
    panic_under_load("registry").await;
}

#[actix_rt::test]
async fn metrics_panics_under_load() {
    panic_under_load("metrics").await;
}

#[actix_rt::test]
async fn supervisor_panics_under_load() {
    panic_under_load("supervisor").await;
}

#[actix_rt::test]
async fn listener_0_panics_under_load() {
    panic_under_load("listener/0").await;
}

#[actix_rt::test]
async fn listener_1_panics_under_load() {
    panic_under_load("listener/1").await;
}

#[actix_rt::test]
async fn manager_panics_under_load() {
    panic_under_load("manager").await;
}

#[actix_rt::test]
async fn udp_driver_panics_under_load() {
    panic_under_load("udp-driver").await;
}

/// The registry panics on a request; the one asking gets an error, the
/// next request is served by the restarted registry with the same users.
#[actix_rt::test]
async fn a_stop_restarts_a_permanent_node_too() {
    let server = start(sup_config()).await;
    let mgr = manager_addr(&server);
    assert_eq!(fault(mgr, "registry", FaultAction::Stop).await, [5, 7, 0]);
    assert_eq!(
        command(mgr, &add_user_msg("bob", "bob-pw")).await,
        [0x05, 0x00, 0x00]
    );
    let t = tree(mgr).await;
    let n = node(&t, "registry");
    assert_eq!((n.restarts, n.injected), (1, 1));
    assert!(n.last_failure.as_ref().unwrap().1.starts_with("stopped"));
}

/// A SOCKS session that panics: only that client is dropped; its record
/// says `crashed`, the crash is counted, its slot is given back; the
/// listener and the other clients carry on.
#[actix_rt::test]
async fn a_crashed_session_gives_its_slot_back() {
    let server = start(sup_config()).await;
    let mgr = manager_addr(&server);
    let proxy = server.socks_addrs[0];
    let target = echo_server("127.0.0.1:0").await;
    let (mut victim, rep, _) = request(proxy, Some(USER), &connect_ip(target)).await;
    assert_eq!(rep, 0);
    let (mut bystander, rep, _) = request(proxy, Some(USER), &connect_ip(target)).await;
    assert_eq!(rep, 0);
    assert_eq!(server.active_clients(), 2);
    // Session ids start at 0: the victim is session/0.
    assert_eq!(fault(mgr, "session/0", FaultAction::Panic).await, [5, 7, 0]);
    assert!(
        closed(&mut victim).await,
        "the crashed session's client is closed"
    );
    echo_round_trip(&mut bystander, b"still here").await;
    eventually("the slot given back", || async {
        server.active_clients() == 1
    })
    .await;
    let s = snapshot(&server).await;
    assert_eq!(s.session_crashes, 1);
    let t = tree(mgr).await;
    let crashed: u64 = t
        .iter()
        .filter_map(|n| n.sessions.filter(|_| n.name.starts_with("listener/")))
        .map(|(_, c)| c)
        .sum();
    assert_eq!(crashed, 1, "counted by its worker");
    assert!(t.iter().all(|n| n.restarts == 0), "nothing restarted");
    assert_eq!(
        fault(mgr, "session/999", FaultAction::Panic).await,
        [5, 7, 0x0A],
        "no such session"
    );
    drop(bystander);
}

#[actix_rt::test]
async fn faults_are_refused_without_the_flag_and_for_unknown_nodes() {
    let mut c = sup_config();
    c.supervision.fault_injection = false;
    let server = start(c).await;
    let mgr = manager_addr(&server);
    assert_eq!(
        fault(mgr, "registry", FaultAction::Panic).await,
        [5, 7, 0x09]
    );
    let t = tree(mgr).await;
    assert!(t.iter().all(|n| n.injected == 0 && n.restarts == 0));

    let server = start(sup_config()).await;
    let mgr = manager_addr(&server);
    for bad in [
        "nosuch",
        "connections",
        "root",
        "listener/9",
        "session/x",
        "session/",
        "session/+0",
        "session/00",
        "session/-1",
        "session/18446744073709551616",
    ] {
        assert_eq!(
            fault(mgr, bad, FaultAction::Panic).await,
            [5, 7, 0x0A],
            "{bad}"
        );
    }
}

/// TREE names every node, in pre-order with depths, with policies.
#[actix_rt::test]
async fn the_tree_is_drawn_in_start_order() {
    let mut c = sup_config();
    c.supervision.overrides = vec![
        parse_override("connections:strategy=rest_for_one").unwrap(),
        parse_override("registry:intensity=7/20s").unwrap(),
        parse_override("manager:intensity=4/5s").unwrap(),
        parse_override("udp-driver:intensity=9/2400h").unwrap(),
    ];
    let server = start(c).await;
    let t = tree(manager_addr(&server)).await;
    let shape: Vec<(u8, &str)> = t.iter().map(|n| (n.depth, n.name.as_str())).collect();
    assert_eq!(
        shape,
        [
            (0, "root"),
            (1, "registry"),
            (1, "metrics"),
            (1, "connections"),
            (2, "supervisor"),
            (2, "listener/0"),
            (2, "listener/1"),
            (1, "management"),
            (2, "udp-driver"),
            (2, "manager"),
        ]
    );
    assert_eq!(node(&t, "connections").strategy.as_str(), "rest_for_one");
    let r = node(&t, "registry");
    assert_eq!((r.intensity, r.period_ms), (7, 20_000));
    let m = node(&t, "manager");
    assert_eq!((m.intensity, m.period_ms), (4, 5_000));
    let d = node(&t, "udp-driver");
    assert_eq!(
        d.period_ms,
        2400 * 3600 * 1000,
        "100 days, not cut at 32 bits"
    );
    assert!(node(&t, "listener/0").sessions.is_some());
    assert!(node(&t, "registry").sessions.is_none());
}

/// one_for_all under `connections`: a listener's panic restarts the
/// supervisor and every listener, and clients still get through.
#[actix_rt::test]
async fn one_for_all_restarts_the_siblings() {
    let mut c = sup_config();
    c.supervision.overrides = vec![parse_override("connections:strategy=one_for_all").unwrap()];
    let server = start(c).await;
    let mgr = manager_addr(&server);
    let proxy = server.socks_addrs[0];
    let target = echo_server("127.0.0.1:0").await;
    let clients = tokio::spawn(churn(proxy, target, 20));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        fault(mgr, "listener/1", FaultAction::Panic).await,
        [5, 7, 0]
    );
    assert_eq!(clients.await.unwrap(), (20, 0));
    eventually("all running", || async {
        tree(mgr)
            .await
            .iter()
            .all(|n| n.state == NodeState::Running)
    })
    .await;
    let t = tree(mgr).await;
    for name in ["supervisor", "listener/0", "listener/1"] {
        assert_eq!(node(&t, name).restarts, 1, "{name}");
    }
    assert_eq!(node(&t, "registry").restarts, 0);
    assert_eq!(node(&t, "listener/1").injected, 1);
    assert_eq!(node(&t, "listener/0").injected, 0);
}

/// The supervisor panics, then SIGTERM's drain (here `shutdown`) still
/// waits for the open transfer, with the grace period.
#[actix_rt::test]
async fn a_restarted_supervisor_still_drains_with_the_grace_period() {
    let server = start(sup_config()).await;
    let mgr = manager_addr(&server);
    let proxy = server.socks_addrs[0];
    let target = echo_server("127.0.0.1:0").await;
    let transfer = tokio::spawn(bulk(proxy, target, 1 << 20));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        fault(mgr, "supervisor", FaultAction::Panic).await,
        [5, 7, 0]
    );
    let done = Arc::new(AtomicU32::new(0));
    let d = done.clone();
    let shutdown = tokio::spawn(async move {
        server.shutdown(Duration::from_secs(30)).await;
        d.store(1, Ordering::SeqCst);
    });
    assert_eq!(transfer.await.unwrap(), 1 << 20, "the drain let it finish");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown ends once the transfer has")
        .unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

/// One manager request; None when the exchange fails (a restarting
/// SCTP-over-UDP driver loses the associations it had, handshakes included).
async fn try_command(mgr: std::net::SocketAddr, req: &[u8]) -> Option<Vec<u8>> {
    use actor_socks::transport::{Association, TransportKind};
    let limit = Duration::from_secs(5);
    let exchange = async {
        let mut a = Association::connect(mgr, TransportKind::Udp).await.ok()?;
        a.send_msg(&auth_msg(ADMIN.0, ADMIN.1)).await.ok()?;
        let auth = a.recv_msg().await.ok()??;
        if auth[..] != [0x05, 0x00] {
            return None;
        }
        a.send_msg(req).await.ok()?;
        let reply = a.recv_msg().await.ok()??;
        Some(reply.to_vec())
    };
    tokio::time::timeout(limit, exchange).await.ok()?
}

/// [`try_command`] until it gets an answer (at most 40 tries).
async fn retried(mgr: std::net::SocketAddr, req: &[u8]) -> Vec<u8> {
    for _ in 0..40 {
        if let Some(r) = try_command(mgr, req).await {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the manager never answered");
}

/// The manager address from the binary's ready file.
fn ready_manager(dir: &std::path::Path) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(dir.join("ready")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("manager "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a manager line")
        .parse()
        .unwrap()
}

/// Past the root's intensity the binary drains (the open session is let
/// finish) and exits with status 70; the JSON log stays one JSON object a
/// line through every panic, each naming its node.
#[tokio::test]
async fn past_the_root_intensity_it_drains_and_exits_70_with_a_json_log() {
    use common::process::*;
    let (mut child, proxy, mgr, dir) = spawn_faulty(
        "escalation",
        &[
            "--log-format",
            "json",
            "--supervise",
            "registry:intensity=1/60s,backoff=0ms..0ms",
            "--supervise",
            "root:intensity=1/60s,backoff=0ms..0ms",
            "--grace-period",
            "30s",
        ],
    )
    .await;
    let target = echo_server("127.0.0.1:0").await;
    let (mut open, rep, _) = request(proxy, None, &connect_ip(target)).await;
    assert_eq!(rep, 0);
    // 1: the registry restarts. 2: past its intensity, the root restarts
    // everything. 3: the registry restarts. 4: past the root's: give up.
    let fault_req = Request::Fault {
        node: "registry".into(),
        action: FaultAction::Panic,
    }
    .to_vec();
    for i in 1..=4 {
        assert_eq!(retried(mgr, &fault_req).await, [5, 7, 0], "fault {i}");
        if i < 4 {
            eventually("the registry runs again", || async {
                let reply = retried(mgr, &Request::Tree.to_vec()).await;
                match Reply::decode_for(Cmd::Tree, &reply) {
                    Ok(Reply::Tree(t)) => node(&t.nodes, "registry").state == NodeState::Running,
                    _ => false,
                }
            })
            .await;
        }
    }
    // Draining: the open session still relays, the process waits for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(child.try_wait().unwrap().is_none(), "still draining");
    echo_round_trip(&mut open, b"during the drain").await;
    drop(open);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(70)
    );

    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    let mut panics = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line:?}"));
        if v["msg"] == "panic" {
            panics += 1;
            assert_eq!(v["node"], "registry", "{line}");
            assert!(v["message"].as_str().unwrap().contains("fault injected"));
        }
    }
    assert_eq!(panics, 4, "{log}");
    assert!(log.contains("supervision tree gave up"), "{log}");
}

/// Every `--supervise` the server cannot apply stops the start with
/// status 2 and says why.
#[test]
fn bad_supervise_flags_fail_the_start() {
    for (args, says) in [
        (&["--supervise", "registry"][..], "NODE:KEY=VALUE"),
        (&["--supervise", "nosuch:intensity=1/1s"], "unknown node"),
        (
            &["--supervise", "registry:strategy=one_for_all"],
            "no children",
        ),
        (&["--supervise", "root:intensity=1/0s"], "more than 0"),
        (&["--supervise", "root:backoff=2s..1s"], "above MAX"),
        (
            &["--supervise", "root:intensity=99999999999/1s"],
            "not a count",
        ),
        (
            &["--workers", "2", "--supervise", "listener/2:intensity=1/1s"],
            "2 workers",
        ),
        (
            &["--supervise", "manager:intensity=1/1s"],
            "without --admin",
        ),
        (
            &["--supervise", "udp-driver:intensity=1/1s"],
            "without --admin",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_actor-socks"))
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--supervise") && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

/// During a drain the manager stays up: an administrator can watch the
/// tree, the metrics and the users, and what would change the server is
/// refused with STATUS 0x0B.
#[tokio::test]
async fn during_a_drain_the_manager_answers_and_refuses_changes() {
    use common::process::*;
    let (mut child, proxy, mgr, _) =
        spawn_faulty("drain-manager", &["--grace-period", "30s"]).await;
    let target = echo_server("127.0.0.1:0").await;
    let (open, rep, _) = request(proxy, None, &connect_ip(target)).await;
    assert_eq!(rep, 0);
    signal(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = retried(mgr, &Request::Tree.to_vec()).await;
    assert!(matches!(
        Reply::decode_for(Cmd::Tree, &t),
        Ok(Reply::Tree(_))
    ));
    let m = retried(mgr, &[0x05, 0x02]).await;
    match Reply::decode_for(Cmd::Metrics, &m).unwrap() {
        Reply::Metrics { active, .. } => assert_eq!(active, 1, "the open session"),
        other => panic!("{other:?}"),
    }
    assert_eq!(retried(mgr, &[0x05, 0x01]).await, [0x05, 0x01, 0x00]);
    assert_eq!(
        retried(mgr, &add_user_msg("late", "pw")).await,
        [0x05, 0x00, 0x0B]
    );
    assert_eq!(retried(mgr, &set_max_msg(10)).await, [0x05, 0x03, 0x0B]);
    assert!(!admitted(proxy).await, "nobody new during the drain");
    drop(open);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
}

/// The binary with the manager (SCTP over UDP) and fault injection, plus
/// `args`; returns the child, the SOCKS address and the manager's.
async fn spawn_faulty(
    name: &str,
    args: &[&str],
) -> (
    std::process::Child,
    std::net::SocketAddr,
    std::net::SocketAddr,
    std::path::PathBuf,
) {
    use common::process::*;
    let dir = scratch(name);
    let mut all = vec![
        "--admin",
        "admin:admin-secret",
        "--manager-bind",
        "127.0.0.1:0",
        "--manager-transport",
        "udp",
        "--fault-injection",
    ];
    all.extend_from_slice(args);
    let (child, proxy) = spawn(&dir, &all).await;
    let mgr = ready_manager(&dir);
    (child, proxy, mgr, dir)
}

fn fault_msg(node: &str, action: FaultAction) -> Vec<u8> {
    Request::Fault {
        node: node.into(),
        action,
    }
    .to_vec()
}

/// Whether a new client gets a SOCKS answer within 5 s.
async fn admitted(proxy: std::net::SocketAddr) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(proxy).await.ok()?;
        s.write_all(&[0x05, 0x01, 0x00]).await.ok()?;
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.ok()?;
        Some(head == [0x05, 0x00])
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), attempt).await,
        Ok(Some(true))
    )
}

/// SIGTERM while both listeners back off: their clients wait in the
/// backlog, and when the listeners come back the gate is closed: nobody is
/// admitted after the signal.
#[tokio::test]
async fn nobody_gets_in_after_sigterm_while_listeners_back_off() {
    use common::process::*;
    let (mut child, proxy, mgr, _) = spawn_faulty(
        "sigterm-backoff",
        &[
            "--supervise",
            "listener:backoff=2s..2s",
            "--grace-period",
            "20s",
        ],
    )
    .await;
    let target = echo_server("127.0.0.1:0").await;
    let (mut open, rep, _) = request(proxy, None, &connect_ip(target)).await;
    assert_eq!(rep, 0);
    for l in ["listener/0", "listener/1"] {
        assert_eq!(
            retried(mgr, &fault_msg(l, FaultAction::Stop)).await,
            [5, 7, 0]
        );
    }
    signal(&child, "-TERM");
    let late: Vec<_> = (0..4).map(|_| tokio::spawn(admitted(proxy))).collect();
    for l in late {
        assert!(!l.await.unwrap(), "a client admitted after SIGTERM");
    }
    echo_round_trip(&mut open, b"the open one goes on").await;
    drop(open);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
}

/// The tree gives up during a drain a SIGTERM began: the exit status is
/// still 70.
#[tokio::test]
async fn giving_up_during_a_sigterm_drain_still_exits_70() {
    use common::process::*;
    let (mut child, proxy, mgr, _) = spawn_faulty(
        "giveup-in-drain",
        &[
            "--supervise",
            "registry:intensity=1/60s,backoff=1s..1s",
            "--supervise",
            "root:intensity=0/60s",
            "--grace-period",
            "20s",
        ],
    )
    .await;
    let target = echo_server("127.0.0.1:0").await;
    let (open, rep, _) = request(proxy, None, &connect_ip(target)).await;
    assert_eq!(rep, 0);
    // The first restarts the registry after 1 s; the second waits in its
    // mailbox, lands after the restart and gives up, during the drain.
    for _ in 0..2 {
        assert_eq!(
            retried(mgr, &fault_msg("registry", FaultAction::Panic)).await,
            [5, 7, 0]
        );
    }
    signal(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(open);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(70)
    );
}

/// A supervisor backing off for 30 s does not lengthen a 1 s drain.
#[tokio::test]
async fn a_backing_off_supervisor_does_not_lengthen_the_drain() {
    use common::process::*;
    let (mut child, proxy, mgr, _) = spawn_faulty(
        "drain-supervisor-backoff",
        &[
            "--supervise",
            "supervisor:backoff=30s..30s",
            "--grace-period",
            "1s",
        ],
    )
    .await;
    let target = echo_server("127.0.0.1:0").await;
    let (mut open, rep, _) = request(proxy, None, &connect_ip(target)).await;
    assert_eq!(rep, 0);
    assert_eq!(
        retried(mgr, &fault_msg("supervisor", FaultAction::Panic)).await,
        [5, 7, 0]
    );
    let t0 = std::time::Instant::now();
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert!(
        closed(&mut open).await,
        "cut at the end of the grace period"
    );
}

/// Two manager addresses (a host name resolving to two): both serve, each
/// with its own supervised driver, and a fault in one leaves the other.
#[actix_rt::test]
async fn every_manager_address_has_its_driver() {
    let mut c = sup_config();
    c.manager_bind = vec![
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.2:0".parse().unwrap(),
    ];
    c.supervision.overrides = vec![parse_override("udp-driver:backoff=0ms..0ms").unwrap()];
    let server = start(c).await;
    assert_eq!(server.manager_addrs.len(), 2);
    let (a, b) = (server.manager_addrs[0].0, server.manager_addrs[1].0);
    assert_eq!(b.ip().to_string(), "127.0.0.2");
    assert_eq!(command(b, &[0x05, 0x01]).await[..2], [0x05, 0x01]);
    let t = tree(a).await;
    let names: Vec<&str> = t.iter().map(|n| n.name.as_str()).collect();
    assert!(
        names.ends_with(&["udp-driver", "udp-driver/1", "manager"]),
        "{names:?}"
    );
    assert_eq!(node(&t, "udp-driver/1").intensity, 3);
    assert_eq!(
        fault(b, "udp-driver/1", FaultAction::Panic).await,
        [5, 7, 0]
    );
    assert_eq!(command(a, &[0x05, 0x01]).await[..2], [0x05, 0x01]);
    eventually("driver 1 back", || async {
        node(&tree(a).await, "udp-driver/1").restarts == 1
    })
    .await;
    assert_eq!(retried(b, &[0x05, 0x01]).await[..2], [0x05, 0x01]);
    assert_eq!(server.ready_text().matches("manager ").count(), 2);
}
