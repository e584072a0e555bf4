//! Crises: the request, reading one (or the list), the transitions and the work they start, the
//! SLA clock, the legal clocks, the main courante, notifications and the audit journal.

use jiff::Timestamp;
use repli_core::audit::AuditBundle;
use repli_core::run::{PlaybookName, RunState};
use repli_core::{Actor, CrisisAction, CrisisId, FieldError, InseeCode, LegalKind, LogKind, Role, text};
use repli_proto::ProblemCode;
use repli_proto::api::{
    ActionRequest, AuditPage, AuditQuery, AuditVerifyView, CommuneView, CrisisQuery, CrisisRequest, CrisisView,
    HistoryPage, HistoryQuery, LegalFactsRequest, LogEntryView, NotificationView, SlaReportLine,
};
use repli_store::{AuditFilter, By, CrisisFilter, CrisisRecord, NewCrisis, StoreError};
use sha2::{Digest, Sha256};

use crate::{App, AppError, Services, views};

pub use repli_core::crisis::MAX_AGENTS;
/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Longest filter value accepted in an audit query.
use repli_core::schema::FILTER_MAX as MAX_FILTER;

fn parse_insee(s: &str) -> Result<InseeCode, AppError> {
    // Not the text given, which the caller chose: what a code looks like.
    InseeCode::parse(s).map_err(|_| {
        AppError::problem(
            ProblemCode::UnknownCommune,
            "Commune inconnue : un code INSEE a 5 caractères, par exemple 13005.",
        )
    })
}

fn parse_crisis_id(s: &str) -> Result<CrisisId, AppError> {
    CrisisId::parse(s).map_err(|_| AppError::crisis_not_found())
}

/// Loads a crisis the actor may see; another commune's crisis does not exist for a DGS.
pub async fn visible_crisis(st: &Services, a: &Actor, id: &str) -> Result<CrisisRecord, AppError> {
    let id = parse_crisis_id(id)?;
    match st.store.crisis(&id).await? {
        Some(r) if a.may_see_commune(&r.commune) => Ok(r),
        _ => Err(AppError::crisis_not_found()),
    }
}

/// The communes the actor may see.
pub async fn communes(st: &Services, a: &Actor) -> Result<Vec<CommuneView>, AppError> {
    let all = st.store.communes().await?;
    Ok(all.into_iter().filter(|c| a.may_see_commune(&c.commune.insee)).map(views::commune).collect())
}

pub async fn commune(st: &Services, a: &Actor, insee: &str) -> Result<CommuneView, AppError> {
    let insee = parse_insee(insee)?;
    if !a.may_see_commune(&insee) {
        return Err(StoreError::UnknownCommune(insee).into());
    }
    let rec = st.store.commune(&insee).await?.ok_or(StoreError::UnknownCommune(insee))?;
    Ok(views::commune(rec))
}

/// The crises the actor may see (a DGS: their commune's only), without history.
pub async fn list(st: &Services, a: &Actor, q: CrisisQuery) -> Result<Vec<CrisisView>, AppError> {
    let commune = match (a.role, q.commune) {
        (Role::Dgs, Some(c)) if a.commune.as_ref() != Some(&c) => {
            return Err(AppError::Forbidden("Vous ne pouvez consulter que les crises de votre commune."));
        }
        (Role::Dgs, _) => a.commune.clone(),
        (_, c) => c,
    };
    let filter = CrisisFilter { commune, state: q.state, open_only: q.open.unwrap_or(false), exercise: None };
    let now = st.clock.now();
    let read = st.store.crisis_list_read(&filter).await?;
    let (records, facts) = &*read;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        // Read in a second statement: a crisis created in between has no facts yet, which is
        // what empty facts say (no suspension, need or step recorded).
        let f = facts.get(r.id.as_str()).cloned().unwrap_or_default();
        out.push(views::crisis(st, r.clone(), f, now)?);
    }
    Ok(out)
}

/// Entries of a history page when the query names no limit.
const HISTORY_PAGE: u32 = 100;

/// A page of the history of a crisis the actor may see, oldest first, going back from
/// `q.before` (the crisis document carries the most recent entries).
pub async fn history(st: &Services, a: &Actor, id: &str, q: HistoryQuery) -> Result<HistoryPage, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let limit = q.limit.unwrap_or(HISTORY_PAGE).clamp(1, repli_store::HISTORY_PAGE_MAX);
    // One entry more than asked tells whether an older page exists.
    let mut rows = st.store.crisis_history(&r.id, q.before, limit + 1).await?;
    let more = rows.len() > limit as usize;
    if more {
        rows.remove(0);
    }
    let next_before = if more { rows.first().map(|e| e.seq) } else { None };
    Ok(HistoryPage { entries: rows.into_iter().map(views::history_entry).collect(), next_before })
}

/// How urgent a crisis's SLA is, most urgent first: breached, at risk, suspended, on track, then
/// the ended ones (met, met late).
pub fn urgency(s: repli_core::SlaStatus) -> u8 {
    use repli_core::SlaStatus;
    match s {
        SlaStatus::Breached => 0,
        SlaStatus::AtRisk => 1,
        SlaStatus::Suspended => 2,
        SlaStatus::OnTrack => 3,
        _ => 4,
    }
}

/// The crises on a person's home page.
#[derive(Debug, Clone)]
pub struct Home {
    /// The open crises the person may see, most urgent first ([`urgency`], then due instant).
    pub open: Vec<CrisisView>,
    /// The most recent ended ones, at most [`Home::ENDED_SHOWN`].
    pub ended: Vec<CrisisView>,
    /// Whether a DGS may request a kit: no real crisis of theirs is open (an exercise never
    /// stands in the way of a real request).
    pub can_request: bool,
}

impl Home {
    pub const ENDED_SHOWN: usize = 20;
}

/// The home page's crises for `a` (read in two statements, as [`list`]).
pub async fn home(st: &Services, a: &Actor) -> Result<Home, AppError> {
    let mut views = list(st, a, CrisisQuery::default()).await?;
    views.sort_by_key(|v| (!v.state.is_open(), urgency(v.sla.status), v.sla.due_at));
    let (open, ended): (Vec<_>, Vec<_>) = views.into_iter().partition(|v| v.state.is_open());
    let can_request = a.role == Role::Dgs && !open.iter().any(|v| v.exercise.is_none());
    Ok(Home { open, ended: ended.into_iter().take(Home::ENDED_SHOWN).collect(), can_request })
}

/// A crisis as the API and the pages show it: its SLA, needs, legal clocks and the most recent
/// page of its history, read in one statement.
pub async fn view(st: &Services, r: CrisisRecord) -> Result<CrisisView, AppError> {
    let (r, facts) = st.store.crisis_read(&r.id).await?.ok_or_else(AppError::crisis_not_found)?;
    views::crisis(st, r, facts, st.clock.now())
}

/// What a person may do on a crisis now: each ability crosses the crisis's state (and the
/// transitions it allows next) with the person's permissions. Pages offer a form only when its
/// ability holds; the operation behind the form checks again, inside its transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Abilities {
    pub activate: bool,
    pub reject: bool,
    pub deliver: bool,
    pub start_handback: bool,
    pub cancel: bool,
    /// Scan items back: the hand-back is under way.
    pub scan: bool,
    /// Write the main courante.
    pub write_log: bool,
    /// Name or change the agents (not once the hand-back has started).
    pub name_agents: bool,
    /// Record the legal facts and mark a legal obligation done.
    pub legal: bool,
    /// Suspend or resume the SLA clock: it runs until the kit is ready.
    pub suspend_sla: bool,
    /// Read the after-action report.
    pub read_retex: bool,
    /// Operate the kit: manual steps, retries and skips, loans, write-offs, the credential
    /// sheets and the kit's isolation details.
    pub operate: bool,
}

impl Abilities {
    /// What `a` may do on a crisis in `state`, whose next transitions are `next_actions`.
    pub fn of(a: &Actor, state: repli_core::CrisisState, next_actions: &[CrisisAction]) -> Self {
        use repli_core::{CrisisState, Permission};
        let next = |action| next_actions.contains(&action);
        let operate = a.may(Permission::OperateCrisis);
        let write = a.may(Permission::WriteCrisisLog) && state.is_open();
        Abilities {
            activate: operate && next(CrisisAction::Activate),
            reject: operate && next(CrisisAction::Reject),
            deliver: operate && next(CrisisAction::Deliver),
            start_handback: operate && next(CrisisAction::StartHandback),
            cancel: a.may(Permission::CancelCrisis) && next(CrisisAction::Cancel),
            scan: operate && state == CrisisState::Handback,
            write_log: write,
            name_agents: write && state != CrisisState::Handback,
            legal: write,
            suspend_sla: operate && state.is_open() && !state.is_ready_or_later(),
            read_retex: a.may(Permission::ReadSlaReport),
            operate,
        }
    }
}

/// Everything the crisis page shows, read together: a database error fails the whole read (an
/// error page, never an empty section).
#[derive(Debug, Clone)]
pub struct CrisisPage {
    pub view: CrisisView,
    /// The commune's signed convention.
    pub convention: Option<repli_proto::api::ConventionView>,
    pub steps: repli_proto::api::StepsView,
    pub loans: Vec<repli_proto::api::LoanView>,
    pub log: Vec<LogEntryView>,
    pub agents: Vec<repli_proto::api::AgentView>,
    /// What ops may lend now (empty for anyone else).
    pub lendable: Vec<crate::inventory::Lendable>,
    /// The kit's typed outputs (accounts, visio, domain…).
    pub outputs: repli_core::run::Outputs,
    /// What the person may do on it now.
    pub abilities: Abilities,
    /// Its outbox: ops and auditors see every message and recipient, the DGS what was sent to
    /// them.
    pub outbox: Vec<NotificationView>,
    /// The data hand-back's archive, once complete, for those who may download it.
    pub archive: Option<repli_core::run::Exported>,
}

/// The crisis page of `id` for `a`.
pub async fn page(st: &Services, a: &Actor, id: &str) -> Result<CrisisPage, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let crisis_id = r.id.clone();
    let convention = commune(st, a, r.commune.as_str()).await?.convention;
    let view = view(st, r).await?;
    let steps = crate::steps::steps_of(st, a, crisis_id.as_str()).await?;
    let loans = crate::inventory::loans_of(st, &crisis_id).await?;
    let log = st.store.log_entries(&crisis_id).await?.into_iter().map(log_view).collect();
    let agents = crate::inventory::agents(st, a, crisis_id.as_str()).await?;
    let outputs = crate::steps::kit_outputs(st, &crisis_id).await?;
    let lendable =
        if a.role == Role::Ops { crate::inventory::lendable(st, &crisis_id, &outputs).await? } else { Vec::new() };
    let abilities = Abilities::of(a, view.state, &view.next_actions);
    let outbox = st
        .store
        .crisis_notifications(&crisis_id, 200)
        .await?
        .into_iter()
        .filter(|n| a.role != Role::Dgs || n.audience == "dgs")
        .map(notification_view)
        .collect();
    let archive = if repli_core::Permission::DownloadHandback.allowed(a.role) {
        crate::handback::exported(st, &crisis_id).await?
    } else {
        None
    };
    Ok(CrisisPage { view, convention, steps, loans, log, agents, lendable, outputs, abilities, outbox, archive })
}

/// Reads one crisis the actor may see (one statement besides authentication).
pub async fn get(st: &Services, a: &Actor, id: &str) -> Result<CrisisView, AppError> {
    let id = parse_crisis_id(id)?;
    match st.store.crisis_read(&id).await? {
        Some((r, facts)) if a.may_see_commune(&r.commune) => {
            Ok(for_actor(st, a, views::crisis(st, r, facts, st.clock.now())?))
        }
        _ => Err(AppError::crisis_not_found()),
    }
}

/// What the actor is told besides the crisis: ops who may activate it hear that the tenant's
/// last preflight failed (activation stays possible).
pub fn for_actor(st: &Services, a: &Actor, mut view: CrisisView) -> CrisisView {
    view.m365_warning = m365_warning(st, a, &view);
    view
}

/// The warning [`for_actor`] adds, for a page that renders the view itself.
pub fn m365_warning(st: &Services, a: &Actor, view: &CrisisView) -> Option<String> {
    // An exercise is provisioned on the exercise target, not the tenant the preflight checks.
    let may_activate = a.may(repli_core::Permission::OperateCrisis)
        && view.exercise.is_none()
        && view.next_actions.contains(&CrisisAction::Activate);
    may_activate.then(|| crate::preflight::activation_warning(st)).flatten()
}

/// An instant a person typed: not more than a few minutes in the future.
pub fn past_instant(field: &str, t: Timestamp, now: Timestamp) -> Result<Timestamp, AppError> {
    let slack = jiff::SignedDuration::from_mins(5);
    if now.checked_add(slack).is_ok_and(|limit| t > limit) {
        return Err(AppError::Validation(vec![FieldError::new(field, "cet instant est dans le futur")]));
    }
    Ok(t)
}

/// Checks a request as recording it would (its due instant from the SLA calendar included),
/// without recording anything: the web form shows every error at once beside its field.
pub fn check_request(st: &Services, req: &CrisisRequest) -> Result<(), AppError> {
    let now = st.clock.now();
    validate(req, due_at(st, now)?, now).map(|_| ())
}

/// Checks and normalises a request; every invalid field is reported at once.
pub fn validate(req: &CrisisRequest, due_at: Timestamp, now: Timestamp) -> Result<NewCrisis, AppError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let mut keep = |r: Result<String, FieldError>| match r {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let contact_name = keep(text::name("contact.name", &req.contact.name));
    let contact_phone = keep(text::phone("contact.phone", &req.contact.phone));
    let contact_email = req.contact.email.as_deref().map(|e| keep(text::email("contact.email", e)));
    let delivery_address = req
        .delivery_address
        .as_deref()
        .map(|d| keep(text::free_text("delivery_address", d, text::SHORT_TEXT_MAX, true)));
    let notes = keep(text::free_text("notes", req.notes.as_deref().unwrap_or(""), text::NOTE_MAX, false));
    if !(1..=MAX_AGENTS).contains(&req.agents) {
        errors.push(FieldError::new("agents", format!("entre 1 et {MAX_AGENTS} agents")));
    }
    let aware_at = match req.aware_at.map(|t| past_instant("aware_at", t, now)) {
        Some(Err(AppError::Validation(mut e))) => {
            errors.append(&mut e);
            None
        }
        Some(Ok(t)) => Some(t),
        _ => None,
    };
    let needs = repli_core::inventory::kit_needs(req.needs, req.agents).map_err(|e| errors.push(e)).ok();
    match (contact_name, contact_phone, contact_email, delivery_address, notes, needs) {
        (Some(contact_name), Some(contact_phone), email, address, Some(notes), Some(needs)) if errors.is_empty() => {
            Ok(NewCrisis {
                commune: req.commune.clone(),
                contact_name,
                contact_phone,
                contact_email: email.flatten(),
                agents: req.agents,
                delivery_address: address.flatten(),
                notes,
                due_at,
                aware_at,
                personal_data: req.personal_data,
                needs,
            })
        }
        _ => Err(AppError::Validation(errors)),
    }
}

/// The due instant of a crisis requested at `now`.
pub fn due_at(st: &Services, now: Timestamp) -> Result<Timestamp, AppError> {
    st.calendar
        .add_hours(now, st.config.sla.business_hours)
        .map_err(|e| AppError::Internal(format!("due instant: {e}")))
}

/// Validates and records a request (the API's and the web form's one path); true when created
/// (false: the same idempotency key replayed).
pub async fn request(
    st: &Services,
    a: &Actor,
    req: &CrisisRequest,
    key: Option<&str>,
) -> Result<(CrisisRecord, bool), AppError> {
    if !a.may_see_commune(&req.commune) {
        return Err(AppError::Forbidden("Vous ne pouvez demander le kit que pour votre commune."));
    }
    let now = st.clock.now();
    let new = validate(req, due_at(st, now)?, now)?;
    // Every failed encoding would share one hash, and so one idempotency record: an error.
    let body = serde_json::to_vec(req).map_err(|e| AppError::Internal(format!("request as JSON: {e}")))?;
    let request_hash = hex::encode(Sha256::digest(body));
    let idem = key.map(|k| (k, request_hash.as_str()));
    let (rec, created) = st.store.create_crisis(&new, a, idem, now).await?;
    tracing::info!(crisis = %rec.id, created, "crisis requested");
    if created {
        tell(st, &rec.id).await;
    }
    Ok((rec, created))
}

/// Checks an `Idempotency-Key` value.
pub fn idempotency_key(raw: Option<&[u8]>) -> Result<Option<String>, AppError> {
    let Some(v) = raw else { return Ok(None) };
    let bad = || {
        AppError::problem(
            ProblemCode::InvalidIdempotencyKey,
            format!(
                "En-tête {} invalide : 1 à {MAX_IDEMPOTENCY_KEY} caractères ASCII visibles.",
                repli_proto::IDEMPOTENCY_HEADER
            ),
        )
    };
    let s = std::str::from_utf8(v).map_err(|_| bad())?;
    if s.is_empty() || s.len() > MAX_IDEMPOTENCY_KEY || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// An action by its wire name.
pub fn parse_action(s: &str) -> Result<CrisisAction, AppError> {
    CrisisAction::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| {
        AppError::problem(
            ProblemCode::UnknownAction,
            format!("Action inconnue. Actions possibles : {}.", CrisisAction::ALL.map(CrisisAction::as_str).join(", ")),
        )
    })
}

/// A transition, and the work it starts: the activation playbook reserves the kit and
/// provisions it; the hand-back playbook winds it down. A run already started is not started twice.
pub async fn apply(
    app: &App,
    a: &Actor,
    id: &str,
    action: CrisisAction,
    body: ActionRequest,
) -> Result<CrisisView, AppError> {
    let st = app.services();
    let r = visible_crisis(st, a, id).await?;
    let reason = match body.reason.as_deref() {
        Some(text) => {
            Some(text::free_text("reason", text, text::NOTE_MAX, false).map_err(|e| AppError::Validation(vec![e]))?)
        }
        None => None,
    };
    if action == CrisisAction::Close
        && let Some(run) = st
            .store
            .runs_of(&r.id)
            .await?
            .into_iter()
            .find(|run| run.playbook == PlaybookName::Handback && run.state == RunState::Running)
    {
        let left = st.store.steps(run.id).await?.iter().filter(|s| !s.state.is_done()).count();
        return Err(AppError::problem(
            ProblemCode::HandbackInProgress,
            format!(
                "La restitution suit son déroulé ({left} étape(s) restante(s), voir la page Tâches) : sa dernière étape clora la crise."
            ),
        ));
    }
    // The steps of the run this transition may start, prepared before its transaction and
    // written in it: a crash cannot leave the new state without its run.
    let mut work = Vec::new();
    for playbook in PlaybookName::ALL {
        if playbook.could_start(action) {
            let steps = app.engine.new_steps(&r.id, playbook).await.map_err(|e| AppError::Internal(e.to_string()))?;
            work.push((playbook, steps));
        }
    }
    let (rec, run) =
        st.store.transition_starting(&r.id, action, reason.as_deref(), By::User(a), st.clock.now(), &work).await?;
    if let Some(run) = run {
        tracing::info!(crisis = %rec.id, run, "run started with its transition");
    }
    if run.is_some() || matches!(action, CrisisAction::Cancel | CrisisAction::Reject) {
        st.wake_engine();
    }
    tracing::info!(crisis = %rec.id, action = %action, state = %rec.state, "crisis transition");
    tell(st, &rec.id).await;
    view(st, rec).await
}

pub async fn suspend_sla(st: &Services, a: &Actor, id: &str, reason: &str) -> Result<CrisisView, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let reason =
        text::free_text("reason", reason, text::SHORT_TEXT_MAX, true).map_err(|e| AppError::Validation(vec![e]))?;
    st.store.suspend_sla(&r.id, &reason, a, st.clock.now()).await?;
    get(st, a, id).await
}

pub async fn resume_sla(st: &Services, a: &Actor, id: &str) -> Result<CrisisView, AppError> {
    let r = visible_crisis(st, a, id).await?;
    st.store.resume_sla(&r.id, a, st.clock.now()).await?;
    get(st, a, id).await
}

pub async fn set_legal_facts(
    st: &Services,
    a: &Actor,
    id: &str,
    body: LegalFactsRequest,
) -> Result<CrisisView, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let now = st.clock.now();
    if body.aware_at.is_none() && body.personal_data.is_none() {
        return Err(AppError::Validation(vec![FieldError::new("aware_at", "indiquez aware_at et/ou personal_data")]));
    }
    let aware = body.aware_at.map(|t| past_instant("aware_at", t, now)).transpose()?;
    st.store.set_legal_facts(&r.id, aware, body.personal_data, a, now).await?;
    get(st, a, id).await
}

pub async fn legal_done(
    st: &Services,
    a: &Actor,
    id: &str,
    kind: &str,
    at: Option<Timestamp>,
) -> Result<CrisisView, AppError> {
    let kind = LegalKind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or_else(|| {
        AppError::problem(ProblemCode::UnknownLegalClock, "Échéance légale inconnue : cnil ou complaint.")
    })?;
    let r = visible_crisis(st, a, id).await?;
    let now = st.clock.now();
    let at = past_instant("at", at.unwrap_or(now), now)?;
    st.store.mark_legal_done(&r.id, kind, at, a, now).await?;
    get(st, a, id).await
}

/// The SLA compliance report (API and auditor page), most recent first.
pub async fn sla_report(st: &Services) -> Result<Vec<SlaReportLine>, AppError> {
    let now = st.clock.now();
    // Exercises never count in the compliance report.
    let records = st.store.crises(&CrisisFilter { exercise: Some(false), ..Default::default() }).await?;
    let mut facts = st.store.crisis_facts_all().await?;
    let mut lines = Vec::new();
    for r in records {
        // Read in a second statement: a crisis created in between has no facts yet, which is
        // what empty facts say (no suspension, need or step recorded).
        let f = facts.remove(r.id.as_str()).unwrap_or_default();
        let v = views::sla_of(st, &r, &f, now)?;
        let stop = r.ready_at.unwrap_or(now);
        let late = st.calendar.business_time_between(v.due, stop).map_err(|e| AppError::Internal(e.to_string()))?;
        lines.push(SlaReportLine {
            started_at: r.requested_at,
            suspensions: f.suspensions.iter().map(views::suspension).collect(),
            suspended_seconds: v.suspended.as_secs(),
            due_at: v.due,
            ready_at: r.ready_at,
            status: v.status,
            late_seconds: late.as_secs(),
            crisis: r.id,
            commune: r.commune,
            commune_name: r.commune_name,
            state: r.state,
        });
    }
    lines.reverse();
    Ok(lines)
}

/// The notifications queue, most recent first.
pub async fn notifications(st: &Services) -> Result<Vec<NotificationView>, AppError> {
    Ok(st.store.notifications(500).await?.into_iter().map(notification_view).collect())
}

/// A crisis's outbox, most recent first: every message and recipient with its delivery.
pub async fn crisis_notifications(st: &Services, r: &CrisisRecord) -> Result<Vec<NotificationView>, AppError> {
    Ok(st.store.crisis_notifications(&r.id, 200).await?.into_iter().map(notification_view).collect())
}

fn notification_view(n: repli_store::Notification) -> NotificationView {
    {
        NotificationView {
            id: n.id,
            key: n.key,
            channel: n.channel,
            crisis: n.crisis,
            recipient: n.recipient,
            audience: n.audience,
            subject: n.subject,
            body: n.body,
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            created_at: n.created_at,
            sent_at: n.sent_at,
        }
    }
}

/// Verifies the whole audit chain, its signed checkpoints and its signed head against the keys
/// this host trusts ([`Services::audit_pins`]), never against a key named in the log.
pub async fn audit_verify(st: &Services) -> Result<AuditVerifyView, AppError> {
    let public_key = st.store.checkpoint_public_key();
    let pins = st.audit_pins();
    let trusted_keys = pins.iter().map(ToString::to_string).collect();
    let head = st.store.signed_head().await?;
    Ok(match st.store.verify_audit_trusted(&pins, false).await {
        Ok(s) => AuditVerifyView {
            verified: true,
            entries: s.entries,
            last_seq: s.last_seq,
            last_hash: s.last_hash,
            last_checkpoint: s.last_checkpoint,
            public_key,
            trusted_keys,
            head,
            error: None,
            first_bad_seq: None,
            tamper: None,
        },
        Err(StoreError::Chain(e)) => {
            tracing::error!(error = %e, "audit chain does not verify");
            AuditVerifyView {
                verified: false,
                entries: 0,
                last_seq: 0,
                last_hash: String::new(),
                last_checkpoint: None,
                public_key,
                trusted_keys,
                head,
                error: Some(e.to_string()),
                first_bad_seq: Some(e.seq()),
                tamper: e.kind(),
            }
        }
        Err(e) => return Err(e.into()),
    })
}

/// One page of the audit journal.
pub async fn audit_entries(st: &Services, q: AuditQuery) -> Result<AuditPage, AppError> {
    let bad = [&q.crisis, &q.commune, &q.actor, &q.action]
        .into_iter()
        .flatten()
        .any(|v| v.chars().count() > MAX_FILTER || v.chars().any(char::is_control));
    if bad {
        return Err(AppError::problem(
            ProblemCode::InvalidQuery,
            format!("Filtre invalide : {MAX_FILTER} caractères au plus, sans caractère de contrôle."),
        ));
    }
    // The value given is not repeated: a problem document is read as the server's word, and
    // the caller's text has no place in it.
    let action = q.action.as_deref().map(str::parse::<repli_core::audit::ActionFilter>).transpose().map_err(|_| {
        AppError::problem(
            ProblemCode::InvalidQuery,
            "Action inconnue du journal. Donnez une action (crisis.activate) ou un préfixe terminé par un point \
             (crisis.).",
        )
    })?;
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let entries = st
        .store
        .audit_entries(&AuditFilter {
            crisis: q.crisis,
            commune: q.commune,
            actor: q.actor,
            action,
            from: q.from,
            to: q.to,
            after_seq: q.after.unwrap_or(0).max(0),
            limit,
        })
        .await?;
    let next_after = if entries.len() == limit as usize { entries.last().map(|e| e.seq) } else { None };
    Ok(AuditPage { entries, next_after })
}

/// Every entry matching `q` (from `q.after` on), for an export: read page by page.
pub async fn audit_export(st: &Services, mut q: AuditQuery) -> Result<Vec<repli_core::AuditEntry>, AppError> {
    let mut all = Vec::new();
    q.limit = Some(5000);
    loop {
        let page = audit_entries(st, q.clone()).await?;
        all.extend(page.entries);
        match page.next_after {
            Some(after) => q.after = Some(after),
            None => return Ok(all),
        }
    }
}

/// The signed head of the audit log for an auditor to pin: a checkpoint is signed at the last
/// entry first if entries were appended since the last one.
pub async fn audit_head(st: &Services) -> Result<repli_core::Checkpoint, AppError> {
    st.store.checkpoint_now(st.clock.now()).await?;
    st.store.latest_checkpoint().await?.ok_or_else(|| {
        AppError::problem(
            ProblemCode::NoCheckpoint,
            "Aucun point de contrôle signé : le journal est vide ou la signature des points de contrôle n'est pas configurée.",
        )
    })
}

pub async fn audit_bundle(st: &Services) -> Result<AuditBundle, AppError> {
    Ok(st.store.audit_bundle().await?)
}

pub fn log_view(e: repli_store::LogEntry) -> LogEntryView {
    LogEntryView {
        seq: e.seq,
        at: e.at,
        kind: e.kind,
        type_label: e.kind.label_fr().to_owned(),
        author: e.author,
        role: e.role,
        text: e.text,
    }
}

/// The main courante of a crisis.
pub async fn log(st: &Services, a: &Actor, id: &str) -> Result<Vec<LogEntryView>, AppError> {
    let r = visible_crisis(st, a, id).await?;
    Ok(st.store.log_entries(&r.id).await?.into_iter().map(log_view).collect())
}

/// Adds an entry to the main courante.
pub async fn add_log(st: &Services, a: &Actor, id: &str, kind: &str, entry: &str) -> Result<LogEntryView, AppError> {
    let r = visible_crisis(st, a, id).await?;
    let mut errors = Vec::new();
    let kind = match kind.parse::<LogKind>() {
        // Animators inject by hand too, in an exercise only.
        Ok(LogKind::Inject) if r.exercise.is_none() => {
            errors.push(FieldError::new("type", "un inject n'existe que dans un exercice"));
            None
        }
        Ok(k) => Some(k),
        Err(e) => {
            errors.push(FieldError::new("type", e.to_string()));
            None
        }
    };
    let entry = text::free_text("text", entry, text::NOTE_MAX, true).map_err(|e| errors.push(e)).ok();
    let (Some(kind), Some(entry)) = (kind, entry) else {
        return Err(AppError::Validation(errors));
    };
    let now = st.clock.now();
    let e = st.store.add_log_entry(&r.id, kind, &entry, a, now).await?;
    if a.role == Role::Dgs {
        match crate::notify::plan::dgs_wrote(st, &r, e.seq, &entry, now).await {
            Ok(_) => {
                crate::notify::deliver_soon(st);
            }
            // Written in the main courante either way; ops read it there.
            Err(e) => tracing::warn!(crisis = %r.id, error = %e, "ops not told of the DGS's message"),
        }
    }
    Ok(log_view(e))
}

/// After a change to a crisis (made by a person, or by the engine: a transition, a step's
/// outcome): queues what the notification plan says of it, the SLA forecast included, and
/// sends it in a task of its own. The change is recorded whatever happens here; a failure to
/// queue is retried by the maintenance round, which derives the same moments from the database.
pub(crate) async fn tell(st: &Services, id: &CrisisId) {
    let now = st.clock.now();
    let queued = match st.store.crisis_read(id).await {
        Ok(Some((r, facts))) => {
            crate::notify::plan::queue_crisis(st, &r, r.state.is_open().then_some(&facts), now).await
        }
        Ok(None) => Ok(0),
        Err(e) => Err(e),
    };
    match queued {
        Ok(0) => {}
        Ok(_) => {
            crate::notify::deliver_soon(st);
        }
        Err(e) => tracing::warn!(crisis = %id, error = %e, "notifications left to the maintenance round"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repli_core::{AuthMethod, CrisisState};

    fn actor(role: Role) -> Actor {
        let commune = (role == Role::Dgs).then(|| InseeCode::parse("13005").unwrap());
        Actor { user_id: 1, name: "x".into(), role, commune, auth: AuthMethod::Password }
    }

    fn of(role: Role, state: CrisisState) -> Abilities {
        let next: Vec<CrisisAction> = CrisisAction::ALL.into_iter().filter(|a| a.apply(state).is_ok()).collect();
        Abilities::of(&actor(role), state, &next)
    }

    #[test]
    fn abilities_cross_the_state_with_the_role() {
        let requested = of(Role::Ops, CrisisState::Requested);
        assert!(requested.activate && requested.reject && requested.suspend_sla && requested.operate);
        assert!(!requested.deliver && !requested.scan);
        // A DGS writes their main courante and names agents, and operates nothing.
        let dgs = of(Role::Dgs, CrisisState::Provisioning);
        assert!(dgs.write_log && dgs.name_agents && dgs.legal);
        assert!(!dgs.activate && !dgs.operate && !dgs.suspend_sla && !dgs.scan);
        // Once ready, the SLA clock has stopped: nothing to suspend.
        assert!(!of(Role::Ops, CrisisState::Ready).suspend_sla);
        // During the hand-back ops scan items back; the agents list is closed.
        let handback = of(Role::Ops, CrisisState::Handback);
        assert!(handback.scan && !handback.name_agents);
        // A closed crisis takes nothing but reading.
        let closed = of(Role::Ops, CrisisState::Closed);
        assert_eq!(closed, Abilities { read_retex: true, operate: true, ..Abilities::default() });
        // Auditors read.
        let auditor = of(Role::Auditor, CrisisState::Provisioning);
        assert_eq!(auditor, Abilities { read_retex: true, ..Abilities::default() });
    }
}
