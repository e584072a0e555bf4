//! Which accounts had their credential sheet handed over. The passwords themselves are never
//! stored: a sheet is rendered with passwords set at that moment, and only the hand-over is
//! recorded here, with its audit entry, in one transaction.

use std::collections::BTreeSet;

use jiff::Timestamp;
use repli_core::{Actor, AuditAction, CrisisId};
use serde_json::json;

use crate::audit::NewEntry;
use crate::inventory::commune_of;
use crate::{Store, StoreError, time};

/// How the sheets were handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SheetsIssue<'a> {
    /// The first sheets of these accounts.
    New,
    /// New passwords for accounts whose sheets were lost, with the reason.
    Reissue { reason: &'a str },
}

impl Store {
    /// The accounts (lower-case logins) of a crisis whose sheet was handed over.
    pub async fn sheets_issued(&self, id: &CrisisId) -> Result<BTreeSet<String>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT upn FROM credential_sheets WHERE crisis_id = ?")
            .bind(id.as_str())
            .fetch_all(&self.read)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Records that these accounts' sheets were handed over, audited. A first issue refuses
    /// an account that already had its sheet (two issues raced): nothing is recorded then.
    pub async fn record_sheets(
        &self,
        id: &CrisisId,
        upns: &[String],
        issue: SheetsIssue<'_>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        let commune = commune_of(&mut tx, id).await?;
        for upn in upns {
            let upn = upn.to_ascii_lowercase();
            let written = sqlx::query(
                "INSERT INTO credential_sheets (crisis_id, upn, issued_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (crisis_id, upn) DO UPDATE SET issued_at = ?3 WHERE ?4",
            )
            .bind(id.as_str())
            .bind(&upn)
            .bind(time::to_db(now))
            .bind(matches!(issue, SheetsIssue::Reissue { .. }))
            .execute(&mut *tx)
            .await?;
            if written.rows_affected() == 0 {
                return Err(StoreError::SheetsAlreadyIssued { id: id.clone() });
            }
        }
        // Logins are built from names: the audit entry counts the accounts.
        let (action, details) = match issue {
            SheetsIssue::New => (AuditAction::DocumentsCredentialSheets, json!({ "accounts": upns.len() })),
            SheetsIssue::Reissue { reason } => {
                (AuditAction::DocumentsCredentialSheetsReissued, json!({ "accounts": upns.len(), "reason": reason }))
            }
        };
        let e = NewEntry::crisis(actor, &commune, id.as_str(), action, "credential_sheets", details);
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
