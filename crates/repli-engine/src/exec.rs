//! The executor: schedules ready steps, runs them under a lease, records every outcome.
//!
//! State lives in SQLite only. A step is claimed (written, audited) before its effect and
//! finished after it; if the daemon dies in between, the lease expires and the step runs
//! again, which is safe because every effect is idempotent (Graph operations look up their
//! deterministic keys, inventory allocation counts what is already held, transitions check
//! the current state).

use crate::context::{self, Context};
use jiff::{SignedDuration, Timestamp};
use repli_core::m365::{
    AgentSpec, BoxFut, DnsPublisher, DnsRecord, Error as M365Error, Grant, M365, MeetingSpec, TeamSpec, ZonePolicy,
    crisis_names, kit_records, zone_fragment,
};
use repli_core::playbook::{Playbook, StepKind};
use repli_core::run::{
    AccountMade, Accounts, AccountsDeleted, Assigned, Assignment, Audience, DomainCreated, DomainVerified, Exported,
    GroupDeleted, Licences, ManualTask, NewStep, Notified, Outputs, PlaybookName, PortError, Published, Rendered,
    Reserved, RunRecord, RunState, RunStore, ServiceRecords, StateReached, StepFinish, StepOutput, StepRecord,
    Unpublished, Workspace,
};
use repli_core::{CrisisAction, CrisisId, CrisisState, StepState};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;

/// Why the hand-back's export did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFailed {
    /// For ops, as the step's last error.
    pub message: String,
    /// A later attempt may complete it (throttling, an outage); otherwise the step fails until
    /// ops retry it or waive it (a refusal, an invalid request, a mailbox gone).
    pub transient: bool,
}

/// What the engine needs from the daemon around it.
pub trait Host: Send + Sync {
    /// The business clock (audit timestamps, records).
    fn now(&self) -> Timestamp;
    /// Real time, for leases and retry times (tests freeze the business clock, not this one).
    fn wall(&self) -> Timestamp;
    /// The crisis as templates see it.
    fn context<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Context, String>>;
    /// Exports the kit's mail and files (accounts of `domain`, the Team of group `nickname`)
    /// through `m365` into the crisis's signed archive; `Err` when it is not complete, saying
    /// whether a later attempt may complete it.
    fn export_handback<'a>(
        &'a self,
        crisis: &'a CrisisId,
        domain: &'a str,
        nickname: &'a str,
        m365: &'a dyn M365,
    ) -> BoxFut<'a, Result<Exported, ExportFailed>>;
    /// Renders the crisis's documents; returns their names.
    fn render_documents<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Vec<String>, String>>;
    /// Queues a message to `audience` and sends it.
    fn notify<'a>(
        &'a self,
        crisis: &'a CrisisId,
        audience: Audience,
        message: &'a str,
    ) -> BoxFut<'a, Result<(), String>>;
    /// The crisis changed under the engine (a transition it made, a step's outcome recorded):
    /// the host tells whoever its notification plan says, now rather than at its next round.
    /// Cannot fail the step: what the host cannot do now, it does later from the database.
    fn changed<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, ()>;
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Steps running at once, across crises.
    pub concurrency: usize,
    /// How long a claimed step stays leased without a heartbeat.
    pub lease: SignedDuration,
    /// How often the scheduler looks for work when nothing wakes it.
    pub tick: Duration,
    /// This process's lease owner name (unique per start).
    pub owner: String,
    /// Channels of the crisis Team besides « General ».
    pub channels: Vec<(String, String)>,
    /// What the full zone holds besides Graph's required records: the DMARC policy, Graph's
    /// optional records ([`repli_core::m365::kit_records`]).
    pub zone: ZonePolicy,
    /// How long a DNS step whose servers do not take an update (primary unreachable, a server
    /// not serving it yet) keeps retrying, counted from its first attempt, before handing the
    /// fragment to a person.
    pub dns_retry_budget: SignedDuration,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("store: {0}")]
    Store(#[from] PortError),
    #[error("no playbook named {0}")]
    UnknownPlaybook(PlaybookName),
    /// The crisis's template context could not be read: its steps' titles cannot be rendered.
    #[error("crisis {crisis}: cannot read its context: {reason}")]
    Context { crisis: CrisisId, reason: String },
}

/// A step's failure: its message, and whether trying again can help.
#[derive(Debug)]
struct StepError {
    message: String,
    permanent: bool,
}

impl StepError {
    fn transient(message: impl Into<String>) -> Self {
        StepError { message: message.into(), permanent: false }
    }
    fn permanent(message: impl Into<String>) -> Self {
        StepError { message: message.into(), permanent: true }
    }
}

impl From<repli_core::m365::Error> for StepError {
    fn from(e: repli_core::m365::Error) -> Self {
        use repli_core::m365::Error;
        let permanent = !e.is_transient();
        if let Error::Forbidden { op, code, missing, .. } = &e {
            // Retrying cannot help until an administrator grants what is missing.
            return StepError::permanent(format!(
                "Microsoft 365 refuse « {op} » (403 {code}) : il manque à l'application {}. Un administrateur du locataire doit l'accorder, puis relancer l'étape (repli m365 preflight pour tout vérifier).",
                missing.fr()
            ));
        }
        if let Error::LicencesExhausted { sku, needed, available, missing } = &e {
            // Nothing was created: once licences are bought or freed, the step runs again whole.
            return StepError::permanent(format!(
                "Licences insuffisantes : il manque {missing} licence(s) {sku} ({needed} nécessaire(s), {available} libre(s)). Achetez-en ou libérez-en dans le centre d'administration Microsoft 365 (Facturation › Licences), puis relancez l'étape."
            ));
        }
        if let Error::Dns(m) | Error::DnsRefused(m) | Error::DnsTsig(m) = &e {
            return StepError { message: format!("DNS : {m}"), permanent };
        }
        StepError { message: format!("Microsoft 365 : {e}"), permanent }
    }
}

impl From<PortError> for StepError {
    fn from(e: PortError) -> Self {
        StepError::transient(format!("base de données : {e}"))
    }
}

/// The key of a crisis's standing visio (`createOrGet`'s externalId), at activation and hand-back.
fn meeting_external_id(crisis: &CrisisId) -> String {
    format!("repli-{crisis}")
}

/// The visio step's manual task when Teams refuses the organiser (the same words as the
/// preflight's fix: `repli_core::m365::MEETING_POLICY_FR`).
fn meeting_policy_task(graph_message: &str) -> ManualTask {
    ManualTask {
        instructions: Some(format!(
            "Microsoft 365 refuse de créer la visio au nom de l'organisateur ({graph_message}). Il manque {}. Pour ce kit : créer la visio dans Teams avec un compte du kit, transmettre son lien à la commune, puis confirmer ; les kits suivants l'auront d'office une fois la stratégie appliquée (repli m365 preflight le vérifie).",
            Grant::MeetingPolicy.fr()
        )),
        checklist: vec![
            "Stratégie d'accès accordée (-Global) ou organisateur permanent désigné".into(),
            "Visio créée et lien transmis à la commune".into(),
        ],
    }
}

enum Outcome {
    Done(StepOutput),
    Manual(ManualTask),
    /// Not yet: what the step waits for (costs no attempt).
    Wait(String),
    /// Not yet, again after the delay: a DNS update the servers have not taken, retried
    /// within [`EngineConfig::dns_retry_budget`] whatever the step's attempts.
    Later {
        reason: String,
        after: SignedDuration,
    },
}

/// How long a waiting step sleeps before looking again, unless woken by a change first.
const WAIT_RECHECK: SignedDuration = SignedDuration::from_hours(1);

/// The engine. One per daemon; [`Engine::run_forever`] drives it.
pub struct Engine {
    store: Arc<dyn RunStore>,
    m365: Arc<dyn M365>,
    dns: Arc<dyn DnsPublisher>,
    /// Where an exercise's crises are provisioned instead (None: exercises' steps fail).
    exercise: Option<(Arc<dyn M365>, Arc<dyn DnsPublisher>)>,
    host: Arc<dyn Host>,
    playbooks: BTreeMap<PlaybookName, Playbook>,
    config: EngineConfig,
    wake: Arc<Notify>,
    permits: Arc<Semaphore>,
    active: Mutex<HashSet<(i64, String)>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("playbooks", &self.playbooks.keys())
            .finish_non_exhaustive()
    }
}

fn backoff(attempt: u32) -> SignedDuration {
    SignedDuration::from_secs(1i64 << attempt.saturating_sub(1).min(6))
}

impl Engine {
    pub fn new(
        store: Arc<dyn RunStore>,
        m365: Arc<dyn M365>,
        dns: Arc<dyn DnsPublisher>,
        host: Arc<dyn Host>,
        playbooks: BTreeMap<PlaybookName, Playbook>,
        config: EngineConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let active = Mutex::new(HashSet::new());
        Engine { store, m365, dns, exercise: None, host, playbooks, config, wake, permits, active }
    }

    /// Provisions exercises' crises through `m365` and `dns` (an exercise tenant, or a
    /// simulator), never through the real tenant.
    #[must_use]
    pub fn with_exercise_target(mut self, m365: Arc<dyn M365>, dns: Arc<dyn DnsPublisher>) -> Self {
        self.exercise = Some((m365, dns));
        self
    }

    pub fn playbook(&self, name: PlaybookName) -> Option<&Playbook> {
        self.playbooks.get(&name)
    }

    /// Asks the scheduler to look for work now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The steps of `playbook` for a crisis, as a run starts them (titles rendered).
    pub async fn new_steps(&self, crisis: &CrisisId, playbook: PlaybookName) -> Result<Vec<NewStep>, EngineError> {
        let book = self.playbooks.get(&playbook).ok_or(EngineError::UnknownPlaybook(playbook))?;
        // Titles rendered from an empty context would read « Créer les comptes des  agents sur  »:
        // a context that cannot be read is an error, not an empty one.
        let ctx = self
            .host
            .context(crisis)
            .await
            .map_err(|reason| EngineError::Context { crisis: crisis.clone(), reason })?;
        let steps: Vec<NewStep> = book
            .steps
            .iter()
            .map(|s| NewStep {
                step_id: s.id.clone(),
                kind: s.kind,
                title: context::render(&s.title, &ctx).unwrap_or_else(|_| s.title.clone()),
                needs: s.needs.clone(),
                params: serde_json::to_value(&s.params).unwrap_or(Value::Null),
                instructions: s.instructions.clone(),
                checklist: s.checklist.clone(),
                estimate_secs: s.estimate.as_secs(),
                budget_secs: s.budget.as_secs(),
                max_attempts: s.attempts,
            })
            .collect();
        Ok(steps)
    }

    /// Schedules and runs steps until `shutdown` resolves. Unfinished runs found in the
    /// database at start are resumed: that is the whole of crash recovery.
    pub async fn run_forever(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.clone().tick().await {
                tracing::error!(error = %e, "engine tick failed");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.tick) => {}
            }
        }
        // Give running steps a moment to record their outcome; a step still running after it
        // keeps its lease, which expires, and the step runs again at the next start.
        let all = self.config.concurrency.max(1) as u32;
        if tokio::time::timeout(Duration::from_secs(5), self.permits.acquire_many(all)).await.is_err() {
            tracing::warn!("steps still running at shutdown: they will run again after their lease");
        }
    }

    /// One scheduling pass.
    pub async fn tick(self: Arc<Self>) -> Result<(), EngineError> {
        let reclaimed = self.store.reclaim_expired(self.host.wall(), self.host.now()).await?;
        for (run, step) in &reclaimed {
            tracing::warn!(run, step, "lease expired: step will run again");
        }
        for run in self.store.unfinished_runs().await? {
            self.clone().schedule(&run).await?;
        }
        Ok(())
    }

    async fn schedule(self: Arc<Self>, run: &RunRecord) -> Result<(), EngineError> {
        let state = self.store.crisis_state(&run.crisis_id).await?;
        // A crisis called off stops its activation; its hand-back (the wind-down) goes on.
        let ended = matches!(state, Some(CrisisState::Cancelled | CrisisState::Rejected) | None);
        if ended && !run.playbook.survives_cancel() {
            self.store.finish_run(run.id, RunState::Cancelled, self.host.now()).await?;
            return Ok(());
        }
        if let Some((from, action)) = run.playbook.entry_transition()
            && state == Some(from)
        {
            self.store.transition(&run.crisis_id, action, self.host.now()).await?;
            self.host.changed(&run.crisis_id).await;
        }
        let steps = self.store.steps(run.id).await?;
        if steps.iter().all(|s| s.state.is_done()) {
            self.store.finish_run(run.id, RunState::Succeeded, self.host.now()).await?;
            tracing::info!(crisis = %run.crisis_id, playbook = %run.playbook, "run succeeded");
            return Ok(());
        }
        let done: BTreeSet<&str> = steps.iter().filter(|s| s.state.is_done()).map(|s| s.step_id.as_str()).collect();
        // What finished steps produced, read once for every step started in this pass.
        let outputs = Arc::new(Outputs::of(&steps));
        let wall = self.host.wall();
        for step in steps.iter().filter(|s| s.state == StepState::Pending) {
            if !step.needs.iter().all(|n| done.contains(n.as_str())) || step.not_before.is_some_and(|t| t > wall) {
                continue;
            }
            let key = (run.id, step.step_id.clone());
            if self.active.lock().map(|a| a.contains(&key)).unwrap_or(true) {
                continue;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else { return Ok(()) };
            let lease_until = wall + self.config.lease;
            let Some(claimed) = self
                .store
                .claim_step(run.id, &step.step_id, &self.config.owner, lease_until, wall, self.host.now())
                .await?
            else {
                continue;
            };
            if let Ok(mut a) = self.active.lock() {
                a.insert(key.clone());
            }
            let engine = self.clone();
            let run = run.clone();
            let outputs = outputs.clone();
            let span = tracing::info_span!("step", crisis = %run.crisis_id, playbook = %run.playbook, step = %claimed.step_id, kind = %claimed.kind, attempt = claimed.attempts);
            tokio::spawn(
                async move {
                    engine.execute_leased(&run, &claimed, &outputs).await;
                    if let Ok(mut a) = engine.active.lock() {
                        a.remove(&key);
                    }
                    drop(permit);
                    engine.wake();
                }
                .instrument(span),
            );
        }
        Ok(())
    }

    async fn execute_leased(&self, run: &RunRecord, step: &StepRecord, outputs: &Outputs) {
        let work = self.execute(run, step, outputs);
        let heartbeat = async {
            let every = Duration::from_millis((self.config.lease.as_millis() / 3).clamp(100, 60_000) as u64);
            loop {
                tokio::time::sleep(every).await;
                let until = self.host.wall() + self.config.lease;
                match self.store.renew_lease(run.id, &step.step_id, &self.config.owner, until).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                }
            }
        };
        let result = tokio::select! {
            r = work => r,
            () = heartbeat => {
                tracing::error!("lease lost: abandoning the step (another worker owns it)");
                return;
            }
        };
        let wall = self.host.wall();
        let finish = match result {
            Ok(Outcome::Done(v)) => StepFinish::Succeeded(v),
            Ok(Outcome::Manual(v)) => StepFinish::Manual(v),
            Ok(Outcome::Wait(reason)) => {
                tracing::info!(reason = %reason, "step waits");
                StepFinish::Wait { reason, not_before: wall + WAIT_RECHECK }
            }
            Ok(Outcome::Later { reason, after }) => {
                // A retry (audited, its first attempt kept so the budget counts from it), not
                // bounded by the step's attempts: by the DNS retry budget.
                tracing::warn!(reason = %reason, retry_in_s = after.as_secs(), "step will be tried again");
                StepFinish::Retry { error: reason, not_before: wall + after }
            }
            Err(e) => {
                let spent = step.first_started_at.map_or(SignedDuration::ZERO, |t| wall.duration_since(t));
                let wait = backoff(step.attempts);
                let budget = SignedDuration::from_secs(step.budget_secs);
                if e.permanent || step.attempts >= step.max_attempts || spent + wait > budget {
                    let why = if e.permanent {
                        String::new()
                    } else if step.attempts >= step.max_attempts {
                        format!(" (après {} tentatives)", step.attempts)
                    } else {
                        format!(" (budget de {} épuisé)", repli_core::playbook::format_duration(budget))
                    };
                    tracing::error!(error = %e.message, "step failed");
                    StepFinish::Failed(format!(
                        "{}{why}. Corriger la cause puis `repli step retry {} {}`, ou `repli step skip` avec une raison.",
                        e.message, run.crisis_id, step.step_id
                    ))
                } else {
                    tracing::warn!(error = %e.message, retry_in_s = wait.as_secs(), "step will be retried");
                    StepFinish::Retry { error: e.message, not_before: wall + wait }
                }
            }
        };
        // A step that will run again changed nothing anyone is told about.
        let tell = matches!(finish, StepFinish::Succeeded(_) | StepFinish::Manual(_) | StepFinish::Failed(_));
        match self.store.finish_step(run.id, &step.step_id, &self.config.owner, &finish, wall, self.host.now()).await {
            Ok(true) if tell => self.host.changed(&run.crisis_id).await,
            Ok(true) => {}
            Ok(false) => tracing::warn!("step outcome not recorded: lease lost"),
            Err(e) => tracing::error!(error = %e, "step outcome not recorded"),
        }
    }

    /// A DNS update the servers did not take: tried again later while the step is within
    /// [`EngineConfig::dns_retry_budget`] of its first attempt (backoff growing with the time
    /// spent, 2 s to 2 min); `None` once the budget is spent.
    fn dns_later(&self, step: &StepRecord, e: &M365Error) -> Option<Outcome> {
        let spent = step.first_started_at.map_or(SignedDuration::ZERO, |t| self.host.wall().duration_since(t));
        let budget = self.config.dns_retry_budget;
        if spent >= budget {
            return None;
        }
        let after = (spent / 2).clamp(SignedDuration::from_secs(2), SignedDuration::from_mins(2));
        let after = after.min(budget - spent).max(SignedDuration::from_secs(1));
        Some(Outcome::Later {
            reason: format!(
                "DNS : {e} — nouvel essai automatique dans {} s (jusqu'à {} après le premier essai, puis tâche manuelle)",
                after.as_secs(),
                repli_core::playbook::format_duration(budget)
            ),
            after,
        })
    }

    async fn execute(&self, run: &RunRecord, step: &StepRecord, outputs: &Outputs) -> Result<Outcome, StepError> {
        let kind = step.kind;
        let ctx = self.host.context(&run.crisis_id).await.map_err(StepError::transient)?;
        let (m365, dns) = match (&self.exercise, ctx.exercise) {
            (_, false) => (&self.m365, &self.dns),
            (Some((m, d)), true) => (m, d),
            (None, true) => {
                return Err(StepError::permanent(
                    "exercice sans cible Microsoft 365 : rien n'est fait sur le locataire réel",
                ));
            }
        };
        let render =
            |t: &str| context::render(t, &ctx).map_err(|e| StepError::permanent(format!("modèle invalide : {e}")));
        let param = |name: &str| -> Result<Option<String>, StepError> {
            step.params.get(name).and_then(Value::as_str).map(&render).transpose()
        };
        let nickname = format!("crise-{}", run.crisis_id.as_str().to_ascii_lowercase());
        let done = |v: StepOutput| Ok(Outcome::Done(v));
        match kind {
            StepKind::Manual | StepKind::InventoryReception => {
                let instructions = step.instructions.as_deref().map(&render).transpose()?;
                let checklist = step.checklist.iter().map(|c| render(c)).collect::<Result<Vec<_>, _>>()?;
                Ok(Outcome::Manual(ManualTask { instructions, checklist }))
            }
            StepKind::InventoryReserve => {
                let short = self.store.allocate(&run.crisis_id, self.host.now()).await?;
                done(StepOutput::Reserved(Reserved { short }))
            }
            StepKind::InventoryAssign => {
                let (laptops, items) = self.store.laptops(&run.crisis_id).await?;
                let agents = self.store.agents(&run.crisis_id).await?;
                let assignments = agents
                    .into_iter()
                    .zip(laptops)
                    .map(|(a, serial)| Assignment { agent: a.name, service: a.service, serial })
                    .collect();
                done(StepOutput::Assigned(Assigned { items, assignments }))
            }
            StepKind::M365Domain => {
                let d = m365.ensure_domain(&ctx.domain).await?;
                let comment = format!("Repli — zone de secours de {} (crise {})", ctx.commune, ctx.crisis_id);
                let zone = zone_fragment(&d.name, &comment, &d.verification);
                done(StepOutput::Domain(DomainCreated {
                    domain: d.name,
                    created: d.created,
                    records: d.verification,
                    zone,
                }))
            }
            StepKind::DnsPublish => {
                // What Microsoft 365 needs and nothing else: the verification TXT (Graph also
                // offers an MX alternative, which would sit beside the real MX), then the
                // service records and the DMARC policy.
                let records: Vec<DnsRecord> = kit_records(
                    &ctx.domain,
                    outputs.domain().map(|d| d.records.as_slice()).unwrap_or_default(),
                    outputs.services().map(|s| s.records.as_slice()),
                    &self.config.zone,
                );
                if records.is_empty() {
                    return Err(StepError::permanent(
                        "aucun enregistrement DNS à publier (l'étape m365.domain doit précéder)",
                    ));
                }
                let comment = format!("Repli — zone de secours de {} (crise {})", ctx.commune, ctx.crisis_id);
                let zone = zone_fragment(&ctx.domain, &comment, &records);
                let manual = |why: Option<String>| {
                    let why =
                        why.map(|w| format!("La publication automatique a échoué ({w}).\n\n")).unwrap_or_default();
                    Ok(Outcome::Manual(ManualTask {
                        instructions: Some(format!(
                            "{why}Publier dans la zone DNS les enregistrements suivants de {}, puis confirmer :\n\n{zone}",
                            ctx.domain
                        )),
                        checklist: vec![
                            "Enregistrements publiés".into(),
                            "Propagation vérifiée sur chaque serveur faisant autorité (dig @serveur TXT)".into(),
                        ],
                    }))
                };
                match dns.publish(&ctx.domain, &records).await {
                    Ok(true) => done(StepOutput::Published(Published {
                        published: records.len(),
                        zone,
                        records: records.clone(),
                    })),
                    Ok(false) => manual(None),
                    // The servers did not take it: tried again within the budget, then a person
                    // takes over.
                    Err(e @ M365Error::Dns(_)) => match self.dns_later(step, &e) {
                        Some(later) => Ok(later),
                        None => manual(Some(e.to_string())),
                    },
                    Err(e) => Err(e.into()),
                }
            }
            StepKind::DnsRemove => {
                let manual = |why: Option<String>| {
                    let why = why.map(|w| format!("Le retrait automatique a échoué ({w}). ")).unwrap_or_default();
                    Ok(Outcome::Manual(ManualTask {
                        instructions: Some(format!(
                            "{why}Retirer de la zone DNS tous les enregistrements sous {} (le domaine et ses sous-noms : {}), puis confirmer.",
                            ctx.domain,
                            crisis_names(&ctx.domain).join(", ")
                        )),
                        checklist: vec!["Enregistrements retirés".into()],
                    }))
                };
                // The hand-back's run does not hold the activation's records: the adapter
                // removes every name a crisis domain may use, and checks they are gone.
                match dns.remove(&ctx.domain, &[]).await {
                    Ok(true) => done(StepOutput::Unpublished(Unpublished { names: crisis_names(&ctx.domain) })),
                    Ok(false) => manual(None),
                    Err(e @ M365Error::Dns(_)) => match self.dns_later(step, &e) {
                        Some(later) => Ok(later),
                        None => manual(Some(e.to_string())),
                    },
                    Err(e) => Err(e.into()),
                }
            }
            StepKind::M365Verify => {
                // Only "not seen yet" (propagation, replication, throttling) is retried; any
                // other refusal fails the step with Graph's words.
                m365.verify_domain(&ctx.domain, None).await.map_err(|e| {
                    if e.is_transient() {
                        StepError::transient(format!(
                            "vérification du domaine {} : {e} (la propagation DNS peut prendre du temps)",
                            ctx.domain
                        ))
                    } else {
                        let e = StepError::from(e);
                        StepError::permanent(format!("vérification du domaine {} refusée : {}", ctx.domain, e.message))
                    }
                })?;
                done(StepOutput::Verified(DomainVerified { domain: ctx.domain.clone(), verified: true }))
            }
            StepKind::M365Services => {
                let records = m365.enable_services(&ctx.domain).await?;
                done(StepOutput::Services(ServiceRecords { records }))
            }
            StepKind::M365Accounts => {
                if let Some(gap) = self.store.agents_gap(&run.crisis_id).await? {
                    return Ok(Outcome::Wait(gap.message_fr()));
                }
                let agents = self.store.agents(&run.crisis_id).await?;
                if agents.is_empty() {
                    return Ok(Outcome::Wait("La liste des agents n'a pas encore été fournie par la commune.".into()));
                }
                let specs: Vec<AgentSpec> =
                    agents.iter().map(|a| AgentSpec { name: a.name.clone(), service: a.service.clone() }).collect();
                let accounts = m365.ensure_accounts(&ctx.domain, &specs).await?;
                let accounts = Accounts {
                    accounts: accounts
                        .into_iter()
                        .map(|a| AccountMade {
                            upn: a.upn,
                            id: a.id,
                            name: a.display_name,
                            service: a.service,
                            created: a.created,
                            licensed: a.licensed,
                        })
                        .collect(),
                };
                // A run planned before licences were a step of their own assigns them here.
                let steps = self.store.steps(run.id).await?;
                if !steps.iter().any(|s| s.kind == StepKind::M365Licences) {
                    m365.ensure_licences(&accounts.unlicensed_ids()).await?;
                }
                done(StepOutput::Accounts(accounts))
            }
            StepKind::M365Licences => {
                // Checks every account has its object id (outputs written before ids were kept).
                let accounts = accounts_with_ids(outputs)?;
                let total = accounts.accounts.len();
                let ids = accounts.unlicensed_ids();
                m365.ensure_licences(&ids).await?;
                done(StepOutput::Licences(Licences { accounts: total as u32, assigned: ids.len() as u32 }))
            }
            StepKind::M365Team => {
                let ids = account_ids(outputs)?;
                let spec = TeamSpec {
                    nickname,
                    display_name: format!("Cellule de crise — {}", ctx.commune),
                    description: format!(
                        "Espace de secours de la commune {} (crise {})",
                        ctx.de_commune, ctx.crisis_id
                    ),
                    owners: ids.iter().take(1).cloned().collect(),
                    members: ids,
                    channels: self.config.channels.clone(),
                };
                let t = m365.ensure_team(&spec).await?;
                done(StepOutput::Workspace(Workspace {
                    group_id: t.group_id,
                    mail: t.mail,
                    web_url: t.web_url,
                    channels: t.channels,
                }))
            }
            StepKind::M365Meeting => {
                let ids = account_ids(outputs)?;
                let organizer = ids
                    .first()
                    .cloned()
                    .ok_or_else(|| StepError::permanent("aucun compte pour organiser la réunion"))?;
                let start = self.host.now();
                let spec = MeetingSpec {
                    organizer,
                    external_id: meeting_external_id(&run.crisis_id),
                    subject: format!("Point de situation — cellule de crise de {}", ctx.commune),
                    start: start.to_string(),
                    end: (start + SignedDuration::from_mins(30)).to_string(),
                };
                match m365.ensure_meeting(&spec).await {
                    Ok(m) => done(StepOutput::Meeting(repli_core::run::Meeting { join_url: m.join_url, id: m.id })),
                    // Teams refuses the organiser: no retry can help for up to 30 minutes after
                    // an administrator acts, so a person takes over, with the preflight's words.
                    Err(M365Error::Forbidden { missing: Grant::MeetingPolicy, message, .. }) => {
                        Ok(Outcome::Manual(meeting_policy_task(&message)))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            StepKind::M365Isolation => {
                let group = outputs.workspace().map(|w| w.group_id.as_str()).ok_or_else(|| {
                    StepError::permanent("l'étape m365.team doit précéder la vérification d'isolement")
                })?;
                let report = m365.isolation_report(&ctx.domain, group, None).await?;
                if report.ok {
                    done(StepOutput::Isolation(report))
                } else {
                    let failed: Vec<String> =
                        report.checks.iter().filter(|c| !c.ok).map(|c| format!("{} ({})", c.check, c.detail)).collect();
                    Err(StepError::permanent(format!("isolement non démontré : {}", failed.join(" ; "))))
                }
            }
            StepKind::M365WindDown => {
                // The visio first, while its organiser still holds Teams: one meeting per cycle
                // would be left behind otherwise (the same externalId as at activation).
                let meetings = m365.remove_meetings(&ctx.domain, &meeting_external_id(&run.crisis_id)).await?;
                let mut down = m365.wind_down_accounts(&ctx.domain).await?;
                down.meetings_removed = meetings;
                done(StepOutput::WindDown(down))
            }
            StepKind::M365DeleteGroup => {
                done(StepOutput::GroupDeleted(GroupDeleted { deleted: m365.delete_group(&nickname).await? }))
            }
            StepKind::M365DeleteAccounts => {
                done(StepOutput::AccountsDeleted(AccountsDeleted { deleted: m365.delete_accounts(&ctx.domain).await? }))
            }
            StepKind::M365RemoveDomain => {
                let force = param("force")?.is_some_and(|f| f.trim() == "true");
                done(StepOutput::DomainRemoved(m365.remove_domain(&ctx.domain, force).await?))
            }
            StepKind::M365Export => {
                // Before anything is deleted: the playbook's deletions need this step, which
                // succeeds only on a complete archive checked against its signed manifest (or
                // is skipped by ops with a reason: the audited waiver).
                let exported = self
                    .host
                    .export_handback(&run.crisis_id, &ctx.domain, &nickname, m365.as_ref())
                    .await
                    .map_err(|e| StepError { message: e.message, permanent: !e.transient })?;
                done(StepOutput::Exported(exported))
            }
            StepKind::DocsRender => {
                let files = self.host.render_documents(&run.crisis_id).await.map_err(StepError::transient)?;
                done(StepOutput::Rendered(Rendered { documents: files }))
            }
            StepKind::Notify => {
                let (audience, message) = notify_params(param("audience")?, param("message")?)?;
                self.host.notify(&run.crisis_id, audience, &message).await.map_err(StepError::transient)?;
                done(StepOutput::Notified(Notified { audience }))
            }
            StepKind::CrisisReady => {
                self.transition(&run.crisis_id, CrisisAction::MarkReady, &[CrisisState::Ready, CrisisState::Delivered])
                    .await
            }
            StepKind::CrisisClose => {
                self.transition(&run.crisis_id, CrisisAction::Close, &[CrisisState::Closed, CrisisState::Cancelled])
                    .await
            }
        }
    }

    async fn transition(
        &self,
        id: &CrisisId,
        action: CrisisAction,
        already: &[CrisisState],
    ) -> Result<Outcome, StepError> {
        let current = self.store.crisis_state(id).await?;
        if current.is_some_and(|s| already.contains(&s)) {
            return Ok(Outcome::Done(StepOutput::State(StateReached { state: current })));
        }
        match self.store.transition(id, action, self.host.now()).await {
            Ok(state) => Ok(Outcome::Done(StepOutput::State(StateReached { state: Some(state) }))),
            Err(PortError::ItemsOutstanding { count }) => Err(StepError::transient(format!(
                "{count} équipement(s) encore prêté(s) : enregistrer leur retour (repli handback checkin) ou leur perte"
            ))),
            Err(e) => Err(StepError::permanent(e.to_string())),
        }
    }
}

/// The accounts' object ids, from the accounts step's output. An output written before ids
/// were kept has none: the accounts step runs again to read them.
fn account_ids(outputs: &Outputs) -> Result<Vec<String>, StepError> {
    Ok(accounts_with_ids(outputs)?.accounts.iter().map(|a| a.id.clone()).collect())
}

/// A notify step's audience and message (rendered). Both are required by `repli playbook
/// check`; a stored step without one is refused, not sent to ops with an empty message.
fn notify_params(audience: Option<String>, message: Option<String>) -> Result<(Audience, String), StepError> {
    let missing = |name: &str| StepError::permanent(format!("paramètre « {name} » manquant"));
    let a = audience.ok_or_else(|| missing("audience"))?;
    let audience =
        Audience::parse(&a).ok_or_else(|| StepError::permanent(format!("destinataire inconnu : {a} (ops ou dgs)")))?;
    Ok((audience, message.ok_or_else(|| missing("message"))?))
}

/// The accounts step's output, refused when missing or written before object ids were kept.
fn accounts_with_ids(outputs: &Outputs) -> Result<&Accounts, StepError> {
    let accounts = outputs.accounts().ok_or_else(|| StepError::permanent("l'étape m365.accounts doit précéder"))?;
    if accounts.accounts.iter().any(|a| a.id.is_empty()) {
        return Err(StepError::permanent(
            "les comptes ont été créés par une version antérieure sans leurs identifiants : relancer l'étape m365.accounts",
        ));
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use repli_core::m365::{Error, Grant};

    #[test]
    fn a_graph_403_fails_the_step_for_good_naming_what_to_grant_in_french() {
        let e = StepError::from(Error::Forbidden {
            op: "accounts.password".into(),
            code: "Authorization_RequestDenied".into(),
            message: "Insufficient privileges to complete the operation.".into(),
            missing: Grant::Role("User Administrator".into()),
        });
        assert!(e.permanent);
        assert!(e.message.contains("403 Authorization_RequestDenied"), "{}", e.message);
        assert!(e.message.contains("le rôle d'annuaire « User Administrator »"), "{}", e.message);
        let throttled = StepError::from(Error::Graph {
            op: "accounts.create".into(),
            status: 429,
            code: "TooManyRequests".into(),
            message: "slow down".into(),
        });
        assert!(!throttled.permanent);
    }

    #[test]
    fn a_visio_refused_for_the_access_policy_becomes_a_manual_task_with_the_preflight_words() {
        let task = meeting_policy_task("App x is not authorized to Create meeting on behalf of user y");
        let text = task.instructions.unwrap_or_default();
        assert!(text.contains(repli_core::m365::MEETING_POLICY_FR), "{text}");
        assert!(text.contains("Grant-CsApplicationAccessPolicy -PolicyName Repli -Global"), "{text}");
        assert!(text.contains("30 minutes") && text.contains("not authorized to Create meeting"), "{text}");
        assert_eq!(task.checklist.len(), 2);
    }

    #[test]
    fn a_notify_step_without_its_audience_or_message_fails_instead_of_sending_nothing() {
        let (audience, message) = notify_params(Some("dgs".into()), Some("Kit prêt".into())).unwrap();
        assert_eq!((audience, message.as_str()), (Audience::Dgs, "Kit prêt"));
        let e = notify_params(Some("ops".into()), None).unwrap_err();
        assert!(e.permanent && e.message.contains("« message » manquant"), "{}", e.message);
        let e = notify_params(None, Some("x".into())).unwrap_err();
        assert!(e.permanent && e.message.contains("« audience » manquant"), "{}", e.message);
        assert!(notify_params(Some("mairie".into()), Some("x".into())).unwrap_err().message.contains("mairie"));
    }

    #[test]
    fn licences_need_the_accounts_output_with_its_ids() {
        let e = accounts_with_ids(&Outputs::default()).unwrap_err();
        assert!(e.permanent && e.message.contains("m365.accounts doit précéder"), "{}", e.message);
    }
}
