//! `repli m365 preflight`: is the tenant ready for an activation? Read-only checks (and one
//! idempotent canary meeting), each in French with how to fix it, so a missing permission,
//! role, licence or policy is found on a quiet day rather than at « Créer les comptes ».

use crate::client::{Credential, Opts};
use crate::ops::GraphProvider;
use crate::{CheckStatus, Error, Grant, PreflightCheck, PreflightReport, PreflightSpec};
use repli_core::m365::{LEAST_PRIVILEGE, USER_ADMINISTRATOR};
use serde_json::json;

/// Business plans are sold for at most 300 seats.
const BUSINESS_SEATS: u32 = 300;

fn check(key: &str, title: &str, status: CheckStatus, detail: String, fix: Option<String>) -> PreflightCheck {
    PreflightCheck { key: key.into(), title: title.into(), status, detail, fix }
}

/// What a Graph error says, for ops, in French.
fn refused(e: &Error) -> (String, Option<String>) {
    match e {
        Error::Forbidden { missing, code, .. } => {
            (format!("Microsoft 365 refuse l'accès ({code})"), Some(format!("Accorder {}.", missing.fr())))
        }
        other => (format!("Microsoft 365 : {other}"), None),
    }
}

/// Days from `today` (`YYYY-MM-DD`) to `expiry`, negative when past.
fn days_until(today: &str, expiry: jiff::civil::Date) -> Option<i64> {
    let today: jiff::civil::Date = today.parse().ok()?;
    Some(i64::from(today.until(expiry).ok()?.get_days()))
}

impl GraphProvider {
    pub(crate) async fn run_preflight(&self, spec: &PreflightSpec) -> PreflightReport {
        let mut checks = vec![self.credential_check(spec)];
        let claims = match self.graph().token_claims().await {
            Ok(c) => {
                checks.push(check(
                    "token",
                    "Connexion de l'application",
                    CheckStatus::Ok,
                    "jeton d'accès obtenu".into(),
                    None,
                ));
                c
            }
            Err(e) => {
                checks.push(check(
                    "token",
                    "Connexion de l'application",
                    CheckStatus::Fail,
                    format!("aucun jeton : {e}"),
                    Some("Vérifier l'identifiant du locataire et de l'application, et le secret ou le certificat enregistré dans Entra ID.".into()),
                ));
                return PreflightReport::new(checks);
            }
        };
        checks.push(permissions_check(&claims.roles));
        checks.push(role_check(&claims.wids, spec.admin_unit.as_deref()));
        let (licences, domain, meeting) =
            tokio::join!(self.licences_check(spec), self.root_domain_check(spec), self.meeting_check(spec));
        checks.extend([licences, domain, meeting]);
        PreflightReport::new(checks)
    }

    fn credential_check(&self, spec: &PreflightSpec) -> PreflightCheck {
        let title = "Validité du certificat ou du secret";
        let (what, expiry) = match &self.graph().config.credential {
            Credential::Certificate(c) => {
                let secs = c.not_after().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let date = jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX))
                    .ok()
                    .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date());
                ("certificat", date)
            }
            Credential::Secret(_) => ("secret", spec.secret_expires_on.as_deref().and_then(|d| d.parse().ok())),
        };
        let Some(expiry) = expiry else {
            return check(
                "credential",
                title,
                CheckStatus::Warn,
                format!("date d'expiration du {what} inconnue"),
                Some(
                    "Renseigner m365.secret_expires_on (AAAA-MM-JJ), ou passer à un certificat (docs/M365.md).".into(),
                ),
            );
        };
        let left = days_until(&spec.today, expiry);
        let when = format!("{:02}/{:02}/{}", expiry.day(), expiry.month(), expiry.year());
        match left {
            Some(d) if d < 0 => check(
                "credential",
                title,
                CheckStatus::Fail,
                format!("{what} expiré depuis le {when}"),
                Some(format!(
                    "Créer un nouveau {what} dans l'inscription d'application (Entra ID › Certificats et secrets) et mettre à jour la configuration de replid."
                )),
            ),
            Some(d) if d <= i64::from(spec.warn_days) => check(
                "credential",
                title,
                CheckStatus::Fail,
                format!("{what} expire le {when}, dans {d} jour(s)"),
                Some(format!("Renouveler le {what} avant cette date : une activation le demanderait.")),
            ),
            _ => check("credential", title, CheckStatus::Ok, format!("{what} valable jusqu'au {when}"), None),
        }
    }

    async fn licences_check(&self, spec: &PreflightSpec) -> PreflightCheck {
        let title = "Licences disponibles";
        let skus = match self.skus().await {
            Ok(s) => s,
            Err(Error::SkuNotFound(part)) => {
                return check(
                    "licences",
                    title,
                    CheckStatus::Fail,
                    format!("le locataire n'a pas d'abonnement {part}"),
                    Some("Souscrire ce produit, ou corriger m365.sku_part_numbers.".into()),
                );
            }
            Err(e) => {
                let (detail, fix) = refused(&e);
                return check("licences", title, CheckStatus::Fail, detail, fix);
            }
        };
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        for s in &skus {
            if !s.enabled_state.eq_ignore_ascii_case("Enabled") {
                problems.push(format!("{} : abonnement {} ", s.part, s.enabled_state));
            } else if s.available < spec.largest_kit {
                problems.push(format!(
                    "{} : {} libre(s) pour {} nécessaires au plus grand kit",
                    s.part, s.available, spec.largest_kit
                ));
            } else {
                notes.push(format!("{} : {} libre(s)", s.part, s.available));
            }
            if s.part.to_ascii_lowercase().contains("business") && spec.largest_kit > BUSINESS_SEATS {
                problems.push(format!("{} : les offres Business sont limitées à {BUSINESS_SEATS} postes", s.part));
            }
        }
        // The EEA suites are sold without Teams (part numbers `…(no_Teams)`): a kit needs a
        // Teams SKU beside them, or its Team and visio are refused.
        if skus.iter().all(|s| s.part.to_ascii_lowercase().contains("no_teams")) {
            problems
                .push("aucune des licences configurées n'inclut Teams (espace collaboratif et visio refusés)".into());
        }
        if problems.is_empty() {
            check("licences", title, CheckStatus::Ok, notes.join(" ; "), None)
        } else {
            check(
                "licences",
                title,
                CheckStatus::Fail,
                problems.join(" ; "),
                Some(
                    "Acheter ou libérer des licences (centre d'administration Microsoft 365 › Facturation › Licences)."
                        .into(),
                ),
            )
        }
    }

    async fn root_domain_check(&self, spec: &PreflightSpec) -> PreflightCheck {
        let title = "Domaine racine des kits";
        let Some(root) = &spec.root_domain else {
            return check(
                "root_domain",
                title,
                CheckStatus::Warn,
                "le modèle de domaine n'a pas de racine commune : chaque domaine de secours sera vérifié par DNS"
                    .into(),
                None,
            );
        };
        match self.get_domain(root, Opts::default()).await {
            Ok(d) => {
                let verified = d.is_verified;
                let managed = d.authentication_type.eq_ignore_ascii_case("Managed");
                if verified && managed {
                    check(
                        "root_domain",
                        title,
                        CheckStatus::Ok,
                        format!("{root} vérifié et géré dans le cloud : ses sous-domaines le sont d'office"),
                        None,
                    )
                } else {
                    check(
                        "root_domain",
                        title,
                        CheckStatus::Fail,
                        format!(
                            "{root} : {}{}",
                            if verified { "vérifié" } else { "non vérifié" },
                            if managed {
                                ""
                            } else {
                                ", fédéré (les comptes des kits doivent être gérés dans le cloud)"
                            }
                        ),
                        Some(format!("Vérifier {root} (enregistrement TXT) et le laisser en authentification gérée.")),
                    )
                }
            }
            Err(Error::Graph { status: 404, .. }) => check(
                "root_domain",
                title,
                CheckStatus::Fail,
                format!("{root} n'est pas un domaine du locataire"),
                Some(format!("Ajouter et vérifier {root} une fois pour toutes (centre d'administration › Domaines).")),
            ),
            Err(e) => {
                let (detail, fix) = refused(&e);
                check("root_domain", title, CheckStatus::Fail, detail, fix)
            }
        }
    }

    async fn meeting_check(&self, spec: &PreflightSpec) -> PreflightCheck {
        let title = "Réunions Teams (stratégie d'accès)";
        let Some(organizer) = &spec.organizer else {
            return check(
                "meeting_policy",
                title,
                CheckStatus::Warn,
                "aucun organisateur témoin : la stratégie d'accès n'est pas vérifiée".into(),
                Some(
                    "Renseigner m365.preflight_organizer (identifiant d'objet d'un compte couvert par la stratégie)."
                        .into(),
                ),
            );
        };
        // createOrGet with a fixed externalId: the same canary meeting every day.
        let body = json!({"externalId": "repli-preflight", "subject": "Repli — contrôle quotidien (ne pas utiliser)"});
        match self
            .graph()
            .call("meeting.createOrGet", Opts::default(), |c| c.user(organizer).online_meetings().create_or_get(&body))
            .await
        {
            Ok(_) => check(
                "meeting_policy",
                title,
                CheckStatus::Ok,
                "réunion témoin créée au nom de l'organisateur désigné".into(),
                None,
            ),
            Err(e) => {
                let (detail, fix) = refused(&e);
                check("meeting_policy", title, CheckStatus::Fail, detail, fix)
            }
        }
    }
}

fn permissions_check(roles: &[String]) -> PreflightCheck {
    let title = "Permissions de l'application";
    let has = |p: &str| roles.iter().any(|r| r.eq_ignore_ascii_case(p));
    let missing: Vec<&str> = LEAST_PRIVILEGE.iter().copied().filter(|p| !has(p)).collect();
    let extra: Vec<&str> = roles
        .iter()
        .map(String::as_str)
        .filter(|r| !LEAST_PRIVILEGE.iter().any(|p| p.eq_ignore_ascii_case(r)))
        .collect();
    if !missing.is_empty() {
        let grants: Vec<String> = missing.iter().map(|p| Grant::Permission((*p).to_string()).fr()).collect();
        return check(
            "permissions",
            title,
            CheckStatus::Fail,
            format!("manquantes : {}", missing.join(", ")),
            Some(format!("Accorder {}.", grants.join(" ; "))),
        );
    }
    if !extra.is_empty() {
        return check(
            "permissions",
            title,
            CheckStatus::Warn,
            format!("plus que nécessaire : {}", extra.join(", ")),
            Some("Retirer ces permissions : Repli n'en a pas besoin (moindre privilège).".into()),
        );
    }
    check("permissions", title, CheckStatus::Ok, format!("exactement les {} nécessaires", LEAST_PRIVILEGE.len()), None)
}

fn role_check(wids: &[String], admin_unit: Option<&str>) -> PreflightCheck {
    let title = "Rôle d'annuaire (réinitialisation des mots de passe)";
    let (role, template) = USER_ADMINISTRATOR;
    let tenant_wide = wids.iter().any(|w| w.eq_ignore_ascii_case(template));
    match (tenant_wide, admin_unit) {
        (_, Some(unit)) => check(
            "directory_role",
            title,
            if tenant_wide { CheckStatus::Warn } else { CheckStatus::Ok },
            if tenant_wide {
                format!("« {role} » attribué à tout le locataire, alors qu'une unité administrative ({unit}) est déclarée")
            } else {
                format!("« {role} » déclaré sur l'unité administrative {unit} (une attribution restreinte ne figure pas dans le jeton)")
            },
            tenant_wide.then(|| "Retirer l'attribution sur tout le locataire : celle de l'unité administrative suffit.".to_string()),
        ),
        (true, None) => check(
            "directory_role",
            title,
            CheckStatus::Warn,
            format!("« {role} » attribué à tout le locataire"),
            Some("Le restreindre à une unité administrative qui ne contient que les comptes des kits (règle dynamique sur le domaine des kits), puis déclarer m365.admin_unit.".into()),
        ),
        (false, None) => check(
            "directory_role",
            title,
            CheckStatus::Fail,
            format!("« {role} » absent : les fiches d'identifiants ne pourraient pas être émises"),
            Some(format!("Accorder {}.", Grant::Role(role.to_string()).fr())),
        ),
    }
}
