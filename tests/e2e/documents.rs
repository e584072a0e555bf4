//! The procedures pack served by replid: who gets what, escaped hostile text, print-ready HTML.

use repli_core::Role;
use repli_proto::api::{AgentInput, AgentsRequest};
use repli_tests::{StatusCode, TestApp, request};

#[tokio::test]
async fn the_pack_is_served_to_those_allowed_and_sheets_to_ops_only() {
    let app = TestApp::spawn().await;
    let mut r = request("13005");
    r.contact.name = "<script>alert(1)</script> {{x}}".into();
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    let hostile = AgentsRequest {
        agents: vec![AgentInput { name: "<img src=x onerror=alert(1)>".into(), service: "Accueil".into() }],
    };
    app.dgs.set_agents(id, &hostile).await.unwrap();

    let http = reqwest::Client::new();
    let (_, ops_token) = app.token(Role::Ops, None).await;
    let (_, dgs_token) = app.token(Role::Dgs, Some("13005")).await;
    let (_, aix_token) = app.token(Role::Dgs, Some("13001")).await;
    let get = |path: String, token: String| {
        let http = http.clone();
        async move { http.get(path).bearer_auth(token).send().await.unwrap() }
    };
    let base = app.url(&format!("/api/v1/crises/{id}/documents"));

    let ops_list: Vec<String> = get(base.clone(), ops_token.clone()).await.json().await.unwrap();
    assert!(ops_list.contains(&"04-fiches-identifiants.html".to_owned()));
    let dgs_list: Vec<String> = get(base.clone(), dgs_token.clone()).await.json().await.unwrap();
    assert_eq!(dgs_list.len(), ops_list.len() - 1, "no credential sheets for the DGS");
    assert!(!dgs_list.contains(&"04-fiches-identifiants.html".to_owned()));

    let sheet = format!("{base}/04-fiches-identifiants.html");
    assert_eq!(get(sheet.clone(), dgs_token.clone()).await.status().as_u16(), 403);
    // The sheets are not a document one reads: they are issued on purpose, by a POST.
    let read = get(sheet.clone(), ops_token.clone()).await;
    assert_eq!(read.status().as_u16(), 405);
    assert!(read.text().await.unwrap().contains("Fiches identifiants"));
    let issue = app.url(&format!("/api/v1/crises/{id}/credential-sheets"));
    let post = |path: String, token: String| {
        let http = http.clone();
        async move { http.post(path).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(post(issue.clone(), dgs_token.clone()).await.status().as_u16(), 403);
    // No account yet: nothing to hand over (and nothing is marked as handed over).
    let early = post(issue.clone(), ops_token.clone()).await;
    assert_eq!(early.status().as_u16(), 409);
    assert!(early.text().await.unwrap().contains("Aucun compte"));
    app.make_ready(&c.id).await;
    let first = post(issue.clone(), ops_token.clone()).await;
    assert_eq!(first.status().as_u16(), 200);
    assert!(first.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(first.headers()["cache-control"], "no-store");
    let html = first.text().await.unwrap();
    assert!(html.contains("img.src-x.onerror-alert-1@aubagne.secours-amp.fr"), "{html}");
    assert!(
        html.contains("&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;") && !html.contains("<img"),
        "hostile name escaped"
    );
    let password = html.split("<span class=\"secret\">").nth(2).and_then(|r| r.split('<').next()).unwrap();
    let password = password.replace("&#x3D;", "=");
    assert_eq!(password.len(), 16, "a one-time password is printed: {password:?}");
    // It was set in Microsoft 365 (simulated) at that moment, and never stored by Repli.
    for file in ["repli.db", "repli.db-wal"] {
        let bytes = std::fs::read(app.dir.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(password.len()).any(|w| w == password.as_bytes()), "password found in {file}");
    }
    // Handed over once: a second download is refused, and the first is in the audit log.
    let again = post(issue, ops_token.clone()).await;
    assert_eq!(again.status().as_u16(), 409);
    assert!(again.text().await.unwrap().contains("déjà été délivrées"));
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    assert_eq!(log.iter().filter(|e| e.action == "documents.credential_sheets").count(), 1);
    let ops_zip =
        get(app.url(&format!("/api/v1/crises/{id}/documents.zip")), ops_token.clone()).await.bytes().await.unwrap();
    assert!(!ops_zip.windows(b"04-fiches-identifiants".len()).any(|w| w == b"04-fiches-identifiants"), "never zipped");
    assert_eq!(get(format!("{base}/01-dossier-de-mise-a-disposition.html"), aix_token).await.status().as_u16(), 404);
    assert_eq!(get(format!("{base}/..%2F..%2Fetc%2Fpasswd"), dgs_token.clone()).await.status().as_u16(), 404);

    let dossier = get(format!("{base}/01-dossier-de-mise-a-disposition.html"), dgs_token.clone()).await;
    assert_eq!(dossier.headers()["content-type"], "text/html; charset=utf-8");
    let csp = dossier.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script"), "{csp}");
    let html = dossier.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; {{x}}") && !html.contains("<script>"));
    assert!(html.contains("@page { size: A4"));
    let md = get(format!("{base}/01-dossier-de-mise-a-disposition.md"), dgs_token.clone()).await;
    assert_eq!(md.headers()["content-type"], "text/markdown; charset=utf-8");

    let zip = app.url(&format!("/api/v1/crises/{id}/documents.zip"));
    let z = get(zip, app_token(&app, Role::Auditor).await).await;
    assert_eq!(z.headers()["content-type"], "application/zip");
    let bytes = z.bytes().await.unwrap();
    assert!(bytes.starts_with(b"PK"), "a zip archive");
    assert!(
        !bytes.windows(b"04-fiches-identifiants".len()).any(|w| w == b"04-fiches-identifiants"),
        "no sheets in the auditor's zip"
    );
}

async fn app_token(app: &TestApp, role: Role) -> String {
    app.token(role, None).await.1
}

#[tokio::test]
async fn a_failed_password_reset_does_not_use_up_the_credential_sheets() {
    let app = TestApp::spawn_with(|c| c.m365.budget_seconds = 5).await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.make_ready(&c.id).await;
    let sim = app.daemon.state().m365_zone_api().unwrap();
    let faults = |body: serde_json::Value| {
        let sim = sim.clone();
        async move { reqwest::Client::new().post(format!("{sim}/_sim/faults")).json(&body).send().await.unwrap() }
    };
    // Microsoft 365 is down while ops print the sheets: an error, and nothing recorded.
    faults(serde_json::json!({ "fail_rate": 1.0 })).await;
    let sheet = app.ops.issue_sheets(c.id.as_str()).await;
    assert_eq!(sheet.status_code(), 500);
    faults(serde_json::json!({})).await;
    // The app lost its User Administrator role: refused naming it, in French, nothing recorded.
    let grants = |body: serde_json::Value| {
        let sim = sim.clone();
        async move { reqwest::Client::new().post(format!("{sim}/_sim/grants")).json(&body).send().await.unwrap() }
    };
    let all = repli_core::m365::LEAST_PRIVILEGE;
    assert!(grants(serde_json::json!({ "app_roles": all, "directory_roles": [] })).await.status().is_success());
    // An hour later the token issued with the role has expired: the next one comes without it.
    let advance =
        reqwest::Client::new().post(format!("{sim}/_sim/advance")).json(&serde_json::json!({"seconds": 3600}));
    assert!(advance.send().await.unwrap().status().is_success());
    let refused = app.ops.issue_sheets(c.id.as_str()).await.unwrap_err();
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(502), "{refused}");
    let text = refused.to_string();
    assert!(text.contains("m365_refused") || text.contains("User Administrator"), "{text}");
    assert!(text.contains("User Administrator"), "the role to grant is named: {text}");
    assert!(
        grants(serde_json::json!({ "app_roles": all, "directory_roles": ["User Administrator"] }))
            .await
            .status()
            .is_success()
    );
    let html = app.ops.issue_sheets(c.id.as_str()).await.unwrap();
    assert!(html.contains("Mot de passe initial"));
    assert_eq!(app.ops.issue_sheets(c.id.as_str()).await.status_code(), 409);
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    assert_eq!(log.iter().filter(|e| e.action == "documents.credential_sheets").count(), 1);
}

/// Sheets go to new accounts only; lost sheets are re-issued (every password set again) with a
/// reason, audited, by ops; the web page says « one download » and answers errors in French.
#[tokio::test]
async fn sheets_for_new_accounts_only_and_an_audited_reissue() {
    let app = TestApp::spawn().await;
    let mut r = request("13005");
    r.agents = 2;
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    app.make_ready(&c.id).await;
    let first = app.ops.issue_sheets(id).await.unwrap();
    assert_eq!(first.matches("Mot de passe initial").count(), 2, "{first}");
    // A third agent named after the kit was ready: one new sheet, for that account only.
    let add = repli_proto::api::AgentsRequest {
        agents: vec![repli_proto::api::AgentInput { name: "Zoé Tardive".into(), service: "Accueil".into() }],
    };
    app.dgs.add_agents(id, &add).await.unwrap();
    app.wait_steps(&c.id, "the third account", |v| {
        v.runs.iter().flat_map(|r| &r.steps).any(|s| {
            s.step == "accounts"
                && s.state == repli_core::StepState::Succeeded
                && s.output.as_ref().is_some_and(|o| o["accounts"].as_array().map_or(0, Vec::len) == 3)
        })
    })
    .await;
    let second = app.ops.issue_sheets(id).await.unwrap();
    assert_eq!(second.matches("Mot de passe initial").count(), 1, "{second}");
    assert!(second.contains("zoe.tardive@") && !second.contains("agent.numero1@"), "{second}");
    assert_eq!(app.ops.issue_sheets(id).await.status_code(), 409);
    // Re-issue: a reason is required, the DGS may not, and every account gets a new password.
    assert_eq!(app.ops.reissue_sheets(id, "  ").await.status_code(), 422);
    assert_eq!(app.ops.reissue_sheets(id, &"x".repeat(5000)).await.status_code(), 422);
    assert_eq!(app.ops.reissue_sheets(id, "perdu\u{202E}").await.status_code(), 422);
    assert_eq!(app.dgs.reissue_sheets(id, "perdues").await.status_code(), 403);
    let again = app.ops.reissue_sheets(id, "fiches détruites par l'imprimante").await.unwrap();
    assert_eq!(again.matches("Mot de passe initial").count(), 3);
    let secret =
        |html: &str| html.split("<span class=\"secret\">").nth(2).and_then(|r| r.split('<').next()).unwrap().to_owned();
    assert_ne!(secret(&first), secret(&again), "the passwords changed");
    let q = repli_proto::api::AuditQuery {
        crisis: Some(id.into()),
        action: Some("documents.credential_sheets.reissued".into()),
        ..Default::default()
    };
    let e = app.auditor.audit_entries(&q).await.unwrap().entries;
    assert_eq!(e.len(), 1);
    assert!(e[0].details.contains("imprimante") && e[0].details.contains("\"accounts\":3"), "{}", e[0].details);

    // Once the hand-back disables the accounts, no sheet can be issued.
    app.ops.act(&c.id, repli_core::CrisisAction::StartHandback, Some("fin")).await.unwrap();
    let e = app.ops.reissue_sheets(id, "encore").await.unwrap_err();
    assert!(e.problem().unwrap().detail.contains("pas en service"));
}

/// The procedures pack of a crisis run to its closure, and the pages its DGS sees, read in
/// French: no raw code, no English, no command line, no « le le », no « crise … activé ».
#[tokio::test]
async fn the_pack_and_the_dgs_pages_read_in_french() {
    let app = TestApp::spawn().await;
    let pool = repli_proto::api::ImportFile { source: "pool.csv".into(), csv: repli_tests::SMALL_POOL.into() };
    app.ops.import_inventory(&repli_proto::api::ImportRequest { files: vec![pool] }).await.unwrap();
    let mut r = request("13005");
    r.agents = 1;
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    let (_, dgs_token) = app.token(Role::Dgs, Some("13005")).await;
    let http = reqwest::Client::new();
    let page = |path: String| {
        let (http, token, url) = (http.clone(), dgs_token.clone(), app.url(&path));
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
            (path, r.text().await.unwrap())
        }
    };
    let mut read = vec![page(format!("/crises/{id}/demande-enregistree")).await];
    app.dgs.add_log(id, "information", "Le serveur de la mairie est éteint.").await.unwrap();
    let agents = AgentsRequest { agents: vec![AgentInput { name: "Luc Durand".into(), service: "Accueil".into() }] };
    app.dgs.set_agents(id, &agents).await.unwrap();
    read.push(page(format!("/crises/{id}")).await);
    app.make_ready(&c.id).await;
    read.push(page(format!("/crises/{id}")).await);
    app.ops.act(&c.id, repli_core::CrisisAction::Deliver, None).await.unwrap();
    app.hand_back(&c.id).await;
    for path in ["/".to_owned(), "/demande".to_owned(), format!("/crises/{id}")] {
        read.push(page(path).await);
    }
    let names = app.ops.documents(id).await.unwrap();
    assert!(names.len() >= 6, "{names:?}");
    for name in names.iter().filter(|n| !n.starts_with("04-fiches")) {
        read.push((name.clone(), app.ops.document(id, name).await.unwrap()));
    }
    let mut faults = Vec::new();
    for (what, html) in &read {
        for f in repli_tests::french_faults(&repli_tests::visible_text(html)) {
            faults.push(format!("{what}: {f}"));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}
