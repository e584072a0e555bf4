//! The data hand-back's archive: how each exported item is named inside it, and the manifest
//! that lists every item with its fate. Pure: the export that writes the files and the
//! verification that reads them live in `repli-app` (`handback`).
//!
//! Names are safe on Windows, Linux and macOS alike, deterministic (the same inventory gives
//! the same names, so a resumed export finds what it wrote) and unique without regard to case
//! (Windows and macOS fold case). Whatever had to change is kept: the manifest records the
//! original path beside the archive name.

use crate::m365::{ExportItem, ExportKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The manifest's format string.
pub const FORMAT: &str = "repli-handback-v1";
/// Prefixed to the manifest's bytes before signing: a hand-back manifest's signature is never
/// a snapshot manifest's nor a checkpoint's.
pub const SIGNED_PREFIX: &[u8] = b"repli-handback-manifest-v1\n";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
/// Longest path inside the archive, in characters: Windows' classic MAX_PATH is 260 for the
/// whole path, and the commune extracts the archive somewhere (`C:\Users\…\Restitution\`).
pub const MAX_PATH_CHARS: usize = 180;
/// Longest component (file or folder name), in characters.
pub const MAX_COMPONENT_CHARS: usize = 80;

/// One message of a Team channel, with its replies, as the export writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPost {
    pub id: String,
    /// `createdDateTime`, as Graph gives it.
    pub created: String,
    /// Who wrote it (`from.user.displayName`, or the application's), empty for a system event.
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `text` or `html`, as Graph gives the body.
    pub content_type: String,
    pub content: String,
    /// Set when the message was deleted (its content is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<ChannelPost>,
}

/// A Team channel's whole conversation: the archive's `canaux/equipe/<channel>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelExport {
    pub team_id: String,
    pub channel_id: String,
    pub channel: String,
    pub posts: Vec<ChannelPost>,
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The conversation as a page to read (French), every value escaped: a message's HTML body is
/// shown as its source text, never interpreted (it came from whoever wrote in the channel).
pub fn channel_html(c: &ChannelExport) -> String {
    fn post(p: &ChannelPost, out: &mut String, depth: usize) {
        let class = if depth == 0 { "message" } else { "reponse" };
        out.push_str(&format!(
            "<article class=\"{class}\"><p><strong>{}</strong> — {}</p>",
            escape_html(if p.from.is_empty() { "(événement)" } else { &p.from }),
            escape_html(&p.created)
        ));
        if let Some(subject) = p.subject.as_deref().filter(|s| !s.is_empty()) {
            out.push_str(&format!("<p><em>{}</em></p>", escape_html(subject)));
        }
        if p.deleted.is_some() {
            out.push_str("<p><em>Message supprimé.</em></p>");
        } else {
            out.push_str(&format!("<pre>{}</pre>", escape_html(&p.content)));
        }
        for r in &p.replies {
            post(r, out, depth + 1);
        }
        out.push_str("</article>\n");
    }
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\"><title>Canal {}</title>\
         <style>body{{font-family:sans-serif;max-width:50em;margin:auto}}article.reponse{{margin-left:2em}}pre{{white-space:pre-wrap}}</style></head><body>\n\
         <h1>Canal « {} »</h1>\n<p>{} message(s), avec leurs réponses. Le fichier JSON voisin contient les mêmes messages ; le corps d'un message mis en forme est montré tel qu'enregistré par Microsoft 365.</p>\n",
        escape_html(&c.channel),
        escape_html(&c.channel),
        c.posts.len()
    );
    for p in &c.posts {
        post(p, &mut out, 0);
    }
    out.push_str("</body></html>\n");
    out
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum EntryStatus {
    /// Written, synced, hashed.
    Exported,
    /// Listed, then gone when fetched (404): deleted in between.
    Gone,
    /// Larger than the export accepts (`[handback] max_item_bytes`): listed, not fetched.
    TooLarge,
    /// Could not be fetched: Graph's or the disk's words.
    Failed(String),
}

impl EntryStatus {
    /// Whether the item is accounted for: exported, or known to be gone. A failed or too large
    /// item leaves the export incomplete (ops waive it with a reason, or fix and retry).
    pub fn settled(&self) -> bool {
        matches!(self, Self::Exported | Self::Gone)
    }

    /// In French, for the DGS and the PV.
    pub fn fr(&self) -> String {
        match self {
            Self::Exported => "exporté".into(),
            Self::Gone => "supprimé avant l'export (introuvable)".into(),
            Self::TooLarge => "trop volumineux, non exporté".into(),
            Self::Failed(why) => format!("échec : {why}"),
        }
    }
}

/// One item of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Inside the archive, `/`-separated (present only when exported).
    pub path: String,
    /// Where it was in Microsoft 365: owner, folders and name as Graph gave them.
    pub original: String,
    pub kind: ExportKind,
    pub graph_id: String,
    pub last_modified: String,
    /// Bytes written (exported), or the size Graph announced (other states; 0 when unknown).
    pub size: u64,
    /// Lower-case hex SHA-256 of the file (exported only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(flatten)]
    pub status: EntryStatus,
}

/// What a hand-back archive holds, signed with the audit key beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub crisis: String,
    pub domain: String,
    /// RFC 3339.
    pub created_at: String,
    /// The audit key (hex) it is signed with. A claim only: a verifier trusts the key it pins.
    pub public_key: String,
    /// Sorted by path, then Graph id.
    pub entries: Vec<ManifestEntry>,
    /// What the export could not cover by itself (channel messages: a manual step), in French.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Manifest {
    /// Every item exported or known gone: nothing failed, nothing left out.
    pub fn complete(&self) -> bool {
        self.entries.iter().all(|e| e.status.settled())
    }

    /// (exported items, their bytes, items not exported).
    pub fn tally(&self) -> (usize, u64, usize) {
        let exported: Vec<&ManifestEntry> = self.entries.iter().filter(|e| e.status == EntryStatus::Exported).collect();
        (exported.len(), exported.iter().map(|e| e.size).sum(), self.entries.len() - exported.len())
    }
}

/// The bytes a manifest's signature covers.
pub fn signed_bytes(manifest: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(SIGNED_PREFIX.len() + manifest.len());
    b.extend_from_slice(SIGNED_PREFIX);
    b.extend_from_slice(manifest);
    b
}

const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// One path component made safe: characters Windows refuses (`<>:"/\|?*`, controls) become
/// `_`, trailing dots and spaces go, reserved device names (`CON`, `com1.txt`) get a `_` in
/// front, `.` and `..` and the empty name become `_`, and a long name is cut (at a character
/// boundary, keeping a short extension).
pub fn safe_component(name: &str) -> String {
    let mut s: String =
        name.chars()
            .map(|c| {
                if c.is_control() || matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
    let trimmed = s.trim_end_matches(['.', ' ']).trim_start_matches(' ').to_string();
    s = trimmed;
    if s.is_empty() {
        s = "_".into();
    }
    let stem = s.split('.').next().unwrap_or_default().trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        s = format!("_{s}");
    }
    if s.chars().count() > MAX_COMPONENT_CHARS {
        let ext = s.rfind('.').map(|i| &s[i..]).filter(|e| e.chars().count() <= 10 && e.len() > 1).unwrap_or("");
        let keep = MAX_COMPONENT_CHARS - ext.chars().count();
        let stem: String = s.chars().take(keep).collect();
        s = format!("{}{ext}", stem.trim_end_matches(['.', ' ']));
    }
    s
}

fn short_hash(id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(id.as_bytes())[..4])
}

/// Where Graph had the item, as people read it: `owner/folder/…/name`.
pub fn original_path(item: &ExportItem) -> String {
    let mut parts = vec![item.owner.clone()];
    parts.extend(item.folder.iter().cloned());
    parts.push(item.name.clone());
    parts.join("/")
}

/// The archive path an item would get with no collision: `messages/<owner>/<folders>/<subject>
/// -<id hash>.eml`, `fichiers/<owner>/<folders>/<name>`; a path over [`MAX_PATH_CHARS`] keeps
/// its root, owner and name under `_long/<hash>/`.
fn wanted_path(item: &ExportItem) -> String {
    let (root, name) = match item.kind {
        // A subject is neither unique nor a file name: the id's hash makes it both.
        ExportKind::Message => {
            let subject: String = item.name.chars().take(50).collect();
            let subject = if subject.trim().is_empty() { "(sans objet)".to_string() } else { subject };
            ("messages", format!("{}-{}.eml", safe_component(&subject), short_hash(&item.graph_id)))
        }
        ExportKind::File => ("fichiers", safe_component(&item.name)),
        ExportKind::ChannelMessages | ExportKind::ChannelPage => ("canaux", safe_component(&item.name)),
    };
    let owner = safe_component(&item.owner);
    let mut parts = vec![root.to_string(), owner.clone()];
    parts.extend(item.folder.iter().map(|f| safe_component(f)));
    parts.push(name.clone());
    let path = parts.join("/");
    if path.chars().count() <= MAX_PATH_CHARS {
        return path;
    }
    let folder = item.folder.join("/");
    format!("{root}/{owner}/_long/{}/{name}", short_hash(&folder))
}

/// Archive paths for `items` (by position): deterministic, safe, unique without regard to
/// case. `taken` holds what an earlier attempt already gave (by Graph id): those keep their
/// path, and no new item takes one of them. Colliding items are ordered by Graph id; the
/// second and later get ` (2)`, ` (3)`… before their extension.
pub fn archive_paths(items: &[ExportItem], taken: &BTreeMap<String, String>) -> Vec<String> {
    let mut used: BTreeSet<String> = taken.values().map(|p| p.to_lowercase()).collect();
    let mut out = vec![String::new(); items.len()];
    let mut order: Vec<usize> = (0..items.len()).collect();
    let keys: Vec<String> = items.iter().map(|i| wanted_path(i).to_lowercase()).collect();
    order.sort_by(|&a, &b| (&keys[a], &items[a].graph_id).cmp(&(&keys[b], &items[b].graph_id)));
    // Items already named first: their names are fixed.
    for &i in &order {
        if let Some(p) = taken.get(&items[i].graph_id) {
            out[i] = p.clone();
        }
    }
    for &i in &order {
        if !out[i].is_empty() {
            continue;
        }
        let wanted = wanted_path(&items[i]);
        let mut candidate = wanted.clone();
        let mut n = 2;
        while used.contains(&candidate.to_lowercase()) {
            let (dir, file) = wanted.rsplit_once('/').unwrap_or(("", &wanted));
            let (stem, ext) = match file.rfind('.') {
                Some(d) if d > 0 => (&file[..d], &file[d..]),
                _ => (file, ""),
            };
            candidate = format!("{dir}/{stem} ({n}){ext}");
            n += 1;
        }
        used.insert(candidate.to_lowercase());
        out[i] = candidate;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: ExportKind, owner: &str, folder: &[&str], name: &str, id: &str) -> ExportItem {
        ExportItem {
            kind,
            owner: owner.into(),
            folder: folder.iter().map(|s| (*s).to_string()).collect(),
            name: name.into(),
            graph_id: id.into(),
            content_url: format!("/x/{id}"),
            size: None,
            last_modified: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn components_are_safe_on_windows() {
        assert_eq!(safe_component("rapport: final?.docx"), "rapport_ final_.docx");
        assert_eq!(safe_component("CON"), "_CON");
        assert_eq!(safe_component("com1.txt"), "_com1.txt");
        assert_eq!(safe_component("console.txt"), "console.txt");
        assert_eq!(safe_component("fin. "), "fin");
        assert_eq!(safe_component(".."), "_");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component("a\u{0}b\nc"), "a_b_c");
        assert_eq!(safe_component("../../etc/passwd"), ".._.._etc_passwd");
        let long = format!("{}.pdf", "é".repeat(300));
        let s = safe_component(&long);
        assert_eq!(s.chars().count(), MAX_COMPONENT_CHARS);
        assert!(s.ends_with(".pdf"));
    }

    #[test]
    fn paths_are_unique_without_case_deterministic_and_stable_across_resumes() {
        let items = vec![
            item(ExportKind::File, "a@x.fr", &["Docs"], "Note.txt", "2"),
            item(ExportKind::File, "a@x.fr", &["Docs"], "note.txt", "1"),
            item(ExportKind::File, "a@x.fr", &["Docs"], "NOTE.TXT", "3"),
            item(ExportKind::Message, "a@x.fr", &["Boîte de réception"], "", "m1"),
            item(ExportKind::Message, "a@x.fr", &["Boîte de réception"], "", "m2"),
            item(ExportKind::File, "a@x.fr", &[&"dossier".repeat(30), &"sous".repeat(30)], "f.txt", "4"),
        ];
        let paths = archive_paths(&items, &BTreeMap::new());
        assert_eq!(paths[1], "fichiers/a@x.fr/Docs/note.txt", "the smallest id keeps the name");
        assert_eq!(paths[0], "fichiers/a@x.fr/Docs/Note (2).txt");
        assert_eq!(paths[2], "fichiers/a@x.fr/Docs/NOTE (3).TXT");
        assert_ne!(paths[3], paths[4], "messages without subject are told apart by their id");
        assert!(paths[3].starts_with("messages/a@x.fr/Boîte de réception/(sans objet)-"));
        assert!(paths[5].contains("/_long/") && paths[5].chars().count() <= MAX_PATH_CHARS);
        assert_eq!(archive_paths(&items, &BTreeMap::new()), paths, "deterministic");
        let set: BTreeSet<String> = paths.iter().map(|p| p.to_lowercase()).collect();
        assert_eq!(set.len(), paths.len());
        // A resumed export keeps what it wrote, even if the inventory changed in between.
        let taken: BTreeMap<String, String> = [("2".to_string(), "fichiers/a@x.fr/Docs/note.txt".to_string())].into();
        let again = archive_paths(&items, &taken);
        assert_eq!(again[0], "fichiers/a@x.fr/Docs/note.txt");
        assert_eq!(again[1], "fichiers/a@x.fr/Docs/note (2).txt");
    }

    #[test]
    fn a_manifest_is_complete_when_every_item_is_exported_or_gone() {
        let entry = |status| ManifestEntry {
            path: "p".into(),
            original: "o".into(),
            kind: ExportKind::File,
            graph_id: "1".into(),
            last_modified: String::new(),
            size: 3,
            sha256: None,
            status,
        };
        let mut m = Manifest {
            format: FORMAT.into(),
            crisis: "c".into(),
            domain: "d".into(),
            created_at: String::new(),
            public_key: String::new(),
            entries: vec![entry(EntryStatus::Exported), entry(EntryStatus::Gone)],
            notes: vec![],
        };
        assert!(m.complete());
        assert_eq!(m.tally(), (1, 3, 1));
        m.entries.push(entry(EntryStatus::TooLarge));
        assert!(!m.complete());
        let json = serde_json::to_value(&m.entries[2]).unwrap();
        assert_eq!(json["status"], "too_large");
        let failed = serde_json::to_value(entry(EntryStatus::Failed("disque plein".into()))).unwrap();
        assert_eq!(failed["detail"], "disque plein");
        let back: ManifestEntry = serde_json::from_value(failed).unwrap();
        assert_eq!(back.status, EntryStatus::Failed("disque plein".into()));
    }
}
