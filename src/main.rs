//! `actor-socks`: parse flags, start the server, wait for a signal.

use clap::{CommandFactory, FromArgMatches};
use slog::{error, info, warn};
use std::process::ExitCode;

use actor_socks::config::{Cli, Config, Subcommand};
use actor_socks::server::Server;
use actor_socks::{config_file, logging, supervision, sys};
use std::ffi::OsString;

/// Descriptors kept for everything but clients (listening sockets, the
/// manager, logs, resolver, pipes).
const FD_SLACK: u64 = 256;

fn main() -> ExitCode {
    // `--config FILE`: its keys become flags before the command line's.
    let argv: Vec<OsString> = std::env::args_os().collect();
    let expanded = match config_file::expand(&Cli::command(), argv.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("actor-socks: {e}");
            return ExitCode::from(2);
        }
    };
    let matches = Cli::command().get_matches_from(expanded);
    // Whether --max-clients was given: the default follows the open-file
    // limit, a given value is honoured or warned about.
    let explicit_max =
        matches.value_source("max_clients") == Some(clap::parser::ValueSource::CommandLine);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(Subcommand::HashPassword) = cli.command {
        return hash_password();
    }
    if let Err(msg) = cli.check() {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .exit();
    }
    let log = logging::init(cli.log_format, cli.log_level);
    // Panics go through the log (JSON stays JSON), with the node's name.
    supervision::install_panic_hook(log.clone());
    let mut config = Config::from(&cli);
    // Each client needs two descriptors (client and target), plus slack.
    let wanted = u64::from(config.max_clients) * 2 + FD_SLACK;
    match sys::raise_nofile_limit(wanted) {
        Ok(n) if n < wanted && explicit_max => {
            warn!(log, "open-file limit below what --max-clients needs: clients past \
                        the limit will be refused for want of descriptors";
                  "limit" => n, "wanted" => wanted, "max_clients" => config.max_clients)
        }
        Ok(n) if n < wanted => {
            // The default fits the limit the process could raise itself to.
            // (A tiny limit keeps a quarter for the rest, and admits one
            // client at least.)
            let slack = FD_SLACK.min(n / 4);
            config.max_clients = u32::try_from((n - slack) / 2).unwrap_or(u32::MAX).max(1);
            info!(log, "max clients set by the open-file limit (--max-clients to choose)";
                  "max_clients" => config.max_clients, "limit" => n);
        }
        Ok(_) => {}
        Err(e) => warn!(log, "cannot raise the open-file limit"; "error" => %e),
    }
    let system = actix::System::new();
    let startup = Startup { argv, matches };
    let code = system.block_on(run(cli, config, log.clone(), startup));
    drop(log);
    code
}

/// What SIGHUP compares a config file read again with.
struct Startup {
    argv: Vec<OsString>,
    matches: clap::ArgMatches,
}

/// Flags SIGHUP applies from a config file read again; every other change
/// waits for a restart (and is said in the log).
const RELOADABLE: &[&str] = &[
    "users",
    "allow_client",
    "deny_client",
    "allow_target",
    "deny_target",
    "allow_port",
    "deny_port",
];

/// The config file read again, as the start read it (its keys, then the
/// original command line over them).
fn reread(startup: &Startup) -> Result<(clap::ArgMatches, Config), String> {
    let expanded =
        config_file::expand(&Cli::command(), startup.argv.clone()).map_err(|e| e.to_string())?;
    let matches = Cli::command()
        .try_get_matches_from(expanded)
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    cli.check()?;
    Ok((matches, Config::from(&cli)))
}

/// The flags whose values differ and that only a restart applies.
fn restart_only(old: &clap::ArgMatches, new: &clap::ArgMatches) -> Vec<String> {
    let raw = |m: &clap::ArgMatches, id: &str| -> Vec<OsString> {
        m.get_raw(id)
            .map(|v| v.map(OsString::from).collect())
            .unwrap_or_default()
    };
    Cli::command()
        .get_arguments()
        .filter(|a| !RELOADABLE.contains(&a.get_id().as_str()))
        .filter(|a| raw(old, a.get_id().as_str()) != raw(new, a.get_id().as_str()))
        .map(|a| {
            a.get_long()
                .map_or_else(|| a.get_id().to_string(), |l| format!("--{l}"))
        })
        .collect()
}

async fn run(cli: Cli, config: Config, log: slog::Logger, startup: Startup) -> ExitCode {
    let grace = config.grace_period;
    // Handlers first: a signal that arrives once the ready file exists must
    // find them in place (the default action of each is to kill us).
    let mut signals = Signals::new();
    let server = match Server::start(config, log.clone()).await {
        Ok(s) => s,
        Err(e) => {
            error!(log, "cannot start"; "error" => %e);
            // Let the async drain flush.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &cli.ready_file {
        let tmp = path.with_extension("tmp");
        if let Err(e) =
            std::fs::write(&tmp, server.ready_text()).and_then(|_| std::fs::rename(&tmp, path))
        {
            error!(log, "cannot write ready file"; "path" => %path.display(), "error" => %e);
            return ExitCode::FAILURE;
        }
    }
    // SIGHUP reloads the users file, until SIGTERM or SIGINT, or until the
    // supervision tree gives up (past the root's restart intensity).
    let sup = server.supervision.clone();
    let gave_up = loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Hangup if cli.config.is_some() => match reread(&startup) {
                    Ok((matches, config)) => {
                        let later = restart_only(&startup.matches, &matches);
                        if !later.is_empty() {
                            warn!(log, "SIGHUP: changed in the config file; takes effect at restart";
                                  "flags" => later.join(" "));
                        }
                        match server.reload(&config).await {
                            Ok(n) => info!(log, "SIGHUP: config file reloaded (users, rules)";
                                           "users" => n),
                            Err(e) => error!(log, "SIGHUP: users and rules unchanged"; "error" => %e),
                        }
                    }
                    Err(e) => error!(log, "SIGHUP: config file not applied: nothing changed";
                                     "error" => %e),
                },
                Signal::Hangup => match server.reload_users().await {
                    Ok(n) => info!(log, "SIGHUP: users file reloaded"; "users" => n),
                    Err(e) => error!(log, "SIGHUP: users unchanged"; "error" => %e),
                },
                Signal::Term | Signal::Int => break false,
            },
            _ = sup.gave_up() => break true,
        }
    };
    if gave_up {
        error!(
            log,
            "draining after the supervision tree gave up; exit status 70 \
                     (systemd's Restart=on-failure starts a fresh process)"
        );
    } else {
        info!(
            log,
            "signal received: draining (a second signal exits at once)"
        );
    }
    let second = tokio::spawn(async move {
        loop {
            match signals.next().await {
                Signal::Hangup => {}
                // 128 + the signal's number, as a shell reports it.
                Signal::Term => std::process::exit(143),
                Signal::Int => std::process::exit(130),
            }
        }
    });
    server.shutdown(grace).await;
    second.abort();
    // The tree may also give up during a drain a signal began.
    let gave_up = gave_up || sup.has_given_up();
    info!(log, "bye");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    if gave_up {
        // EX_SOFTWARE: an internal error the restarts could not mend.
        ExitCode::from(70)
    } else {
        ExitCode::SUCCESS
    }
}

enum Signal {
    Hangup,
    Term,
    Int,
}

/// SIGHUP, SIGTERM and SIGINT, registered once.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler"),
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
        }
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Hangup,
            _ = self.term.recv() => Signal::Term,
            _ = self.int.recv() => Signal::Int,
        }
    }
}

/// `actor-socks hash-password`: one password from standard input (without
/// echo on a terminal), its Argon2id PHC string on standard output.
fn hash_password() -> ExitCode {
    use actor_socks::auth::password;
    use actor_socks::protocol::Secret;
    use std::io::IsTerminal;
    let read = if std::io::stdin().is_terminal() {
        eprint!("password: ");
        rpassword::read_password()
    } else {
        let mut all = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut all).map(|_| all)
    };
    let text = match read {
        Ok(t) => t,
        Err(e) => {
            eprintln!("actor-socks: cannot read the password: {e}");
            return ExitCode::from(2);
        }
    };
    // One line: its LF or CRLF is not part of the password.
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let secret = match Secret::new(line) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("actor-socks: {e}");
            return ExitCode::from(2);
        }
    };
    match password::hash(&secret) {
        Ok(h) => {
            println!("{}", h.as_str());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("actor-socks: {e}");
            ExitCode::FAILURE
        }
    }
}
