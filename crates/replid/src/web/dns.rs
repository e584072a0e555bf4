//! The crisis zone checked on each authoritative server (ops): the same check as `repli dns
//! check` and `GET /api/v1/crises/{id}/dns` (`repli_app::dns::check`), in French, run when the
//! page is opened.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_proto::api::{DnsDiff, DnsExpectation};
use serde::Serialize;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::view::{Layout, page as render_page};
use crate::web::{SessionCsrf, api_error_page};

#[derive(Debug, Serialize)]
struct Server {
    server: String,
    serial: String,
    state: String,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct Line {
    server: String,
    name: String,
    kind: String,
    expected: String,
    served: String,
    verdict: &'static str,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct DnsPage {
    crisis: String,
    domain: String,
    /// One sentence: what the state expects and whether the servers agree.
    verdict: String,
    ok: bool,
    servers: Vec<Server>,
    /// Only the lines that differ, then how many agree.
    lines: Vec<Line>,
    agreeing: usize,
}

fn verdict_fr(d: DnsDiff) -> &'static str {
    match d {
        DnsDiff::Same => "conforme",
        DnsDiff::Missing => "manquant",
        DnsDiff::Extra => "en trop",
        DnsDiff::Different => "différent",
        DnsDiff::Unreadable => "illisible",
    }
}

pub async fn page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    let v = match repli_app::dns::check(&st, &a, &id).await {
        Ok(v) => v,
        Err(e) => return api_error_page(&st, &e),
    };
    let expect = match v.expect {
        DnsExpectation::Nothing => "Pas encore de domaine de secours : rien à vérifier.",
        DnsExpectation::Present => "Le kit est en service : ses enregistrements doivent être publiés.",
        DnsExpectation::Absent => "Le kit est restitué : ses enregistrements doivent avoir disparu.",
    };
    let verdict = if !v.checked {
        format!(
            "{expect} Les serveurs n'ont pas pu être interrogés (publication manuelle ou simulée) : rien n'est vérifié."
        )
    } else if v.ok {
        format!("{expect} Tous les serveurs sont d'accord avec ce qui est attendu.")
    } else {
        format!("{expect} Des écarts sont constatés : voir ci-dessous.")
    };
    let servers = v
        .servers
        .iter()
        .map(|s| Server {
            server: s.server.clone(),
            serial: s.serial.map_or_else(|| "—".to_owned(), |n| n.to_string()),
            state: match (&s.error, s.lagging) {
                (Some(_), _) => "injoignable ou sans autorité sur la zone".to_owned(),
                (None, true) => "en retard sur les autres serveurs".to_owned(),
                (None, false) => "à jour".to_owned(),
            },
            ok: s.error.is_none() && !s.lagging,
        })
        .collect();
    let agreeing = v.records.iter().filter(|r| r.ok).count();
    let lines = v
        .records
        .iter()
        .filter(|r| !r.ok)
        .map(|r| Line {
            server: r.server.clone(),
            name: r.name.clone(),
            kind: r.kind.clone(),
            expected: if r.expected.is_empty() { "—".to_owned() } else { r.expected.join(" ; ") },
            served: if r.served.is_empty() { "—".to_owned() } else { r.served.join(" ; ") },
            verdict: verdict_fr(r.diff),
            ok: r.ok,
        })
        .collect();
    let model = DnsPage {
        crisis: id.clone(),
        domain: v.domain.clone(),
        verdict,
        ok: v.checked && v.ok,
        servers,
        lines,
        agreeing,
    };
    let layout = Layout::signed_in(&a, &csrf, "Zone DNS");
    render_page(&st, StatusCode::OK, "zone-dns", &layout, &model)
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![(
        Method::GET,
        "/crises/{id}/dns",
        Page(P::OperateCrisis),
        routing::get(page),
        Doc::page("The crisis zone on each authoritative server, against what the crisis's state expects"),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::view::{render_model, test_layout};

    #[test]
    fn the_typed_dns_page_renders_through_the_strict_template_and_escapes_what_servers_say() {
        let hostile = "<script>alert(1)</script>";
        for ok in [true, false] {
            let model = DnsPage {
                crisis: "13005-2026-001".into(),
                domain: "aubagne.secours-amp.fr".into(),
                verdict: "Le kit est en service.".into(),
                ok,
                servers: vec![Server {
                    server: "192.0.2.1:53".into(), serial: "7".into(), state: "à jour".into(), ok
                }],
                lines: (!ok)
                    .then(|| Line {
                        server: "192.0.2.1:53".into(),
                        name: "@".into(),
                        kind: "TXT".into(),
                        expected: "v=spf1 include:spf.protection.outlook.com -all".into(),
                        served: hostile.into(),
                        verdict: verdict_fr(DnsDiff::Different),
                        ok: false,
                    })
                    .into_iter()
                    .collect(),
                agreeing: 3,
            };
            let html = render_model("zone-dns", &test_layout("Zone DNS"), &model).unwrap();
            assert!(html.contains("Zone DNS — crise 13005-2026-001"), "{html}");
            assert_eq!(html.contains("différent"), !ok);
            assert!(!html.contains(hostile), "a served value is shown escaped");
        }
    }
}
