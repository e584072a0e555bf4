//! Snapshots of every document for a sample crisis, and hostile text escaped everywhere.

use std::collections::BTreeMap;

use super::*;

use crate::sample::{HOSTILE, crisis, loans, log, metropole, t};

fn render_sample() -> Vec<(String, String)> {
    let c = crisis().unwrap();
    let l = loans();
    let g = log();
    let m = metropole();
    let wipes = BTreeMap::from([("FICTIF-LAP-0001".to_owned(), "CERT-2026-001".to_owned())]);
    let accounts = vec![Account {
        name: HOSTILE.into(),
        service: "État civil".into(),
        login: "agent.01@aubagne.secours-amp.fr".into(),
        password: "Exemple-Fictif-2026!".into(),
    }];
    let m365 = M365 {
        domain: "aubagne.secours-amp.fr".into(),
        team: "Cellule de crise Aubagne".into(),
        channels: vec!["Cellule de crise".into(), "Services".into()],
        team_url: "https://exemple.sharepoint.com/sites/cellule-de-crise-aubagne".into(),
        meeting_url: "https://teams.microsoft.com/l/meetup-join/exemple".into(),
    };
    let chronology = [
        Moment { at: t("2026-12-01T08:00:00Z"), text: "Demande du kit (par Anne Martin)".into() },
        Moment { at: t("2026-12-01T09:02:00Z"), text: "✓ Créer les comptes des 25 agents".into() },
        Moment { at: t("2026-12-02T10:00:00Z"), text: format!("Délai suspendu — motif : {HOSTILE}") },
    ];
    let input = PackInput {
        crisis: &c,
        data: Some(crate::DataHandback::Waived { reason: format!("la commune renonce — {HOSTILE}") }),
        chronology: &chronology,
        convention: Some("14 décembre 2023 (DCM-2023-187)".into()),
        loans: &l,
        wipes: &wipes,
        log: &g,
        accounts: &accounts,
        accounts_disabled: 1,
        m365: Some(m365),
        metropole: &m,
        simulation: false,
        now: t("2026-12-11T16:00:00Z"),
        time_zone: jiff::tz::TimeZone::get("Europe/Paris").unwrap(),
    };
    Documents::new(None).unwrap().render(&input).unwrap()
}

#[test]
fn dates_are_written_in_the_configured_time_zone() {
    let (c, m, wipes) = (crisis().unwrap(), metropole(), BTreeMap::new());
    let paris = PackInput::minimal(&c, &m, &wipes, t("2026-12-11T16:00:00Z"));
    let utc = PackInput {
        time_zone: jiff::tz::TimeZone::UTC,
        ..PackInput::minimal(&c, &m, &wipes, t("2026-12-11T16:00:00Z"))
    };
    // 16:00 UTC is 17 h 00 in Paris in December.
    assert!(crate::context(&paris)["generated_at"].as_str().unwrap().contains("17 h 00"));
    assert!(crate::context(&utc)["generated_at"].as_str().unwrap().contains("16 h 00"));
}

#[test]
fn every_document_matches_its_snapshot() {
    for (name, content) in render_sample() {
        insta::assert_snapshot!(name, content);
    }
}

#[test]
fn hostile_text_is_escaped_in_every_document() {
    let docs = render_sample();
    assert_eq!(docs.len(), DOCUMENTS.len());
    let mut shown = 0;
    for (name, content) in &docs {
        assert!(!content.contains("<script>"), "{name} contains raw markup");
        if content.contains("&lt;script&gt;alert(1)&lt;/script&gt; {{x}}") {
            shown += 1;
        }
    }
    // The hostile name is an agent, a contact and a main-courante author: it shows in the
    // dossier, the credential sheets, both loan documents and the closure report.
    assert!(shown >= 5, "the hostile text was expected in at least 5 documents, found in {shown}");
    let md = &docs.iter().find(|(n, _)| n == "01-dossier-de-mise-a-disposition.md").unwrap().1;
    assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt; {{x}}") && md.contains("DGS d'Aubagne"), "{md}");
}

#[test]
fn templates_can_be_overridden_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("regles-securite.hbs"),
        "{{#> page title=\"Règles locales\"}}<p>Règle locale</p>{{/page}}",
    )
    .unwrap();
    let docs = Documents::new(Some(dir.path())).unwrap();
    let c = crisis().unwrap();
    let m = metropole();
    let wipes = BTreeMap::new();
    let input = PackInput { simulation: true, ..PackInput::minimal(&c, &m, &wipes, t("2026-12-11T16:00:00Z")) };
    let out = docs.render(&input).unwrap();
    let rules = &out.iter().find(|(n, _)| n.starts_with("03-") && n.ends_with(".html")).unwrap().1;
    assert!(rules.contains("Règle locale") && rules.contains("SIMULATION"));
    let sheets = &out.iter().find(|(n, _)| n.starts_with("04-")).unwrap().1;
    assert!(sheets.contains("Aucun compte"));
    // A syntax error names the file; a missing variable fails the render (strict mode).
    std::fs::write(dir.path().join("dossier.hbs"), "{{#if}").unwrap();
    let e = Documents::new(Some(dir.path())).unwrap_err();
    assert!(e.to_string().contains("dossier.hbs"), "{e}");
    std::fs::write(dir.path().join("dossier.hbs"), "{{#> page title=\"x\"}}{{nope}}{{/page}}").unwrap();
    let e = Documents::new(Some(dir.path())).unwrap().render(&input).unwrap_err();
    assert!(e.to_string().contains("dossier"), "{e}");
}

#[test]
fn the_pack_is_written_with_its_zip() {
    let dir = tempfile::tempdir().unwrap();
    let c = crisis().unwrap();
    let l = loans();
    let m = metropole();
    let wipes = BTreeMap::new();
    let input =
        PackInput { loans: &l, simulation: true, ..PackInput::minimal(&c, &m, &wipes, t("2026-12-11T16:00:00Z")) };
    let zip = Documents::new(None).unwrap().write_pack(&input, dir.path()).unwrap();
    assert!(zip.is_file());
    for (_, file) in DOCUMENTS {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    let html = std::fs::read_to_string(dir.path().join("05-bon-de-pret.html")).unwrap();
    assert!(
        html.contains("@page { size: A4") && !html.contains("http://") && !html.contains("<link"),
        "self-contained, printable"
    );
}

#[test]
fn the_shipped_templates_check_clean_and_planted_errors_are_all_named() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/templates");
    assert_eq!(check_templates(&shipped), Vec::<String>::new());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("brochure.hbs"), "x").unwrap();
    std::fs::write(dir.path().join("dossier.hbs"), "line one\nline two {{#if a}}x{{/each}}\nline three\n").unwrap();
    std::fs::write(dir.path().join("regles-securite.hbs"), "ok").unwrap();
    let errors = check_templates(dir.path());
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("brochure.hbs:1:1: unknown template"), "{errors:#?}");
    assert!(errors[1].contains("dossier.hbs:2:"), "{errors:#?}");

    // Syntax fixed, an unknown variable remains: named with its line.
    std::fs::remove_file(dir.path().join("brochure.hbs")).unwrap();
    std::fs::write(
        dir.path().join("dossier.hbs"),
        "{{#> page title=\"x\"}}\n<p>{{crisis.id}}</p>\n<p>{{crisis.mayor}}</p>\n{{/page}}",
    )
    .unwrap();
    let errors = check_templates(dir.path());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("dossier.hbs:3:") && errors[0].contains("mayor"), "{errors:#?}");
}

#[test]
fn links_become_qr_codes_without_their_text() {
    assert!(qr_svg("").is_none());
    let svg = qr_svg("https://teams.microsoft.com/l/meetup-join/<script>alert(1)</script>").unwrap();
    assert!(svg.starts_with("<svg role=\"img\""), "{svg:.80}");
    assert!(!svg.contains("<?xml") && !svg.contains("script") && !svg.contains("teams"), "only modules, no text");
    // Longer links give denser codes; a link too long for any QR code gives none.
    assert!(qr_svg(&"x".repeat(5000)).is_none());
}

#[test]
fn every_document_of_an_exercise_carries_its_banner_and_watermark() {
    let mut c = crisis().unwrap();
    let name = format!("Exercice <b>{HOSTILE}</b>");
    c.exercise = Some(repli_core::ExerciseTag { id: 3, name, mode: repli_core::ExerciseMode::TableTop });
    let (m, wipes) = (metropole(), BTreeMap::new());
    let docs =
        Documents::new(None).unwrap().render(&PackInput::minimal(&c, &m, &wipes, t("2026-12-11T16:00:00Z"))).unwrap();
    assert!(!docs.is_empty());
    for (file, body) in &docs {
        assert!(body.contains("EXERCICE"), "{file} has no EXERCICE mark");
        assert!(body.contains("aucune valeur opérationnelle"), "{file} has no banner");
        if file.ends_with(".html") {
            assert!(
                body.contains(r#"<div class="filigrane" aria-hidden="true">EXERCICE</div>"#),
                "{file}: no watermark"
            );
            // The exercise's name is hostile input: escaped like every other.
            assert!(!body.contains("<b>"), "{file} lets the exercise name's markup through");
        }
    }
    // A real crisis's documents carry neither.
    let real = crisis().unwrap();
    let docs = Documents::new(None)
        .unwrap()
        .render(&PackInput::minimal(&real, &m, &wipes, t("2026-12-11T16:00:00Z")))
        .unwrap();
    assert!(docs.iter().all(|(_, b)| !b.contains("EXERCICE") && !b.contains("filigrane\"")));
}

#[test]
fn a_written_off_item_shows_its_date_and_reason_never_a_return() {
    let docs: BTreeMap<String, String> = render_sample().into_iter().collect();
    for file in [
        "01-dossier-de-mise-a-disposition.html",
        "01-dossier-de-mise-a-disposition.md",
        "06-proces-verbal-de-restitution.html",
    ] {
        let d = &docs[file];
        let line = d.lines().find(|l| l.contains("AMP-PHN-001")).unwrap_or_else(|| panic!("{file}: {d}"));
        assert!(line.contains("passé en perte le mardi 8 décembre 2026"), "{file}: {line}");
        assert!(line.contains("volé, plainte déposée"), "{file}: the reason: {line}");
        assert!(!line.contains("rendu le"), "{file}: a write-off is not a return: {line}");
        // The returned laptop keeps its return date.
        let laptop = d.lines().find(|l| l.contains("AMP-LAP-0001")).unwrap_or_else(|| panic!("{file}: {d}"));
        assert!(laptop.contains("10 décembre 2026"), "{file}: {laptop}");
    }
    let pv = &docs["06-proces-verbal-de-restitution.html"];
    assert!(pv.contains("AMP-PHN-001 (téléphone mobile) : passé en perte le"), "the discrepancy names it: {pv}");
}
