//! The commands that talk to replid.

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use repli_core::CrisisAction;
use repli_proto::Client;
use repli_proto::api::{
    Contact, CrisisQuery, CrisisRequest, CrisisView, LegalDoneRequest, LegalFactsRequest, NewUserRequest,
    PasswordRequest, TokenRequest,
};

use crate::{Cli, Command, CommunesCmd, CrisisCmd, HandbackCmd, JsonFlag, TokenCmd, UserCmd, output};

fn client(cli: &Cli) -> anyhow::Result<Client> {
    let ca = match &cli.ca_cert {
        Some(p) => Some(crate::read_file(p)?.into_bytes()),
        None => None,
    };
    let c = Client::with_ca(&cli.server, cli.token.clone(), ca.as_deref())?;
    if cli.token.is_none() {
        anyhow::bail!(
            "aucun jeton : passez --token ou définissez REPLI_TOKEN (jeton affiché à la création de l'utilisateur)"
        );
    }
    Ok(c)
}

fn show_crisis(c: &CrisisView, out: JsonFlag) -> anyhow::Result<()> {
    if out.json {
        output::print_json(c)
    } else {
        output::crisis(c);
        Ok(())
    }
}

async fn act(
    cli: &Cli,
    id: &str,
    action: CrisisAction,
    reason: Option<&str>,
    yes: bool,
    out: JsonFlag,
) -> anyhow::Result<()> {
    let c = client(cli)?;
    let id = repli_core::CrisisId::parse(id).map_err(|e| anyhow::anyhow!("{e}"))?;
    // An action that undoes a kit says what it will do and asks, from the state it is taken in
    // (read only for those actions: the others go straight to the daemon).
    if action.undoes_kit() {
        let current = c.crisis(id.as_str()).await?;
        if let Some(what) = action.destructive(current.state) {
            crate::confirm::confirm(what, &format!("crise {id}, {}", current.commune_name), yes)?;
        }
    }
    // Activation goes ahead, but ops hear first that the tenant's last preflight failed.
    if action == CrisisAction::Activate
        && let Some(warning) = c.crisis(id.as_str()).await?.m365_warning
    {
        eprintln!("Attention : {warning} (détail : repli m365 preflight)");
    }
    let view = c.act(&id, action, reason).await?;
    show_crisis(&view, out)
}

/// `repli handback verify-archive`: offline, in French (the DGS may run it on what they
/// received); exit status 1 when the archive is refused.
fn verify_archive(path: &std::path::Path, keys: &[String]) -> ExitCode {
    let pins: Result<Vec<_>, String> = keys.iter().map(|k| repli_app::backup::parse_key_arg(k)).collect();
    let pins = match pins {
        Ok(p) => p,
        Err(e) => {
            eprintln!("--public-key : {e}");
            return ExitCode::from(2);
        }
    };
    match repli_app::handback::verify_archive(path, &repli_app::handback::trust_of(&pins)) {
        Ok(v) => {
            let (exported, bytes, other) = v.manifest.tally();
            println!(
                "Archive vérifiée ({}) : crise {}, {exported} élément(s) exporté(s), {bytes} octets, signée par la clé {}.",
                path.display(),
                v.manifest.crisis,
                repli_core::audit::fingerprint(&v.key)
            );
            if other > 0 {
                println!("{other} élément(s) non exporté(s), listés dans le manifeste :");
                for e in v.manifest.entries.iter().filter(|e| e.status != repli_core::handback::EntryStatus::Exported) {
                    println!("  {} : {}", e.original, e.status.fr());
                }
            }
            for n in &v.manifest.notes {
                println!("Note : {n}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("Archive REFUSÉE ({}) : {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "repli", &mut std::io::stdout());
        }
        Command::Audit(cmd) => return crate::audit::run(cmd, || client(&cli)).await,
        Command::Sla(crate::sla::SlaCmd::Report { json, csv }) => {
            return crate::sla::report(&client(&cli)?, *json, *csv).await;
        }
        Command::Sla(cmd) => return crate::sla::run(cmd),
        Command::Playbook(crate::engine::PlaybookCmd::Check { dir }) => return Ok(crate::engine::check(dir)),
        Command::Playbook(crate::engine::PlaybookCmd::Plan(a)) => return crate::engine::plan(a),
        Command::Playbook(crate::engine::PlaybookCmd::Calibrate(a)) => {
            return crate::engine::calibrate(&client(&cli)?, a).await;
        }
        Command::Task(cmd) => return crate::engine::task(&client(&cli)?, cmd).await,
        Command::M365(cmd) => return crate::m365::run(&client(&cli)?, cmd).await,
        Command::Exercise(cmd) => return crate::exercise::run(&client(&cli)?, cmd).await,
        Command::Dns(cmd) => return crate::dns::run(&client(&cli)?, cmd).await,
        Command::Step(cmd) => return crate::engine::step(&client(&cli)?, cmd).await,
        Command::Crisis(CrisisCmd::Watch { id }) => return crate::engine::watch(&client(&cli)?, id).await,
        Command::Inventory(cmd) => return crate::inventory::inventory(&client(&cli)?, cmd).await,
        Command::Loan(cmd) => return crate::inventory::loan(&client(&cli)?, cmd).await,
        Command::Handback(HandbackCmd::VerifyArchive { path, public_key }) => {
            return Ok(verify_archive(path, public_key));
        }
        Command::Handback(HandbackCmd::Archive { id, out }) => {
            let out = out.clone().unwrap_or_else(|| format!("restitution-{id}.zip").into());
            let size = client(&cli)?.handback_archive(id, &out).await?;
            println!(
                "Archive écrite : {} ({size} octets). Vérifier : repli handback verify-archive {} --public-key CLÉ",
                out.display(),
                out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Handback(HandbackCmd::Checkin(a)) => return crate::inventory::checkin(&client(&cli)?, a).await,
        Command::Handback(HandbackCmd::WriteOff { crisis, serial, reason, yes }) => {
            crate::confirm::confirm(repli_core::Destructive::WriteOff, &format!("{serial}, crise {crisis}"), *yes)?;
            return crate::inventory::write_off(&client(&cli)?, crisis, serial, reason).await;
        }
        Command::Crisis(CrisisCmd::Agents { id, set: Some(file), .. }) => {
            return crate::inventory::set_agents(&client(&cli)?, id, file, false).await;
        }
        Command::Crisis(CrisisCmd::Agents { id, add: Some(file), .. }) => {
            return crate::inventory::set_agents(&client(&cli)?, id, file, true).await;
        }
        Command::Crisis(CrisisCmd::Agents { id, accept: true, out, .. }) => {
            show_crisis(&client(&cli)?.accept_agents(id).await?, *out)?
        }
        Command::Crisis(CrisisCmd::Agents { id, out, .. }) => {
            let agents = client(&cli)?.agents(id).await?;
            if out.json { output::print_json(&agents)? } else { output::agents(&agents) }
        }
        Command::Crisis(CrisisCmd::Sheets { id, out, reissue, reason, yes }) => {
            // Created new, readable by the user alone: the file holds passwords.
            let mut file = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(out).with_context(|| {
                    format!("{} : fichier impossible à créer (il ne doit pas exister)", out.display())
                })?
            };
            let c = client(&cli)?;
            let html = match (reissue, reason) {
                (true, Some(reason)) => {
                    crate::confirm::confirm(repli_core::Destructive::ReissueCredentials, &format!("crise {id}"), *yes)
                        .inspect_err(|_| {
                            let _ = std::fs::remove_file(out);
                        })?;
                    c.reissue_sheets(id, reason).await
                }
                _ => c.issue_sheets(id).await,
            };
            let html = html.inspect_err(|_| {
                let _ = std::fs::remove_file(out);
            })?;
            std::io::Write::write_all(&mut file, html.as_bytes())?;
            let n = html.matches("Mot de passe initial").count();
            println!("{n} fiche(s) écrite(s) dans {} : imprimez-les, puis supprimez le fichier.", out.display());
        }
        Command::Notifications(out) => {
            let list = client(&cli)?.notifications().await?;
            if out.json { output::print_json(&list)? } else { output::notifications(&list) }
        }
        Command::Crisis(CrisisCmd::Suspend { id, reason, out }) => {
            show_crisis(&client(&cli)?.suspend_sla(id, reason).await?, *out)?
        }
        Command::Crisis(CrisisCmd::Resume { id, out }) => show_crisis(&client(&cli)?.resume_sla(id).await?, *out)?,
        Command::Crisis(CrisisCmd::Legal { id, aware_at, personal_data, done, at, out }) => {
            let c = client(&cli)?;
            let mut view = None;
            if aware_at.is_some() || personal_data.is_some() {
                let req = LegalFactsRequest { aware_at: *aware_at, personal_data: *personal_data };
                view = Some(c.set_legal_facts(id, &req).await?);
            }
            if let Some(kind) = done {
                let kind = repli_core::LegalKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == kind)
                    .ok_or_else(|| anyhow::anyhow!("--done takes cnil or complaint"))?;
                view = Some(c.legal_done(id, kind, &LegalDoneRequest { at: *at }).await?);
            }
            let view = match view {
                Some(v) => v,
                None => c.crisis(id).await?,
            };
            if out.json { output::print_json(&view.legal)? } else { output::legal(&view) }
        }
        Command::User(UserCmd::Add { role, name, commune, expires_days, out }) => {
            let req = NewUserRequest {
                name: name.clone(),
                role: *role,
                commune: commune.clone(),
                expires_days: *expires_days,
            };
            let created = client(&cli)?.create_user(&req).await?;
            if out.json {
                output::print_json(&created)?;
            } else {
                eprintln!(
                    "Utilisateur {} ({}) créé. Son jeton, affiché une seule fois :",
                    created.user.id, created.user.role
                );
                println!("{}", created.token.token);
            }
        }
        Command::User(UserCmd::List(out)) => {
            let users = client(&cli)?.users().await?;
            if out.json { output::print_json(&users)? } else { output::users(&users) }
        }
        Command::User(UserCmd::Token { user_id, expires_days, out }) => {
            let t = client(&cli)?.issue_token(*user_id, &TokenRequest { expires_days: *expires_days }).await?;
            if out.json {
                output::print_json(&t)?;
            } else {
                eprintln!("Nouveau jeton de l'utilisateur {user_id}, affiché une seule fois :");
                println!("{}", t.token);
            }
        }
        Command::User(UserCmd::Password { user_id, login }) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let u = client(&cli)?.set_password(*user_id, &PasswordRequest { login: login.clone(), password }).await?;
            println!("Identifiant web « {} » défini pour l'utilisateur {}.", u.login.unwrap_or_default(), u.id);
        }
        Command::Token(TokenCmd::Revoke { user_id }) => {
            let r = client(&cli)?.revoke_tokens(*user_id).await?;
            println!("{} jeton(s) et session(s) révoqué(s) pour l'utilisateur {}.", r.revoked, r.user_id);
        }
        Command::Crisis(CrisisCmd::Log { id, add, kind, text, out }) => {
            let c = client(&cli)?;
            if *add {
                let (Some(kind), Some(text)) = (kind, text) else {
                    anyhow::bail!("--add needs --type and the entry's text");
                };
                let e = c.add_log(id, kind, text).await?;
                if out.json {
                    output::print_json(&e)?;
                } else {
                    println!("Entrée n° {} ajoutée à la main courante de la crise {id}.", e.seq);
                }
            } else {
                let entries = c.crisis_log(id).await?;
                if out.json {
                    output::print_json(&entries)?;
                } else {
                    output::main_courante(id, &entries);
                }
            }
        }
        Command::Whoami(out) => {
            let me = client(&cli)?.me().await?;
            if out.json {
                output::print_json(&me)?;
            } else {
                let commune = me.commune.as_ref().map_or_else(String::new, |c| format!(", commune {c}"));
                println!("{} (utilisateur {}, rôle {}{commune})", me.name, me.user_id, me.role);
            }
        }
        Command::Communes(CommunesCmd::List(out)) => {
            let list = client(&cli)?.communes().await?;
            if out.json { output::print_json(&list)? } else { output::communes(&list) }
        }
        Command::Communes(CommunesCmd::Show { insee, out }) => {
            let c = client(&cli)?.commune(insee).await?;
            if out.json { output::print_json(&c)? } else { output::commune(&c) }
        }
        Command::Crisis(CrisisCmd::Request(a)) => {
            let req = CrisisRequest {
                commune: a.commune.clone(),
                contact: Contact {
                    name: a.contact_name.clone(),
                    phone: a.contact_phone.clone(),
                    email: a.contact_email.clone(),
                },
                agents: a.agents,
                delivery_address: a.delivery_address.clone(),
                notes: a.notes.clone(),
                needs: None,
                aware_at: a.aware_at,
                personal_data: a.personal_data,
            };
            let view = client(&cli)?.request_crisis(&req, a.idempotency_key.as_deref()).await?;
            if !a.out.json {
                println!(
                    "Demande enregistrée : crise {} — kit dû au plus tard {}.",
                    view.id,
                    output::when(view.sla.due_at)
                );
            }
            show_crisis(&view, a.out)?;
        }
        Command::Crisis(CrisisCmd::List { commune, state, open, out }) => {
            let q = CrisisQuery { commune: commune.clone(), state: state.map(|s| s.0), open: open.then_some(true) };
            let list = client(&cli)?.crises(&q).await?;
            if out.json { output::print_json(&list)? } else { output::crises(&list) }
        }
        Command::Crisis(CrisisCmd::Show { id, history, out }) => {
            let c = client(&cli)?;
            let mut view = c.crisis(id).await.with_context(|| format!("crise {id}"))?;
            if *history {
                view.history =
                    c.crisis_history_all(id).await.with_context(|| format!("historique de la crise {id}"))?;
            }
            show_crisis(&view, *out)?;
        }
        Command::Crisis(CrisisCmd::Activate { id, out }) => {
            act(&cli, id, CrisisAction::Activate, None, false, *out).await?
        }
        Command::Crisis(CrisisCmd::Reject { id, reason, out }) => {
            act(&cli, id, CrisisAction::Reject, Some(reason), false, *out).await?
        }
        Command::Crisis(CrisisCmd::Cancel { id, reason, yes, out }) => {
            act(&cli, id, CrisisAction::Cancel, Some(reason), *yes, *out).await?
        }
        Command::Crisis(CrisisCmd::Act { id, action, reason, yes, out }) => {
            act(&cli, id, action.0, reason.as_deref(), *yes, *out).await?
        }
        Command::Handback(HandbackCmd::Start { id, reason, yes, out }) => {
            act(&cli, id, CrisisAction::StartHandback, Some(reason), *yes, *out).await?
        }
        Command::Handback(HandbackCmd::Close { id, out }) => {
            act(&cli, id, CrisisAction::Close, None, false, *out).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}
