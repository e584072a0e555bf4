//! A campaign: several communes hit at once. Every open crisis together, as ops follow them:
//! SLA clocks side by side, the shared stock and its shortages, the waiting list in the order
//! it is served and the rule in force, and the tenant's Graph budget every crisis shares.

use repli_core::m365::CallStats;
use repli_proto::api::{CampaignCrisis, CampaignView, StockLine, WaitingLine};
use repli_store::CrisisFilter;

use crate::{AppError, Services, inventory, views};

/// What every crisis of a campaign shares: the stock, the waiting list and its rule, the
/// tenant's Graph budget (the ops dashboard shows the crises' SLA clocks itself).
#[derive(Debug, Clone)]
pub struct Shared {
    pub stock: Vec<StockLine>,
    pub waiting: Vec<WaitingLine>,
    pub priority_rule: &'static str,
    pub graph: CallStats,
}

/// The shared part of the campaign.
pub async fn shared(st: &Services) -> Result<Shared, AppError> {
    let waiting_list = inventory::waiting_list(st).await?;
    let stock = inventory::status(st)
        .await?
        .into_iter()
        .map(|line| StockLine {
            kind: line.kind,
            label: line.kind.label_fr().to_owned(),
            available: line.available,
            held: line.reserved + line.lent,
            missing: waiting_list
                .iter()
                .flat_map(|(_, needs)| needs)
                .filter(|n| n.kind == line.kind)
                .map(|n| n.shortage())
                .sum(),
        })
        .collect();
    let waiting = waiting_list
        .into_iter()
        .zip(1u32..)
        .map(|((r, needs), position)| WaitingLine {
            position,
            crisis: r.id,
            commune_name: r.commune_name,
            exercise: r.exercise.is_some(),
            missing: needs.iter().map(inventory::need_view).collect(),
        })
        .collect();
    Ok(Shared { stock, waiting, priority_rule: inventory::priority_rule_fr(st), graph: st.m365.stats() })
}

/// The campaign as it stands.
pub async fn view(st: &Services) -> Result<CampaignView, AppError> {
    let now = st.clock.now();
    let records = st.store.crises(&CrisisFilter { open_only: true, ..Default::default() }).await?;
    let mut facts = st.store.crisis_facts_all().await?;
    let mut crises = Vec::with_capacity(records.len());
    for r in records {
        // Read in a second statement: a crisis created in between has no facts yet, which is
        // what empty facts say (no suspension, need or step recorded).
        let f = facts.remove(r.id.as_str()).unwrap_or_default();
        let sla = views::sla_of(st, &r, &f, now)?;
        crises.push(CampaignCrisis {
            commune_name: r.commune_name,
            state_label: r.state.label_fr().to_owned(),
            exercise: r.exercise.is_some(),
            sla_status: sla.status,
            sla_label: sla.status.label_fr().to_owned(),
            used_percent: views::used_percent(sla.elapsed, st.config.sla.business_hours),
            due_at: sla.due,
            remaining_seconds: sla.remaining.as_secs(),
            id: r.id,
        });
    }
    // Real crises before exercises, then the least time left first.
    crises.sort_by_key(|c| (c.exercise, c.remaining_seconds));
    let Shared { stock, waiting, priority_rule, graph } = shared(st).await?;
    Ok(CampaignView { crises, stock, waiting, priority_rule: priority_rule.to_owned(), graph })
}
