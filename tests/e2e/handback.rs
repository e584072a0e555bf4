//! The data hand-back: the kit's mail and files exported to a signed archive before anything
//! is deleted; verified offline against a pinned key; resumed after an interruption without
//! fetching anything twice; failures and oversized items listed, never skipped.

use repli_app::backup::Check;
use repli_app::handback::{self, ExportOptions, HandbackError};
use repli_core::audit::KeyPin;
use repli_core::handback::{EntryStatus, MANIFEST, Manifest, SIGNATURE, signed_bytes};
use repli_core::m365::{self as port, BoxFut, ExportInventory, ExportItem, Fetched, ItemSink, M365};
use repli_core::{CrisisAction, CrisisId, StepState};
use repli_tests::{TestApp, request, step_state};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn pinned(app: &TestApp) -> Vec<KeyPin> {
    let key = repli_app::audit_key::load(&app.daemon.state().config.audit_key_path()).unwrap();
    vec![KeyPin::Key(key.verifying_key())]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn refused_check(path: &Path, pins: &[KeyPin]) -> Option<Check> {
    handback::verify_archive(path, &handback::trust_of(pins)).err().and_then(|e| e.check())
}

#[tokio::test]
async fn the_hand_back_exports_a_signed_archive_before_anything_is_deleted() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.make_ready(&c.id).await;
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("fin de crise")).await.unwrap();
    let v = app
        .wait_steps(&c.id, "the export", |v| step_state(v, "handback", "export") == Some(StepState::Succeeded))
        .await;
    let run = v.runs.iter().find(|r| r.playbook.as_str() == "handback").unwrap();
    let export = run.steps.iter().find(|s| s.step == "export").unwrap();
    let out = export.output.as_ref().unwrap();
    // 25 mailboxes of 8 messages; 25 OneDrives and the Team's drive of 9 files each.
    assert_eq!(out["items"], 25 * 8 + 26 * 9, "{out}");
    assert_eq!(out["exported"], out["items"]);
    // The deletions wait for it (and nothing but the wind-down ran before it).
    for s in run.steps.iter().filter(|s| s.step.starts_with("delete-")) {
        assert!(s.needs.iter().any(|n| n == "export"), "{} does not wait for the export", s.step);
    }
    let winddown = run.steps.iter().find(|s| s.step == "winddown").unwrap();
    assert!(winddown.needs.iter().any(|n| n == "export"), "Graph cannot read an unlicensed mailbox");

    // The manifest's hash is in the audit log.
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    let entry = log.iter().find(|e| e.action == "handback.exported").expect("handback.exported entry");
    let sha = out["manifest_sha256"].as_str().unwrap();
    assert!(entry.details.contains(sha) && entry.details.contains("\"complete\":true"), "{entry:?}");

    let config = &app.daemon.state().config;
    let dir = handback::archive_dir(config, &c.id);
    let zip = handback::archive_zip(config, &c.id);
    let pins = pinned(&app);
    let v = handback::verify_archive(&dir, &handback::trust_of(&pins)).unwrap();
    assert!(v.manifest.complete());
    let z = handback::verify_archive(&zip, &handback::trust_of(&pins)).unwrap();
    assert_eq!(z.manifest, v.manifest, "the zip holds the same signed manifest");
    // Awkward names got safe, distinct names, recorded beside the originals; nothing was lost.
    let by_original = |o: &str| v.manifest.entries.iter().filter(|e| e.original.ends_with(o)).count();
    assert_eq!(by_original("/Documents/CON.txt"), 26);
    let con = v.manifest.entries.iter().find(|e| e.original.ends_with("/Documents/CON.txt")).unwrap();
    assert!(con.path.ends_with("/Documents/_CON.txt"), "{}", con.path);
    let odd = v.manifest.entries.iter().find(|e| e.original.ends_with("arrêté: 2026/05?.pdf")).unwrap();
    assert!(odd.path.ends_with("arrêté_ 2026_05_.pdf"), "{}", odd.path);
    let notes: Vec<&str> = v
        .manifest
        .entries
        .iter()
        .filter(|e| e.original.to_lowercase().ends_with("/documents/note.txt"))
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(notes.len(), 52);
    assert!(v.manifest.entries.iter().any(|e| e.size == 0 && e.status == EntryStatus::Exported), "zero-byte file kept");
    assert!(v.manifest.notes.iter().any(|n| n.contains("API protégée")));
    let eml = v.manifest.entries.iter().find(|e| e.original.contains("Décision: réquisition?")).unwrap();
    let bytes = std::fs::read(dir.join(&eml.path)).unwrap();
    assert!(bytes.windows(8).any(|w| w == b"D\xe9cision"), "the Latin-1 body is kept byte for byte");

    // Tamperings, each on a copy: each refused, naming the check.
    let work = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let p = work.path().join(name);
        copy_dir(&dir, &p);
        p
    };
    let changed = copy("changed");
    let f = changed.join(&eml.path);
    let mut b = std::fs::read(&f).unwrap();
    b[0] ^= 1;
    std::fs::write(&f, b).unwrap();
    assert_eq!(refused_check(&changed, &pins), Some(Check::FileHash));
    let added = copy("added");
    std::fs::write(added.join("messages/ajout.eml"), b"From: x").unwrap();
    assert_eq!(refused_check(&added, &pins), Some(Check::FileList));
    let missing = copy("missing");
    std::fs::remove_file(missing.join(&eml.path)).unwrap();
    assert_eq!(refused_check(&missing, &pins), Some(Check::FileList));
    // Re-signed with another key: refused unless that key is the one pinned.
    let resigned = copy("resigned");
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(resigned.join(MANIFEST)).unwrap()).unwrap();
    m.public_key = hex::encode(other.verifying_key().to_bytes());
    m.entries.retain(|e| e.path != eml.path);
    std::fs::remove_file(resigned.join(&eml.path)).unwrap();
    let bytes = serde_json::to_vec_pretty(&m).unwrap();
    use ed25519_dalek::Signer;
    std::fs::write(resigned.join(SIGNATURE), hex::encode(other.sign(&signed_bytes(&bytes)).to_bytes())).unwrap();
    std::fs::write(resigned.join(MANIFEST), bytes).unwrap();
    // The pinned key decides: the signature is not its.
    assert_eq!(refused_check(&resigned, &pins), Some(Check::ManifestSignature));
    assert!(refused_check(&resigned, &[KeyPin::Key(other.verifying_key())]).is_none(), "its own key accepts it");
    // The manifest's signature over another manifest.
    let swapped = copy("swapped");
    let mut text = std::fs::read_to_string(swapped.join(MANIFEST)).unwrap();
    text = text.replacen("\"size\": 0", "\"size\": 1", 1);
    std::fs::write(swapped.join(MANIFEST), text).unwrap();
    assert_eq!(refused_check(&swapped, &pins), Some(Check::ManifestSignature));
    // A tampered zip: one byte of a file changed.
    let bad_zip = work.path().join("bad.zip");
    let mut zb = std::fs::read(&zip).unwrap();
    let at = zb.windows(12).position(|w| w == b"Point de sit").unwrap();
    zb[at] ^= 1;
    std::fs::write(&bad_zip, zb).unwrap();
    assert!(handback::verify_archive(&bad_zip, &handback::trust_of(&pins)).is_err());

    // Nothing is trusted without a pinned key.
    assert_eq!(refused_check(&dir, &[]), Some(Check::TrustedKey));

    // The DGS downloads it, whole or by ranges (a download cut halfway resumes).
    let (_, dgs_token) = app.token(repli_core::Role::Dgs, Some("13005")).await;
    let url = app.url(&format!("/api/v1/crises/{}/handback.zip", c.id));
    let http = reqwest::Client::new();
    let whole = http.get(&url).bearer_auth(&dgs_token).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let body = whole.bytes().await.unwrap();
    let on_disk = std::fs::read(&zip).unwrap();
    assert_eq!(body.as_ref(), on_disk.as_slice());
    let part = http.get(&url).bearer_auth(&dgs_token).header("Range", "bytes=100-").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 100-{}/{}", on_disk.len() - 1, on_disk.len()).as_str());
    assert_eq!(part.bytes().await.unwrap().as_ref(), &on_disk[100..]);
    let past = http
        .get(&url)
        .bearer_auth(&dgs_token)
        .header("Range", format!("bytes={}-", on_disk.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    // Auditors check the manifest's hash in the journal; the mail is the commune's.
    let (_, auditor) = app.token(repli_core::Role::Auditor, None).await;
    assert_eq!(http.get(&url).bearer_auth(&auditor).send().await.unwrap().status(), 403);
    let (_, other) = app.token(repli_core::Role::Dgs, Some("13001")).await;
    assert_eq!(http.get(&url).bearer_auth(&other).send().await.unwrap().status(), 404);

    // The CLI: the DGS downloads it (a partial file is resumed), then checks it offline with
    // the key they hold; a changed copy is refused (exit 1).
    let out_zip = work.path().join("restitution.zip");
    std::fs::write(&out_zip, &on_disk[..1000]).unwrap();
    // The daemon runs on this test's runtime: the CLI is awaited, never waited for.
    let repli = |args: Vec<String>| {
        tokio::process::Command::new(repli_tests::workspace_bin("repli"))
            .env("REPLI_SERVER", app.daemon.url())
            .env("REPLI_TOKEN", &dgs_token)
            .args(args)
            .output()
    };
    let got = repli(vec![
        "handback".into(),
        "archive".into(),
        c.id.to_string(),
        "--out".into(),
        out_zip.display().to_string(),
    ])
    .await
    .unwrap();
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    assert_eq!(std::fs::read(&out_zip).unwrap(), on_disk);
    let key = match &pins[0] {
        KeyPin::Key(k) => hex::encode(k.to_bytes()),
        other => panic!("{other:?}"),
    };
    let verify = |p: &Path| {
        repli(vec![
            "handback".into(),
            "verify-archive".into(),
            p.display().to_string(),
            "--public-key".into(),
            key.clone(),
        ])
    };
    let ok = verify(&out_zip).await.unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && text.contains("Archive vérifiée") && text.contains("434 élément(s) exporté(s)"),
        "{text}"
    );
    let refused = verify(&changed).await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("REFUSÉE"));
}

/// Delegates to the daemon's Microsoft 365, counting fetches, failing those after `fail_after`.
struct Flaky {
    inner: Arc<dyn M365>,
    fetched: AtomicUsize,
    fail_after: usize,
}

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name<'a>(&'a self, $($arg: $ty),*) -> BoxFut<'a, $ret> { self.inner.$name($($arg),*) })*
    };
}

impl M365 for Flaky {
    delegate! {
        ensure_domain(name: &'a str) -> port::Result<port::DomainState>;
        verify_domain(name: &'a str, seen: Option<&'a port::DomainState>) -> port::Result<()>;
        enable_services(name: &'a str) -> port::Result<Vec<port::DnsRecord>>;
        ensure_accounts(domain: &'a str, agents: &'a [port::AgentSpec]) -> port::Result<Vec<port::Account>>;
        ensure_licences(ids: &'a [String]) -> port::Result<()>;
        ensure_team(spec: &'a port::TeamSpec) -> port::Result<port::TeamInfo>;
        ensure_meeting(spec: &'a port::MeetingSpec) -> port::Result<port::MeetingInfo>;
        reset_passwords(upns: &'a [String]) -> port::Result<Vec<(String, port::Secret)>>;
        remove_meetings(domain: &'a str, external_id: &'a str) -> port::Result<u32>;
        wind_down_accounts(domain: &'a str) -> port::Result<port::WindDown>;
        delete_accounts(domain: &'a str) -> port::Result<usize>;
        delete_group(nickname: &'a str) -> port::Result<bool>;
        remove_domain(name: &'a str, force: bool) -> port::Result<port::DomainRemoval>;
        isolation_report(domain: &'a str, group: &'a str, commune: Option<&'a str>) -> port::Result<port::IsolationReport>;
        preflight(spec: &'a port::PreflightSpec) -> port::PreflightReport;
        export_inventory(domain: &'a str, nickname: &'a str) -> port::Result<ExportInventory>;
    }
    fn stats(&self) -> port::CallStats {
        self.inner.stats()
    }
    fn fetch_item<'a>(
        &'a self,
        item: &'a ExportItem,
        max: u64,
        sink: &'a mut dyn ItemSink,
    ) -> BoxFut<'a, port::Result<Fetched>> {
        let n = self.fetched.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_after {
            return Box::pin(async {
                Err(port::Error::Budget { op: "export.file".into(), attempts: 3, elapsed_ms: 1, last: "503".into() })
            });
        }
        self.inner.fetch_item(item, max, sink)
    }
}

#[tokio::test]
async fn an_interrupted_export_resumes_fetching_nothing_twice_and_lists_what_it_could_not_fetch() {
    let app = TestApp::spawn().await;
    let mut req = request("13005");
    req.agents = 2;
    let c = app.dgs.request_crisis(&req, None).await.unwrap();
    app.make_ready(&c.id).await;
    let s = app.daemon.state();
    let steps = app.ops.steps(c.id.as_str()).await.unwrap();
    let domain_step = steps.runs[0].steps.iter().find(|s| s.step == "domain").unwrap();
    let domain = domain_step.output.as_ref().unwrap()["domain"].as_str().unwrap().to_string();
    let id: CrisisId = c.id.clone();
    let nickname = format!("crise-{}", id.as_str().to_ascii_lowercase());
    let flaky = |fail_after| Flaky { inner: s.m365.clone(), fetched: AtomicUsize::new(0), fail_after };
    let options = ExportOptions { concurrency: 1, ..ExportOptions::default() };

    // Cut after 5 items: the archive is signed, lists the failures, and is not complete.
    let first = flaky(5);
    let e = handback::export(s, &id, &domain, &nickname, &first, &options).await.unwrap_err();
    let HandbackError::Incomplete { items, not_exported, .. } = &e else { panic!("{e}") };
    assert_eq!((*items, *not_exported), (2 * 8 + 3 * 9, 2 * 8 + 3 * 9 - 5), "{e}");
    assert!(e.to_string().contains("non exporté"), "{e}");
    let pins = pinned(&app);
    let v = handback::verify_archive(&handback::archive_dir(&s.config, &id), &handback::trust_of(&pins)).unwrap();
    assert_eq!(v.manifest.entries.iter().filter(|e| matches!(e.status, EntryStatus::Failed(_))).count(), 38);
    assert!(!handback::archive_zip(&s.config, &id).exists(), "no zip of an incomplete archive");

    // Resumed: only the 38 missing are fetched.
    let second = flaky(usize::MAX);
    let (out, m) = handback::export(s, &id, &domain, &nickname, &second, &options).await.unwrap();
    assert_eq!(second.fetched.load(Ordering::SeqCst), 38);
    assert_eq!((out.items, out.exported), (43, 43));
    assert!(m.complete());

    // As after kill -9: a file gone from the disk and a journal line cut halfway.
    let dir = handback::archive_dir(&s.config, &id);
    let lost = &m.entries[3];
    std::fs::remove_file(dir.join(&lost.path)).unwrap();
    let journal = handback::handback_path(&s.config).join(".work").join(id.as_str()).join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let cut = text.trim_end().rfind('\n').unwrap() + 20;
    std::fs::write(&journal, &text[..cut]).unwrap();
    let third = flaky(usize::MAX);
    let (_, m3) = handback::export(s, &id, &domain, &nickname, &third, &options).await.unwrap();
    assert_eq!(third.fetched.load(Ordering::SeqCst), 2, "the lost file and the item of the cut line");
    assert_eq!(m3.entries.len(), m.entries.len());
    handback::verify_archive(&handback::archive_zip(&s.config, &id), &handback::trust_of(&pins)).unwrap();

    // Too large: listed with its size, not fetched, the export incomplete.
    let small = ExportOptions { max_item_bytes: 100_000, concurrency: 2 };
    std::fs::remove_dir_all(handback::handback_path(&s.config)).unwrap();
    let e = handback::export(s, &id, &domain, &nickname, &flaky(usize::MAX), &small).await.unwrap_err();
    assert!(e.to_string().contains("trop volumineux"), "{e}");
    let v = handback::verify_archive(&handback::archive_dir(&s.config, &id), &handback::trust_of(&pins)).unwrap();
    let big: Vec<_> = v.manifest.entries.iter().filter(|e| e.status == EntryStatus::TooLarge).collect();
    assert_eq!(big.len(), 3);
    assert!(big.iter().all(|e| e.size == 300_000 && e.sha256.is_none()));
}

/// Sets what the embedded simulator's tenant granted the app, and lets the token issued
/// before expire (grants are fixed in a token at issue).
async fn grant(app: &TestApp, app_roles: &[&str]) {
    let sim = app.daemon.state().m365_zone_api().expect("embedded simulator");
    let http = reqwest::Client::new();
    let body = serde_json::json!({ "app_roles": app_roles, "directory_roles": ["User Administrator"] });
    assert!(http.post(format!("{sim}/_sim/grants")).json(&body).send().await.unwrap().status().is_success());
    let hour = serde_json::json!({ "seconds": 3600 });
    assert!(http.post(format!("{sim}/_sim/advance")).json(&hour).send().await.unwrap().status().is_success());
}

/// The export cannot run (the tenant withdrew Mail.Read): ops waive it with a reason, as ops
/// do, through the API. The deletions then run; the audit log holds the waiver with its reason
/// and who gave it; the PV states it in French, the reason escaped. Bad input changes nothing:
/// an empty, oversized reason; a DGS or an auditor (403); a waiver of a finished export (409).
#[tokio::test]
async fn a_waived_export_lets_the_deletions_run_audited_and_stated_in_the_pv() {
    use repli_tests::StatusCode;
    let app = TestApp::spawn().await;
    let mut req = request("13005");
    req.agents = 2;
    let c = app.dgs.request_crisis(&req, None).await.unwrap();
    app.make_ready(&c.id).await;
    let without_mail: Vec<&str> =
        repli_core::m365::LEAST_PRIVILEGE.iter().copied().filter(|p| !p.starts_with("Mail.")).collect();
    grant(&app, &without_mail).await;
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("fin de crise")).await.unwrap();
    let id = c.id.as_str();
    let export_of = |v: &repli_proto::api::StepsView| {
        v.runs
            .iter()
            .find(|r| r.playbook.as_str() == "handback")
            .and_then(|r| r.steps.iter().find(|s| s.step == "export"))
            .cloned()
    };
    let v = app
        .wait_steps(&c.id, "the export's refusal", |v| {
            export_of(v).is_some_and(|s| s.last_error.is_some() && s.state != StepState::Running)
        })
        .await;
    let export = export_of(&v).unwrap();
    assert!(export.last_error.as_deref().unwrap().contains("Mail.Read"), "{export:?}");
    // A refusal is not retried: failed at its first attempt.
    assert_eq!((export.state, export.attempts), (StepState::Failed, 1), "{export:?}");
    // Nothing deleted while it has not run.
    let run = v.runs.iter().find(|r| r.playbook.as_str() == "handback").unwrap();
    for s in run.steps.iter().filter(|s| s.step.starts_with("delete-") || s.step == "winddown") {
        assert_eq!(s.state, StepState::Pending, "{} ran before the export", s.step);
    }

    // Refused, nothing changed: no reason, a reason too long, a DGS, an auditor.
    let skip = |client: &repli_proto::Client, reason: String| {
        let client = client.clone();
        async move { client.step_action(id, "export", "skip", &reason).await }
    };
    assert_eq!(skip(&app.ops, String::new()).await.status_code(), 422);
    assert_eq!(skip(&app.ops, "   ".into()).await.status_code(), 422);
    assert_eq!(skip(&app.ops, "x".repeat(repli_core::text::NOTE_MAX + 1)).await.status_code(), 422);
    assert_eq!(skip(&app.dgs, "la commune renonce".into()).await.status_code(), 403);
    assert_eq!(skip(&app.auditor, "vu".into()).await.status_code(), 403);
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    assert!(!log.iter().any(|e| e.action == "engine.step.skipped"), "a refused waiver is not recorded");
    assert_ne!(export_of(&app.ops.steps(id).await.unwrap()).unwrap().state, StepState::Skipped);

    // Ops waive it; the reason is hostile text, kept as written.
    let reason = "La commune a sa copie <script>alert(1)</script> & \"PST\" remis le 3/12";
    let skipped = app.ops.step_action(id, "export", "skip", reason).await.unwrap();
    assert_eq!(skipped.state, StepState::Skipped);
    assert_eq!(skipped.note.as_deref(), Some(reason));
    // A second waiver: the step is no longer waiting; refused, nothing changed.
    assert_eq!(skip(&app.ops, "encore".into()).await.status_code(), 409);

    // The deletions run: the kit's accounts are gone from the tenant.
    assert_eq!(app.hand_back(&c.id).await.state, repli_core::CrisisState::Closed);
    let v = app.ops.steps(id).await.unwrap();
    let run = v.runs.iter().find(|r| r.playbook.as_str() == "handback").unwrap();
    for s in ["winddown", "delete-group", "delete-accounts", "remove-domain"] {
        assert_eq!(run.steps.iter().find(|x| x.step == s).unwrap().state, StepState::Succeeded, "{s}");
    }
    let sim = app.daemon.state().m365_zone_api().unwrap();
    let state: serde_json::Value = reqwest::get(format!("{sim}/_sim/state")).await.unwrap().json().await.unwrap();
    assert_eq!(state["counts"]["users"], 0, "{}", state["counts"]);
    assert_eq!(state["counts"]["groups"], 0, "{}", state["counts"]);

    // Audited once, with the reason and who waived it; no archive recorded.
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    let waivers: Vec<_> = log.iter().filter(|e| e.action == "engine.step.skipped").collect();
    assert_eq!(waivers.len(), 1, "{waivers:?}");
    let w = waivers[0];
    let details: serde_json::Value = serde_json::from_str(&w.details).unwrap();
    assert_eq!(details["reason"], reason);
    assert_eq!((w.actor_role.as_str(), w.crisis.as_deref()), ("ops", Some(id)));
    assert!(w.target.contains("export"), "{w:?}");
    assert!(!log.iter().any(|e| e.action == "handback.exported" && e.details.contains("\"complete\":true")));
    // The DGS cannot download an archive there is not.
    let (_, dgs_token) = app.token(repli_core::Role::Dgs, Some("13005")).await;
    let url = app.url(&format!("/api/v1/crises/{id}/handback.zip"));
    let got = reqwest::Client::new().get(&url).bearer_auth(&dgs_token).send().await.unwrap();
    assert_eq!(got.status(), 409, "{:?}", got.text().await);

    // The PV says it in French, with the reason escaped.
    let pv = app.ops.document(id, "06-proces-verbal-de-restitution.html").await.unwrap();
    assert!(pv.contains("Dérogation de l'exploitation"), "{pv}");
    assert!(pv.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;PST&quot;"), "{pv}");
    assert!(!pv.contains("<script>alert"), "{pv}");
}

/// A waiver after the export completed: refused (409), the export and its archive unchanged.
#[tokio::test]
async fn a_waiver_after_the_export_completed_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut req = request("13005");
    req.agents = 1;
    let c = app.dgs.request_crisis(&req, None).await.unwrap();
    app.make_ready(&c.id).await;
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("fin de crise")).await.unwrap();
    let done = app
        .wait_steps(&c.id, "the export", |v| step_state(v, "handback", "export") == Some(StepState::Succeeded))
        .await;
    let refused = app.ops.step_action(c.id.as_str(), "export", "skip", "trop tard").await.unwrap_err();
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(409), "{refused}");
    assert!(refused.to_string().contains("ne peut pas être ignorée"), "{refused}");
    let after = app.ops.steps(c.id.as_str()).await.unwrap();
    let export = |v: &repli_proto::api::StepsView| {
        let run = v.runs.iter().find(|r| r.playbook.as_str() == "handback").unwrap();
        run.steps.iter().find(|s| s.step == "export").cloned().unwrap()
    };
    assert_eq!(export(&after).state, StepState::Succeeded);
    assert_eq!(export(&after).output, export(&done).output);
    assert!(export(&after).note.is_none());
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    assert!(!log.iter().any(|e| e.action == "engine.step.skipped"));
    let pins = pinned(&app);
    handback::verify_archive(&handback::archive_zip(&app.daemon.state().config, &c.id), &handback::trust_of(&pins))
        .unwrap();
}

/// Sets the embedded simulator's faults (`Faults` as JSON; `{}` clears them).
async fn faults(app: &TestApp, body: serde_json::Value) {
    let sim = app.daemon.state().m365_zone_api().expect("embedded simulator");
    let r = reqwest::Client::new().post(format!("{sim}/_sim/faults")).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{body}");
}

/// A ready kit of one agent for `insee`, then its hand-back started with `body` as the
/// simulator's faults; returns once the export step succeeded or failed.
async fn export_under(app: &TestApp, insee: &str, body: serde_json::Value) -> (CrisisId, repli_proto::api::StepView) {
    let mut req = request(insee);
    req.agents = 1;
    let c = app.ops.request_crisis(&req, None).await.unwrap();
    app.make_ready(&c.id).await;
    faults(app, body).await;
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("fin de crise")).await.unwrap();
    let v = app
        .wait_steps(&c.id, "the export's outcome", |v| {
            matches!(step_state(v, "handback", "export"), Some(StepState::Succeeded | StepState::Failed))
        })
        .await;
    faults(app, serde_json::json!({})).await;
    let run = v.runs.iter().find(|r| r.playbook.as_str() == "handback").unwrap();
    (c.id.clone(), run.steps.iter().find(|s| s.step == "export").cloned().unwrap())
}

/// Graph's transient answers (429, 503, 504, 424, the network) are retried, here a third to a
/// half of them: the export completes all the same.
#[tokio::test]
async fn transient_graph_errors_during_the_export_are_retried_until_it_completes() {
    let app = TestApp::spawn().await;
    // 424 on half the MIME fetches ($value: the streamed download path).
    let (_, export) = export_under(
        &app,
        "13005",
        serde_json::json!({ "fail_rate": 0.5, "fail_status": 424, "fail_path": "/$value" }),
    )
    .await;
    assert_eq!(export.state, StepState::Succeeded, "{export:?}");
    // 504 on a third of every Graph request (listings, fetches).
    let (_, export) = export_under(&app, "13001", serde_json::json!({ "fail_rate": 0.3, "fail_status": 504 })).await;
    assert_eq!(export.state, StepState::Succeeded, "{export:?}");
    // Connections dropped and 503s.
    let (_, export) = export_under(&app, "13007", serde_json::json!({ "fail_rate": 0.2, "reset_rate": 0.2 })).await;
    assert_eq!(export.state, StepState::Succeeded, "{export:?}");
}

/// What retrying cannot cure fails the step at its first attempt, saying why, instead of
/// being retried until its attempts run out: a refused permission (named), an invalid request,
/// a mailbox Graph does not find (named). The manifest is signed all the same; once the cause
/// is fixed, ops retry the step and it completes, without a restart.
#[tokio::test]
async fn export_errors_retrying_cannot_cure_fail_the_step_at_once_saying_why() {
    let app = TestApp::spawn().await;
    let pins = pinned(&app);
    let config = &app.daemon.state().config;

    // 400 on every MIME fetch: the items are listed as failed, the step fails once.
    let (id, export) = export_under(
        &app,
        "13005",
        serde_json::json!({ "fail_rate": 1.0, "fail_status": 400, "fail_path": "/$value" }),
    )
    .await;
    assert_eq!((export.state, export.attempts), (StepState::Failed, 1), "{export:?}");
    let error = export.last_error.unwrap();
    assert!(error.contains("export incomplet") && error.contains("400"), "{error}");
    let v = handback::verify_archive(&handback::archive_dir(config, &id), &handback::trust_of(&pins)).unwrap();
    let failed = v.manifest.entries.iter().filter(|e| matches!(&e.status, EntryStatus::Failed(w) if w.contains("400")));
    assert_eq!(failed.count(), 8, "every message of the one mailbox");
    // Fixed: ops retry, the export resumes and completes.
    app.ops.step_action(id.as_str(), "export", "retry", "incident Microsoft clos").await.unwrap();
    app.wait_steps(&id, "the retried export", |v| step_state(v, "handback", "export") == Some(StepState::Succeeded))
        .await;

    // 404 on the mailbox itself: not replication lag at hand-back; the account is named.
    let (id, export) = export_under(
        &app,
        "13001",
        serde_json::json!({ "fail_rate": 1.0, "fail_status": 404, "fail_path": "/mailFolders" }),
    )
    .await;
    assert_eq!((export.state, export.attempts), (StepState::Failed, 1), "{export:?}");
    let error = export.last_error.unwrap();
    assert!(
        error.contains("404") && error.contains("boîte aux lettres de agent") && error.contains("licence"),
        "{error}"
    );
    app.ops.step_action(id.as_str(), "export", "retry", "licence rétablie").await.unwrap();
    app.wait_steps(&id, "the retried export", |v| step_state(v, "handback", "export") == Some(StepState::Succeeded))
        .await;

    // Mail.Read withdrawn (Mail.ReadBasic.All left: messages listed, not read): the step fails
    // once, naming the permission to grant.
    let mut basic: Vec<&str> =
        repli_core::m365::LEAST_PRIVILEGE.iter().copied().filter(|p| *p != "Mail.Read").collect();
    basic.push("Mail.ReadBasic.All");
    let mut req = request("13007");
    req.agents = 1;
    let c = app.ops.request_crisis(&req, None).await.unwrap();
    app.make_ready(&c.id).await;
    grant(&app, &basic).await;
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("fin de crise")).await.unwrap();
    let v = app
        .wait_steps(&c.id, "the export's refusal", |v| step_state(v, "handback", "export") == Some(StepState::Failed))
        .await;
    let run = v.runs.iter().find(|r| r.playbook.as_str() == "handback").unwrap();
    let export = run.steps.iter().find(|s| s.step == "export").unwrap();
    assert_eq!(export.attempts, 1, "{export:?}");
    let error = export.last_error.clone().unwrap();
    assert!(error.contains("403") && error.contains("Mail.Read") && error.contains("consentement"), "{error}");
    assert!(run.steps.iter().filter(|s| s.step.starts_with("delete-")).all(|s| s.state == StepState::Pending));
    // Granted again: retried by ops, it completes.
    let all: Vec<&str> = repli_core::m365::LEAST_PRIVILEGE.to_vec();
    grant(&app, &all).await;
    app.ops.step_action(c.id.as_str(), "export", "retry", "Mail.Read accordée").await.unwrap();
    app.wait_steps(&c.id, "the retried export", |v| step_state(v, "handback", "export") == Some(StepState::Succeeded))
        .await;
    handback::verify_archive(&handback::archive_zip(config, &c.id), &handback::trust_of(&pins)).unwrap();
}

/// Where Microsoft approved the app for Teams' protected APIs (the permission is held with
/// Group.ReadWrite.All): each channel's messages with their replies, every page read (60 messages: two
/// pages of at most 50), are in the signed archive as JSON and as a page where every value is
/// escaped; the PV says so. Without it (the default), the manual step remains and the PV says
/// that instead.
#[tokio::test]
async fn channel_messages_are_archived_where_the_tenant_grants_them_and_left_to_the_manual_step_otherwise() {
    let app = TestApp::spawn().await;
    let sim = app.daemon.state().m365_zone_api().expect("embedded simulator");
    let spec = serde_json::json!({ "messages": 2, "files": [10], "channel_messages": 60, "channel_replies": 2 });
    let r = reqwest::Client::new().post(format!("{sim}/_sim/content")).json(&spec).send().await.unwrap();
    assert!(r.status().is_success());
    let config = &app.daemon.state().config;
    let pins = pinned(&app);

    // Not granted: no channel in the archive, the note and the PV say it is a manual step.
    let mut req = request("13005");
    req.agents = 1;
    let c = app.ops.request_crisis(&req, None).await.unwrap();
    app.make_ready(&c.id).await;
    assert_eq!(app.hand_back(&c.id).await.state, repli_core::CrisisState::Closed);
    let v = handback::verify_archive(&handback::archive_zip(config, &c.id), &handback::trust_of(&pins)).unwrap();
    assert!(!v.manifest.entries.iter().any(|e| e.path.starts_with("canaux/")), "{:?}", v.manifest.entries);
    assert!(v.manifest.notes.iter().any(|n| n.contains("API protégée")), "{:?}", v.manifest.notes);
    let steps = app.ops.steps(c.id.as_str()).await.unwrap();
    let export = steps.runs.iter().flat_map(|r| &r.steps).find(|s| s.step == "export").unwrap();
    assert_eq!(export.output.as_ref().unwrap()["channels"], 0);
    let pv = app.ops.document(c.id.as_str(), "06-proces-verbal-de-restitution.html").await.unwrap();
    assert!(pv.contains("ne sont pas dans l'archive"), "{pv}");

    // Granted (and approved by Microsoft): every channel archived, the export complete.
    let mut req = request("13001");
    req.agents = 1;
    let c = app.ops.request_crisis(&req, None).await.unwrap();
    app.make_ready(&c.id).await;
    let approved = serde_json::json!({
        "app_roles": repli_core::m365::LEAST_PRIVILEGE,
        "directory_roles": ["User Administrator"],
        "teams_protected_apis": true,
    });
    let r = reqwest::Client::new().post(format!("{sim}/_sim/grants")).json(&approved).send().await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(app.hand_back(&c.id).await.state, repli_core::CrisisState::Closed);
    let steps = app.ops.steps(c.id.as_str()).await.unwrap();
    let export = steps.runs.iter().flat_map(|r| &r.steps).find(|s| s.step == "export").unwrap();
    let channels = export.output.as_ref().unwrap()["channels"].as_u64().unwrap();
    assert!(channels >= 1, "{:?}", export.output);
    let dir = handback::archive_dir(config, &c.id);
    let v = handback::verify_archive(&handback::archive_zip(config, &c.id), &handback::trust_of(&pins)).unwrap();
    let of = |kind| v.manifest.entries.iter().filter(move |e| e.kind == kind && e.status == EntryStatus::Exported);
    assert_eq!(of(port::ExportKind::ChannelMessages).count() as u64, channels);
    assert_eq!(of(port::ExportKind::ChannelPage).count() as u64, channels);
    assert!(!v.manifest.notes.iter().any(|n| n.contains("ne sont pas exportées")), "{:?}", v.manifest.notes);
    for e in of(port::ExportKind::ChannelMessages) {
        assert!(e.path.starts_with("canaux/equipe/") && e.path.ends_with(".json"), "{}", e.path);
        let c: repli_core::handback::ChannelExport =
            serde_json::from_slice(&std::fs::read(dir.join(&e.path)).unwrap()).unwrap();
        assert_eq!(c.posts.len(), 60, "every page read");
        assert!(c.posts.iter().all(|p| p.replies.len() == 2), "{:?}", c.posts[0]);
        let ids: std::collections::BTreeSet<&str> = c.posts.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids.len(), 60, "no message twice");
        assert!(c.posts[0].content.contains("<script>"), "kept as written in the JSON");
    }
    for e in of(port::ExportKind::ChannelPage) {
        let html = std::fs::read_to_string(dir.join(&e.path)).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;canal&#39;)&lt;/script&gt; &amp; &quot;ordre du jour&quot;"));
        assert!(html.contains("Réponse 1 au message 59."), "the last page's replies are there");
    }
    let pv = app.ops.document(c.id.as_str(), "06-proces-verbal-de-restitution.html").await.unwrap();
    assert!(
        pv.contains(&format!("Les conversations des canaux de l'espace collaboratif ({channels}) sont dans l'archive")),
        "{pv}"
    );
}

/// A kit called off after its group was made but before its Team (the Team step refused):
/// the export finds no Team, says so in the manifest, and completes (found by the crash
/// harness: the channel listing's 404 had failed the export).
#[tokio::test]
async fn a_kit_called_off_before_its_team_exists_exports_without_one() {
    let app = TestApp::spawn().await;
    let mut req = request("13005");
    req.agents = 1;
    let c = app.dgs.request_crisis(&req, None).await.unwrap();
    faults(&app, serde_json::json!({ "fail_rate": 1.0, "fail_status": 400, "fail_path": "/team" })).await;
    app.activate(&c.id).await;
    let agents = vec![repli_proto::api::AgentInput { name: "Agent Unique".into(), service: "Accueil".into() }];
    app.ops.add_agents(c.id.as_str(), &repli_proto::api::AgentsRequest { agents }).await.unwrap();
    app.wait_steps(&c.id, "the Team step's refusal", |v| {
        step_state(v, "activation", "team") == Some(StepState::Failed)
    })
    .await;
    faults(&app, serde_json::json!({})).await;
    app.ops.act(&c.id, CrisisAction::Cancel, Some("fausse alerte")).await.unwrap();
    let v = app
        .wait_steps(&c.id, "the export", |v| {
            matches!(step_state(v, "handback", "export"), Some(StepState::Succeeded | StepState::Failed))
        })
        .await;
    let run = v.runs.iter().find(|r| r.playbook.as_str() == "handback").unwrap();
    let export = run.steps.iter().find(|s| s.step == "export").unwrap();
    assert_eq!(export.state, StepState::Succeeded, "{export:?}");
    let config = &app.daemon.state().config;
    let v =
        handback::verify_archive(&handback::archive_zip(config, &c.id), &handback::trust_of(&pinned(&app))).unwrap();
    assert!(v.manifest.notes.iter().any(|n| n.contains("pas d'équipe Teams")), "{:?}", v.manifest.notes);
}
