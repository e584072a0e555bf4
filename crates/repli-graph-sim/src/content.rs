//! What the kit's agents wrote during the crisis: mailboxes with folders and MIME messages,
//! OneDrive and Team drives with files, for the data hand-back. Each account's mailbox and
//! drive, and each group's drive, are filled the first time they are read, from the
//! [`ContentSpec`] in force then: deterministic for a given spec and object id, so `demo` and
//! the tests always have data.
//!
//! The rules, each from its page:
//! - user-list-mailfolders, mailfolder-list-childfolders, user-list-messages: pages of at most
//!   `$top` items with `@odata.nextLink`;
//! - message-get with `$value` (outlook-get-mime-message): the message's MIME as the body;
//! - driveitem-delta: every item of the drive (root, folders, files) with `parentReference`
//!   (`driveId`, `path` as `/drive/root:/A/B`), paged;
//! - driveitem-get-content: `302 Found` to a pre-authenticated download URL, valid for a short
//!   time, that takes no Authorization header (a bearer token sent to it is refused here, as a
//!   client must not send one) and honours `Range` (`206 Partial Content`, `Content-Range`).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// What each mailbox and drive holds when first read (`POST /_sim/content` changes it for
/// those not read yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContentSpec {
    /// Messages per mailbox, spread over its folders (inbox, a subfolder of it, sent items).
    pub messages: u32,
    /// About how large each message's MIME is.
    pub message_bytes: usize,
    /// Sizes of the files of each account's OneDrive and of each Team's drive.
    pub files: Vec<u64>,
    /// Adds the awkward cases: names Windows refuses or reserves, names equal but for case, a
    /// zero-byte file, a deep and long path, a message in ISO-8859-1 with an encoded subject.
    pub awkward: bool,
    /// Messages per mailbox listed but answering 404 when fetched (deleted in between).
    pub vanishing: u32,
    /// Messages per Team channel (channel-list-messages), each with `channel_replies` replies
    /// (chatmessage-list-replies); with `awkward`, the first one's body is hostile HTML.
    pub channel_messages: u32,
    pub channel_replies: u32,
}

impl Default for ContentSpec {
    fn default() -> Self {
        ContentSpec {
            messages: 6,
            message_bytes: 2_000,
            files: vec![1_024, 300_000],
            awkward: true,
            vanishing: 0,
            channel_messages: 3,
            channel_replies: 2,
        }
    }
}

#[derive(Debug, Clone)]
struct Folder {
    id: String,
    name: String,
    parent: Option<String>,
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    folder: String,
    subject: String,
    modified: String,
    mime: Bytes,
    vanished: bool,
}

#[derive(Debug, Clone)]
struct Mailbox {
    folders: Vec<Folder>,
    messages: Vec<Message>,
}

#[derive(Debug, Clone)]
struct DriveItem {
    id: String,
    name: String,
    /// `/drive/root:` then the folders.
    parent_path: String,
    folder: bool,
    size: u64,
    seed: u64,
}

#[derive(Debug, Clone)]
struct Drive {
    id: String,
    items: Vec<DriveItem>,
}

/// A channel message or reply.
#[derive(Debug, Clone)]
struct Post {
    id: String,
    created: String,
    from: String,
    html: bool,
    content: String,
}

/// A channel's messages, each with its replies.
type Thread = Vec<(Post, Vec<Post>)>;

/// Every mailbox and drive read so far.
#[derive(Debug, Default)]
pub struct Content {
    pub spec: ContentSpec,
    /// By (team, channel): each message with its replies.
    channels: BTreeMap<(String, String), Thread>,
    mailboxes: BTreeMap<String, Mailbox>,
    /// By owner (user or group id).
    drives: BTreeMap<String, Drive>,
}

fn h64(s: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The bytes of a generated file from `offset`, `len` of them: the same every time.
pub fn file_bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut block = offset / 8;
    let skip = (offset % 8) as usize;
    while out.len() < len + skip {
        out.extend_from_slice(&splitmix(seed ^ block).to_le_bytes());
        block += 1;
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

fn mime(owner: &str, subject_header: &str, body: &str, charset: &str, size: usize, n: usize) -> Bytes {
    let mut m = format!(
        "From: {owner}\r\nTo: prefecture@example.invalid\r\nSubject: {subject_header}\r\nDate: Mon, 4 May 2026 10:{:02}:00 +0200\r\nMessage-ID: <{n}.{}@sim.invalid>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        n % 60,
        h64(owner)
    )
    .into_bytes();
    if charset.eq_ignore_ascii_case("iso-8859-1") {
        // « Décision » in Latin-1: bytes that are not UTF-8.
        m.extend_from_slice(b"D\xe9cision du maire : r\xe9quisition de la salle.\r\n");
    } else {
        m.extend_from_slice(body.as_bytes());
    }
    while m.len() < size {
        m.extend_from_slice(b"Point de situation de la cellule de crise, suite.\r\n");
    }
    Bytes::from(m)
}

impl Content {
    fn mailbox(&mut self, user_id: &str, upn: &str) -> &Mailbox {
        let spec = self.spec.clone();
        self.mailboxes.entry(user_id.to_string()).or_insert_with(|| {
            let f = |n: &str| format!("{}-{n}", &user_id[..user_id.len().min(8)]);
            let folders = vec![
                Folder { id: f("inbox"), name: "Boîte de réception".into(), parent: None },
                Folder { id: f("sent"), name: "Éléments envoyés".into(), parent: None },
                Folder { id: f("pref"), name: "Préfecture".into(), parent: Some(f("inbox")) },
            ];
            let mut messages = Vec::new();
            for n in 0..spec.messages as usize {
                let folder = folders[n % folders.len()].id.clone();
                let subject = format!("Point de situation n° {n}");
                messages.push(Message {
                    id: format!("AAMk{}-{n:05}", &h64(user_id).to_string()),
                    folder,
                    subject: subject.clone(),
                    modified: format!("2026-05-04T10:{:02}:00Z", n % 60),
                    mime: mime(upn, &subject, "Message de la cellule de crise.\r\n", "utf-8", spec.message_bytes, n),
                    vanished: n < spec.vanishing as usize,
                });
            }
            if spec.awkward {
                let n = messages.len();
                messages.push(Message {
                    id: format!("AAMk{}-latin1", h64(user_id)),
                    folder: folders[0].id.clone(),
                    subject: "Décision: réquisition?".into(),
                    modified: "2026-05-05T08:00:00Z".into(),
                    mime: mime(upn, "=?ISO-8859-1?Q?D=E9cision=3A_r=E9quisition=3F?=", "", "iso-8859-1", 0, n),
                    vanished: false,
                });
                messages.push(Message {
                    id: format!("AAMk{}-nosubject", h64(user_id)),
                    folder: folders[1].id.clone(),
                    subject: String::new(),
                    modified: "2026-05-05T08:01:00Z".into(),
                    mime: mime(upn, "", "", "utf-8", 0, n + 1),
                    vanished: false,
                });
            }
            Mailbox { folders, messages }
        })
    }

    fn drive(&mut self, owner: &str) -> &Drive {
        let spec = self.spec.clone();
        self.drives.entry(owner.to_string()).or_insert_with(|| {
            let id = format!("b!{}", h64(&format!("drive-{owner}")));
            let item = |name: &str, parent: &str, folder: bool, size: u64| DriveItem {
                id: format!("01{}", h64(&format!("{owner}/{parent}/{name}"))),
                name: name.into(),
                parent_path: format!("/drive/root:{parent}"),
                folder,
                size,
                seed: h64(&format!("{owner}/{parent}/{name}/content")),
            };
            let mut items = vec![item("Documents", "", true, 0)];
            for (n, size) in spec.files.iter().enumerate() {
                items.push(item(&format!("rapport-{n}.bin"), "/Documents", false, *size));
            }
            if spec.awkward {
                let deep = format!(
                    "/Documents/{}/{}",
                    "Dossier très long ".repeat(6).trim(),
                    "Sous-dossier ".repeat(6).trim()
                );
                items.extend([
                    item("arrêté: 2026/05?.pdf", "/Documents", false, 2_048),
                    item("CON.txt", "/Documents", false, 10),
                    item("Note.txt", "/Documents", false, 11),
                    item("note.txt", "/Documents", false, 12),
                    item("vide.txt", "/Documents", false, 0),
                    item("fin. ", "/Documents", false, 5),
                    item("Dossier très long", "/Documents", true, 0),
                    item(&format!("{}.docx", "compte-rendu ".repeat(12).trim()), &deep, false, 300),
                ]);
            }
            Drive { id, items }
        })
    }

    fn channel(&mut self, team: &str, channel: &str) -> &Thread {
        let spec = self.spec.clone();
        self.channels.entry((team.to_string(), channel.to_string())).or_insert_with(|| {
            let base = h64(&format!("{team}/{channel}"));
            let post = |id: String, n: u32, text: String, html: bool| Post {
                id,
                created: format!("2026-05-04T{:02}:{:02}:00Z", 8 + n / 60 % 10, n % 60),
                from: format!("Agent {:03}", n % 7 + 1),
                html,
                content: text,
            };
            (0..spec.channel_messages)
                .map(|n| {
                    let (text, html) = if spec.awkward && n == 0 {
                        ("<p>Réunion à 18 h <script>alert('canal')</script> & \"ordre du jour\"</p>".to_string(), true)
                    } else {
                        (format!("Point de situation du canal, message {n}."), false)
                    };
                    let head = post(format!("{base}{n:04}"), n, text, html);
                    let replies = (0..spec.channel_replies)
                        .map(|r| {
                            post(
                                format!("{base}{n:04}{r:03}"),
                                n + r + 1,
                                format!("Réponse {r} au message {n}."),
                                false,
                            )
                        })
                        .collect();
                    (head, replies)
                })
                .collect()
        })
    }

    fn drive_by_id(&self, drive_id: &str) -> Option<&Drive> {
        self.drives.values().find(|d| d.id == drive_id)
    }

    /// Every item of the mailboxes and drives filled so far: `{"spec", "messages": [{"id",
    /// "vanished"}], "files": [{"id", "size"}]}` (folders left out).
    pub fn listing(&self) -> Value {
        let messages: Vec<Value> = self
            .mailboxes
            .values()
            .flat_map(|mb| &mb.messages)
            .map(|m| json!({"id": m.id, "vanished": m.vanished}))
            .collect();
        let files: Vec<Value> = self
            .drives
            .values()
            .flat_map(|d| &d.items)
            .filter(|i| !i.folder)
            .map(|i| json!({"id": i.id, "size": i.size}))
            .collect();
        json!({"spec": self.spec, "messages": messages, "files": files})
    }

    pub fn new(spec: ContentSpec) -> Self {
        Content { spec, ..Default::default() }
    }
}

fn post_json(p: &Post) -> Value {
    json!({
        "id": p.id,
        "messageType": "message",
        "createdDateTime": p.created,
        "deletedDateTime": null,
        "subject": null,
        "from": {"user": {"displayName": p.from}},
        "body": {"contentType": if p.html { "html" } else { "text" }, "content": p.content},
    })
}

/// One answer of the content routes.
pub enum Answer {
    Json(u16, Value),
    Raw { content_type: &'static str, bytes: Bytes },
    Redirect(String),
}

fn not_found(what: &str) -> Answer {
    Answer::Json(
        404,
        json!({"error": {"code": "ErrorItemNotFound", "message": format!("The specified object was not found in the store: {what}.")}}),
    )
}

/// A page of `items` under `base/path`, `$top` (at most `max_page`) and `$skiptoken`.
fn page(base: &str, path: &str, query: &BTreeMap<String, String>, items: Vec<Value>, max_page: usize) -> Answer {
    let top = query.get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(10).clamp(1, 999).min(max_page.max(1));
    let skip = query.get("$skiptoken").and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
    let mut out = json!({"value": page});
    if skip + top < total {
        let mut q: Vec<String> = query
            .iter()
            .filter(|(k, _)| k.as_str() != "$skiptoken")
            .map(|(k, v)| format!("{k}={}", form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
            .collect();
        q.push(format!("$skiptoken={}", skip + top));
        out["@odata.nextLink"] = json!(format!("{base}{path}?{}", q.join("&")));
    }
    Answer::Json(200, out)
}

/// Who a path's owner segment names.
pub enum Owner {
    User { id: String, upn: String },
    Group { id: String },
}

/// The content routes (relative to `/v1.0`); `None` for any other path. `owner` resolves a
/// user (id or UPN) or a group id to an existing object.
/// Where the simulator answers: Graph's base (`…/v1.0`, for next links), its root (download
/// URLs), and the largest page.
pub struct Bases<'a> {
    pub graph: &'a str,
    pub sim: &'a str,
    pub max_page: usize,
}

pub fn route(
    content: &mut Content,
    req: &crate::tenant::Req,
    bases: &Bases<'_>,
    owner: impl Fn(&str, &str) -> Option<Owner>,
) -> Option<Answer> {
    let (method, path, query) = (req.method.as_str(), req.path.as_str(), &req.query);
    let (graph_base, sim_base, max_page) = (bases.graph, bases.sim, bases.max_page);
    if method != "GET" {
        return None;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let user = |key: &str| match owner("users", key) {
        Some(Owner::User { id, upn }) => Some((id, upn)),
        _ => None,
    };
    let folder_json = |mb: &Mailbox, f: &Folder| {
        json!({
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent,
            "childFolderCount": mb.folders.iter().filter(|c| c.parent.as_deref() == Some(f.id.as_str())).count(),
            "totalItemCount": mb.messages.iter().filter(|m| m.folder == f.id).count(),
        })
    };
    Some(match segments.as_slice() {
        ["users", u, "mailFolders"] => {
            let Some((id, upn)) = user(u) else { return Some(not_found(u)) };
            let mb = content.mailbox(&id, &upn).clone();
            let items = mb.folders.iter().filter(|f| f.parent.is_none()).map(|f| folder_json(&mb, f)).collect();
            page(graph_base, path, query, items, max_page)
        }
        ["users", u, "mailFolders", f, "childFolders"] => {
            let Some((id, upn)) = user(u) else { return Some(not_found(u)) };
            let mb = content.mailbox(&id, &upn).clone();
            if !mb.folders.iter().any(|x| x.id == *f) {
                return Some(not_found(f));
            }
            let items =
                mb.folders.iter().filter(|x| x.parent.as_deref() == Some(*f)).map(|x| folder_json(&mb, x)).collect();
            page(graph_base, path, query, items, max_page)
        }
        ["users", u, "mailFolders", f, "messages"] => {
            let Some((id, upn)) = user(u) else { return Some(not_found(u)) };
            let mb = content.mailbox(&id, &upn);
            if !mb.folders.iter().any(|x| x.id == *f) {
                return Some(not_found(f));
            }
            let items = mb
                .messages
                .iter()
                .filter(|m| m.folder == *f)
                .map(|m| json!({"id": m.id, "subject": m.subject, "lastModifiedDateTime": m.modified, "parentFolderId": m.folder}))
                .collect();
            page(graph_base, path, query, items, max_page)
        }
        ["users", u, "messages", m, "$value"] => {
            let Some((id, upn)) = user(u) else { return Some(not_found(u)) };
            let mb = content.mailbox(&id, &upn);
            match mb.messages.iter().find(|x| x.id == *m) {
                Some(msg) if !msg.vanished => Answer::Raw { content_type: "text/plain", bytes: msg.mime.clone() },
                _ => not_found(m),
            }
        }
        ["users", u, "drive"] | ["groups", u, "drive"] => {
            let Some(key) = owner(segments[0], u).map(|o| match o {
                Owner::User { id, .. } | Owner::Group { id } => id,
            }) else {
                return Some(not_found(u));
            };
            let d = content.drive(&key);
            Answer::Json(200, json!({"id": d.id, "driveType": "business", "name": "Documents"}))
        }
        ["users", u, "drive", "root", "delta"] | ["groups", u, "drive", "root", "delta"] => {
            let Some(key) = owner(segments[0], u).map(|o| match o {
                Owner::User { id, .. } | Owner::Group { id } => id,
            }) else {
                return Some(not_found(u));
            };
            let d = content.drive(&key).clone();
            let mut items = vec![
                json!({"id": format!("{}-root", d.id), "name": "root", "root": {}, "folder": {"childCount": 1}, "parentReference": {"driveId": d.id}}),
            ];
            items.extend(d.items.iter().map(|i| {
                let mut v = json!({
                    "id": i.id,
                    "name": i.name,
                    "size": i.size,
                    "lastModifiedDateTime": "2026-05-06T09:00:00Z",
                    "parentReference": {"driveId": d.id, "path": i.parent_path},
                });
                if i.folder {
                    v["folder"] = json!({"childCount": 0});
                } else {
                    v["file"] = json!({"mimeType": "application/octet-stream"});
                }
                v
            }));
            page(graph_base, path, query, items, max_page)
        }
        ["teams", t, "channels", c, "messages"] => {
            if owner("groups", t).is_none() {
                return Some(not_found(t));
            }
            let items = content.channel(t, c).iter().map(|(p, _)| post_json(p)).collect();
            // channel-list-messages: "up to 50 channel messages per page".
            page(graph_base, path, query, items, max_page.min(50))
        }
        ["teams", t, "channels", c, "messages", m, "replies"] => {
            if owner("groups", t).is_none() {
                return Some(not_found(t));
            }
            let Some((_, replies)) = content.channel(t, c).iter().find(|(p, _)| p.id == *m) else {
                return Some(not_found(m));
            };
            let items = replies.iter().map(post_json).collect();
            page(graph_base, path, query, items, max_page.min(50))
        }
        ["drives", d, "items", i, "content"] => match content.drive_by_id(d) {
            Some(drive) if drive.items.iter().any(|x| x.id == *i && !x.folder) => {
                Answer::Redirect(format!("{sim_base}/_sim/download/{d}/{i}?tempauth=sim"))
            }
            _ => not_found(i),
        },
        _ => return None,
    })
}

/// `GET /_sim/download/{drive}/{item}`: the pre-authenticated URL. No Authorization header
/// (401 when one is sent), `Range: bytes=a-` or `bytes=a-b` honoured, the bytes generated as
/// they are sent (a 2 GB file costs no memory), at `bandwidth` bytes per second if set.
pub fn download(content: &Content, rest: &str, headers: &HeaderMap, bandwidth: Option<u64>) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return (
            StatusCode::UNAUTHORIZED,
            "a pre-authenticated download URL takes no Authorization header (driveitem-get-content)",
        )
            .into_response();
    }
    let mut parts = rest.trim_matches('/').split('/');
    let (Some(d), Some(i)) = (parts.next(), parts.next()) else { return StatusCode::NOT_FOUND.into_response() };
    let Some(item) = content.drive_by_id(d).and_then(|drive| drive.items.iter().find(|x| x.id == i && !x.folder))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let total = item.size;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::trim);
    let (start, end, partial) = match range {
        None => (0, total, false),
        Some(r) => {
            let parsed = r.strip_prefix("bytes=").and_then(|spec| {
                let (a, b) = spec.split_once('-')?;
                let a: u64 = a.trim().parse().ok()?;
                let b: u64 = if b.trim().is_empty() { total.checked_sub(1)? } else { b.trim().parse().ok()? };
                (a <= b && a < total).then_some((a, b.min(total - 1) + 1))
            });
            match parsed {
                Some((a, b)) => (a, b, true),
                None => {
                    return Response::builder()
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                        .body(Body::empty())
                        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
                }
            }
        }
    };
    let seed = item.seed;
    const CHUNK: u64 = 256 * 1024;
    let stream = futures_util::stream::unfold(start, move |at| async move {
        if at >= end {
            return None;
        }
        let n = CHUNK.min(end - at);
        if let Some(bps) = bandwidth.filter(|b| *b > 0) {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / bps as f64)).await;
        }
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(file_bytes(seed, at, n as usize))), at + n))
    });
    let mut b = Response::builder()
        .status(if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes");
    if partial {
        b = b.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{total}", end - 1));
    }
    b.body(Body::from_stream(stream)).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_are_the_same_bytes_at_any_offset() {
        let whole = file_bytes(7, 0, 1000);
        assert_eq!(file_bytes(7, 13, 100), whole[13..113].to_vec());
        assert_eq!(file_bytes(7, 999, 1), whole[999..].to_vec());
        assert_ne!(file_bytes(8, 0, 16), whole[..16].to_vec());
    }
}
