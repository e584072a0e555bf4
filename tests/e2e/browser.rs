//! The web pages in a real browser: Debian's `chromium` driven through `chromium-driver`.
//!
//! With `REPLI_BROWSER_TESTS=required` (as `.ci/run` sets), a missing browser is a failure;
//! without it, on a machine lacking Chromium, each test says plainly that it was skipped and
//! why. Each test saves a screenshot under `target/browser-screenshots/` when it fails.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use repli_core::{CrisisState, Role};
use repli_proto::api::{ImportFile, ImportRequest, LendRequest};
use repli_tests::TestApp;
use thirtyfour::prelude::*;

const PASSWORD: &str = "une phrase de passe assez longue";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const HOSTILE: &str = "<img src=x onerror=alert(1)> Anne {{x}}";

struct Browser {
    driver: WebDriver,
    _chromedriver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

/// Starts chromedriver and a headless Chromium, or returns None (skipped) when they are absent
/// and not required.
async fn browser(test: &str) -> Option<Browser> {
    let required = std::env::var("REPLI_BROWSER_TESTS").is_ok_and(|v| v == "required");
    let missing: Vec<&str> =
        [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !std::path::Path::new(p).exists()).collect();
    if !missing.is_empty() {
        let why = format!("{} not installed (apt-get install chromium chromium-driver)", missing.join(" and "));
        assert!(!required, "browser test {test}: REPLI_BROWSER_TESTS=required but {why}");
        eprintln!("browser test {test} SKIPPED: {why}; set REPLI_BROWSER_TESTS=required to make this a failure");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let chromedriver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(CHROMIUM).unwrap();
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1200,1600",
    ] {
        caps.add_arg(arg).unwrap();
    }
    caps.add_arg(&format!("--user-data-dir={}", profile.path().display())).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let driver = loop {
        match WebDriver::new(&url, caps.clone()).await {
            Ok(d) => break d,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start Chromium through chromedriver: {e}"),
        }
    };
    // Elements looked for are waited for (pages load after each click); absence is checked
    // with a script instead, so that it costs no wait.
    driver.set_implicit_wait_timeout(Duration::from_secs(5)).await.unwrap();
    Some(Browser { driver, _chromedriver: chromedriver, _profile: profile })
}

/// Runs a browser test; on failure, saves a screenshot and the page source, then fails.
async fn run<F, Fut>(test: &str, body: F)
where
    F: FnOnce(WebDriver) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(b) = browser(test).await else { return };
    let driver = b.driver.clone();
    let outcome = std::panic::AssertUnwindSafe(body(b.driver.clone())).catch_unwind().await;
    if outcome.is_err() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
        let _ = std::fs::create_dir_all(&dir);
        let _ = driver.screenshot(&dir.join(format!("{test}.png"))).await;
        if let Ok(src) = driver.source().await {
            let _ = std::fs::write(dir.join(format!("{test}.html")), src);
        }
        eprintln!("screenshot saved in {}", dir.display());
    }
    let _ = driver.quit().await;
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

/// With `REPLI_SCREENSHOTS=1`, saves the current page as `target/browser-screenshots/NAME.png`
/// (to look at the pages while working on them).
async fn snap(d: &WebDriver, name: &str) {
    if std::env::var_os("REPLI_SCREENSHOTS").is_some() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
        let _ = std::fs::create_dir_all(&dir);
        let _ = d.screenshot(&dir.join(format!("page-{name}.png"))).await;
    }
}

/// On a phone-sized window, the page does not scroll sideways.
async fn assert_fits_a_phone(d: &WebDriver, page: &str) {
    d.set_window_rect(0, 0, 390, 844).await.unwrap();
    let fits =
        d.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1;", Vec::new()).await.unwrap();
    let width = d
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth, Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '.' + e.className + '#' + e.id).slice(0, 5)];",
            Vec::new(),
        )
        .await
        .unwrap();
    snap(d, &format!("telephone-{page}")).await;
    d.set_window_rect(0, 0, 1200, 1600).await.unwrap();
    assert_eq!(fits.json(), &serde_json::json!(true), "{page} overflows a phone screen: {:?}", width.json());
}

/// A user with a web login and password.
async fn web_user(app: &TestApp, role: Role, commune: Option<&str>, login: &str) {
    app.web_user(role, commune, &format!("{login} (web)"), login, PASSWORD).await;
}

async fn sign_in(d: &WebDriver, app: &TestApp, login: &str) {
    d.goto(app.url("/connexion")).await.unwrap();
    d.find(By::Id("login")).await.unwrap().send_keys(login).await.unwrap();
    d.find(By::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    click_nav(d, "form button[type=submit]").await;
    let h1 = d.find(By::Tag("h1")).await.unwrap().text().await.unwrap();
    assert!(h1.starts_with("Bonjour"), "signed in as {login}: {h1}");
}

async fn sign_out(d: &WebDriver) {
    click_nav(d, "form.deconnexion button").await;
    assert!(d.current_url().await.unwrap().path().ends_with("/connexion"));
}

/// Clicks and waits for the next page to replace this one.
async fn click_nav(d: &WebDriver, css: &str) {
    let old = d.find(By::Tag("html")).await.unwrap();
    d.find(By::Css(css)).await.unwrap().click().await.unwrap();
    wait_replaced(&old, css).await;
}

/// Waits until `old` (a page's root element) is gone: the next page has replaced it.
async fn wait_replaced(old: &thirtyfour::WebElement, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while old.is_present().await.unwrap_or(false) {
        assert!(Instant::now() < deadline, "no new page after {after}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(d: &WebDriver, css: &str) -> String {
    d.find(By::Css(css)).await.unwrap().text().await.unwrap()
}

/// The page has no element created from the hostile string, only its text.
async fn assert_escaped(d: &WebDriver, page: &str, shown_as_text: bool) {
    let source = d.source().await.unwrap();
    assert!(!source.contains("<img src=x"), "{page}: hostile markup in the page");
    let images = d.execute("return document.querySelectorAll('img').length;", Vec::new()).await.unwrap();
    assert_eq!(images.json(), &serde_json::json!(0), "{page}: an <img> element was created");
    if shown_as_text {
        let body = text_of(d, "body").await;
        assert!(
            body.contains("<img src=x onerror=alert(1)> Anne {{x}}"),
            "{page}: the hostile text is not shown as text"
        );
    }
}

#[tokio::test]
async fn a_dgs_requests_ops_activate_and_confirm_the_dgs_downloads_the_documents() {
    let app = TestApp::spawn().await;
    let pool = include_str!("../../inventory/pool.csv");
    app.ops
        .import_inventory(&ImportRequest { files: vec![ImportFile { source: "pool.csv".into(), csv: pool.into() }] })
        .await
        .unwrap();
    web_user(&app, Role::Dgs, Some("13005"), "dgs.aubagne").await;
    web_user(&app, Role::Ops, None, "ops.metropole").await;
    run("request_activate_download", |d| async move {
        // The DGS requests the kit; a bad phone number comes back next to its field.
        sign_in(&d, &app, "dgs.aubagne").await;
        d.find(By::LinkText("Demander le kit de repli")).await.unwrap().click().await.unwrap();
        d.find(By::Id("contact_name")).await.unwrap().send_keys(HOSTILE).await.unwrap();
        d.find(By::Id("contact_phone")).await.unwrap().send_keys("12").await.unwrap();
        d.find(By::Id("pd-oui")).await.unwrap().click().await.unwrap();
        let agents = d.find(By::Id("agents")).await.unwrap();
        agents.clear().await.unwrap();
        agents.send_keys("2").await.unwrap();
        d.find(By::Id("agents_list"))
            .await
            .unwrap()
            .send_keys("Anne Martin ; Accueil\nLuc Durand ; État civil")
            .await
            .unwrap();
        click_nav(&d, "main form button[type=submit]").await;
        let err = text_of(&d, "#contact_phone-erreur").await;
        assert!(err.contains("numéro"), "phone error next to its field: {err}");
        assert_escaped(&d, "request form with errors", false).await;
        assert_fits_a_phone(&d, "demande").await;
        snap(&d, "demande-erreurs").await;
        let name = d.find(By::Id("contact_name")).await.unwrap().prop("value").await.unwrap();
        assert_eq!(name.as_deref(), Some(HOSTILE), "what was typed is kept");
        let phone = d.find(By::Id("contact_phone")).await.unwrap();
        phone.clear().await.unwrap();
        phone.send_keys("06 12 34 56 78").await.unwrap();
        click_nav(&d, "main form button[type=submit]").await;
        let title = text_of(&d, "h1").await;
        assert!(title.starts_with("Crise 13005-"), "{title}");
        let id = title.trim_start_matches("Crise ").split(' ').next().unwrap().to_string();
        assert!(text_of(&d, "main").await.contains("demandé"));
        assert_escaped(&d, "crisis page (DGS)", true).await;
        assert_fits_a_phone(&d, "crise").await;
        snap(&d, "crise-dgs").await;
        sign_out(&d).await;

        // Ops see it on their dashboard, activate it after checking the convention, and
        // confirm the manual steps as they come.
        sign_in(&d, &app, "ops.metropole").await;
        snap(&d, "accueil-ops").await;
        d.find(By::LinkText(id.as_str())).await.unwrap().click().await.unwrap();
        assert!(
            text_of(&d, "main").await.contains("signée le 14 décembre 2023"),
            "the convention is shown before activation, dated in French"
        );
        click_nav(&d, "form.action button").await;
        assert_escaped(&d, "crisis page (ops)", true).await;
        snap(&d, "crise-ops").await;
        let crisis_id = repli_core::CrisisId::parse(&id).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            d.goto(app.url("/taches")).await.unwrap();
            snap(&d, "taches").await;
            // One confirmation per visit: the page changes after each.
            let waiting = d
                .execute("return document.querySelectorAll('article.tache form button').length;", Vec::new())
                .await
                .unwrap();
            if waiting.json().as_u64().unwrap_or(0) > 0 {
                click_nav(&d, "article.tache form button").await;
            }
            if app.ops.crisis(&id).await.unwrap().state == CrisisState::Ready {
                break;
            }
            assert!(Instant::now() < deadline, "the kit never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
        assert!(log.iter().any(|e| e.action == "engine.task.done" && e.actor_role == "ops"), "confirmations audited");
        sign_out(&d).await;

        // The DGS sees the kit ready and opens the documents.
        sign_in(&d, &app, "dgs.aubagne").await;
        d.goto(app.url(&format!("/crises/{id}"))).await.unwrap();
        assert!(text_of(&d, "main").await.contains("le kit est prêt"));
        assert_fits_a_phone(&d, "crise-prete").await;
        snap(&d, "crise-prete").await;
        let links: Vec<String> = {
            let mut v = Vec::new();
            for a in d.find_all(By::Css("#t-docs + ul a")).await.unwrap() {
                v.push(a.text().await.unwrap());
            }
            v
        };
        assert!(links.iter().any(|l| l.contains("dossier")), "{links:?}");
        assert!(!links.iter().any(|l| l.contains("fiches-identifiants")), "no credential sheets for the DGS");
        d.find(By::PartialLinkText("01-dossier-de-mise-a-disposition.html")).await.unwrap().click().await.unwrap();
        let doc = text_of(&d, "body").await;
        assert!(doc.contains("Aubagne") && doc.contains("aubagne.secours-amp.fr"), "{doc}");
        assert!(!d.source().await.unwrap().contains("<img src=x"));
        sign_out_from_anywhere(&d, &app).await;

        // Hand-back: ops scan a returned item (a scanner types the label shown on screen, here
        // in lower case, and Enter).
        let item = app
            .ops
            .inventory_items()
            .await
            .unwrap()
            .into_iter()
            .find(|i| i.crisis.as_deref() == Some(id.as_str()))
            .unwrap();
        app.ops.lend(&id, &LendRequest { serial: item.item.serial.clone(), agent_id: None }).await.ok();
        let agents = app.ops.agents(&id).await.unwrap();
        app.ops
            .lend(&id, &LendRequest { serial: item.item.serial.clone(), agent_id: agents.first().map(|a| a.id) })
            .await
            .ok();
        sign_in(&d, &app, "ops.metropole").await;
        d.goto(app.url(&format!("/crises/{id}"))).await.unwrap();
        // Opening the hand-back goes through its confirmation page, which asks for a reason.
        click_nav(&d, &format!("a[href='/crises/{id}/restitution']")).await;
        let title = text_of(&d, "h1").await;
        assert!(title.contains("Ouvrir la restitution du kit ?"), "{title}");
        d.find(By::Id("motif")).await.unwrap().send_keys("SI de la commune rétabli").await.unwrap();
        click_nav(&d, "button.danger").await;
        let scan = d.find(By::Id("serial")).await.unwrap();
        // The page before the scan has a success message too: wait for the next one.
        let before = d.find(By::Tag("html")).await.unwrap();
        scan.send_keys(format!("{}\u{E007}", item.item.asset_tag.to_lowercase())).await.unwrap();
        wait_replaced(&before, "the scan").await;
        let flash = text_of(&d, "p.succes").await;
        assert!(flash.contains("Retour enregistré"), "{flash}");
        let loans = app.ops.loans(crisis_id.as_str()).await.unwrap();
        assert!(loans.iter().all(|l| l.returned_at.is_some()), "{loans:?}");
    })
    .await;
}

async fn sign_out_from_anywhere(d: &WebDriver, app: &TestApp) {
    d.goto(app.url("/")).await.unwrap();
    sign_out(d).await;
}

#[tokio::test]
async fn an_auditor_filters_the_log_and_exports_it() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&repli_tests::request("13005"), None).await.unwrap();
    app.dgs.add_log(c.id.as_str(), "information", "Serveurs arrêtés à 7 h 40").await.unwrap();
    web_user(&app, Role::Auditor, None, "auditeur").await;
    run("auditor_log", |d| async move {
        sign_in(&d, &app, "auditeur").await;
        d.find(By::LinkText("Journal d'audit")).await.unwrap().click().await.unwrap();
        assert!(text_of(&d, "main").await.contains("Chaîne vérifiée"));
        d.find(By::Id("f-action")).await.unwrap().send_keys("crisis.").await.unwrap();
        click_nav(&d, "form.filtres button").await;
        let mut actions = Vec::new();
        for row in d.find_all(By::Css("table.journal tbody tr td:nth-child(5)")).await.unwrap() {
            actions.push(row.text().await.unwrap());
        }
        assert!(!actions.is_empty() && actions.iter().all(|a| a.starts_with("crisis.")), "{actions:?}");
        snap(&d, "journal").await;
        // A bad filter is explained, not a crash.
        d.find(By::Id("f-du")).await.unwrap().send_keys("23/11/2026").await.unwrap();
        click_nav(&d, "form.filtres button").await;
        assert!(text_of(&d, "main").await.contains("invalide"));
        // The CSV export of the filtered view, fetched with the browser's session.
        d.goto(app.url("/journal?action=crisis.")).await.unwrap();
        let href = d.find(By::LinkText("CSV")).await.unwrap().attr("href").await.unwrap().unwrap();
        let session = d.get_named_cookie("repli_session").await.unwrap();
        let csv = reqwest::Client::new()
            .get(app.url(&href))
            .header("cookie", format!("repli_session={}", session.value))
            .send()
            .await
            .unwrap();
        assert_eq!(csv.status(), 200);
        assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("journal-audit.csv"));
        let text = csv.text().await.unwrap();
        assert!(
            text.starts_with("seq,at,actor_id") && text.contains("crisis.request") && !text.contains("log.information"),
            "{text}"
        );
        d.find(By::LinkText("Délais")).await.unwrap().click().await.unwrap();
        assert!(text_of(&d, "h1").await.contains("48 h"));
    })
    .await;
}

#[tokio::test]
async fn a_dgs_of_another_commune_is_refused() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&repli_tests::request("13005"), None).await.unwrap();
    web_user(&app, Role::Dgs, Some("13001"), "dgs.aix").await;
    run("other_commune", |d| async move {
        sign_in(&d, &app, "dgs.aix").await;
        assert!(!text_of(&d, "main").await.contains(c.id.as_str()), "another commune's crisis is not listed");
        d.goto(app.url(&format!("/crises/{}", c.id))).await.unwrap();
        assert_eq!(text_of(&d, "h1").await, "Introuvable");
        d.goto(app.url(&format!("/api/v1/crises/{}/documents/01-dossier-de-mise-a-disposition.html", c.id)))
            .await
            .unwrap();
        assert!(text_of(&d, "body").await.contains("crisis_not_found"));
        for page in ["/journal", "/taches", "/inventaire"] {
            d.goto(app.url(page)).await.unwrap();
            assert_eq!(text_of(&d, "h1").await, "Accès refusé", "{page}");
        }
    })
    .await;
}
