//! Who may do what: tokens, roles, and a DGS scoped to their own commune.

use repli_core::{CrisisAction, Role};
use repli_proto::Client;
use repli_proto::api::CrisisQuery;
use repli_tests::{StatusCode, TestApp, request};

fn status(r: Result<impl std::fmt::Debug, repli_proto::ClientError>) -> u16 {
    r.status_code()
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let app = TestApp::spawn().await;
    assert_eq!(app.anon.health().await.unwrap().status, "ok");
    assert_eq!(status(app.anon.communes().await), 401);
    let forged = app.anon.with_token(format!("rpl_{}", "0".repeat(64)));
    assert_eq!(status(forged.communes().await), 401);
    let e = app.anon.with_token("x".repeat(10_000)).me().await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 401);
    assert!(e.problem().unwrap().detail.contains("Authentification requise"));
    let me = app.dgs.me().await.unwrap();
    assert_eq!((me.role, me.commune.unwrap().as_str()), (Role::Dgs, "13005"));
}

#[tokio::test]
async fn a_dgs_sees_and_touches_only_their_commune() {
    let app = TestApp::spawn().await;
    let aix: Client = app.client(Role::Dgs, Some("13001")).await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();

    // Another commune's crisis does not exist for them (no existence leak).
    let e = aix.crisis(c.id.as_str()).await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 404);
    assert_eq!(e.problem().unwrap().code, "crisis_not_found");
    assert_eq!(status(aix.act(&c.id, CrisisAction::Cancel, Some("x")).await), 404);
    assert_eq!(status(aix.crises(&CrisisQuery { commune: Some(c.commune.clone()), ..Default::default() }).await), 403);
    assert!(aix.crises(&CrisisQuery::default()).await.unwrap().is_empty());
    assert_eq!(status(aix.request_crisis(&request("13005"), None).await), 403);
    assert_eq!(status(aix.commune("13005").await), 404);
    assert_eq!(aix.communes().await.unwrap().len(), 1);

    // Their own: readable, cancellable, not operable.
    assert_eq!(app.dgs.crises(&CrisisQuery::default()).await.unwrap().len(), 1);
    assert_eq!(status(app.dgs.act(&c.id, CrisisAction::Activate, None).await), 403);
    assert_eq!(status(app.dgs.audit_verify().await), 403);
}

#[tokio::test]
async fn auditors_read_everything_and_change_nothing() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    assert_eq!(app.auditor.crisis(c.id.as_str()).await.unwrap().id, c.id);
    assert!(app.auditor.audit_verify().await.unwrap().verified);
    assert_eq!(status(app.auditor.request_crisis(&request("13001"), None).await), 403);
    for a in CrisisAction::ALL {
        assert_eq!(status(app.auditor.act(&c.id, a, Some("x")).await), 403, "{a}");
    }
    let admin = app.client(Role::Admin, None).await;
    assert_eq!(status(admin.act(&c.id, CrisisAction::Activate, None).await), 403);
}

/// What a caller gets from a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Served (any status but 401, 403 and 404: a 409 or 422 means the rule let them through).
    A,
    /// 403: the role may not.
    D,
    /// 404: the resource is hidden from them (another commune's).
    H,
    /// 401: no credentials.
    U,
    /// 3xx: a page sends the browser to the sign-in page.
    R,
}
use Outcome::{A, D, H, R, U};

/// The expected matrix, written out by hand (not derived from the policy table it checks).
/// Columns: anonymous, admin, ops, DGS of the crisis's commune (13005), DGS of another
/// commune (13001), auditor.
const MATRIX: &[(&str, &str, [Outcome; 6])] = &[
    ("GET", "/healthz", [A, A, A, A, A, A]),
    ("GET", "/readyz", [A, A, A, A, A, A]),
    ("GET", "/api/v1/openapi.json", [A, A, A, A, A, A]),
    ("GET", "/metrics", [U, A, A, D, D, D]),
    ("GET", "/static/repli.css", [A, A, A, A, A, A]),
    ("GET", "/connexion", [A, A, A, A, A, A]),
    ("GET", "/accessibilite", [A, A, A, A, A, A]),
    ("GET", "/mot-de-passe/{secret}", [H, H, H, H, H, H]),
    ("POST", "/mot-de-passe/{secret}", [A, A, A, A, A, A]),
    ("GET", "/comptes", [R, R, R, R, R, R]),
    ("POST", "/comptes", [R, R, R, R, R, R]),
    ("POST", "/comptes/{uid}/lien", [R, R, R, R, R, R]),
    ("POST", "/comptes/{uid}/revocation", [R, R, R, R, R, R]),
    ("POST", "/comptes/{uid}/double-authentification", [R, R, R, R, R, R]),
    ("POST", "/connexion", [A, A, A, A, A, A]),
    // Without a sign-in's ticket (a password just accepted), the pages send back to the
    // sign-in; the forms are public like the sign-in's (the ticket is checked inside).
    ("GET", "/connexion/code", [R, R, R, R, R, R]),
    ("POST", "/connexion/code", [A, A, A, A, A, A]),
    ("GET", "/connexion/enrolement", [R, R, R, R, R, R]),
    ("POST", "/connexion/enrolement", [A, A, A, A, A, A]),
    ("GET", "/", [R, R, R, R, R, R]),
    ("POST", "/deconnexion", [R, R, R, R, R, R]),
    ("GET", "/demande", [R, R, R, R, R, R]),
    ("POST", "/demande", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/action", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/annulation", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/annulation", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/restitution", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/restitution", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/etapes/{step}/ignorer", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/etapes/{step}/ignorer", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/etapes/{step}/relancer", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/dns", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/fiches-identifiants", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/fiches-identifiants", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/fiches-identifiants/reinitialiser", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/fiches-identifiants/reinitialiser", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/pertes/{serial}", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/pertes/{serial}", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/main-courante", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/agents", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/agents/effectif", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/taches/{step}", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/retour", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/demande-enregistree", [R, R, R, R, R, R]),
    ("GET", "/crises/{id}/retex", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/prets", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/delai", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/echeances", [R, R, R, R, R, R]),
    ("POST", "/crises/{id}/echeances/{kind}/faite", [R, R, R, R, R, R]),
    ("POST", "/inventaire/{serial}/effacement", [R, R, R, R, R, R]),
    ("POST", "/inventaire/{serial}/verification", [R, R, R, R, R, R]),
    ("POST", "/inventaire/lot", [R, R, R, R, R, R]),
    ("POST", "/inventaire/{serial}/fiche", [R, R, R, R, R, R]),
    ("POST", "/inventaire/{serial}/sim", [R, R, R, R, R, R]),
    ("POST", "/inventaire/lot/fichier", [R, R, R, R, R, R]),
    ("POST", "/inventaire/import", [R, R, R, R, R, R]),
    ("GET", "/inventaire/export", [R, R, R, R, R, R]),
    ("GET", "/inventaire/etiquettes", [R, R, R, R, R, R]),
    ("GET", "/inventaire/{serial}/etiquette", [R, R, R, R, R, R]),
    ("GET", "/inventaire/equipements/export", [R, R, R, R, R, R]),
    ("GET", "/inventaire/prets/export", [R, R, R, R, R, R]),
    ("POST", "/inventaire/{serial}/service", [R, R, R, R, R, R]),
    ("GET", "/notifications", [R, R, R, R, R, R]),
    ("POST", "/notifications/{nid}/renvoyer", [R, R, R, R, R, R]),
    ("GET", "/taches", [R, R, R, R, R, R]),
    ("GET", "/m365", [R, R, R, R, R, R]),
    ("POST", "/m365", [R, R, R, R, R, R]),
    ("GET", "/exercices", [R, R, R, R, R, R]),
    ("POST", "/exercices", [R, R, R, R, R, R]),
    ("GET", "/inventaire", [R, R, R, R, R, R]),
    ("GET", "/inventaire/{serial}", [R, R, R, R, R, R]),
    ("GET", "/journal", [R, R, R, R, R, R]),
    ("GET", "/journal/export", [R, R, R, R, R, R]),
    ("GET", "/rapport-sla", [R, R, R, R, R, R]),
    ("GET", "/api/v1/me", [U, A, A, A, A, A]),
    ("GET", "/api/v1/communes", [U, A, A, A, A, A]),
    ("GET", "/api/v1/communes/{insee}", [U, A, A, A, H, A]),
    ("GET", "/api/v1/crises", [U, D, A, A, A, A]),
    ("POST", "/api/v1/crises", [U, D, A, A, D, D]),
    ("GET", "/api/v1/crises/{id}", [U, D, A, A, H, A]),
    ("POST", "/api/v1/crises/{id}/actions/cancel", [U, D, A, A, H, D]),
    ("POST", "/api/v1/crises/{id}/actions/{action}", [U, D, A, D, D, D]),
    ("GET", "/api/v1/crises/{id}/history", [U, D, A, A, H, A]),
    ("GET", "/api/v1/crises/{id}/log", [U, D, A, A, H, A]),
    ("POST", "/api/v1/crises/{id}/log", [U, D, A, A, H, D]),
    ("POST", "/api/v1/crises/{id}/sla/suspend", [U, D, A, D, D, D]),
    ("POST", "/api/v1/crises/{id}/sla/resume", [U, D, A, D, D, D]),
    ("PUT", "/api/v1/crises/{id}/legal", [U, D, A, A, H, D]),
    ("POST", "/api/v1/crises/{id}/legal/{kind}/done", [U, D, A, A, H, D]),
    ("GET", "/api/v1/crises/{id}/steps", [U, D, A, A, H, A]),
    ("GET", "/api/v1/crises/{id}/dns", [U, D, A, D, D, D]),
    ("POST", "/api/v1/crises/{id}/steps/{step}/done", [U, D, A, D, D, D]),
    ("POST", "/api/v1/crises/{id}/steps/{step}/retry", [U, D, A, D, D, D]),
    ("POST", "/api/v1/crises/{id}/steps/{step}/skip", [U, D, A, D, D, D]),
    ("GET", "/api/v1/tasks", [U, D, A, D, D, D]),
    ("GET", "/api/v1/m365/preflight", [U, D, A, D, D, D]),
    ("GET", "/api/v1/sla/report", [U, D, A, D, D, A]),
    ("GET", "/api/v1/exercises", [U, D, A, D, D, A]),
    ("GET", "/api/v1/campaign", [U, D, A, D, D, D]),
    ("POST", "/api/v1/exercises", [U, D, A, D, D, D]),
    // No exercise 1 exists: those allowed to read get 404.
    ("GET", "/api/v1/exercises/{xid}", [U, D, H, D, D, H]),
    ("GET", "/api/v1/notifications", [U, D, A, D, D, D]),
    ("POST", "/api/v1/notifications/{nid}/retry", [U, D, A, D, D, D]),
    ("GET", "/api/v1/crises/{id}/retex", [U, D, A, D, D, A]),
    ("POST", "/api/v1/inventory/import", [U, D, A, D, D, D]),
    ("GET", "/api/v1/inventory", [U, D, A, D, D, A]),
    ("GET", "/api/v1/inventory/items", [U, D, A, D, D, A]),
    ("GET", "/api/v1/inventory/items/{serial}", [U, D, A, D, D, A]),
    ("POST", "/api/v1/inventory/items/{serial}/wipe", [U, D, A, D, D, D]),
    ("POST", "/api/v1/inventory/items/{serial}/check", [U, D, A, D, D, D]),
    ("POST", "/api/v1/inventory/items/{serial}/service", [U, D, A, D, D, D]),
    ("GET", "/api/v1/crises/{id}/agents", [U, D, A, A, H, A]),
    ("PUT", "/api/v1/crises/{id}/agents", [U, D, A, A, H, D]),
    ("POST", "/api/v1/crises/{id}/agents", [U, D, A, A, H, D]),
    ("POST", "/api/v1/crises/{id}/agents/accept", [U, D, A, D, D, D]),
    ("GET", "/api/v1/crises/{id}/loans", [U, D, A, A, H, A]),
    ("GET", "/api/v1/crises/{id}/documents", [U, D, A, A, H, A]),
    ("GET", "/api/v1/crises/{id}/documents.zip", [U, D, A, A, H, A]),
    // The commune's own mail and files: its DGS and ops (409 here: no archive yet), not auditors.
    ("GET", "/api/v1/crises/{id}/handback.zip", [U, D, A, A, H, D]),
    ("GET", "/api/v1/crises/{id}/documents/{file}", [U, D, A, A, H, A]),
    ("POST", "/api/v1/crises/{id}/credential-sheets", [U, D, A, D, D, D]),
    ("POST", "/api/v1/crises/{id}/credential-sheets/reissue", [U, D, A, D, D, D]),
    ("POST", "/api/v1/crises/{id}/loans", [U, D, A, D, D, D]),
    ("POST", "/api/v1/crises/{id}/checkin", [U, D, A, D, D, D]),
    ("POST", "/api/v1/crises/{id}/write-off", [U, D, A, D, D, D]),
    ("GET", "/api/v1/audit/verify", [U, D, D, D, D, A]),
    ("GET", "/api/v1/audit/head", [U, D, D, D, D, A]),
    ("GET", "/api/v1/audit/entries", [U, D, D, D, D, A]),
    ("GET", "/api/v1/audit/bundle", [U, D, D, D, D, A]),
    ("GET", "/api/v1/users", [U, A, D, D, D, D]),
    ("POST", "/api/v1/users", [U, A, D, D, D, D]),
    ("POST", "/api/v1/users/{uid}/tokens", [U, A, D, D, D, D]),
    ("DELETE", "/api/v1/users/{uid}/tokens", [U, A, D, D, D, D]),
    ("DELETE", "/api/v1/users/{uid}/second-factor", [U, A, D, D, D, D]),
    ("PUT", "/api/v1/users/{uid}/password", [U, A, D, D, D, D]),
];

fn body_for(method: &str, path: &str) -> Option<serde_json::Value> {
    use serde_json::json;
    match (method, path) {
        ("POST", "/api/v1/crises") => Some(serde_json::to_value(request("13005")).unwrap()),
        ("POST", p) if p.contains("/actions/") || p.ends_with("/sla/suspend") => {
            Some(json!({ "reason": "matrice d'autorisation" }))
        }
        ("POST", p) if p.ends_with("/done") || p.ends_with("/resume") => Some(json!({})),
        ("POST", p) if p.ends_with("/retry") || p.ends_with("/skip") => Some(json!({ "reason": "matrice" })),
        ("PUT", p) if p.ends_with("/legal") => Some(json!({ "personal_data": true })),
        ("PUT" | "POST", p) if p.ends_with("/agents") => {
            Some(json!({ "agents": [{ "name": "Agent", "service": "Accueil" }] }))
        }
        ("POST", "/api/v1/inventory/import") => Some(json!({ "files": [{ "source": "m.csv", "csv": "asset_tag\n" }] })),
        ("POST", p) if p.ends_with("/wipe") => Some(json!({ "method": "m", "operator": "o", "certificate": "c" })),
        ("POST", p) if p.ends_with("/service") => Some(json!({ "to": "maintenance", "reason": "écran" })),
        ("POST", p) if p.ends_with("/loans") => Some(json!({ "serial": "FICTIF-M1" })),
        ("POST", p) if p.ends_with("/reissue") => Some(json!({ "reason": "matrice" })),
        ("POST", p) if p.ends_with("/checkin") => Some(json!({ "serial": "FICTIF-M1", "condition": "ok" })),
        ("POST", p) if p.ends_with("/write-off") => Some(json!({ "serial": "FICTIF-M1", "reason": "perdu" })),
        ("POST", p) if p.ends_with("/log") => Some(json!({ "type": "information", "text": "x" })),
        ("POST", "/api/v1/exercises") => Some(json!({
            "name": "matrice",
            "communes": [{ "commune": "13001", "agents": 1, "contact": { "name": "A", "phone": "0612345678" } }],
        })),
        ("POST", "/api/v1/users") => Some(json!({ "name": "Nouvel agent", "role": "ops" })),
        ("POST", p) if p.ends_with("/tokens") => Some(json!({})),
        ("PUT", _) => Some(json!({ "login": "agent.matrice", "password": "une phrase de passe longue" })),
        _ => None,
    }
}

#[tokio::test]
async fn authorization_matrix_covers_every_route() {
    let specs = replid::routes::route_specs();
    for spec in &specs {
        let found = MATRIX.iter().any(|(m, p, _)| *m == spec.method.as_str() && *p == spec.path);
        assert!(found, "route {} {} has no row in the authorization matrix", spec.method, spec.path);
    }
    for (m, p, _) in MATRIX {
        assert!(specs.iter().any(|s| s.method.as_str() == *m && s.path == *p), "stale matrix row {m} {p}");
    }

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (method, path, expected) in MATRIX {
        // A fresh daemon per route: one route's effects cannot change another's outcome.
        let app = TestApp::spawn().await;
        let crisis = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
        let one = repli_proto::api::ImportRequest {
            files: vec![repli_proto::api::ImportFile {
                source: "m.csv".into(),
                csv: "asset_tag,serial,kind,model\nM-1,FICTIF-M1,laptop,Portable\n".into(),
            }],
        };
        app.ops.import_inventory(&one).await.unwrap();
        let (throwaway, _) = app.token(Role::Ops, None).await;
        let mut tokens = vec![None];
        for (role, commune) in [
            (Role::Admin, None),
            (Role::Ops, None),
            (Role::Dgs, Some("13005")),
            (Role::Dgs, Some("13001")),
            (Role::Auditor, None),
        ] {
            tokens.push(Some(app.token(role, commune).await.1));
        }
        let url = app.url(
            &path
                .replace("{insee}", "13005")
                .replace("{id}", crisis.id.as_str())
                .replace("{action}", "activate")
                .replace("{kind}", "cnil")
                .replace("{step}", "reserve")
                .replace("{serial}", "FICTIF-M1")
                .replace("{file}", "01-dossier-de-mise-a-disposition.html")
                .replace("{uid}", &throwaway.to_string())
                .replace("{nid}", "1")
                .replace("{xid}", "1")
                .replace("{secret}", "repli_inconnu"),
        );
        for (who, (token, want)) in tokens.iter().zip(expected).enumerate() {
            let mut rb = http.request(method.parse().unwrap(), &url);
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            if let Some(b) = body_for(method, path) {
                rb = rb.json(&b);
            }
            let status = rb.send().await.unwrap().status().as_u16();
            let got = match status {
                300..=399 => R,
                401 => U,
                403 => D,
                404 => H,
                _ => A,
            };
            let col = ["anonymous", "admin", "ops", "dgs 13005", "dgs 13001", "auditor"][who];
            assert_eq!(got, *want, "{method} {path} as {col}: HTTP {status}");
        }
        app.daemon.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn admins_manage_accounts_through_the_api() {
    let app = TestApp::spawn().await;
    let admin = app.client(Role::Admin, None).await;
    let req = |role, commune: Option<&str>| repli_proto::api::NewUserRequest {
        name: "Agent de test".into(),
        role,
        commune: commune.map(|c| repli_core::InseeCode::parse(c).unwrap()),
        expires_days: Some(30),
    };
    let created = admin.create_user(&req(Role::Dgs, Some("13001"))).await.unwrap();
    assert!(created.token.token.starts_with("rpl_"));
    assert!(created.token.expires_at.is_some());
    let aix = app.anon.with_token(created.token.token.clone());
    assert_eq!(aix.me().await.unwrap().commune.unwrap().as_str(), "13001");

    // Bad input: DGS without commune, ops with one, unknown commune, empty name.
    for bad in [req(Role::Dgs, None), req(Role::Ops, Some("13005")), req(Role::Dgs, Some("13999"))] {
        let e = admin.create_user(&bad).await.unwrap_err();
        assert!(matches!(e.status().unwrap().as_u16(), 404 | 422), "{e}");
    }
    let mut nameless = req(Role::Ops, None);
    nameless.name = "  ".into();
    assert_eq!(admin.create_user(&nameless).await.status_code(), 422);

    // Listing shows no secret.
    let users = admin.users().await.unwrap();
    let listed = serde_json::to_string(&users).unwrap();
    assert!(!listed.contains(&created.token.token));
    assert!(users.iter().any(|u| u.id == created.user.id && u.active_tokens == 1));

    // A second token, then revocation of all: both stop working at once.
    let second = admin.issue_token(created.user.id, &repli_proto::api::TokenRequest::default()).await.unwrap();
    let aix2 = app.anon.with_token(second.token);
    aix2.me().await.unwrap();
    let r = admin.revoke_tokens(created.user.id).await.unwrap();
    assert_eq!(r.revoked, 2);
    assert_eq!(status(aix.me().await), 401);
    assert_eq!(status(aix2.me().await), 401);
    assert_eq!(status(admin.revoke_tokens(999_999).await), 404);

    // Web password: policy enforced, login unique, hash never shown.
    let pw = |login: &str, password: &str| repli_proto::api::PasswordRequest {
        login: login.into(),
        password: password.into(),
    };
    let e = admin.set_password(created.user.id, &pw("dgs.aix", "court")).await.unwrap_err();
    assert_eq!(e.problem().unwrap().errors[0].field, "password");
    let e =
        admin.set_password(created.user.id, &pw("dgs aix<script>", "une phrase de passe longue")).await.unwrap_err();
    assert_eq!(e.problem().unwrap().errors[0].field, "login");
    let u = admin.set_password(created.user.id, &pw("dgs.aix", "une phrase de passe longue")).await.unwrap();
    assert!(u.has_password && u.login.as_deref() == Some("dgs.aix"));
    let e = admin
        .set_password(app.dgs.me().await.unwrap().user_id, &pw("dgs.aix", "une autre phrase longue"))
        .await
        .unwrap_err();
    // Another account's login: a conflict (login_taken, 409), named beside the field.
    assert_eq!(e.problem().unwrap().status, 409);
    assert_eq!(e.problem().unwrap().errors[0].field, "login");
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    assert!(log.iter().any(|e| e.action == "user.set_password"));
    assert!(!serde_json::to_string(&log).unwrap().contains("argon2"), "a password hash reached the audit log");
}
