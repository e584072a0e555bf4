//! `repli-bench api`: requests/s and latency of replid's reads against a bare axum handler in
//! the same process and run, on loopback. Closed loop (N connections as fast as they go) for
//! throughput; open loop at a fixed rate for p99, latency counted from each request's scheduled
//! instant so a stall is not hidden (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use repli_core::{Actor, CrisisAction, InseeCode, LogKind, Role};
use repli_proto::Client;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct ApiBench {
    /// Seconds of each closed-loop and open-loop measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent connections of the closed loop.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Requests per second of the open loop (p99).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Crises in the database (the list returns them all).
    #[arg(long, default_value_t = 20)]
    pub crises: usize,
    /// Measure only the targets whose name contains this (e.g. `crisis`, for a profiler).
    #[arg(long)]
    pub only: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub path: String,
    /// Size of one response body.
    pub response_bytes: usize,
    /// Closed loop.
    pub requests_per_second: f64,
    /// Share of bare axum's requests per second in the same run.
    pub share_of_bare: f64,
    /// Open loop at `rate`.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    /// Writes that succeeded per second while the target was measured (the busy-crisis target),
    /// and those that failed: a read figure means nothing if the writes did not happen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_errors: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ApiFigures {
    pub seconds: u64,
    pub connections: usize,
    pub rate: u32,
    pub crises: usize,
    pub targets: Vec<Target>,
}

async fn bare() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new()
        .route("/bare", axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

fn http(token: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse()?);
    }
    Ok(reqwest::Client::builder().default_headers(headers).pool_max_idle_per_host(256).build()?)
}

async fn closed_loop(client: &reqwest::Client, url: &str, connections: usize, secs: u64) -> (f64, u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let c = client.clone();
        let u = url.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut err) = (0u64, 0u64);
            while Instant::now() < deadline {
                match c.get(&u).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok += 1;
                    }
                    _ => err += 1,
                }
            }
            (ok, err)
        }));
    }
    let (mut ok, mut err) = (0, 0);
    for t in tasks {
        if let Ok((o, e)) = t.await {
            ok += o;
            err += e;
        }
    }
    (ok as f64 / start.elapsed().as_secs_f64(), err)
}

async fn open_loop(client: &reqwest::Client, url: &str, rate: u32, secs: u64) -> (Vec<f64>, u64) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = u64::from(rate) * secs;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let c = client.clone();
        let u = url.to_string();
        tasks.push(tokio::spawn(async move {
            let ok = match c.get(&u).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            (scheduled.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        if let Ok((ms, ok)) = t.await {
            lat.push(ms);
            if !ok {
                errors += 1;
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat, errors)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Starts a replid with `crises` crises (the first one activated and provisioned to ready).
pub(crate) async fn seed(
    dir: &std::path::Path,
    crises: usize,
) -> anyhow::Result<(replid::Daemon, String, String, Actor)> {
    let mut config = replid::config::Config::default();
    config.database.path = dir.join("repli.db");
    config.server.listen = "127.0.0.1:0".parse()?;
    let clock: Arc<dyn replid::clock::Clock> = Arc::new(replid::clock::SystemClock);
    let daemon = replid::Daemon::start(&config, clock.clone()).await.context("cannot start replid")?;
    let account = async |name: &str, role: Role, commune: Option<InseeCode>| {
        let req = repli_proto::api::NewUserRequest { name: name.to_owned(), role, commune, expires_days: None };
        repli_app::accounts::create(daemon.state(), replid::By::System, &req)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the account {name:?}: {e}"))
    };
    let ops_user = account("Banc", Role::Ops, None).await?;
    let ops = ops_user.token.token.clone();
    let actor = Actor {
        user_id: ops_user.user.id,
        name: ops_user.user.name.clone(),
        role: Role::Ops,
        commune: None,
        auth: repli_core::AuthMethod::Token,
    };
    let signed: Vec<InseeCode> = repli_app::crises::communes(daemon.state(), &actor)
        .await
        .map_err(|e| anyhow::anyhow!("communes: {e}"))?
        .into_iter()
        .filter(|c| c.convention.is_some())
        .map(|c| c.insee)
        .collect();
    anyhow::ensure!(signed.len() >= crises, "only {} communes signed the convention", signed.len());
    let url = daemon.url();
    let mut first = None;
    for insee in signed.iter().take(crises.max(1)) {
        let dgs = account("DGS", Role::Dgs, Some(insee.clone())).await?.token.token;
        let client = Client::new(&url, Some(dgs))?;
        let req = repli_proto::api::CrisisRequest {
            commune: insee.clone(),
            contact: repli_proto::api::Contact {
                name: "Anne Martin".into(),
                phone: "06 12 34 56 78".into(),
                email: None,
            },
            agents: 10,
            delivery_address: Some("Hôtel de ville".into()),
            notes: None,
            needs: None,
            aware_at: None,
            personal_data: None,
        };
        let c = client.request_crisis(&req, None).await?;
        first.get_or_insert(c.id);
    }
    let id = first.context("no crisis")?;
    Client::new(&url, Some(ops.clone()))?.act(&id, CrisisAction::Activate, None).await?;
    Ok((daemon, ops, id.to_string(), actor))
}

pub async fn run(a: &ApiBench) -> anyhow::Result<ApiFigures> {
    let dir = tempfile::tempdir()?;
    let (daemon, token, crisis, ops) = seed(dir.path(), a.crises).await?;
    let crisis_id = repli_core::CrisisId::parse(&crisis).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (bare_url, bare_task) = bare().await?;
    let url = daemon.url();
    let anon = http(None)?;
    let authed = http(Some(&token))?;
    let targets: Vec<(&str, String, &reqwest::Client)> = vec![
        ("bare axum", format!("{bare_url}/bare"), &anon),
        ("replid /healthz", format!("{url}/healthz"), &anon),
        ("replid /api/v1/me", format!("{url}/api/v1/me"), &authed),
        ("one crisis", format!("{url}/api/v1/crises/{crisis}"), &authed),
        ("one crisis, 100 writes/s", format!("{url}/api/v1/crises/{crisis}"), &authed),
        ("crisis list", format!("{url}/api/v1/crises"), &authed),
    ];
    let mut out = Vec::new();
    let mut bare_rps = 0.0;
    for (name, target, client) in targets {
        if a.only.as_deref().is_some_and(|o| !name.contains(o) && name != "bare axum") {
            continue;
        }
        // A busy crisis: a main-courante entry every 10 ms, each ending every cached read.
        let written = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let writing_since = Instant::now();
        let writer = name.contains("writes").then(|| {
            let services = daemon.state().services().clone();
            let (id, who, written) = (crisis_id.clone(), ops.clone(), written.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let kind = LogKind::PointDeSituation.as_str();
                loop {
                    tick.tick().await;
                    let done = repli_app::crises::add_log(&services, &who, id.as_str(), kind, "banc").await;
                    let counter = if done.is_ok() { &written.0 } else { &written.1 };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        // Warm the connection pool and the caches.
        let _ = closed_loop(client, &target, a.connections, 1).await;
        let (rps, e1) = closed_loop(client, &target, a.connections, a.seconds).await;
        if name == "bare axum" {
            bare_rps = rps;
        }
        let (lat, e2) = open_loop(client, &target, a.rate, a.seconds).await;
        let bytes = client.get(&target).send().await?.bytes().await?.len();
        let path =
            target.split_once("//").and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string())).unwrap_or_default();
        out.push(Target {
            name: name.to_string(),
            path,
            response_bytes: bytes,
            requests_per_second: rps,
            share_of_bare: if bare_rps > 0.0 { rps / bare_rps } else { 0.0 },
            p50_ms: pct(&lat, 0.50),
            p99_ms: pct(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(0.0),
            errors: e1 + e2,
            writes_per_second: writer
                .is_some()
                .then(|| written.0.load(Ordering::Relaxed) as f64 / writing_since.elapsed().as_secs_f64()),
            write_errors: writer.is_some().then(|| written.1.load(Ordering::Relaxed)),
        });
        if let Some(w) = writer {
            w.abort();
        }
    }
    bare_task.abort();
    daemon.shutdown().await?;
    Ok(ApiFigures { seconds: a.seconds, connections: a.connections, rate: a.rate, crises: a.crises, targets: out })
}
