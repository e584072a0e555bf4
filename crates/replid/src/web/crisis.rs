//! The crisis page and the forms on it: actions, main courante, agents, manual steps, the
//! hand-back scan, loans, the SLA clock and the legal clocks. Each form calls one operation of
//! `repli_app` and sends the person back to the page with a French message beside the form.

use axum::Extension;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::inventory::{LoanLine, LoanTo};
use repli_app::records::CrisisRecord;
use repli_app::{AppError, crises, inventory, steps};
use repli_core::{Actor, CrisisAction, CrisisState, StepState, fr, text};
use repli_proto::api::LegalFactsRequest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::flash::{Flash, Flashes, Section};
use crate::web::view::{CsrfForm, Layout, NoFields, page};
use crate::web::{
    SessionCsrf, SlaBadge, agents_from_text, api_error_page, back, back_field, channel_fr, error_page, form_crisis,
    local_instant, notification_status, notification_to, sla_badge, when,
};

/// The crisis page (`crise.hbs`): every key the template reads, beside the [`Layout`].
#[derive(Debug, Serialize)]
struct CrisisPageModel {
    c: Summary,
    /// « signée le … (délibération …) », none while the commune has not signed.
    convention: Option<String>,
    can_activate: bool,
    m365_warning: Option<String>,
    can_deliver: bool,
    can_handback: bool,
    can_scan: bool,
    can_reject: bool,
    can_cancel: bool,
    can_log: bool,
    can_agents: bool,
    agents: Vec<Agent>,
    agents_gap: Option<AgentsGap>,
    runs: Vec<Run>,
    documents: Vec<Document>,
    /// The data hand-back's archive (ops and the commune's DGS), once complete.
    archive: Option<Archive>,
    loans: Vec<Loan>,
    /// The main courante, newest first.
    log: Vec<LogLine>,
    /// The crisis's outbox, newest first (the DGS: what was sent to them).
    outbox: Vec<Sent>,
    can_retex: bool,
    /// The DNS check's page (ops), once a backup domain exists.
    dns_check: Option<String>,
    lend: LendSection,
    kit: Kit,
    delai: SlaClock,
    legal_form: LegalSection,
    errors: FieldErrors,
    /// What the last scan at the hand-back did, beside the scan field.
    scan_done: Option<String>,
    /// Steps are running: the page offers a refresh link (never an automatic refresh).
    live: bool,
    read_at: String,
}

/// The crisis itself: state, 48-hour clock, contact, legal clocks, equipment.
#[derive(Debug, Serialize)]
struct Summary {
    id: String,
    commune: String,
    state: String,
    ready: bool,
    /// The SLA status badge (class and words), shared with the other pages.
    sla: SlaBadge,
    due: String,
    left: String,
    used: u32,
    elapsed: String,
    hours: u32,
    contact: String,
    phone: String,
    agents: u32,
    named: u32,
    delivery: Option<String>,
    notes: String,
    legal: Vec<LegalClock>,
    /// Something is reserved (after activation): the needs show allocations and shortages.
    reserving: bool,
    needs: Vec<Need>,
}

#[derive(Debug, Serialize)]
struct LegalClock {
    label: String,
    deadline: String,
    status: String,
}

#[derive(Debug, Serialize)]
struct Need {
    label: String,
    wanted: i64,
    allocated: i64,
    shortage: i64,
}

#[derive(Debug, Serialize)]
struct Agent {
    name: String,
    service: String,
}

/// Fewer agents named than declared: what the page asks for.
#[derive(Debug, Serialize)]
struct AgentsGap {
    message: String,
    named: u32,
    can_accept: bool,
}

/// A playbook run and its steps.
#[derive(Debug, Serialize)]
struct Run {
    name: &'static str,
    done: usize,
    total: usize,
    percent: usize,
    steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
struct Step {
    id: String,
    title: String,
    state: String,
    class: &'static str,
    error: Option<String>,
    /// A manual step waiting for ops: instructions, checklist and the confirm form.
    waiting: bool,
    retry: bool,
    skip: bool,
    instructions: Option<String>,
    checklist: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Document {
    file: &'static str,
    url: String,
}

/// The archive of the commune's mail and files.
#[derive(Debug, Serialize)]
struct Archive {
    url: String,
    items: usize,
    exported: usize,
    size: String,
    manifest_sha256: String,
}

#[derive(Debug, Serialize)]
struct Loan {
    tag: String,
    serial: String,
    kind: &'static str,
    agent: Option<String>,
    due: String,
    returned: Option<String>,
    /// « le … : motif » once written off (never shown as a return).
    written_off: Option<String>,
    overdue: bool,
    /// The write-off confirmation page, for an item still out (ops).
    write_off: Option<String>,
}

#[derive(Debug, Serialize)]
struct LogLine {
    at: String,
    who: String,
    kind: &'static str,
    text: String,
}

/// One message of the crisis's outbox and its delivery to one recipient.
#[derive(Debug, Serialize)]
struct Sent {
    at: String,
    /// « commune », « astreinte », « auditeurs ».
    audience: &'static str,
    channel: &'static str,
    to: String,
    subject: String,
    status: &'static str,
    class: &'static str,
    attempts: i64,
    error: Option<String>,
}

/// The SLA clock's suspensions and its form.
#[derive(Debug, Serialize)]
struct SlaClock {
    suspended: Option<Suspension>,
    past: Vec<PastSuspension>,
    can: bool,
}

#[derive(Debug, Serialize)]
struct Suspension {
    since: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct PastSuspension {
    from: String,
    to: String,
    reason: String,
}

/// The legal clocks' forms: the facts, and each obligation still open.
#[derive(Debug, Serialize)]
struct LegalSection {
    can: bool,
    open: Vec<LegalOpen>,
}

#[derive(Debug, Serialize)]
struct LegalOpen {
    kind: &'static str,
    label: String,
}

/// The error shown beside each form of [`FORM_SECTIONS`] (`?erreur=…&champ=…`).
#[derive(Debug, Default, Serialize)]
struct FieldErrors {
    prets: Option<String>,
    delai: Option<String>,
    echeances: Option<String>,
    retour: Option<String>,
}

/// The loan form.
#[derive(Debug, Serialize)]
struct LendSection {
    items: Vec<LendItem>,
    count: usize,
}

#[derive(Debug, Serialize)]
struct LendItem {
    serial: String,
    tag: String,
    kind: &'static str,
    model: String,
    options: Vec<LendOption>,
}

#[derive(Debug, Serialize)]
struct LendOption {
    value: String,
    label: String,
    selected: bool,
}

/// What the kit gives people.
#[derive(Debug, Serialize)]
struct Kit {
    workspace: Option<KitWorkspace>,
    meeting: Option<String>,
    plan: Vec<KitAssignment>,
    isolation: Option<KitIsolation>,
}

#[derive(Debug, Serialize)]
struct KitWorkspace {
    url: String,
    mail: String,
    channels: String,
}

#[derive(Debug, Serialize)]
struct KitAssignment {
    agent: String,
    service: String,
    serial: String,
}

#[derive(Debug, Serialize)]
struct KitIsolation {
    ok: bool,
    checks: Vec<KitCheck>,
}

#[derive(Debug, Serialize)]
struct KitCheck {
    check: String,
    ok: bool,
    detail: String,
}

pub async fn crisis(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    flashes: Flashes,
) -> Response {
    let crises::CrisisPage {
        view,
        convention,
        steps,
        loans,
        log,
        agents,
        lendable,
        outputs,
        abilities: can,
        outbox,
        archive,
    } = match crises::page(&st, &a, &id).await {
        Ok(p) => p,
        Err(e) => return api_error_page(&st, &e),
    };
    let crisis_id = view.id.to_string();
    let is_ops = can.operate;
    let runs = steps
        .runs
        .iter()
        .map(|run| {
            let total = run.steps.len();
            let done = run.steps.iter().filter(|s| s.state.is_done()).count();
            Run {
                name: if run.playbook == repli_core::run::PlaybookName::Activation {
                    "Préparation du kit"
                } else {
                    "Restitution"
                },
                done,
                total,
                percent: (done * 100).checked_div(total).unwrap_or(0),
                steps: run
                    .steps
                    .iter()
                    .map(|s| Step {
                        id: s.step.clone(),
                        title: s.title.clone(),
                        state: s.state_label.clone(),
                        class: s.state.as_str(),
                        error: s.last_error.clone(),
                        waiting: is_ops && s.state == StepState::WaitingManual,
                        retry: is_ops
                            && repli_core::playbook::StepKind::parse(&s.kind)
                                .is_some_and(|k| s.state.may_be_retried(k)),
                        skip: is_ops && run.state.takes_step_operations() && s.state.may_be_skipped(),
                        instructions: s.instructions.clone(),
                        checklist: s.checklist.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    let documents = repli_docs::DOCUMENTS
        .iter()
        .filter(|(_, f)| is_ops || *f != repli_docs::CREDENTIAL_SHEETS)
        .map(|(_, f)| {
            let url = if *f == repli_docs::CREDENTIAL_SHEETS {
                format!("/crises/{crisis_id}/fiches-identifiants")
            } else {
                format!("/api/v1/crises/{crisis_id}/documents/{f}")
            };
            Document { file: f, url }
        })
        .collect();
    // Before activation nothing is reserved yet: no shortage to announce.
    let reserving = view.state != CrisisState::Requested;
    let c = Summary {
        id: crisis_id.clone(),
        commune: view.commune_name.clone(),
        state: view.state_label.clone(),
        ready: matches!(view.state, CrisisState::Ready | CrisisState::Delivered),
        sla: sla_badge(view.sla.status),
        due: when(&st, Some(view.sla.due_at)),
        left: fr::duration(jiff::SignedDuration::from_secs(view.sla.remaining_seconds)),
        used: view.sla.used_percent,
        elapsed: fr::duration(jiff::SignedDuration::from_secs(view.sla.elapsed_seconds)),
        hours: view.sla.business_hours,
        contact: view.contact.name.clone(),
        phone: fr::phone(&view.contact.phone),
        agents: view.agents,
        named: view.agents_named,
        delivery: view.delivery_address.clone(),
        notes: view.notes.clone(),
        legal: view
            .legal
            .iter()
            .map(|l| LegalClock {
                label: l.label.clone(),
                deadline: when(&st, Some(l.deadline)),
                status: l.status.label_fr(jiff::SignedDuration::from_secs(l.remaining_seconds)),
            })
            .collect(),
        reserving,
        needs: view
            .needs
            .iter()
            .map(|n| Need {
                label: n.label.clone(),
                wanted: n.wanted,
                allocated: n.allocated,
                shortage: if reserving { n.shortage } else { 0 },
            })
            .collect(),
    };
    let agents_gap = repli_core::run::AgentsGap::of(view.agents_named, view.agents, view.agents_accepted)
        .filter(|_| can.name_agents)
        .map(|g| AgentsGap { message: g.message_fr(), named: g.named, can_accept: is_ops && g.named > 0 });
    let loans = loans
        .iter()
        .map(|l| Loan {
            tag: l.asset_tag.clone(),
            serial: l.serial.clone(),
            kind: l.kind.label_fr(),
            agent: l.agent.as_ref().map(|a| a.name.clone()),
            due: when(&st, Some(l.due_back)),
            returned: l.returned_at.map(|t| when(&st, Some(t))),
            written_off: l
                .written_off_at
                .map(|t| format!("{} : {}", when(&st, Some(t)), l.write_off_reason.as_deref().unwrap_or_default())),
            overdue: l.overdue,
            write_off: (is_ops && l.is_open()).then(|| {
                format!(
                    "/crises/{crisis_id}/pertes/{}",
                    form_urlencoded::byte_serialize(l.serial.as_bytes()).collect::<String>()
                )
            }),
        })
        .collect();
    let log = log
        .iter()
        .rev()
        .map(|e| LogLine {
            at: when(&st, Some(e.at)),
            who: e.author.clone(),
            kind: e.kind.label_fr(),
            text: e.text.clone(),
        })
        .collect();
    let outbox = outbox
        .iter()
        .map(|n| {
            let (status, class) = notification_status(n);
            Sent {
                at: when(&st, Some(n.created_at)),
                audience: match n.audience.as_str() {
                    "dgs" => "commune",
                    "auditors" => "auditeurs",
                    _ => "astreinte",
                },
                channel: channel_fr(&n.channel),
                to: notification_to(n),
                subject: n.subject.clone(),
                status,
                class,
                attempts: n.attempts,
                // The channel's own words (English, technical) are for ops and auditors.
                error: if a.role == repli_core::Role::Dgs { None } else { n.last_error.clone() },
            }
        })
        .collect();
    let suspended = view.sla.suspensions.iter().find(|s| s.ended_at.is_none());
    let delai = SlaClock {
        suspended: suspended.map(|s| Suspension { since: when(&st, Some(s.started_at)), reason: s.reason.clone() }),
        past: view
            .sla
            .suspensions
            .iter()
            .filter(|s| s.ended_at.is_some())
            .map(|s| PastSuspension {
                from: when(&st, Some(s.started_at)),
                to: when(&st, s.ended_at),
                reason: s.reason.clone(),
            })
            .collect(),
        // The clock runs until the kit is ready: the store's rule for suspending it.
        can: can.suspend_sla,
    };
    let legal_form = LegalSection {
        can: can.legal,
        open: view
            .legal
            .iter()
            .filter(|l| l.done_at.is_none())
            .map(|l| LegalOpen { kind: l.kind.as_str(), label: l.label.clone() })
            .collect(),
    };
    // An error about one form is shown next to it; any other at the top of the page, as is one
    // whose form the page no longer shows (the state moved on since the form was posted).
    let lend = lend_form(&lendable, &agents);
    let flashes = flashes.placed(|s| match s {
        Section::Prets => lend.count > 0,
        Section::Delai => delai.can,
        Section::Echeances => legal_form.can,
        Section::Retour => can.scan,
    });
    let errors = FieldErrors {
        prets: flashes.beside(Section::Prets),
        delai: flashes.beside(Section::Delai),
        echeances: flashes.beside(Section::Echeances),
        retour: flashes.beside(Section::Retour),
    };
    let model = CrisisPageModel {
        c,
        convention: convention
            .map(|c| format!("signée le {} (délibération {})", fr::date(c.signed_on), c.deliberation_ref)),
        can_activate: can.activate,
        m365_warning: crises::m365_warning(&st, &a, &view),
        can_deliver: can.deliver,
        can_handback: can.start_handback,
        can_scan: can.scan,
        can_reject: can.reject,
        can_cancel: can.cancel,
        can_log: can.write_log,
        can_agents: can.name_agents,
        agents: agents.iter().map(|g| Agent { name: g.name.clone(), service: g.service.clone() }).collect(),
        agents_gap,
        runs,
        documents,
        archive: archive.map(|x| Archive {
            url: format!("/api/v1/crises/{crisis_id}/handback.zip"),
            items: x.items,
            exported: x.exported,
            size: format!("{:.1} Mo", x.bytes as f64 / 1_000_000.0).replace('.', ","),
            manifest_sha256: x.manifest_sha256,
        }),
        loans,
        log,
        outbox,
        can_retex: can.read_retex,
        // Once activated a crisis may have a zone: the page says when there is nothing to check.
        dns_check: (is_ops && !matches!(view.state, CrisisState::Requested | CrisisState::Rejected))
            .then(|| format!("/crises/{crisis_id}/dns")),
        lend,
        kit: kit_links(&outputs, is_ops),
        delai,
        legal_form,
        errors,
        scan_done: flashes.done_beside(Section::Retour),
        // No automatic refresh: it would wipe what someone is typing in the page's forms. The
        // page says when it was read and offers a refresh link while steps are running.
        live: matches!(view.state, CrisisState::Activated | CrisisState::Provisioning | CrisisState::Handback),
        read_at: when(&st, Some(st.clock.now())),
    };
    let layout =
        Layout::signed_in(&a, &csrf, format!("Crise {crisis_id}")).exercise(view.exercise.as_ref()).flashes(&flashes);
    page(&st, StatusCode::OK, "crise", &layout, &model)
}

/// The loan form: each item ready to lend with its choices (an agent, the commune, not now),
/// the laptop plan's agent chosen in advance.
fn lend_form(items: &[inventory::Lendable], agents: &[repli_proto::api::AgentView]) -> LendSection {
    let rows = items
        .iter()
        .map(|l| {
            let personal = l.item.item.kind.is_personal();
            let mut options = vec![LendOption {
                value: String::new(),
                label: "— pas maintenant —".into(),
                selected: l.proposed.is_none(),
            }];
            if !personal {
                options.push(LendOption { value: "commune".into(), label: "la commune".into(), selected: false });
            }
            options.extend(agents.iter().map(|g| LendOption {
                value: g.id.to_string(),
                label: format!("{} ({})", g.name, g.service),
                selected: l.proposed == Some(g.id),
            }));
            LendItem {
                serial: l.item.item.serial.clone(),
                tag: l.item.item.asset_tag.clone(),
                kind: l.item.item.kind.label_fr(),
                model: l.item.item.model.clone(),
                options,
            }
        })
        .collect();
    LendSection { items: rows, count: items.len() }
}

/// What the kit gives people: the collaborative space and the visio (short labels, the long
/// address as the link's target), which laptop goes to whom, and for ops the isolation checks.
fn kit_links(o: &repli_core::run::Outputs, is_ops: bool) -> Kit {
    Kit {
        workspace: o.workspace().map(|w| KitWorkspace {
            url: w.web_url.clone(),
            mail: w.mail.clone(),
            channels: w.channels.join(", "),
        }),
        meeting: o.meeting().map(|m| m.join_url.clone()),
        plan: o
            .assigned()
            .map(|p| {
                p.assignments
                    .iter()
                    .map(|x| KitAssignment {
                        agent: x.agent.clone(),
                        service: x.service.clone(),
                        serial: x.serial.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        isolation: o.isolation().filter(|_| is_ops).map(|r| KitIsolation {
            ok: r.ok,
            checks: r
                .checks
                .iter()
                .map(|c| KitCheck { check: c.check.clone(), ok: c.ok, detail: c.detail.clone() })
                .collect(),
        }),
    }
}

/// A form with an action and an optional reason: the crisis transitions, the SLA clock.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    motif: String,
}

impl ActionForm {
    /// The reason typed, trimmed.
    fn reason(&self) -> String {
        self.motif.trim().to_owned()
    }
}

/// The crisis named in the path, as the caller may see it; a French error page otherwise.
async fn crisis_of(st: &AppState, a: &Actor, id: &str) -> Result<CrisisRecord, Response> {
    crises::visible_crisis(st, a, id).await.map_err(|e| api_error_page(st, &e))
}

pub async fn crisis_action(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ActionForm>,
) -> Response {
    let action = match form.action.as_str() {
        "activate" => CrisisAction::Activate,
        "deliver" => CrisisAction::Deliver,
        "reject" => CrisisAction::Reject,
        _ => return error_page(&st, StatusCode::BAD_REQUEST, "Action inconnue", "Action inconnue."),
    };
    act(&st, &a, &id, action, &form).await
}

async fn act(st: &AppState, a: &Actor, id: &str, action: CrisisAction, form: &ActionForm) -> Response {
    let reason = Some(form.reason()).filter(|m| !m.is_empty());
    let body = repli_proto::api::ActionRequest { reason };
    match crises::apply(st, a, id, action, body).await {
        Ok(v) => back(id, Flash::ok(format!("Crise {} : {}", v.id, v.state_label))),
        Err(e) => back(id, Flash::error(e.to_problem().detail)),
    }
}

/// The main courante's form.
#[derive(Debug, Deserialize)]
pub struct LogForm {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    texte: String,
}

pub async fn add_log(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<LogForm>,
) -> Response {
    let r = match crisis_of(&st, &a, &id).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    match crises::add_log(&st, &a, r.id.as_str(), &form.kind, &form.texte).await {
        Ok(_) => back(&id, Flash::ok("Entrée ajoutée à la main courante.")),
        Err(AppError::Validation(errors)) => back(
            &id,
            Flash::error(format!(
                "Main courante : {}",
                errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join(" ; ")
            )),
        ),
        Err(e) => back(&id, Flash::error(e.to_problem().detail)),
    }
}

/// The agents list: typed or pasted in the text area, or a CSV file (multipart form).
pub async fn set_agents(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> Response {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or("").to_string();
                match f.text().await {
                    Ok(t) if t.len() <= 256 * 1024 => {
                        fields.insert(name, t);
                    }
                    _ => {
                        return back(
                            &id,
                            Flash::error("Fichier illisible ou trop gros (256 Kio au plus, texte UTF-8)."),
                        );
                    }
                }
            }
            Ok(None) => break,
            Err(_) => return back(&id, Flash::error("Formulaire illisible.")),
        }
    }
    let r = match form_crisis(&st, &a, &csrf, &fields, &id).await {
        Ok(r) => r,
        Err(page) => return *page,
    };
    let source =
        fields.get("fichier").filter(|t| !t.trim().is_empty()).or(fields.get("liste")).cloned().unwrap_or_default();
    if let Err(line) = text::csv_quotes_closed(&source) {
        return back(
            &id,
            Flash::error(format!("Ligne {line} : guillemet ouvert jamais fermé. Rien n'a été enregistré.")),
        );
    }
    let rows = agents_from_text(&source);
    if rows.is_empty() || rows.len() > 500 {
        return back(&id, Flash::error("Liste des agents vide ou trop longue (500 au plus)."));
    }
    let list = match inventory::checked_agents(rows.iter().map(|(n, sv)| (n.as_str(), sv.as_str()))) {
        Ok(list) => list,
        Err(bad) => {
            let (i, e) = &bad[0];
            return back(&id, Flash::error(format!("Ligne {} : {}", i + 1, e.message)));
        }
    };
    match inventory::record_agents(&st, &a, r.id.as_str(), &list, inventory::ListChange::Add).await {
        Ok(agents) => back(
            &id,
            Flash::ok(format!("{} agent(s) ajouté(s) : la liste compte {} agent(s).", list.len(), agents.len())),
        ),
        Err(e) => back(&id, Flash::error(e.to_problem().detail)),
    }
}

/// Ops accept the agents named so far as the whole list.
pub async fn accept_agents(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(id): Path<String>,
    _: CsrfForm<NoFields>,
) -> Response {
    let r = match crisis_of(&st, &a, &id).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    match inventory::accept_agents(&st, &a, r.id.as_str()).await {
        Ok(n) => back(&id, Flash::ok(format!("Effectif réduit confirmé : les comptes sont créés pour {n} agent(s)."))),
        Err(e) => back(&id, Flash::error(e.to_problem().detail)),
    }
}

/// A manual step's confirmation, from the crisis page or the task list (`retour=taches`).
#[derive(Debug, Deserialize)]
pub struct TaskForm {
    #[serde(default)]
    note: String,
    /// Where to go back to: `taches` for the task list, the crisis page otherwise.
    #[serde(default)]
    retour: String,
}

pub async fn confirm_task(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path((id, step)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<TaskForm>,
) -> Response {
    let r = match crisis_of(&st, &a, &id).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let note = Some(form.note.trim().to_string()).filter(|n| !n.is_empty());
    let target = if form.retour == "taches" { "/taches".to_string() } else { format!("/crises/{id}") };
    match steps::confirm(&st, &a, r.id.as_str(), &step, note.as_deref(), None).await {
        Ok(s) => crate::web::redirect_with(&target, Flash::ok(format!("« {} » confirmée.", s.title))),
        Err(AppError::Validation(_)) => {
            back(&id, Flash::error("Note invalide (caractères de contrôle ou trop longue)."))
        }
        Err(e) => back(&id, Flash::error(e.to_problem().detail)),
    }
}

/// The hand-back scan field: a barcode scanner types the serial and Enter.
#[derive(Debug, Deserialize)]
pub struct CheckInForm {
    #[serde(default)]
    serial: String,
    /// `ok`, `damaged` or `missing` (anything else is read as `ok`).
    #[serde(default)]
    etat: String,
}

pub async fn check_in(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<CheckInForm>,
) -> Response {
    if let Err(page) = crisis_of(&st, &a, &id).await {
        return page;
    }
    let serial = form.serial.trim().to_string();
    if serial.is_empty() || serial.len() > 100 || serial.chars().any(char::is_control) {
        return crate::web::flash::redirect(
            &format!("/crises/{id}"),
            Flash::error("Numéro de série illisible : scannez à nouveau.").beside(Section::Retour),
        );
    }
    let condition = match form.etat.as_str() {
        "damaged" => "damaged",
        "missing" => "missing",
        _ => "ok",
    };
    let req = repli_proto::api::CheckinRequest { serial: serial.clone(), condition: condition.into(), note: None };
    // Back to the page without a fragment, the message beside the scan field: a page opened on
    // a fragment skips `autofocus`, and a scanner (a keyboard) must find the field focused
    // again after a refusal as after a return.
    let page = format!("/crises/{id}");
    match repli_app::inventory::check_in(&st, &a, &id, &req).await {
        Ok(loans) => {
            let code = serial.to_lowercase();
            let this = loans.iter().find(|l| l.serial.to_lowercase() == code || l.asset_tag.to_lowercase() == code);
            let open = loans.iter().filter(|l| l.is_open()).count();
            let what = match this {
                Some(l) => format!(
                    "{} ({}{}) {}",
                    l.asset_tag,
                    l.kind.label_fr(),
                    l.agent.as_ref().map(|g| format!(", {}", g.name)).unwrap_or_default(),
                    match condition {
                        "damaged" => "endommagé",
                        "missing" => "déclaré manquant",
                        _ => "en bon état",
                    }
                ),
                None => serial.clone(),
            };
            let sim = this
                .and_then(|l| l.sim_not_returned.as_deref())
                .map(|t| format!(" ATTENTION : rendu sans sa carte SIM {t}, toujours prêtée."))
                .unwrap_or_default();
            let msg = format!("Retour enregistré : {what}. Encore {open} équipement(s) prêté(s).{sim}");
            crate::web::flash::redirect(&page, Flash::ok(msg).beside(Section::Retour))
        }
        Err(e) => {
            let msg = format!("{serial} refusé : {}", e.to_problem().detail);
            crate::web::flash::redirect(&page, Flash::error(msg).beside(Section::Retour))
        }
    }
}

/// Most lines in the scan box (a scanner types one label and Enter per item).
const MAX_SCAN_CHARS: usize = 64 * 1024;

/// The loan form: for each item of the crisis, a choice (an agent, the commune, or not now),
/// plus a box where a scanner types « label ; agent » lines. All or nothing.
/// The loan form: a choice per item (`pret-SERIAL`, one field per item the page lists) and
/// the scan box.
#[derive(Debug, Default, Deserialize)]
pub struct LoanForm {
    #[serde(default)]
    scan: String,
    /// Every other field: the `pret-SERIAL` choices (and the token, ignored).
    #[serde(flatten)]
    choices: BTreeMap<String, String>,
}

pub async fn lend(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<LoanForm>,
) -> Response {
    if let Err(page) = crisis_of(&st, &a, &id).await {
        return page;
    }
    let lines = match loan_lines(&form) {
        Ok(l) => l,
        Err(msg) => return back_field(&id, Section::Prets, &msg),
    };
    if lines.is_empty() {
        return back_field(&id, Section::Prets, "Choisissez au moins un équipement à prêter, ou scannez-en un.");
    }
    match inventory::lend_many(&st, &a, &id, &lines).await {
        Ok(_) => back(&id, Flash::ok(format!("{} équipement(s) prêté(s).", lines.len()))),
        Err(e) => back_field(&id, Section::Prets, &e.to_problem().detail),
    }
}

/// The lines of the loan form: picked items first (`pret-SERIAL` = agent id or `commune`),
/// then the scanned lines (`code` or `code ; agent name`).
fn loan_lines(form: &LoanForm) -> Result<Vec<LoanLine>, String> {
    let mut lines = Vec::new();
    for (key, choice) in &form.choices {
        let Some(code) = key.strip_prefix("pret-") else { continue };
        let to = match choice.trim() {
            "" => continue,
            "commune" => LoanTo::Commune,
            n => LoanTo::Agent(n.parse().map_err(|_| format!("{code} : agent inconnu."))?),
        };
        lines.push(LoanLine { code: code.to_owned(), to });
    }
    let scan = form.scan.as_str();
    if scan.len() > MAX_SCAN_CHARS {
        return Err("Trop de lignes scannées à la fois (64 Kio au plus).".into());
    }
    for raw in scan.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (code, who) = match raw.split_once(';') {
            Some((c, w)) => (c.trim(), w.trim()),
            None => (raw, ""),
        };
        let to = if who.is_empty() { LoanTo::Commune } else { LoanTo::AgentNamed(who.to_owned()) };
        lines.push(LoanLine { code: code.to_owned(), to });
    }
    Ok(lines)
}

/// Suspends or resumes the 48-hour clock (the commune asked to wait, premises closed…).
pub async fn sla_clock(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ActionForm>,
) -> Response {
    if let Err(page) = crisis_of(&st, &a, &id).await {
        return page;
    }
    let done = match form.action.as_str() {
        "suspendre" => {
            let reason = form.reason();
            if reason.is_empty() {
                return back_field(&id, Section::Delai, "Indiquez le motif de la suspension.");
            }
            crises::suspend_sla(&st, &a, &id, &reason).await.map(|_| "Délai suspendu.")
        }
        "reprendre" => crises::resume_sla(&st, &a, &id).await.map(|_| "Délai repris."),
        _ => return back_field(&id, Section::Delai, "Action inconnue."),
    };
    match done {
        Ok(msg) => back(&id, Flash::ok(msg)),
        Err(e) => back_field(&id, Section::Delai, &e.to_problem().detail),
    }
}

/// Records when the commune learnt of the attack and whether personal data are involved:
/// the CNIL's and the complaint's 72-hour clocks start from there.
/// The facts that start the legal clocks.
#[derive(Debug, Deserialize)]
pub struct LegalFactsForm {
    /// When the commune learnt of the attack (a datetime-local field), blank when unknown.
    #[serde(default)]
    aware_at: String,
    /// `oui`, `non`, or blank (not known yet).
    #[serde(default)]
    personal_data: String,
}

pub async fn legal_facts(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<LegalFactsForm>,
) -> Response {
    if let Err(page) = crisis_of(&st, &a, &id).await {
        return page;
    }
    let Ok(aware_at) = form_instant(&st, &form.aware_at) else {
        return back_field(&id, Section::Echeances, "Date et heure de découverte illisibles (jj/mm/aaaa hh:mm).");
    };
    let personal_data = match form.personal_data.as_str() {
        "oui" => Some(true),
        "non" => Some(false),
        _ => None,
    };
    if aware_at.is_none() && personal_data.is_none() {
        return back_field(
            &id,
            Section::Echeances,
            "Indiquez la date de découverte ou la réponse sur les données personnelles.",
        );
    }
    match crises::set_legal_facts(&st, &a, &id, LegalFactsRequest { aware_at, personal_data }).await {
        Ok(_) => back(&id, Flash::ok("Échéances légales mises à jour.")),
        Err(e) => back_field(&id, Section::Echeances, &e.to_problem().detail),
    }
}

/// Marks the CNIL notification or the complaint as done (now, or at the instant given).
/// A legal obligation done: now, or at the instant typed.
#[derive(Debug, Deserialize)]
pub struct LegalDoneForm {
    #[serde(default)]
    at: String,
    /// `oui` when the box confirming it is done is ticked: a legal obligation is not marked
    /// done by one stray tap.
    #[serde(default)]
    confirme: String,
}

pub async fn legal_done(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path((id, kind)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<LegalDoneForm>,
) -> Response {
    if let Err(page) = crisis_of(&st, &a, &id).await {
        return page;
    }
    if form.confirme != "oui" {
        return back_field(
            &id,
            Section::Echeances,
            "Cochez la case pour confirmer que la démarche est faite : rien n'a été enregistré.",
        );
    }
    let Ok(at) = form_instant(&st, &form.at) else {
        return back_field(&id, Section::Echeances, "Date et heure illisibles (jj/mm/aaaa hh:mm).");
    };
    match crises::legal_done(&st, &a, &id, &kind, at).await {
        Ok(_) => back(&id, Flash::ok("Démarche enregistrée comme faite.")),
        Err(e) => back_field(&id, Section::Echeances, &e.to_problem().detail),
    }
}

/// An optional date and time field of a form: None when blank, Err when unreadable.
fn form_instant(st: &AppState, field: &str) -> Result<Option<jiff::Timestamp>, ()> {
    match Some(field.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => local_instant(st, s).map(Some).ok_or(()),
    }
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (Method::GET, "/crises/{id}", Page(P::ReadCrises), routing::get(crisis), Doc::page("A crisis")),
        (
            Method::POST,
            "/crises/{id}/action",
            Page(P::OperateCrisis),
            routing::post(crisis_action),
            Doc::form("A crisis transition"),
        ),
        (
            Method::POST,
            "/crises/{id}/main-courante",
            Page(P::WriteCrisisLog),
            routing::post(add_log),
            Doc::form("Add a main-courante entry"),
        ),
        (
            Method::POST,
            "/crises/{id}/agents",
            Page(P::WriteCrisisLog),
            routing::post(set_agents),
            Doc::form("Name the agents"),
        ),
        (
            Method::POST,
            "/crises/{id}/agents/effectif",
            Page(P::OperateCrisis),
            routing::post(accept_agents),
            Doc::form("Accept the named agents as the whole list"),
        ),
        (
            Method::POST,
            "/crises/{id}/taches/{step}",
            Page(P::OperateCrisis),
            routing::post(confirm_task),
            Doc::form("Confirm a manual task"),
        ),
        (
            Method::POST,
            "/crises/{id}/retour",
            Page(P::ManageInventory),
            routing::post(check_in),
            Doc::form("Check an item in at the hand-back"),
        ),
        (
            Method::POST,
            "/crises/{id}/prets",
            Page(P::ManageInventory),
            routing::post(lend),
            Doc::form("Lend items to named agents or to the commune, all or none"),
        ),
        (
            Method::POST,
            "/crises/{id}/delai",
            Page(P::OperateCrisis),
            routing::post(sla_clock),
            Doc::form("Suspend or resume the SLA clock"),
        ),
        (
            Method::POST,
            "/crises/{id}/echeances",
            Page(P::WriteCrisisLog),
            routing::post(legal_facts),
            Doc::form("Record the facts that start the legal clocks"),
        ),
        (
            Method::POST,
            "/crises/{id}/echeances/{kind}/faite",
            Page(P::WriteCrisisLog),
            routing::post(legal_done),
            Doc::form("Record a legal obligation as done"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loan form as the extractor reads it from the posted fields.
    fn form(pairs: &[(&str, &str)]) -> LoanForm {
        let fields: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let de = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(fields.into_iter());
        LoanForm::deserialize(de).unwrap()
    }

    #[test]
    fn picked_and_scanned_lines_are_read_in_order() {
        let f = form(&[
            ("csrf", "x"),
            ("pret-S1", "12"),
            ("pret-S2", ""),
            ("pret-S3", "commune"),
            ("scan", "AMP-LAP-0002 ; Anne Martin\n\n  amp-rtr-0001  \n"),
        ]);
        let lines = loan_lines(&f).unwrap();
        assert_eq!(
            lines,
            vec![
                LoanLine { code: "S1".into(), to: LoanTo::Agent(12) },
                LoanLine { code: "S3".into(), to: LoanTo::Commune },
                LoanLine { code: "AMP-LAP-0002".into(), to: LoanTo::AgentNamed("Anne Martin".into()) },
                LoanLine { code: "amp-rtr-0001".into(), to: LoanTo::Commune },
            ]
        );
    }

    #[test]
    fn a_forged_agent_choice_or_an_oversized_scan_is_refused() {
        assert!(loan_lines(&form(&[("pret-S1", "<script>")])).unwrap_err().contains("agent inconnu"));
        let big = "A;B\n".repeat(MAX_SCAN_CHARS / 4 + 1);
        assert!(loan_lines(&form(&[("scan", &big)])).is_err());
        assert!(loan_lines(&form(&[("scan", "  \n ")])).unwrap().is_empty());
    }

    /// A crisis page model with every optional part present and every list filled, so that
    /// each block of the template renders; `full = false` leaves them all out.
    fn model(full: bool) -> CrisisPageModel {
        let some = |s: &str| full.then(|| s.to_owned());
        let many = |n: usize| if full { n } else { 0 };
        CrisisPageModel {
            c: Summary {
                id: "2026-0042".into(),
                commune: "Cassis".into(),
                state: "En préparation".into(),
                ready: full,
                sla: sla_badge(repli_core::SlaStatus::AtRisk),
                due: "lundi 30 novembre 2026 à 08:15".into(),
                left: "3 h".into(),
                used: 42,
                elapsed: "20 h".into(),
                hours: 48,
                contact: "Anne Martin".into(),
                phone: "06 12 34 56 78".into(),
                agents: 3,
                named: 1,
                delivery: some("1 place de la mairie"),
                notes: if full { "Accès par la cour".into() } else { String::new() },
                legal: (0..many(1))
                    .map(|_| LegalClock { label: "CNIL".into(), deadline: "demain".into(), status: "à faire".into() })
                    .collect(),
                reserving: full,
                needs: (0..many(1))
                    .map(|_| Need { label: "Ordinateurs".into(), wanted: 3, allocated: 2, shortage: 1 })
                    .collect(),
            },
            convention: some("signée le 1er mars 2026 (délibération D-12)"),
            can_activate: full,
            m365_warning: some("Le contrôle du locataire a échoué."),
            can_deliver: full,
            can_handback: full,
            can_scan: full,
            dns_check: full.then(|| "/crises/13005-2026-001/dns".to_owned()),
            can_reject: full,
            can_cancel: full,
            can_log: full,
            can_agents: full,
            agents: (0..many(1)).map(|_| Agent { name: "Anne Martin".into(), service: "Accueil".into() }).collect(),
            agents_gap: full.then(|| AgentsGap { message: "2 agents à nommer.".into(), named: 1, can_accept: true }),
            runs: (0..many(1))
                .map(|_| Run {
                    name: "Préparation du kit",
                    done: 1,
                    total: 2,
                    percent: 50,
                    steps: vec![Step {
                        id: "m365.domain".into(),
                        title: "Domaine".into(),
                        state: "en attente".into(),
                        class: "waiting_manual",
                        error: some("échec"),
                        waiting: true,
                        retry: true,
                        skip: true,
                        instructions: some("Faire ceci."),
                        checklist: vec!["Vérifier".into()],
                    }],
                })
                .collect(),
            documents: vec![Document { file: "01-lisez-moi.html", url: "/api/v1/crises/2026-0042/documents/x".into() }],
            archive: full.then(|| Archive {
                url: "/api/v1/crises/2026-0042/handback.zip".into(),
                items: 3,
                exported: 2,
                size: "1,2 Mo".into(),
                manifest_sha256: "ab".repeat(32),
            }),
            loans: (0..many(1))
                .map(|_| Loan {
                    tag: "AMP-LAP-0001".into(),
                    serial: "S1".into(),
                    kind: "ordinateur",
                    agent: some("Anne Martin"),
                    due: "demain".into(),
                    returned: None,
                    written_off: some("hier : volé"),
                    overdue: true,
                    write_off: some("/crises/2026-0042/pertes/S1"),
                })
                .collect(),
            log: (0..many(1))
                .map(|_| LogLine { at: "hier".into(), who: "Opé".into(), kind: "information", text: "Texte".into() })
                .collect(),
            outbox: (0..many(1))
                .map(|_| Sent {
                    at: "hier".into(),
                    audience: "commune",
                    channel: "SMS",
                    to: "06 12 34 56 78".into(),
                    subject: "Crise".into(),
                    status: "en échec",
                    class: "alerte",
                    attempts: 2,
                    error: some("SMS gateway answered HTTP 503"),
                })
                .collect(),
            can_retex: full,
            lend: LendSection {
                items: (0..many(1))
                    .map(|_| LendItem {
                        serial: "S2".into(),
                        tag: "AMP-RTR-0001".into(),
                        kind: "routeur",
                        model: "X".into(),
                        options: vec![LendOption {
                            value: "commune".into(),
                            label: "la commune".into(),
                            selected: true,
                        }],
                    })
                    .collect(),
                count: many(1),
            },
            kit: Kit {
                workspace: full.then(|| KitWorkspace {
                    url: "https://teams.example".into(),
                    mail: "crise@example.fr".into(),
                    channels: "Général".into(),
                }),
                meeting: some("https://teams.example/visio"),
                plan: (0..many(1))
                    .map(|_| KitAssignment { agent: "Anne".into(), service: "Accueil".into(), serial: "S1".into() })
                    .collect(),
                isolation: full.then(|| KitIsolation {
                    ok: false,
                    checks: vec![KitCheck { check: "tenant".into(), ok: false, detail: "détail".into() }],
                }),
            },
            delai: SlaClock {
                suspended: full.then(|| Suspension { since: "hier".into(), reason: "locaux fermés".into() }),
                past: (0..many(1))
                    .map(|_| PastSuspension { from: "lundi".into(), to: "mardi".into(), reason: "attente".into() })
                    .collect(),
                can: full,
            },
            legal_form: LegalSection {
                can: full,
                open: (0..many(1)).map(|_| LegalOpen { kind: "cnil", label: "Notification CNIL".into() }).collect(),
            },
            scan_done: some("Retour enregistré : AMP-LAP-0001."),
            errors: FieldErrors {
                prets: some("Erreur prêts"),
                delai: some("Erreur délai"),
                echeances: some("Erreur échéances"),
                retour: some("Erreur retour"),
            },
            live: full,
            read_at: "maintenant".into(),
        }
    }

    #[test]
    fn the_typed_crisis_page_renders_through_the_strict_template() {
        for full in [true, false] {
            let layout = crate::web::view::test_layout("Crise 2026-0042");
            let html = crate::web::view::render_model("crise", &layout, &model(full))
                .unwrap_or_else(|e| panic!("full = {full}: {e}"));
            assert!(html.contains("Crise 2026-0042 — Cassis"), "{html}");
            assert_eq!(html.contains("Activer la crise"), full);
            assert_eq!(html.contains("Erreur retour"), full);
            assert_eq!(html.contains("Relancer « Domaine »"), full);
        }
    }
}
