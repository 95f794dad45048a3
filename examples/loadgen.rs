//! Load generator for SOCKS5 proxies (actor-socks, and others for comparison).
//!
//! ```text
//! cargo run --release --example loadgen -- bulk     --proxy 127.0.0.1:1080 --conns 8 --bytes 1G --dir up
//! cargo run --release --example loadgen -- connrate --proxy 127.0.0.1:1080 --workers 8 --duration 5
//! cargo run --release --example loadgen -- idle     --proxy 127.0.0.1:1080 --conns 10000 --pid 1234
//! ```
//!
//! `--proxy direct` connects straight to the target: the baseline. Every
//! mode runs its own target (sink/source or echo) on 127.0.0.1 in this
//! process, speaks its own SOCKS5 client (see `loadgen/socks.rs`), is
//! bounded in time (`--timeout`) and count, and stops by itself. `--json`
//! prints one JSON object on one line; otherwise one human-readable line.
//! Exit status: 0 on success; 1 if the run failed (a bulk connection could
//! not be opened or its bytes came up short, no connrate/idle connection
//! succeeded); 2 on usage errors or when the run hit its time limit.
//! See docs/performance.md for the method.
#![deny(unsafe_code)]

// Modules live in examples/loadgen/ (a crate root resolves `mod` beside
// itself, hence the explicit paths).
#[path = "loadgen/socks.rs"]
mod socks;
#[path = "loadgen/sys.rs"]
mod sys;
#[path = "loadgen/target.rs"]
mod target;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use socks::Auth;

/// A failure of one connection, with the stage it happened in.
#[derive(Debug)]
pub struct Fail {
    pub stage: &'static str,
    pub detail: String,
}

impl Fail {
    pub fn new(stage: &'static str, detail: impl ToString) -> Self {
        Fail {
            stage,
            detail: detail.to_string(),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage, self.detail)
    }
}

/// Where client connections go: straight to the target, or through a proxy.
#[derive(Debug, Clone, Copy)]
enum Route {
    Direct,
    Proxy(SocketAddr),
}

impl std::str::FromStr for Route {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "direct" {
            return Ok(Route::Direct);
        }
        s.parse()
            .map(Route::Proxy)
            .map_err(|e| format!("expected `direct` or IP:PORT ({e})"))
    }
}

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "SOCKS5 load generator: bulk throughput, connection rate, idle connections"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N connections each move B bytes; aggregate MB/s (10^6 B/s) at the far end.
    Bulk(BulkArgs),
    /// W workers loop connect, handshake, 1-byte echo, close; conn/s and latency.
    Connrate(ConnrateArgs),
    /// Open C connections, verify each with a round trip, hold them; optional RSS per connection.
    Idle(IdleArgs),
    /// Open C connections to targets that send without end and never read
    /// from them (stalled readers); proxy RSS per stalled connection.
    Stalled(IdleArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// Proxy address (IP:PORT), or `direct` for the no-proxy baseline.
    #[arg(long, value_name = "ADDR|direct")]
    proxy: Route,
    /// Authenticate with username/password (RFC 1929).
    #[arg(long, value_name = "NAME:PASS")]
    user: Option<Auth>,
    /// Print one JSON line instead of a human line.
    #[arg(long)]
    json: bool,
    /// Name of the route in the output (default: `direct` or the address).
    #[arg(long)]
    label: Option<String>,
    /// Spread client sockets over this many source addresses 127.0.0.2,
    /// 127.0.0.3, ... (only when the destination is IPv4 loopback); 0 lets
    /// the kernel choose the source address.
    #[arg(long, default_value_t = 16, value_name = "K")]
    src_addrs: usize,
    /// Abort the whole run (exit 2) after this many seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Dir {
    /// Client to target.
    Up,
    /// Target to client.
    Down,
}

#[derive(Args)]
struct BulkArgs {
    #[command(flatten)]
    common: Common,
    /// Parallel connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Bytes per connection; suffixes K/M/G (10^3..) and Ki/Mi/Gi (2^10..).
    #[arg(long, value_parser = parse_size, default_value = "100M")]
    bytes: u64,
    #[arg(long, value_enum, default_value_t = Dir::Up)]
    dir: Dir,
}

#[derive(Args)]
struct ConnrateArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent workers, each a sequential connect/handshake/echo/close loop.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Seconds to run (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Per-connection deadline in seconds; a slower connection is an error.
    #[arg(long, default_value_t = 5.0)]
    op_timeout: f64,
    /// Echo target listeners (distinct ports) to rotate over.
    #[arg(long, default_value_t = 8)]
    target_ports: usize,
    /// Who closes first. `target` (default): the target closes after its
    /// echo and the client waits for that EOF, so TIME_WAIT lands on the
    /// servers' listening ports. `client`: the client closes right after the
    /// echo, so the proxy's outbound sockets go to TIME_WAIT, which can
    /// exhaust its ephemeral ports (the regime a busy real proxy sees with a
    /// single upstream).
    #[arg(long, value_enum, default_value_t = Closer::Target)]
    closer: Closer,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Closer {
    Target,
    Client,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 3.0)]
    hold: f64,
    /// Proxy process whose RSS (VmRSS, summed over its descendants) to sample.
    #[arg(long)]
    pid: Option<u32>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Per-connection deadline in seconds for opening and each round trip.
    #[arg(long, default_value_t = 10.0)]
    op_timeout: f64,
    /// Echo target listeners (distinct ports) to rotate over.
    #[arg(long, default_value_t = 4)]
    target_ports: usize,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suf) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size `{s}`"))?;
    let mul: u64 = match suf.trim_end_matches(['B', 'b']) {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("bad size suffix in `{s}`")),
    };
    n.checked_mul(mul).ok_or_else(|| "size overflows".into())
}

/// Shared per-run context for opening connections.
struct Ctx {
    route: Route,
    auth: Option<Auth>,
    spread: usize,
}

impl Ctx {
    fn new(c: &Common) -> Self {
        Ctx {
            route: c.proxy,
            auth: c.user.clone(),
            spread: c.src_addrs,
        }
    }

    /// Opens connection number `idx` to `target`, through the proxy if any.
    async fn open(&self, idx: usize, target: SocketAddrV4) -> Result<TcpStream, Fail> {
        let dst = match self.route {
            Route::Direct => SocketAddr::V4(target),
            Route::Proxy(p) => p,
        };
        let mut s = sys::connect_from(dst, idx, self.spread)
            .await
            .map_err(|e| Fail::new("connect", e))?;
        if let Route::Proxy(_) = self.route {
            socks::connect(&mut s, self.auth.as_ref(), target).await?;
        }
        Ok(s)
    }
}

fn label(c: &Common) -> String {
    c.label.clone().unwrap_or_else(|| match c.proxy {
        Route::Direct => "direct".into(),
        Route::Proxy(a) => a.to_string(),
    })
}

/// One line of results, printed as JSON or as text.
struct Report {
    fields: Vec<(&'static str, Val)>,
    human: String,
}

enum Val {
    Str(String),
    Int(u64),
    Num(f64),
    Bool(bool),
    Map(BTreeMap<String, u64>),
}

impl Report {
    fn json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{k}\":");
            match v {
                Val::Str(s) => out.push_str(&json_str(s)),
                Val::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                Val::Num(x) if x.is_finite() => {
                    let _ = write!(out, "{x:.3}");
                }
                Val::Num(_) => out.push_str("null"),
                Val::Bool(b) => {
                    let _ = write!(out, "{b}");
                }
                Val::Map(m) => {
                    out.push('{');
                    for (j, (mk, mv)) in m.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{}:{mv}", json_str(mk));
                    }
                    out.push('}');
                }
            }
        }
        out.push('}');
        out
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Counts failures by stage and keeps the first one as a sample.
#[derive(Default)]
struct Errors {
    by_stage: BTreeMap<String, u64>,
    first: Option<String>,
}

impl Errors {
    fn add(&mut self, f: &Fail) {
        *self.by_stage.entry(f.stage.to_string()).or_default() += 1;
        if self.first.is_none() {
            self.first = Some(f.to_string());
        }
    }
    fn total(&self) -> u64 {
        self.by_stage.values().sum()
    }
    fn merge(&mut self, o: Errors) {
        for (k, v) in o.by_stage {
            *self.by_stage.entry(k).or_default() += v;
        }
        if self.first.is_none() {
            self.first = o.first;
        }
    }
    fn push_fields(&self, r: &mut Report) {
        r.fields.push(("errors", Val::Int(self.total())));
        r.fields
            .push(("errors_by_stage", Val::Map(self.by_stage.clone())));
        if let Some(f) = &self.first {
            r.fields.push(("first_error", Val::Str(f.clone())));
        }
    }
    fn human(&self) -> String {
        match &self.first {
            None => "0 errors".into(),
            Some(f) => format!("{} errors (first: {f})", self.total()),
        }
    }
}

fn secs(x: f64) -> Duration {
    Duration::from_secs_f64(x.max(0.0))
}

fn main() {
    let cli = Cli::parse();
    let common = match &cli.mode {
        Mode::Bulk(a) => a.common.clone(),
        Mode::Connrate(a) => a.common.clone(),
        Mode::Idle(a) | Mode::Stalled(a) => a.common.clone(),
    };
    let limit = match (&cli.mode, common.timeout) {
        (_, Some(t)) => secs(t),
        (Mode::Bulk(_), None) => secs(300.0),
        (Mode::Connrate(a), None) => secs(a.duration + a.op_timeout + 10.0),
        (Mode::Idle(a) | Mode::Stalled(a), None) => secs(a.hold + 3.0 * a.op_timeout + 120.0),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let res = rt.block_on(async {
        tokio::time::timeout(limit, async {
            match cli.mode {
                Mode::Bulk(a) => bulk(a).await,
                Mode::Connrate(a) => connrate(a).await,
                Mode::Idle(a) => idle(a).await,
                Mode::Stalled(a) => stalled(a).await,
            }
        })
        .await
    });
    let code = match res {
        Err(_) => {
            eprintln!(
                "loadgen: run exceeded its time limit of {:.0} s",
                limit.as_secs_f64()
            );
            2
        }
        Ok(Err(Abort::Usage(msg))) => {
            eprintln!("loadgen: {msg}");
            2
        }
        Ok(Err(Abort::Run(msg))) => {
            eprintln!("loadgen: {msg}");
            1
        }
        Ok(Ok((report, ok))) => {
            if common.json {
                println!("{}", report.json());
            } else {
                println!("{}", report.human);
            }
            if ok {
                0
            } else {
                1
            }
        }
    };
    // Do not wait for lingering target tasks.
    std::process::exit(code);
}

/// Why a mode stopped without a report.
enum Abort {
    /// Bad arguments (exit 2).
    Usage(String),
    /// The run itself failed, e.g. a bulk connection could not be opened (exit 1).
    Run(String),
}

impl From<String> for Abort {
    fn from(s: String) -> Self {
        Abort::Run(s)
    }
}

type ModeResult = Result<(Report, bool), Abort>;

async fn bulk(a: BulkArgs) -> ModeResult {
    if a.conns == 0 {
        return Err(Abort::Usage("--conns must be at least 1".into()));
    }
    sys::raise_nofile(2 * a.conns as u64 + 256);
    let counters = Arc::new(target::Shared::default());
    let tgt = target::start(target::Kind::Bulk, 1, counters.clone())
        .map_err(|e| format!("target: {e}"))?[0];
    let ctx = Arc::new(Ctx::new(&a.common));

    // Establish every connection first, so the timed part is the transfer.
    let mut set = JoinSet::new();
    for i in 0..a.conns {
        let ctx = ctx.clone();
        set.spawn(async move { (i, ctx.open(i, tgt).await) });
    }
    let mut streams = Vec::with_capacity(a.conns);
    while let Some(j) = set.join_next().await {
        let (_, r) = j.map_err(|e| e.to_string())?;
        streams.push(r.map_err(|f| format!("opening a connection: {f}"))?);
    }

    let (n, dir) = (a.bytes, a.dir);
    let start = Instant::now();
    let mut set = JoinSet::new();
    let client_received = Arc::new(AtomicU64::new(0));
    for s in streams {
        set.spawn(transfer(s, dir, n, client_received.clone()));
    }
    let mut errors = Errors::default();
    while let Some(j) = set.join_next().await {
        if let Err(f) = j.map_err(|e| e.to_string())? {
            errors.add(&f);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let far_end = match dir {
        Dir::Up => counters.received.load(Ordering::Relaxed),
        Dir::Down => client_received.load(Ordering::Relaxed),
    };
    let expected = n * a.conns as u64;
    let verified = far_end == expected && errors.total() == 0;
    let mbps = far_end as f64 / elapsed / 1e6;
    let dir_s = match dir {
        Dir::Up => "up",
        Dir::Down => "down",
    };
    let route = label(&a.common);
    let mut r = Report {
        fields: vec![
            ("mode", Val::Str("bulk".into())),
            ("route", Val::Str(route.clone())),
            ("dir", Val::Str(dir_s.into())),
            ("conns", Val::Int(a.conns as u64)),
            ("bytes_per_conn", Val::Int(n)),
            ("expected_bytes", Val::Int(expected)),
            ("received_bytes", Val::Int(far_end)),
            ("secs", Val::Num(elapsed)),
            ("mbps", Val::Num(mbps)),
            ("verified", Val::Bool(verified)),
        ],
        human: format!(
            "bulk {dir_s} via {route}: {} x {n} B, {far_end}/{expected} B at far end in {elapsed:.3} s = {mbps:.1} MB/s, {}{}",
            a.conns,
            errors.human(),
            if verified { ", verified" } else { ", NOT VERIFIED" }
        ),
    };
    errors.push_fields(&mut r);
    Ok((r, verified))
}

/// Moves `n` bytes over one established connection and checks that exactly
/// `n` arrived (up: the target's count; down: what we read, also added to
/// `received` as it arrives).
async fn transfer(
    mut s: TcpStream,
    dir: Dir,
    n: u64,
    received: Arc<AtomicU64>,
) -> Result<(), Fail> {
    let mut head = [0u8; 9];
    head[0] = if dir == Dir::Up { b'U' } else { b'D' };
    head[1..].copy_from_slice(&n.to_be_bytes());
    s.write_all(&head)
        .await
        .map_err(|e| Fail::new("header", e))?;
    let mut buf = vec![0u8; target::CHUNK];
    match dir {
        Dir::Up => {
            target::fill(&mut buf);
            let mut left = n;
            while left > 0 {
                let k = left.min(buf.len() as u64) as usize;
                s.write_all(&buf[..k])
                    .await
                    .map_err(|e| Fail::new("send", e))?;
                left -= k as u64;
            }
            let mut ack = [0u8; 8];
            s.read_exact(&mut ack)
                .await
                .map_err(|e| Fail::new("ack", e))?;
            let got = u64::from_be_bytes(ack);
            if got != n {
                return Err(Fail::new(
                    "verify",
                    format!("target received {got} of {n} B"),
                ));
            }
            Ok(())
        }
        Dir::Down => {
            let mut got = 0u64;
            while got < n {
                let r = s.read(&mut buf).await.map_err(|e| Fail::new("recv", e))?;
                if r == 0 {
                    return Err(Fail::new(
                        "verify",
                        format!("received {got} of {n} B before EOF"),
                    ));
                }
                got += r as u64;
                received.fetch_add(r as u64, Ordering::Relaxed);
            }
            if got != n {
                return Err(Fail::new(
                    "verify",
                    format!("received {got} B, expected {n}"),
                ));
            }
            Ok(())
        }
    }
}

/// One connect/handshake/echo round trip on a fresh connection.
async fn echo_once(ctx: &Ctx, idx: usize, tgt: SocketAddrV4) -> Result<TcpStream, Fail> {
    let mut s = ctx.open(idx, tgt).await?;
    round_trip(&mut s, idx as u8).await?;
    Ok(s)
}

async fn round_trip(s: &mut TcpStream, byte: u8) -> Result<(), Fail> {
    s.write_all(&[byte])
        .await
        .map_err(|e| Fail::new("echo", e))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
        .await
        .map_err(|e| Fail::new("echo", e))?;
    if b[0] != byte {
        return Err(Fail::new("echo", format!("sent {byte}, got {}", b[0])));
    }
    Ok(())
}

/// Reads until EOF; data or an error instead is a failure.
async fn await_eof(s: &mut TcpStream) -> Result<(), Fail> {
    let mut b = [0u8; 16];
    match s.read(&mut b).await {
        Ok(0) => Ok(()),
        Ok(n) => Err(Fail::new("close", format!("{n} unexpected bytes"))),
        Err(e) => Err(Fail::new("close", e)),
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn connrate(a: ConnrateArgs) -> ModeResult {
    if a.workers == 0 {
        return Err(Abort::Usage("--workers must be at least 1".into()));
    }
    sys::raise_nofile(4 * a.workers as u64 + 256);
    let kind = match a.closer {
        Closer::Target => target::Kind::EchoOnce,
        Closer::Client => target::Kind::Echo,
    };
    let closer = a.closer;
    let targets =
        target::start(kind, a.target_ports, Arc::default()).map_err(|e| format!("target: {e}"))?;
    let targets = Arc::new(targets);
    let ctx = Arc::new(Ctx::new(&a.common));
    let start = Instant::now();
    let deadline = start + secs(a.duration);
    let op_timeout = secs(a.op_timeout);
    let w = a.workers;

    let mut set = JoinSet::new();
    for i in 0..w {
        let (ctx, targets) = (ctx.clone(), targets.clone());
        set.spawn(async move {
            let mut lat_us: Vec<u32> = Vec::new();
            let mut errors = Errors::default();
            let mut j = 0usize;
            while Instant::now() < deadline {
                // Rotate source addresses and target ports per connection.
                let idx = i + j * w;
                let tgt = targets[(i + j) % targets.len()];
                j += 1;
                let t0 = Instant::now();
                let r = tokio::time::timeout(op_timeout, async {
                    let mut s = echo_once(&ctx, idx, tgt).await?;
                    let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    // The target closes after its echo; wait for that EOF
                    // so TIME_WAIT lands on the server side (see docs).
                    if closer == Closer::Target {
                        await_eof(&mut s).await?;
                    }
                    Ok::<u32, Fail>(us)
                })
                .await;
                let r = r.unwrap_or_else(|_| {
                    Err(Fail::new(
                        "timeout",
                        format!("no echo and close within {op_timeout:?}"),
                    ))
                });
                match r {
                    Ok(us) => lat_us.push(us),
                    Err(f) => {
                        errors.add(&f);
                        // Do not spin on a refusing proxy.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (lat_us, errors)
        });
    }
    let mut lat: Vec<u32> = Vec::new();
    let mut errors = Errors::default();
    while let Some(j) = set.join_next().await {
        let (l, e) = j.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors.merge(e);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let rate = ok as f64 / elapsed;
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    let max = lat.last().map_or(f64::NAN, |&x| x as f64 / 1000.0);
    let route = label(&a.common);
    let mut r = Report {
        fields: vec![
            ("mode", Val::Str("connrate".into())),
            ("route", Val::Str(route.clone())),
            ("workers", Val::Int(w as u64)),
            ("closer", Val::Str(format!("{closer:?}").to_lowercase())),
            ("secs", Val::Num(elapsed)),
            ("conns_ok", Val::Int(ok)),
            ("conns_per_sec", Val::Num(rate)),
            ("p50_ms", Val::Num(p50)),
            ("p99_ms", Val::Num(p99)),
            ("max_ms", Val::Num(max)),
        ],
        human: format!(
            "connrate via {route}: {w} workers, {ok} connections in {elapsed:.2} s = {rate:.0} conn/s, p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.1} ms, {}",
            errors.human()
        ),
    };
    errors.push_fields(&mut r);
    Ok((r, ok > 0))
}

async fn idle(a: IdleArgs) -> ModeResult {
    let Setup {
        nofile,
        shared,
        targets,
        ctx,
        rss_before,
    } = setup(&a, target::Kind::Echo)?;
    let op_timeout = secs(a.op_timeout);
    let (held, errors, open_secs) = open_all(&a, &ctx, &targets, |ctx, i, tgt| async move {
        echo_once(&ctx, i, tgt).await
    })
    .await?;
    let ok = held.len() as u64;

    tokio::time::sleep(secs(a.hold)).await;
    let rss_hold = a.pid.and_then(sys::tree_rss_kb);

    // Still alive after the hold? One more round trip on each.
    let mut set = JoinSet::new();
    for (i, mut s) in held.into_iter().enumerate() {
        set.spawn(async move {
            let r = tokio::time::timeout(op_timeout, round_trip(&mut s, i as u8)).await;
            (s, matches!(r, Ok(Ok(()))))
        });
    }
    let mut alive = 0u64;
    let mut keep = Vec::new();
    while let Some(j) = set.join_next().await {
        let (s, good) = j.map_err(|e| e.to_string())?;
        alive += good as u64;
        keep.push(s);
    }
    // Tear down from the target side and let the proxy pass the close on, so
    // TIME_WAIT does not pile up on the proxy's ephemeral ports.
    shared.close_all();
    let mut set = JoinSet::new();
    for mut s in keep {
        set.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), await_eof(&mut s)).await;
        });
    }
    while set.join_next().await.is_some() {}

    let r = held_report(
        "idle",
        &a,
        Held {
            ok,
            alive,
            open_secs,
            nofile,
        },
        &errors,
        (rss_before, rss_hold),
    );
    Ok((r, ok > 0))
}

/// Stalled readers: each client connects through the proxy to a target that
/// sends without end, reads nothing, and holds on. Every buffer on the way
/// fills up; what the proxy then holds per connection, beyond what it held
/// before, is the figure.
async fn stalled(a: IdleArgs) -> ModeResult {
    let Setup {
        nofile,
        shared,
        targets,
        ctx,
        rss_before,
    } = setup(&a, target::Kind::Flood)?;
    let (held, errors, open_secs) = open_all(&a, &ctx, &targets, |ctx, i, tgt| async move {
        ctx.open(i, tgt).await
    })
    .await?;
    let ok = held.len() as u64;
    // Every buffer fills during the hold: the clients read nothing.
    tokio::time::sleep(secs(a.hold)).await;
    let rss_hold = a.pid.and_then(sys::tree_rss_kb);
    // Still connected (not cut for being slow)? Each has bytes waiting.
    let mut alive = 0u64;
    for s in &held {
        let mut b = [0u8; 1];
        if let Ok(n) = s.peek(&mut b).await {
            alive += (n == 1) as u64;
        }
    }
    shared.close_all();
    drop(held);
    let r = held_report(
        "stalled",
        &a,
        Held {
            ok,
            alive,
            open_secs,
            nofile,
        },
        &errors,
        (rss_before, rss_hold),
    );
    Ok((r, ok > 0))
}

/// Opens `a.conns` connections (at most `a.concurrency` at once), each by
/// `open(ctx, index, target)` within `--op-timeout`; the ones that opened,
/// the errors, and how long it took.
async fn open_all<F, Fut>(
    a: &IdleArgs,
    ctx: &Arc<Ctx>,
    targets: &Arc<Vec<SocketAddrV4>>,
    open: F,
) -> Result<(Vec<TcpStream>, Errors, f64), Abort>
where
    F: Fn(Arc<Ctx>, usize, SocketAddrV4) -> Fut,
    Fut: std::future::Future<Output = Result<TcpStream, Fail>> + Send + 'static,
{
    let op_timeout = secs(a.op_timeout);
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let mut set = JoinSet::new();
    for i in 0..a.conns {
        let sem = sem.clone();
        let fut = open(ctx.clone(), i, targets[i % targets.len()]);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            match tokio::time::timeout(op_timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(Fail::new(
                    "timeout",
                    format!("not open within {op_timeout:?}"),
                )),
            }
        });
    }
    let mut held = Vec::with_capacity(a.conns);
    let mut errors = Errors::default();
    while let Some(j) = set.join_next().await {
        match j.map_err(|e| e.to_string())? {
            Ok(s) => held.push(s),
            Err(f) => errors.add(&f),
        }
    }
    Ok((held, errors, start.elapsed().as_secs_f64()))
}

/// A process tree's RSS (kB) and process count, if it could be read.
type Rss = Option<(u64, usize)>;

/// Adds the RSS fields (before, during the hold, per connection) to the
/// report and its human line.
fn report_rss(
    r: &mut Report,
    human: &mut String,
    pid: Option<u32>,
    rss: (Rss, Rss),
    ok: u64,
    what: &str,
) {
    if let (Some((before, _)), Some((hold, procs_hold))) = rss {
        let per = if ok > 0 {
            (hold as f64 - before as f64) / ok as f64
        } else {
            f64::NAN
        };
        r.fields.push(("pid", Val::Int(pid.unwrap_or(0) as u64)));
        r.fields.push(("rss_before_kb", Val::Int(before)));
        r.fields.push(("rss_hold_kb", Val::Int(hold)));
        r.fields.push(("procs_hold", Val::Int(procs_hold as u64)));
        r.fields.push(("kb_per_conn", Val::Num(per)));
        let _ = write!(
            human,
            "; RSS {before} -> {hold} kB ({procs_hold} procs) = {per:.1} kB per {what}"
        );
    }
}

/// What a run that holds connections found.
struct Held {
    ok: u64,
    alive: u64,
    open_secs: f64,
    nofile: u64,
}

/// The report of `idle` or `stalled` (`mode`): counts, timings, errors,
/// and the proxy's RSS per connection when sampled.
fn held_report(mode: &str, a: &IdleArgs, h: Held, errors: &Errors, rss: (Rss, Rss)) -> Report {
    let route = label(&a.common);
    let mut r = Report {
        fields: vec![
            ("mode", Val::Str(mode.into())),
            ("route", Val::Str(route.clone())),
            ("conns", Val::Int(a.conns as u64)),
            ("conns_ok", Val::Int(h.ok)),
            ("alive_after_hold", Val::Int(h.alive)),
            ("open_secs", Val::Num(h.open_secs)),
            ("hold_secs", Val::Num(a.hold)),
            ("nofile_limit", Val::Int(h.nofile)),
        ],
        human: String::new(),
    };
    errors.push_fields(&mut r);
    let (alive_means, per) = if mode == "stalled" {
        ("with bytes waiting", "stalled connection")
    } else {
        ("alive", "connection")
    };
    let mut human = format!(
        "{mode} via {route}: {}/{} open in {:.2} s, {} {alive_means} after {:.1} s hold, {}",
        h.ok,
        a.conns,
        h.open_secs,
        h.alive,
        a.hold,
        errors.human()
    );
    report_rss(&mut r, &mut human, a.pid, rss, h.ok, per);
    r.human = human;
    r
}

/// What `idle` and `stalled` start from.
struct Setup {
    nofile: u64,
    shared: Arc<target::Shared>,
    targets: Arc<Vec<SocketAddrV4>>,
    ctx: Arc<Ctx>,
    rss_before: Rss,
}

/// Checks the arguments, raises the open-files limit, starts the targets of
/// `kind`, and samples the proxy's RSS before any connection.
fn setup(a: &IdleArgs, kind: target::Kind) -> Result<Setup, Abort> {
    if a.conns == 0 || a.concurrency == 0 {
        return Err(Abort::Usage(
            "--conns and --concurrency must be at least 1".into(),
        ));
    }
    let nofile = sys::raise_nofile(2 * a.conns as u64 + 256);
    let shared = Arc::new(target::Shared::default());
    let targets =
        target::start(kind, a.target_ports, shared.clone()).map_err(|e| format!("target: {e}"))?;
    let rss_before = a.pid.and_then(sys::tree_rss_kb);
    if a.pid.is_some() && rss_before.is_none() {
        return Err(Abort::Usage(format!(
            "cannot read /proc/{}/status",
            a.pid.unwrap_or(0)
        )));
    }
    Ok(Setup {
        nofile,
        shared,
        targets: Arc::new(targets),
        ctx: Arc::new(Ctx::new(&a.common)),
        rss_before,
    })
}
