//! `repli m365 preflight`: is the tenant ready for an activation? Read-only checks (and one
//! idempotent canary meeting), each in French with how to fix it, so a missing permission,
//! role, licence or policy is found on a quiet day rather than at « Créer les comptes ».

use crate::client::{Credential, Graph, Item, Opts};
use crate::ops::GraphProvider;
use crate::wire;
use crate::{CheckStatus, Error, Grant, PreflightCheck, PreflightReport, PreflightSpec, generate_password};
use graph_rs_sdk::http::Method;
use repli_core::m365::{LEAST_PRIVILEGE, USER_ADMINISTRATOR};
use serde_json::json;

/// Microsoft Graph's application id, the same in every tenant: its service principal's
/// `appRoles` name each application permission by id.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// What Graph says the app holds now (not what a token says: tokens are opaque to clients and
/// carry what was granted when they were issued).
#[derive(Debug)]
struct AppGrants {
    /// Application permissions of Microsoft Graph with admin consent, by name.
    permissions: Vec<String>,
    /// Directory roles, by template id, with their scope (`/`: the tenant;
    /// `/administrativeUnits/{id}`: a unit); read apart, so that a refusal here (no
    /// RoleManagement.Read.Directory) still lets the permissions be checked and named.
    roles: Result<Vec<(String, String)>, Error>,
}

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
        // Always a new token: a grant made since the last one counts now, not in an hour.
        match self.graph().fresh_token().await {
            Ok(()) => {
                checks.push(check(
                    "token",
                    "Connexion de l'application",
                    CheckStatus::Ok,
                    "jeton d'accès obtenu".into(),
                    None,
                ));
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
        match self.app_grants().await {
            Ok(grants) => {
                checks.push(permissions_check(&grants.permissions));
                checks.push(channel_messages_check(&grants.permissions));
                checks.push(match &grants.roles {
                    Ok(roles) => role_check(roles, spec.admin_unit.as_deref()),
                    Err(e) => {
                        let (detail, fix) = refused(e);
                        check(
                            "directory_role",
                            "Rôle d'annuaire (réinitialisation des mots de passe)",
                            CheckStatus::Fail,
                            format!("non vérifiable : les rôles de l'application n'ont pas pu être lus ({detail})"),
                            fix,
                        )
                    }
                });
            }
            Err(e) => {
                let (detail, fix) = refused(&e);
                checks.push(check(
                    "permissions",
                    "Permissions de l'application",
                    CheckStatus::Fail,
                    format!("impossible de lire les permissions accordées : {detail}"),
                    fix.clone(),
                ));
                checks.push(check(
                    "directory_role",
                    "Rôle d'annuaire (réinitialisation des mots de passe)",
                    CheckStatus::Fail,
                    "non vérifiable : les rôles de l'application n'ont pas pu être lus".into(),
                    fix,
                ));
            }
        }
        let (licences, domain, meeting) =
            tokio::join!(self.licences_check(spec), self.root_domain_check(spec), self.meeting_check(spec));
        checks.extend([licences, domain, meeting]);
        PreflightReport::new(checks)
    }

    /// The app's grants as Graph holds them: its service principal
    /// (serviceprincipal-list, `$filter=appId eq '…'`), its app role assignments named through
    /// Microsoft Graph's own service principal (serviceprincipal-list-approleassignments), and
    /// (least-privileged application permission of these three: Application.Read.All), and its
    /// directory roles at every scope, tenant or administrative unit
    /// (rbacapplication-list-roleassignments, `$filter=principalId eq '…'`:
    /// RoleManagement.Read.Directory; `memberOf` shows tenant-wide roles only).
    async fn app_grants(&self) -> Result<AppGrants, Error> {
        let graph = self.graph();
        let principal = |op: &'static str, app_id: String| async move {
            let url = format!("/servicePrincipals?$filter=appId eq '{}'", app_id.replace('\'', "''"));
            let found: Vec<wire::ServicePrincipal> =
                graph.list_all(op, "GET /servicePrincipals?$filter=appId eq '…'", &url, false).await?;
            found.into_iter().next().ok_or_else(|| Error::Graph {
                op: op.into(),
                status: 404,
                code: "Request_ResourceNotFound".into(),
                message: format!("no service principal for application {app_id} in this tenant"),
            })
        };
        let (app, microsoft_graph) = tokio::try_join!(
            principal("app.servicePrincipal", graph.config.client_id.clone()),
            principal("app.graphServicePrincipal", GRAPH_APP_ID.to_string()),
        )?;
        let assignments_url = format!("/servicePrincipals/{}/appRoleAssignments", app.id);
        let roles_url = format!("/roleManagement/directory/roleAssignments?$filter=principalId eq '{}'", app.id);
        let (assignments, roles) = tokio::join!(
            graph.list_all::<wire::AppRoleAssignment>(
                "app.appRoleAssignments",
                "GET /servicePrincipals/{id}/appRoleAssignments",
                &assignments_url,
                false,
            ),
            graph.list_all::<wire::RoleAssignment>(
                "app.roleAssignments",
                "GET /roleManagement/directory/roleAssignments?$filter=principalId eq '…'",
                &roles_url,
                false,
            ),
        );
        let assignments = assignments?;
        let permissions = assignments
            .iter()
            .filter(|a| a.resource_id.as_deref().is_none_or(|r| r.eq_ignore_ascii_case(&microsoft_graph.id)))
            .filter_map(|a| {
                microsoft_graph.app_roles.iter().find(|r| r.id.eq_ignore_ascii_case(&a.app_role_id))?.value.clone()
            })
            .collect();
        let roles = roles.map(|roles| {
            roles
                .into_iter()
                .map(|r| (r.role_definition_id, r.directory_scope_id.unwrap_or_else(|| "/".to_string())))
                .collect()
        });
        Ok(AppGrants { permissions, roles })
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

    /// Is meeting creation proven for the organiser the kits will use? A standing organiser
    /// named in the configuration gets the canary meeting; otherwise the kits' own first
    /// accounts organise, which only a `-Global` policy covers: a fresh canary account is
    /// created, asked for a meeting, and deleted for good.
    async fn meeting_check(&self, spec: &PreflightSpec) -> PreflightCheck {
        let title = "Réunions Teams (stratégie d'accès)";
        let outcome = match &spec.organizer {
            Some(organizer) => self.canary_meeting(organizer).await.map(|_| {
                format!("réunion témoin créée au nom de l'organisateur permanent {organizer}, qui organisera les visios des kits")
            }),
            None => match &spec.root_domain {
                Some(root) => self.canary_account_meeting(root).await.map(|()| {
                    "réunion témoin créée pour un compte tout juste créé (puis supprimé) : la stratégie d'accès couvre tout le locataire (-Global)".to_string()
                }),
                None => {
                    return check(
                        "meeting_policy",
                        title,
                        CheckStatus::Fail,
                        "aucun organisateur permanent configuré, et pas de domaine racine vérifié pour un compte témoin : la création des visios n'est pas démontrée".into(),
                        Some(format!("Accorder {} Ou désigner un organisateur permanent (m365.preflight_organizer).", Grant::MeetingPolicy.fr())),
                    );
                }
            },
        };
        match outcome {
            Ok(detail) => check("meeting_policy", title, CheckStatus::Ok, detail, None),
            Err(Error::Forbidden { missing: Grant::MeetingPolicy, message, .. }) => check(
                "meeting_policy",
                title,
                CheckStatus::Fail,
                format!(
                    "Microsoft 365 refuse la réunion témoin ({message}) : aucune stratégie d'accès aux applications Teams ne couvre {}",
                    if spec.organizer.is_some() {
                        "l'organisateur permanent"
                    } else {
                        "un compte tout juste créé comme ceux des kits"
                    }
                ),
                Some(format!("Accorder {}", Grant::MeetingPolicy.fr())),
            ),
            Err(e) => {
                let (detail, fix) = refused(&e);
                let detail =
                    format!("réunion témoin impossible, la création des visios n'est pas démontrée : {detail}");
                check("meeting_policy", title, CheckStatus::Fail, detail, fix)
            }
        }
    }

    /// createOrGet with a fixed externalId: the same canary meeting every day; its id.
    async fn canary_meeting(&self, organizer: &str) -> Result<String, Error> {
        let body = json!({"externalId": "repli-preflight", "subject": "Repli — contrôle quotidien (ne pas utiliser)"});
        let reply = self
            .graph()
            .call("meeting.createOrGet", Opts { retry_not_found: true, ..Opts::default() }, |c| {
                c.user(organizer).online_meetings().create_or_get(&body)
            })
            .await?;
        let meeting: wire::OnlineMeeting =
            wire::decode("meeting.createOrGet", "POST /users/{id}/onlineMeetings/createOrGet", reply.body)?;
        Ok(meeting.id)
    }

    /// A canary account on `root` (disabled, random password), its meeting, then the account
    /// deleted and purged from deleted items whatever happened.
    async fn canary_account_meeting(&self, root: &str) -> Result<(), Error> {
        let mut nonce = [0u8; 6];
        getrandom::fill(&mut nonce).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
        let nick = format!("repli-canary-{}", hex::encode(nonce));
        let password = generate_password()?;
        let body = json!({
            "accountEnabled": false, "displayName": "Repli — compte témoin (supprimé aussitôt)",
            "mailNickname": nick, "userPrincipalName": format!("{nick}@{root}"),
            "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": password.expose()},
        });
        let reply = self.graph().call("preflight.canary", Opts::default(), |c| c.users().create_user(&body)).await?;
        let user: wire::DirectoryObject = wire::decode("preflight.canary", "POST /users", reply.body)?;
        let meeting = self.canary_meeting(&user.id).await;
        let removed = self.remove_canary(&user.id, meeting.as_ref().ok().map(String::as_str)).await;
        meeting.and(removed)
    }

    /// The canary's meeting (onlinemeeting-delete), then the account, deleted for good.
    async fn remove_canary(&self, id: &str, meeting: Option<&str>) -> Result<(), Error> {
        let graph: &Graph = self.graph();
        if let Some(meeting) = meeting {
            let url = format!("/users/{id}/onlineMeetings/{meeting}");
            match graph.call("meeting.delete", Opts::default(), |c| Graph::custom(c, Method::DELETE, &url, None)).await
            {
                Ok(_) | Err(Error::Graph { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        match graph
            .call("preflight.canary", Opts { retry_not_found: true, ..Opts::default() }, |c| c.user(id).delete_user())
            .await
        {
            Ok(_) | Err(Error::Graph { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let purge = vec![Item {
            id: "c".into(),
            method: Method::DELETE,
            url: format!("/directory/deletedItems/{id}"),
            body: None,
        }];
        let results =
            graph.run_items("accounts.purge", purge, Opts { retry_not_found: true, ..Opts::default() }).await?;
        match results.get("c") {
            Some(r) if !r.ok() => Err(r.clone().into_error("accounts.purge")),
            _ => Ok(()),
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

/// The optional capability: the Team's channel messages in the hand-back's archive. Never a
/// failure: without it they are a manual step of the hand-back. The permission is there with
/// Group.ReadWrite.All (channel-list-messages lists it for applications); what decides is
/// Microsoft's approval of the app for Teams' protected APIs, which no grant shows and only a
/// call to a Team's channel proves: the export makes it, and says which way it went.
fn channel_messages_check(roles: &[String]) -> PreflightCheck {
    let title = "Conversations des canaux à la restitution (facultatif)";
    let permitted = ["Group.ReadWrite.All", "Group.Read.All", "ChannelMessage.Read.All"]
        .iter()
        .any(|p| roles.iter().any(|r| r.eq_ignore_ascii_case(p)));
    let detail = if permitted {
        "Permission présente (Group.ReadWrite.All suffit). Elles sont archivées si Microsoft a approuvé l'accès de l'application aux API protégées de Teams (formulaire de demande, https://aka.ms/teamsgraph/requestaccess) ; sinon l'export le constate, le note au manifeste et au procès-verbal, et elles restent une étape manuelle."
    } else {
        "Aucune permission ne permet de les lire (Group.ReadWrite.All manque) : elles restent une étape manuelle de la restitution."
    };
    check("channel_messages", title, CheckStatus::Ok, detail.to_string(), None)
}

fn role_check(roles: &[(String, String)], admin_unit: Option<&str>) -> PreflightCheck {
    let title = "Rôle d'annuaire (réinitialisation des mots de passe)";
    let (role, template) = USER_ADMINISTRATOR;
    let scopes: Vec<&str> = roles
        .iter()
        .filter(|(definition, _)| definition.eq_ignore_ascii_case(template))
        .map(|(_, scope)| scope.as_str())
        .collect();
    let tenant_wide = scopes.contains(&"/");
    let unit_of = |scope: &str| scope.strip_prefix("/administrativeUnits/").map(str::to_string);
    let units: Vec<String> = scopes.iter().filter_map(|s| unit_of(s)).collect();
    match admin_unit {
        Some(unit) if units.iter().any(|u| u.eq_ignore_ascii_case(unit)) => check(
            "directory_role",
            title,
            if tenant_wide { CheckStatus::Warn } else { CheckStatus::Ok },
            if tenant_wide {
                format!("« {role} » attribué sur l'unité administrative {unit} et aussi sur tout le locataire")
            } else {
                format!("« {role} » attribué sur l'unité administrative {unit} (lu dans Microsoft 365)")
            },
            tenant_wide.then(|| "Retirer l'attribution sur tout le locataire : celle de l'unité administrative suffit.".to_string()),
        ),
        Some(unit) if tenant_wide => check(
            "directory_role",
            title,
            CheckStatus::Warn,
            format!("« {role} » attribué sur tout le locataire, pas sur l'unité administrative déclarée {unit}"),
            Some(format!(
                "Attribuer « {role} » à l'application sur l'unité administrative {unit} (Entra ID › Unités administratives › {unit} › Rôles et administrateurs), puis retirer l'attribution sur tout le locataire."
            )),
        ),
        Some(unit) => check(
            "directory_role",
            title,
            CheckStatus::Fail,
            format!("« {role} » absent de l'unité administrative déclarée {unit} : les fiches d'identifiants ne pourraient pas être émises"),
            Some(format!("Accorder {}.", Grant::UnitRole { role: role.to_string(), unit: unit.to_string() }.fr())),
        ),
        None if tenant_wide => check(
            "directory_role",
            title,
            CheckStatus::Warn,
            format!("« {role} » attribué à tout le locataire"),
            Some("Le restreindre à une unité administrative qui ne contient que les comptes des kits (règle dynamique sur le domaine des kits), puis déclarer m365.admin_unit.".into()),
        ),
        None => match units.first() {
            // Scoped to a unit nobody declared: the resets work only for its members, and Repli
            // cannot say which unit to expect.
            Some(unit) => check(
                "directory_role",
                title,
                CheckStatus::Fail,
                format!("« {role} » attribué sur l'unité administrative {unit} seulement, qui n'est pas déclarée"),
                Some(format!("Déclarer m365.admin_unit = \"{unit}\" si cette unité contient les comptes des kits.")),
            ),
            None => check(
                "directory_role",
                title,
                CheckStatus::Fail,
                format!("« {role} » absent : les fiches d'identifiants ne pourraient pas être émises"),
                Some(format!("Accorder {}.", Grant::Role(role.to_string()).fr())),
            ),
        },
    }
}
