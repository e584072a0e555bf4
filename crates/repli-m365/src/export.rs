//! The data hand-back's reads: every message of every folder of the kit's accounts, their
//! OneDrive files and the Team's files, listed page by page (`@odata.nextLink`, the same
//! retries and throttle gate as every call), then each fetched as a stream into the export's
//! sink ([`crate::client::Graph::download`]).
//!
//! Pages and permissions (application, least privileged first):
//! - user-list-mailfolders, mailfolder-list-childfolders, user-list-messages:
//!   Mail.ReadBasic.All, Mail.Read;
//! - message-get with `$value` (outlook-get-mime-message): Mail.Read (the body);
//! - driveitem-delta (`/users/{id}/drive/root/delta`, `/groups/{id}/drive/root/delta`) and
//!   driveitem-get-content (302 to a pre-authenticated URL): Files.Read.All;
//! - channel-list (`GET /teams/{id}/channels`): Group.ReadWrite.All (held for provisioning);
//! - channel-list-messages (`$top` at most 50) and chatmessage-list-replies: application
//!   permissions ChannelMessage.Read.Group (resource-specific consent), ChannelMessage.Read.All,
//!   Group.Read.All, Group.ReadWrite.All (held for provisioning); and these are *protected
//!   APIs*: Microsoft must approve the app (teams-protected-apis) before they answer. An
//!   optional capability: one message is asked first; a 403 leaves the conversations to the
//!   manual step (the note below), never fails the export. No payment model applies to these two calls (teams-licenses lists only change
//!   notifications, the export APIs and policyViolation updates, and since 25 August 2025 none
//!   of them is metered).

use crate::ops::GraphProvider;
use crate::wire;
use repli_core::handback::{ChannelExport, ChannelPost, channel_html};
use repli_core::m365::{Error, ExportInventory, ExportItem, ExportKind, Fetched, ItemSink, Result};

fn channel_post(m: wire::ChatMessage) -> ChannelPost {
    let from = m.from.unwrap_or_default();
    let who = from.user.or(from.application).and_then(|i| i.display_name).unwrap_or_default();
    let body = m.body.unwrap_or_default();
    ChannelPost {
        id: m.id,
        created: m.created_date_time.unwrap_or_default(),
        from: who,
        subject: m.subject,
        content_type: body.content_type.unwrap_or_else(|| "text".into()),
        content: body.content.unwrap_or_default(),
        deleted: m.deleted_date_time,
        replies: Vec::new(),
    }
}

/// What the archive cannot hold by itself, in French for the DGS and the PV.
pub const CHANNEL_NOTE_FR: &str = "Les conversations des canaux de l'équipe ne sont pas exportées automatiquement : Microsoft n'en permet pas la lecture à l'application (une API protégée de Teams, dont Microsoft doit approuver l'accès pour l'application). Elles sont exportées à la main (étape « Remettre à la commune l'archive »), ou conservées dans l'équipe jusqu'à la décision de conservation.";

/// A group without its Team (called off before the Team step).
const NO_TEAM_FR: &str = "L'espace collaboratif n'a pas d'équipe Teams (kit arrêté avant sa création) : aucune conversation de canal à exporter.";

/// Channel messages (and replies) per page: the most channel-list-messages allows.
const CHANNEL_PAGE: usize = 50;

/// Accounts listed at once: enough for the listing to go at the tenant's rate (each account's
/// pages are one after the other, a round trip each); the gate paces them together. At 8, the
/// listing of 50 accounts ran at half a 150 requests/s tenant's rate, two seconds lost.
const LIST_CONCURRENCY: usize = 32;

/// Where Graph puts a drive item: `/drive/root:/A/B` (or `/drives/{id}/root:/A/B`) → `[A, B]`.
fn drive_folders(path: Option<&str>) -> Vec<String> {
    let Some(path) = path else { return Vec::new() };
    let rest = path.split_once("root:").map_or("", |(_, r)| r);
    rest.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// A 404 names whose mailbox or drive Graph does not find (a licence removed disables a
/// mailbox; an account deleted behind the kit's back): the step's error says which.
fn whose(e: Error, what: &str) -> Error {
    match e {
        Error::Graph { op, status: 404, code, message } => {
            Error::Graph { op, status: 404, code, message: format!("{what}: {message}") }
        }
        e => e,
    }
}

impl GraphProvider {
    pub(crate) async fn export_list(&self, domain: &str, nickname: &str) -> Result<ExportInventory> {
        use futures_util::StreamExt;
        let users = self.users_of(domain).await?;
        // Each account listed on its own (the tenant's gate paces them together), in the
        // accounts' order whatever finishes first.
        let listed: Vec<Result<ExportInventory>> = futures_util::stream::iter(users)
            .map(|user| async move {
                let mut inv = ExportInventory::default();
                let upn = user.user_principal_name.clone().unwrap_or_else(|| user.id.clone());
                self.list_mailbox(&user.id, &upn, &mut inv)
                    .await
                    .map_err(|e| whose(e, &format!("boîte aux lettres de {upn}")))?;
                let url = format!("/users/{}/drive/root/delta", user.id);
                match self.list_drive(&url, &upn, &mut inv).await {
                    // An account that never opened OneDrive has none (404): nothing to export.
                    Err(Error::Graph { status: 404, .. }) => {
                        inv.notes
                            .push(format!("{upn} : pas d'espace OneDrive (jamais ouvert), aucun fichier à exporter."));
                    }
                    other => other?,
                }
                Ok(inv)
            })
            .buffered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut inv = ExportInventory::default();
        for one in listed {
            let one = one?;
            inv.items.extend(one.items);
            inv.notes.extend(one.notes);
        }
        match self.find_group_id(nickname).await? {
            Some(group) => {
                let url = format!("/groups/{group}/drive/root/delta");
                self.list_drive(&url, "equipe", &mut inv)
                    .await
                    .map_err(|e| whose(e, "espace de fichiers de l'équipe"))?;
                self.list_channels(&group, &mut inv).await?;
            }
            None => {
                inv.notes.push(format!("Aucun espace collaboratif {nickname} : pas de fichiers d'équipe à exporter."));
                inv.notes.push(NO_TEAM_FR.to_string());
            }
        }
        Ok(inv)
    }

    /// The Team's channels, two items each (JSON and page) when the app may read their
    /// messages; otherwise the manual step's note.
    async fn list_channels(&self, team: &str, inv: &mut ExportInventory) -> Result<()> {
        let listed = self
            .graph()
            .list_all::<wire::ChannelRef>(
                "export.channels",
                "GET /teams/{id}/channels",
                &format!("/teams/{team}/channels"),
                false,
            )
            .await;
        let channels = match listed {
            // A group whose Team was never made (a kit called off during its provisioning).
            Err(Error::Graph { status: 404, .. }) => {
                inv.notes.push(NO_TEAM_FR.to_string());
                return Ok(());
            }
            other => other?,
        };
        let Some(first) = channels.first() else { return Ok(()) };
        // One message asked: a 403 says the app may not read them (not granted, or the
        // protected API not approved by Microsoft).
        let probe = format!("/teams/{team}/channels/{}/messages?$top=1", first.id);
        match self.graph().list_page::<wire::ChatMessage>("export.channel", &probe).await {
            Err(Error::Forbidden { .. }) => {
                inv.notes.push(CHANNEL_NOTE_FR.to_string());
                return Ok(());
            }
            other => {
                other?;
            }
        }
        for c in &channels {
            for (kind, ext, suffix) in
                [(ExportKind::ChannelMessages, "json", ""), (ExportKind::ChannelPage, "html", ":html")]
            {
                inv.items.push(ExportItem {
                    kind,
                    owner: "equipe".into(),
                    folder: Vec::new(),
                    name: format!("{}.{ext}", c.display_name),
                    content_url: format!("/teams/{team}/channels/{}", c.id),
                    graph_id: format!("channel:{}{suffix}", c.id),
                    size: None,
                    last_modified: String::new(),
                });
            }
        }
        inv.notes.push(format!(
            "Conversations des canaux de l'équipe exportées (nombre de canaux : {}), chacun en JSON et en page lisible (dossier « canaux »).",
            channels.len()
        ));
        Ok(())
    }

    /// A channel's messages, each with its replies, every page read.
    async fn channel_conversation(&self, item: &ExportItem) -> Result<ChannelExport> {
        let url = &item.content_url;
        let messages: Vec<wire::ChatMessage> = self
            .graph()
            .list_all(
                "export.channel",
                "GET /teams/{id}/channels/{id}/messages",
                &format!("{url}/messages?$top={CHANNEL_PAGE}"),
                false,
            )
            .await?;
        let mut posts = Vec::with_capacity(messages.len());
        for m in messages {
            let replies: Vec<wire::ChatMessage> = self
                .graph()
                .list_all(
                    "export.channel",
                    "GET /teams/{id}/channels/{id}/messages/{id}/replies",
                    &format!("{url}/messages/{}/replies?$top={CHANNEL_PAGE}", m.id),
                    false,
                )
                .await?;
            let mut post = channel_post(m);
            post.replies = replies.into_iter().map(channel_post).collect();
            posts.push(post);
        }
        let mut parts = url.trim_start_matches('/').split('/');
        let (team_id, channel_id) = (parts.nth(1).unwrap_or_default(), parts.nth(1).unwrap_or_default());
        let channel = item.name.rsplit_once('.').map_or(item.name.as_str(), |(n, _)| n);
        Ok(ChannelExport {
            team_id: team_id.to_string(),
            channel_id: channel_id.to_string(),
            channel: channel.to_string(),
            posts,
        })
    }

    async fn list_mailbox(&self, user: &str, upn: &str, inv: &mut ExportInventory) -> Result<()> {
        // Folders breadth first, each with its path from the top.
        let top: Vec<wire::MailFolder> = self
            .graph()
            .list_all(
                "export.mail",
                "GET /users/{id}/mailFolders",
                &format!("/users/{user}/mailFolders?includeHiddenFolders=true&$top=100"),
                false,
            )
            .await?;
        let mut queue: Vec<(wire::MailFolder, Vec<String>)> = top.into_iter().map(|f| (f, Vec::new())).collect();
        while let Some((folder, above)) = queue.pop() {
            let mut path = above;
            path.push(folder.display_name.clone().unwrap_or_else(|| folder.id.clone()));
            if folder.child_folder_count.unwrap_or(0) > 0 {
                let children: Vec<wire::MailFolder> = self
                    .graph()
                    .list_all(
                        "export.mail",
                        "GET /users/{id}/mailFolders/{id}/childFolders",
                        &format!("/users/{user}/mailFolders/{}/childFolders?$top=100", folder.id),
                        false,
                    )
                    .await?;
                queue.extend(children.into_iter().map(|c| (c, path.clone())));
            }
            let messages: Vec<wire::MessageHead> = self
                .graph()
                .list_all(
                    "export.mail",
                    "GET /users/{id}/mailFolders/{id}/messages",
                    &format!(
                        "/users/{user}/mailFolders/{}/messages?$select=id,subject,lastModifiedDateTime&$top=100",
                        folder.id
                    ),
                    false,
                )
                .await?;
            inv.items.extend(messages.into_iter().map(|m| ExportItem {
                kind: ExportKind::Message,
                owner: upn.to_string(),
                folder: path.clone(),
                name: m.subject.unwrap_or_default(),
                content_url: format!("/users/{user}/messages/{}/$value", m.id),
                graph_id: m.id,
                size: None,
                last_modified: m.last_modified_date_time.unwrap_or_default(),
            }));
        }
        Ok(())
    }

    async fn list_drive(&self, url: &str, owner: &str, inv: &mut ExportInventory) -> Result<()> {
        let items: Vec<wire::DriveItem> =
            self.graph().list_all("export.files", "GET …/drive/root/delta", &format!("{url}?$top=200"), false).await?;
        for item in items.into_iter().filter(|i| i.file.is_some() && i.deleted.is_none()) {
            let parent = item.parent_reference.as_ref();
            let Some(drive) = parent.and_then(|p| p.drive_id.clone()) else {
                return Err(Error::Decode {
                    op: "export.files".into(),
                    call: "GET …/drive/root/delta".into(),
                    detail: format!("item {} has no parentReference.driveId", item.id),
                });
            };
            inv.items.push(ExportItem {
                kind: ExportKind::File,
                owner: owner.to_string(),
                folder: drive_folders(parent.and_then(|p| p.path.as_deref())),
                name: item.name.clone().unwrap_or_else(|| item.id.clone()),
                content_url: format!("/drives/{drive}/items/{}/content", item.id),
                graph_id: item.id,
                size: item.size,
                last_modified: item.last_modified_date_time.unwrap_or_default(),
            });
        }
        Ok(())
    }

    async fn find_group_id(&self, nickname: &str) -> Result<Option<String>> {
        Ok(self.find_group(nickname).await?.map(|g| g.id))
    }

    pub(crate) async fn export_fetch(&self, item: &ExportItem, max: u64, sink: &mut dyn ItemSink) -> Result<Fetched> {
        if let Some(size) = item.size
            && size > max
        {
            return Ok(Fetched::TooLarge { size });
        }
        let op = match item.kind {
            ExportKind::Message => "export.message",
            ExportKind::File => "export.file",
            ExportKind::ChannelMessages | ExportKind::ChannelPage => {
                let conversation = match self.channel_conversation(item).await {
                    // The channel deleted since the listing.
                    Err(Error::Graph { status: 404, .. }) => return Ok(Fetched::Gone),
                    other => other?,
                };
                let bytes = if item.kind == ExportKind::ChannelMessages {
                    serde_json::to_vec_pretty(&conversation)
                        .map_err(|e| Error::Invalid(format!("export.channel: {e}")))?
                } else {
                    channel_html(&conversation).into_bytes()
                };
                if bytes.len() as u64 > max {
                    return Ok(Fetched::TooLarge { size: bytes.len() as u64 });
                }
                let op = "export.channel";
                sink.restart().map_err(|e| crate::client::sink_error(op, &e))?;
                sink.write(&bytes).map_err(|e| crate::client::sink_error(op, &e))?;
                return Ok(Fetched::Complete { bytes: bytes.len() as u64 });
            }
        };
        self.graph().download(op, &item.content_url, max, sink).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_paths_become_folders() {
        assert_eq!(drive_folders(Some("/drive/root:/Documents/A")), ["Documents", "A"]);
        assert_eq!(drive_folders(Some("/drives/b!x/root:")), Vec::<String>::new());
        assert_eq!(drive_folders(None), Vec::<String>::new());
    }
}
