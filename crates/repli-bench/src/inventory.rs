//! `repli-bench inventory`: the inventory page's list over a large pool. A replid is started in
//! process on a new database, `--items` items are imported (every kind, with valid IMEIs and
//! ICCIDs), a crisis takes and lends some of them, then each of the page's queries (the
//! `repli_app::inventory::list` operation and the per-kind counts the page shows, i.e. every
//! statement the page runs; not HTTP or the template) is timed `--runs` times.

use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use repli_app::records::{ItemQuery, ItemSort};
use repli_core::{ItemKind, ItemState};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct InventoryBench {
    /// Items in the pool.
    #[arg(long, default_value_t = 5000)]
    pub items: usize,
    /// Timed runs of each query.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Query {
    pub name: &'static str,
    /// Items the query matched (all pages).
    pub matched: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct InventoryFigures {
    pub items: usize,
    pub runs: usize,
    pub queries: Vec<Query>,
}

/// A 15-digit IMEI or 19-digit ICCID: `prefix` and `n`, completed by its Luhn check digit.
fn with_check_digit(prefix: &str, n: usize, width: usize) -> String {
    let body = format!("{prefix}{n:0w$}", w = width - 1 - prefix.len());
    (0..10).map(|d| format!("{body}{d}")).find(|s| repli_core::inventory::luhn_ok(s)).unwrap_or(body)
}

/// The pool as Repli's CSV: 60 % laptops, then phones, SIM cards, routers and printers.
fn pool_csv(items: usize) -> String {
    let mut csv = String::from("asset_tag,serial,kind,model,imei,iccid,msisdn,apn,location\n");
    for n in 0..items {
        let line = match n % 20 {
            0..12 => format!("AMP-LAP-{n:05},BANC-LAP-{n:05},laptop,Portable 14 pouces (banc),,,,,Pharo\n"),
            12..14 => format!(
                "AMP-PHN-{n:05},BANC-PHN-{n:05},phone,Téléphone (banc),{},,,,Pharo\n",
                with_check_digit("35", n, 15)
            ),
            14..17 => format!(
                "AMP-SIM-{n:05},BANC-SIM-{n:05},sim,Carte SIM (banc),,{},,internet.pro,Pharo\n",
                with_check_digit("893315", n, 19)
            ),
            17..19 => format!(
                "AMP-RTR-{n:05},BANC-RTR-{n:05},router,Routeur 5G (banc),{},,,,Pharo\n",
                with_check_digit("86", n, 15)
            ),
            _ => format!("AMP-PRN-{n:05},BANC-PRN-{n:05},printer,Imprimante (banc),,,,,Pharo\n"),
        };
        csv.push_str(&line);
    }
    csv
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(a: &InventoryBench) -> anyhow::Result<InventoryFigures> {
    let dir = tempfile::tempdir()?;
    let (daemon, _token, crisis, ops) = crate::api::seed(dir.path(), 3).await?;
    let st = daemon.state().services().clone();
    let req = repli_proto::api::ImportRequest {
        files: vec![repli_proto::api::ImportFile { source: "banc.csv".into(), csv: pool_csv(a.items) }],
    };
    repli_app::inventory::import(&st, &ops, &req).await.map_err(|e| anyhow::anyhow!("import: {e}"))?;
    // The activated crisis is served from the waiting list by the import; lend what it got.
    let held = repli_app::inventory::items(&st).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let named = repli_proto::api::AgentsRequest {
        agents: vec![repli_proto::api::AgentInput { name: "Anne Martin".into(), service: "Accueil".into() }],
    };
    let agents =
        repli_app::inventory::agents_request(&st, &ops, &crisis, &named, repli_app::inventory::ListChange::Replace)
            .await
            .map_err(|e| anyhow::anyhow!("agents: {e}"))?;
    for i in held.iter().filter(|i| i.crisis.as_deref() == Some(crisis.as_str())) {
        let agent = i.item.kind.is_personal().then(|| agents.first().map(|g| g.id)).flatten();
        if i.item.kind.is_personal() && agent.is_none() {
            continue;
        }
        let lend = repli_proto::api::LendRequest { serial: i.item.serial.clone(), agent_id: agent };
        repli_app::inventory::lend(&st, &ops, &crisis, &lend).await.map_err(|e| anyhow::anyhow!("lend: {e}"))?;
    }
    let page = |q: ItemQuery| ItemQuery { limit: Some(repli_app::inventory::LIST_PAGE), ..q };
    let last = u32::try_from(a.items.saturating_sub(1) / 50 * 50).unwrap_or(0);
    let queries: Vec<(&'static str, ItemQuery)> = vec![
        ("first page, by tag", page(ItemQuery::default())),
        ("last page, by tag", page(ItemQuery { offset: last, ..Default::default() })),
        ("by model, descending", page(ItemQuery { sort: ItemSort::Model, descending: true, ..Default::default() })),
        ("by last change", page(ItemQuery { sort: ItemSort::Updated, ..Default::default() })),
        ("search « 0042 »", page(ItemQuery { text: Some("0042".into()), ..Default::default() })),
        (
            "laptops available",
            page(ItemQuery { kind: Some(ItemKind::Laptop), state: Some(ItemState::Available), ..Default::default() }),
        ),
        ("one crisis", page(ItemQuery { crisis: Some(crisis.clone()), ..Default::default() })),
        (
            "one commune (INSEE)",
            page(ItemQuery { crisis: crisis.split('-').next().map(str::to_owned), ..Default::default() }),
        ),
        ("holder « anne »", page(ItemQuery { holder: Some("anne".into()), ..Default::default() })),
    ];
    let mut out = Vec::new();
    for (name, q) in queries {
        let mut lat = Vec::with_capacity(a.runs);
        let mut matched = 0;
        for _ in 0..a.runs.max(1) {
            let t = Instant::now();
            let (list, _counts) =
                tokio::try_join!(repli_app::inventory::list(&st, &q), repli_app::inventory::counts(&st))
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            matched = list.total;
        }
        lat.sort_by(f64::total_cmp);
        out.push(Query { name, matched, p50_ms: pct(&lat, 0.5), p99_ms: pct(&lat, 0.99), max_ms: pct(&lat, 1.0) });
    }
    daemon.shutdown().await.context("stopping replid")?;
    Ok(InventoryFigures { items: a.items, runs: a.runs, queries: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself on a small pool: it runs, every query matches what it should.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_inventory_bench_runs_on_a_small_pool() {
        let f = run(&InventoryBench { items: 200, runs: 2, json: true }).await.unwrap();
        let matched = |n: &str| f.queries.iter().find(|q| q.name == n).unwrap().matched;
        assert_eq!(matched("first page, by tag"), 200);
        assert_eq!(matched("search « 0042 »"), 1);
        assert!(matched("one crisis") > 0, "the crisis holds items: {f:?}");
        assert_eq!(matched("one commune (INSEE)"), matched("one crisis"));
        assert!(matched("holder « anne »") > 0, "laptops lent to the agent: {f:?}");
        assert!(matched("laptops available") < 120 && matched("laptops available") > 100, "{f:?}");
    }
}
