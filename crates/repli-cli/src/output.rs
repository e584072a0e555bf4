//! Human output: tables and French dates. `--json` bypasses all of this.

use comfy_table::{ContentArrangement, Table};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use repli_core::fr;
use repli_proto::api::{
    AgentView, CommuneView, CrisisView, InventoryStatusLine, ItemDetail, LoanView, LogEntryView, NotificationView,
    UserView,
};
use serde::Serialize;

/// Instants are shown in the métropole's time zone.
pub fn tz() -> TimeZone {
    TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC)
}

pub fn when(t: Timestamp) -> String {
    fr::datetime(t, &tz())
}

pub fn opt_when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "—".to_owned(), when)
}

pub fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    t
}

pub fn communes(list: &[CommuneView]) {
    let mut t = table(&["INSEE", "Commune", "Population", "Convention", "Crise ouverte"]);
    for c in list {
        t.add_row(vec![
            c.insee.to_string(),
            c.name.clone(),
            c.population.to_string(),
            c.convention
                .as_ref()
                .map_or_else(|| "non signée".to_owned(), |v| format!("{} ({})", v.signed_on, v.deliberation_ref)),
            c.open_crisis.as_ref().map_or_else(String::new, ToString::to_string),
        ]);
    }
    println!("{t}");
}

pub fn commune(c: &CommuneView) {
    let mut t = table(&["", ""]);
    t.add_row(vec!["Code INSEE".to_owned(), c.insee.to_string()]);
    t.add_row(vec!["Commune".to_owned(), c.name.clone()]);
    t.add_row(vec!["Population".to_owned(), c.population.to_string()]);
    t.add_row(vec![
        "Convention".to_owned(),
        c.convention.as_ref().map_or_else(
            || "non signée : la commune ne peut pas emprunter le kit".to_owned(),
            |v| format!("signée le {} (délibération {})", repli_core::fr::date(v.signed_on), v.deliberation_ref),
        ),
    ]);
    t.add_row(vec![
        "Crise ouverte".to_owned(),
        c.open_crisis.as_ref().map_or_else(|| "aucune".to_owned(), ToString::to_string),
    ]);
    println!("{t}");
}

pub fn crises(list: &[CrisisView]) {
    let mut t = table(&["Crise", "Commune", "État", "Demandée", "Échéance SLA", "SLA"]);
    for c in list {
        t.add_row(vec![
            c.id.to_string(),
            format!("{} {}", c.commune, c.commune_name),
            c.state_label.clone(),
            when(c.requested_at),
            when(c.sla.due_at),
            sla_text(c),
        ]);
    }
    println!("{t}");
}

pub fn sla_text(c: &CrisisView) -> String {
    if c.sla.remaining_seconds > 0 {
        format!("{} — reste {}", c.sla.status_label, fr::duration(SignedDuration::from_secs(c.sla.remaining_seconds)))
    } else {
        c.sla.status_label.clone()
    }
}

pub fn crisis(c: &CrisisView) {
    let mut t = table(&["", ""]);
    let rows: Vec<(&str, String)> = vec![
        ("Crise", c.id.to_string()),
        ("Commune", format!("{} {}", c.commune, c.commune_name)),
        ("État", format!("{} ({})", c.state_label, c.state)),
        ("Demandée", format!("{} par {}", when(c.requested_at), c.requested_by)),
        (
            "Contact hors bande",
            format!(
                "{} — {}{}",
                c.contact.name,
                fr::phone(&c.contact.phone),
                c.contact.email.as_deref().map_or_else(String::new, |e| format!(" — {e}"))
            ),
        ),
        ("Agents", c.agents.to_string()),
        ("Échéance SLA", format!("{} ({} h ouvrées)", when(c.sla.due_at), c.sla.business_hours)),
        ("SLA", sla_text(c)),
        ("Activée", opt_when(c.timeline.activated_at)),
        ("Prête", opt_when(c.timeline.ready_at)),
        ("Livrée", opt_when(c.timeline.delivered_at)),
        ("Restitution", opt_when(c.timeline.handback_at)),
        ("Close", opt_when(c.timeline.closed_at)),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_owned(), v]);
    }
    if let Some(r) = &c.end_reason {
        t.add_row(vec!["Motif".to_owned(), r.clone()]);
    }
    if !c.next_actions.is_empty() {
        t.add_row(vec![
            "Actions possibles".to_owned(),
            c.next_actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
        ]);
    }
    println!("{t}");
    if !c.history.is_empty() {
        let mut h = table(&["#", "Quand", "Qui", "Action"]);
        for e in &c.history {
            h.add_row(vec![
                e.seq.to_string(),
                when(e.at),
                format!("{} ({})", e.actor, e.role),
                repli_core::fr::action(&e.action),
            ]);
        }
        println!("{h}");
    }
}

/// The main courante, printable: one block per entry, oldest first.
pub fn main_courante(id: &str, entries: &[LogEntryView]) {
    println!("MAIN COURANTE — crise {id}");
    println!("{}", "=".repeat(60));
    if entries.is_empty() {
        println!("(aucune entrée)");
    }
    for e in entries {
        println!("n° {} — {} — {}", e.seq, when(e.at), e.type_label.to_uppercase());
        println!("par {} ({})", e.author, e.role);
        for line in e.text.lines() {
            println!("    {line}");
        }
        println!("{}", "-".repeat(60));
    }
}

pub fn users(list: &[UserView]) {
    let mut t = table(&["Id", "Nom", "Rôle", "Commune", "Identifiant web", "Jetons actifs"]);
    for u in list {
        t.add_row(vec![
            u.id.to_string(),
            u.name.clone(),
            u.role.to_string(),
            u.commune.as_ref().map_or_else(String::new, ToString::to_string),
            u.login.clone().unwrap_or_default(),
            u.active_tokens.to_string(),
        ]);
    }
    println!("{t}");
}

pub fn legal(c: &CrisisView) {
    if c.legal.is_empty() {
        println!("Échéances légales : indiquez quand la commune a eu connaissance de l'attaque (--aware-at).");
        return;
    }
    let mut t = table(&["Échéance légale", "Date limite", "Statut", "Fait le"]);
    for l in &c.legal {
        let status = l.status.label_fr(SignedDuration::from_secs(l.remaining_seconds));
        t.add_row(vec![l.label.clone(), when(l.deadline), status, opt_when(l.done_at)]);
    }
    println!("{t}");
}

pub fn notifications(list: &[NotificationView]) {
    let mut t = table(&["#", "Créée", "Canal", "Objet", "État", "Essais", "Erreur"]);
    for n in list {
        t.add_row(vec![
            n.id.to_string(),
            when(n.created_at),
            n.channel.clone(),
            n.subject.clone(),
            n.status.clone(),
            n.attempts.to_string(),
            n.last_error.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

pub fn inventory_status(lines: &[InventoryStatusLine]) {
    let mut t = table(&["Type", "Disponibles", "Réservés", "Prêtés", "En effacement", "Hors service"]);
    for l in lines {
        t.add_row(vec![
            l.kind.label_fr().to_owned(),
            l.available.to_string(),
            l.reserved.to_string(),
            l.lent.to_string(),
            l.wiping.to_string(),
            l.out_of_service.to_string(),
        ]);
    }
    println!("{t}");
}

pub fn item(d: &ItemDetail) {
    let i = &d.item.item;
    println!("{} — {} — {} ({})", i.asset_tag, i.serial, i.model, i.kind.label_fr());
    println!(
        "État : {}{}",
        d.item.state_label,
        d.item.crisis.as_deref().map_or_else(String::new, |c| format!(" — crise {c}"))
    );
    let mut t = table(&["Quand", "Qui", "Crise", "De", "À", "Note"]);
    for e in &d.history {
        t.add_row(vec![
            when(e.at),
            e.actor.clone(),
            e.crisis.clone().unwrap_or_default(),
            e.from.as_deref().map(repli_core::inventory::state_label).unwrap_or_default(),
            repli_core::inventory::state_label(&e.to),
            e.note.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

pub fn loans(list: &[LoanView]) {
    let mut t = table(&["Équipement", "Type", "Agent", "Prêté le", "Retour prévu", "Rendu", "État"]);
    for l in list {
        t.add_row(vec![
            l.asset_tag.clone(),
            l.kind.label_fr().to_owned(),
            l.agent.as_ref().map_or_else(|| "commune".to_owned(), |a| format!("{} ({})", a.name, a.service)),
            when(l.lent_at),
            format!("{}{}", when(l.due_back), if l.overdue { " — EN RETARD" } else { "" }),
            match (l.returned_at, l.written_off_at) {
                (_, Some(t)) => format!(
                    "non — passé en perte le {} : {}",
                    when(t),
                    l.write_off_reason.as_deref().unwrap_or_default()
                ),
                (r, None) => opt_when(r),
            },
            l.condition.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

pub fn agents(list: &[AgentView]) {
    let mut t = table(&["Id", "Nom", "Service"]);
    for a in list {
        t.add_row(vec![a.id.to_string(), a.name.clone(), a.service.clone()]);
    }
    println!("{t}");
}
