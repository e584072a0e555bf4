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
//! - channel-list-messages: ChannelMessage.Read.All, a protected API Microsoft must approve
//!   for the app; not called, a manual step instead (the note below).

use crate::ops::GraphProvider;
use crate::wire;
use repli_core::m365::{Error, ExportInventory, ExportItem, ExportKind, Fetched, ItemSink, Result};

/// What the archive cannot hold by itself, in French for the DGS and the PV.
pub const CHANNEL_NOTE_FR: &str = "Les conversations des canaux de l'équipe ne sont pas exportées automatiquement : leur lecture par une application (ChannelMessage.Read.All) est une API protégée que Microsoft doit approuver. Elles sont exportées à la main (étape « Récupération des conversations »), ou conservées dans l'équipe jusqu'à la décision de conservation.";

/// Accounts listed at once.
const LIST_CONCURRENCY: usize = 8;

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
                    .map_err(|e| whose(e, &format!("mailbox of {upn}")))?;
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
                self.list_drive(&url, "equipe", &mut inv).await.map_err(|e| whose(e, "drive of the Team"))?;
            }
            None => {
                inv.notes.push(format!("Aucun espace collaboratif {nickname} : pas de fichiers d'équipe à exporter."))
            }
        }
        inv.notes.push(CHANNEL_NOTE_FR.to_string());
        Ok(inv)
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
