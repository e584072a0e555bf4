//! The crisis zone as the authoritative servers serve it (`repli dns check`), against the
//! whole record set the crisis's state expects: the kit's records while it lives (whether
//! Repli published them or a person confirmed doing it), nothing once the hand-back removed
//! them. Every name Repli owns under the crisis domain is looked at, so a record left behind,
//! added or missing shows, and each server's SOA serial, so a lagging server is named.

use std::collections::{BTreeMap, BTreeSet};

use repli_core::m365::{DnsRecord, ServerSurvey, ZonePolicy, crisis_names, kit_records};
use repli_core::playbook::StepKind;
use repli_core::run::{PlaybookName, StepOutput, StepRecord};
use repli_core::{Actor, CrisisState, StepState};
use repli_proto::api::{DnsCheckView, DnsDiff, DnsExpectation, DnsRecordCheck, DnsServerCheck};

use crate::{AppError, Services, crises};

/// Expected record sets by (name, type): name lower-case without its final dot, type upper-case.
pub type ZoneSets = BTreeMap<(String, String), BTreeSet<String>>;

/// A value as servers spell it: host names lower-case with their final dot; TXT as is.
fn spelled(kind: &str, value: &str) -> String {
    if kind.eq_ignore_ascii_case("TXT") {
        return value.to_owned();
    }
    let mut v = value.trim().to_ascii_lowercase();
    if !v.ends_with('.') {
        v.push('.');
    }
    v
}

fn key(r: &DnsRecord) -> (String, String) {
    (r.name.trim_end_matches('.').to_ascii_lowercase(), r.kind.to_ascii_uppercase())
}

/// What the crisis's zone should hold now, from its state and its runs' steps.
///
/// While the kit lives: each `dns.publish` step of the last activation that succeeded, in the
/// order they finished, replaces the record sets it covers: what Repli published (its output),
/// or, when a person confirmed it, what the step would have published from the outputs of the
/// steps finished before it. Once the hand-back's `dns.remove` succeeded (by Repli or a
/// person), or the crisis ended: nothing.
pub fn expected_zone(
    state: CrisisState,
    domain: Option<&str>,
    activation: &[StepRecord],
    handback: &[StepRecord],
    policy: &ZonePolicy,
) -> (DnsExpectation, ZoneSets) {
    let Some(domain) = domain else { return (DnsExpectation::Nothing, ZoneSets::new()) };
    let removed = handback.iter().any(|s| s.kind == StepKind::DnsRemove && s.state == StepState::Succeeded);
    if removed || matches!(state, CrisisState::Closed | CrisisState::Cancelled | CrisisState::Rejected) {
        return (DnsExpectation::Absent, ZoneSets::new());
    }
    let done = |s: &&StepRecord| s.state == StepState::Succeeded;
    let mut publications: Vec<&StepRecord> =
        activation.iter().filter(done).filter(|s| s.kind == StepKind::DnsPublish).collect();
    publications.sort_by_key(|s| (s.finished_at, s.position));
    let mut sets = ZoneSets::new();
    for step in publications {
        let records = match &step.output {
            Some(StepOutput::Published(p)) => p.records.clone(),
            _ => handed_records(activation, step, domain, policy),
        };
        let mut replaced: ZoneSets = ZoneSets::new();
        for r in &records {
            replaced.entry(key(r)).or_default().insert(spelled(&r.kind, &r.value));
        }
        sets.extend(replaced);
    }
    (DnsExpectation::Present, sets)
}

/// The records a `dns.publish` step hands a person (or publishes): what it computes from the
/// outputs of the steps it needs (directly or not), which had all finished before it ran.
pub fn handed_records(steps: &[StepRecord], step: &StepRecord, domain: &str, policy: &ZonePolicy) -> Vec<DnsRecord> {
    let before = upstream(steps, step);
    let output = |kind: StepKind| {
        steps
            .iter()
            .filter(|s| s.state == StepState::Succeeded && before.contains(s.step_id.as_str()) && s.kind == kind)
            .find_map(|s| s.output.as_ref())
    };
    let verification = match output(StepKind::M365Domain) {
        Some(StepOutput::Domain(d)) => d.records.as_slice(),
        _ => &[],
    };
    let services = match output(StepKind::M365Services) {
        Some(StepOutput::Services(s)) => Some(s.records.as_slice()),
        _ => None,
    };
    kit_records(domain, verification, services, policy)
}

/// Before a person's confirmation of a DNS step is recorded: what the servers serve against
/// what the step was to do (its records published; nothing left at the names Repli owns).
/// `None` when the adapter cannot look (manual or simulated publication); otherwise each
/// difference in French, empty when every server agrees.
pub async fn confirmation_differences(
    st: &Services,
    r: &repli_store::CrisisRecord,
    steps: &[StepRecord],
    step: &StepRecord,
) -> Result<Option<Vec<String>>, AppError> {
    let domain = steps.iter().find_map(|s| match &s.output {
        Some(StepOutput::Domain(d)) => Some(d.domain.to_ascii_lowercase()),
        _ => None,
    });
    // The hand-back's run holds no domain output: the crisis's activation does.
    let domain = match domain {
        Some(d) => d,
        None => {
            let mut found = None;
            for run in st.store.runs_of(&r.id).await? {
                if run.playbook == PlaybookName::Activation {
                    found = st.store.steps(run.id).await?.iter().find_map(|s| match &s.output {
                        Some(StepOutput::Domain(d)) => Some(d.domain.to_ascii_lowercase()),
                        _ => None,
                    });
                }
            }
            match found {
                Some(d) => d,
                None => return Ok(None),
            }
        }
    };
    let mut expected = ZoneSets::new();
    let mut names: BTreeSet<String> = crisis_names(&domain).into_iter().map(|n| n.to_ascii_lowercase()).collect();
    if step.kind == StepKind::DnsPublish {
        for rec in handed_records(steps, step, &domain, &crate::engine::zone_policy(&st.config)) {
            names.insert(key(&rec).0);
            expected.entry(key(&rec)).or_default().insert(spelled(&rec.kind, &rec.value));
        }
    }
    let names: Vec<String> = names.into_iter().collect();
    let surveys = st.target(r).1.observe(&names).await.map_err(|e| AppError::Internal(format!("DNS : {e}")))?;
    if surveys.is_empty() {
        return Ok(None);
    }
    let expect = if step.kind == StepKind::DnsPublish { DnsExpectation::Present } else { DnsExpectation::Absent };
    let (servers, lines) = compare(expect, &expected, surveys);
    let mut out: Vec<String> =
        servers.iter().filter_map(|s| s.error.as_ref().map(|e| format!("{} ne répond pas ({e})", s.server))).collect();
    for l in lines.iter().filter(|l| !l.ok) {
        // Publishing judges the record sets it writes; removing judges every name Repli owns.
        if step.kind == StepKind::DnsPublish && !expected.contains_key(&(l.name.clone(), l.kind.clone())) {
            continue;
        }
        let served = if l.served.is_empty() { "rien".to_owned() } else { l.served.join(", ") };
        let expected = if l.expected.is_empty() { "rien".to_owned() } else { l.expected.join(", ") };
        out.push(format!("{} sert pour {} {} : {served} (attendu : {expected})", l.server, l.name, l.kind));
    }
    Ok(Some(out))
}

/// The steps `step` needs, directly or through others.
fn upstream<'a>(steps: &'a [StepRecord], step: &'a StepRecord) -> BTreeSet<&'a str> {
    let by_id: BTreeMap<&str, &StepRecord> = steps.iter().map(|s| (s.step_id.as_str(), s)).collect();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = step.needs.iter().map(String::as_str).collect();
    while let Some(id) = todo.pop() {
        if seen.insert(id)
            && let Some(s) = by_id.get(id)
        {
            todo.extend(s.needs.iter().map(String::as_str));
        }
    }
    seen
}

/// `a` is after `b` in serial number arithmetic (RFC 1982).
fn serial_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

/// The DKIM selectors' CNAMEs: published by a person (the `dkim` manual step) with values
/// Exchange Online chooses, so any value is accepted while the kit lives; after the
/// hand-back they must be gone like everything else.
fn dkim_selector(name: &str, kind: &str) -> bool {
    kind == "CNAME" && (name.starts_with("selector1._domainkey.") || name.starts_with("selector2._domainkey."))
}

/// Each server and each name and type, against `expected`; `expect` says whether the kit's
/// records are expected (then the DKIM selectors may hold any CNAME).
pub fn compare(
    expect: DnsExpectation,
    expected: &ZoneSets,
    surveys: Vec<ServerSurvey>,
) -> (Vec<DnsServerCheck>, Vec<DnsRecordCheck>) {
    let newest = surveys
        .iter()
        .filter_map(|s| s.serial.as_ref().ok().copied())
        .reduce(|a, b| if serial_after(b, a) { b } else { a });
    let mut servers = Vec::new();
    let mut lines = Vec::new();
    for s in surveys {
        let (serial, error) = match s.serial {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        let lagging = matches!((serial, newest), (Some(v), Some(n)) if serial_after(n, v));
        servers.push(DnsServerCheck { server: s.server.clone(), serial, error, lagging });
        for o in s.records {
            let k = (o.name.trim_end_matches('.').to_ascii_lowercase(), o.kind.to_ascii_uppercase());
            let mut want = expected.get(&k).cloned().unwrap_or_default();
            let (served, error, diff) = match o.served {
                Err(e) => (BTreeSet::new(), Some(e), DnsDiff::Unreadable),
                Ok(v) => {
                    let served: BTreeSet<String> = v.iter().map(|x| spelled(&k.1, x)).collect();
                    if expect == DnsExpectation::Present && dkim_selector(&k.0, &k.1) && want.is_empty() {
                        want.clone_from(&served);
                    }
                    let diff = if served == want {
                        DnsDiff::Same
                    } else if want.is_empty() {
                        DnsDiff::Extra
                    } else if served.is_empty() {
                        DnsDiff::Missing
                    } else {
                        DnsDiff::Different
                    };
                    (served, None, diff)
                }
            };
            if diff == DnsDiff::Same && want.is_empty() {
                continue; // nothing expected, nothing served: not worth a line
            }
            lines.push(DnsRecordCheck {
                ok: diff == DnsDiff::Same,
                server: o.server,
                name: k.0,
                kind: k.1,
                expected: want.into_iter().collect(),
                served: served.into_iter().collect(),
                error,
                diff,
            });
        }
    }
    (servers, lines)
}

/// What each authoritative server serves at every name Repli owns under the crisis domain,
/// against what the crisis's state expects.
pub async fn check(st: &Services, a: &Actor, id: &str) -> Result<DnsCheckView, AppError> {
    let r = crises::visible_crisis(st, a, id).await?;
    let mut activation: Vec<StepRecord> = Vec::new();
    let mut handback: Vec<StepRecord> = Vec::new();
    let mut owned: BTreeSet<String> = BTreeSet::new();
    for run in st.store.runs_of(&r.id).await? {
        let steps = st.store.steps(run.id).await?;
        for s in &steps {
            if let Some(StepOutput::Published(p)) = &s.output {
                owned.extend(p.records.iter().map(|r| key(r).0));
            }
        }
        match run.playbook {
            PlaybookName::Activation => activation = steps,
            PlaybookName::Handback => handback = steps,
        }
    }
    let domain = activation.iter().find_map(|s| match &s.output {
        Some(StepOutput::Domain(d)) => Some(d.domain.to_ascii_lowercase()),
        _ => None,
    });
    let policy = crate::engine::zone_policy(&st.config);
    let (expect, expected) = expected_zone(r.state, domain.as_deref(), &activation, &handback, &policy);
    let dns = st.target(&r).1;
    let zone = dns.zone().map(str::to_owned);
    let Some(domain) = domain else {
        return Ok(DnsCheckView {
            domain: String::new(),
            zone,
            checked: false,
            expect,
            ok: false,
            servers: Vec::new(),
            records: Vec::new(),
        });
    };
    owned.extend(crisis_names(&domain).into_iter().map(|n| n.to_ascii_lowercase()));
    owned.extend(expected.keys().map(|(n, _)| n.clone()));
    let names: Vec<String> = owned.into_iter().collect();
    let surveys = dns.observe(&names).await.map_err(|e| AppError::Internal(format!("DNS : {e}")))?;
    let checked = !surveys.is_empty();
    let (servers, records) = compare(expect, &expected, surveys);
    let ok = checked && servers.iter().all(|s| s.error.is_none() && !s.lagging) && records.iter().all(|c| c.ok);
    Ok(DnsCheckView { domain, zone, checked, expect, ok, servers, records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use repli_core::m365::Observed;
    use repli_core::run::{DomainCreated, Published, ServiceRecords};

    const D: &str = "aubagne.secours-amp.test";

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

    fn step(position: i64, kind: StepKind, state: StepState, at: i64, output: Option<StepOutput>) -> StepRecord {
        StepRecord {
            run_id: 1,
            step_id: format!("s{position}"),
            position,
            kind,
            title: String::new(),
            // Each step needs the one before it.
            needs: (position > 1).then(|| format!("s{}", position - 1)).into_iter().collect(),
            params: serde_json::Value::Null,
            instructions: None,
            checklist: Vec::new(),
            estimate_secs: 0,
            budget_secs: 0,
            max_attempts: 1,
            state,
            attempts: 1,
            not_before: None,
            first_started_at: None,
            started_at: None,
            finished_at: Some(jiff::Timestamp::from_second(at).unwrap()),
            lease_owner: None,
            lease_until: None,
            last_error: None,
            output,
            rendered: None,
            confirmed_by: None,
            confirmed_at: None,
            note: None,
        }
    }

    fn activation(confirmed: bool) -> Vec<StepRecord> {
        let verification = vec![rec(D, "TXT", "MS=ms1"), rec(D, "MX", "32767 ms1.msv1.invalid.")];
        let services = vec![
            rec(D, "MX", "0 aubagne.mail.protection.outlook.com."),
            rec(&format!("sip.{D}"), "CNAME", "sipdir.online.lync.com."),
        ];
        let published = |records: Vec<DnsRecord>| {
            (!confirmed)
                .then(|| StepOutput::Published(Published { published: records.len(), zone: String::new(), records }))
        };
        vec![
            step(
                1,
                StepKind::M365Domain,
                StepState::Succeeded,
                10,
                Some(StepOutput::Domain(DomainCreated {
                    domain: D.into(),
                    created: true,
                    records: verification.clone(),
                    zone: String::new(),
                })),
            ),
            step(
                2,
                StepKind::DnsPublish,
                StepState::Succeeded,
                20,
                published(vec![verification[0].clone()]).or(Some(StepOutput::Confirmed)),
            ),
            step(
                3,
                StepKind::M365Services,
                StepState::Succeeded,
                30,
                Some(StepOutput::Services(ServiceRecords { records: services.clone() })),
            ),
            step(4, StepKind::DnsPublish, StepState::Succeeded, 40, {
                let mut all = vec![verification[0].clone()];
                all.extend(services);
                all.push(repli_core::m365::dmarc_record(D, "quarantine", None));
                published(all).or(Some(StepOutput::Confirmed))
            }),
        ]
    }

    fn policy() -> ZonePolicy {
        ZonePolicy { dmarc: Some(("quarantine".into(), None)), optional: false }
    }

    #[test]
    fn the_expected_zone_is_the_same_whoever_published_it() {
        let (e, by_repli) = expected_zone(CrisisState::Ready, Some(D), &activation(false), &[], &policy());
        assert_eq!(e, DnsExpectation::Present);
        let (_, by_a_person) = expected_zone(CrisisState::Ready, Some(D), &activation(true), &[], &policy());
        assert_eq!(by_repli, by_a_person);
        let keys: Vec<_> = by_repli.keys().map(|(n, k)| format!("{n} {k}")).collect();
        assert_eq!(keys, [format!("_dmarc.{D} TXT"), format!("{D} MX"), format!("{D} TXT"), format!("sip.{D} CNAME")]);
        assert_eq!(
            by_repli[&(D.to_owned(), "MX".to_owned())],
            BTreeSet::from(["0 aubagne.mail.protection.outlook.com.".to_owned()])
        );
    }

    #[test]
    fn a_confirmed_verification_step_expects_the_txt_only_until_the_services_are_published() {
        let mut steps = activation(true);
        steps[3].state = StepState::WaitingManual;
        let (_, sets) = expected_zone(CrisisState::Provisioning, Some(D), &steps, &[], &policy());
        assert_eq!(sets.keys().cloned().collect::<Vec<_>>(), [(D.to_owned(), "TXT".to_owned())]);
    }

    #[test]
    fn after_the_hand_back_or_once_closed_nothing_is_expected() {
        let removed = [step(9, StepKind::DnsRemove, StepState::Succeeded, 90, Some(StepOutput::Confirmed))];
        let (e, sets) = expected_zone(CrisisState::Handback, Some(D), &activation(false), &removed, &policy());
        assert_eq!((e, sets.len()), (DnsExpectation::Absent, 0));
        let (e, _) = expected_zone(CrisisState::Closed, Some(D), &activation(false), &[], &policy());
        assert_eq!(e, DnsExpectation::Absent);
        let pending = [step(9, StepKind::DnsRemove, StepState::WaitingManual, 90, None)];
        let (e, _) = expected_zone(CrisisState::Handback, Some(D), &activation(false), &pending, &policy());
        assert_eq!(e, DnsExpectation::Present, "not removed yet: the kit's records are still expected");
        assert_eq!(expected_zone(CrisisState::Activated, None, &[], &[], &policy()).0, DnsExpectation::Nothing);
    }

    fn survey(server: &str, serial: Result<u32, String>, served: &[(&str, &str, &[&str])]) -> ServerSurvey {
        ServerSurvey {
            server: server.into(),
            serial,
            records: served
                .iter()
                .map(|(n, k, v)| Observed {
                    server: server.into(),
                    name: (*n).into(),
                    kind: (*k).into(),
                    served: Ok(v.iter().map(|s| (*s).to_owned()).collect()),
                })
                .collect(),
        }
    }

    #[test]
    fn missing_extra_different_and_lagging_are_each_named() {
        let (_, expected) = expected_zone(CrisisState::Ready, Some(D), &activation(false), &[], &policy());
        let sip = format!("sip.{D}");
        let dmarc = format!("_dmarc.{D}");
        let www = format!("autodiscover.{D}");
        let dkim = format!("selector1._domainkey.{D}");
        let a = survey(
            "192.0.2.1:53",
            Ok(7),
            &[
                (D, "TXT", &["MS=ms1"]),
                (D, "MX", &["0 Aubagne.Mail.Protection.Outlook.com"]),
                (&sip, "CNAME", &[]),
                (&dmarc, "TXT", &["v=DMARC1; p=none"]),
                (&www, "CNAME", &["ailleurs.example."]),
                (&www, "TXT", &[]),
                (&dkim, "CNAME", &["selector1-aubagne._domainkey.tenant.onmicrosoft.com."]),
            ],
        );
        let b = survey("192.0.2.2:53", Ok(6), &[]);
        let c = survey("192.0.2.3:53", Err("pas de réponse".into()), &[]);
        let (servers, lines) = compare(DnsExpectation::Present, &expected, vec![a, b, c]);
        let diff = |n: &str, k: &str| lines.iter().find(|l| l.name == n && l.kind == k).map(|l| l.diff);
        assert_eq!(diff(D, "TXT"), Some(DnsDiff::Same));
        assert_eq!(diff(D, "MX"), Some(DnsDiff::Same), "host names compare case-insensitively");
        assert_eq!(diff(&sip, "CNAME"), Some(DnsDiff::Missing));
        assert_eq!(diff(&dmarc, "TXT"), Some(DnsDiff::Different));
        assert_eq!(diff(&www, "CNAME"), Some(DnsDiff::Extra));
        assert_eq!(diff(&www, "TXT"), None, "nothing expected, nothing served: no line");
        assert_eq!(diff(&dkim, "CNAME"), Some(DnsDiff::Same), "Exchange's DKIM CNAME, any value, while the kit lives");
        let (_, after) = compare(
            DnsExpectation::Absent,
            &ZoneSets::new(),
            vec![survey("192.0.2.1:53", Ok(8), &[(&dkim, "CNAME", &["x.onmicrosoft.com."])])],
        );
        assert_eq!(after[0].diff, DnsDiff::Extra, "and gone after the hand-back");
        assert_eq!(servers.iter().map(|s| s.lagging).collect::<Vec<_>>(), [false, true, false]);
        assert!(servers[2].error.is_some() && servers[2].serial.is_none());
    }

    #[test]
    fn serials_compare_in_sequence_space() {
        assert!(serial_after(1, u32::MAX), "wrapped past zero");
        assert!(!serial_after(u32::MAX, 1));
        assert!(serial_after(2026052002, 2026052001));
        let (servers, _) = compare(
            DnsExpectation::Absent,
            &ZoneSets::new(),
            vec![survey("a:53", Ok(u32::MAX), &[]), survey("b:53", Ok(2), &[])],
        );
        assert_eq!(servers.iter().map(|s| s.lagging).collect::<Vec<_>>(), [true, false]);
    }
}
