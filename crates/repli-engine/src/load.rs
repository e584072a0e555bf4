//! Reading playbooks from TOML with every problem reported as `file:line:col: message`.

use crate::context;
use repli_core::playbook::{Diagnostic, Playbook, Pos, Step, StepKind, parse_duration};
use repli_core::run::PlaybookName;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiagnostic {
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl std::fmt::Display for FileDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.pos.line, self.pos.col, self.message)
    }
}

/// Line and column (1-based, in characters) of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> Pos {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos { line, col }
}

struct Reader<'t> {
    text: &'t str,
    diags: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn at(&self, span: Range<usize>) -> Pos {
        position(self.text, span.start)
    }
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let pos = self.at(span);
        self.diags.push(Diagnostic { pos, message: message.into() });
    }
    fn string(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.error(v.span(), format!("{key} must be a string"));
                None
            }
        }
    }
    fn strings(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Vec<(String, Pos)> {
        match v.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|i| {
                    let pos = self.at(i.span());
                    self.string(i, key).map(|s| (s, pos))
                })
                .collect(),
            _ => {
                self.error(v.span(), format!("{key} must be an array of strings"));
                Vec::new()
            }
        }
    }
    fn duration(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<jiff::SignedDuration> {
        let s = self.string(v, key)?;
        let d = parse_duration(&s);
        if d.is_none() {
            self.error(v.span(), format!("{key} {s:?} is not a duration such as 30s, 15m, 4h or 1h30m"));
        }
        d
    }
}

/// A checked template string and where it was written.
struct TemplateSource {
    pos: Pos,
    /// Whether the value was a multi-line string starting on the next line.
    text: String,
    what: String,
}

fn parse_step(
    r: &mut Reader<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    templates: &mut Vec<TemplateSource>,
) -> Option<Step> {
    let pos = r.at(span.clone());
    let mut id = None;
    let mut kind = None;
    let mut title = None;
    let mut needs = Vec::new();
    let mut estimate = None;
    let mut budget = None;
    let mut attempts = 3u32;
    let mut params = BTreeMap::new();
    let mut instructions = None;
    let mut checklist = Vec::new();
    let mut kind_pos = pos;
    for (k, v) in table.iter() {
        match k.get_ref().as_ref() {
            "id" => id = r.string(v, "id"),
            "kind" => {
                kind_pos = r.at(v.span());
                if let Some(s) = r.string(v, "kind") {
                    match StepKind::parse(&s) {
                        Some(k) => kind = Some(k),
                        None => r.error(
                            v.span(),
                            format!("unknown kind {s:?} (known: {})", StepKind::ALL.map(StepKind::as_str).join(", ")),
                        ),
                    }
                }
            }
            "title" => {
                title = r.string(v, "title");
                if let Some(t) = &title {
                    templates.push(TemplateSource { pos: r.at(v.span()), text: t.clone(), what: "title".into() });
                }
            }
            "needs" => needs = r.strings(v, "needs"),
            "estimate" => estimate = r.duration(v, "estimate"),
            "budget" => budget = r.duration(v, "budget"),
            "attempts" => match v.get_ref() {
                DeValue::Integer(i) => match i.as_str().parse::<u32>() {
                    Ok(n) if (1..=100).contains(&n) => attempts = n,
                    _ => r.error(v.span(), "attempts must be an integer from 1 to 100"),
                },
                _ => r.error(v.span(), "attempts must be an integer from 1 to 100"),
            },
            "params" => match v.get_ref() {
                DeValue::Table(t) => {
                    for (pk, pv) in t.iter() {
                        if let Some(s) = r.string(pv, &format!("params.{}", pk.get_ref())) {
                            templates.push(TemplateSource { pos: r.at(pv.span()), text: s.clone(), what: format!("params.{}", pk.get_ref()) });
                            params.insert(pk.get_ref().to_string(), (s, r.at(pk.span())));
                        }
                    }
                }
                _ => r.error(v.span(), "params must be a table of strings"),
            },
            "instructions" => {
                instructions = r.string(v, "instructions");
                if let Some(t) = &instructions {
                    templates.push(TemplateSource { pos: r.at(v.span()), text: t.clone(), what: "instructions".into() });
                }
            }
            "checklist" => {
                checklist = r.strings(v, "checklist");
                for (c, p) in &checklist {
                    templates.push(TemplateSource { pos: *p, text: c.clone(), what: "checklist".into() });
                }
            }
            other => r.error(
                k.span(),
                format!("unknown key {other:?} in step (known: id, kind, title, needs, estimate, budget, attempts, params, instructions, checklist)"),
            ),
        }
    }
    let Some(id) = id else {
        r.diags.push(Diagnostic { pos, message: "step without id".into() });
        return None;
    };
    let kind = match kind {
        Some(k) => k,
        None => {
            if !r.diags.iter().any(|d| d.pos == kind_pos && kind_pos != pos) {
                r.diags.push(Diagnostic { pos, message: format!("step {id:?} without kind") });
            }
            // Already reported: keep the step (as a kind with no further requirements) so that
            // steps needing it are not reported a second time. The playbook is not used.
            StepKind::DocsRender
        }
    };
    for (name, (_, ppos)) in &params {
        if !kind.params().contains(&name.as_str()) {
            r.diags
                .push(Diagnostic { pos: *ppos, message: format!("step {id:?}: {kind} takes no parameter {name:?}") });
        }
    }
    // Optional keys and their documented defaults (docs/ENGINE.md): the title is the id, a step
    // is estimated at 5 minutes with a 30-minute budget, and tried 3 times.
    Some(Step {
        title: title.unwrap_or_else(|| id.clone()),
        id,
        kind,
        needs_pos: needs.iter().map(|(_, p)| *p).collect(),
        needs: needs.into_iter().map(|(n, _)| n).collect(),
        estimate: estimate.unwrap_or(jiff::SignedDuration::from_mins(5)),
        budget: budget.unwrap_or(jiff::SignedDuration::from_mins(30)),
        attempts,
        params: params.into_iter().map(|(k, (v, _))| (k, v)).collect(),
        instructions,
        checklist: checklist.into_iter().map(|(c, _)| c).collect(),
        pos,
    })
}

/// Parses one playbook; returns it (when its structure could be read) and every diagnostic.
pub fn parse(text: &str) -> (Option<Playbook>, Vec<Diagnostic>) {
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut r = Reader { text, diags: Vec::new() };
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        r.error(span, format!("TOML: {}", e.message().trim()));
    }
    if !errors.is_empty() {
        return (None, r.diags);
    }
    let mut name = String::new();
    let mut description = String::new();
    let mut steps = Vec::new();
    let mut templates = Vec::new();
    let mut version_seen = false;
    for (k, v) in doc.get_ref().iter() {
        match k.get_ref().as_ref() {
            "version" => {
                version_seen = true;
                if !matches!(v.get_ref(), DeValue::Integer(i) if i.as_str() == "1") {
                    r.error(v.span(), "version must be 1");
                }
            }
            // A value that is not a string was reported by `string`, and a playbook with a
            // diagnostic is refused: the empty default is never used. Both keys are optional
            // labels for people; the engine knows a playbook by its file name.
            "name" => name = r.string(v, "name").unwrap_or_default(),
            "description" => description = r.string(v, "description").unwrap_or_default(),
            "step" => match v.get_ref() {
                DeValue::Array(items) => {
                    for item in items {
                        match item.get_ref() {
                            DeValue::Table(t) => {
                                if let Some(s) = parse_step(&mut r, t, item.span(), &mut templates) {
                                    steps.push(s);
                                }
                            }
                            _ => r.error(item.span(), "each [[step]] must be a table"),
                        }
                    }
                }
                _ => r.error(v.span(), "step must be an array of tables ([[step]])"),
            },
            other => r.error(k.span(), format!("unknown key {other:?} (known: version, name, description, step)")),
        }
    }
    if !version_seen {
        r.diags.push(Diagnostic { pos: Pos { line: 1, col: 1 }, message: "missing `version = 1`".into() });
    }
    for t in &templates {
        for (offset, message) in context::check_template(&t.text) {
            let pos = match offset {
                Some((line, col)) if line > 1 => Pos { line: t.pos.line + line - 1, col },
                Some((_, col)) => Pos { line: t.pos.line, col: t.pos.col + col },
                None => t.pos,
            };
            r.diags.push(Diagnostic { pos, message: format!("{}: {message}", t.what) });
        }
    }
    let book = Playbook { name, description, steps };
    r.diags.extend(book.check());
    r.diags.sort_by_key(|d| (d.pos.line, d.pos.col));
    (Some(book), r.diags)
}

/// The built-in playbooks (`playbooks/*.toml`), used unless a playbooks folder is configured.
pub const EMBEDDED: [(PlaybookName, &str); 2] = [
    (PlaybookName::Activation, include_str!("../../../playbooks/activation.toml")),
    (PlaybookName::Handback, include_str!("../../../playbooks/handback.toml")),
];

/// The playbooks the engine runs: those of `dir`, or the built-in ones. Every error comes back
/// as `file:line:col: message`; both playbooks must be there.
pub fn engine_playbooks(dir: Option<&Path>) -> Result<BTreeMap<PlaybookName, Playbook>, Vec<String>> {
    let mut books = BTreeMap::new();
    let mut errors = Vec::new();
    match dir {
        Some(dir) => {
            let (found, diags) = load_dir(dir);
            errors.extend(diags.iter().map(ToString::to_string));
            books = found;
        }
        None => {
            for (name, text) in EMBEDDED {
                let (book, diags) = parse(text);
                errors.extend(diags.iter().map(|d| format!("{name}.toml:{}:{}: {}", d.pos.line, d.pos.col, d.message)));
                if let Some(b) = book {
                    books.insert(name, b);
                }
            }
        }
    }
    if errors.is_empty() { Ok(books) } else { Err(errors) }
}

/// Reads and checks `activation.toml` and `handback.toml` in `dir`.
pub fn load_dir(dir: &Path) -> (BTreeMap<PlaybookName, Playbook>, Vec<FileDiagnostic>) {
    let mut books = BTreeMap::new();
    let mut diags = Vec::new();
    for name in PlaybookName::ALL {
        let file = dir.join(format!("{name}.toml"));
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                diags.push(FileDiagnostic { file, pos: Pos { line: 1, col: 1 }, message: format!("cannot read: {e}") });
                continue;
            }
        };
        let (book, ds) = parse(&text);
        diags.extend(ds.into_iter().map(|d| FileDiagnostic { file: file.clone(), pos: d.pos, message: d.message }));
        if let Some(b) = book {
            books.insert(name, b);
        }
    }
    (books, diags)
}

/// Rewrites the `estimate` of the steps named in `estimates` in a playbook's TOML text, keeping
/// everything else as written (comments, order, layout). Errors name what could not be done.
pub fn set_estimates(text: &str, estimates: &BTreeMap<String, jiff::SignedDuration>) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    let steps = doc
        .get_mut("step")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
        .ok_or_else(|| "no [[step]] tables".to_owned())?;
    let mut left: BTreeSet<&String> = estimates.keys().collect();
    for table in steps.iter_mut() {
        let Some(id) = table.get("id").and_then(toml_edit::Item::as_str).map(str::to_owned) else { continue };
        if let Some(d) = estimates.get(&id) {
            let decor = table.get("estimate").and_then(toml_edit::Item::as_value).map(|v| v.decor().clone());
            let mut value = toml_edit::Value::from(repli_core::playbook::format_duration(*d));
            if let Some(decor) = decor {
                *value.decor_mut() = decor;
            }
            table.insert("estimate", toml_edit::Item::Value(value));
            left.remove(&id);
        }
    }
    if let Some(id) = left.first() {
        return Err(format!("no step {id:?} in this playbook"));
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_rewritten_in_place_and_the_playbook_still_loads() {
        let text = include_str!("../../../playbooks/activation.toml");
        let new = BTreeMap::from([
            ("laptops".to_owned(), jiff::SignedDuration::from_mins(95)),
            ("domain".to_owned(), jiff::SignedDuration::from_mins(1)),
        ]);
        let out = set_estimates(text, &new).unwrap();
        let (book, diags) = parse(&out);
        assert!(diags.is_empty(), "{diags:?}");
        let book = book.unwrap();
        assert_eq!(book.step("laptops").unwrap().estimate, jiff::SignedDuration::from_mins(95));
        assert_eq!(book.step("domain").unwrap().estimate, jiff::SignedDuration::from_mins(1));
        let (before, _) = parse(text);
        let before = before.unwrap();
        for s in book.steps.iter().filter(|s| !new.contains_key(&s.id)) {
            assert_eq!(s.estimate, before.step(&s.id).unwrap().estimate, "{}", s.id);
        }
        // Only the two values changed: every comment and every other line is kept.
        let changed: Vec<(&str, &str)> = text.lines().zip(out.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(text.lines().count(), out.lines().count());
        let unknown = BTreeMap::from([("nope".to_owned(), jiff::SignedDuration::from_mins(1))]);
        assert!(set_estimates(text, &unknown).unwrap_err().contains("nope"));
        assert!(set_estimates("not = [toml", &new).is_err());
    }

    #[test]
    fn positions_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(position(text, 0), Pos { line: 1, col: 1 });
        assert_eq!(position(text, text.find("= 2").unwrap()), Pos { line: 2, col: 4 });
    }

    #[test]
    fn three_planted_errors_are_all_reported_with_their_lines() {
        let text = r#"version = 1
name = "t"

[[step]]
id = "domain"
kind = "m365.domian"

[[step]]
id = "accounts"
kind = "m365.accounts"
needs = ["domain", "ghost"]

[[step]]
id = "laptops"
kind = "manual"
instructions = "Préparer {{laptop}} portables pour {{commune}}"
"#;
        let (_, diags) = parse(text);
        let lines: Vec<(usize, &str)> = diags.iter().map(|d| (d.pos.line, d.message.as_str())).collect();
        assert_eq!(diags.len(), 3, "{lines:#?}");
        assert_eq!(diags[0].pos, Pos { line: 6, col: 8 });
        assert!(diags[0].message.contains("unknown kind \"m365.domian\""));
        assert_eq!(diags[1].pos.line, 11);
        assert!(diags[1].message.contains("unknown step \"ghost\""));
        assert_eq!(diags[2].pos.line, 16);
        assert!(diags[2].message.contains("unknown template variable \"laptop\""), "{}", diags[2].message);
    }

    #[test]
    fn syntax_errors_unknown_keys_and_cycles() {
        let (_, d) = parse("version = 1\n[[step]\nid = 'x'\n");
        assert!(d[0].message.starts_with("TOML:") && d[0].pos.line == 2, "{d:?}");
        let (_, d) = parse(
            "version = 1\ncolour = 'red'\n[[step]]\nid = 'a'\nkind = 'manual'\ninstructions = 'x'\nneeds = ['b']\nestimat = '5m'\n[[step]]\nid = 'b'\nkind = 'docs.render'\nneeds = ['a']\n",
        );
        let all: Vec<String> = d.iter().map(|d| format!("{}:{} {}", d.pos.line, d.pos.col, d.message)).collect();
        assert!(all.iter().any(|m| m.starts_with("2:1 unknown key \"colour\"")), "{all:?}");
        assert!(all.iter().any(|m| m.starts_with("8:1 unknown key \"estimat\"")), "{all:?}");
        assert!(all.iter().any(|m| m.contains("dependency cycle: a → b → a")), "{all:?}");
        let (_, d) =
            parse("[[step]]\nid = 'a'\nkind = 'docs.render'\nestimate = 'soon'\nparams = { force = 'true' }\n");
        let all: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert!(all.iter().any(|m| m.contains("missing `version = 1`")), "{all:?}");
        assert!(all.iter().any(|m| m.contains("is not a duration")), "{all:?}");
        assert!(all.iter().any(|m| m.contains("takes no parameter \"force\"")), "{all:?}");
    }

    #[test]
    fn template_syntax_errors_point_into_the_string() {
        let (_, d) = parse(
            "version = 1\n[[step]]\nid = 'a'\nkind = 'manual'\ninstructions = '''\nLigne un\nLigne {{#if commune}} sans fin\n'''\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("instructions: template syntax"), "{:?}", d[0]);
        assert!(d[0].pos.line >= 7, "{:?}", d[0]);
    }

    #[test]
    fn hostile_and_oversized_input_is_reported_not_panicking() {
        for text in [
            "\u{0}",
            "[[step]]\nid = 1\nkind = []\n",
            &"[[step]]\n".repeat(10_000),
            "version = 1\nstep = 'x'\n",
            "version = 2\n",
        ] {
            let (_, d) = parse(text);
            assert!(!d.is_empty(), "{text:.40}");
        }
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    #[test]
    fn the_shipped_playbooks_pass_the_check() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
        let (books, diags) = load_dir(&dir);
        assert!(diags.is_empty(), "{}", diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
        assert_eq!(books.len(), 2);
        let activation = &books[&PlaybookName::Activation];
        let schedule = activation.schedule().unwrap();
        assert_eq!(schedule.critical_path.last().map(String::as_str), Some("announce"));
        // The estimates leave room in 48 business hours.
        assert!(schedule.total < jiff::SignedDuration::from_hours(48), "{:?}", schedule.total);
    }
}
