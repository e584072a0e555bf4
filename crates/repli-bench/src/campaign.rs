//! `repli-bench campaign`: several communes hit at once (a wave of attacks, a shared supplier
//! compromised), every kit provisioned together against one simulated tenant through one
//! Graph connection, whose throttle gate they share. Reports when each kit was ready against
//! the lower bound: the critical path, or every distinct request ÷ the throttle rate.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::bench::{TenantArgs, kit_spec, simulated_tenant};

#[derive(Debug, Args)]
pub struct CampaignBench {
    /// Communes whose kits are provisioned at once.
    #[arg(long, default_value_t = 10)]
    pub communes: usize,
    #[command(flatten)]
    pub tenant: TenantArgs,
    /// Requests in flight at once on the shared connection.
    #[arg(long, default_value_t = repli_m365::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct KitReady {
    crisis_id: String,
    ready_seconds: f64,
}

#[derive(Debug, Serialize)]
struct CampaignFigures {
    communes: usize,
    agents: usize,
    latency_ms: u64,
    throttle_rps: Option<u32>,
    batch_envelope_counts: bool,
    kits: Vec<KitReady>,
    first_ready_seconds: f64,
    last_ready_seconds: f64,
    /// Last kit ready ÷ first kit ready: how far apart kits started together finish.
    spread: f64,
    graph_requests: u64,
    distinct_requests: u64,
    sent_per_request: f64,
    throttled: u64,
    critical_path_seconds: f64,
    /// Distinct requests ÷ throttle rate, when throttled.
    rate_bound_seconds: Option<f64>,
    /// max(critical path, distinct requests ÷ rate).
    lower_bound_seconds: f64,
    /// Last kit ready ÷ lower bound (targets: ≤ 1.25 throttled, ≤ 1.5 unthrottled).
    ratio_to_bound: f64,
}

async fn campaign(c: &CampaignBench) -> anyhow::Result<CampaignFigures> {
    anyhow::ensure!((1..=92).contains(&c.communes), "--communes must be between 1 and 92");
    anyhow::ensure!((1..=500).contains(&c.tenant.agents), "--agents must be between 1 and 500");
    let (sim, m365) = simulated_tenant(
        &c.tenant,
        crate::bench::RetryAfter::Decimal,
        c.communes * c.tenant.agents,
        true,
        c.concurrency.max(1),
    )
    .await?;
    let dns = repli_m365::HttpDnsPublisher::new(sim.base_url());
    let specs: Vec<repli_m365::KitSpec> = (1..=c.communes)
        .map(|i| {
            kit_spec(
                &format!("13{i:03}-2026-001"),
                &format!("Commune {i}"),
                &format!("commune-{i}.secours-amp.fr"),
                c.tenant.agents,
            )
        })
        .collect();
    let start = Instant::now();
    let (m365, dns) = (&m365, &dns);
    let kits = futures_util::future::try_join_all(specs.iter().map(|spec| async move {
        repli_m365::provision(m365, dns, spec).await?;
        Ok::<_, repli_m365::Error>(KitReady {
            crisis_id: spec.crisis_id.clone(),
            ready_seconds: start.elapsed().as_secs_f64(),
        })
    }))
    .await?;
    let n = sim.counts();
    anyhow::ensure!(
        n.users == c.communes * c.tenant.agents
            && n.groups == c.communes
            && n.teams == c.communes
            && n.domains == c.communes,
        "every kit exactly once: {n:?}"
    );
    sim.stop().await;
    let s = repli_m365::M365::stats(m365);
    let first = kits.iter().map(|k| k.ready_seconds).fold(f64::INFINITY, f64::min);
    let last = kits.iter().map(|k| k.ready_seconds).fold(0.0, f64::max);
    let critical = c.tenant.critical_path_seconds();
    let by_rate = c.tenant.throttle_rps.map(|r| s.distinct_requests as f64 / f64::from(r.max(1)));
    let bound = critical.max(by_rate.unwrap_or(0.0));
    Ok(CampaignFigures {
        communes: c.communes,
        agents: c.tenant.agents,
        latency_ms: c.tenant.latency_ms,
        throttle_rps: c.tenant.throttle_rps,
        batch_envelope_counts: c.tenant.batch_envelope_counts,
        first_ready_seconds: first,
        last_ready_seconds: last,
        spread: if first > 0.0 { last / first } else { 0.0 },
        kits,
        graph_requests: s.graph_requests,
        distinct_requests: s.distinct_requests,
        sent_per_request: s.graph_requests as f64 / s.distinct_requests.max(1) as f64,
        throttled: s.throttled,
        critical_path_seconds: critical,
        rate_bound_seconds: by_rate,
        lower_bound_seconds: bound,
        ratio_to_bound: if bound > 0.0 { last / bound } else { 0.0 },
    })
}

pub async fn run(c: &CampaignBench) -> anyhow::Result<ExitCode> {
    let f = campaign(c).await?;
    if c.json {
        println!("{}", serde_json::to_string(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "campaign bench (SIMULATION): {} communes × {} agents, {} ms latency, throttle {}, one tenant",
        f.communes,
        f.agents,
        f.latency_ms,
        c.tenant.throttle_label()
    );
    let mut kits: Vec<&KitReady> = f.kits.iter().collect();
    kits.sort_by(|a, b| a.ready_seconds.total_cmp(&b.ready_seconds));
    let times: Vec<String> = kits.iter().map(|k| format!("{:.2}", k.ready_seconds)).collect();
    println!("  kits ready at (s): {}", times.join(" "));
    println!(
        "  first {:.2} s, last {:.2} s (spread ×{:.2}); {} Graph requests for {} distinct ({:.2} each), {} throttled",
        f.first_ready_seconds,
        f.last_ready_seconds,
        f.spread,
        f.graph_requests,
        f.distinct_requests,
        f.sent_per_request,
        f.throttled
    );
    let target = if f.throttle_rps.is_some() { 1.25 } else { 1.5 };
    println!(
        "  lower bound {:.2} s ({}); ratio {:.2} (target ≤ {target})",
        f.lower_bound_seconds,
        match f.rate_bound_seconds {
            Some(r) if r >= f.critical_path_seconds => format!("{} distinct requests ÷ rate", f.distinct_requests),
            _ => format!("critical path {:.2} s", f.critical_path_seconds),
        },
        f.ratio_to_bound
    );
    Ok(ExitCode::SUCCESS)
}
