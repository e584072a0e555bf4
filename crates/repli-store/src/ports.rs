//! The store as the engine's port ([`RunStore`]): the engine sees these operations, not sqlx.

use jiff::Timestamp;
use repli_core::m365::BoxFut;
use repli_core::run::{
    AgentName, AgentsGap, PortError, RunRecord, RunState, RunStore, Shortage, StepFinish, StepRecord,
};
use repli_core::{CrisisAction, CrisisId, CrisisState, ItemKind};

use crate::{By, Store, StoreError};

impl From<StoreError> for PortError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ItemsOutstanding { count, .. } => PortError::ItemsOutstanding { count },
            StoreError::Db(_) | StoreError::Migrate(_) | StoreError::Corrupt { .. } => PortError::Store(e.to_string()),
            other => PortError::Refused(other.to_string()),
        }
    }
}

impl RunStore for Store {
    fn unfinished_runs(&self) -> BoxFut<'_, Result<Vec<RunRecord>, PortError>> {
        Box::pin(async move { Ok(Store::unfinished_runs(self).await?) })
    }

    fn finish_run(&self, run: i64, state: RunState, now: Timestamp) -> BoxFut<'_, Result<(), PortError>> {
        Box::pin(async move { Ok(Store::finish_run(self, run, state, now).await?) })
    }

    fn steps(&self, run: i64) -> BoxFut<'_, Result<Vec<StepRecord>, PortError>> {
        Box::pin(async move { Ok(Store::steps(self, run).await?) })
    }

    fn claim_step<'a>(
        &'a self,
        run: i64,
        step: &'a str,
        owner: &'a str,
        lease_until: Timestamp,
        wall: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Result<Option<StepRecord>, PortError>> {
        Box::pin(async move { Ok(Store::claim_step(self, run, step, owner, lease_until, wall, now).await?) })
    }

    fn renew_lease<'a>(
        &'a self,
        run: i64,
        step: &'a str,
        owner: &'a str,
        until: Timestamp,
    ) -> BoxFut<'a, Result<bool, PortError>> {
        Box::pin(async move { Ok(Store::renew_lease(self, run, step, owner, until).await?) })
    }

    fn finish_step<'a>(
        &'a self,
        run: i64,
        step: &'a str,
        owner: &'a str,
        finish: &'a StepFinish,
        wall: Timestamp,
        now: Timestamp,
    ) -> BoxFut<'a, Result<bool, PortError>> {
        Box::pin(async move { Ok(Store::finish_step(self, run, step, owner, finish, wall, now).await?) })
    }

    fn reclaim_expired(&self, wall: Timestamp, now: Timestamp) -> BoxFut<'_, Result<Vec<(i64, String)>, PortError>> {
        Box::pin(async move { Ok(Store::reclaim_expired(self, wall, now).await?) })
    }

    fn crisis_state<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Option<CrisisState>, PortError>> {
        Box::pin(async move { Ok(Store::crisis(self, crisis).await?.map(|c| c.state)) })
    }

    fn transition<'a>(
        &'a self,
        crisis: &'a CrisisId,
        action: CrisisAction,
        now: Timestamp,
    ) -> BoxFut<'a, Result<CrisisState, PortError>> {
        Box::pin(async move { Ok(Store::transition(self, crisis, action, None, By::System, now).await?.state) })
    }

    fn allocate<'a>(&'a self, crisis: &'a CrisisId, now: Timestamp) -> BoxFut<'a, Result<Vec<Shortage>, PortError>> {
        Box::pin(async move {
            let short = Store::allocate(self, crisis, By::System, now).await?;
            Ok(short.iter().map(|n| Shortage { kind: n.kind, wanted: n.wanted, allocated: n.allocated }).collect())
        })
    }

    fn laptops<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<(Vec<String>, usize), PortError>> {
        Box::pin(async move {
            let items = Store::items(self, Some(crisis.as_str())).await?;
            let laptops =
                items.iter().filter(|i| i.item.kind == ItemKind::Laptop).map(|i| i.item.serial.clone()).collect();
            Ok((laptops, items.len()))
        })
    }

    fn agents_gap<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Option<AgentsGap>, PortError>> {
        Box::pin(async move { Ok(Store::crisis(self, crisis).await?.and_then(|c| c.agents_gap())) })
    }

    fn agents<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Vec<AgentName>, PortError>> {
        Box::pin(async move {
            Ok(Store::agents(self, crisis)
                .await?
                .into_iter()
                .map(|a| AgentName { name: a.name, service: a.service })
                .collect())
        })
    }
}
