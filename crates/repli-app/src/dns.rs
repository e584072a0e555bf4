//! The crisis zone as the authoritative servers serve it (`repli dns check`).

use std::collections::{BTreeMap, BTreeSet};

use repli_core::Actor;
use repli_core::m365::DnsRecord;
use repli_core::run::{Outputs, PlaybookName};
use repli_proto::api::{DnsCheckView, DnsRecordCheck};

use crate::{AppError, Services, crises};

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

/// What each authoritative server serves for the records the activation last published.
pub async fn check(st: &Services, a: &Actor, id: &str) -> Result<DnsCheckView, AppError> {
    let r = crises::visible_crisis(st, a, id).await?;
    let mut published: Vec<DnsRecord> = Vec::new();
    let mut domain = None;
    for run in st.store.runs_of(&r.id).await? {
        if run.playbook == PlaybookName::Activation {
            let outputs = Outputs::of(&st.store.steps(run.id).await?);
            domain = outputs.domain().map(|d| d.domain.clone());
            published = outputs.last_published().map(|p| p.records.clone()).unwrap_or_default();
        }
    }
    // Before the activation made the domain there is nothing published: an empty check.
    let domain = domain.unwrap_or_default();
    let mut expected: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rec in &published {
        let key = (rec.name.trim_end_matches('.').to_ascii_lowercase(), rec.kind.to_ascii_uppercase());
        expected.entry(key).or_default().insert(spelled(&rec.kind, &rec.value));
    }
    let dns = st.target(&r).1;
    let observed = dns.observe(&published).await.map_err(|e| AppError::Internal(format!("DNS : {e}")))?;
    let checked = dns.zone().is_some();
    let records: Vec<DnsRecordCheck> = observed
        .into_iter()
        .map(|o| {
            let want = expected.get(&(o.name.clone(), o.kind.clone())).cloned().unwrap_or_default();
            let (served, error) = match o.served {
                Ok(v) => (v.iter().map(|x| spelled(&o.kind, x)).collect::<BTreeSet<_>>(), None),
                Err(e) => (BTreeSet::new(), Some(e)),
            };
            DnsRecordCheck {
                ok: error.is_none() && served == want,
                server: o.server,
                name: o.name,
                kind: o.kind,
                expected: want.into_iter().collect(),
                served: served.into_iter().collect(),
                error,
            }
        })
        .collect();
    let ok = checked && !published.is_empty() && records.iter().all(|c| c.ok);
    Ok(DnsCheckView { domain, zone: dns.zone().map(str::to_owned), checked, ok, records })
}
