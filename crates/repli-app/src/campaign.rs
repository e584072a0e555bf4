//! A campaign: several communes hit at once. Every open crisis together, as ops follow them:
//! SLA clocks side by side, the shared stock and its shortages, the waiting list in the order
//! it is served and the rule in force, and the tenant's Graph budget every crisis shares.

use repli_core::{ItemKind, ItemState};
use repli_proto::api::{CampaignCrisis, CampaignView, StockLine, WaitingLine};
use repli_store::CrisisFilter;

use crate::{AppError, Services, inventory, views};

/// The campaign as it stands.
pub async fn view(st: &Services) -> Result<CampaignView, AppError> {
    let now = st.clock.now();
    let records = st.store.crises(&CrisisFilter { open_only: true, ..Default::default() }).await?;
    let mut facts = st.store.crisis_facts_all().await?;
    let mut crises = Vec::with_capacity(records.len());
    for r in records {
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
    let waiting_list = inventory::waiting_list(st).await?;
    let counts = st.store.inventory_counts().await?;
    let stock = ItemKind::ALL
        .into_iter()
        .map(|kind| {
            let sum = |states: &[ItemState]| -> i64 {
                counts.iter().filter(|(k, s, _)| *k == kind && states.contains(s)).map(|c| c.2).sum()
            };
            let missing =
                waiting_list.iter().flat_map(|(_, needs)| needs).filter(|n| n.kind == kind).map(|n| n.shortage()).sum();
            StockLine {
                kind,
                label: kind.label_fr().to_owned(),
                available: sum(&[ItemState::Available]),
                held: sum(&[ItemState::Reserved, ItemState::Prepared, ItemState::Lent]),
                missing,
            }
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
    Ok(CampaignView {
        crises,
        stock,
        waiting,
        priority_rule: inventory::priority_rule_fr(st).to_owned(),
        graph: st.m365.stats(),
    })
}
