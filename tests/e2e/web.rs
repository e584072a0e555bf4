//! Web sign-in: argon2id passwords, session cookie, CSRF on every form, throttling, escaping.

use repli_core::Role;
use repli_tests::{TestApp, request};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};

const PASSWORD: &str = "une phrase de passe longue";

pub(crate) fn http() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(crate) fn encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// The value of cookie `name` among a response's Set-Cookie headers, with its attributes.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap_or("")
}

fn hidden_csrf(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("csrf field") + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A user with a web password; returns their login.
async fn web_user(app: &TestApp, name: &str, login: &str) -> String {
    app.web_user(Role::Ops, None, name, login, PASSWORD).await;
    login.to_owned()
}

/// Fetches the sign-in form: (login-csrf cookie, form csrf).
async fn form(app: &TestApp) -> (String, String) {
    let r = http().get(app.url("/connexion")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    let cookie = set_cookie(&r, "repli_login_csrf").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let html = r.text().await.unwrap();
    assert!(html.contains("lang=\"fr\"") && html.contains("<label for=\"password\">"));
    (cookie_value(&cookie).to_owned(), hidden_csrf(&html))
}

async fn sign_in(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    let (cookie, csrf) = form(app).await;
    http()
        .post(app.url("/connexion"))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("login", login), ("password", password), ("csrf", &csrf)]))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_in_session_csrf_and_sign_out() {
    let app = TestApp::spawn().await;
    let login = web_user(&app, "<script>alert(1)</script> Anne", "anne.ops").await;
    let r = sign_in(&app, &login, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/");
    let session = set_cookie(&r, "repli_session").expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict") && session.contains("Path=/"),
        "{session}"
    );
    let cookie = cookie_value(&session).to_owned();

    // The home page escapes the hostile name.
    let home = http().get(app.url("/")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    let html = home.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; Anne"), "{html}");
    assert!(!html.contains("<script>"));
    let csrf = hidden_csrf(&html);

    // The API accepts the session for reads, and for writes only with the CSRF header.
    let me = http().get(app.url("/api/v1/me")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let post = |with_csrf: bool| {
        let mut rb = http().post(app.url("/api/v1/crises")).header(COOKIE, &cookie).json(&request("13005"));
        if with_csrf {
            rb = rb.header("X-CSRF-Token", &csrf);
        }
        rb.send()
    };
    assert_eq!(post(false).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(post(true).await.unwrap().status(), StatusCode::CREATED);

    // Sign-out needs the form's token; afterwards the session is dead.
    let out = |token: &str| {
        http()
            .post(app.url("/deconnexion"))
            .header(COOKIE, &cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(&[("csrf", token)]))
            .send()
    };
    assert_eq!(out("forged").await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = out(&csrf).await.unwrap();
    assert_eq!((r.status(), r.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/connexion"));
    let me = http().get(app.url("/api/v1/me")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let home = http().get(app.url("/")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);

    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    assert!(log.iter().any(|e| e.action == "session.open" && e.auth == "password"));
    assert!(log.iter().any(|e| e.action == "session.close"));
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_throttled() {
    let app = TestApp::spawn().await;
    let login = web_user(&app, "Paul", "paul.ops").await;
    let unknown = sign_in(&app, "personne", PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown_text = unknown.text().await.unwrap();
    for _ in 0..4 {
        let r = sign_in(&app, &login, "mauvais mot de passe").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let text = r.text().await.unwrap();
        assert!(text.contains("Identifiant ou mot de passe incorrect."));
        // The same answer for an unknown login: no account enumeration.
        assert!(unknown_text.contains("Identifiant ou mot de passe incorrect."));
    }
    assert_eq!(sign_in(&app, &login, "encore faux").await.status(), StatusCode::UNAUTHORIZED);
    // Five failures: even the right password waits.
    let r = sign_in(&app, &login, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "900");
    assert!(r.text().await.unwrap().contains("Trop de tentatives"));
}

/// 40 wrong passwords at once: the attempt is reserved before the password is checked, so only
/// the limit's worth are checked (401) and the rest are refused unchecked (429); the right
/// password right after gets no way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_burst_of_wrong_passwords_checks_only_the_limit() {
    let app = TestApp::spawn().await;
    let login = web_user(&app, "Paul", "paul.ops").await;
    let burst = (0..40).map(|_| {
        let (app, login) = (&app, login.clone());
        async move { sign_in(app, &login, "mauvais").await.status() }
    });
    let statuses = futures_util::future::join_all(burst).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 35), "{statuses:?}");
    assert_eq!(sign_in(&app, &login, PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_sign_in_form_is_protected_and_bad_input_is_harmless() {
    let app = TestApp::spawn().await;
    let login = web_user(&app, "Léa", "lea.ops").await;
    // No login-CSRF cookie: refused even with the right password.
    let (_, csrf) = form(&app).await;
    let r = http()
        .post(app.url("/connexion"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("login", &login), ("password", PASSWORD), ("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie(&r, "repli_session").is_none());
    // Hostile and oversized input comes back escaped, never executed.
    let r = sign_in(&app, &format!("<img src=x onerror=alert(1)>{}", "x".repeat(5000)), &"y".repeat(10_000)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let html = r.text().await.unwrap();
    assert!(!html.contains("<img src=x") && html.contains("&lt;img src&#x3D;x"), "{}", &html[..html.len().min(2000)]);
    // A forged session cookie is no session.
    let r = http()
        .get(app.url("/api/v1/me"))
        .header(COOKIE, format!("repli_session={}", "a".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Posts a form with a session cookie.
pub(crate) fn post_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    http()
        .post(app.url(path))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(fields))
        .send()
}

/// The page a form redirected to, read with the session: its message comes from the server,
/// so the redirect's target carries no query.
pub(crate) async fn follow(app: &TestApp, cookie: &str, r: reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let target = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(!target.contains('?'), "a message travelled in the URL: {target}");
    http().get(app.url(&target)).header(COOKIE, cookie).send().await.unwrap().text().await.unwrap()
}

/// The text of the paragraph with this id (`message`, `message-erreur`, `delai-erreur`…).
pub(crate) fn message(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let text = &html[start..];
    let text = &text[text.find('>')? + 1..];
    Some(text[..text.find("</p>")?].to_owned())
}

/// A web user of `role` signed in: (session cookie, form CSRF token).
pub(crate) async fn session_of(app: &TestApp, role: Role, commune: Option<&str>, login: &str) -> (String, String) {
    app.web_user(role, commune, &format!("{login} web"), login, PASSWORD).await;
    let r = sign_in(app, login, PASSWORD).await;
    let cookie = cookie_value(&set_cookie(&r, "repli_session").unwrap()).to_owned();
    let home = http().get(app.url("/")).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    (cookie, hidden_csrf(&home))
}

#[tokio::test]
async fn pages_validate_forms_refuse_other_roles_and_escape_what_was_typed() {
    let app = TestApp::spawn().await;
    let (dgs, dgs_csrf) = session_of(&app, Role::Dgs, Some("13005"), "dgs.web").await;
    let (auditor, _) = session_of(&app, Role::Auditor, None, "audit.web").await;
    let post = |cookie: &str, path: &str, fields: &[(&str, &str)]| {
        http()
            .post(app.url(path))
            .header(COOKIE, cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(fields))
            .send()
    };
    // Every invalid field is reported next to itself, in French, and nothing is created.
    let hostile = "<script>alert(1)</script> {{x}}";
    let r = post(
        &dgs,
        "/demande",
        &[("csrf", &dgs_csrf), ("contact_name", hostile), ("contact_phone", "x"), ("agents", "-3"), ("laptops", "99")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    for id in ["contact_phone-erreur", "agents-erreur", "laptops-erreur"] {
        assert!(html.contains(&format!("id=\"{id}\" class=\"erreur\"")), "{id} missing");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; {{x}}") && !html.contains("<script>"));
    assert!(
        html.contains("id=\"contact_phone\" name=\"contact_phone\"")
            && html.matches("aria-invalid=\"true\"").count() == 3
    );
    assert!(app.ops.crises(&Default::default()).await.unwrap().is_empty());
    // A forged token is refused before anything happens.
    let r = post(
        &dgs,
        "/demande",
        &[("csrf", "forged"), ("contact_name", "A"), ("contact_phone", "0612345678"), ("agents", "2")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A good request goes to its confirmation page, then the crisis page; a hostile
    // main-courante entry is escaped there
    // and in the auditors' journal.
    let r = post(
        &dgs,
        "/demande",
        &[("csrf", &dgs_csrf), ("contact_name", hostile), ("contact_phone", "0612345678"), ("agents", "2")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let recorded = r.headers()[LOCATION].to_str().unwrap().to_owned();
    let page = recorded.strip_suffix("/demande-enregistree").unwrap_or_default().to_owned();
    assert!(page.starts_with("/crises/13005-"), "{recorded}");
    let r = post(
        &dgs,
        &format!("{page}/main-courante"),
        &[("csrf", &dgs_csrf), ("type", "information"), ("texte", hostile)],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    for (cookie, path) in [(&dgs, page.as_str()), (&auditor, "/journal"), (&auditor, page.as_str())] {
        let html =
            http().get(app.url(path)).header(COOKIE, cookie.as_str()).send().await.unwrap().text().await.unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"), "{path}");
    }
    // The agents list: a CSV file (multipart); a bad line is named, an oversized file refused,
    // hostile names kept as data and escaped on the page.
    let upload = |file: String| {
        let boundary = "repli-test-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{dgs_csrf}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"liste\"\r\n\r\n\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"fichier\"; filename=\"agents.csv\"\r\nContent-Type: text/csv\r\n\r\n{file}\r\n\
             --{boundary}--\r\n"
        );
        http()
            .post(app.url(&format!("{page}/agents")))
            .header(COOKIE, &dgs)
            .header(CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
    };
    let said = |html: &str, id: &str| message(html, id).unwrap_or_default();
    let r = upload("Nom;Service\nAnne Martin;Accueil\n\"Luc;Accueil\nZoé;Accueil\n".into()).await.unwrap();
    let html = follow(&app, &dgs, r).await;
    assert!(said(&html, "message-erreur").starts_with("Ligne 3"), "an unterminated quote: {html}");
    let r = upload("Nom;Service\nAnne Martin;Accueil\n\u{1}Luc;Accueil\n".into()).await.unwrap();
    assert!(said(&follow(&app, &dgs, r).await, "message-erreur").starts_with("Ligne 2"));
    let r = upload("A;B\n".repeat(70_000)).await.unwrap();
    assert!(!said(&follow(&app, &dgs, r).await, "message-erreur").is_empty(), "oversized file refused");
    let r = upload(format!("{hostile};Accueil\nLuc Durand;État civil\n")).await.unwrap();
    let html = follow(&app, &dgs, r).await;
    assert!(said(&html, "message").contains("agent(s) ajouté(s)"), "{html}");
    // Shown once: the page read again has no message.
    let again = http().get(app.url(&page)).header(COOKIE, &dgs).send().await.unwrap().text().await.unwrap();
    assert!(message(&again, "message").is_none(), "a message is shown once");
    assert_eq!(app.ops.agents(page.trim_start_matches("/crises/")).await.unwrap()[0].name, hostile);
    // The scan field refuses what a scanner cannot have typed.
    let (ops_cookie, ops_csrf) = session_of(&app, Role::Ops, None, "ops.scan").await;
    for bad in ["", "\u{7}FICTIF", &"X".repeat(101)] {
        let r = post(&ops_cookie, &format!("{page}/retour"), &[("csrf", &ops_csrf), ("serial", bad)]).await.unwrap();
        // No return form on a crisis not being handed back: the error comes at the top.
        assert!(message(&follow(&app, &ops_cookie, r).await, "message-erreur").is_some(), "{bad:?}");
    }

    // The DGS calls the kit off from the page: a confirmation page says what happens and asks
    // for a reason; without one, the same page comes back with the error.
    let confirm = http().get(app.url(&format!("{page}/annulation"))).header(COOKIE, &dgs).send().await.unwrap();
    assert_eq!(confirm.status(), StatusCode::OK);
    let html = confirm.text().await.unwrap();
    assert!(html.contains("Annuler la demande de kit ?") && html.contains("retourne au stock"), "{html}");
    let r = post(&dgs, &format!("{page}/annulation"), &[("csrf", &dgs_csrf), ("motif", "  ")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("exige un motif") && html.contains("class=\"danger\""), "{html}");
    let r = post(&dgs, &format!("{page}/annulation"), &[("csrf", &dgs_csrf), ("motif", "SI rétabli")]).await.unwrap();
    assert!(message(&follow(&app, &dgs, r).await, "message").is_some());
    let id = page.trim_start_matches("/crises/");
    assert_eq!(app.ops.crisis(id).await.unwrap().state, repli_core::CrisisState::Cancelled);
    // Pages closed to the role say so.
    for path in ["/journal", "/taches", "/inventaire", "/rapport-sla"] {
        let r = http().get(app.url(path)).header(COOKIE, &dgs).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(r.text().await.unwrap().contains("Accès refusé"));
    }
    let export = http().get(app.url("/journal/export?format=jsonl")).header(COOKIE, &auditor).send().await.unwrap();
    assert_eq!(export.headers()[CONTENT_TYPE], "application/x-ndjson");
    assert!(export.text().await.unwrap().lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

/// Opening the hand-back, skipping a step and writing an item off go through a confirmation
/// page that says what will happen and asks for a reason; the old one-click form is refused.
#[tokio::test]
async fn destructive_actions_are_confirmed_on_their_own_page() {
    use repli_core::{CrisisAction, CrisisState, StepState};
    use repli_proto::api::{AgentInput, AgentsRequest, AuditQuery, LendRequest};
    let app = TestApp::spawn().await;
    let pool = include_str!("../../inventory/pool.csv");
    let files = vec![repli_proto::api::ImportFile { source: "pool.csv".into(), csv: pool.into() }];
    app.ops.import_inventory(&repli_proto::api::ImportRequest { files }).await.unwrap();
    let mut r = request("13005");
    r.agents = 2;
    r.needs = Some(repli_proto::api::KitNeeds { laptop: 2, router: 0, phone: 0, printer: 0 });
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    let hostile = "<img src=x onerror=alert(1)> Zoé";
    let agents = (0..c.agents)
        .map(|i| AgentInput {
            name: if i == 0 { hostile.into() } else { format!("Agent Numéro{i}") },
            service: "Accueil".into(),
        })
        .collect();
    let agents = app.dgs.set_agents(id, &AgentsRequest { agents }).await.unwrap();
    app.make_ready(&c.id).await;
    let laptop = app
        .ops
        .inventory_items()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.crisis.as_deref() == Some(id) && i.item.kind == repli_core::ItemKind::Laptop)
        .unwrap()
        .item
        .serial;
    app.ops.lend(id, &LendRequest { serial: laptop.clone(), agent_id: Some(agents[0].id) }).await.unwrap();
    let (ops, csrf) = session_of(&app, Role::Ops, None, "ops.confirm").await;
    let get = |path: String| http().get(app.url(&path)).header(COOKIE, &ops).send();
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form(&app, &ops, &path, &pairs)
    };

    // The crisis page links to the confirmation; the old one-click form does nothing.
    let html = get(format!("/crises/{id}")).await.unwrap().text().await.unwrap();
    assert!(html.contains(&format!("href=\"/crises/{id}/restitution\"")) && !html.contains("value=\"start_handback\""));
    let r = post(format!("/crises/{id}/action"), vec![("csrf", csrf.clone()), ("action", "start_handback".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.ops.crisis(id).await.unwrap().state, CrisisState::Ready);
    // The confirmation page says what happens; without a reason, nothing is done.
    let r = get(format!("/crises/{id}/restitution")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Ouvrir la restitution du kit ?") && html.contains("désactivés"), "{html}");
    let r =
        post(format!("/crises/{id}/restitution"), vec![("csrf", csrf.clone()), ("motif", " ".into())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.ops.crisis(id).await.unwrap().state, CrisisState::Ready);
    let r = post(format!("/crises/{id}/restitution"), vec![("csrf", "forged".into()), ("motif", "fin".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(
        format!("/crises/{id}/restitution"),
        vec![("csrf", csrf.clone()), ("motif", "SI de la commune rétabli".into())],
    )
    .await
    .unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message").is_some());
    assert_eq!(app.ops.crisis(id).await.unwrap().state, CrisisState::Handback);
    let q = AuditQuery { crisis: Some(id.into()), action: Some("crisis.start_handback".into()), ..Default::default() };
    let e = app.auditor.audit_entries(&q).await.unwrap().entries;
    assert!(e[0].details.contains("SI de la commune rétabli"), "the reason is audited: {}", e[0].details);

    // Writing off: the page names the item and its borrower, escaped.
    let r = get(format!("/crises/{id}/pertes/{laptop}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt; Zoé") && !html.contains("<img"), "{html}");
    let r = post(format!("/crises/{id}/pertes/{laptop}"), vec![("csrf", csrf.clone()), ("motif", "".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(app.ops.loans(id).await.unwrap().iter().all(|l| l.returned_at.is_none()));
    let r = post(
        format!("/crises/{id}/pertes/{laptop}"),
        vec![("csrf", csrf.clone()), ("motif", "volé, plainte déposée".into())],
    )
    .await
    .unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message").is_some());
    let loans = app.ops.loans(id).await.unwrap();
    assert_eq!(loans[0].condition.as_deref(), Some("missing"));
    assert_eq!(get(format!("/crises/{id}/pertes/{laptop}")).await.unwrap().status(), StatusCode::CONFLICT);
    assert_eq!(get(format!("/crises/{id}/pertes/..%2F..%2Fetc")).await.unwrap().status(), StatusCode::CONFLICT);

    // Skipping a step: a page for a step that may be skipped, a refusal for one that is done.
    app.wait_steps(&c.id, "the wind-down", |v| {
        repli_tests::step_state(v, "handback", "retrieval") == Some(StepState::WaitingManual)
    })
    .await;
    let r = get(format!("/crises/{id}/etapes/inconnue/ignorer")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("Étape inconnue"));
    let r = get(format!("/crises/{id}/etapes/winddown/ignorer")).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("ne peut pas être ignorée"));
    let r = get(format!("/crises/{id}/etapes/retrieval/ignorer")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Ignorer cette étape ?"));
    let r = post(
        format!("/crises/{id}/etapes/retrieval/ignorer"),
        vec![("csrf", csrf.clone()), ("motif", "la commune renonce à ses données".into())],
    )
    .await
    .unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message").is_some());
    let v = app.ops.steps(id).await.unwrap();
    assert_eq!(repli_tests::step_state(&v, "handback", "retrieval"), Some(StepState::Skipped));
    assert_eq!(app.ops.act(&c.id, CrisisAction::Close, None).await.unwrap_err().status().unwrap().as_u16(), 409);
}

/// The credential sheets page: one download, a confirmation before a re-issue, French errors.
#[tokio::test]
async fn the_sheets_page_downloads_once_and_reissues_after_confirmation() {
    let app = TestApp::spawn().await;
    let mut r = request("13005");
    r.agents = 2;
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    app.make_ready(&c.id).await;
    let (ops, csrf) = session_of(&app, Role::Ops, None, "ops.fiches").await;
    let (dgs, _) = session_of(&app, Role::Dgs, Some("13005"), "dgs.fiches").await;
    let get = |cookie: &str, path: String| http().get(app.url(&path)).header(COOKIE, cookie).send();
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form(&app, &ops, &path, &pairs)
    };
    let page = format!("/crises/{id}/fiches-identifiants");
    assert_eq!(get(&dgs, page.clone()).await.unwrap().status(), StatusCode::FORBIDDEN);
    let crisis_page = get(&ops, format!("/crises/{id}")).await.unwrap().text().await.unwrap();
    assert!(crisis_page.contains(&format!("href=\"{page}\"")), "the crisis page links to the sheets page");
    let html = get(&ops, page.clone()).await.unwrap().text().await.unwrap();
    assert!(
        html.contains("le fichier ne se télécharge qu") && html.contains("en attente de fiche : <strong>2</strong>"),
        "{html}"
    );
    let r = post(page.clone(), vec![("csrf", csrf.clone())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(r.text().await.unwrap().matches("Mot de passe initial").count(), 2);
    // A second click: a French page, not JSON.
    let r = post(page.clone(), vec![("csrf", csrf.clone())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("déjà été délivrées"));
    let html = get(&ops, page.clone()).await.unwrap().text().await.unwrap();
    assert!(html.contains("Toutes les fiches ont été remises"), "{html}");
    // Re-issue: a confirmation page, a reason, then the download of every sheet.
    let confirm = get(&ops, format!("{page}/reinitialiser")).await.unwrap().text().await.unwrap();
    assert!(confirm.contains("Délivrer de nouveaux mots de passe ?") && confirm.contains("cessent de fonctionner"));
    let r = post(format!("{page}/reinitialiser"), vec![("csrf", csrf.clone()), ("motif", "".into())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("class=\"danger\""));
    let r = post(format!("{page}/reinitialiser"), vec![("csrf", "forged".into()), ("motif", "perdu".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(format!("{page}/reinitialiser"), vec![("csrf", csrf.clone()), ("motif", "second jeu perdu".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("fiches-identifiants-"));
    assert_eq!(r.text().await.unwrap().matches("Mot de passe initial").count(), 2);
}

/// The tenant preflight: run at start, summed up on the ops dashboard, in full on `/m365`
/// (run again from there, behind CSRF), through the API for ops only; a failed one warns
/// before an activation, on the crisis page and in `repli crisis activate`.
#[tokio::test]
async fn a_failed_tenant_preflight_is_shown_and_warns_before_activation() {
    use repli_core::m365::CheckStatus;
    // The client secret recorded as expired: the preflight fails on it, and only on it.
    let app = TestApp::spawn_with(|c| c.m365.secret_expires_on = Some("2020-01-01".into())).await;
    let run = app.ops.m365_preflight().await.unwrap();
    assert!(!run.report.ok, "{run:#?}");
    for check in &run.report.checks {
        let expected = match check.key.as_str() {
            "credential" => CheckStatus::Fail,
            "directory_role" => CheckStatus::Warn,
            _ => CheckStatus::Ok,
        };
        assert_eq!(check.status, expected, "{check:?}");
    }
    // Not ready while the preflight fails; the route says which check, and nothing more.
    let ready: serde_json::Value = reqwest::get(app.url("/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"ready": false, "database": true, "engine": true, "m365": false, "audit": true,
            "reasons": ["m365_preflight_failed: the last Microsoft 365 preflight failed"]})
    );
    match app.dgs.m365_preflight().await {
        Err(repli_proto::ClientError::Api { status, .. }) => assert_eq!(status, StatusCode::FORBIDDEN),
        other => panic!("a DGS ran the preflight: {other:?}"),
    }

    let (cookie, csrf) = session_of(&app, Role::Ops, None, "ops-locataire").await;
    let get = |path: &str| {
        let req = http().get(app.url(path)).header(COOKIE, &cookie);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let home = get("/").await;
    assert!(home.contains("Locataire Microsoft 365") && home.contains("Validité du certificat ou du secret"), "{home}");
    // A French error page gives the request's reference in small print.
    let missing = get("/crises/13005-2099-999").await;
    assert!(missing.contains("Référence à donner à l'astreinte si besoin : "), "{missing}");
    let page = get("/m365").await;
    assert!(page.contains("Échec") && page.contains("secret expiré depuis le 01/01/2020"), "{page}");
    let refused = post_form(&app, &cookie, "/m365", &[("csrf", "faux")]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let rerun = post_form(&app, &cookie, "/m365", &[("csrf", &csrf)]).await.unwrap();
    assert_eq!((rerun.status(), rerun.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/m365"));

    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let seen_by_ops = app.ops.crisis(c.id.as_str()).await.unwrap();
    let warning = seen_by_ops.m365_warning.unwrap_or_default();
    assert!(warning.contains("Validité du certificat ou du secret"), "{warning}");
    let crisis = get(&format!("/crises/{}", c.id)).await;
    assert!(crisis.contains("Le dernier contrôle du locataire Microsoft 365 a échoué"), "{crisis}");
    // The DGS is not told about the tenant.
    assert!(c.m365_warning.is_none());
    let seen_by_dgs = app.dgs.crisis(c.id.as_str()).await.unwrap();
    assert!(seen_by_dgs.m365_warning.is_none(), "{seen_by_dgs:?}");

    let (_, token) = app.token(Role::Ops, None).await;
    let out = tokio::process::Command::new(repli_tests::workspace_bin("repli"))
        .env("REPLI_SERVER", app.daemon.url())
        .env("REPLI_TOKEN", &token)
        .args(["crisis", "activate", c.id.as_str()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "activation stays possible: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Attention : Le dernier contrôle du locataire Microsoft 365 a échoué"), "{err}");
    let after = app.ops.crisis(c.id.as_str()).await.unwrap();
    assert!(after.m365_warning.is_none(), "once activated, no more warning: {after:?}");
}

/// `/readyz` (database writable, engine running, preflight not failed) apart from `/healthz`.
#[tokio::test]
async fn readiness_is_reported_apart_from_liveness() {
    let app = TestApp::spawn().await;
    let r = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"ready": true, "database": true, "engine": true, "m365": true, "audit": true, "reasons": []})
    );
}

/// The hand-back scan takes what is printed on the item — its label or its serial, in any case —
/// with the condition it came back in.
#[tokio::test]
async fn the_hand_back_scan_takes_labels_in_any_case_and_a_condition() {
    use repli_proto::api::{ImportFile, ImportRequest, LendRequest};
    let app = TestApp::spawn().await;
    let pool = include_str!("../../inventory/pool.csv");
    let files = vec![ImportFile { source: "pool.csv".into(), csv: pool.into() }];
    app.ops.import_inventory(&ImportRequest { files }).await.unwrap();
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.make_ready(&c.id).await;
    let id = c.id.as_str();
    let items = app.ops.inventory_items().await.unwrap();
    let mine: Vec<_> = items.iter().filter(|i| i.crisis.as_deref() == Some(id)).take(3).collect();
    assert_eq!(mine.len(), 3, "three items reserved for the crisis");
    for i in &mine {
        app.ops.lend(id, &LendRequest { serial: i.item.serial.clone(), agent_id: None }).await.ok();
    }
    let agents = app.ops.agents(id).await.unwrap();
    for i in &mine {
        let req = LendRequest { serial: i.item.serial.clone(), agent_id: agents.first().map(|a| a.id) };
        app.ops.lend(id, &req).await.ok();
    }
    app.ops.act(&c.id, repli_core::CrisisAction::Deliver, None).await.unwrap();
    app.ops.act(&c.id, repli_core::CrisisAction::StartHandback, Some("SI rétabli")).await.unwrap();
    let (ops, csrf) = session_of(&app, Role::Ops, None, "ops.retour").await;
    let page = format!("/crises/{id}/retour");
    let cases = [
        (mine[0].item.asset_tag.to_lowercase(), "damaged"),
        (format!("  {}  ", mine[1].item.serial.to_lowercase()), "ok"),
        (mine[2].item.asset_tag.clone(), "missing"),
    ];
    for (code, etat) in &cases {
        let r = post_form(&app, &ops, &page, &[("csrf", &csrf), ("serial", code), ("etat", etat)]).await.unwrap();
        let html = follow(&app, &ops, r).await;
        // Beside the scan field, where the next scan is typed.
        assert!(
            message(&html, "retour-resultat").is_some_and(|m| m.starts_with("Retour enregistré")),
            "{code:?}: {html}"
        );
    }
    let r =
        post_form(&app, &ops, &page, &[("csrf", &csrf), ("serial", "AMP-INCONNU-9"), ("etat", "ok")]).await.unwrap();
    assert!(message(&follow(&app, &ops, r).await, "retour-erreur").is_some());
    let loans = app.ops.loans(id).await.unwrap();
    let condition = |serial: &str| loans.iter().find(|l| l.serial == serial).and_then(|l| l.condition.clone());
    assert_eq!(condition(&mine[0].item.serial).as_deref(), Some("damaged"));
    assert_eq!(condition(&mine[1].item.serial).as_deref(), Some("ok"));
    assert_eq!(condition(&mine[2].item.serial).as_deref(), Some("missing"));
    let lost = app.ops.item(&mine[2].item.serial).await.unwrap();
    assert_eq!(lost.item.state, repli_core::ItemState::Lost);
    // The page shows the condition choice as a group, for screen readers too.
    let html = http().get(app.url(&format!("/crises/{id}"))).header(COOKIE, &ops).send().await.unwrap();
    let html = html.text().await.unwrap();
    assert!(html.contains("<legend>État au retour</legend>") && html.contains("value=\"missing\""), "{html}");
}

/// The legal clocks on the crisis page say where they stand in French, not as codes.
#[tokio::test]
async fn legal_clocks_are_shown_in_french() {
    let app = TestApp::spawn().await;
    let mut r = request("13005");
    r.aware_at = Some(app.now());
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let (ops, _) = session_of(&app, Role::Ops, None, "ops.legal").await;
    let html = http().get(app.url(&format!("/crises/{}", c.id))).header(COOKIE, &ops).send().await.unwrap();
    let html = html.text().await.unwrap();
    assert!(html.contains("données personnelles : à déterminer"), "{html}");
    assert!(html.contains("en cours — reste 72 h 00"), "{html}");
    for code in ["ToDetermine", "todetermine", "Pending", "pending"] {
        assert!(!html.contains(code), "raw code {code} on the page");
    }
}

/// WCAG's contrast ratio of two `#rrggbb` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let lum = |hex: &str| {
        let c = |i: usize| {
            let v = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if v <= 0.039_28 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * c(1) + 0.7152 * c(3) + 0.0722 * c(5)
    };
    let (x, y) = (lum(a), lum(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

/// The focus ring stands out (WCAG 2.2, non-text contrast ≥ 3:1) on the white pages and on the
/// blue banner.
#[test]
fn the_focus_ring_has_enough_contrast_where_it_is_drawn() {
    let css = include_str!("../../crates/replid/web/repli.css");
    let colour_after = |needle: &str| {
        let at = css.find(needle).unwrap_or_else(|| panic!("{needle} not in repli.css")) + needle.len();
        css[at..].split('#').nth(1).map(|h| format!("#{}", &h[..6])).unwrap()
    };
    let ring = colour_after(":focus-visible { outline:");
    let banner_ring = colour_after(".bandeau :focus-visible {");
    let blue = colour_after("--bleu:");
    assert!(contrast(&ring, "#ffffff") >= 3.0, "{ring} on white: {:.2}", contrast(&ring, "#ffffff"));
    assert!(contrast(&ring, "#f6f6f6") >= 3.0, "{ring} on the page background");
    assert!(contrast(&banner_ring, &blue) >= 3.0, "{banner_ring} on {blue}: {:.2}", contrast(&banner_ring, &blue));
    assert!((contrast("#ffbf47", "#ffffff") - 1.64).abs() < 0.05, "the old ring was 1.64:1 on white");
}

/// Contacts still at their placeholder are named on every page ops see (they are printed in the
/// DGS's dossier); once set, the sign-in page gives the astreinte's number.
#[tokio::test]
async fn placeholder_contacts_are_flagged_to_ops_and_the_real_number_shown_at_sign_in() {
    let app = TestApp::spawn().await;
    let (ops, _) = session_of(&app, Role::Ops, None, "ops.contacts").await;
    let (dgs, _) = session_of(&app, Role::Dgs, Some("13005"), "dgs.contacts").await;
    let page = |cookie: String, path: &'static str| {
        let app = &app;
        async move { http().get(app.url(path)).header(COOKIE, cookie).send().await.unwrap().text().await.unwrap() }
    };
    for path in ["/", "/taches", "/inventaire"] {
        let html = page(ops.clone(), path).await;
        assert!(html.contains("À configurer avant une crise : le numéro d&#x27;astreinte"), "{path}: {html}");
    }
    assert!(!page(dgs.clone(), "/").await.contains("À configurer"), "not the DGS's business");
    let signin = http().get(app.url("/connexion")).send().await.unwrap().text().await.unwrap();
    assert!(signin.contains("Appelez l'astreinte de la métropole :"), "no number yet: {signin}");

    let set = TestApp::spawn_with(|c| {
        c.documents.astreinte_phone = "04 91 99 00 00".into();
        c.documents.astreinte_email = "astreinte@exemple.fr".into();
        c.documents.csirt_phone = "09 70 60 99 99".into();
    })
    .await;
    let signin = http().get(set.url("/connexion")).send().await.unwrap().text().await.unwrap();
    assert!(signin.contains("au <a href=\"tel:04 91 99 00 00\">04 91 99 00 00</a>"), "{signin}");
    let (ops, _) = session_of(&set, Role::Ops, None, "ops.contacts").await;
    let home = http().get(set.url("/")).header(COOKIE, ops).send().await.unwrap().text().await.unwrap();
    assert!(!home.contains("À configurer avant une crise"), "{home}");
}

/// The new ops forms refuse bad input with a French message beside the form, and change
/// nothing: a loan form with one bad line lends none of the others, an oversized scan, a
/// forged agent id, a hostile reason (shown escaped), an unreadable date, a retirement without
/// its tick, a wipe without a certificate, a DGS posting an ops form.
#[tokio::test]
async fn the_ops_forms_refuse_bad_input_and_change_nothing() {
    use repli_proto::api::{ImportFile, ImportRequest};
    let app = TestApp::spawn().await;
    let pool = include_str!("../../inventory/pool.csv");
    let files = vec![ImportFile { source: "pool.csv".into(), csv: pool.into() }];
    app.ops.import_inventory(&ImportRequest { files }).await.unwrap();
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let id = c.id.as_str();
    let (ops, csrf) = session_of(&app, Role::Ops, None, "ops.formulaires").await;
    let (dgs, dgs_csrf) = session_of(&app, Role::Dgs, Some("13005"), "dgs.formulaires").await;
    let page = |cookie: &str, path: String| {
        let cookie = cookie.to_owned();
        let url = app.url(&path);
        async move { http().get(url).header(COOKIE, cookie).send().await.unwrap().text().await.unwrap() }
    };

    // The SLA clock: a hostile reason is kept as text; an empty one is refused beside the form.
    let delai = format!("/crises/{id}/delai");
    let r = post_form(&app, &ops, &delai, &[("csrf", &csrf), ("action", "suspendre"), ("motif", "  ")]).await.unwrap();
    let html = follow(&app, &ops, r).await;
    assert!(message(&html, "delai-erreur").is_some_and(|m| m.contains("Indiquez le motif")), "{html}");
    let hostile = "<script>alert(1)</script> locaux fermés";
    let r =
        post_form(&app, &ops, &delai, &[("csrf", &csrf), ("action", "suspendre"), ("motif", hostile)]).await.unwrap();
    let html = follow(&app, &ops, r).await;
    assert!(message(&html, "message").is_some(), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; locaux fermés") && !html.contains("<script>alert"));
    assert!(html.contains("Délai suspendu depuis"), "the suspension and its reason are shown");
    let r = post_form(&app, &dgs, &delai, &[("csrf", &dgs_csrf), ("action", "reprendre")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a DGS cannot resume the clock");
    let r = post_form(&app, &ops, &delai, &[("csrf", &csrf), ("action", "reprendre")]).await.unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message").is_some());

    // The legal clocks: an unreadable date is refused, nothing recorded; a good one starts them.
    let echeances = format!("/crises/{id}/echeances");
    for bad in ["hier matin", "2026-13-45T10:00", &"9".repeat(5000)] {
        let r = post_form(&app, &dgs, &echeances, &[("csrf", &dgs_csrf), ("aware_at", bad)]).await.unwrap();
        assert!(message(&follow(&app, &dgs, r).await, "echeances-erreur").is_some(), "{bad:.20}");
    }
    assert!(app.ops.crisis(id).await.unwrap().legal.is_empty(), "nothing recorded");
    let r = post_form(
        &app,
        &dgs,
        &echeances,
        &[("csrf", &dgs_csrf), ("aware_at", "2026-11-22T09:30"), ("personal_data", "oui")],
    )
    .await
    .unwrap();
    assert!(message(&follow(&app, &dgs, r).await, "message").is_some());
    assert_eq!(app.ops.crisis(id).await.unwrap().legal.len(), 2, "the CNIL's and the complaint's clocks");
    let r = post_form(
        &app,
        &dgs,
        &format!("/crises/{id}/echeances/inconnue/faite"),
        &[("csrf", &dgs_csrf), ("confirme", "oui")],
    )
    .await
    .unwrap();
    assert!(message(&follow(&app, &dgs, r).await, "echeances-erreur").is_some());
    // Marking a legal obligation done asks for its box to be ticked: one stray tap records
    // nothing.
    let cnil = format!("/crises/{id}/echeances/cnil/faite");
    let html = page(&dgs, format!("/crises/{id}")).await;
    assert!(html.contains("name=\"confirme\" value=\"oui\" required"), "{html}");
    let r = post_form(&app, &dgs, &cnil, &[("csrf", &dgs_csrf)]).await.unwrap();
    let html = follow(&app, &dgs, r).await;
    assert!(message(&html, "echeances-erreur").is_some_and(|m| m.contains("Cochez la case")), "{html}");
    let done = |c: &repli_proto::api::CrisisView| c.legal.iter().any(|l| l.done_at.is_some());
    assert!(!done(&app.ops.crisis(id).await.unwrap()), "nothing recorded without the tick");
    let r = post_form(&app, &dgs, &cnil, &[("csrf", &dgs_csrf), ("confirme", "oui")]).await.unwrap();
    assert!(message(&follow(&app, &dgs, r).await, "message").is_some_and(|m| m.contains("faite")));
    assert!(done(&app.ops.crisis(id).await.unwrap()), "recorded once confirmed");

    // Loans: one bad line among good ones lends nothing; a forged agent id or an oversized
    // scan is refused; the DGS cannot lend.
    app.make_ready(&c.id).await;
    let items: Vec<_> =
        app.ops.inventory_items().await.unwrap().into_iter().filter(|i| i.crisis.as_deref() == Some(id)).collect();
    let router = items.iter().find(|i| i.item.kind == repli_core::ItemKind::Router).unwrap();
    let laptop = items.iter().find(|i| i.item.kind == repli_core::ItemKind::Laptop).unwrap();
    let prets = format!("/crises/{id}/prets");
    let pick_router = format!("pret-{}", router.item.serial);
    let scan = format!("{} ; Personne Inconnue\nAMP-INCONNU-1", laptop.item.asset_tag);
    let r =
        post_form(&app, &ops, &prets, &[("csrf", &csrf), (&pick_router, "commune"), ("scan", &scan)]).await.unwrap();
    let html = follow(&app, &ops, r).await;
    assert!(html.contains("id=\"prets-erreur\""), "{html}");
    assert!(html.contains("Personne Inconnue") && html.contains("AMP-INCONNU-1"), "every bad line is named");
    assert!(app.ops.loans(id).await.unwrap().is_empty(), "the good line was not lent either");
    let r = post_form(&app, &ops, &prets, &[("csrf", &csrf), (&pick_router, "99999")]).await.unwrap();
    assert!(message(&follow(&app, &ops, r).await, "prets-erreur").is_some(), "an agent of no crisis");
    let r = post_form(&app, &ops, &prets, &[("csrf", &csrf), ("scan", &"X;Y\n".repeat(20_000))]).await.unwrap();
    assert!(message(&follow(&app, &ops, r).await, "prets-erreur").is_some());
    let laptop_alone = format!("pret-{}", laptop.item.serial);
    let r = post_form(&app, &ops, &prets, &[("csrf", &csrf), (&laptop_alone, "commune")]).await.unwrap();
    assert!(follow(&app, &ops, r).await.contains("se prête à un agent nommé"), "a laptop goes to a named agent");
    let r = post_form(&app, &dgs, &prets, &[("csrf", &dgs_csrf), (&pick_router, "commune")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(app.ops.loans(id).await.unwrap().is_empty());
    let r = post_form(&app, &ops, &prets, &[("csrf", &csrf), (&pick_router, "commune")]).await.unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message").is_some());
    assert_eq!(app.ops.loans(id).await.unwrap().len(), 1);

    // Items: a retirement without its tick and a wipe without a certificate change nothing.
    let spare = app
        .ops
        .inventory_items()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.crisis.is_none() && i.state == repli_core::ItemState::Available)
        .unwrap();
    let service = format!("/inventaire/{}/service", spare.item.serial);
    let r = post_form(&app, &ops, &service, &[("csrf", &csrf), ("vers", "reforme"), ("motif", "écran cassé")])
        .await
        .unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message-erreur").is_some());
    assert_eq!(app.ops.item(&spare.item.serial).await.unwrap().item.state, repli_core::ItemState::Available);
    let r = post_form(
        &app,
        &ops,
        &format!("/inventaire/{}/effacement", spare.item.serial),
        &[("csrf", &csrf), ("methode", "NIST"), ("operateur", "Atelier"), ("certificat", "")],
    )
    .await
    .unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message-erreur").is_some());
    let r = post_form(
        &app,
        &ops,
        &service,
        &[("csrf", &csrf), ("vers", "reforme"), ("motif", "écran cassé"), ("confirme", "oui")],
    )
    .await
    .unwrap();
    assert!(message(&follow(&app, &ops, r).await, "message").is_some());
    assert_eq!(app.ops.item(&spare.item.serial).await.unwrap().item.state, repli_core::ItemState::Retired);
    let html = page(&ops, format!("/inventaire/{}", spare.item.serial)).await;
    assert!(html.contains("disponible → réformé"), "the history in French: {html}");
}

/// Posts a multipart form: text fields, then one file.
pub(crate) fn post_multipart(
    app: &TestApp,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &str, &str)>,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    let boundary = "repli-test-boundary";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
    }
    if let Some((name, filename, content)) = file {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n{content}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    http()
        .post(app.url(path))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
}

/// The pool import from the browser: a file is checked first (every refused line listed,
/// nothing written), then imported all or nothing; an oversized or empty upload gets a French
/// message; the export imports back.
#[tokio::test]
async fn the_pool_is_imported_after_a_preview_and_exported() {
    let app = TestApp::spawn().await;
    let (ops, csrf) = session_of(&app, Role::Ops, None, "ops.parc").await;
    let (auditor, auditor_csrf) = session_of(&app, Role::Auditor, None, "audit.parc").await;
    let pool = include_str!("../../inventory/pool.csv");
    let count = || async { app.ops.inventory_items().await.unwrap().len() };

    // Malformed lines: each named with its line, nothing imported, hostile text escaped.
    let bad = "asset_tag,serial,kind,model\nT-1,S-1,laptop,P\nT-2,S-2,fusée,<script>x</script>\nT-3,S-1,laptop,P\n";
    let r = post_multipart(&app, &ops, "/inventaire/import", &[("csrf", &csrf)], Some(("fichier", "lot.csv", bad)))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("rien n&#x27;a été importé") || html.contains("rien n'a été importé"), "{html}");
    assert!(html.contains("lot.csv:3") && html.contains("lot.csv:4"), "every refused line: {html}");
    assert!(!html.contains("<script>x"), "escaped");
    assert_eq!(count().await, 0);
    // Empty, oversized, or not UTF-8.
    let r = post_multipart(&app, &ops, "/inventaire/import", &[("csrf", &csrf)], Some(("fichier", "vide.csv", "")))
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Choisissez un fichier CSV"));
    let big = format!("asset_tag,serial,kind,model\n{}", "T,S,laptop,P\n".repeat(90_000));
    let r = post_multipart(&app, &ops, "/inventaire/import", &[("csrf", &csrf)], Some(("fichier", "gros.csv", &big)))
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Fichier trop gros"), "oversized upload");
    // A forged token, or an auditor: refused.
    let r = post_multipart(&app, &ops, "/inventaire/import", &[("csrf", "x")], Some(("fichier", "p.csv", pool)))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post_multipart(
        &app,
        &auditor,
        "/inventaire/import",
        &[("csrf", &auditor_csrf)],
        Some(("fichier", "p.csv", pool)),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(count().await, 0);

    // The real pool: a preview with the counts, nothing written yet; then the import.
    let r = post_multipart(&app, &ops, "/inventaire/import", &[("csrf", &csrf)], Some(("fichier", "pool.csv", pool)))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let lines = pool.lines().count() - 1;
    assert!(html.contains(&format!("Importer ces {lines} équipements")), "{html}");
    assert_eq!(count().await, 0, "a preview writes nothing");
    let r = post_multipart(
        &app,
        &ops,
        "/inventaire/import",
        &[("csrf", &csrf), ("confirmer", "oui"), ("source", "pool.csv"), ("csv", pool)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(count().await, lines);
    // The same file again: every line is already in the pool; nothing changes.
    let r = post_multipart(&app, &ops, "/inventaire/import", &[("csrf", &csrf)], Some(("fichier", "pool.csv", pool)))
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("déjà dans le parc"));
    assert_eq!(count().await, lines);

    // The export imports back into an empty pool, line for line.
    let csv = http().get(app.url("/inventaire/export")).header(COOKIE, &auditor).send().await.unwrap();
    assert_eq!(csv.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let again = repli_core::inventory::parse_items("export.csv", &csv).unwrap();
    let original = repli_core::inventory::parse_items("pool.csv", pool).unwrap();
    let serials = |v: &[(u64, repli_core::inventory::Item)]| {
        let mut s: Vec<String> = v.iter().map(|(_, i)| i.serial.clone()).collect();
        s.sort();
        s
    };
    assert_eq!(serials(&again), serials(&original));
}

/// Admins manage accounts in the browser: a DGS bound to a commune is created (bad input
/// refused beside its field), a one-time link lets the person choose a password (it works
/// once, and a second link cancels the first), then the access is revoked behind a tick.
#[tokio::test]
async fn admins_create_accounts_hand_out_password_links_and_revoke() {
    let app = TestApp::spawn_with(|c| c.server.public_url = Some("https://repli.exemple.fr/".into())).await;
    let (admin, csrf) = session_of(&app, Role::Admin, None, "admin.comptes").await;
    let (ops, ops_csrf) = session_of(&app, Role::Ops, None, "ops.comptes").await;
    let get = |cookie: Option<&str>, path: &str| {
        let mut req = http().get(app.url(path));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        async move { req.send().await.unwrap() }
    };
    // Ops may not; a DGS without a commune, or an unknown role, is refused beside the field.
    let r = post_form(&app, &ops, "/comptes", &[("csrf", &ops_csrf), ("name", "X"), ("role", "ops")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post_form(&app, &admin, "/comptes", &[("csrf", &csrf), ("name", "Anne Martin"), ("role", "dgs")])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"commune-erreur\"") && html.contains("value=\"Anne Martin\""), "kept and explained");
    let r = post_form(&app, &admin, "/comptes", &[("csrf", &csrf), ("name", "Anne"), ("role", "roi")]).await.unwrap();
    assert!(r.text().await.unwrap().contains("id=\"role-erreur\""));
    let r = post_form(&app, &admin, "/comptes", &[("csrf", &csrf), ("name", "<b>\u{7}</b>"), ("role", "auditor")])
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("id=\"name-erreur\""), "a control character in a name");
    let api_admin = app.client(Role::Admin, None).await;
    let before = api_admin.users().await.unwrap().len();
    // A DGS of Aubagne.
    let r = post_form(
        &app,
        &admin,
        "/comptes",
        &[("csrf", &csrf), ("name", "Anne Martin"), ("role", "dgs"), ("commune", "13005")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = r.text().await.unwrap();
    assert!(html.contains("affiché une seule fois") && html.contains("value=\"anne.martin\""), "{html}");
    let users = api_admin.users().await.unwrap();
    assert_eq!(users.len(), before + 1);
    let anne = users.iter().find(|u| u.name == "Anne Martin").unwrap();
    assert_eq!(anne.commune.as_ref().map(|c| c.as_str()), Some("13005"));

    // Two links: the second cancels the first; the link is shown once, with its login.
    let link_of = |html: &str| html.split("/mot-de-passe/").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let path = format!("/comptes/{}/lien", anne.id);
    let r = post_form(&app, &admin, &path, &[("csrf", &csrf), ("login", "anne martin!")]).await.unwrap();
    assert!(message(&follow(&app, &admin, r).await, "message-erreur").is_some(), "a bad login");
    let r = post_form(&app, &admin, &path, &[("csrf", &csrf), ("login", "ops.comptes")]).await.unwrap();
    assert!(message(&follow(&app, &admin, r).await, "message-erreur").is_some(), "a login taken by another account");
    let shown = post_form(&app, &admin, &path, &[("csrf", &csrf), ("login", "anne.martin")]).await.unwrap();
    let shown = shown.text().await.unwrap();
    assert!(shown.contains("https://repli.exemple.fr/mot-de-passe/rpl_"), "the configured public address: {shown}");
    let first = link_of(&shown);
    let second = link_of(
        &post_form(&app, &admin, &path, &[("csrf", &csrf), ("login", "anne.martin")])
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_ne!(first, second);
    assert_eq!(get(None, &format!("/mot-de-passe/{first}")).await.status(), StatusCode::NOT_FOUND, "cancelled");
    let page = get(None, &format!("/mot-de-passe/{second}")).await.text().await.unwrap();
    assert!(page.contains("anne.martin") && page.contains("Anne Martin"));
    // A short password, or two different entries: refused, the link still works.
    let choose = |pairs: Vec<(&'static str, &'static str)>| {
        let url = app.url(&format!("/mot-de-passe/{second}"));
        async move {
            http()
                .post(url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(encode(&pairs))
                .send()
                .await
                .unwrap()
        }
    };
    let r = choose(vec![("password", "court"), ("confirmation", "court")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"password-erreur\""));
    let r = choose(vec![("password", PASSWORD), ("confirmation", "autre chose encore")]).await;
    assert!(r.text().await.unwrap().contains("id=\"confirmation-erreur\""));
    let r = choose(vec![("password", PASSWORD), ("confirmation", PASSWORD)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Mot de passe enregistré"));
    assert_eq!(
        choose(vec![("password", PASSWORD), ("confirmation", PASSWORD)]).await.status(),
        StatusCode::NOT_FOUND,
        "once"
    );
    // She signs in with it; the audit log says she set it herself, by link, never the secret.
    let r = sign_in(&app, "anne.martin", PASSWORD).await;
    let session = cookie_value(&set_cookie(&r, "repli_session").expect("signed in")).to_owned();
    assert!(get(Some(&session), "/").await.text().await.unwrap().contains("Anne Martin"));
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    let set = log.iter().find(|e| e.action == "user.set_password" && e.actor_name == "Anne Martin").unwrap();
    assert!(set.details.contains("by_link"));
    assert!(log.iter().all(|e| !e.details.contains(&second)), "the link's secret is never logged");

    // Revocation: refused without the tick, then her session stops working.
    let revoke = format!("/comptes/{}/revocation", anne.id);
    let r = post_form(&app, &admin, &revoke, &[("csrf", &csrf)]).await.unwrap();
    assert!(message(&follow(&app, &admin, r).await, "message-erreur").is_some());
    assert_eq!(get(Some(&session), "/").await.status(), StatusCode::OK);
    let r = post_form(&app, &admin, &revoke, &[("csrf", &csrf), ("confirme", "oui")]).await.unwrap();
    assert!(message(&follow(&app, &admin, r).await, "message").is_some_and(|m| m.starts_with("Accès révoqué")));
    assert_eq!(get(Some(&session), "/").await.status(), StatusCode::SEE_OTHER, "sent back to sign in");
    let page = get(Some(&admin), "/comptes").await.text().await.unwrap();
    assert!(page.contains("Anne Martin") && page.contains("Aubagne (13005)"), "the list names the commune");
}

#[tokio::test]
async fn ops_start_an_exercise_in_the_browser_and_its_pages_say_exercice() {
    let app = TestApp::spawn().await;
    let (cookie, csrf) = session_of(&app, Role::Ops, None, "ops.exercice").await;
    let page = http().get(app.url("/exercices")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    // The form starts from the example scenario: two communes, one inject.
    assert!(html.contains("Commencer l&#x27;exercice") || html.contains("Commencer l'exercice"), "{html}");
    assert!(html.contains("[[injects]]") && html.contains("13117"));

    // A broken scenario comes back as typed (escaped), with its error; nothing is started.
    let broken = "name = \"<script>x</script>\"\n[[communes]]\ncommune = \"13005\"\nagents = 0\ncontact = { name = \"A\", phone = \"0612345678\" }\n";
    let r = post_form(&app, &cookie, "/exercices", &[("csrf", &csrf), ("scenario", broken)]).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("communes[0].agents") && html.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(!html.contains("<script>x"));
    assert!(app.ops.exercises().await.unwrap().is_empty());
    // Past 64 KiB the scenario is not read.
    let huge = format!("name = \"{}\"", "x".repeat(70_000));
    let r = post_form(&app, &cookie, "/exercices", &[("csrf", &csrf), ("scenario", &huge)]).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("scénario trop long"));
    // Without the form's token: refused.
    let r = post_form(&app, &cookie, "/exercices", &[("scenario", broken)]).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The example as given starts.
    let example = include_str!("../../playbooks/exercises/exemple.toml");
    let r = post_form(&app, &cookie, "/exercices", &[("csrf", &csrf), ("scenario", example)]).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let x = app.ops.exercises().await.unwrap().remove(0);
    assert_eq!(x.crises.len(), 2);
    assert_eq!(x.injects.len(), 1);
    let list = http().get(app.url(r.headers()[LOCATION].to_str().unwrap())).header(COOKIE, &cookie);
    let html = list.send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Exercice cyber — deux communes") && html.contains("commencé"), "{html}");

    // Its crisis page, its dashboard line and its confirmation pages carry the mark.
    let id = x.crises[0].id.to_string();
    let crisis = http().get(app.url(&format!("/crises/{id}"))).header(COOKIE, &cookie).send().await.unwrap();
    let html = crisis.text().await.unwrap();
    assert!(html.contains("<title>EXERCICE — Crise"), "no EXERCICE title");
    assert!(html.contains("class=\"exercice\" role=\"note\""), "no banner");
    assert!(html.contains("<option value=\"inject\">"), "animators may inject by hand");
    let home = http().get(app.url("/")).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("etiquette exercice"));
    let cancel = http().get(app.url(&format!("/crises/{id}/annulation"))).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(cancel.status(), StatusCode::OK);
    assert!(cancel.text().await.unwrap().contains("class=\"exercice\" role=\"note\""));
    // A real crisis's page does not.
    let real = app.ops.request_crisis(&request("13001"), None).await.unwrap();
    let html = http().get(app.url(&format!("/crises/{}", real.id))).header(COOKIE, &cookie).send().await.unwrap();
    let html = html.text().await.unwrap();
    assert!(!html.contains("EXERCICE") && !html.contains("<option value=\"inject\">"));

    // A DGS sees no exercise page; an auditor reads it without the form.
    let (dgs, _) = session_of(&app, Role::Dgs, Some("13005"), "dgs.exercice").await;
    let r = http().get(app.url("/exercices")).header(COOKIE, &dgs).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (auditor, _) = session_of(&app, Role::Auditor, None, "audit.exercice").await;
    let html = http().get(app.url("/exercices")).header(COOKIE, &auditor).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Exercice cyber — deux communes") && !html.contains("name=\"scenario\""));
}

#[tokio::test]
async fn the_campaign_shows_every_open_crisis_the_shared_stock_and_who_is_served_first() {
    let app = TestApp::spawn().await;
    let pool = repli_proto::api::ImportRequest {
        files: vec![repli_proto::api::ImportFile { source: "petit.csv".into(), csv: repli_tests::SMALL_POOL.into() }],
    };
    app.ops.import_inventory(&pool).await.unwrap();
    let scenario = r#"
        name = "Exercice réel"
        mode = "physical"
        [[communes]]
        commune = "13117"
        agents = 2
        contact = { name = "Joueur DGS Vitrolles", phone = "06 98 76 54 32" }
    "#;
    let x = app.ops.start_exercise(&repli_proto::api::ExerciseRequest::from_toml(scenario).unwrap()).await.unwrap();
    app.activate(&x.crises[0].id).await;
    let two = |insee: &str| repli_proto::api::CrisisRequest { agents: 2, ..request(insee) };
    let aubagne = app.ops.request_crisis(&two("13005"), None).await.unwrap();
    app.activate(&aubagne.id).await;
    let aix = app.ops.request_crisis(&two("13001"), None).await.unwrap();
    app.activate(&aix.id).await;

    let c = app.ops.campaign().await.unwrap();
    // Every open crisis, real ones first, the exercise marked.
    assert_eq!(c.crises.len(), 3);
    assert_eq!(c.crises.iter().map(|l| l.exercise).collect::<Vec<_>>(), [false, false, true]);
    // The kit went to Aubagne (taken back from the drill); Aix waits first, the drill after it.
    let order: Vec<&str> = c.waiting.iter().map(|w| w.crisis.as_str()).collect();
    assert_eq!(order, [aix.id.as_str(), x.crises[0].id.as_str()]);
    assert!(c.waiting[1].exercise && c.priority_rule.contains("premier arrivé"));
    let laptops = c.stock.iter().find(|s| s.kind == repli_core::ItemKind::Laptop).unwrap();
    assert_eq!((laptops.available, laptops.held, laptops.missing), (0, 2, 4));
    assert_eq!(c.graph.limit_per_second, None, "no 429 met: no limit learnt");

    // The same on the ops dashboard.
    let (cookie, _) = session_of(&app, Role::Ops, None, "ops.campagne").await;
    let home = http().get(app.url("/")).header(COOKIE, &cookie).send().await.unwrap();
    let html = home.text().await.unwrap();
    assert!(html.contains("File d&#x27;attente du matériel") || html.contains("File d'attente du matériel"));
    let waiting = html.split("<ol class=\"attente\">").nth(1).unwrap().split("</ol>").next().unwrap();
    let (a, d) = (waiting.find(aix.id.as_str()).unwrap(), waiting.find(x.crises[0].id.as_str()).unwrap());
    assert!(a < d, "the real crisis is listed before the exercise");
    assert!(html.contains("<meter"));
    // The task list marks the drill's tasks, and only them.
    let tasks = http().get(app.url("/taches")).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    let drill_task = tasks.split("<article class=\"tache\">").find(|t| t.contains(x.crises[0].id.as_str())).unwrap();
    assert!(drill_task.contains("etiquette exercice"));
    let real_task = tasks.split("<article class=\"tache\">").find(|t| t.contains(aix.id.as_str())).unwrap();
    assert!(!real_task.contains("EXERCICE"));
}

/// Ops see on every page that Microsoft 365 or the DNS is simulated, as the configuration
/// says; a DGS's pages do not carry the banner.
#[tokio::test]
async fn ops_pages_say_what_is_simulated() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let (ops, _) = session_of(&app, Role::Ops, None, "ops.simulation").await;
    let (dgs, _) = session_of(&app, Role::Dgs, Some("13005"), "dgs.simulation").await;
    let read = |cookie: &str, path: String| {
        let (url, cookie) = (app.url(&path), cookie.to_owned());
        async move { http().get(url).header(COOKIE, cookie).send().await.unwrap().text().await.unwrap() }
    };
    for path in ["/".to_owned(), format!("/crises/{}", c.id), "/taches".into(), "/inventaire".into(), "/m365".into()] {
        let html = read(&ops, path.clone()).await;
        assert!(
            html.contains("class=\"simulation\"") && html.contains("Microsoft 365 et le DNS sont simulés"),
            "{path}: {html}"
        );
    }
    let html = read(&dgs, format!("/crises/{}", c.id)).await;
    assert!(!html.contains("class=\"simulation\""), "{html}");
    app.daemon.shutdown().await.unwrap();

    // Microsoft 365 simulated, the DNS published by hand: the banner says only the first.
    let app = TestApp::spawn_with(|c| c.m365.dns = replid::config::DnsMode::Manual).await;
    let (ops, _) = session_of(&app, Role::Ops, None, "ops.simulation").await;
    let html = http().get(app.url("/")).header(COOKIE, ops).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Microsoft 365 est simulé") && !html.contains("DNS est simulé"), "{html}");
}
