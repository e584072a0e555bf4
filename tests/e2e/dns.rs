//! The crisis zone in a real BIND: RFC 2136 updates signed with TSIG, propagation checked on
//! the server, removal at hand-back, and what the server refuses.
//!
//! With `REPLI_DNS_TESTS=required` (as `.ci/run` sets), a missing `named` is a failure;
//! without it, each test says it was skipped and why.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, UpdateMessage};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use repli_core::m365::{DnsPublisher, DnsRecord, Error, dmarc_record};
use repli_core::{CrisisAction, CrisisState};
use repli_m365::Rfc2136Dns;
use repli_proto::api::{DnsDiff, DnsExpectation};
use repli_tests::{Named, TestApp, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ZONE: &str = "secours-amp.test";
const CRISIS: &str = "aubagne.secours-amp.test";

fn rec(name: &str, kind: &str, value: &str) -> DnsRecord {
    DnsRecord {
        name: name.into(),
        kind: kind.into(),
        ttl: 300,
        value: value.into(),
        service: "Email".into(),
        optional: false,
    }
}

fn kit_records() -> Vec<DnsRecord> {
    vec![
        rec(CRISIS, "TXT", "MS=ms12345678"),
        rec(CRISIS, "MX", "0 aubagne-secours-amp-test.mail.protection.outlook.com."),
        rec(CRISIS, "TXT", "v=spf1 include:spf.protection.outlook.com -all"),
        rec(&format!("autodiscover.{CRISIS}"), "CNAME", "autodiscover.outlook.com."),
        rec(&format!("_sip._tls.{CRISIS}"), "SRV", "100 1 443 sipdir.online.lync.com."),
        dmarc_record(CRISIS, "quarantine", None),
    ]
}

/// replid configured to publish in `named` with its key (read from `key_file`).
fn use_named(c: &mut replid::config::Config, named: &Named, key_file: std::path::PathBuf) {
    c.m365.domain_pattern = format!("{{slug}}.{ZONE}");
    c.m365.dns = replid::config::DnsMode::Rfc2136;
    c.dns.primary = Some(named.addr);
    c.dns.servers = vec![named.addr];
    c.dns.zone = ZONE.into();
    c.dns.key_name.clone_from(&named.key_name);
    c.dns.key_file = Some(key_file);
    c.dns.propagation_timeout_seconds = 10;
}

async fn served(dns: &Rfc2136Dns, named: &Named, name: &str, kind: RecordType) -> BTreeSet<String> {
    dns.served(named.addr, name, kind).await.unwrap()
}

#[tokio::test]
async fn a_crisis_zone_is_published_replaced_and_removed_under_its_name_only() {
    let Some(named) = Named::start("publish", ZONE) else { return };
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    let outside = served(&dns, &named, &format!("www.{ZONE}"), RecordType::TXT).await;
    assert_eq!(outside, BTreeSet::from(["ne pas toucher".to_owned()]));

    assert!(dns.publish(CRISIS, &kit_records()).await.unwrap());
    let txt = served(&dns, &named, CRISIS, RecordType::TXT).await;
    assert_eq!(
        txt,
        BTreeSet::from(["MS=ms12345678".to_owned(), "v=spf1 include:spf.protection.outlook.com -all".to_owned()])
    );
    let mx = served(&dns, &named, CRISIS, RecordType::MX).await;
    assert_eq!(mx, BTreeSet::from(["0 aubagne-secours-amp-test.mail.protection.outlook.com.".to_owned()]));
    let srv = served(&dns, &named, &format!("_sip._tls.{CRISIS}"), RecordType::SRV).await;
    assert_eq!(srv, BTreeSet::from(["100 1 443 sipdir.online.lync.com.".to_owned()]));
    let dmarc = served(&dns, &named, &format!("_dmarc.{CRISIS}"), RecordType::TXT).await;
    assert_eq!(dmarc, BTreeSet::from(["v=DMARC1; p=quarantine".to_owned()]));

    // Published again with another verification text: the record set is replaced, not added to.
    let mut again = kit_records();
    again[0].value = "MS=ms87654321".into();
    assert!(dns.publish(CRISIS, &again[..1]).await.unwrap());
    let txt = served(&dns, &named, CRISIS, RecordType::TXT).await;
    assert_eq!(txt, BTreeSet::from(["MS=ms87654321".to_owned()]), "TXT replaced whole");
    assert_eq!(served(&dns, &named, CRISIS, RecordType::MX).await.len(), 1, "other types kept");

    // A text longer than one character-string (255 bytes) is split and read back whole.
    let long = format!("v=spf1 {}-all", "include:spf.exemple.test ".repeat(12));
    assert!(dns.publish(CRISIS, &[rec(CRISIS, "TXT", &long)]).await.unwrap());
    assert_eq!(served(&dns, &named, CRISIS, RecordType::TXT).await, BTreeSet::from([long]));

    // Hand-back: every name under the crisis is emptied; the rest of the zone is untouched.
    assert!(dns.remove(CRISIS, &[]).await.unwrap());
    for (name, kind) in [
        (CRISIS.to_owned(), RecordType::TXT),
        (CRISIS.to_owned(), RecordType::MX),
        (format!("autodiscover.{CRISIS}"), RecordType::CNAME),
        (format!("_sip._tls.{CRISIS}"), RecordType::SRV),
        (format!("_dmarc.{CRISIS}"), RecordType::TXT),
    ] {
        assert!(served(&dns, &named, &name, kind).await.is_empty(), "{name} {kind} still served");
    }
    assert_eq!(served(&dns, &named, &format!("www.{ZONE}"), RecordType::TXT).await, outside);
    assert_eq!(served(&dns, &named, ZONE, RecordType::TXT).await.len(), 1, "the apex is untouched");
}

#[tokio::test]
async fn what_the_server_refuses_is_named_and_not_retried_forever() {
    let Some(named) = Named::start("refusals", ZONE) else { return };

    // Another secret under the same key name: the server does not recognise the signature.
    let mut wrong = named.rfc2136();
    wrong.key = vec![7u8; 32];
    let e = Rfc2136Dns::new(wrong).unwrap().publish(CRISIS, &kit_records()).await.unwrap_err();
    assert!(matches!(&e, Error::DnsTsig(m) if m.contains("BADSIG") && m.contains("secret")), "{e}");
    assert!(!e.is_transient(), "a wrong key is not retried");
    // A key name the server does not know.
    let mut unknown = named.rfc2136();
    unknown.key_name = "inconnue".into();
    let e = Rfc2136Dns::new(unknown).unwrap().publish(CRISIS, &kit_records()).await.unwrap_err();
    assert!(matches!(&e, Error::DnsTsig(m) if m.contains("BADKEY") && m.contains("inconnue")), "{e}");
    // The right key, signed by a clock an hour off.
    let skewed = Rfc2136Dns::new(named.rfc2136()).unwrap().with_clock_skew(3600);
    let e = skewed.publish(CRISIS, &kit_records()).await.unwrap_err();
    assert!(matches!(&e, Error::DnsTsig(m) if m.contains("BADTIME") && m.contains("horloge")), "{e}");
    assert!(!e.is_transient());

    // A name the update-policy does not grant the key (the apex): the server refuses, and
    // that is not a key problem.
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    let e = dns.canary(ZONE, "apex").await.unwrap_err();
    assert!(matches!(&e, Error::DnsRefused(m) if m.contains("REFUSED") && m.contains("politique")), "{e}");
    // Names outside the crisis domain are refused before anything is sent.
    let e = dns.publish(CRISIS, &[rec(&format!("www.{ZONE}"), "TXT", "x")]).await.unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let e = dns.publish(ZONE, &[rec(ZONE, "TXT", "x")]).await.unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let e = dns.publish("aubagne.autre.test", &[rec("aubagne.autre.test", "TXT", "x")]).await.unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");

    // An unsigned update: refused by the server.
    let mut zone = Query::new();
    zone.set_name(Name::from_ascii(format!("{ZONE}.")).unwrap()).set_query_type(RecordType::SOA);
    let mut m = Message::new(4242, MessageType::Query, OpCode::Update);
    m.add_zone(zone);
    let name = Name::from_ascii(format!("unsigned.{CRISIS}.")).unwrap();
    let mut r = Record::from_rdata(name, 60, RData::TXT(TXT::new(vec!["x".into()])));
    r.dns_class = DNSClass::IN;
    m.add_update(r);
    let bytes = m.to_vec().unwrap();
    let mut s = tokio::net::TcpStream::connect(named.addr).await.unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).await.unwrap();
    let answer = <Message as hickory_proto::serialize::binary::BinDecodable>::from_bytes(&answer).unwrap();
    assert_eq!(answer.metadata.response_code, hickory_proto::op::ResponseCode::Refused);
    assert!(served(&dns, &named, &format!("unsigned.{CRISIS}"), RecordType::TXT).await.is_empty());

    // A server that does not answer: a transient error naming it (the step retries, then hands
    // the fragment to a person).
    let mut down = named.rfc2136();
    down.primary = Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
    let e = Rfc2136Dns::new(down).unwrap().publish(CRISIS, &kit_records()).await.unwrap_err();
    assert!(e.is_transient() && e.to_string().contains("injoignable"), "{e}");

    // An authoritative server that never gets the update: the wait ends, naming it.
    let mut lagging = named.rfc2136();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    lagging.servers = vec![named.addr, silent.local_addr().unwrap()];
    lagging.propagation_timeout = Duration::from_secs(1);
    let e = Rfc2136Dns::new(lagging).unwrap().publish(CRISIS, &kit_records()).await.unwrap_err();
    let text = e.to_string();
    assert!(e.is_transient() && text.contains(&silent.local_addr().unwrap().to_string()), "{text}");

    // A primary that is not authoritative for the configured zone: it says so, by name.
    let mut elsewhere = named.rfc2136();
    elsewhere.zone = "autre.test".into();
    let e = Rfc2136Dns::new(elsewhere).unwrap().canary("_repli-preflight.autre.test", "x").await.unwrap_err();
    assert!(
        matches!(&e, Error::DnsRefused(m) if m.contains("NOTAUTH") && m.contains("ne fait pas autorité") && m.contains("autre.test")),
        "{e}"
    );
    // Nor is it read as a server that serves nothing: its answers are refused.
    let e = Rfc2136Dns::new({
        let mut c = named.rfc2136();
        c.zone = "autre.test".into();
        c
    })
    .unwrap()
    .served(named.addr, "x.autre.test", RecordType::TXT)
    .await
    .unwrap_err();
    assert!(e.to_string().contains("REFUSED"), "{e}");

    // Without a list, the servers are found from the zone's NS records (port 53), with the
    // primary.
    let mut found = named.rfc2136();
    found.servers.clear();
    let servers = Rfc2136Dns::new(found).unwrap().authoritative_servers().await.unwrap();
    assert_eq!(servers, vec![named.addr, "127.0.0.1:53".parse().unwrap()]);

    // The canary: written, seen, removed.
    dns.canary(&format!("_repli-preflight.{CRISIS}"), "canari").await.unwrap();
    assert!(served(&dns, &named, &format!("_repli-preflight.{CRISIS}"), RecordType::TXT).await.is_empty());
}

/// Under the least-privilege policy (docs/DNS.md), the key can write only the types Repli
/// publishes, strictly below the apex, never at the zone's own names; the whole kit cycle
/// (publish, replace, remove, canary) passes under it (the other tests run under it too).
#[tokio::test]
async fn the_key_can_change_only_the_names_and_types_repli_owns() {
    let Some(named) = Named::start("policy", ZONE) else { return };
    // BIND refuses outside its update-policy with REFUSED.
    the_policy_holds(&named, hickory_proto::op::ResponseCode::Refused, "REFUSED").await;
}

/// The same under Knot DNS with the ACL docs/DNS.md gives for it: Knot 3.2 refuses outside its
/// ACL with NOTAUTH and a TSIG error BADKEY (as for an unknown key), which Repli, once a
/// harmless signed update proved the key known, reports as a policy refusal.
#[tokio::test]
async fn the_knot_acl_lets_the_key_change_only_the_names_and_types_repli_owns() {
    let Some(knot) = Named::knot("knot-policy", ZONE) else { return };
    the_policy_holds(&knot, hickory_proto::op::ResponseCode::NotAuth, "NOTAUTH").await;
    // Knot answers a key it does not know with the same NOTAUTH + BADKEY as an ACL denial;
    // that one is still a key problem.
    let stranger =
        Rfc2136Dns::new(repli_m365::Rfc2136Config { key_name: "inconnue".into(), ..knot.rfc2136() }).unwrap();
    let e = stranger.canary(&format!("_repli-preflight.{ZONE}"), "x").await.unwrap_err();
    assert!(matches!(&e, Error::DnsTsig(m) if m.contains("BADKEY")), "{e}");
}

async fn the_policy_holds(server: &Named, refusal: hickory_proto::op::ResponseCode, word: &str) {
    use hickory_proto::rr::rdata::{A, NS};
    let named = server;
    let name = |n: &str| Name::from_ascii(format!("{n}.")).unwrap();
    let add = |n: &str, data: RData| Record::from_rdata(name(n), 300, data);
    let txt = |t: &str| RData::TXT(TXT::new(vec![t.to_owned()]));
    let refused: [(&str, Record); 6] = [
        ("the métropole's www", add(&format!("www.{ZONE}"), txt("réécrit"))),
        ("an address at the NS glue", add(&format!("ns1.{ZONE}"), RData::A(A::new(192, 0, 2, 66)))),
        ("a delegation of the crisis domain", add(CRISIS, RData::NS(NS(name("ns.ailleurs.test"))))),
        ("an address under the crisis domain", add(&format!("www.{CRISIS}"), RData::A(A::new(192, 0, 2, 1)))),
        ("the apex", add(ZONE, txt("apex"))),
        ("the apex's NS set deleted", {
            let mut r = Record::update0(name(ZONE), 0, RecordType::NS);
            r.dns_class = DNSClass::ANY;
            r
        }),
    ];
    for (what, update) in refused {
        assert_eq!(person_updates(named, vec![update]).await, refusal, "{what}");
    }
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    assert_eq!(
        served(&dns, named, &format!("www.{ZONE}"), RecordType::TXT).await,
        BTreeSet::from(["ne pas toucher".to_owned()])
    );
    assert_eq!(
        served(&dns, named, &format!("ns1.{ZONE}"), RecordType::A).await,
        BTreeSet::from(["127.0.0.1".to_owned()])
    );
    // Through the adapter, the refusal is a policy refusal, not a key problem.
    let e = dns.canary(&format!("www.{ZONE}"), "x").await.unwrap_err();
    assert!(matches!(&e, Error::DnsRefused(m) if m.contains(word)), "{e}");

    // What Repli does passes: every record type it publishes, replaced, then removed.
    assert!(dns.publish(CRISIS, &kit_records()).await.unwrap());
    assert!(dns.publish(CRISIS, &kit_records()[..1]).await.unwrap());
    dns.canary(&format!("_repli-preflight.{ZONE}"), "canari").await.unwrap();
    assert!(dns.remove(CRISIS, &kit_records()).await.unwrap());
    for r in kit_records() {
        let kind = RecordType::from_str(&r.kind).unwrap();
        assert!(served(&dns, named, &r.name, kind).await.is_empty(), "{} {} left", r.name, r.kind);
    }
}

/// A whole activation and hand-back with the zone in `named`: published, verified, removed.
#[tokio::test]
async fn a_kit_publishes_its_zone_in_named_and_the_hand_back_removes_it() {
    let Some(named) = Named::start("kit", ZONE) else { return };
    let key_file = named.dir.path().join("tsig.key");
    std::fs::write(
        &key_file,
        format!("key \"{}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n", named.key_name, named.secret),
    )
    .unwrap();
    let app = TestApp::spawn_with(|c| use_named(c, &named, key_file)).await;
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.make_ready(&c.id).await;

    let txt = served(&dns, &named, CRISIS, RecordType::TXT).await;
    assert!(txt.iter().any(|t| t.starts_with("MS=")), "verification TXT: {txt:?}");
    assert!(txt.iter().any(|t| t.starts_with("v=spf1")), "SPF: {txt:?}");
    let mx = served(&dns, &named, CRISIS, RecordType::MX).await;
    assert_eq!(mx.len(), 1, "the real MX only, not Microsoft's verification MX: {mx:?}");
    assert!(mx.iter().all(|m| !m.contains("invalid")), "{mx:?}");
    let dmarc = served(&dns, &named, &format!("_dmarc.{CRISIS}"), RecordType::TXT).await;
    assert_eq!(dmarc, BTreeSet::from(["v=DMARC1; p=quarantine".to_owned()]));

    // `repli dns check`: every record as published, on the server.
    let check = app.ops.dns_check(c.id.as_str()).await.unwrap();
    assert!(check.checked && check.ok, "{check:#?}");
    assert_eq!(check.zone.as_deref(), Some(ZONE));
    assert!(check.records.iter().any(|r| r.name == format!("_dmarc.{CRISIS}")), "{check:#?}");
    let (_, token) = app.token(repli_core::Role::Ops, None).await;
    let out = tokio::process::Command::new(repli_tests::workspace_bin("repli"))
        .env("REPLI_SERVER", app.daemon.url())
        .env("REPLI_TOKEN", &token)
        .args(["dns", "check", c.id.as_str()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("chaque serveur sert exactement ce qui est attendu"), "{text}");
    assert!(text.contains(&format!("_sip._tls.{CRISIS}")), "Teams' SIP SRV, once: {text}");
    assert_eq!(app.dgs.dns_check(c.id.as_str()).await.unwrap_err().status().unwrap().as_u16(), 403);
    // The preflight writes its canary in the zone, sees it on the server, and removes it.
    let pre = app.ops.m365_preflight().await.unwrap();
    let canary = pre.report.checks.iter().find(|c| c.key == "dns").expect("a DNS check");
    assert_eq!(canary.status, repli_core::m365::CheckStatus::Ok, "{canary:?}");

    // Someone changes a record behind Repli's back: the check shows what differs, and where.
    let dmarc_name = format!("_dmarc.{CRISIS}");
    dns.publish(CRISIS, &[rec(&dmarc_name, "TXT", "v=DMARC1; p=none")]).await.unwrap();
    let changed = app.ops.dns_check(c.id.as_str()).await.unwrap();
    assert!(!changed.ok);
    let line = changed.records.iter().find(|r| r.name == dmarc_name).unwrap();
    assert!(!line.ok && line.served == ["v=DMARC1; p=none"] && line.expected == ["v=DMARC1; p=quarantine"], "{line:?}");
    assert_eq!(line.diff, DnsDiff::Different);
    // The same check on the crisis page's link, in French, for ops.
    let (cookie, _) = crate::web::session_of(&app, repli_core::Role::Ops, None, "ops.dns").await;
    let get = |path: String| {
        let cookie = cookie.clone();
        async move { crate::web::http().get(path).header("cookie", cookie).send().await.unwrap().text().await.unwrap() }
    };
    let crisis_page = get(app.url(&format!("/crises/{}", c.id))).await;
    assert!(crisis_page.contains(&format!("/crises/{}/dns", c.id)), "the crisis page links to the check");
    let page = get(app.url(&format!("/crises/{}/dns", c.id))).await;
    assert!(
        page.contains("Des écarts sont constatés") && page.contains("différent") && page.contains("p&#x3D;none"),
        "{page}"
    );
    assert!(changed.records.iter().filter(|r| r.name != dmarc_name).all(|r| r.ok), "{changed:#?}");

    // The service records removed behind Repli's back: each is named missing (the check looks
    // at the whole set the kit needs, not only what a step last wrote).
    let sip = format!("sip.{CRISIS}");
    remove_rrset(&named, &sip, RecordType::CNAME).await;
    remove_rrset(&named, CRISIS, RecordType::MX).await;
    let missing = app.ops.dns_check(c.id.as_str()).await.unwrap();
    assert!(!missing.ok && missing.expect == DnsExpectation::Present);
    for (name, kind) in [(sip.as_str(), "CNAME"), (CRISIS, "MX")] {
        let line = missing.records.iter().find(|r| r.name == name && r.kind == kind).expect("a line");
        assert_eq!(line.diff, DnsDiff::Missing, "{line:?}");
        assert!(!line.expected.is_empty() && line.served.is_empty());
    }
    // A record at a name Repli owns that no step published: extra.
    let extra = format!("msoid.{CRISIS}");
    dns.publish(CRISIS, &[rec(&extra, "TXT", "posé à la main")]).await.unwrap();
    let with_extra = app.ops.dns_check(c.id.as_str()).await.unwrap();
    let line = with_extra.records.iter().find(|r| r.name == extra && r.kind == "TXT").expect("the extra TXT");
    assert_eq!(line.diff, DnsDiff::Extra, "{line:?}");

    app.ops.act(&c.id, CrisisAction::Deliver, None).await.unwrap();
    assert_eq!(app.hand_back(&c.id).await.state, CrisisState::Closed);
    for kind in [RecordType::TXT, RecordType::MX] {
        assert!(served(&dns, &named, CRISIS, kind).await.is_empty(), "{kind} still served after the hand-back");
    }
    assert!(served(&dns, &named, &format!("_dmarc.{CRISIS}"), RecordType::TXT).await.is_empty());
    assert_eq!(served(&dns, &named, &format!("www.{ZONE}"), RecordType::TXT).await.len(), 1);
    // A clean hand-back: the crisis expects nothing, the servers serve nothing: the check passes.
    let after = app.ops.dns_check(c.id.as_str()).await.unwrap();
    assert_eq!(after.expect, DnsExpectation::Absent);
    assert!(after.ok && after.records.is_empty(), "{after:#?}");
    assert!(after.servers.iter().all(|s| s.serial.is_some() && !s.lagging), "{after:#?}");
    let out = tokio::process::Command::new(repli_tests::workspace_bin("repli"))
        .env("REPLI_SERVER", app.daemon.url())
        .env("REPLI_TOKEN", &token)
        .args(["dns", "check", c.id.as_str()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // A record left (or put back) under the closed crisis's domain: the check fails, naming it.
    dns.publish(CRISIS, &[rec(&format!("autodiscover.{CRISIS}"), "CNAME", "autodiscover.outlook.com.")]).await.unwrap();
    let left = app.ops.dns_check(c.id.as_str()).await.unwrap();
    assert!(!left.ok, "{left:#?}");
    let line = left.records.iter().find(|r| r.name == format!("autodiscover.{CRISIS}")).expect("the leftover");
    assert!(line.diff == DnsDiff::Extra && line.expected.is_empty(), "{line:?}");
    let out = tokio::process::Command::new(repli_tests::workspace_bin("repli"))
        .env("REPLI_SERVER", app.daemon.url())
        .env("REPLI_TOKEN", &token)
        .args(["dns", "check", c.id.as_str()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("EN TROP"), "{text}");
}

#[allow(clippy::disallowed_methods)] // TSIG signs with the wall clock the server checks
/// Sends `updates` signed with the test's key, as a person editing the zone would; returns
/// the server's answer code.
async fn person_updates(named: &Named, updates: Vec<Record>) -> hickory_proto::op::ResponseCode {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.decode(&named.secret).unwrap();
    let signer = hickory_proto::rr::TSigner::new(
        key,
        hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
        Name::from_ascii(format!("{}.", named.key_name)).unwrap(),
        300,
    )
    .unwrap();
    let mut zone = Query::new();
    zone.set_name(Name::from_ascii(format!("{}.", named.zone)).unwrap()).set_query_type(RecordType::SOA);
    let mut m = Message::new(4343, MessageType::Query, OpCode::Update);
    m.add_zone(zone);
    for u in updates {
        m.add_update(u);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    m.finalize(&signer, now).unwrap();
    let bytes = m.to_vec().unwrap();
    let mut s = tokio::net::TcpStream::connect(named.addr).await.unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).await.unwrap();
    <Message as hickory_proto::serialize::binary::BinDecodable>::from_bytes(&answer).unwrap().metadata.response_code
}

/// Deletes one record set with the test's key, as a person editing the zone would.
async fn remove_rrset(named: &Named, name: &str, kind: RecordType) {
    let mut r = Record::update0(Name::from_ascii(format!("{name}.")).unwrap(), 0, kind);
    r.dns_class = DNSClass::ANY;
    assert_eq!(person_updates(named, vec![r]).await, hickory_proto::op::ResponseCode::NoError);
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    assert!(served(&dns, named, name, kind).await.is_empty());
}

const DNS_ONLY: &str = r#"version = 1
name = "activation"

[[step]]
id = "reserve"
kind = "inventory.reserve"

[[step]]
id = "domain"
kind = "m365.domain"

[[step]]
id = "dns"
kind = "dns.publish"
needs = ["domain"]
attempts = ATTEMPTS

[[step]]
id = "ready"
kind = "crisis.ready"
needs = ["dns", "reserve"]
"#;

async fn kit_with(
    named: &Named,
    attempts: u32,
    adjust: impl FnOnce(&mut replid::config::Config),
) -> (TestApp, tempfile::TempDir) {
    let books = tempfile::tempdir().unwrap();
    std::fs::write(books.path().join("activation.toml"), DNS_ONLY.replace("ATTEMPTS", &attempts.to_string())).unwrap();
    let handback = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../playbooks/handback.toml")).unwrap();
    std::fs::write(books.path().join("handback.toml"), handback).unwrap();
    let key_file = named.dir.path().join("bare.key");
    std::fs::write(&key_file, format!("{}\n", named.secret)).unwrap();
    let path = books.path().to_owned();
    let app = TestApp::spawn_with(move |c| {
        use_named(c, named, key_file);
        c.engine.playbooks_dir = Some(path);
        c.dns.propagation_timeout_seconds = 5;
        adjust(c);
    })
    .await;
    (app, books)
}

/// The step's side of the bad cases: a wrong key fails it for good on its first attempt, with
/// the server's answer in French; an unreachable primary, on the last attempt, hands the
/// fragment to a person with the reason.
#[tokio::test]
async fn the_publication_step_fails_for_good_on_a_wrong_key_and_falls_back_to_ops_when_unreachable() {
    let Some(named) = Named::start("step", ZONE) else { return };

    let wrong = named.dir.path().join("wrong.key");
    std::fs::write(&wrong, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMDE=\n").unwrap();
    let (app, _books) = kit_with(&named, 3, |c| c.dns.key_file = Some(wrong)).await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.ops.act(&c.id, CrisisAction::Activate, None).await.unwrap();
    let v = app
        .wait_steps(&c.id, "the DNS step to fail", |v| {
            repli_tests::step_state(v, "activation", "dns") == Some(repli_core::StepState::Failed)
        })
        .await;
    let step = v.runs[0].steps.iter().find(|s| s.step == "dns").unwrap();
    assert_eq!(step.attempts, 1, "not retried: {step:?}");
    let error = step.last_error.as_deref().unwrap();
    assert!(error.starts_with("DNS : ") && error.contains("BADSIG"), "{error}");
    // The preflight says so before any activation.
    let pre = app.ops.m365_preflight().await.unwrap();
    let canary = pre.report.checks.iter().find(|c| c.key == "dns").expect("a DNS check");
    assert_eq!(canary.status, repli_core::m365::CheckStatus::Fail, "{canary:?}");
    assert!(canary.detail.contains("BADSIG") && canary.fix.is_some(), "{canary:?}");
    assert!(!pre.report.ok);
    drop(app);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (app, _books) = kit_with(&named, 1, |c| {
        c.dns.primary = Some(closed);
        c.dns.retry_budget_minutes = 0; // a person at once
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.ops.act(&c.id, CrisisAction::Activate, None).await.unwrap();
    app.wait_steps(&c.id, "the DNS task", |v| {
        repli_tests::step_state(v, "activation", "dns") == Some(repli_core::StepState::WaitingManual)
    })
    .await;
    let tasks = app.ops.tasks().await.unwrap();
    let task = tasks.iter().find(|t| t.step == "dns").unwrap();
    let text = task.instructions.as_deref().unwrap();
    assert!(text.contains("La publication automatique a échoué") && text.contains("injoignable"), "{text}");
    assert!(text.contains(&format!("$ORIGIN {CRISIS}.")) && text.contains("IN TXT \"MS=ms"), "{text}");
}

/// A publication a person did (the primary was down, the step became a manual task) is
/// checked like one Repli made: the same expected records, missing once someone removes them.
#[tokio::test]
async fn a_publication_confirmed_by_a_person_is_checked_against_the_servers() {
    let Some(named) = Named::start("manual", ZONE) else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (app, _books) = kit_with(&named, 1, |c| {
        c.dns.primary = Some(closed);
        c.dns.retry_budget_minutes = 0; // a person at once
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.ops.act(&c.id, CrisisAction::Activate, None).await.unwrap();
    app.wait_steps(&c.id, "the DNS task", |v| {
        repli_tests::step_state(v, "activation", "dns") == Some(repli_core::StepState::WaitingManual)
    })
    .await;
    let tasks = app.ops.tasks().await.unwrap();
    let text = tasks.iter().find(|t| t.step == "dns").and_then(|t| t.instructions.clone()).unwrap();
    let txt = text.split("IN TXT \"").nth(1).and_then(|r| r.split('"').next()).expect("the TXT in the fragment");

    // Confirmed before the servers serve it: refused, saying what is missing; nothing recorded.
    let e = app.ops.task_done(c.id.as_str(), "dns", Some("fait")).await.unwrap_err();
    let problem = e.problem().expect("a problem document");
    assert_eq!((e.status().unwrap().as_u16(), problem.code.as_str()), (409, "step_conflict"), "{e}");
    assert!(problem.detail.contains(&format!("{CRISIS} TXT : rien")) && problem.detail.contains(txt), "{e}");
    assert_eq!(
        repli_tests::step_state(&app.ops.steps(c.id.as_str()).await.unwrap(), "activation", "dns"),
        Some(repli_core::StepState::WaitingManual)
    );

    // Another value than the one handed: refused too, showing what is served.
    let wrong = Record::from_rdata(
        Name::from_ascii(format!("{CRISIS}.")).unwrap(),
        300,
        RData::TXT(TXT::new(vec!["MS=faux".to_owned()])),
    );
    assert_eq!(person_updates(&named, vec![wrong]).await, hickory_proto::op::ResponseCode::NoError);
    let e = app.ops.task_done(c.id.as_str(), "dns", None).await.unwrap_err();
    assert!(e.problem().is_some_and(|p| p.detail.contains("MS=faux")), "{e}");

    // The person publishes the fragment (with their own access to the zone), then confirms.
    remove_rrset(&named, CRISIS, RecordType::TXT).await;
    let record = Record::from_rdata(
        Name::from_ascii(format!("{CRISIS}.")).unwrap(),
        300,
        RData::TXT(TXT::new(vec![txt.to_owned()])),
    );
    assert_eq!(person_updates(&named, vec![record]).await, hickory_proto::op::ResponseCode::NoError);
    app.ops.task_done(c.id.as_str(), "dns", Some("publié au registre")).await.unwrap();
    let check = app.ops.dns_check(c.id.as_str()).await.unwrap();
    assert!(check.ok && check.expect == DnsExpectation::Present, "{check:#?}");
    let line = check.records.iter().find(|r| r.name == CRISIS && r.kind == "TXT").expect("the TXT line");
    assert!(line.diff == DnsDiff::Same && line.expected == [txt.to_owned()], "{line:?}");

    // Someone removes it later: the check names it missing, though no step of Repli wrote it.
    remove_rrset(&named, CRISIS, RecordType::TXT).await;
    let check = app.ops.dns_check(c.id.as_str()).await.unwrap();
    let line = check.records.iter().find(|r| r.name == CRISIS && r.kind == "TXT").expect("the TXT line");
    assert!(!check.ok && line.diff == DnsDiff::Missing, "{check:#?}");

    // The hand-back's removal handed to a person (the primary is still down), confirmed while
    // a record is still served: refused; confirmed with a reason to pass over it: recorded,
    // with the reason and what was served, in the audit entry.
    let leftover = format!("autodiscover.{CRISIS}");
    let cname = Record::from_rdata(
        Name::from_ascii(format!("{leftover}.")).unwrap(),
        300,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(Name::from_ascii("autodiscover.outlook.com.").unwrap())),
    );
    assert_eq!(person_updates(&named, vec![cname]).await, hickory_proto::op::ResponseCode::NoError);
    app.wait_steps(&c.id, "the kit ready", |v| {
        repli_tests::step_state(v, "activation", "ready") == Some(repli_core::StepState::Succeeded)
    })
    .await;
    app.ops.act(&c.id, CrisisAction::Deliver, None).await.unwrap();
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("fin de crise")).await.unwrap();
    // Every other task of the hand-back confirmed, until the removal waits for a person.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        for task in app.ops.tasks().await.unwrap().into_iter().filter(|t| t.crisis == c.id && t.step != "dns-remove") {
            app.ops.task_done(c.id.as_str(), &task.step, None).await.unwrap();
        }
        let v = app.ops.steps(c.id.as_str()).await.unwrap();
        if repli_tests::step_state(&v, "handback", "dns-remove") == Some(repli_core::StepState::WaitingManual) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the removal never reached a person: {v:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = app.ops.task_done(c.id.as_str(), "dns-remove", None).await.unwrap_err();
    assert!(e.problem().is_some_and(|p| p.detail.contains(&leftover)), "{e}");
    app.ops
        .task_done_unchecked(c.id.as_str(), "dns-remove", None, Some("hébergeur en panne, retrait demandé par ticket"))
        .await
        .unwrap();
    let log = app
        .auditor
        .audit_entries_all(&repli_proto::api::AuditQuery {
            crisis: Some(c.id.to_string()),
            action: Some("engine.task.done".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let entry = log.iter().find(|e| e.target.contains("dns-remove")).expect("the confirmation's entry");
    assert!(
        entry.details.contains("dns_unchecked")
            && entry.details.contains("ticket")
            && entry.details.contains(&leftover),
        "{entry:?}"
    );
}

/// A primary that does not answer at first, then comes back: a port nothing listens on, where
/// a TCP forwarder to `named` starts after `delay` (updates go over TCP).
fn primary_back_after(named: &Named, delay: Duration) -> std::net::SocketAddr {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    forward_after(addr, named.addr, delay);
    addr
}

/// A TCP forwarder from `addr` to `target`, listening from `delay` on.
fn forward_after(addr: std::net::SocketAddr, target: std::net::SocketAddr, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
}

/// A DNS step already handed to a person (budget spent) goes back to the engine when ops
/// retry it once the server is back: published by Repli, no confirmation needed.
#[tokio::test]
async fn a_dns_task_handed_to_a_person_can_go_back_to_the_engine_once_the_server_is_back() {
    let Some(named) = Named::start("retry-task", ZONE) else { return };
    let primary = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (app, _books) = kit_with(&named, 1, |c| {
        c.dns.primary = Some(primary);
        c.dns.retry_budget_minutes = 0;
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.ops.act(&c.id, CrisisAction::Activate, None).await.unwrap();
    app.wait_steps(&c.id, "the DNS task", |v| {
        repli_tests::step_state(v, "activation", "dns") == Some(repli_core::StepState::WaitingManual)
    })
    .await;
    forward_after(primary, named.addr, Duration::ZERO);
    app.ops.step_action(c.id.as_str(), "dns", "retry", "serveur primaire revenu").await.unwrap();
    app.wait_steps(&c.id, "the DNS step published by Repli", |v| {
        repli_tests::step_state(v, "activation", "dns") == Some(repli_core::StepState::Succeeded)
    })
    .await;
    let v = app.ops.steps(c.id.as_str()).await.unwrap();
    let step = v.runs[0].steps.iter().find(|s| s.step == "dns").unwrap();
    assert!(step.confirmed_by.is_none(), "done by Repli, not confirmed by a person: {step:?}");
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    assert!(served(&dns, &named, CRISIS, RecordType::TXT).await.iter().any(|t| t.starts_with("MS=")));
}

/// The primary down when the step first runs, back a few seconds later: the step retries with
/// backoff within `[dns] retry_budget_minutes` (not its one attempt) and publishes by itself,
/// with no task for a person.
#[tokio::test]
async fn a_primary_back_within_the_retry_budget_gets_the_update_without_a_person() {
    let Some(named) = Named::start("back", ZONE) else { return };
    let primary = primary_back_after(&named, Duration::from_secs(5));
    let (app, _books) = kit_with(&named, 1, |c| {
        c.dns.primary = Some(primary);
        c.dns.retry_budget_minutes = 5;
    })
    .await;
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.ops.act(&c.id, CrisisAction::Activate, None).await.unwrap();
    let v = app
        .wait_steps(&c.id, "the DNS step to retry", |v| {
            v.runs[0].steps.iter().any(|s| s.step == "dns" && s.attempts >= 2)
                || repli_tests::step_state(v, "activation", "dns") == Some(repli_core::StepState::Succeeded)
        })
        .await;
    let step = v.runs[0].steps.iter().find(|s| s.step == "dns").unwrap();
    assert_ne!(step.state, repli_core::StepState::WaitingManual, "{step:?}");
    let v = app
        .wait_steps(&c.id, "the DNS step to succeed once the primary is back", |v| {
            repli_tests::step_state(v, "activation", "dns") == Some(repli_core::StepState::Succeeded)
        })
        .await;
    let step = v.runs[0].steps.iter().find(|s| s.step == "dns").unwrap();
    assert!(step.attempts >= 2, "retried beyond its one attempt: {step:?}");
    assert!(app.ops.tasks().await.unwrap().iter().all(|t| t.step != "dns"), "no task for a person");
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    assert!(served(&dns, &named, CRISIS, RecordType::TXT).await.iter().any(|t| t.starts_with("MS=")));
}

/// A preflight with an authoritative server that never answers ends within its own time (well
/// inside the client's 60 s, though propagation may take 300 s), fails naming that server,
/// and leaves no canary in the zone.
#[tokio::test]
async fn the_preflight_ends_in_its_own_time_when_a_server_never_answers() {
    let Some(named) = Named::start("preflight", ZONE) else { return };
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let key_file = named.dir.path().join("k.key");
    std::fs::write(&key_file, format!("{}\n", named.secret)).unwrap();
    let app = TestApp::spawn_with(|c| {
        use_named(c, &named, key_file);
        c.dns.servers = vec![named.addr, silent_addr];
        c.dns.propagation_timeout_seconds = 300;
    })
    .await;
    // The client gives up after 60 s: an answer at all is the preflight ending in its own time.
    let pre = app.ops.m365_preflight().await.expect("answered within the client's timeout");
    let check = pre.report.checks.iter().find(|c| c.key == "dns").expect("a DNS check");
    assert_eq!(check.status, repli_core::m365::CheckStatus::Fail, "{check:?}");
    assert!(check.detail.contains(&silent_addr.to_string()), "{check:?}");
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    assert!(served(&dns, &named, &format!("_repli-preflight.{ZONE}"), RecordType::TXT).await.is_empty());
    drop(silent);
}

/// No `[dns] primary`: the zone's SOA names it (MNAME `ns1`, whose glue is 127.0.0.1, at the
/// configured server's port); updates, the check and the preflight work on what was found.
/// A server that does not serve the zone gives a one-line reason naming the setting to add.
#[tokio::test]
async fn without_a_configured_primary_the_zone_soa_names_it() {
    let Some(named) = Named::start("soa-primary", ZONE) else { return };
    let found = Rfc2136Dns::new(repli_m365::Rfc2136Config { primary: None, ..named.rfc2136() }).unwrap();
    assert_eq!(found.primary().await.unwrap(), named.addr);
    assert!(found.publish(CRISIS, &kit_records()[..1]).await.unwrap());
    assert_eq!(served(&found, &named, CRISIS, RecordType::TXT).await, BTreeSet::from(["MS=ms12345678".to_owned()]));
    assert!(found.remove(CRISIS, &[]).await.unwrap());

    // Asked of a server that answers without authority for the zone: not found, and said so.
    let other = Named::start("soa-other", "autre-zone.test").expect("named started once already");
    let lost =
        Rfc2136Dns::new(repli_m365::Rfc2136Config { primary: None, servers: vec![other.addr], ..named.rfc2136() })
            .unwrap();
    let err = lost.publish(CRISIS, &kit_records()[..1]).await.unwrap_err().to_string();
    assert!(err.contains("introuvable") && err.contains("[dns] primary"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(served(&found, &named, CRISIS, RecordType::TXT).await.is_empty(), "nothing published");
    // The check looks at that server and says it does not serve the zone: never "all agree".
    let surveys = lost.observe(&[CRISIS.to_owned()]).await.unwrap();
    assert_eq!(surveys.len(), 1, "{surveys:?}");
    assert!(surveys[0].serial.as_ref().is_err_and(|e| e.contains("REFUSED")), "{surveys:?}");
    // No server and no primary configured, and no resolver knows the zone (`.test` is reserved):
    // one failing survey naming the primary that could not be found, not an empty "all agree".
    let nowhere =
        Rfc2136Dns::new(repli_m365::Rfc2136Config { primary: None, servers: Vec::new(), ..named.rfc2136() }).unwrap();
    let surveys = nowhere.observe(&[CRISIS.to_owned()]).await.unwrap();
    assert_eq!(surveys.len(), 1, "{surveys:?}");
    assert_eq!(surveys[0].server, format!("primaire de la zone {ZONE}"));
    assert!(surveys[0].serial.as_ref().is_err_and(|e| e.contains("introuvable")), "{surveys:?}");

    // replid started without a primary: its preflight's canary goes through the found one.
    let key_file = named.dir.path().join("k.key");
    std::fs::write(&key_file, format!("{}\n", named.secret)).unwrap();
    let app = TestApp::spawn_with(|c| {
        use_named(c, &named, key_file);
        c.dns.primary = None;
    })
    .await;
    let pre = app.ops.m365_preflight().await.unwrap();
    let check = pre.report.checks.iter().find(|c| c.key == "dns").expect("a DNS check");
    assert_eq!(check.status, repli_core::m365::CheckStatus::Ok, "{check:?}");
}

/// `replid demo --dns-primary …`: a whole crisis whose zone goes through a local `named`, and
/// is gone from it once the crisis is closed.
#[tokio::test]
async fn the_demo_publishes_its_zone_in_a_local_named() {
    let Some(named) = Named::start("demo", ZONE) else { return };
    let key_file = named.dir.path().join("demo.key");
    std::fs::write(&key_file, format!("{}\n", named.secret)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = replid::demo::DemoArgs {
        agents: 3,
        json: true,
        dns_primary: Some(named.addr),
        dns_zone: Some(ZONE.into()),
        dns_key_name: Some(named.key_name.clone()),
        dns_key_file: Some(key_file),
        ..replid::demo::DemoArgs::in_dir(dir.path())
    };
    let summary = replid::demo::run(&args).await.unwrap();
    assert!(summary.sla_met && summary.audit_verified, "{summary:?}");
    // The server applied Repli's updates (its journal), and the closed crisis left nothing.
    assert!(named.dir.path().join("zone.db.jnl").exists(), "no update reached named: {}", named.log());
    let dns = Rfc2136Dns::new(named.rfc2136()).unwrap();
    for kind in [RecordType::TXT, RecordType::MX] {
        assert!(served(&dns, &named, CRISIS, kind).await.is_empty());
    }
    assert_eq!(served(&dns, &named, &format!("www.{ZONE}"), RecordType::TXT).await.len(), 1);
}
