//! The invariants of docs/ARCHITECTURE.md that the compiler does not check: which crate may
//! depend on which (read from `cargo metadata`), and which of replid's modules may import which
//! (read from the sources).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_owned()
}

/// Each workspace crate's dependencies, by kind (`normal`, `dev`, `build`).
fn dependencies() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let mut deps = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().expect("a package's name").to_owned();
        let mut kinds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for d in p["dependencies"].as_array().expect("dependencies") {
            let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
            kinds.entry(kind).or_default().insert(d["name"].as_str().expect("a dependency's name").to_owned());
        }
        deps.insert(name, kinds);
    }
    deps
}

fn normal<'a>(deps: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>, krate: &str) -> &'a BTreeSet<String> {
    static EMPTY: BTreeSet<String> = BTreeSet::new();
    deps.get(krate).unwrap_or_else(|| panic!("{krate} is a workspace crate")).get("normal").unwrap_or(&EMPTY)
}

#[test]
fn only_the_operations_layer_reaches_the_store() {
    let deps = dependencies();
    let users: BTreeSet<&str> =
        deps.keys().filter(|k| normal(&deps, k).contains("repli-store")).map(String::as_str).collect();
    assert_eq!(users, BTreeSet::from(["repli-app"]), "crates depending on repli-store");
    for edge in ["replid", "repli-cli", "repli-bench"] {
        let d = normal(&deps, edge);
        assert!(d.contains("repli-app") || d.contains("repli-proto"), "{edge} goes through repli-app/proto");
        assert!(!d.contains("sqlx"), "{edge} does not open the database itself");
    }
    // The end-to-end tests open the file only to inject faults, as a dev-dependency.
    assert!(!normal(&deps, "repli-tests").contains("repli-store"));
}

#[test]
fn dependencies_point_inward() {
    let deps = dependencies();
    let ours: BTreeSet<&str> = deps.keys().map(String::as_str).collect();
    let of = |k: &str| normal(&deps, k).iter().filter(|d| ours.contains(d.as_str())).cloned().collect::<BTreeSet<_>>();
    assert!(of("repli-core").is_empty(), "core depends on no crate of ours");
    assert!(of("repli-graph-sim").is_empty(), "the simulator plays Graph's server, none of ours");
    assert_eq!(of("repli-engine"), BTreeSet::from(["repli-core".to_owned()]), "the engine knows only core");
    for lower in
        ["repli-core", "repli-store", "repli-proto", "repli-config", "repli-docs", "repli-m365", "repli-engine"]
    {
        assert!(!of(lower).contains("repli-app"), "{lower} does not depend on the operations layer");
        assert!(!of(lower).contains("replid"), "{lower} does not depend on the daemon");
    }
    let cli = normal(&deps, "repli-cli");
    assert!(!cli.contains("replid") && !cli.contains("axum"), "the CLI does not link the server: {cli:?}");
    assert!(!of("repli-app").contains("replid"), "the operations layer knows no HTTP edge");
    assert!(!normal(&deps, "repli-app").contains("axum"), "nor axum");
}

/// The `use`/path mentions of `crate::…::name` and `super::name` in a file.
fn mentions(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i + prefix.len()..];
        let name: String = tail.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.insert(name);
        }
        rest = tail;
    }
    out
}

fn area_modules(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("a module folder") {
        let path = e.expect("an entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("a file name").to_owned();
        if path.extension().is_some_and(|x| x == "rs") && stem != "mod" {
            out.insert(stem, std::fs::read_to_string(&path).expect("a source file"));
        }
    }
    out
}

#[test]
fn no_handler_module_imports_another() {
    let src = workspace_root().join("crates/replid/src");
    let api = area_modules(&src.join("api"));
    let web = area_modules(&src.join("web"));
    assert!(api.len() >= 5 && web.len() >= 10, "the areas are where the layout says: {api:?}");
    let mut broken = Vec::new();
    for (side, modules, other) in [("api", &api, "web"), ("web", &web, "api")] {
        // An area declares routes; a module without any is shared (web/view.rs: the typed
        // layout and forms), which areas may import and which imports no area.
        let areas: BTreeSet<&String> =
            modules.keys().filter(|m| modules[*m].contains("pub(crate) fn routes()")).collect();
        for (name, text) in modules.iter() {
            let siblings: BTreeSet<String> = mentions(text, &format!("crate::{side}::"))
                .into_iter()
                .chain(mentions(text, "super::"))
                .filter(|m| areas.contains(m) && m != name)
                .collect();
            if !siblings.is_empty() {
                broken.push(format!("{side}/{name}.rs imports the area(s) {siblings:?}"));
            }
            if text.contains(&format!("crate::{other}::")) {
                broken.push(format!("{side}/{name}.rs reaches into {other}/"));
            }
        }
        // The shared modules are named: web/view.rs (typed layout and forms) and web/flash.rs
        // (messages held by the server); a new one is a decision, made here.
        let shared: BTreeSet<&str> = if side == "web" { ["view", "flash"].into() } else { BTreeSet::new() };
        let unexpected: Vec<&String> =
            modules.keys().filter(|m| !areas.contains(m) && !shared.contains(m.as_str())).collect();
        if !unexpected.is_empty() {
            broken.push(format!("{side}/: shared modules besides the named ones: {unexpected:?}"));
        }
    }
    // Nothing under replid, the CLI or the bench names the store, whatever the Cargo.toml says.
    for dir in ["crates/replid/src", "crates/repli-cli/src", "crates/repli-bench/src"] {
        for path in walk(&workspace_root().join(dir)) {
            let text = std::fs::read_to_string(&path).expect("a source file");
            if text.contains("repli_store") || text.contains("sqlx::") {
                broken.push(format!("{} names the store", path.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn the_import_check_sees_a_sibling_import() {
    // The check above must be able to fail: a made-up area importing its sibling is caught.
    let text = "use crate::web::crisis::lend_form;\nuse super::journal::PAGE;\n";
    let found: BTreeSet<String> = mentions(text, "crate::web::").into_iter().chain(mentions(text, "super::")).collect();
    assert_eq!(found, BTreeSet::from(["crisis".to_owned(), "journal".to_owned()]));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("a folder") {
        let path = e.expect("an entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out
}
