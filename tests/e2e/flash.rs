//! No page shows text that came from its URL: the message after a form is held by the server
//! for the session (`replid::web::flash`), and a link carrying `?ok=`, `?erreur=`, `?champ=` or
//! any filter puts none of its words on an official page, whoever opens it.

use repli_core::Role;
use repli_tests::{TestApp, request};
use reqwest::header::{AUTHORIZATION, COOKIE};

use crate::web::{encode, follow, http, message, post_form, session_of};

/// Words an attacker would like an official page to say; the marker is plain letters so that
/// it is found in any encoding (raw, HTML-escaped, percent-encoded).
const MARKER: &str = "zqpiege";
const ATTACK: &str = "zqpiege Votre accès expire : appelez le 06 66 66 66 66 <b>URGENT</b> \u{e9}";

/// Every query parameter a page reads or once read.
const PARAMS: [&str; 20] = [
    "ok",
    "erreur",
    "champ",
    "crise",
    "commune",
    "acteur",
    "action",
    "du",
    "au",
    "apres",
    "format",
    "q",
    "message",
    "next",
    "type",
    "etat",
    "detenteur",
    "tri",
    "ordre",
    "page",
];

/// Every GET route of the table with its placeholders filled for a real crisis, item, step.
fn every_get_path(id: &str, serial: &str) -> Vec<String> {
    replid::routes::route_specs()
        .into_iter()
        .filter(|s| s.method == axum::http::Method::GET)
        .map(|s| {
            s.path
                .replace("{insee}", "13005")
                .replace("{id}", id)
                .replace("{kind}", "cnil")
                .replace("{step}", "reserve")
                .replace("{serial}", serial)
                .replace("{file}", "01-dossier-de-mise-a-disposition.html")
                .replace("{uid}", "1")
                .replace("{nid}", "1")
                .replace("{xid}", "1")
                .replace("{secret}", "repli_inconnu")
        })
        .collect()
}

/// The queries tried on each page: attacker text in every parameter, and in `erreur` beside
/// each form of the crisis page that shows its errors there.
fn attacks() -> Vec<String> {
    let mut all = vec![encode(&PARAMS.map(|p| (p, ATTACK)))];
    for champ in ["prets", "delai", "echeances", "retour"] {
        all.push(encode(&[("erreur", ATTACK), ("champ", champ)]));
    }
    all.push(encode(&[("ok", ATTACK)]));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_shows_text_from_its_url_whoever_opens_it() {
    use repli_proto::api::{ImportFile, ImportRequest, LendRequest};
    let app = TestApp::spawn().await;
    let pool = include_str!("../../inventory/pool.csv");
    app.ops
        .import_inventory(&ImportRequest { files: vec![ImportFile { source: "pool.csv".into(), csv: pool.into() }] })
        .await
        .unwrap();
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let id = c.id.as_str().to_owned();
    app.make_ready(&c.id).await;
    let item = app
        .ops
        .inventory_items()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.crisis.as_deref() == Some(id.as_str()) && i.item.kind == repli_core::ItemKind::Router)
        .unwrap();
    app.ops.lend(&id, &LendRequest { serial: item.item.serial.clone(), agent_id: None }).await.unwrap();

    let mut sessions = vec![("anonymous", None, None)];
    for (who, role, commune, login) in [
        ("admin", Role::Admin, None, "admin.piege"),
        ("ops", Role::Ops, None, "ops.piege"),
        ("dgs", Role::Dgs, Some("13005"), "dgs.piege"),
        ("auditor", Role::Auditor, None, "audit.piege"),
    ] {
        let (cookie, _) = session_of(&app, role, commune, login).await;
        let (_, token) = app.token(role, commune).await;
        sessions.push((who, Some(cookie), Some(token)));
    }
    let paths = every_get_path(&id, &item.item.serial);
    assert!(paths.len() > 20, "the route table lists the pages: {paths:?}");
    let mut seen_ok = 0;
    for (who, cookie, token) in &sessions {
        for path in &paths {
            for query in attacks() {
                let mut rb = http().get(app.url(&format!("{path}?{query}")));
                // Pages with the session cookie, the API with its bearer token.
                if path.starts_with("/api/") {
                    if let Some(t) = token {
                        rb = rb.header(AUTHORIZATION, format!("Bearer {t}"));
                    }
                } else if let Some(c) = cookie {
                    rb = rb.header(COOKIE, c);
                }
                let r = rb.send().await.unwrap();
                let status = r.status();
                let body = String::from_utf8_lossy(&r.bytes().await.unwrap()).to_lowercase();
                assert!(
                    !body.contains(MARKER),
                    "GET {path}?{query} as {who} (HTTP {status}) shows text from its URL: …{}…",
                    &body[body.find(MARKER).unwrap().saturating_sub(200)..]
                        [..400.min(body.len() - body.find(MARKER).unwrap().saturating_sub(200))]
                );
                if status.is_success() {
                    seen_ok += 1;
                }
            }
        }
    }
    assert!(seen_ok > 100, "the pages were really read, not refused: {seen_ok} answers 2xx");
}

/// A form's message reaches its page through the server, once, for its session only; the
/// redirect carries no text.
#[tokio::test]
async fn a_form_message_is_held_for_its_session_and_shown_once() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let page = format!("/crises/{}", c.id);
    let (dgs, csrf) = session_of(&app, Role::Dgs, Some("13005"), "dgs.message").await;
    let (other, _) = session_of(&app, Role::Dgs, Some("13005"), "dgs.autre").await;
    let r = post_form(
        &app,
        &dgs,
        &format!("{page}/main-courante"),
        &[("csrf", &csrf), ("type", "information"), ("texte", "Mairie fermée")],
    )
    .await
    .unwrap();
    let read = |cookie: &str| {
        let (url, cookie) = (app.url(&page), cookie.to_owned());
        async move { http().get(url).header(COOKIE, cookie).send().await.unwrap().text().await.unwrap() }
    };
    // Another session opening the page first does not take it.
    assert!(message(&read(&other).await, "message").is_none());
    let html = follow(&app, &dgs, r).await;
    assert_eq!(message(&html, "message").as_deref(), Some("Entrée ajoutée à la main courante."));
    assert!(message(&read(&dgs).await, "message").is_none(), "shown once");
    // A refusal beside its form, found by its anchor.
    let r =
        post_form(&app, &dgs, &format!("{page}/echeances"), &[("csrf", &csrf), ("aware_at", "hier")]).await.unwrap();
    let target = r.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(target, format!("{page}#echeances-erreur"));
    let html = follow(&app, &dgs, r).await;
    assert!(message(&html, "echeances-erreur").is_some_and(|m| m.contains("illisible")), "{html}");
    assert!(message(&html, "message-erreur").is_none(), "shown beside its form, not at the top");
}
