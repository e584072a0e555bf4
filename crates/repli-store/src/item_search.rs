//! The inventory page's list: search, filters, sort and paging done in SQL, in two statements
//! (the page and the count), and the loans of every crisis for the export.

use repli_core::{ItemKind, ItemState};

use crate::inventory::{ITEM_COLUMNS_OF_I, ItemRecord, ItemRow, LOAN_SELECT, Loan, LoanRow, item_from, loan_from};
use crate::{Store, StoreError};

/// The column a list is sorted by (then by asset tag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ItemSort {
    #[default]
    Tag,
    Serial,
    Kind,
    Model,
    State,
    Crisis,
    Updated,
}

impl ItemSort {
    pub const ALL: [ItemSort; 7] =
        [Self::Tag, Self::Serial, Self::Kind, Self::Model, Self::State, Self::Crisis, Self::Updated];

    /// The SQL it sorts by: fixed text, never the caller's.
    fn column(self) -> &'static str {
        match self {
            Self::Tag => "i.asset_tag",
            Self::Serial => "i.serial",
            Self::Kind => "i.kind",
            Self::Model => "i.model",
            Self::State => "i.state",
            Self::Crisis => "i.crisis_id",
            Self::Updated => "i.updated_at",
        }
    }
}

/// What the list asks for; every text is matched as given (the store escapes `LIKE`'s
/// wildcards), none is ever written into the statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemQuery {
    /// Part of the serial, the asset tag or the model, any case.
    pub text: Option<String>,
    pub kind: Option<ItemKind>,
    pub state: Option<ItemState>,
    /// The crisis holding the item: its id, its commune's INSEE code, or part of its name.
    pub crisis: Option<String>,
    /// Part of the name of the agent holding it on an open loan, any case.
    pub holder: Option<String>,
    pub sort: ItemSort,
    pub descending: bool,
    pub offset: u32,
    /// Rows of the page (`None`: every row, for the export).
    pub limit: Option<u32>,
}

/// One line of the list: the item, the commune of the crisis holding it, the agent holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemListed {
    pub record: ItemRecord,
    pub commune: Option<String>,
    pub holder: Option<String>,
}

/// A page of the list and how many items match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemList {
    pub items: Vec<ItemListed>,
    pub total: i64,
}

/// A loan with its crisis's commune (the export of every loan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoanListed {
    pub commune: String,
    pub loan: Loan,
}

/// `%text%` for `LIKE … ESCAPE '\'`, the caller's `%`, `_` and `\` taken literally.
fn contains(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| {
        let escaped: String = t
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("%{escaped}%")
    })
}

const FROM: &str = "FROM items i \
     LEFT JOIN crises k ON k.id = i.crisis_id \
     LEFT JOIN communes m ON m.insee = k.commune \
     LEFT JOIN loans l ON l.serial = i.serial AND l.returned_at IS NULL \
     LEFT JOIN agents a ON a.id = l.agent_id \
     WHERE (?1 IS NULL OR i.serial LIKE ?1 ESCAPE '\\' OR i.asset_tag LIKE ?1 ESCAPE '\\' OR i.model LIKE ?1 ESCAPE '\\') \
     AND (?2 IS NULL OR i.kind = ?2) \
     AND (?3 IS NULL OR i.state = ?3) \
     AND (?4 IS NULL OR i.crisis_id = ?4 OR k.commune = ?4 OR m.name LIKE ?5 ESCAPE '\\') \
     AND (?6 IS NULL OR a.name LIKE ?6 ESCAPE '\\')";

impl Store {
    /// A page of the pool as the inventory page asks for it, and the count of every match.
    pub async fn item_list(&self, q: &ItemQuery) -> Result<ItemList, StoreError> {
        let text = contains(&q.text);
        let crisis_name = contains(&q.crisis);
        let holder = contains(&q.holder);
        let dir = if q.descending { "DESC" } else { "ASC" };
        // A bound LIMIT of -1 is SQLite's « no limit ».
        let limit = q.limit.map_or(-1, i64::from);
        let sql = format!(
            "SELECT {ITEM_COLUMNS_OF_I}, m.name, a.name {FROM} ORDER BY {} {dir}, i.asset_tag {dir} LIMIT ?7 OFFSET ?8",
            q.sort.column()
        );
        let mut conn = self.read.acquire().await?;
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&text)
            .bind(q.kind.map(ItemKind::as_str))
            .bind(q.state.map(ItemState::as_str))
            .bind(&q.crisis)
            .bind(&crisis_name)
            .bind(&holder)
            .bind(limit)
            .bind(i64::from(q.offset))
            .fetch_all(&mut *conn)
            .await?;
        let items = rows
            .into_iter()
            .map(|r| {
                let item: ItemRow = (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11);
                Ok(ItemListed { record: item_from(item)?, commune: r.12, holder: r.13 })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) {FROM}")))
            .bind(&text)
            .bind(q.kind.map(ItemKind::as_str))
            .bind(q.state.map(ItemState::as_str))
            .bind(&q.crisis)
            .bind(&crisis_name)
            .bind(&holder)
            .fetch_one(&mut *conn)
            .await?;
        Ok(ItemList { items, total })
    }

    /// Every loan of every crisis, by crisis then asset tag, with the commune of each crisis
    /// (the export).
    pub async fn loans_all(&self) -> Result<Vec<LoanListed>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let sql = format!("{LOAN_SELECT} ORDER BY l.crisis_id, i.asset_tag, l.id");
        let rows: Vec<LoanRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *conn).await?;
        let communes: std::collections::HashMap<String, String> = sqlx::query_as(
            "SELECT k.id, COALESCE(m.name, k.commune) FROM crises k LEFT JOIN communes m ON m.insee = k.commune",
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        rows.into_iter()
            .map(|r| {
                let loan = loan_from(r)?;
                Ok(LoanListed { commune: communes.get(&loan.crisis).cloned().unwrap_or_default(), loan })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_typed_are_taken_literally() {
        assert_eq!(contains(&Some("50%_a\\b".into())).as_deref(), Some("%50\\%\\_a\\\\b%"));
        assert_eq!(contains(&None), None);
    }

    #[test]
    fn every_sort_is_a_fixed_column() {
        for s in ItemSort::ALL {
            assert!(
                s.column().starts_with("i.") && s.column().chars().all(|c| c.is_ascii_lowercase() || "._".contains(c))
            );
        }
    }
}
