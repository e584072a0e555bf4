//! Communes and conventions: synchronised from the reference CSV files at start-up.

use std::collections::HashMap;

use jiff::Timestamp;
use repli_core::{AuditAction, Commune, Convention, CrisisId, InseeCode};
use serde_json::json;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::audit::NewEntry;
use crate::{By, Store, StoreError};

/// A commune as the API shows it: with its convention and open crisis, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommuneRecord {
    pub commune: Commune,
    pub convention: Option<Convention>,
    pub open_crisis: Option<CrisisId>,
}

/// What a synchronisation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceSync {
    pub communes_added: usize,
    pub communes_updated: usize,
    pub conventions_added: Vec<String>,
    pub conventions_updated: Vec<String>,
    pub conventions_removed: Vec<String>,
}

impl ReferenceSync {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn record_from_row(r: &SqliteRow) -> Result<CommuneRecord, StoreError> {
    let insee: String = r.try_get("insee")?;
    let insee = InseeCode::parse(&insee).map_err(|_| StoreError::Corrupt { column: "communes.insee", value: insee })?;
    let population: i64 = r.try_get("population")?;
    let commune = Commune {
        insee: insee.clone(),
        name: r.try_get("name")?,
        population: u32::try_from(population)
            .map_err(|_| StoreError::Corrupt { column: "communes.population", value: population.to_string() })?,
    };
    let signed_on: Option<String> = r.try_get("signed_on")?;
    let convention = match signed_on {
        None => None,
        Some(d) => Some(Convention {
            insee,
            signed_on: d.parse().map_err(|_| StoreError::Corrupt { column: "conventions.signed_on", value: d })?,
            deliberation_ref: r.try_get("deliberation_ref")?,
        }),
    };
    let open: Option<String> = r.try_get("open_crisis")?;
    let open_crisis = open
        .map(|o| CrisisId::parse(&o).map_err(|_| StoreError::Corrupt { column: "crises.id", value: o }))
        .transpose()?;
    Ok(CommuneRecord { commune, convention, open_crisis })
}

impl Store {
    /// Upserts communes and replaces conventions with `conventions`, in one transaction, and
    /// audits what changed. Communes are never deleted (crises refer to them).
    pub async fn sync_reference(
        &self,
        communes: &[Commune],
        conventions: &[Convention],
        now: Timestamp,
    ) -> Result<ReferenceSync, StoreError> {
        let mut tx = self.write.begin().await?;
        let existing: HashMap<String, (String, i64)> =
            sqlx::query_as::<_, (String, String, i64)>("SELECT insee, name, population FROM communes")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(i, n, p)| (i, (n, p)))
                .collect();
        let mut sync = ReferenceSync::default();
        for c in communes {
            let row = (c.name.clone(), i64::from(c.population));
            match existing.get(c.insee.as_str()) {
                Some(old) if *old == row => continue,
                Some(_) => sync.communes_updated += 1,
                None => sync.communes_added += 1,
            }
            sqlx::query(
                "INSERT INTO communes (insee, name, population) VALUES (?, ?, ?) \
                 ON CONFLICT (insee) DO UPDATE SET name = excluded.name, population = excluded.population",
            )
            .bind(c.insee.as_str())
            .bind(&c.name)
            .bind(row.1)
            .execute(&mut *tx)
            .await?;
        }
        let old_conv: HashMap<String, (String, String)> =
            sqlx::query_as::<_, (String, String, String)>("SELECT insee, signed_on, deliberation_ref FROM conventions")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(i, d, r)| (i, (d, r)))
                .collect();
        for v in conventions {
            let row = (v.signed_on.to_string(), v.deliberation_ref.clone());
            match old_conv.get(v.insee.as_str()) {
                Some(old) if *old == row => continue,
                Some(_) => sync.conventions_updated.push(v.insee.to_string()),
                None => sync.conventions_added.push(v.insee.to_string()),
            }
            sqlx::query(
                "INSERT INTO conventions (insee, signed_on, deliberation_ref) VALUES (?, ?, ?) \
                 ON CONFLICT (insee) DO UPDATE SET signed_on = excluded.signed_on, \
                 deliberation_ref = excluded.deliberation_ref",
            )
            .bind(v.insee.as_str())
            .bind(&row.0)
            .bind(&row.1)
            .execute(&mut *tx)
            .await?;
        }
        for insee in old_conv.keys() {
            if !conventions.iter().any(|v| v.insee.as_str() == insee) {
                sqlx::query("DELETE FROM conventions WHERE insee = ?").bind(insee).execute(&mut *tx).await?;
                sync.conventions_removed.push(insee.clone());
            }
        }
        if !sync.is_empty() {
            sync.conventions_removed.sort();
            let details = json!({
                "communes_added": sync.communes_added,
                "communes_updated": sync.communes_updated,
                "conventions_added": sync.conventions_added,
                "conventions_updated": sync.conventions_updated,
                "conventions_removed": sync.conventions_removed,
            });
            let e = NewEntry {
                by: By::System,
                commune: None,
                crisis: None,
                action: AuditAction::ReferenceSync,
                target: "communes+conventions",
                details,
            };
            self.append(&mut tx, e, now).await?;
        }
        tx.commit().await?;
        Ok(sync)
    }

    pub async fn communes(&self) -> Result<Vec<CommuneRecord>, StoreError> {
        let rows = sqlx::query(COMMUNES_ALL_SQL).fetch_all(&self.read).await?;
        rows.iter().map(record_from_row).collect()
    }

    pub async fn commune(&self, insee: &InseeCode) -> Result<Option<CommuneRecord>, StoreError> {
        let row = sqlx::query(COMMUNE_ONE_SQL).bind(insee.as_str()).fetch_optional(&self.read).await?;
        row.as_ref().map(record_from_row).transpose()
    }
}

const COMMUNES_ALL_SQL: &str = "SELECT c.insee, c.name, c.population, v.signed_on, v.deliberation_ref, \
     (SELECT id FROM crises k WHERE k.commune = c.insee AND k.state NOT IN ('closed', 'rejected', 'cancelled') \
     AND k.exercise_id IS NULL) AS open_crisis FROM communes c LEFT JOIN conventions v ON v.insee = c.insee ORDER BY c.insee";

const COMMUNE_ONE_SQL: &str = "SELECT c.insee, c.name, c.population, v.signed_on, v.deliberation_ref, \
     (SELECT id FROM crises k WHERE k.commune = c.insee AND k.state NOT IN ('closed', 'rejected', 'cancelled') \
     AND k.exercise_id IS NULL) AS open_crisis FROM communes c LEFT JOIN conventions v ON v.insee = c.insee WHERE c.insee = ?";

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use repli_core::InseeCode;
    use repli_core::reference::parse_communes;

    #[tokio::test]
    async fn sync_is_idempotent_and_audited_once() {
        let (_d, store) = store().await;
        let all = store.communes().await.unwrap();
        assert_eq!(all.len(), 3);
        let aubagne = store.commune(&InseeCode::parse("13005").unwrap()).await.unwrap().unwrap();
        assert_eq!(aubagne.convention.unwrap().deliberation_ref, "DCM-2023-187");
        let marseille = store.commune(&InseeCode::parse("13055").unwrap()).await.unwrap().unwrap();
        assert!(marseille.convention.is_none());

        let communes = parse_communes("c", COMMUNES).unwrap();
        let before = store.verify_audit(None).await.unwrap().entries;
        let again = store.sync_reference(&communes, &[], t("2026-11-03T08:00:00Z")).await.unwrap();
        assert_eq!(again.conventions_removed, vec!["13001".to_string(), "13005".to_string()]);
        assert_eq!(store.verify_audit(None).await.unwrap().entries, before + 1);
        let same = store.sync_reference(&communes, &[], t("2026-11-03T08:00:00Z")).await.unwrap();
        assert!(same.is_empty());
        assert_eq!(store.verify_audit(None).await.unwrap().entries, before + 1);
    }
}
