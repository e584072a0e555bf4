//! The procedures pack, rendered on demand from the crisis as it stands; the credential
//! sheets go to ops only.

use repli_core::{Actor, AuditAction, Role, text};
use repli_docs::{CREDENTIAL_SHEETS, DOCUMENTS, Documents, Metropole, Moment, PackInput};
use repli_proto::ProblemCode;
use repli_proto::api::{LoanView, LogEntryView};

use crate::crises::visible_crisis;
use crate::{AppError, Services};

/// Every document of the crisis; `passwords` fills the credential sheets (issue time only).
async fn pack(
    st: &Services,
    r: repli_store::CrisisRecord,
    kit: &crate::engine::Provisioned,
    passwords: Option<&[(String, repli_core::m365::Secret)]>,
) -> Result<(String, Vec<(String, String)>), AppError> {
    let crisis_id = r.id.clone();
    let convention = st
        .store
        .commune(&r.commune)
        .await?
        .and_then(|c| c.convention)
        // « 14 décembre 2023 (délibération …) »: the template writes « signée le … ».
        .map(|c| format!("{} (délibération {})", repli_core::fr::date(c.signed_on), c.deliberation_ref));
    let mut accounts = kit.accounts.clone();
    if let Some(passwords) = passwords {
        for a in &mut accounts {
            if let Some((_, p)) = passwords.iter().find(|(upn, _)| upn.eq_ignore_ascii_case(&a.login)) {
                a.password = p.expose().to_string();
            }
        }
    }
    let view = crate::crises::view(st, r).await?;
    let loans: Vec<LoanView> = crate::inventory::loans_of(st, &crisis_id).await?;
    let log: Vec<LogEntryView> =
        st.store.log_entries(&crisis_id).await?.into_iter().map(crate::crises::log_view).collect();
    let wipes = st.store.wipe_certificates(&crisis_id).await?;
    let d = &st.config.documents;
    let metropole = Metropole {
        astreinte_phone: d.astreinte_phone.clone(),
        astreinte_email: d.astreinte_email.clone(),
        csirt_phone: d.csirt_phone.clone(),
    };
    let chronology = chronology(st, &crisis_id).await?;
    let data = data_handback(st, &crisis_id).await?;
    let input = PackInput {
        data,
        chronology: &chronology,
        convention,
        loans: &loans,
        log: &log,
        accounts: &accounts,
        accounts_disabled: kit.disabled.len(),
        m365: kit.m365.clone(),
        simulation: st.simulation,
        time_zone: st.time_zone().clone(),
        ..PackInput::minimal(&view, &metropole, &wipes, st.clock.now())
    };
    let docs = st.documents.render(&input).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((crisis_id.to_string(), docs))
}

pub async fn render(st: &Services, a: &Actor, id: &str) -> Result<(String, Vec<(String, String)>), AppError> {
    let r = visible_crisis(st, a, id).await?;
    let kit = crate::engine::provisioned(st, &r).await?;
    let (crisis, docs) = pack(st, r, &kit, None).await?;
    // Credential sheets are for ops: nobody else sees them listed.
    let docs = docs.into_iter().filter(|(name, _)| a.role == Role::Ops || name != CREDENTIAL_SHEETS).collect();
    Ok((crisis, docs))
}

/// Writes the crisis's documents (never the credential sheets) under the daemon's documents
/// folder, `<database>.documents/<crisis>/`; returns their names (the `docs.render` step).
pub async fn archive(st: &Services, id: &repli_core::CrisisId) -> Result<Vec<String>, String> {
    let r = st.store.crisis(id).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("crise {id} introuvable"))?;
    let kit = crate::engine::provisioned(st, &r).await.map_err(|e| e.to_string())?;
    let (crisis, docs) = pack(st, r, &kit, None).await.map_err(|e| format!("{e:?}"))?;
    let dir = documents_dir(st).join(&crisis);
    private_dir(&dir)?;
    let docs: Vec<(String, String)> = docs.into_iter().filter(|(n, _)| n != CREDENTIAL_SHEETS).collect();
    let mut names = Vec::new();
    for (name, content) in &docs {
        let path = dir.join(name);
        write_private(&path, content.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        names.push(name.clone());
    }
    // The crisis zone as published (BIND fragment), for the registrar and the record.
    if let Some(zone) = &kit.zone {
        let name = "zone-dns-secours.txt".to_string();
        write_private(&dir.join(&name), zone.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
        names.push(name);
    }
    // At hand-back: what the commune must retrieve before the accounts are deleted.
    if !kit.disabled.is_empty() {
        let mut w = csv::WriterBuilder::new().delimiter(b';').from_writer(Vec::new());
        let header = ["compte", "nom", "service", "à récupérer"];
        w.write_record(header).map_err(|e| e.to_string())?;
        for upn in &kit.disabled {
            let who = kit.accounts.iter().find(|a| a.login.eq_ignore_ascii_case(upn));
            let cell = |v: &str| repli_core::text::csv_cell(v).into_owned();
            w.write_record([
                cell(upn),
                cell(who.map_or("", |a| a.name.as_str())),
                cell(who.map_or("", |a| a.service.as_str())),
                "boîte aux lettres (PST) et fichiers OneDrive".to_string(),
            ])
            .map_err(|e| e.to_string())?;
        }
        let bytes = w.into_inner().map_err(|e| e.to_string())?;
        let name = "comptes-a-recuperer.csv".to_string();
        write_private(&dir.join(&name), &bytes).map_err(|e| format!("{name}: {e}"))?;
        names.push(name);
    }
    let zip = format!("pack-{crisis}.zip");
    let bytes = Documents::zip_bytes(&docs).map_err(|e| e.to_string())?;
    write_private(&dir.join(&zip), &bytes).map_err(|e| format!("{zip}: {e}"))?;
    names.push(zip);
    Ok(names)
}

/// Writes (or rewrites) a document readable by replid alone (0600), whatever the umask; a file
/// an older replid left more open is tightened.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates a crisis's documents folder readable by replid alone (0700), whatever the umask; the
/// folder and the `<database>.documents` above it are tightened if an older replid left them
/// more open.
fn private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |d: &std::path::Path, e: std::io::Error| format!("{}: {e}", d.display());
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| err(dir, e))?;
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let open = std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
        if open {
            tracing::warn!(path = %d.display(), "documents folder readable by others: set to 0700");
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(|e| err(d, e))?;
        }
    }
    Ok(())
}

/// `<database>.documents`: where `docs.render` steps keep each crisis's pack.
pub fn documents_dir(st: &Services) -> std::path::PathBuf {
    documents_path(&st.config)
}

/// The same, from the configuration alone (backups run without a started application).
pub fn documents_path(config: &repli_config::Config) -> std::path::PathBuf {
    let db = &config.database.path;
    let mut name = db.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".documents");
    db.with_file_name(name)
}

/// The names of the crisis's documents the actor may read.
pub async fn list(st: &Services, a: &Actor, id: &str) -> Result<Vec<String>, AppError> {
    let (_, docs) = render(st, a, id).await?;
    Ok(docs.into_iter().map(|(n, _)| n).collect())
}

/// One document: its content. The credential sheets are not read this way: they are issued
/// on purpose ([`issue_sheets`], [`reissue_sheets`]).
pub async fn one(st: &Services, a: &Actor, id: &str, file: &str) -> Result<String, AppError> {
    let unknown = || AppError::problem(ProblemCode::UnknownDocument, "Document inconnu.");
    if !DOCUMENTS.iter().any(|(_, f)| *f == file) {
        return Err(unknown());
    }
    if file == CREDENTIAL_SHEETS {
        ops_only(a)?;
        return Err(AppError::problem(
            ProblemCode::MethodNotAllowed,
            "Les fiches identifiants ne se lisent pas comme un document : elles se délivrent une fois, \
             depuis la page « Fiches identifiants » de la crise (POST /api/v1/crises/{id}/credential-sheets).",
        ));
    }
    render(st, a, id).await?.1.into_iter().find(|(n, _)| *n == file).map(|(_, content)| content).ok_or_else(unknown)
}

/// Where a crisis's credential sheets stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SheetsStatus {
    /// Accounts created for the crisis.
    pub accounts: usize,
    /// Accounts whose sheet was handed over.
    pub issued: usize,
    /// Whether the accounts are in service (sheets can be issued).
    pub active: bool,
}

impl SheetsStatus {
    /// Accounts still waiting for their first sheet.
    pub fn pending(&self) -> usize {
        self.accounts.saturating_sub(self.issued)
    }
}

fn ops_only(a: &Actor) -> Result<(), AppError> {
    if a.role == Role::Ops {
        Ok(())
    } else {
        Err(AppError::Forbidden("Les fiches identifiants sont réservées à l'équipe d'exploitation."))
    }
}

/// Accounts are in service from provisioning until the hand-back disables them.
fn accounts_active(state: repli_core::CrisisState) -> bool {
    use repli_core::CrisisState as S;
    matches!(state, S::Provisioning | S::Ready | S::Delivered)
}

/// The crisis (as the actor may see it) and where its credential sheets stand.
pub async fn sheets_status(
    st: &Services,
    a: &Actor,
    id: &str,
) -> Result<(repli_store::CrisisRecord, SheetsStatus), AppError> {
    ops_only(a)?;
    let r = visible_crisis(st, a, id).await?;
    let kit = crate::engine::provisioned(st, &r).await?;
    let issued = st.store.sheets_issued(&r.id).await?;
    let done = kit.accounts.iter().filter(|acc| issued.contains(&acc.login.to_ascii_lowercase())).count();
    let status = SheetsStatus { accounts: kit.accounts.len(), issued: done, active: accounts_active(r.state) };
    Ok((r, status))
}

/// The credential sheets of the accounts that have none yet: one-time passwords set in
/// Microsoft 365 now, rendered, and only then the hand-over recorded (audited). A failed reset
/// records nothing, and ops can try again. Returns the file name and the document.
pub async fn issue_sheets(st: &Services, a: &Actor, id: &str) -> Result<(String, String), AppError> {
    sheets(st, a, id, None).await
}

/// New one-time passwords for every account of the kit (sheets lost, printer jam), with the
/// reason, audited. The previous passwords stop working.
pub async fn reissue_sheets(st: &Services, a: &Actor, id: &str, reason: &str) -> Result<(String, String), AppError> {
    let reason = text::free_text("reason", reason, text::NOTE_MAX, true).map_err(|e| AppError::Validation(vec![e]))?;
    sheets(st, a, id, Some(&reason)).await
}

async fn sheets(st: &Services, a: &Actor, id: &str, reissue: Option<&str>) -> Result<(String, String), AppError> {
    ops_only(a)?;
    // One issue at a time, so two clicks cannot both reset the same passwords.
    let _one_at_a_time = st.credential_sheets.lock().await;
    let r = visible_crisis(st, a, id).await?;
    let mut kit = crate::engine::provisioned(st, &r).await?;
    if kit.accounts.is_empty() {
        return Err(AppError::problem(
            ProblemCode::NoAccountsYet,
            "Aucun compte n'a encore été créé pour cette crise : les fiches identifiants seront disponibles après l'étape de création des comptes.",
        ));
    }
    if !accounts_active(r.state) {
        return Err(AppError::problem(
            ProblemCode::CredentialSheetsIssued,
            format!(
                "La crise est {} : les comptes ne sont pas en service, aucune fiche ne peut être délivrée.",
                r.state.label_fr()
            ),
        ));
    }
    if reissue.is_none() {
        let issued = st.store.sheets_issued(&r.id).await?;
        kit.accounts.retain(|acc| !issued.contains(&acc.login.to_ascii_lowercase()));
        if kit.accounts.is_empty() {
            return Err(AppError::problem(
                ProblemCode::CredentialSheetsIssued,
                "Les fiches de tous les comptes ont déjà été délivrées (voir le journal d'audit). Si elles sont perdues, \
                 délivrez de nouveaux mots de passe depuis la page « Fiches identifiants ».",
            ));
        }
    }
    // One-time passwords, set now (change forced at first sign-in), shown once, never stored.
    let upns: Vec<String> = kit.accounts.iter().map(|acc| acc.login.clone()).collect();
    let passwords = st.target(&r).0.reset_passwords(&upns).await.map_err(|e| match e {
        // What to grant, for ops (a role on the tenant or on the administrative unit).
        repli_core::m365::Error::Forbidden { missing, .. } => AppError::problem(
            ProblemCode::M365Refused,
            format!(
                "Microsoft 365 refuse de réinitialiser les mots de passe : il manque {}. Aucune fiche n'a été délivrée ; réessayer une fois le droit accordé.",
                missing.fr()
            ),
        ),
        other => AppError::Internal(format!("passwords: {other}")),
    })?;
    let crisis = r.id.clone();
    let (_, docs) = pack(st, r, &kit, Some(&passwords)).await?;
    let sheet = docs
        .into_iter()
        .find(|(n, _)| n == CREDENTIAL_SHEETS)
        .map(|(_, content)| content)
        .ok_or_else(|| AppError::Internal("credential sheets template missing".into()))?;
    let issue = match reissue {
        Some(reason) => repli_store::SheetsIssue::Reissue { reason },
        None => repli_store::SheetsIssue::New,
    };
    st.store.record_sheets(&crisis, &upns, issue, a, st.clock.now()).await?;
    tracing::info!(crisis = %crisis, accounts = upns.len(), reissue = reissue.is_some(), "credential sheets issued");
    Ok((format!("fiches-identifiants-{crisis}.html"), sheet))
}

/// The data hand-back as the PV states it: the export step's archive, or ops' waiver (the
/// step skipped, with its reason).
async fn data_handback(st: &Services, id: &repli_core::CrisisId) -> Result<Option<repli_docs::DataHandback>, AppError> {
    for run in st.store.runs_of(id).await?.into_iter().rev() {
        if run.playbook != repli_core::run::PlaybookName::Handback {
            continue;
        }
        let steps = st.store.steps(run.id).await?;
        let Some(export) = steps.iter().find(|s| s.kind == repli_core::StepKind::M365Export) else { continue };
        return Ok(match (export.state, &export.output) {
            (repli_core::StepState::Skipped, _) => {
                Some(repli_docs::DataHandback::Waived { reason: export.note.clone().unwrap_or_default() })
            }
            (repli_core::StepState::Succeeded, Some(repli_core::run::StepOutput::Exported(x))) => {
                Some(repli_docs::DataHandback::Archived {
                    items: x.items,
                    exported: x.exported,
                    bytes: x.bytes,
                    manifest_sha256: x.manifest_sha256.clone(),
                    channels: x.channels,
                })
            }
            _ => None,
        });
    }
    Ok(None)
}

/// The pack as a zip (never the credential sheets): its file name and bytes.
pub async fn zip(st: &Services, a: &Actor, id: &str) -> Result<(String, Vec<u8>), AppError> {
    let (crisis, docs) = render(st, a, id).await?;
    // Credential sheets are handed over once, on their own, never in the zip.
    let docs: Vec<_> = docs.into_iter().filter(|(name, _)| name != CREDENTIAL_SHEETS).collect();
    let bytes = Documents::zip_bytes(&docs).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((format!("pack-{crisis}.zip"), bytes))
}

/// What happened to a crisis, oldest first, written for people: its transitions (and who made
/// them), each step done with its title, manual steps with who confirmed them, failures and
/// skips, suspensions with their reason, and runs of loans, returns or wipes as one line each
/// (« 4 équipement(s) prêté(s) »). Read from the whole audit log, not the crisis view's recent
/// history.
pub async fn chronology(st: &Services, id: &repli_core::CrisisId) -> Result<Vec<Moment>, AppError> {
    let mut titles = std::collections::HashMap::new();
    for run in st.store.runs_of(id).await? {
        for s in st.store.steps(run.id).await? {
            titles.insert(format!("step/{}/{}", run.playbook, s.step_id), s.title);
        }
    }
    Ok(moments(&crisis_audit(st, id).await?, &titles))
}

/// Every audit entry of a crisis, oldest first (read in pages).
pub(crate) async fn crisis_audit(
    st: &Services,
    id: &repli_core::CrisisId,
) -> Result<Vec<repli_core::AuditEntry>, AppError> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let filter = repli_store::AuditFilter {
            crisis: Some(id.to_string()),
            after_seq: after,
            limit: 10_000,
            ..Default::default()
        };
        let page = st.store.audit_entries(&filter).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() >= 10_000;
        entries.extend(page);
        if !full {
            break;
        }
    }
    Ok(entries)
}

/// The chronology's lines from audit entries (oldest first) and step titles by target.
fn moments(entries: &[repli_core::AuditEntry], titles: &std::collections::HashMap<String, String>) -> Vec<Moment> {
    let mut out: Vec<Moment> = Vec::new();
    // The last line's kind when it counts items (to add the next one to it), and its count.
    let mut run: Option<(&'static str, usize)> = None;
    let mut confirmed = std::collections::HashSet::new();
    for e in entries {
        let Ok(at) = e.at.parse::<jiff::Timestamp>() else { continue };
        // An action this version does not know has no line in a report for people.
        let Some(action) = e.action_kind() else { continue };
        let reason = e.reason();
        let reason = reason.as_deref();
        let title = || titles.get(&e.target).cloned().unwrap_or_else(|| e.target.clone());
        let by_person = e.actor_role != "system";
        let counted = match action {
            AuditAction::InventoryLend => Some(("prêté", "prêtés")),
            AuditAction::InventoryCheckIn => Some(("rendu", "rendus")),
            AuditAction::InventoryWipe => Some(("effacé avec certificat", "effacés avec certificat")),
            _ => None,
        };
        if let Some((one, many)) = counted {
            // Within the hour after the line's first item, the same kind of line counts on.
            match (&mut run, out.last_mut()) {
                (Some((kind, n)), Some(last)) if *kind == one && at.duration_since(last.at).as_hours() < 1 => {
                    *n += 1;
                    last.text = format!("{n} équipements {many}");
                }
                _ => {
                    out.push(Moment { at, text: format!("1 équipement {one}") });
                    run = Some((one, 1));
                }
            }
            continue;
        }
        let text = match action {
            // The crisis's own life: its request and each transition (not the agents list, nor
            // the purge of personal data, which have no French label to show).
            a if a.is_crisis_lifecycle() => {
                let mut t = repli_core::fr::action(a.as_str());
                if by_person {
                    t.push_str(&format!(" (par {})", e.actor_name));
                }
                if let Some(r) = reason {
                    t.push_str(&format!(" — motif : {r}"));
                }
                t
            }
            AuditAction::EngineTaskDone => {
                confirmed.insert(e.target.clone());
                format!("✓ {} — confirmé par {}", title(), e.actor_name)
            }
            AuditAction::EngineStepSucceeded if !confirmed.contains(&e.target) => format!("✓ {}", title()),
            AuditAction::EngineStepFailed => format!("✗ {} : échec", title()),
            AuditAction::EngineStepSkipped => {
                format!("Étape ignorée : {}{}", title(), reason.map(|r| format!(" — motif : {r}")).unwrap_or_default())
            }
            AuditAction::EngineStepRetried => format!("Étape relancée : {}", title()),
            AuditAction::InventoryWriteOff => {
                format!(
                    "Équipement {} passé en perte{}",
                    e.target,
                    reason.map(|r| format!(" — {r}")).unwrap_or_default()
                )
            }
            AuditAction::SlaSuspend => {
                format!("Délai suspendu{}", reason.map(|r| format!(" — motif : {r}")).unwrap_or_default())
            }
            AuditAction::SlaResume
            | AuditAction::LegalFacts
            | AuditAction::LegalCnilDone
            | AuditAction::LegalComplaintDone => repli_core::fr::action(action.as_str()),
            _ => continue,
        };
        run = None;
        out.push(Moment { at, text });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: &str, role: &str, actor: &str, action: &str, target: &str, details: &str) -> repli_core::AuditEntry {
        assert!(action.starts_with("future.") || action.parse::<AuditAction>().is_ok(), "{action}");
        repli_core::AuditEntry {
            seq: 0,
            at: at.into(),
            actor_id: 0,
            actor_name: actor.into(),
            actor_role: role.into(),
            auth: "token".into(),
            commune: None,
            crisis: None,
            action: action.into(),
            target: target.into(),
            details: details.into(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn the_chronology_is_written_for_people() {
        let titles = std::collections::HashMap::from([
            ("step/activation/accounts".to_owned(), "Créer les comptes des 25 agents".to_owned()),
            ("step/activation/laptops".to_owned(), "Préparer les portables".to_owned()),
        ]);
        let log = [
            entry("2026-12-01T09:00:00Z", "dgs", "Anne Martin", "crisis.request", "13005-2026-001", "{}"),
            entry("2026-12-01T09:02:00Z", "system", "replid", "engine.step.started", "step/activation/accounts", "{}"),
            entry(
                "2026-12-01T09:02:10Z",
                "system",
                "replid",
                "engine.step.succeeded",
                "step/activation/accounts",
                "{}",
            ),
            entry("2026-12-01T09:30:00Z", "ops", "Astreinte", "engine.task.done", "step/activation/laptops", "{}"),
            entry("2026-12-01T09:30:00Z", "system", "replid", "engine.step.succeeded", "step/activation/laptops", "{}"),
            entry("2026-12-01T10:00:00Z", "ops", "Astreinte", "inventory.lend", "S1", "{}"),
            entry("2026-12-01T10:01:00Z", "ops", "Astreinte", "inventory.lend", "S2", "{}"),
            entry(
                "2026-12-01T10:02:00Z",
                "ops",
                "Astreinte",
                "sla.suspend",
                "x",
                r#"{"reason":"<b>locaux fermés</b>"}"#,
            ),
            entry("2026-12-01T10:03:00Z", "ops", "Astreinte", "inventory.lend", "S3", "{}"),
            // Neither the agents list nor an action of a later version is a line of the report.
            entry("2026-12-01T10:30:00Z", "ops", "Astreinte", "crisis.agents.added", "13005-2026-001", "{}"),
            entry("2026-12-01T10:31:00Z", "ops", "Astreinte", "future.thing", "13005-2026-001", "{}"),
            entry("2026-12-01T11:00:00Z", "ops", "Astreinte", "crisis.deliver", "13005-2026-001", "{}"),
        ];
        let texts: Vec<String> = moments(&log, &titles).into_iter().map(|m| m.text).collect();
        assert_eq!(
            texts,
            [
                "Demande du kit (par Anne Martin)",
                "✓ Créer les comptes des 25 agents",
                "✓ Préparer les portables — confirmé par Astreinte",
                "2 équipements prêtés",
                "Délai suspendu — motif : <b>locaux fermés</b>",
                "1 équipement prêté",
                "Kit livré (par Astreinte)",
            ]
        );
    }
}
