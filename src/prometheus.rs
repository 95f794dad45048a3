//! `--metrics-bind`: the counters in the Prometheus (OpenMetrics) text
//! format at `GET /metrics`, over HTTP/1.1 (hyper), encoded by the
//! Prometheus project's own Rust client (`prometheus-client`).
//!
//! Nothing is counted twice: a scrape reads the same atomics that STATS
//! reads ([`crate::stats`]), through a `Collector`, so the data path pays
//! nothing for it. Names (all `actor_socks_`): `connections_total`,
//! `active_connections`, `max_clients`, `bytes_total{direction}`,
//! `refused_total{reason}`, `auth_failures_total`,
//! `admin_auth_failures_total`, `admin_locked_out_total`,
//! `admin_evicted_total`, `replies_total{code}`, `udp_dropped_total{reason}`,
//! `user_sessions_total{user}`, `user_bytes_total{user,direction}`,
//! `manager_requests_total{command,status}`,
//! `session_crashes_total{kind}`, `node_restarts_total{node}`,
//! `uptime_seconds`; and the standard `process_*` metrics (CPU, memory,
//! open files, start time).
//!
//! The endpoint is a supervised task (node `prometheus`): at most
//! [`MAX_CONNECTIONS`] connections at once (a new one closes the oldest),
//! each with [`HEADER_TIMEOUT`] to send its request. It shows user names: bind it where only the
//! monitoring system can reach it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use slog::{warn, Logger};
use tokio::net::TcpListener;

use crate::actors::metrics::reading;
use crate::actors::supervisor::Gate;
use crate::stats::{Counters, REPLY_CODES};
use crate::supervision::task::TaskEnd;
use crate::supervision::{FaultKind, Supervision};

/// Connections kept at once; a new one closes the oldest (so idle
/// connections cannot keep a scraper out).
pub const MAX_CONNECTIONS: usize = 16;
/// A scraper must have sent its request headers within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The exposition's content type for scrapers that ask for OpenMetrics
/// (Prometheus does).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type for everyone else (curl, promtool): the Prometheus
/// text format 0.0.4.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads.
#[derive(Clone)]
pub struct Source {
    pub counters: Arc<Counters>,
    pub gate: Arc<Gate>,
    pub supervision: Arc<Supervision>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("prometheus::Source")
    }
}

type Fmt = Result<(), std::fmt::Error>;

/// A label value as the exposition formats write it: `\`, `"` and a line
/// feed escaped (prometheus-client writes label values as given; a user
/// name may hold `"` or `\`).
pub fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Fmt {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: i64) -> Fmt {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, unit, g.metric_type())?)
}

/// A counter family: one value per label set.
fn counters<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)> + 'a,
) -> Fmt {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in values {
        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Source {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let r = reading(&self.counters, &self.gate, Some(&self.supervision));
        let t = &r.totals;
        let e = &mut enc;
        counter(
            e,
            "connections",
            "SOCKS requests answered with success",
            t.historic,
        )?;
        gauge(
            e,
            "active_connections",
            "Client connections open now",
            None,
            r.active as i64,
        )?;
        gauge(
            e,
            "max_clients",
            "Client connections allowed at once",
            None,
            r.max_clients as i64,
        )?;
        gauge(
            e,
            "uptime",
            "Time since the server started",
            Some(&Unit::Seconds),
            t.uptime_secs as i64,
        )?;
        counters(
            e,
            "bytes",
            "Bytes relayed, by direction (up: client to target)",
            [
                (vec![("direction", "up".to_string())], t.bytes_up),
                (vec![("direction", "down".to_string())], t.bytes_down),
            ],
        )?;
        counters(
            e,
            "refused",
            "Clients turned away before their session, by reason",
            [
                (
                    vec![("reason", "max_clients".to_string())],
                    t.refused_max_clients,
                ),
                (vec![("reason", "per_ip".to_string())], t.refused_per_ip),
                (
                    vec![("reason", "client_rules".to_string())],
                    t.denied_client_rules,
                ),
            ],
        )?;
        counter(
            e,
            "auth_failures",
            "SOCKS clients that failed authentication",
            t.auth_failures,
        )?;
        counter(
            e,
            "admin_auth_failures",
            "Failed manager logins",
            t.admin_auth_failures,
        )?;
        counter(
            e,
            "admin_locked_out",
            "Manager logins refused while their source was locked out",
            t.admin_locked_out,
        )?;
        counter(
            e,
            "admin_evicted",
            "Unauthenticated manager associations closed to make room",
            t.admin_evicted,
        )?;
        counters(
            e,
            "replies",
            "SOCKS replies sent, by code (RFC 1928 REP)",
            t.replies.iter().enumerate().map(|(code, n)| {
                let code = if code < REPLY_CODES {
                    format!("{code:#04x}")
                } else {
                    "other".to_string()
                };
                (vec![("code", code)], *n)
            }),
        )?;
        counters(
            e,
            "udp_dropped",
            "UDP ASSOCIATE datagrams dropped, by reason (denied: by the target rules)",
            crate::stats::UDP_DROP_REASONS
                .iter()
                .zip(t.udp_dropped)
                .map(|(r, n)| (vec![("reason", r.to_string())], n)),
        )?;
        counters(
            e,
            "user_sessions",
            "Authenticated sessions, by user",
            t.users
                .iter()
                .map(|(n, u)| (vec![("user", label(n.as_str()))], u.sessions)),
        )?;
        counters(
            e,
            "user_bytes",
            "Bytes relayed, by user and direction",
            t.users.iter().flat_map(|(n, u)| {
                [
                    (
                        vec![("user", label(n.as_str())), ("direction", "up".into())],
                        u.bytes_up,
                    ),
                    (
                        vec![("user", label(n.as_str())), ("direction", "down".into())],
                        u.bytes_down,
                    ),
                ]
            }),
        )?;
        counters(
            e,
            "manager_requests",
            "Manager requests answered, by command and status",
            t.manager_requests.iter().map(|((cmd, status), n)| {
                (
                    vec![
                        ("command", format!("{cmd:#04x}")),
                        ("status", format!("{status:#04x}")),
                    ],
                    *n,
                )
            }),
        )?;
        counters(
            e,
            "session_crashes",
            "Sessions that panicked (ended, never restarted), by kind",
            [
                (vec![("kind", "socks".to_string())], t.session_crashes),
                (
                    vec![("kind", "manager".to_string())],
                    t.manager_session_crashes,
                ),
            ],
        )?;
        counters(
            e,
            "node_restarts",
            "Restarts of each node of the supervision tree",
            self.supervision
                .view()
                .into_iter()
                .map(|n| (vec![("node", label(&n.node.name))], n.node.restarts)),
        )?;
        Ok(())
    }
}

/// The standard `process_*` metrics, read from /proc (procfs).
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        let e = &mut enc;
        if let Ok(stat) = me.stat() {
            let tps = procfs::ticks_per_second() as f64;
            let cpu = (stat.utime + stat.stime) as f64 / tps;
            let c = ConstCounter::new(cpu);
            c.encode(e.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                c.metric_type(),
            )?)?;
            let page = procfs::page_size() as i64;
            gauge(
                e,
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                stat.rss as i64 * page,
            )?;
            gauge(
                e,
                "process_virtual_memory",
                "Virtual memory size",
                Some(&Unit::Bytes),
                stat.vsize as i64,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = boot as f64 + stat.starttime as f64 / tps;
                let g = ConstGauge::new(start);
                g.encode(e.encode_descriptor(
                    "process_start_time",
                    "Start time of the process since the Unix epoch",
                    Some(&Unit::Seconds),
                    g.metric_type(),
                )?)?;
            }
        }
        if let Ok(n) = me.fd_count() {
            gauge(
                e,
                "process_open_fds",
                "Open file descriptors",
                None,
                n as i64,
            )?;
        }
        if let Ok(limits) = me.limits() {
            if let procfs::process::LimitValue::Value(n) = limits.max_open_files.soft_limit {
                gauge(
                    e,
                    "process_max_fds",
                    "Open file descriptor limit",
                    None,
                    n as i64,
                )?;
            }
        }
        Ok(())
    }
}

/// The registry a scrape encodes: ours under `actor_socks_`, the process
/// metrics as they are named everywhere.
pub fn registry(source: Source) -> Registry {
    let mut root = Registry::default();
    root.sub_registry_with_prefix("actor_socks")
        .register_collector(Box::new(source));
    root.register_collector(Box::new(Process));
    root
}

/// The exposition text of `registry`.
pub fn exposition(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

fn respond(status: StatusCode, body: String, content_type: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter's
/// `HELP`/`TYPE` name its `_total` samples, and `UNIT` and `EOF` go (0.0.4
/// has neither).
pub fn to_text_004(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// `GET`/`HEAD /metrics`; 404 elsewhere, 405 for other methods. OpenMetrics
/// for a scraper that accepts it, else the 0.0.4 text format.
fn handle(req: &Request<hyper::body::Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return respond(
            StatusCode::NOT_FOUND,
            "not found: try /metrics\n".into(),
            "text/plain",
        );
    }
    let openmetrics = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (body, kind) = match *req.method() {
        Method::GET | Method::HEAD if openmetrics => (exposition(registry), OPENMETRICS),
        Method::GET | Method::HEAD => (to_text_004(&exposition(registry)), TEXT_004),
        _ => (String::new(), ""),
    };
    match *req.method() {
        Method::GET => respond(StatusCode::OK, body, kind),
        Method::HEAD => respond(StatusCode::OK, String::new(), kind),
        _ => {
            let mut r = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET or HEAD\n".into(),
                "text/plain",
            );
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            r
        }
    }
}

/// Serves `listener` until a stop fault (the task of node `prometheus`,
/// see [`crate::supervision::task`]); `faults` carries injected ones.
pub async fn serve(
    listener: Arc<TcpListener>,
    registry: Arc<Registry>,
    mut faults: tokio::sync::mpsc::UnboundedReceiver<FaultKind>,
    log: Logger,
) -> TaskEnd {
    // The open connections, oldest first.
    let open: Arc<std::sync::Mutex<std::collections::VecDeque<(u64, tokio::task::AbortHandle)>>> =
        Arc::default();
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            f = faults.recv() => match f {
                Some(FaultKind::Panic) => crate::supervision::injected_panic(),
                Some(FaultKind::Stop) => return TaskEnd::Stopped("the endpoint stopped".into()),
                None => std::future::pending().await,
            },
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(log, "metrics endpoint: accept failed"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        {
            let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
            while o.len() >= MAX_CONNECTIONS {
                if let Some((_, oldest)) = o.pop_front() {
                    oldest.abort();
                }
            }
        }
        let id = next_id;
        next_id += 1;
        let registry = registry.clone();
        let done = open.clone();
        let task = tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let r = handle(&req, &registry);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            done.lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(i, _)| *i != id);
        });
        open.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((id, task.abort_handle()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("x\ny"), "x\\ny");
        assert_eq!(label("plain é"), "plain é");
    }

    #[test]
    fn openmetrics_becomes_text_004() {
        let om = "# HELP a_bytes Bytes.\n# TYPE a_bytes counter\n# UNIT a_bytes bytes\n\
                  a_bytes_total{d=\"up\"} 1\n# HELP g A gauge.\n# TYPE g gauge\ng 2\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP a_bytes_total Bytes.\n# TYPE a_bytes_total counter\n\
             a_bytes_total{d=\"up\"} 1\n# HELP g A gauge.\n# TYPE g gauge\ng 2\n"
        );
    }
}
