//! Exercises: ops start a drill for one or several communes, from a scenario (TOML) or a form.
//! Its crises run the real playbooks and engine, marked « EXERCICE » everywhere (pages,
//! documents, notifications, audit entries); Microsoft 365 goes to the exercise target; they
//! never count in the SLA report, and a real crisis takes back the equipment they hold.

use repli_core::exercise::InjectEffect;
use repli_core::{Actor, FieldError, text};
use repli_proto::ProblemCode;
use repli_proto::api::{CrisisRequest, ExerciseCrisisView, ExerciseRequest, ExerciseView, InjectView};
use repli_store::{ExerciseRecord, NewExercise, NewInject, StoreError};

use crate::{App, AppError, Services, crises};

pub use repli_core::exercise::{MAX_COMMUNES, MAX_INJECT_MINUTES, MAX_INJECTS, MAX_RECIPIENTS};
/// Longest scenario text accepted (TOML).
pub const MAX_SCENARIO_BYTES: usize = 64 * 1024;
use repli_core::exercise::{INJECT_MAX, NAME_MAX};

/// Reads a scenario file: the [`ExerciseRequest`] in TOML. Errors name the line.
pub fn parse_scenario(text: &str) -> Result<ExerciseRequest, AppError> {
    if text.len() > MAX_SCENARIO_BYTES {
        return Err(AppError::Validation(vec![FieldError::new(
            "scenario",
            format!("scénario trop long ({MAX_SCENARIO_BYTES} octets au plus)"),
        )]));
    }
    ExerciseRequest::from_toml(text).map_err(|e| {
        AppError::Validation(vec![FieldError::new(
            "scenario",
            format!("scénario illisible, ligne {} : {}", e.line, e.message),
        )])
    })
}

fn prefixed(prefix: &str, mut e: FieldError) -> FieldError {
    e.field = format!("{prefix}.{}", e.field);
    e
}

/// Checks an exercise; every invalid field is reported at once.
fn validate(st: &Services, req: &ExerciseRequest, now: jiff::Timestamp) -> Result<NewExercise, AppError> {
    let mut errors = Vec::new();
    let name = text::free_text("name", &req.name, NAME_MAX, true).map_err(|e| errors.push(e)).ok();
    if req.communes.is_empty() || req.communes.len() > MAX_COMMUNES {
        errors.push(FieldError::new("communes", format!("entre 1 et {MAX_COMMUNES} communes")));
    }
    if req.recipients.len() > MAX_RECIPIENTS {
        errors.push(FieldError::new("recipients", format!("{MAX_RECIPIENTS} destinataires au plus")));
    }
    if req.injects.len() > MAX_INJECTS {
        errors.push(FieldError::new("injects", format!("{MAX_INJECTS} injects au plus")));
    }
    let mut recipients = Vec::new();
    for (i, r) in req.recipients.iter().enumerate() {
        let field = format!("recipients[{i}]");
        let checked = if r.contains('@') { text::email(&field, r) } else { text::phone(&field, r) };
        match checked {
            Ok(a) => recipients.push(a),
            Err(e) => errors.push(e),
        }
    }
    let due_at = crises::due_at(st, now)?;
    let mut new_crises = Vec::new();
    for (i, c) in req.communes.iter().enumerate() {
        if req.communes[..i].iter().any(|o| o.commune == c.commune) {
            errors.push(FieldError::new(&format!("communes[{i}].commune"), "commune déjà dans l'exercice"));
            continue;
        }
        let request = CrisisRequest {
            commune: c.commune.clone(),
            contact: c.contact.clone(),
            agents: c.agents,
            delivery_address: None,
            notes: Some(format!("Exercice « {} ».", req.name.chars().take(200).collect::<String>())),
            needs: None,
            aware_at: None,
            personal_data: None,
        };
        match crises::validate(&request, due_at, now) {
            Ok(n) => {
                // Whoever plays a commune's DGS is reached, at the addresses the request gives.
                recipients.push(n.contact_phone.clone());
                recipients.extend(n.contact_email.clone());
                new_crises.push(n);
            }
            Err(AppError::Validation(es)) => {
                errors.extend(es.into_iter().map(|e| prefixed(&format!("communes[{i}]"), e)))
            }
            Err(e) => return Err(e),
        }
    }
    let mut injects = Vec::new();
    for (i, inj) in req.injects.iter().enumerate() {
        let field = format!("injects[{i}]");
        if inj.after_minutes > MAX_INJECT_MINUTES {
            errors.push(FieldError::new(
                &format!("{field}.after_minutes"),
                format!("au plus {MAX_INJECT_MINUTES} minutes (une semaine)"),
            ));
        }
        if let Some(c) = &inj.commune
            && !req.communes.iter().any(|o| &o.commune == c)
        {
            errors.push(FieldError::new(&format!("{field}.commune"), "cette commune ne fait pas partie de l'exercice"));
        }
        if inj.effect.is_some() && st.exercise_sim.is_none() {
            errors.push(FieldError::new(
                &format!("{field}.effect"),
                "un effet ne s'applique qu'au simulateur d'exercice ([exercise] target = \"simulator\")",
            ));
        }
        match text::free_text(&format!("{field}.text"), &inj.text, INJECT_MAX, true) {
            Ok(t) => {
                let after = jiff::SignedDuration::from_mins(i64::from(inj.after_minutes));
                injects.push(NewInject {
                    commune: inj.commune.clone(),
                    due_at: now.checked_add(after).unwrap_or(now),
                    text: t,
                    effect: inj.effect,
                })
            }
            Err(e) => errors.push(e),
        }
    }
    recipients.sort();
    recipients.dedup();
    match name {
        Some(name) if errors.is_empty() => {
            Ok(NewExercise { name, mode: req.mode, scenario: String::new(), recipients, crises: new_crises, injects })
        }
        _ => Err(AppError::Validation(errors)),
    }
}

/// Starts an exercise: its crises are requested together (all or none), each marked
/// EXERCICE, ready for ops to activate as they would a real one. `scenario` is the text it was
/// read from, kept for the after-action report.
pub async fn start(
    app: &App,
    a: &Actor,
    req: &ExerciseRequest,
    scenario: Option<&str>,
) -> Result<ExerciseView, AppError> {
    let st = app.services();
    let now = st.clock.now();
    let mut new = validate(st, req, now)?;
    new.scenario = match scenario {
        Some(s) => s.to_owned(),
        // Sent as JSON (API, CLI): kept as such.
        None => serde_json::to_string_pretty(req)
            .map_err(|e| AppError::Internal(format!("exercise scenario as JSON: {e}")))?,
    };
    let id = st.store.create_exercise(&new, a, now).await.map_err(|e| match e {
        StoreError::OpenCrisis { commune, open } => AppError::problem(
            ProblemCode::OpenCrisisExists,
            format!("Un exercice est déjà en cours pour la commune {commune} ({open}) : terminez-le avant d'en commencer un autre."),
        ),
        e => e.into(),
    })?;
    tracing::info!(exercise = id, communes = new.crises.len(), mode = %new.mode, "exercise started");
    get(st, id).await
}

fn view(x: ExerciseRecord) -> ExerciseView {
    ExerciseView {
        open: x.is_open(),
        id: x.id,
        name: x.name,
        mode_label: x.mode.label_fr().to_owned(),
        mode: x.mode,
        started_at: x.started_at,
        started_by: x.started_by,
        recipients: x.recipients,
        crises: x
            .crises
            .into_iter()
            .map(|(id, state)| ExerciseCrisisView { id, state_label: state.label_fr().to_owned(), state })
            .collect(),
        injects: x
            .injects
            .into_iter()
            .map(|i| InjectView {
                due_at: i.due_at,
                commune: i.commune,
                text: i.text,
                effect: i.effect,
                delivered_at: i.delivered_at,
            })
            .collect(),
    }
}

/// Every exercise, the most recent first.
pub async fn list(st: &Services) -> Result<Vec<ExerciseView>, AppError> {
    Ok(st.store.exercises().await?.into_iter().map(view).collect())
}

/// One exercise.
pub async fn get(st: &Services, id: i64) -> Result<ExerciseView, AppError> {
    st.store
        .exercise(id)
        .await?
        .map(view)
        .ok_or_else(|| AppError::problem(ProblemCode::ExerciseNotFound, "Exercice introuvable."))
}

/// Delivers the injects due at `now` and applies their effects to the exercise simulator, in
/// order. Returns how many were delivered.
pub async fn deliver_injects(st: &Services, now: jiff::Timestamp) -> Result<usize, StoreError> {
    let channels: Vec<&str> = st.config.notify.channels.iter().map(|c| c.as_str()).collect();
    let effects = st.store.deliver_injects(&channels, now).await?;
    for effect in effects.iter().flatten() {
        apply(st, *effect).await;
    }
    Ok(effects.len())
}

/// Applies an inject's effect through the exercise simulator's control surface. A failure is
/// logged: the inject was delivered, and the animators see the effect did not happen.
async fn apply(st: &Services, effect: InjectEffect) {
    let Some(base) = &st.exercise_sim else {
        tracing::warn!(?effect, "inject effect not applied: the exercise target is not the simulator");
        return;
    };
    let sent = match effect {
        InjectEffect::LicencesAvailable(free) => {
            st.http.post(format!("{base}/_sim/licences")).json(&repli_graph_sim::FreeLicences { free }).send().await
        }
    };
    match sent.map(|r| r.status()) {
        Ok(s) if s.is_success() => tracing::info!(?effect, "inject effect applied to the exercise simulator"),
        Ok(s) => tracing::error!(?effect, status = %s, "inject effect refused by the exercise simulator"),
        Err(e) => tracing::error!(?effect, error = %e, "inject effect not applied"),
    }
}

/// The scenario a new exercise starts from on the web form: two communes, one inject.
pub fn example_scenario() -> &'static str {
    include_str!("../../../playbooks/exercises/exemple.toml")
}
