//! The variables a playbook template may use, and the one renderer for them.

use handlebars::template::{Parameter, Template, TemplateElement};
use handlebars::{Handlebars, Path};
use serde::Serialize;

/// Every variable a playbook template may name, with what it holds.
pub const VARIABLES: [(&str, &str); 16] = [
    ("crisis_id", "identifiant de la crise (13005-2026-001)"),
    ("commune", "nom de la commune"),
    ("de_commune", "« de » et le nom de la commune, élidé : « d'Aubagne », « du Rove »"),
    ("insee", "code INSEE de la commune"),
    ("domain", "domaine de secours (aubagne.secours-amp.fr)"),
    ("agents", "nombre d'agents"),
    ("laptops", "portables demandés"),
    ("phones", "téléphones demandés"),
    ("routers", "routeurs 4G/5G demandés"),
    ("sims", "cartes SIM demandées"),
    ("printers", "imprimantes demandées"),
    ("delivery_address", "lieu de livraison"),
    ("contact_name", "nom du contact hors bande"),
    ("contact_phone", "téléphone du contact hors bande"),
    ("due", "échéance du SLA, en français"),
    (
        "astreinte",
        "l'astreinte de la métropole et ses coordonnées configurées ([documents]) : « l'astreinte de la \
         métropole (04 91 00 00 00 ou astreinte@…) »",
    ),
];

const HELPERS: [&str; 6] = ["if", "unless", "each", "with", "lookup", "else"];

/// What templates are rendered with.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Context {
    pub crisis_id: String,
    pub commune: String,
    /// « d'Aubagne », « de Marseille », « du Rove ».
    pub de_commune: String,
    pub insee: String,
    pub domain: String,
    pub agents: u32,
    pub laptops: u32,
    pub phones: u32,
    pub routers: u32,
    pub sims: u32,
    pub printers: u32,
    pub delivery_address: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub due: String,
    /// « l'astreinte de la métropole (04 91 00 00 00 ou astreinte@…) »: its contacts as
    /// configured, or its name alone while they are not.
    pub astreinte: String,
    /// The crisis is part of an exercise: Microsoft 365 and DNS go to the exercise target.
    pub exercise: bool,
}

fn registry() -> Handlebars<'static> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    // Instructions are plain text shown in a terminal or escaped by the web page.
    h.register_escape_fn(handlebars::no_escape);
    h
}

/// Renders a playbook template against the crisis context.
pub fn render(template: &str, ctx: &Context) -> Result<String, String> {
    registry().render_template(template, ctx).map_err(|e| e.to_string())
}

fn path_root(p: &Path) -> Option<String> {
    match p {
        Path::Relative((segs, raw)) => {
            let _ = segs;
            let root = raw.split(['.', '/', '[']).next().unwrap_or(raw);
            Some(root.to_string())
        }
        Path::Local(_) => None,
    }
}

fn param_names(p: &Parameter, out: &mut Vec<String>) {
    match p {
        Parameter::Path(path) => out.extend(path_root(path)),
        Parameter::Name(n) => out.push(n.clone()),
        _ => {}
    }
}

fn walk(t: &Template, inside_block: bool, out: &mut Vec<String>) {
    for e in &t.elements {
        match e {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                if h.params.is_empty() && h.hash.is_empty() {
                    if !inside_block {
                        param_names(&h.name, out);
                    }
                } else {
                    for p in &h.params {
                        if !inside_block {
                            param_names(p, out);
                        }
                    }
                }
            }
            TemplateElement::HelperBlock(h) => {
                if let Parameter::Name(n) = &h.name
                    && !HELPERS.contains(&n.as_str())
                {
                    out.push(format!("#{n}"));
                }
                for p in &h.params {
                    if !inside_block {
                        param_names(p, out);
                    }
                }
                let nested = inside_block || matches!(&h.name, Parameter::Name(n) if n == "each" || n == "with");
                if let Some(inner) = &h.template {
                    walk(inner, nested, out);
                }
                if let Some(inner) = &h.inverse {
                    walk(inner, nested, out);
                }
            }
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => out.push(">partial".into()),
            _ => {}
        }
    }
}

/// Syntax errors and unknown variables of one template: (line and column in the template when
/// known, message).
pub fn check_template(text: &str) -> Vec<(Option<(usize, usize)>, String)> {
    if !text.contains("{{") {
        return Vec::new();
    }
    let template = match Template::compile(text) {
        Ok(t) => t,
        Err(e) => {
            let reason = e.reason().to_string();
            return vec![(e.pos(), format!("template syntax: {reason}"))];
        }
    };
    let mut names = Vec::new();
    walk(&template, false, &mut names);
    let mut out = Vec::new();
    for n in names {
        if let Some(helper) = n.strip_prefix('#') {
            out.push((None, format!("unknown template helper \"{helper}\" (known: if, unless, each, with)")));
        } else if n == ">partial" {
            out.push((None, "partials are not available in playbooks".to_string()));
        } else if !HELPERS.contains(&n.as_str()) && n != "this" && !VARIABLES.iter().any(|(v, _)| *v == n) {
            let col = text.find(&format!("{{{{{n}")).or_else(|| text.find(&n)).map(|i| {
                let before = &text[..i];
                (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
            });
            out.push((
                col,
                format!("unknown template variable \"{n}\" (known: {})", VARIABLES.map(|(v, _)| v).join(", ")),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_variables_pass_unknown_are_named() {
        assert!(check_template("{{commune}} — {{#if agents}}{{agents}} agents{{/if}}").is_empty());
        let e = check_template("{{communes}}");
        assert_eq!(e.len(), 1);
        assert!(e[0].1.contains("\"communes\""));
        assert!(check_template("{{#each x}}{{this}}{{/each}}")[0].1.contains("\"x\""));
        assert!(check_template("{{#frobnicate commune}}{{/frobnicate}}")[0].1.contains("helper"));
        assert!(check_template("{{> evil}}")[0].1.contains("partials"));
        assert!(check_template("{{#if commune}}")[0].1.contains("syntax"));
    }

    #[test]
    fn renders_strictly_without_html_escaping() {
        let ctx = Context { commune: "Saint-Rémy <b>".into(), agents: 3, ..Context::default() };
        assert_eq!(render("{{commune}} : {{agents}}", &ctx).unwrap(), "Saint-Rémy <b> : 3");
        assert!(render("{{nope}}", &ctx).is_err());
    }
}
