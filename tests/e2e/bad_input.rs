//! Bad input: each refused with the right status and a clear French message, and nothing
//! half-written (the audit chain and the crisis list are unchanged after every refusal).

use repli_core::{CrisisAction, CrisisState};
use repli_proto::ClientError;
use repli_proto::api::CrisisQuery;
use repli_tests::{TestApp, request};

const CRISES: &str = "/api/v1/crises";

fn problem(e: &ClientError) -> (u16, &str, &str) {
    let p = e.problem().unwrap_or_else(|| panic!("no problem document: {e}"));
    (p.status, p.code.as_str(), p.detail.as_str())
}

async fn entries(app: &TestApp) -> u64 {
    app.auditor.audit_verify().await.unwrap().entries
}

#[tokio::test]
async fn unknown_and_ineligible_communes() {
    let app = TestApp::spawn().await;
    let before = entries(&app).await;

    let e = app.ops.request_crisis(&request("13999"), None).await.unwrap_err();
    let (status, code, detail) = problem(&e);
    assert_eq!((status, code), (404, "unknown_commune"));
    assert!(detail.contains("Commune inconnue") && detail.contains("13999"), "{detail}");

    // Marseille has not signed the convention.
    let e = app.ops.request_crisis(&request("13055"), None).await.unwrap_err();
    let (status, code, detail) = problem(&e);
    assert_eq!((status, code), (422, "convention_missing"));
    assert!(detail.to_lowercase().contains("convention non signée"), "{detail}");

    let e = app.ops.commune("13999").await.unwrap_err();
    assert_eq!(problem(&e).0, 404);
    let e = app.ops.commune("../../etc/passwd").await.unwrap_err();
    assert_eq!(problem(&e).0, 404);

    assert_eq!(entries(&app).await, before, "refusals must not write");
    assert!(app.ops.crises(&CrisisQuery::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn one_open_crisis_per_commune() {
    let app = TestApp::spawn().await;
    let first = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let e = app.ops.request_crisis(&request("13005"), None).await.unwrap_err();
    let (status, code, detail) = problem(&e);
    assert_eq!((status, code), (409, "open_crisis_exists"));
    assert!(detail.contains(first.id.as_str()), "{detail}");
    assert_eq!(e.problem().unwrap().open_crisis.as_ref(), Some(&first.id));
}

#[tokio::test]
async fn idempotency_keys() {
    let app = TestApp::spawn().await;
    let a = app.dgs.request_crisis(&request("13005"), Some("retry-42")).await.unwrap();
    let b = app.dgs.request_crisis(&request("13005"), Some("retry-42")).await.unwrap();
    assert_eq!(a.id, b.id);
    let before = entries(&app).await;
    let mut other = request("13005");
    other.agents = 3;
    let e = app.dgs.request_crisis(&other, Some("retry-42")).await.unwrap_err();
    assert_eq!(problem(&e).1, "idempotency_key_reused");
    for bad in ["x".repeat(129), "with space".into(), "é".into()] {
        let e = app.ops.request_crisis(&request("13001"), Some(&bad)).await;
        // reqwest refuses non-ASCII header values itself; the others reach replid.
        if let Err(e) = e {
            if let Some(p) = e.problem() {
                assert_eq!((p.status, p.code.as_str()), (400, "invalid_idempotency_key"));
            }
        } else {
            panic!("key {bad:?} accepted");
        }
    }
    assert_eq!(entries(&app).await, before);
    assert_eq!(app.ops.crises(&CrisisQuery::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_bodies_name_the_problem() {
    let app = TestApp::spawn().await;
    let before = entries(&app).await;
    let json = "application/json";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (json, b"{".to_vec(), 400, ""),
        (json, b"[]".to_vec(), 400, ""),
        (
            json,
            br#"{"commune":"13005","contact":{"name":"A","phone":"0612345678"},"agents":2,"colour":"red"}"#.to_vec(),
            400,
            "colour",
        ),
        (
            json,
            br#"{"commune":"13005","contact":{"name":"A","phone":"0612345678","fax":"1"},"agents":2}"#.to_vec(),
            400,
            "fax",
        ),
        (
            json,
            br#"{"commune":"13005","contact":{"name":"A","phone":"0612345678"},"agents":"many"}"#.to_vec(),
            400,
            "agents",
        ),
        (json, br#"{"commune":13005,"contact":{"name":"A","phone":"0612345678"},"agents":2}"#.to_vec(), 400, "commune"),
        (
            json,
            br#"{"commune":"1300","contact":{"name":"A","phone":"0612345678"},"agents":2}"#.to_vec(),
            400,
            "commune",
        ),
        (json, br#"{"commune":"13005","agents":2}"#.to_vec(), 400, "contact"),
        ("text/plain", br#"{"commune":"13005"}"#.to_vec(), 415, ""),
    ];
    for (ct, body, want, needle) in cases {
        let text = String::from_utf8_lossy(&body).into_owned();
        let e = app.dgs.post_raw(CRISES, ct, body).await.unwrap_err();
        let (status, _, detail) = problem(&e);
        assert_eq!(status, want, "{text}: {detail}");
        assert!(detail.contains(needle), "{text}: {detail}");
        // In French, not serde's words, and not the value sent.
        for english in ["invalid ", "expected", "unknown", "missing", "field", "at line", "many", "red"] {
            assert!(!detail.contains(english), "{text}: {detail}");
        }
    }
    // Over 1 MiB.
    let big = format!(
        r#"{{"commune":"13005","contact":{{"name":"A","phone":"0612345678"}},"agents":2,"notes":"{}"}}"#,
        "a".repeat(1 << 20)
    );
    let e = app.dgs.post_raw(CRISES, json, big.into_bytes()).await.unwrap_err();
    assert_eq!(problem(&e).0, 413);
    assert_eq!(entries(&app).await, before);
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = TestApp::spawn().await;
    let mut r = request("13005");
    r.contact.name = "   ".into();
    r.contact.phone = "12".into();
    r.contact.email = Some("pas-une-adresse".into());
    r.agents = 0;
    r.notes = Some("bip\u{7}".into());
    let e = app.dgs.request_crisis(&r, None).await.unwrap_err();
    let p = e.problem().unwrap();
    assert_eq!((p.status, p.code.as_str()), (422, "invalid_fields"));
    let mut fields: Vec<&str> = p.errors.iter().map(|f| f.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["agents", "contact.email", "contact.name", "contact.phone", "notes"]);
    assert!(p.detail.contains("numéro de téléphone invalide"), "{}", p.detail);

    r = request("13005");
    r.contact.name = "é".repeat(10_000);
    assert_eq!(problem(&app.dgs.request_crisis(&r, None).await.unwrap_err()).0, 422);
    r = request("13005");
    r.agents = 501;
    assert_eq!(problem(&app.dgs.request_crisis(&r, None).await.unwrap_err()).0, 422);
    assert!(app.dgs.crises(&CrisisQuery::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn hostile_text_is_stored_as_data() {
    let app = TestApp::spawn().await;
    let mut r = request("13005");
    let hostile = "<script>alert(1)</script> \"quotes\" {{x}} =1+2 '; DROP TABLE crises; --";
    r.contact.name = hostile.chars().take(120).collect();
    r.notes = Some(format!("{hostile}\nligne 2"));
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let back = app.ops.crisis(c.id.as_str()).await.unwrap();
    assert_eq!(back.contact.name, r.contact.name);
    assert_eq!(back.notes, format!("{hostile}\nligne 2"));
    assert_eq!(app.ops.crises(&CrisisQuery::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn illegal_transitions_name_the_current_state() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let before = entries(&app).await;
    for a in [CrisisAction::Close, CrisisAction::Deliver, CrisisAction::MarkReady, CrisisAction::StartHandback] {
        let e = app.ops.act(&c.id, a, None).await.unwrap_err();
        let p = e.problem().unwrap();
        assert_eq!((p.status, p.code.as_str()), (409, "illegal_transition"), "{a}");
        assert_eq!(p.current_state, Some(CrisisState::Requested));
        assert!(p.detail.contains("demandé"), "{}", p.detail);
    }
    assert_eq!(entries(&app).await, before);
    assert_eq!(app.ops.crisis(c.id.as_str()).await.unwrap().state, CrisisState::Requested);
}

#[tokio::test]
async fn unknown_routes_actions_and_ids() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let http = reqwest::Client::new();
    let r = http.get(app.url("/api/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let r = http.delete(app.url(CRISES)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // A person's browser gets a French page, not JSON.
    let r = http.get(app.url("/nulle-part")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("Page introuvable"));
    // A path parameter of the wrong type is a problem document, not axum's English text.
    let (_, admin) = app.token(repli_core::Role::Admin, None).await;
    for path in ["/api/v1/users/abc/tokens", "/api/v1/users/99999999999999999999/tokens", "/api/v1/users/1.5/tokens"] {
        let r = http.delete(app.url(path)).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{path}");
        let p: repli_proto::api::Problem = r.json().await.unwrap();
        assert_eq!(p.code, "not_found", "{path}");
    }
    let e = app
        .ops
        .post_raw(&format!("{CRISES}/{}/actions/explode", c.id), "application/json", b"{}".to_vec())
        .await
        .unwrap_err();
    assert_eq!(problem(&e).1, "unknown_action");
    for id in ["13005-2026-999", "..%2F..%2Fetc", "13005", "x".repeat(300).as_str()] {
        let e = app.ops.crisis(id).await.unwrap_err();
        assert_eq!(problem(&e).0, 404, "{id}");
    }
    let e = app
        .ops
        .post_raw(
            &format!("{CRISES}/{}/actions/activate", c.id),
            "application/json",
            br#"{"reason":"x","extra":1}"#.to_vec(),
        )
        .await
        .unwrap_err();
    assert!(problem(&e).2.contains("extra"));
}

/// A problem document is the server's word: text the caller chose (a journal filter, a
/// commune code) is not repeated in it, so a crafted link cannot make the API say it.
#[tokio::test]
async fn problem_details_do_not_repeat_the_callers_text() {
    let app = TestApp::spawn().await;
    let bait = "Appelez le 08 99 00 00 00";
    let q = repli_proto::api::AuditQuery { action: Some(bait.into()), ..Default::default() };
    let e = app.auditor.audit_entries(&q).await.unwrap_err();
    let (status, code, detail) = problem(&e);
    assert_eq!((status, code), (400, "invalid_query"));
    assert!(detail.contains("Action inconnue du journal"), "{detail}");
    assert!(!detail.contains("08 99"), "{detail}");
    let e = app.ops.commune("0899appelez").await.unwrap_err();
    let (status, code, detail) = problem(&e);
    assert_eq!((status, code), (404, "unknown_commune"));
    assert!(!detail.contains("appelez"), "{detail}");
}

/// An oversized request target (414) or header section (431) gets a body a client can read:
/// a problem document under /api, a French page elsewhere.
#[tokio::test]
async fn oversized_addresses_and_headers_are_answered_readably() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let long = "a".repeat(10_000);
    let r = http.get(app.url(&format!("/api/v1/crises?commune={long}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 414);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<repli_proto::api::Problem>().await.unwrap().code, "uri_too_long");
    let r = http.get(app.url(&format!("/crises/{long}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 414);
    assert!(r.text().await.unwrap().contains("Adresse trop longue"));
    // Many fields, then one large field.
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..80 {
        many.insert(
            reqwest::header::HeaderName::from_bytes(format!("x-f{i}").as_bytes()).unwrap(),
            "v".parse().unwrap(),
        );
    }
    let r = http.get(app.url("/api/v1/me")).headers(many.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 431);
    assert_eq!(r.json::<repli_proto::api::Problem>().await.unwrap().code, "headers_too_large");
    let big = "c".repeat(40_000);
    let r = http.get(app.url("/")).header("cookie", format!("x={big}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 431);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("cookies"));
    // Within the limits, nothing changes.
    assert_eq!(http.get(app.url("/healthz")).send().await.unwrap().status().as_u16(), 200);
}

/// Beyond hyper's own limits (a 64 KiB target, a 400 KiB head) hyper answers before any of
/// Repli's code: those bare answers are replaced by the same problem document or French page,
/// with the security headers, and the daemon keeps serving. (HTTP libraries refuse to send a
/// target that long: these requests are raw bytes.)
#[tokio::test]
async fn addresses_and_heads_beyond_hypers_limits_get_the_same_answers() {
    use repli_tests::raw_http;
    let app = TestApp::spawn().await;
    let addr = app.daemon.addr();
    let conn = || async move { tokio::net::TcpStream::connect(addr).await.unwrap() };
    let huge = "a".repeat(70_000);
    let (status, head, body) = raw_http(conn().await, &format!("GET /api/v1/crises?commune={huge}"), "").await;
    assert_eq!(status, 414, "{head}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    // Plain HTTP (tests, loopback): no HSTS, which only means something over TLS.
    assert!(!head.contains("strict-transport-security"), "{head}");
    let problem: repli_proto::api::Problem = serde_json::from_str(&body).unwrap();
    assert_eq!(problem.code, "uri_too_long");
    let (status, head, body) = raw_http(conn().await, &format!("GET /crises/{huge}"), "").await;
    assert_eq!(status, 414);
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("Adresse trop longue"), "{body}");
    let (_, _, body) = raw_http(conn().await, &format!("GET /healthz?{huge}"), "").await;
    assert!(body.contains("uri_too_long"), "{body}");
    // A head over hyper's buffer: 431, readable, as an API call and as a page.
    let enormous = "c".repeat(500_000);
    let (status, _, body) = raw_http(conn().await, "GET /api/v1/me", &format!("x-big: {enormous}\r\n")).await;
    assert_eq!(status, 431);
    assert!(body.contains("headers_too_large"), "{body}");
    let (status, _, body) = raw_http(conn().await, "GET /", &format!("cookie: x={enormous}\r\n")).await;
    assert_eq!(status, 431);
    assert!(body.contains("cookies"), "{body}");
    // Several at once, then ordinary requests: nothing is stuck, and the usual 414 is unchanged.
    let calls = (0..8).map(|_| async { raw_http(conn().await, &format!("GET /api/v1/crises?c={huge}"), "").await.0 });
    assert!(futures_util::future::join_all(calls).await.iter().all(|s| *s == 414));
    let http = reqwest::Client::new();
    assert_eq!(http.get(app.url("/healthz")).send().await.unwrap().status().as_u16(), 200);
    let r = http.get(app.url(&format!("/api/v1/crises?c={}", "a".repeat(10_000)))).send().await.unwrap();
    assert_eq!(r.json::<repli_proto::api::Problem>().await.unwrap().code, "uri_too_long");
}

/// Files given on the command line are read up to a limit: `/dev/zero` (which reports a length
/// of 0 and never ends) is refused at once with a French message, for each command that reads
/// one, and for replid's configuration.
#[tokio::test]
async fn endless_files_are_refused_not_read_until_memory_runs_out() {
    let repli = repli_tests::workspace_bin("repli");
    let replid = repli_tests::workspace_bin("replid");
    let commands: [(&std::path::Path, &[&str]); 4] = [
        (&repli, &["inventory", "import", "/dev/zero"]),
        (&repli, &["crisis", "agents", "13005-2026-001", "--set", "/dev/zero"]),
        (&repli, &["handback", "checkin", "13005-2026-001", "--scan", "/dev/zero"]),
        (&replid, &["--config", "/dev/zero", "config", "check"]),
    ];
    for (bin, args) in commands {
        let run = tokio::process::Command::new(bin)
            .args(["--server", "http://127.0.0.1:9", "--token", "rpl_x"].iter().filter(|_| bin == repli.as_path()))
            .args(args)
            .output();
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(30), run).await.expect("no endless read").unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("trop volumineux") || err.contains("larger than"), "{args:?}: {err}");
    }
}

/// The paged history: malformed paging is a problem document in French; out-of-range sizes are
/// taken to the documented bounds; another commune's crisis does not exist for a DGS.
#[tokio::test]
async fn malformed_history_paging_is_refused_readably() {
    let app = TestApp::spawn().await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let (_, ops) = app.token(repli_core::Role::Ops, None).await;
    let http = reqwest::Client::new();
    let history = |q: &str| app.url(&format!("{CRISES}/{}/history{q}", c.id));
    for q in ["?limit=abc", "?before=x", "?limit=-1", "?limit=99999999999", "?extra=1"] {
        let r = http.get(history(q)).bearer_auth(&ops).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{q}");
    }
    // A page size of 0 or beyond the maximum is taken within bounds, not refused.
    for q in ["?limit=0", "?limit=4000000000", "?before=-5"] {
        let r = http.get(history(q)).bearer_auth(&ops).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{q}");
    }
    let (_, other_dgs) = app.token(repli_core::Role::Dgs, Some("13001")).await;
    let r = http.get(history("")).bearer_auth(&other_dgs).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "another commune's crisis does not exist for this DGS");
}

/// A command that fails ends with one line on stderr and a non-zero status, never a Rust
/// backtrace, even with RUST_BACKTRACE set: the demo with an unreadable DNS key, a directory it
/// cannot make, a bad configuration, and the CLI against a server that is not there.
#[tokio::test]
async fn failing_commands_end_with_one_line_and_no_backtrace() {
    let repli = repli_tests::workspace_bin("repli");
    let replid = repli_tests::workspace_bin("replid");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absente.key");
    let missing = missing.to_str().unwrap();
    let cases: [(&std::path::Path, Vec<&str>); 8] = [
        (
            &replid,
            vec![
                "demo",
                "--dns-primary",
                "127.0.0.1:9",
                "--dns-zone",
                "secours-amp.test",
                "--dns-key-name",
                "k",
                "--dns-key-file",
                missing,
            ],
        ),
        (&replid, vec!["demo", "--dir", "/proc/repli-nope/demo"]),
        (&replid, vec!["--config", missing, "config", "check"]),
        // An operator's decision over a broken audit chain names its entry and gives a reason.
        (&replid, vec!["run", "--accept-audit-break", "pas de numéro"]),
        (&replid, vec!["run", "--accept-audit-break", "12:court"]),
        (&replid, vec!["run", "--accept-audit-break", "0:<script>alert(1)</script>"]),
        (&repli, vec!["--server", "http://127.0.0.1:9", "--token", "rpl_x", "dns", "check", "13005-2026-001"]),
        (&repli, vec!["--server", "http://127.0.0.1:9", "--token", "rpl_x", "crisis", "list"]),
    ];
    for (bin, args) in cases {
        let run = tokio::process::Command::new(bin)
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .current_dir(dir.path())
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), run).await.expect("ends").unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, not {err}");
        assert!(lines[0].starts_with("erreur : "), "{args:?}: {err}");
        assert!(!err.contains("backtrace") && !err.contains("panicked"), "{args:?}: {err}");
    }
}
