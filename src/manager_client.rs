//! The actor-socks manager client: administers a running server over the SCTP
//! manager protocol (`docs/manager-protocol.md`). One implementation, two
//! entry points: the installed `actor-socks-manager` binary
//! (`src/bin/actor-socks-manager.rs`) and `cargo run --example
//! manager_client` (`examples/manager_client.rs`); both call [`main`].
//!
//! ```text
//! actor-socks-manager [--addr ADDR] [--transport auto|kernel|udp] --admin NAME:PASS
//!                [--timeout DURATION] [--json] <COMMAND>
//!
//!   add-user NAME PASS         list-users         metrics
//!   set-max-clients N          remove-user NAME   change-password NAME PASS
//!   tree [--watch [--count N]] fault NODE panic|stop  stats
//! ```
//!
//! One association per run: authenticate, send one request, read and parse
//! the one reply, print it, close. Each network step (connect, every send and
//! receive, close) is bounded by `--timeout`.
//!
//! Output (stdout): `list-users` prints one name per line then a count line
//! (`2 users`); `metrics` prints `historic connections: N`, `active
//! connections: N`, `bytes transferred: N`; `tree` prints the supervision
//! tree, one node a line, indented by depth (`--watch` redraws it every
//! second, like OTP's observer); every other command prints `ok`.
//! With `--json` a single JSON object is printed instead, on success and on
//! failure alike. Errors go to stderr in words (`error: authentication
//! failed`).
//!
//! Exit status: 0 success; 1 when the server answers a non-zero status or the
//! exchange fails (network, timeout, an unparsable reply); 2 on a usage error.
//! The administrator's and users' passwords are never printed.

use std::future::Future;
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{parse_addrs, parse_credentials, parse_duration, Addrs, Hidden};
use crate::protocol::manager::tree::StrategyCode;
use crate::protocol::manager::{
    AuthReply, AuthRequest, Cmd, FaultAction, Reply, Request, Status, TreeReply,
};
use crate::protocol::{Secret, UserName};
use crate::transport::{Association, TransportKind};
use clap::{Parser, Subcommand, ValueEnum};

/// Administer a running actor-socks over its SCTP manager protocol.
#[derive(Debug, Parser)]
#[command(
    name = "actor-socks-manager",
    version,
    about = "Administer a running actor-socks over its SCTP manager protocol",
    long_about = None
)]
struct Cli {
    /// The server's manager address, IP:PORT or HOST:PORT (each address of
    /// the host name is tried in turn).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR", value_parser = parse_addrs)]
    addr: Addrs,

    /// SCTP transport: kernel SCTP, SCTP over UDP, or auto (kernel when the
    /// kernel has SCTP, otherwise UDP).
    #[arg(long, value_enum, default_value_t = TransportKind::Auto)]
    transport: TransportKind,

    /// Administrator credentials, NAME:PASS.
    #[arg(long, env = "ACTOR_SOCKS_ADMIN", value_name = "NAME:PASS",
          value_parser = Hidden(parse_credentials), hide_env_values = true)]
    admin: (UserName, Secret),

    /// Limit for each network step (connect, each send and receive). Accepts
    /// `10`, `10s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Duration,

    /// Print one JSON object instead of text (with `tree --watch`, one a
    /// line).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add a SOCKS user.
    AddUser {
        /// User name (1 to 255 bytes; no control character or `:`, no
        /// leading `#` or space).
        #[arg(value_parser = parse_name)]
        name: UserName,
        /// Password (1 to 255 bytes; no CR, LF or NUL).
        #[arg(value_parser = Hidden(parse_password), allow_hyphen_values = true)]
        pass: Secret,
    },
    /// List the SOCKS users.
    ListUsers,
    /// Show the server's metrics.
    Metrics,
    /// Set how many SOCKS clients may be connected at once (0: admit none).
    SetMaxClients {
        /// The new limit (0 to 4294967295).
        n: u32,
    },
    /// Remove a SOCKS user (extension).
    RemoveUser {
        /// User name (1 to 255 bytes; no control character or `:`, no
        /// leading `#` or space).
        #[arg(value_parser = parse_name)]
        name: UserName,
    },
    /// Change a SOCKS user's password (extension).
    ChangePassword {
        /// User name (1 to 255 bytes; no control character or `:`, no
        /// leading `#` or space).
        #[arg(value_parser = parse_name)]
        name: UserName,
        /// Password (1 to 255 bytes; no CR, LF or NUL).
        #[arg(value_parser = Hidden(parse_password), allow_hyphen_values = true)]
        pass: Secret,
    },
    /// Show every counter of the server, one `key value` a line
    /// (extension; the same counters as its Prometheus endpoint).
    Stats,
    /// Show the server's supervision tree (extension).
    Tree {
        /// Redraw it every second until interrupted.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many drawings.
        #[arg(long, value_name = "N", requires = "watch",
              value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Inject a fault into a node of the supervision tree (extension; the
    /// server must run with --fault-injection).
    Fault {
        /// registry, metrics, supervisor, listener/N, manager, udp-driver
        /// or session/ID.
        #[arg(value_parser = parse_node)]
        node: String,
        /// panic: the node panics in its own code; stop: it stops as if it
        /// had stopped itself.
        #[arg(value_parser = ["panic", "stop"])]
        action: String,
    },
}

fn parse_node(s: &str) -> Result<String, String> {
    if crate::protocol::manager::tree::valid_node_name(s.as_bytes()) {
        Ok(s.to_string())
    } else {
        Err("a node name is 1 to 255 printable ASCII characters (e.g. listener/0)".into())
    }
}

impl Command {
    /// The subcommand as typed, for messages and JSON.
    fn name(&self) -> &'static str {
        match self {
            Command::AddUser { .. } => "add-user",
            Command::ListUsers => "list-users",
            Command::Metrics => "metrics",
            Command::SetMaxClients { .. } => "set-max-clients",
            Command::RemoveUser { .. } => "remove-user",
            Command::ChangePassword { .. } => "change-password",
            Command::Tree { .. } => "tree",
            Command::Stats => "stats",
            Command::Fault { .. } => "fault",
        }
    }

    fn request(&self) -> Request {
        match self {
            Command::AddUser { name, pass } => Request::AddUser {
                username: name.clone(),
                password: pass.clone(),
            },
            Command::ListUsers => Request::ListUsers,
            Command::Metrics => Request::Metrics,
            Command::SetMaxClients { n } => Request::SetMaxClients(*n),
            Command::RemoveUser { name } => Request::RemoveUser {
                username: name.clone(),
            },
            Command::Tree { .. } => Request::Tree,
            Command::Stats => Request::Stats,
            Command::Fault { node, action } => Request::Fault {
                node: node.clone(),
                action: if action == "stop" {
                    FaultAction::Stop
                } else {
                    FaultAction::Panic
                },
            },
            Command::ChangePassword { name, pass } => Request::ChangePassword {
                username: name.clone(),
                password: pass.clone(),
            },
        }
    }
}

fn parse_name(s: &str) -> Result<UserName, String> {
    UserName::new(s).map_err(|e| e.to_string())
}

fn parse_password(s: &str) -> Result<Secret, String> {
    Secret::new(s).map_err(|e| e.to_string())
}

/// Where an exchange stopped.
#[derive(Debug)]
enum Failure {
    /// The server answered a non-zero status.
    Status { stage: Stage, status: Status },
    /// Anything else: network, timeout, an unparsable reply.
    Exchange(String),
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Auth,
    Request,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Auth => "auth",
            Stage::Request => "request",
        }
    }
}

/// The client's whole run: parses the command line, exchanges, prints;
/// the exit status (0 success, 1 refused or failed, 2 usage).
pub fn main() -> ExitCode {
    // Usage errors exit with status 2 (clap's convention).
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let request = cli.command.request();
    let auth = AuthRequest {
        username: cli.admin.0.clone(),
        password: cli.admin.1.clone(),
    };
    if let Command::Tree { watch: true, count } = cli.command {
        return runtime.block_on(watch(&cli, &auth, &request, count));
    }
    let result = runtime.block_on(run(&cli, &auth, &request));
    report(&cli, request.cmd(), result)
}

/// `tree --watch`: a new association each second (one command each, as the
/// protocol has it), the screen redrawn (or one JSON line each).
async fn watch(cli: &Cli, auth: &AuthRequest, request: &Request, count: Option<u64>) -> ExitCode {
    let mut drawn = 0u64;
    loop {
        let result = run(cli, auth, request).await;
        if !cli.json && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            // Clear the screen and go home (ANSI), as `watch` does; into a
            // pipe or a file, drawings simply follow each other.
            print!("\x1b[2J\x1b[H");
        }
        let code = report(cli, request.cmd(), result);
        drawn += 1;
        if count.is_some_and(|n| drawn >= n) {
            return code;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Connects, runs the exchange, and closes whatever happened.
async fn run(cli: &Cli, auth: &AuthRequest, request: &Request) -> Result<Reply, Failure> {
    let transport = cli
        .transport
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string());
    let mut connected = None;
    let mut failures = Vec::new();
    for addr in &cli.addr.0 {
        let what = format!("connect to {addr} (transport {transport})");
        match step(
            cli.timeout,
            &what,
            Association::connect(*addr, cli.transport),
        )
        .await
        {
            Ok(a) => {
                connected = Some(a);
                break;
            }
            Err(Failure::Exchange(e)) => failures.push(e),
            Err(other) => return Err(other),
        }
    }
    let Some(mut assoc) = connected else {
        return Err(Failure::Exchange(format!(
            "{}\nhint: is actor-socks running with --admin (its manager listens only \
             then), on this --addr, with a matching transport (--transport udp where \
             the kernel has no SCTP)?",
            failures.join("; ")
        )));
    };
    let result = exchange(&mut assoc, cli.timeout, auth, request).await;
    // The reply (or the failure) is already known; a failed close changes
    // nothing for the user.
    let _ = tokio::time::timeout(cli.timeout, assoc.close()).await;
    result
}

/// Authenticate, send the request, read and fully parse the reply.
async fn exchange(
    assoc: &mut Association,
    limit: Duration,
    auth: &AuthRequest,
    request: &Request,
) -> Result<Reply, Failure> {
    step(limit, "send authentication", assoc.send_msg(&auth.to_vec())).await?;
    let msg = receive(assoc, limit, "authentication reply").await?;
    let auth_reply = AuthReply::from_message(&msg)
        .map_err(|e| Failure::Exchange(format!("bad authentication reply: {e}")))?;
    if !auth_reply.status.is_success() {
        return Err(Failure::Status {
            stage: Stage::Auth,
            status: auth_reply.status,
        });
    }

    step(limit, "send request", assoc.send_msg(&request.to_vec())).await?;
    let msg = receive(assoc, limit, "reply").await?;
    let reply = Reply::decode_for(request.cmd(), &msg)
        .map_err(|e| Failure::Exchange(format!("bad reply: {e}")))?;
    if !reply.status().is_success() {
        return Err(Failure::Status {
            stage: Stage::Request,
            status: reply.status(),
        });
    }
    Ok(reply)
}

/// One network step under the time limit.
async fn step<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure::Exchange(format!("{what}: {e}"))),
        Err(_) => Err(Failure::Exchange(format!(
            "{what}: timed out after {limit:?}"
        ))),
    }
}

async fn receive(assoc: &mut Association, limit: Duration, what: &str) -> Result<Vec<u8>, Failure> {
    match step(limit, &format!("receive {what}"), assoc.recv_msg()).await? {
        Some(msg) => Ok(msg.to_vec()),
        None => Err(Failure::Exchange(format!(
            "the server closed the association before the {what}"
        ))),
    }
}

/// Prints the outcome and picks the exit status.
fn report(cli: &Cli, cmd: Cmd, result: Result<Reply, Failure>) -> ExitCode {
    let command = cli.command.name();
    match result {
        Ok(reply) => {
            if cli.json {
                println!("{}", success_json(command, &reply));
            } else {
                print!("{}", success_text(&reply));
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            let message = match &failure {
                Failure::Status {
                    stage: Stage::Auth,
                    status,
                } => status.to_string(),
                Failure::Status {
                    status: Status::UnknownCommand,
                    ..
                } if matches!(cmd, Cmd::Tree | Cmd::Fault | Cmd::Stats) => format!(
                    "{cmd} failed: the server is too old for this command (it answered \
                     unknown command); upgrade actor-socks"
                ),
                Failure::Status { status, .. } => format!("{cmd} failed: {status}"),
                Failure::Exchange(msg) => msg.clone(),
            };
            eprintln!("error: {message}");
            if cli.json {
                println!("{}", failure_json(command, &failure));
            }
            ExitCode::from(1)
        }
    }
}

fn success_text(reply: &Reply) -> String {
    match reply {
        Reply::Users(names) => {
            let mut out = String::new();
            for name in names {
                out.push_str(&crate::logging::escape(name.as_str()));
                out.push('\n');
            }
            let noun = if names.len() == 1 { "user" } else { "users" };
            out.push_str(&format!("{} {noun}\n", names.len()));
            out
        }
        Reply::Metrics {
            historic,
            active,
            bytes,
        } => format!(
            "historic connections: {historic}\nactive connections: {active}\nbytes transferred: {bytes}\n"
        ),
        Reply::Status { .. } => "ok\n".to_string(),
        Reply::Tree(tree) => tree_text(tree, now_ms()),
        Reply::Stats(pairs) => pairs
            .iter()
            .map(|(k, v)| format!("{} {v}\n", crate::logging::escape(k)))
            .collect(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `PERIOD_MS` in words: `10s`, `1500ms`.
fn period(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The tree, indented two spaces a level, one node a line.
fn tree_text(tree: &TreeReply, now_ms: u64) -> String {
    let mut out = String::new();
    for n in &tree.nodes {
        let indent = "  ".repeat(n.depth as usize);
        let policy = match n.kind {
            crate::protocol::manager::tree::NodeKind::Supervisor => format!(
                "{}, {}, {} in {}",
                n.kind.as_str(),
                n.strategy.as_str(),
                n.intensity,
                period(n.period_ms)
            ),
            _ => format!(
                "{}, {}, {} in {}",
                n.kind.as_str(),
                n.restart.as_str(),
                n.intensity,
                period(n.period_ms)
            ),
        };
        out.push_str(&format!(
            "{indent}{} [{policy}] {}, restarts {}",
            n.name,
            n.state.as_str(),
            n.restarts
        ));
        if n.failures > 0 || n.injected > 0 {
            out.push_str(&format!(
                " ({} failed, {} injected)",
                n.failures, n.injected
            ));
        }
        if let Some((live, crashed)) = n.sessions {
            out.push_str(&format!(", sessions {live}"));
            if crashed > 0 {
                out.push_str(&format!(" ({crashed} crashed)"));
            }
        }
        if let Some((at, reason)) = &n.last_failure {
            let ago = now_ms.saturating_sub(*at) / 1000;
            out.push_str(&format!(
                ", last failure {ago}s ago: {}",
                crate::logging::escape(reason)
            ));
        }
        out.push('\n');
    }
    if tree.omitted() > 0 {
        out.push_str(&format!(
            "... and {} more nodes (a reply carries at most 64 KiB)\n",
            tree.omitted()
        ));
    }
    out
}

fn tree_json(tree: &TreeReply) -> String {
    let items: Vec<String> = tree
        .nodes
        .iter()
        .map(|n| {
            let sessions = match n.sessions {
                Some((live, crashed)) => format!(r#"{{"live":{live},"crashed":{crashed}}}"#),
                None => "null".into(),
            };
            let failure = match &n.last_failure {
                Some((at, reason)) => format!(
                    r#"{{"at_unix_ms":{at},"reason":{}}}"#,
                    json_string(reason)
                ),
                None => "null".into(),
            };
            format!(
                r#"{{"depth":{},"name":{},"kind":{},"restart":{},"strategy":{},"state":{},"intensity":{},"period_ms":{},"restarts":{},"failures":{},"injected":{},"sessions":{sessions},"last_failure":{failure}}}"#,
                n.depth,
                json_string(&n.name),
                json_string(n.kind.as_str()),
                json_string(n.restart.as_str()),
                match n.strategy {
                    StrategyCode::None => "null".to_string(),
                    s => json_string(s.as_str()),
                },
                json_string(n.state.as_str()),
                n.intensity,
                n.period_ms,
                n.restarts,
                n.failures,
                n.injected,
            )
        })
        .collect();
    format!(
        r#"{{"total":{},"nodes":[{}]}}"#,
        tree.total,
        items.join(",")
    )
}

fn success_json(command: &str, reply: &Reply) -> String {
    let command = json_string(command);
    match reply {
        Reply::Users(names) => {
            let list: Vec<String> = names.iter().map(|n| json_string(n.as_str())).collect();
            format!(
                r#"{{"ok":true,"command":{command},"count":{},"users":[{}]}}"#,
                names.len(),
                list.join(",")
            )
        }
        Reply::Metrics {
            historic,
            active,
            bytes,
        } => format!(
            r#"{{"ok":true,"command":{command},"historic_connections":{historic},"active_connections":{active},"bytes_transferred":{bytes}}}"#
        ),
        Reply::Status { status, .. } => format!(
            r#"{{"ok":true,"command":{command},"status":{},"message":{}}}"#,
            u8::from(*status),
            json_string(status.description())
        ),
        Reply::Tree(tree) => format!(
            r#"{{"ok":true,"command":{command},"tree":{}}}"#,
            tree_json(tree)
        ),
        Reply::Stats(pairs) => {
            let items: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{v}", json_string(k)))
                .collect();
            format!(
                r#"{{"ok":true,"command":{command},"stats":{{{}}}}}"#,
                items.join(",")
            )
        }
    }
}

fn failure_json(command: &str, failure: &Failure) -> String {
    let command = json_string(command);
    match failure {
        Failure::Status { stage, status } => format!(
            r#"{{"ok":false,"command":{command},"stage":{},"status":{},"error":{}}}"#,
            json_string(stage.name()),
            u8::from(*status),
            json_string(&status.to_string())
        ),
        Failure::Exchange(msg) => format!(
            r#"{{"ok":false,"command":{command},"error":{}}}"#,
            json_string(msg)
        ),
    }
}

/// A JSON string literal (RFC 8259): quotes, backslashes and control
/// characters escaped; everything else as UTF-8.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            // Line separators break JavaScript parsers that eval JSON.
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("alice"), r#""alice""#);
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_string("l1\nl2\t\u{1}"), r#""l1\nl2\t\u0001""#);
        assert_eq!(json_string("ñandú"), "\"ñandú\"");
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "manager_client",
            "--admin",
            "root:s3cret",
            "add-user",
            "alice",
            "-pw",
        ])
        .unwrap();
        assert_eq!(cli.addr.0, ["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(cli.transport, TransportKind::Auto);
        assert_eq!(cli.timeout, Duration::from_secs(10));
        assert!(!format!("{cli:?}").contains("s3cret"));
        assert!(!format!("{cli:?}").contains("-pw"));
        assert_eq!(
            cli.command.request(),
            Request::AddUser {
                username: UserName::new("alice").unwrap(),
                password: Secret::new("-pw").unwrap()
            }
        );
        let long = "x".repeat(256);
        for bad in [
            vec!["manager_client", "--admin", "root:pw", "add-user", "", "pw"],
            vec![
                "manager_client",
                "--admin",
                "root:pw",
                "add-user",
                &long,
                "pw",
            ],
            vec!["manager_client", "--admin", "root", "list-users"],
            vec![
                "manager_client",
                "--admin",
                "root:pw",
                "set-max-clients",
                "-1",
            ],
            vec![
                "manager_client",
                "--admin",
                "root:pw",
                "--transport",
                "tcp",
                "metrics",
            ],
        ] {
            let err = Cli::try_parse_from(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        // A rejected password is not repeated in the error.
        let secret = format!("root:{}", "s".repeat(256));
        let err =
            Cli::try_parse_from(["manager_client", "--admin", &secret, "metrics"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(!err.to_string().contains("sss"), "{err}");
        assert!(
            err.to_string()
                .contains("password is 256 bytes long (at most 255)"),
            "{err}"
        );
        let err = Cli::try_parse_from([
            "manager_client",
            "--admin",
            "root:pw",
            "change-password",
            "alice",
            &"q".repeat(300),
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(!err.to_string().contains("qqq"), "{err}");
    }

    #[test]
    fn outputs() {
        let users = Reply::Users(vec![
            UserName::new("alice").unwrap(),
            UserName::new("bob").unwrap(),
        ]);
        assert_eq!(success_text(&users), "alice\nbob\n2 users\n");
        assert_eq!(
            success_json("list-users", &users),
            r#"{"ok":true,"command":"list-users","count":2,"users":["alice","bob"]}"#
        );
        let m = Reply::Metrics {
            historic: 42,
            active: 3,
            bytes: 1_048_576,
        };
        assert_eq!(
            success_text(&m),
            "historic connections: 42\nactive connections: 3\nbytes transferred: 1048576\n"
        );
        let f = Failure::Status {
            stage: Stage::Auth,
            status: Status::AuthFailed,
        };
        assert_eq!(
            failure_json("metrics", &f),
            r#"{"ok":false,"command":"metrics","stage":"auth","status":2,"error":"authentication failed"}"#
        );
    }
}
