//! The notification plan (`[notify.plan]`): who is told of each moment of a crisis, in French.
//!
//! Each moment is derived from what the database says (the crisis's timestamps, its runs'
//! steps, its SLA), under a key of its own, so it is queued once whether it is noticed right
//! after the change (a request, a transition, a main-courante entry) or by the next
//! maintenance round (a daemon that stopped in between); the engine says what it changed
//! through its host (`Host::changed`).
//! « [EXERCICE] » is put first, and an exercise's recipients chosen, where every notification
//! is queued (`repli-store`).

use jiff::Timestamp;
use repli_core::run::PlaybookName;
use repli_core::run::StepOutput;
use repli_core::{CrisisState, StepKind, StepState, fr};
use repli_store::{CrisisRecord, StoreError};

use crate::Services;
use crate::config::PlanEvent;
use repli_store::CrisisFacts;

/// The métropole's on-call contacts as the DGS reads them, from `[documents]` (nothing while
/// they are still at their placeholder).
pub fn astreinte(st: &Services) -> Option<String> {
    st.config.documents.astreinte_contacts().map(|c| format!("Astreinte de la métropole : {c}."))
}

/// The signed head of the audit log as auditors receive it. The one place the head is read,
/// so how it is obtained (a checkpoint signed now, or the head every commit signs) can change
/// here alone.
pub async fn signed_head(st: &Services) -> Result<Option<String>, StoreError> {
    // The head is signed in the transaction of every append (docs/AUDIT.md): the one read
    // here covers everything written so far. Auditors keep `seq:hash` for `repli audit verify
    // --pin`, and check the key's fingerprint against the one they pinned.
    Ok(st.store.signed_head().await?.map(|c| {
        let key = repli_core::audit::parse_public_key(&c.public_key)
            .map_or_else(|| c.public_key.clone(), |k| repli_core::audit::fingerprint(&k));
        format!(
            "Tête signée du journal d'audit : entrée n° {} ; à conserver : {}:{} ; signée le {} par la clé {} ; signature {}.",
            c.seq, c.seq, c.hash, c.at, key, c.signature
        )
    }))
}

fn with_contact(st: &Services, text: String) -> String {
    match astreinte(st) {
        Some(a) => format!("{text} {a}"),
        None => text,
    }
}

/// Queues every moment of the plan `r` has reached that was not queued yet; returns how many
/// notifications were new. `facts`: the crisis's SLA facts when it is open.
pub async fn queue_crisis(
    st: &Services,
    r: &CrisisRecord,
    facts: Option<&CrisisFacts>,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let plan = &st.config.notify.plan;
    let tz = st.calendar.time_zone().clone();
    let id = r.id.as_str();
    let subject = format!("Crise {id} ({})", r.commune_name);
    let due = fr::datetime(r.due_at, &tz);
    let mut new = 0;
    let mut dgs: Vec<(String, String)> = Vec::new();
    let mut ops: Vec<(String, String, String)> = Vec::new();

    // Moments of the crisis itself.
    dgs.push((
        "requested".into(),
        format!(
            "Votre demande de kit de repli est enregistrée sous la référence {id}. La métropole vérifie \
             la convention et décide de l'activation ; vous serez prévenu à chaque étape. Kit promis au \
             plus tard le {due}."
        ),
    ));
    ops.push((
        "requested".into(),
        format!("Nouvelle demande {id} ({})", r.commune_name),
        format!(
            "{} demande le kit de repli pour {} agent(s). Contact : {}, {}. À examiner et activer sur la \
             page de la crise. Échéance : {due}.",
            r.commune_name,
            r.agents,
            r.contact_name,
            fr::phone(&r.contact_phone)
        ),
    ));
    if r.activated_at.is_some() {
        dgs.push((
            "activated".into(),
            format!(
                "L'activation du kit de repli {} est décidée (crise {id}). La préparation commence : comptes \
                 de secours, visio de crise, matériel. Kit prêt au plus tard le {due}.",
                fr::de(&r.commune_name)
            ),
        ));
    }
    // What is on loan and by when it comes back (the loans' own dates: the hand-back's plan).
    let (on_loan, back_by) =
        if r.delivered_at.is_some() || r.handback_at.is_some() { on_loan(st, r).await? } else { (String::new(), None) };
    if r.delivered_at.is_some() {
        let back = back_by.map(|t| format!(" au plus tard le {}", fr::datetime(t, &tz))).unwrap_or_default();
        dgs.push((
            "delivered".into(),
            format!(
                "Le kit de repli vous est remis. Conservez le bon de prêt : il liste chaque équipement, à \
                 rendre lors de la restitution{back}."
            ),
        ));
    }
    if r.handback_at.is_some() {
        let what = if on_loan.is_empty() {
            "les équipements prêtés (voir le bon de prêt)".to_owned()
        } else {
            format!("les équipements listés sur le bon de prêt ({on_loan})")
        };
        let place = r.delivery_address.as_deref().map_or_else(
            || "le lieu de remise se convient avec l'astreinte".to_owned(),
            |a| format!("remise prévue à : {a}, le lieu de livraison du kit (le jour et l'heure se conviennent avec l'astreinte)"),
        );
        dgs.push((
            "handback".into(),
            format!(
                "La restitution du kit commence : la métropole ferme les comptes de secours et reprend le \
                 matériel. À rendre : {what} ; {place}. Préparez aussi le support où récupérer vos messages \
                 et fichiers."
            ),
        ));
    }
    if r.closed_at.is_some() {
        let text = match r.state {
            CrisisState::Rejected => format!(
                "Votre demande {id} n'est pas retenue{}.",
                r.end_reason.as_deref().map(|w| format!(" : {w}")).unwrap_or_default()
            ),
            CrisisState::Cancelled => format!("La crise {id} est annulée."),
            _ => format!(
                "La crise {id} est close. Le procès-verbal de restitution, qui liste l'état de chaque \
                 équipement rendu, est joint au dossier de la crise{}.",
                st.config
                    .server
                    .public_url
                    .as_deref()
                    .map(|u| format!(" : {}/crises/{id}", u.trim_end_matches('/')))
                    .unwrap_or_default()
            ),
        };
        dgs.push(("closed".into(), text));
    }

    // Moments of the activation playbook.
    let mut activation_steps = Vec::new();
    for run in st.store.runs_of(&r.id).await? {
        let steps = st.store.steps(run.id).await?;
        for s in &steps {
            match s.state {
                StepState::Failed => ops.push((
                    format!("failed:{}:{}", run.id, s.step_id),
                    format!("Crise {id} ({}) : étape en échec", r.commune_name),
                    format!(
                        "L'étape « {} » a échoué après {} tentative(s) : {}. À reprendre ou passer sur la page de \
                         la crise.",
                        s.title,
                        s.attempts,
                        s.last_error.as_deref().unwrap_or("erreur non précisée")
                    ),
                )),
                StepState::WaitingManual => ops.push((
                    format!("manual:{}:{}", run.id, s.step_id),
                    format!("Crise {id} ({}) : tâche manuelle en attente", r.commune_name),
                    format!("La tâche « {} » attend quelqu'un (page Tâches).", s.title),
                )),
                _ => {}
            }
        }
        if run.playbook == PlaybookName::Activation {
            activation_steps = steps;
        }
    }
    let done = |k: StepKind| {
        activation_steps.iter().filter(|s| s.kind == k).all(|s| s.state == StepState::Succeeded)
            && activation_steps.iter().any(|s| s.kind == k)
    };
    for s in activation_steps.iter().filter(|s| s.state == StepState::Succeeded) {
        match &s.output {
            Some(StepOutput::Accounts(a)) => {
                let domain =
                    a.accounts.first().and_then(|x| x.upn.split('@').nth(1)).unwrap_or("le domaine de secours");
                dgs.push((
                    "accounts".into(),
                    format!(
                        "{} compte(s) de secours sont créés sur {domain}. Les fiches d'identifiants (une par \
                         agent) vous sont remises en main propre par la métropole avec le matériel : elles ne \
                         sont jamais envoyées par SMS ni par courriel.",
                        a.accounts.len()
                    ),
                ));
            }
            Some(StepOutput::Meeting(m)) => {
                dgs.push(("visio".into(), format!("La visio de crise est ouverte : {}", m.join_url)));
            }
            _ => {}
        }
    }
    if done(StepKind::InventoryAssign) && done(StepKind::Manual) {
        dgs.push((
            "equipment".into(),
            format!(
                "Le matériel de votre kit est prêt. Livraison à : {}, au plus tard le {due} ; l'heure se \
                 convient avec l'astreinte.",
                r.delivery_address.as_deref().unwrap_or("adresse à préciser avec l'astreinte")
            ),
        ));
    }

    // The SLA forecast.
    if r.ready_at.is_none()
        && let Some(f) = facts
        && let Ok(v) = crate::views::sla_of(st, r, f, now)
        && matches!(v.status, repli_core::SlaStatus::AtRisk | repli_core::SlaStatus::Breached)
    {
        dgs.push((
            "sla_at_risk".into(),
            format!(
                "La préparation de votre kit risque de dépasser l'échéance du {due}. La métropole renforce \
                 l'équipe et vous tient informé."
            ),
        ));
        ops.push((
            "sla_at_risk".into(),
            format!("Crise {id} ({}) : délai en danger", r.commune_name),
            format!("La prévision dépasse l'échéance du {due} ({}).", v.status.label_fr()),
        ));
    }

    for (moment, text) in dgs {
        let Some(event) = event_of(&moment) else { continue };
        if plan.dgs_told(event) {
            let key = format!("plan:{id}:dgs:{moment}");
            new += super::to_dgs(st, r, &key, &with_contact(st, text), now).await?;
        }
    }
    for (moment, subject, body) in ops {
        let Some(event) = event_of(&moment) else { continue };
        if plan.ops_told(event) {
            let key = format!("plan:{id}:ops:{moment}");
            new += super::to_ops(st, r, &key, &subject, &body, now).await?;
        }
    }

    // Auditors: each state reached, with the signed head of the log at the time it is queued.
    if plan.auditors_told(PlanEvent::Transition) && !st.config.notify.auditors.is_empty() {
        let reached = [
            (CrisisState::Requested, Some(r.requested_at)),
            (CrisisState::Activated, r.activated_at),
            (CrisisState::Provisioning, r.provisioning_at),
            (CrisisState::Ready, r.ready_at),
            (CrisisState::Delivered, r.delivered_at),
            (CrisisState::Handback, r.handback_at),
            (if r.state.is_open() { CrisisState::Closed } else { r.state }, r.closed_at),
        ];
        let mut head: Option<String> = None;
        for (state, at) in reached {
            let Some(at) = at else { continue };
            let head = match &head {
                Some(h) => h.clone(),
                None => {
                    let h = signed_head(st)
                        .await?
                        .unwrap_or_else(|| "Aucun point de contrôle signé : la signature n'est pas configurée.".into());
                    head = Some(h.clone());
                    h
                }
            };
            let key = format!("plan:{id}:auditors:{}", state.as_str());
            let body = format!(
                "La crise {id} ({}) est passée à l'état « {} » le {}. {head}",
                r.commune_name,
                state.label_fr(),
                fr::datetime(at, &tz)
            );
            new += super::to_auditors(st, r, &key, &format!("{subject} : {}", state.label_fr()), &body, now).await?;
        }
    }
    Ok(new)
}

/// What the commune still holds, in French (« ordinateur portable × 12, carte SIM × 3 »), and
/// the latest date a loan is due back.
async fn on_loan(st: &Services, r: &CrisisRecord) -> Result<(String, Option<Timestamp>), StoreError> {
    let loans = st.store.loans(&r.id).await?;
    let open: Vec<_> = loans.iter().filter(|l| l.returned_at.is_none()).collect();
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for l in &open {
        *counts.entry(l.kind.label_fr()).or_default() += 1;
    }
    let text = counts.iter().map(|(k, n)| format!("{k} × {n}")).collect::<Vec<_>>().join(", ");
    Ok((text, open.iter().map(|l| l.due_back).max()))
}

fn event_of(moment: &str) -> Option<PlanEvent> {
    Some(match moment.split(':').next()? {
        "requested" => PlanEvent::Requested,
        "activated" => PlanEvent::Activated,
        "accounts" => PlanEvent::Accounts,
        "visio" => PlanEvent::Visio,
        "equipment" => PlanEvent::Equipment,
        "sla_at_risk" => PlanEvent::SlaAtRisk,
        "delivered" => PlanEvent::Delivered,
        "handback" => PlanEvent::Handback,
        "closed" => PlanEvent::Closed,
        "failed" => PlanEvent::StepFailed,
        "manual" => PlanEvent::ManualTask,
        _ => return None,
    })
}

/// The DGS wrote in the main courante: ops on call are told (plan moment `dgs_message`).
pub async fn dgs_wrote(
    st: &Services,
    r: &CrisisRecord,
    seq: i64,
    text: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    if !st.config.notify.plan.ops_told(PlanEvent::DgsMessage) {
        return Ok(0);
    }
    let key = format!("plan:{}:ops:dgs_message:{seq}", r.id);
    let subject = format!("Crise {} ({}) : message de la commune", r.id, r.commune_name);
    super::to_ops(st, r, &key, &subject, text, now).await
}
