//! The Microsoft 365 preflight as an operation: run it (on demand, at start and every day),
//! keep the last report, and say whether an activation should be warned about it.

use crate::Services;
use repli_core::m365::PreflightSpec;

/// Days of warning before a certificate or secret expires.
pub const WARN_DAYS: u32 = 30;
/// How often replid runs the preflight by itself.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A preflight and when it ran.
pub use repli_proto::api::PreflightView as PreflightRun;

fn spec(st: &Services) -> PreflightSpec {
    let m = &st.config.m365;
    PreflightSpec {
        // Validated at start: 1 to 500, the largest kit a request may ask for.
        largest_kit: m.largest_kit,
        root_domain: repli_core::m365::root_domain(&m.domain_pattern),
        organizer: st.preflight_organizer.clone(),
        secret_expires_on: m.secret_expires_on.clone(),
        admin_unit: m.admin_unit.clone(),
        today: st.clock.now().to_zoned(st.calendar.time_zone().clone()).date().to_string(),
        warn_days: WARN_DAYS,
    }
}

/// Runs the preflight now and keeps it as the last one.
pub async fn run(st: &Services) -> PreflightRun {
    let mut report = st.m365.preflight(&spec(st)).await;
    if let Some(check) = dns_canary(st).await {
        let mut checks = report.checks;
        checks.push(check);
        report = repli_core::m365::PreflightReport::new(checks);
    }
    let run = PreflightRun { at: st.clock.now(), report };
    if run.report.ok {
        tracing::info!("Microsoft 365 preflight passed");
    } else {
        let failed: Vec<&str> = run.report.failures().map(|c| c.key.as_str()).collect();
        tracing::warn!(failed = ?failed, "Microsoft 365 preflight failed");
    }
    if let Ok(mut last) = st.preflight.write() {
        *last = Some(run.clone());
    }
    run
}

/// The DNS check of a preflight ends within this, well inside a client's 60 s.
const DNS_CANARY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(40);

/// The zone the crisis domains are written to takes a signed update, and every authoritative
/// server serves it: a TXT written below the kits' root, looked for, then removed. None when
/// Repli does not write to the zone itself.
async fn dns_canary(st: &Services) -> Option<repli_core::m365::PreflightCheck> {
    use repli_core::m365::{CheckStatus, PreflightCheck};
    let zone = st.dns.zone()?.to_owned();
    let root = repli_core::m365::root_domain(&st.config.m365.domain_pattern).unwrap_or_else(|| zone.clone());
    let name = format!("_repli-preflight.{root}");
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let value = format!("repli-preflight-{}", hex::encode(nonce));
    let title = "Zone DNS des domaines de secours".to_owned();
    // Whatever the servers do, the preflight ends within its own time (the canary's wait is
    // bounded too, and it removes what it wrote before answering).
    let canary = match tokio::time::timeout(DNS_CANARY_TIMEOUT, st.dns.canary(&name, &value)).await {
        Ok(result) => result,
        Err(_) => Err(repli_core::m365::Error::Dns(format!(
            "pas de réponse en {} s (serveur primaire ou serveurs faisant autorité injoignables)",
            DNS_CANARY_TIMEOUT.as_secs()
        ))),
    };
    Some(match canary {
        Ok(_) => PreflightCheck {
            key: "dns".into(),
            title,
            status: CheckStatus::Ok,
            detail: format!(
                "Un enregistrement TXT signé a été écrit dans la zone {zone}, servi par chaque serveur faisant autorité, puis retiré."
            ),
            fix: None,
        },
        Err(e) => PreflightCheck {
            key: "dns".into(),
            title,
            status: CheckStatus::Fail,
            detail: format!("Écriture d'essai dans la zone {zone} impossible : {e}"),
            fix: Some(
                "Vérifier [dns] (serveur primaire, nom et secret de la clé TSIG, algorithme) et la politique de mise à jour de la zone (docs/DNS.md)."
                    .into(),
            ),
        },
    })
}

/// The last preflight, if one ran since start.
pub fn last(st: &Services) -> Option<PreflightRun> {
    st.preflight.read().ok().and_then(|l| l.clone())
}

/// What to tell ops before an activation: the failed checks of the last preflight, in French.
pub fn activation_warning(st: &Services) -> Option<String> {
    let last = last(st)?;
    if last.report.ok {
        return None;
    }
    let titles: Vec<String> = last.report.failures().map(|c| format!("{} ({})", c.title, c.detail)).collect();
    Some(format!(
        "Le dernier contrôle du locataire Microsoft 365 a échoué : {}. L'activation risque d'échouer à ces étapes.",
        titles.join(" ; ")
    ))
}

/// At start, then every day.
pub async fn daily(st: Services) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        run(&st).await;
    }
}
