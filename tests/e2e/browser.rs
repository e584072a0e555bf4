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

/// Words broken across lines inside table cells and timestamps (none may be, on any page);
/// a break after a hyphen or a slash is a line break between words, not inside one.
async fn broken_words(d: &WebDriver) -> Vec<String> {
    let found = d
        .execute(
            r#"
            const broken = [];
            const cells = document.querySelectorAll('td, th, time, .horodatage');
            for (const cell of cells) {
              if (cell.closest('code')) continue;
              const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
              let node;
              while ((node = walker.nextNode())) {
                if (node.parentElement.closest('code')) continue;
                // A line may end after a hyphen or a slash (« dns-verification »,
                // « step/activation »), never inside the letters between them.
                const re = /[^\s\/-]+[\/-]?/g;
                let m;
                while ((m = re.exec(node.data))) {
                  const r = document.createRange();
                  r.setStart(node, m.index);
                  r.setEnd(node, m.index + m[0].length);
                  const tops = new Set(Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => Math.round(x.top)));
                  if (tops.size > 1) broken.push(m[0]);
                }
              }
            }
            return broken.slice(0, 10);
            "#,
            Vec::new(),
        )
        .await
        .unwrap();
    serde_json::from_value(found.json().clone()).unwrap()
}

/// At 390 px (a phone) the page neither scrolls sideways nor breaks a word inside a table.
async fn assert_reads_on_a_phone(d: &WebDriver, page: &str) {
    assert_fits_a_phone(d, page).await;
    d.set_window_rect(0, 0, 390, 844).await.unwrap();
    let broken = broken_words(d).await;
    snap(d, &format!("telephone-{page}")).await;
    d.set_window_rect(0, 0, 1200, 1600).await.unwrap();
    assert!(broken.is_empty(), "{page}: words broken across lines at 390 px: {broken:?}");
}

/// Ops confirm the manual tasks on the tasks page, one per visit (the page changes after
/// each), until the crisis reaches `state`.
async fn confirm_tasks_until(d: &WebDriver, app: &TestApp, id: &str, state: CrisisState) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        d.goto(app.url("/taches")).await.unwrap();
        let waiting = d
            .execute("return document.querySelectorAll('article.tache form button').length;", Vec::new())
            .await
            .unwrap();
        if waiting.json().as_u64().unwrap_or(0) > 0 {
            click_nav(d, "article.tache form button").await;
        }
        if app.ops.crisis(id).await.unwrap().state == state {
            return;
        }
        assert!(Instant::now() < deadline, "never {state}: {:#?}", app.ops.steps(id).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Follows an in-page link (no new page).
async fn click_nav_or_anchor(d: &WebDriver, css: &str) {
    d.find(By::Css(css)).await.unwrap().click().await.unwrap();
}

/// Selects, in every loan choice left empty, the commune (routers, printers) or the first agent.
async fn choose_every_borrower(d: &WebDriver) {
    d.execute(
        r#"
        for (const s of document.querySelectorAll('#prets select')) {
          if (s.value !== '') continue;
          const commune = Array.from(s.options).find(o => o.value === 'commune');
          s.value = commune ? 'commune' : s.options[1].value;
        }
        "#,
        Vec::new(),
    )
    .await
    .unwrap();
}

/// Types a code in the hand-back scan field with the condition chosen, as a scanner would.
async fn scan(d: &WebDriver, code: &str, condition: &str) {
    d.find(By::Css(format!("input[name=etat][value={condition}]"))).await.unwrap().click().await.unwrap();
    let before = d.find(By::Tag("html")).await.unwrap();
    d.find(By::Id("serial")).await.unwrap().send_keys(format!("{code}\u{E007}")).await.unwrap();
    wait_replaced(&before, "the scan").await;
}

/// A whole crisis with no CLI step: the DGS requests and is told (confirmation page, SMS, mail);
/// ops activate, confirm the tasks, lend the kit to named agents, deliver it, take it back
/// (one item damaged, one written off), record the wipes and the crisis closes.
#[tokio::test]
async fn a_whole_crisis_in_the_browser_without_the_cli() {
    let (sms_url, texts) = repli_tests::sms_gateway(0).await;
    let (port, mails) = repli_tests::smtp_server().await;
    let app = TestApp::spawn_with(move |c| {
        repli_tests::dgs_channels(c, sms_url, None, port);
        c.documents.astreinte_phone = "04 91 00 00 00".into();
    })
    .await;
    web_user(&app, Role::Dgs, Some("13005"), "dgs.aubagne").await;
    web_user(&app, Role::Ops, None, "ops.metropole").await;
    run("whole_crisis", |d| async move {
        // Before the first crisis, ops import the pool from the inventory page: checked first,
        // then imported.
        sign_in(&d, &app, "ops.metropole").await;
        d.goto(app.url("/inventaire")).await.unwrap();
        let pool = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../inventory/pool.csv").canonicalize().unwrap();
        d.find(By::Id("fichier")).await.unwrap().send_keys(pool.display().to_string()).await.unwrap();
        click_nav(&d, "form[action='/inventaire/import'] button").await;
        let lines = std::fs::read_to_string(&pool).unwrap().lines().count() - 1;
        assert!(text_of(&d, "main").await.contains(&format!("{lines} équipement(s) à importer")));
        click_nav(&d, "form[action='/inventaire/import'] input[name=confirmer] ~ button").await;
        assert!(text_of(&d, "p.succes").await.contains(&format!("{lines} équipement(s) importé(s)")));
        // The confirmation came from the server: the address carries no text, and the page
        // read again no longer shows it.
        let url = d.current_url().await.unwrap();
        assert_eq!((url.path(), url.query()), ("/inventaire", None), "{url}");
        d.refresh().await.unwrap();
        let gone = d.execute("return document.querySelector('p.succes') === null;", Vec::new()).await.unwrap();
        assert_eq!(gone.json(), &serde_json::json!(true), "a confirmation is shown once");
        assert_eq!(app.ops.inventory_items().await.unwrap().len(), lines);
        sign_out(&d).await;

        // The DGS requests the kit; a bad phone number comes back next to its field.
        sign_in(&d, &app, "dgs.aubagne").await;
        assert_reads_on_a_phone(&d, "accueil-dgs").await;
        d.find(By::LinkText("Demander le kit de repli")).await.unwrap().click().await.unwrap();
        d.find(By::Id("contact_name")).await.unwrap().send_keys(HOSTILE).await.unwrap();
        d.find(By::Id("contact_phone")).await.unwrap().send_keys("12").await.unwrap();
        d.find(By::Id("contact_email")).await.unwrap().send_keys("anne.martin@exemple.fr").await.unwrap();
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
        // The error summary has the focus and links to the wrong field.
        let focused = d.execute("return document.activeElement.className;", Vec::new()).await.unwrap();
        assert_eq!(focused.json(), &serde_json::json!("resume-erreurs"), "the summary takes the focus");
        click_nav_or_anchor(&d, "div.resume-erreurs a[href='#contact_phone']").await;
        let focused = d.execute("return document.activeElement.id;", Vec::new()).await.unwrap();
        assert_eq!(focused.json(), &serde_json::json!("contact_phone"), "the summary's link leads to the field");
        assert_escaped(&d, "request form with errors", false).await;
        assert_fits_a_phone(&d, "demande").await;
        snap(&d, "demande-erreurs").await;
        let name = d.find(By::Id("contact_name")).await.unwrap().prop("value").await.unwrap();
        assert_eq!(name.as_deref(), Some(HOSTILE), "what was typed is kept");
        let phone = d.find(By::Id("contact_phone")).await.unwrap();
        phone.clear().await.unwrap();
        phone.send_keys("06 12 34 56 78").await.unwrap();
        click_nav(&d, "main form button[type=submit]").await;

        // The confirmation page: the number, the due instant, what comes next, how she is told.
        assert_eq!(text_of(&d, "h1").await, "Demande enregistrée");
        let page = text_of(&d, "main").await;
        let id = page.split("Numéro de la demande : ").nth(1).unwrap().split(' ').next().unwrap().to_string();
        assert!(id.starts_with("13005-"), "{page}");
        for expected in
            ["d'Aubagne", "au plus tard le", "par SMS au 06 12 34 56 78", "anne.martin@exemple.fr", "04 91 00 00 00"]
        {
            assert!(page.contains(expected), "confirmation page lacks « {expected} »: {page}");
        }
        assert_reads_on_a_phone(&d, "demande-enregistree").await;
        click_nav(&d, "a.bouton").await;
        assert!(text_of(&d, "main").await.contains("demandé"));
        assert_escaped(&d, "crisis page (DGS)", true).await;
        assert_reads_on_a_phone(&d, "crise").await;
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
        click_nav(&d, "form.action:has(input[value=activate]) button").await;
        assert_escaped(&d, "crisis page (ops)", true).await;
        confirm_tasks_until(&d, &app, &id, CrisisState::Ready).await;
        let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
        assert!(log.iter().any(|e| e.action == "engine.task.done" && e.actor_role == "ops"), "confirmations audited");

        // The DGS was told on her phone and by mail, each moment (the request, the activation,
        // the accounts…), the kit ready among them, with the astreinte's number.
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = |t: &repli_tests::SmsReceived| {
            t.body["text"].as_str().is_some_and(|x| x.contains("Le kit de repli d'Aubagne est prêt"))
        };
        while !texts.lock().unwrap().iter().any(ready) || mails.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no SMS or mail for the DGS: {:?}", texts.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sms = texts.lock().unwrap().iter().find(|t| ready(t)).unwrap().body.clone();
        assert_eq!(sms["to"], "+33612345678");
        assert!(sms["text"].as_str().unwrap().contains("l'astreinte de la métropole (04 91 00 00 00)"), "{sms}");
        assert!(mails.lock().unwrap()[0].to.iter().any(|t| t == "anne.martin@exemple.fr"));

        // She sees the kit ready with its links and opens the documents (no credential sheets).
        sign_out(&d).await;
        sign_in(&d, &app, "dgs.aubagne").await;
        d.goto(app.url(&format!("/crises/{id}"))).await.unwrap();
        let page = text_of(&d, "main").await;
        assert!(page.contains("le kit est prêt") && page.contains("Rejoindre la visio permanente"), "{page}");
        assert!(!page.contains("Isolement du kit"), "the isolation checks are for ops");
        assert_reads_on_a_phone(&d, "crise-prete").await;
        let mut links = Vec::new();
        for a in d.find_all(By::Css("#t-docs + ul a")).await.unwrap() {
            links.push(a.text().await.unwrap());
        }
        assert!(links.iter().any(|l| l.contains("dossier")), "{links:?}");
        assert!(!links.iter().any(|l| l.contains("fiches-identifiants")), "no credential sheets for the DGS");
        d.find(By::PartialLinkText("01-dossier-de-mise-a-disposition.html")).await.unwrap().click().await.unwrap();
        let doc = text_of(&d, "body").await;
        assert!(doc.contains("Aubagne") && doc.contains("aubagne.secours-amp.fr"), "{doc}");
        assert!(!d.source().await.unwrap().contains("<img src=x"));
        sign_out_from_anywhere(&d, &app).await;
        sign_in(&d, &app, "ops.metropole").await;
        // Ops read it on the notifications page.
        click_nav(&d, "a[href='/notifications']").await;
        let page = text_of(&d, "main").await;
        assert!(page.contains("SMS") && page.contains("06 12 34 56 78") && page.contains("envoyée"), "{page}");

        // Ops lend the kit from the crisis page: an unknown label is refused beside the form
        // and nothing is lent; then the laptop plan's choices, the commune for the rest.
        d.goto(app.url(&format!("/crises/{id}"))).await.unwrap();
        let page = text_of(&d, "main").await;
        assert!(page.contains("Quel ordinateur pour quel agent") && page.contains("Ouvrir l'espace collaboratif"));
        d.find(By::Id("scan")).await.unwrap().send_keys("INCONNU-999 ; Anne Martin").await.unwrap();
        click_nav(&d, "#prets button[type=submit]").await;
        let err = text_of(&d, "#prets-erreur").await;
        assert!(err.contains("INCONNU-999"), "{err}");
        assert!(app.ops.loans(&id).await.unwrap().is_empty(), "a refused form lends nothing");
        choose_every_borrower(&d).await;
        click_nav(&d, "#prets button[type=submit]").await;
        let flash = text_of(&d, "p.succes").await;
        assert!(flash.contains("prêté(s)"), "{flash}");
        assert_eq!(d.current_url().await.unwrap().query(), None, "no message in the address");
        let loans = app.ops.loans(&id).await.unwrap();
        assert!(loans.len() >= 4, "{loans:#?}");
        let laptops: Vec<_> = loans.iter().filter(|l| l.kind == repli_core::ItemKind::Laptop).collect();
        let mut named: Vec<String> = laptops.iter().map(|l| l.agent.as_ref().unwrap().name.clone()).collect();
        named.sort();
        assert_eq!(named, ["Anne Martin", "Luc Durand"], "each laptop to its agent");
        click_nav(&d, "form.action:has(input[value=deliver]) button").await;
        assert_eq!(app.ops.crisis(&id).await.unwrap().state, CrisisState::Delivered);

        // Hand-back: through its confirmation page; then each item scanned as it comes back
        // (the label shown on screen, in lower case), one damaged, one missing written off.
        click_nav(&d, &format!("a[href='/crises/{id}/restitution']")).await;
        assert!(text_of(&d, "h1").await.contains("Ouvrir la restitution du kit ?"));
        d.find(By::Id("motif")).await.unwrap().send_keys("SI de la commune rétabli").await.unwrap();
        click_nav(&d, "button.danger").await;
        scan(&d, "INCONNU-999", "ok").await;
        assert!(text_of(&d, "#retour-erreur").await.contains("inconnu"), "unknown code beside the scan field");
        let (lost, back): (Vec<_>, Vec<_>) = loans.iter().partition(|l| l.kind == repli_core::ItemKind::Printer);
        for (n, l) in back.iter().enumerate() {
            scan(&d, &l.asset_tag.to_lowercase(), if n == 0 { "damaged" } else { "ok" }).await;
            assert!(text_of(&d, "p.succes").await.contains("Retour enregistré"));
        }
        for l in &lost {
            let path: String = form_urlencoded_path(&l.serial);
            click_nav(&d, &format!("a[href='/crises/{id}/pertes/{path}']")).await;
            d.find(By::Id("motif")).await.unwrap().send_keys("Non rendue par la commune").await.unwrap();
            click_nav(&d, "button.danger").await;
        }
        let after = app.ops.loans(&id).await.unwrap();
        assert!(after.iter().all(|l| !l.is_open()), "{after:#?}");
        assert!(after.iter().any(|l| l.condition.as_deref() == Some("damaged")));

        // Wipes, on each returned laptop or phone's page.
        for l in back.iter().filter(|l| l.kind.is_personal()) {
            d.goto(app.url(&format!("/inventaire/{}", l.serial))).await.unwrap();
            d.find(By::Id("methode")).await.unwrap().send_keys("NIST 800-88 Purge").await.unwrap();
            d.find(By::Id("operateur")).await.unwrap().send_keys("Atelier DSI").await.unwrap();
            d.find(By::Id("certificat")).await.unwrap().send_keys(format!("CERT-{}", l.serial)).await.unwrap();
            click_nav(&d, "form[action$='/effacement'] button").await;
            assert!(text_of(&d, "p.succes").await.contains("Effacement enregistré"));
            // The one that came back damaged goes to maintenance, the others back to the pool.
            let damaged = l.serial == back[0].serial;
            let history = if damaged { "restitué → en maintenance" } else { "restitué → disponible" };
            assert!(text_of(&d, "main").await.contains(history), "the history in French: {history}");
        }

        // The hand-back's manual steps, confirmed on the tasks page, until the crisis closes.
        confirm_tasks_until(&d, &app, &id, CrisisState::Closed).await;
        let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
        for action in ["inventory.lend", "inventory.check_in", "inventory.write_off", "inventory.wipe"] {
            assert!(log.iter().any(|e| e.action == action && e.actor_role == "ops"), "{action} by ops, audited");
        }
        // The closure report tells the story in French, by day, with the kit's steps by title.
        let report = app.auditor.document(&id, "07-rapport-de-cloture.html").await.unwrap();
        for expected in [
            "Demande du kit (par dgs.aubagne (web))",
            "Kit livré (par ops.metropole (web))",
            "équipements prêtés",
            "✓ Déclarer le kit prêt à livrer",
            "passé en perte — Non rendue par la commune",
            "Crise close",
        ] {
            assert!(report.contains(expected), "closure report lacks « {expected} »");
        }
        assert!(!report.contains("engine.") && !report.contains("inventory."), "no raw codes in the report");
        let guide = app.auditor.document(&id, "02-modes-operatoires.html").await.unwrap();
        assert!(guide.contains("<svg role=\"img\"") && guide.contains("Réunion permanente"), "the visio's QR code");
        // The after-action report, from the crisis page.
        d.goto(app.url(&format!("/crises/{id}"))).await.unwrap();
        click_nav(&d, &format!("a[href='/crises/{id}/retex']")).await;
        let retex = text_of(&d, "main").await;
        for expected in ["Retour d'expérience", "Kit prêt le", "sur 48 h", "Préparer les 2 portables", "confirmée par"]
        {
            assert!(retex.contains(expected), "RETEX lacks « {expected} »: {retex}");
        }
        assert_reads_on_a_phone(&d, "retex").await;
        // The accessibility statement is one click away from any page, signed in or not.
        click_nav(&d, "footer a[href='/accessibilite']").await;
        assert!(text_of(&d, "main").await.contains("partiellement conforme"));
        assert_reads_on_a_phone(&d, "accessibilite").await;
        d.goto(app.url("/")).await.unwrap();
        // The journal reads at 1366 px without a word broken across lines.
        sign_out(&d).await;
        web_user(&app, Role::Auditor, None, "audit.ccas").await;
        sign_in(&d, &app, "audit.ccas").await;
        d.set_window_rect(0, 0, 1366, 768).await.unwrap();
        d.goto(app.url("/journal")).await.unwrap();
        let broken = broken_words(&d).await;
        snap(&d, "journal-1366").await;
        d.set_window_rect(0, 0, 1200, 1600).await.unwrap();
        assert!(broken.is_empty(), "journal at 1366 px: {broken:?}");
    })
    .await;
}

fn form_urlencoded_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
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

#[tokio::test]
async fn ops_run_an_exercise_from_the_browser_and_every_page_says_exercice() {
    let app = TestApp::spawn().await;
    web_user(&app, Role::Ops, None, "ops.exercice").await;
    run("exercise", |d| async move {
        sign_in(&d, &app, "ops.exercice").await;
        click_nav(&d, "nav a[href='/exercices']").await;
        assert_eq!(text_of(&d, "h1").await, "Exercices");
        assert_fits_a_phone(&d, "exercices").await;
        // The example scenario is there, ready to start as is.
        let scenario = d.find(By::Id("scenario")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
        assert!(scenario.contains("[[injects]]"), "{scenario}");
        click_nav(&d, "form[action='/exercices'] button[type=submit]").await;
        let flash = text_of(&d, "p.succes").await;
        assert!(flash.contains("Exercice « Exercice cyber — deux communes » commencé"), "{flash}");
        // Its crisis: the banner, and « EXERCICE » in the title.
        let x = app.ops.exercises().await.unwrap().remove(0);
        let id = x.crises[0].id.to_string();
        d.find(By::Css(format!("a[href='/crises/{id}']"))).await.unwrap().click().await.unwrap();
        let banner = text_of(&d, "p.exercice").await;
        assert!(banner.starts_with("EXERCICE — Exercice cyber — deux communes"), "{banner}");
        assert!(d.title().await.unwrap().starts_with("EXERCICE — Crise"));
        assert_fits_a_phone(&d, "crise-exercice").await;
        // Activated from the page like a real request; the dossier printed with the watermark.
        app.make_ready(&x.crises[0].id).await;
        d.goto(app.url(&format!("/api/v1/crises/{id}/documents/01-dossier-de-mise-a-disposition.html"))).await.unwrap();
        let mark = d.find(By::Css(".filigrane")).await.unwrap();
        assert!(mark.is_displayed().await.unwrap());
        let position = mark.css_value("position").await.unwrap();
        assert_eq!(position, "fixed", "printed on every page");
        assert_eq!(mark.text().await.unwrap(), "EXERCICE");
    })
    .await;
}

/// Every page of the route table, and every document of the pack, as each role opens it on a
/// 390-pixel-wide phone: nothing scrolls sideways (`document.documentElement.scrollWidth`).
#[tokio::test]
async fn every_page_fits_a_390_pixel_phone() {
    use repli_proto::api::{ImportFile, ImportRequest, LendRequest};
    let app = TestApp::spawn().await;
    let pool = include_str!("../../inventory/pool.csv");
    let files = vec![ImportFile { source: "pool.csv".into(), csv: pool.into() }];
    app.ops.import_inventory(&ImportRequest { files }).await.unwrap();
    let c = app.dgs.request_crisis(&repli_tests::request("13005"), None).await.unwrap();
    let id = c.id.to_string();
    app.make_ready(&c.id).await;
    let items = app.ops.inventory_items().await.unwrap();
    let mine: Vec<_> = items.iter().filter(|i| i.crisis.as_deref() == Some(id.as_str())).collect();
    let router = mine.iter().find(|i| i.item.kind == repli_core::ItemKind::Router).unwrap();
    app.ops.lend(&id, &LendRequest { serial: router.item.serial.clone(), agent_id: None }).await.unwrap();
    app.ops.add_log(&id, "information", &format!("{} {}", "Très-long-mot-sans-espace".repeat(8), HOSTILE)).await.ok();
    let documents = app.ops.documents(&id).await.unwrap();
    let serial = router.item.serial.clone();
    let mut pages: Vec<String> = replid::routes::route_specs()
        .into_iter()
        .filter(|s| s.method == axum::http::Method::GET)
        .map(|s| s.path)
        .filter(|p| !p.starts_with("/api/") && !p.starts_with("/static/") && !p.ends_with("/export"))
        .filter(|p| !matches!(*p, "/healthz" | "/readyz" | "/metrics"))
        .map(|p| {
            p.replace("{id}", &id)
                .replace("{serial}", &serial)
                .replace("{step}", "winddown")
                .replace("{secret}", "repli_inconnu")
        })
        .collect();
    pages.extend(documents.iter().map(|f| format!("/api/v1/crises/{id}/documents/{f}")));
    assert!(pages.iter().any(|p| p == "/m365") && pages.iter().any(|p| p == "/journal"), "{pages:?}");
    for (role, commune, login) in [
        (Role::Ops, None, "ops.telephone"),
        (Role::Dgs, Some("13005"), "dgs.telephone"),
        (Role::Auditor, None, "audit.telephone"),
        (Role::Admin, None, "admin.telephone"),
    ] {
        web_user(&app, role, commune, login).await;
    }
    run("every_page_fits_a_phone", |d| async move {
        let mut overflowing = Vec::new();
        for login in ["ops.telephone", "dgs.telephone", "audit.telephone", "admin.telephone"] {
            d.set_window_rect(0, 0, 1200, 1600).await.unwrap();
            sign_in(&d, &app, login).await;
            d.set_window_rect(0, 0, 390, 844).await.unwrap();
            for page in &pages {
                d.goto(app.url(page)).await.unwrap();
                let m = d
                    .execute(
                        "return [document.documentElement.scrollWidth, window.innerWidth, Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '.' + e.className + '#' + e.id).slice(0, 4)];",
                        Vec::new(),
                    )
                    .await
                    .unwrap();
                let m = m.json().clone();
                let (scroll, inner) = (m[0].as_u64().unwrap_or(u64::MAX), m[1].as_u64().unwrap_or(0));
                assert!(inner <= 390, "the window is a phone's: {inner}");
                if scroll > 390 {
                    overflowing.push(format!("{login} {page}: {scroll} px {}", m[2]));
                }
            }
            d.set_window_rect(0, 0, 1200, 1600).await.unwrap();
            d.goto(app.url("/")).await.unwrap();
            sign_out(&d).await;
        }
        assert!(overflowing.is_empty(), "pages wider than a 390-pixel phone:\n{}", overflowing.join("\n"));
    })
    .await;
}

/// The code an authenticator app holding the base32 `key` shows at `now`.
fn totp_code(key: &str, now: jiff::Timestamp) -> String {
    let secret = totp_rs::Secret::try_from_base32(key.replace(' ', "")).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    totp.generate(u64::try_from(now.as_second()).unwrap()).to_string()
}

/// An admin's first sign-in enrols the second factor in Chromium (the QR page fits a phone; the
/// code is computed from the key the page shows, as an app would), sees the recovery codes,
/// reaches the home page; signed out, they sign in again with the next code.
#[tokio::test]
async fn second_factor_enrolment_and_sign_in_in_a_browser() {
    let app = TestApp::spawn_with(|c| c.accounts.second_factor = replid::config::SecondFactor::Required).await;
    web_user(&app, Role::Admin, None, "admin.totp").await;
    run("second_factor_enrolment_and_sign_in", |d| async move {
        d.goto(app.url("/connexion")).await.unwrap();
        d.find(By::Id("login")).await.unwrap().send_keys("admin.totp").await.unwrap();
        d.find(By::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
        click_nav(&d, "form button[type=submit]").await;
        assert!(d.current_url().await.unwrap().path().ends_with("/connexion/enrolement"));
        assert_eq!(text_of(&d, "h1").await, "Activer la double authentification");
        let qr = d.find(By::Css(".qr svg")).await.unwrap();
        assert!(qr.rect().await.unwrap().width >= 100.0, "the QR code is drawn");
        snap(&d, "enrolement").await;
        assert_fits_a_phone(&d, "/connexion/enrolement").await;
        let key = text_of(&d, "#cle-totp").await;
        let code = totp_code(&key, app.now());
        d.find(By::Id("code")).await.unwrap().send_keys(&code).await.unwrap();
        click_nav(&d, "form button[type=submit]").await;
        assert_eq!(text_of(&d, "h1").await, "Vos codes de secours");
        assert_eq!(d.find_all(By::Css(".codes-secours li")).await.unwrap().len(), 10);
        assert_fits_a_phone(&d, "codes de secours").await;
        click_nav(&d, "a.bouton").await;
        assert!(text_of(&d, "h1").await.starts_with("Bonjour"));
        sign_out(&d).await;
        // Next sign-in: the password, then the next code.
        app.clock.advance(jiff::SignedDuration::from_secs(30));
        d.find(By::Id("login")).await.unwrap().send_keys("admin.totp").await.unwrap();
        d.find(By::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
        click_nav(&d, "form button[type=submit]").await;
        assert_eq!(text_of(&d, "h1").await, "Code de vérification");
        assert_fits_a_phone(&d, "/connexion/code").await;
        d.find(By::Id("code")).await.unwrap().send_keys(&totp_code(&key, app.now())).await.unwrap();
        click_nav(&d, "form button[type=submit]").await;
        assert!(text_of(&d, "h1").await.starts_with("Bonjour"));
    })
    .await;
}

/// The id of the element that has the keyboard's focus.
async fn focused(d: &WebDriver) -> String {
    d.active_element().await.unwrap().attr("id").await.unwrap().unwrap_or_default()
}

/// A USB scanner is a keyboard: it types the code and Enter into whatever has the focus. At the
/// hand-back, ops scan everything back without touching the mouse: the scan field has the focus
/// when the page opens, after a refusal as after a return, and each scan says what it did
/// beside the field (#34, point 6).
#[tokio::test]
async fn a_usb_scanner_takes_the_kit_back_without_the_mouse() {
    use repli_proto::api::{ImportFile, ImportRequest, KitNeeds, LendRequest};
    let app = TestApp::spawn().await;
    let pool = include_str!("../../inventory/pool.csv");
    let files = vec![ImportFile { source: "pool.csv".into(), csv: pool.into() }];
    app.ops.import_inventory(&ImportRequest { files }).await.unwrap();
    let mut held = Vec::new();
    let mut ids = Vec::new();
    for insee in ["13005", "13001"] {
        let mut r = repli_tests::request(insee);
        r.needs = Some(KitNeeds { laptop: 0, router: 2, phone: 0, printer: 1 });
        let c = app.ops.request_crisis(&r, None).await.unwrap();
        app.make_ready(&c.id).await;
        let mine: Vec<_> = app
            .ops
            .inventory_items()
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.crisis.as_deref() == Some(c.id.as_str()))
            .collect();
        for i in &mine {
            app.ops.lend(c.id.as_str(), &LendRequest { serial: i.item.serial.clone(), agent_id: None }).await.unwrap();
        }
        held.push(mine);
        ids.push(c.id.clone());
    }
    let id = ids[0].to_string();
    app.ops.act(&ids[0], repli_core::CrisisAction::Deliver, None).await.unwrap();
    app.ops.act(&ids[0], repli_core::CrisisAction::StartHandback, Some("SI rétabli")).await.unwrap();
    web_user(&app, Role::Ops, None, "ops.douchette").await;
    let (mine, other) = (held[0].clone(), held[1].clone());
    run("usb_scanner", |d| async move {
        sign_in(&d, &app, "ops.douchette").await;
        d.goto(app.url(&format!("/crises/{id}"))).await.unwrap();
        assert_eq!(focused(&d).await, "serial", "the scan field has the focus when the page opens");
        // What the scanner types: the code, then Enter, into the focused element.
        let scanner = |code: String| {
            let d = d.clone();
            async move {
                let before = d.find(By::Tag("html")).await.unwrap();
                d.active_element().await.unwrap().send_keys(format!("{code}\u{E007}")).await.unwrap();
                wait_replaced(&before, "the scan").await;
            }
        };
        // Refusals: an unknown code, another crisis's item, a hostile code. The field keeps the
        // focus and the refusal names the code.
        for code in ["INCONNU-999".to_owned(), other[0].item.asset_tag.clone(), "<b>x</b>".to_owned()] {
            scanner(code.clone()).await;
            let err = text_of(&d, "#retour-erreur").await;
            assert!(err.contains(&code) && err.contains("refusé"), "{code}: {err}");
            assert_eq!(focused(&d).await, "serial", "after the refusal of {code}");
            assert!(d.find(By::Css("#retour-erreur b")).await.is_err(), "shown as text");
        }
        assert!(app.ops.loans(&id).await.unwrap().iter().all(|l| l.is_open()), "nothing taken back");
        // Each item back, in lower case as typed from its label: it says which and how many
        // are still out, and the field is ready for the next.
        for (n, i) in mine.iter().enumerate() {
            scanner(i.item.asset_tag.to_lowercase()).await;
            let done = text_of(&d, "#retour-resultat").await;
            assert!(done.contains(&i.item.asset_tag), "{done}");
            assert!(done.contains(&format!("Encore {} équipement(s) prêté(s)", mine.len() - n - 1)), "{done}");
            assert_eq!(focused(&d).await, "serial", "after the return of {}", i.item.asset_tag);
        }
        // The same item again: refused, the focus stays.
        scanner(mine[0].item.asset_tag.clone()).await;
        assert!(text_of(&d, "#retour-erreur").await.contains("refusé"));
        assert_eq!(focused(&d).await, "serial");
        assert!(app.ops.loans(&id).await.unwrap().iter().all(|l| l.returned_at.is_some()));
    })
    .await;
}
