//! The equipment pool: import, allocation across concurrent crises (one transaction, one
//! writer: no item is ever reserved twice), named loans, check-in, wipe records.

use jiff::{SignedDuration, Timestamp};
use repli_core::{Actor, AuditAction, CrisisId, ExerciseMode, Item, ItemKind, ItemState};
use serde_json::json;
use sqlx::SqliteConnection;

use crate::audit::NewEntry;
use crate::time::{self, opt_from_db};
use crate::{AgentsLock, By, Holding, Store, StoreError};

/// An item as stored, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRecord {
    pub item: Item,
    pub state: ItemState,
    pub crisis: Option<String>,
    pub updated_at: Timestamp,
}

/// One line of an item's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemEvent {
    pub at: Timestamp,
    pub actor: String,
    pub crisis: Option<String>,
    pub from: Option<String>,
    pub to: String,
    pub note: Option<String>,
}

/// What a crisis wanted of a kind and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub crisis: String,
    pub kind: ItemKind,
    pub wanted: i64,
    pub allocated: i64,
}

impl Need {
    pub fn shortage(&self) -> i64 {
        (self.wanted - self.allocated).max(0)
    }
}

/// One agent of the commune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub service: String,
}

/// One loan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loan {
    /// The crisis it was lent to.
    pub crisis: String,
    pub serial: String,
    pub asset_tag: String,
    pub kind: ItemKind,
    pub model: String,
    pub imei: Option<String>,
    pub iccid: Option<String>,
    pub msisdn: Option<String>,
    pub agent: Option<Agent>,
    pub lent_at: Timestamp,
    pub due_back: Timestamp,
    pub returned_at: Option<Timestamp>,
    pub condition: Option<String>,
    pub note: Option<String>,
}

pub use repli_core::inventory::Condition;

/// What ops may change of an item (its serial, kind and identifiers never change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemEdit {
    pub asset_tag: String,
    pub model: String,
    pub notes: String,
    /// `Ok` or `Damaged` (its physical condition).
    pub condition: Condition,
}

/// What an item's page shows beside its record: notes, condition, and its SIM links.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemExtras {
    pub notes: String,
    pub condition: String,
    /// The SIM card this phone or router holds: (serial, asset tag).
    pub sim: Option<(String, String)>,
    /// The phone or router this SIM card sits in: (serial, asset tag).
    pub in_device: Option<(String, String)>,
}

/// Why a SIM link was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimLinkRefusal {
    /// Only a phone or a router holds a SIM.
    NotADevice { serial: String, kind: ItemKind },
    /// The item to put in is not a SIM card.
    NotASim { serial: String, kind: ItemKind },
    /// The SIM already sits in another device.
    AlreadyIn { sim: String, device: String },
}

impl std::fmt::Display for SimLinkRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotADevice { serial, kind } => write!(f, "{serial} is a {kind}, not a phone or router"),
            Self::NotASim { serial, kind } => write!(f, "{serial} is a {kind}, not a SIM card"),
            Self::AlreadyIn { sim, device } => write!(f, "SIM {sim} is already in {device}"),
        }
    }
}

/// What one step does to many items ([`Store::bulk`]).
#[derive(Debug, Clone)]
pub enum BulkOp {
    /// Each returned laptop or phone wiped, under one method, operator and certificate (a
    /// wiping station's batch report).
    Wipe(Wipe),
    /// Each returned router, SIM or printer checked, with what was checked.
    Check(String),
    /// Each lent item taken back in good condition by the crisis holding it.
    Return,
}

/// A wipe record, required before a returned device can be lent again.
#[derive(Debug, Clone)]
pub struct Wipe {
    pub method: String,
    pub operator: String,
    pub certificate: String,
}

pub(crate) fn actor_name(by: By<'_>) -> String {
    match by {
        By::User(a) => a.name.clone(),
        By::System => "replid".into(),
    }
}

/// The agents list of a crisis can change until its hand-back opens.
async fn agents_open_in(conn: &mut SqliteConnection, id: &CrisisId) -> Result<(), StoreError> {
    let state: String = sqlx::query_scalar("SELECT state FROM crises WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::CrisisNotFound(id.clone()))?;
    let state: repli_core::CrisisState =
        state.parse().map_err(|_| StoreError::Corrupt { column: "crises.state", value: state.clone() })?;
    if state.is_open() && state != repli_core::CrisisState::Handback {
        Ok(())
    } else {
        Err(StoreError::AgentsListClosed { id: id.clone(), state })
    }
}

/// Appends agents and keeps the crisis's count of named agents; returns the new count.
async fn insert_agents_in(
    conn: &mut SqliteConnection,
    id: &CrisisId,
    agents: &[(String, String)],
) -> Result<i64, StoreError> {
    for (name, service) in agents {
        sqlx::query("INSERT INTO agents (crisis_id, name, service) VALUES (?, ?, ?)")
            .bind(id.as_str())
            .bind(name)
            .bind(service)
            .execute(&mut *conn)
            .await?;
    }
    Ok(sqlx::query_scalar(
        "UPDATE crises SET agents_named = (SELECT COUNT(*) FROM agents WHERE crisis_id = ?1) WHERE id = ?1 \
         RETURNING agents_named",
    )
    .bind(id.as_str())
    .fetch_one(&mut *conn)
    .await?)
}

pub(crate) type ItemRow = (
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
);

const ITEM_COLUMNS: &str =
    "serial, asset_tag, kind, model, imei, iccid, msisdn, apn, location, state, crisis_id, updated_at";
/// [`ITEM_COLUMNS`] of the table aliased `i`.
pub(crate) const ITEM_COLUMNS_OF_I: &str = "i.serial, i.asset_tag, i.kind, i.model, i.imei, i.iccid, i.msisdn, i.apn, \
     i.location, i.state, i.crisis_id, i.updated_at";

pub(crate) fn item_from(r: ItemRow) -> Result<ItemRecord, StoreError> {
    let kind = r.2.parse().map_err(|_| StoreError::Corrupt { column: "items.kind", value: r.2.clone() })?;
    let state = r.9.parse().map_err(|_| StoreError::Corrupt { column: "items.state", value: r.9.clone() })?;
    Ok(ItemRecord {
        item: Item {
            serial: r.0,
            asset_tag: r.1,
            kind,
            model: r.3,
            imei: r.4,
            iccid: r.5,
            msisdn: r.6,
            apn: r.7,
            location: r.8,
        },
        state,
        crisis: r.10,
        updated_at: time::from_db("items.updated_at", &r.11)?,
    })
}

/// Moves one item, recording its history. Refuses when it is not in `from`.
#[allow(clippy::too_many_arguments)] // a private helper: each argument is one fact of the move
async fn move_item(
    conn: &mut SqliteConnection,
    serial: &str,
    from: &[ItemState],
    to: ItemState,
    crisis: Option<&str>,
    actor: &str,
    note: Option<&str>,
    now: Timestamp,
) -> Result<ItemState, StoreError> {
    let row: Option<(String, Option<String>)> = sqlx::query_as("SELECT state, crisis_id FROM items WHERE serial = ?")
        .bind(serial)
        .fetch_optional(&mut *conn)
        .await?;
    let (state, held_by) = row.ok_or_else(|| StoreError::UnknownItem(serial.to_owned()))?;
    let state: ItemState = state.parse().map_err(|_| StoreError::Corrupt { column: "items.state", value: state })?;
    if !from.contains(&state) {
        return Err(StoreError::ItemInState { serial: serial.to_owned(), state });
    }
    let keeps_crisis = matches!(
        to,
        ItemState::Reserved | ItemState::Prepared | ItemState::Lent | ItemState::Returned | ItemState::Wiping
    );
    let new_crisis = if keeps_crisis { crisis.map(str::to_owned).or(held_by.clone()) } else { None };
    sqlx::query("UPDATE items SET state = ?, crisis_id = ?, updated_at = ? WHERE serial = ?")
        .bind(to.as_str())
        .bind(&new_crisis)
        .bind(time::to_db(now))
        .bind(serial)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO item_events (serial, at, actor, crisis_id, from_state, to_state, note) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(serial)
        .bind(time::to_db(now))
        .bind(actor)
        .bind(crisis.map(str::to_owned).or(held_by))
        .bind(state.as_str())
        .bind(to.as_str())
        .bind(note)
        .execute(&mut *conn)
        .await?;
    Ok(state)
}

/// Where a returned item goes once wiped or checked: an item that came back damaged is repaired
/// before anyone gets it again.
async fn after_return(conn: &mut SqliteConnection, serial: &str) -> Result<ItemState, StoreError> {
    let last: Option<Option<String>> =
        sqlx::query_scalar("SELECT condition FROM loans WHERE serial = ? ORDER BY lent_at DESC, id DESC LIMIT 1")
            .bind(serial)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(if last.flatten().as_deref() == Some("damaged") { ItemState::Maintenance } else { ItemState::Available })
}

/// The crisis an item is held for (`None`: free); an unknown serial is an error.
async fn held_for(conn: &mut SqliteConnection, serial: &str) -> Result<Option<String>, StoreError> {
    let held: Option<Option<String>> = sqlx::query_scalar("SELECT crisis_id FROM items WHERE serial = ?")
        .bind(serial)
        .fetch_optional(&mut *conn)
        .await?;
    held.ok_or_else(|| StoreError::UnknownItem(serial.to_owned()))
}

pub(crate) async fn commune_of(conn: &mut SqliteConnection, id: &CrisisId) -> Result<String, StoreError> {
    let c: Option<String> = sqlx::query_scalar("SELECT commune FROM crises WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    c.ok_or_else(|| StoreError::CrisisNotFound(id.clone()))
}

/// What a real crisis took from an exercise's crisis: the details of its `inventory.preempt`
/// audit entry, written and read back as this type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preempted {
    pub by_crisis: String,
    pub serials: Vec<String>,
    pub asset_tags: Vec<String>,
}

impl Store {
    /// Imports items, all or nothing; refuses serials, asset tags, IMEIs or ICCIDs already in
    /// the pool, every problem reported with its line.
    /// The refusals an import of `items` would meet, without writing anything.
    pub async fn check_items(&self, items: &[(String, u64, Item)]) -> Result<Vec<String>, StoreError> {
        let mut conn = self.read.acquire().await?;
        clashes(&mut conn, items).await
    }

    pub async fn import_items(
        &self,
        items: &[(String, u64, Item)],
        by: By<'_>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut tx = self.write.begin().await?;
        let errors = clashes(&mut tx, items).await?;
        if !errors.is_empty() {
            return Err(StoreError::Import(errors));
        }
        let actor = actor_name(by);
        for (source, _, it) in items {
            sqlx::query(
                "INSERT INTO items (serial, asset_tag, kind, model, imei, iccid, msisdn, apn, location, state, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'available', ?)",
            )
            .bind(&it.serial)
            .bind(&it.asset_tag)
            .bind(it.kind.as_str())
            .bind(&it.model)
            .bind(&it.imei)
            .bind(&it.iccid)
            .bind(&it.msisdn)
            .bind(&it.apn)
            .bind(&it.location)
            .bind(time::to_db(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO item_events (serial, at, actor, to_state, note) VALUES (?, ?, ?, 'available', ?)")
                .bind(&it.serial)
                .bind(time::to_db(now))
                .bind(&actor)
                .bind(format!("import {source}"))
                .execute(&mut *tx)
                .await?;
        }
        let e = NewEntry {
            by,
            commune: None,
            crisis: None,
            action: AuditAction::InventoryImport,
            target: "pool",
            details: json!({ "items": items.len(), "files": items.iter().map(|i| i.0.as_str()).collect::<std::collections::BTreeSet<_>>() }),
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(items.len())
    }

    /// Counts per kind and state.
    pub async fn inventory_counts(&self) -> Result<Vec<(ItemKind, ItemState, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT kind, state, COUNT(*) FROM items GROUP BY kind, state ORDER BY kind, state")
                .fetch_all(&self.read)
                .await?;
        rows.into_iter()
            .map(|(k, s, n)| {
                Ok((
                    k.parse().map_err(|_| StoreError::Corrupt { column: "items.kind", value: k })?,
                    s.parse().map_err(|_| StoreError::Corrupt { column: "items.state", value: s })?,
                    n,
                ))
            })
            .collect()
    }

    /// Items, optionally those held for one crisis, by asset tag.
    pub async fn items(&self, crisis: Option<&str>) -> Result<Vec<ItemRecord>, StoreError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE (?1 IS NULL OR crisis_id = ?1) ORDER BY asset_tag");
        let rows: Vec<ItemRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(crisis).fetch_all(&self.read).await?;
        rows.into_iter().map(item_from).collect()
    }

    /// One item (by serial or asset tag) with its history.
    /// The serial of the item a scanned or typed code names: its serial or its label (asset
    /// tag), exactly, else ignoring case when only one item matches.
    pub async fn item_serial(&self, code: &str) -> Result<Option<String>, StoreError> {
        let exact: Option<String> = sqlx::query_scalar("SELECT serial FROM items WHERE serial = ?1 OR asset_tag = ?1")
            .bind(code)
            .fetch_optional(&self.read)
            .await?;
        if exact.is_some() {
            return Ok(exact);
        }
        let loose: Vec<String> = sqlx::query_scalar(
            "SELECT serial FROM items WHERE serial = ?1 COLLATE NOCASE OR asset_tag = ?1 COLLATE NOCASE LIMIT 2",
        )
        .bind(code)
        .fetch_all(&self.read)
        .await?;
        Ok(if loose.len() == 1 { loose.into_iter().next() } else { None })
    }

    pub async fn item(&self, key: &str) -> Result<Option<(ItemRecord, Vec<ItemEvent>)>, StoreError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE serial = ?1 OR asset_tag = ?1");
        let row: Option<ItemRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(&self.read).await?;
        let Some(row) = row else { return Ok(None) };
        let rec = item_from(row)?;
        type EventRow = (String, String, Option<String>, Option<String>, String, Option<String>);
        let events: Vec<EventRow> = sqlx::query_as(
            "SELECT at, actor, crisis_id, from_state, to_state, note FROM item_events WHERE serial = ? ORDER BY id",
        )
        .bind(&rec.item.serial)
        .fetch_all(&self.read)
        .await?;
        let events = events
            .into_iter()
            .map(|(at, actor, crisis, from, to, note)| {
                Ok(ItemEvent { at: time::from_db("item_events.at", &at)?, actor, crisis, from, to, note })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some((rec, events)))
    }

    /// Records what a crisis needs, per kind (replacing earlier figures).
    pub async fn set_needs(&self, id: &CrisisId, needs: &[(ItemKind, u32)], now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for (kind, n) in needs {
            sqlx::query(
                "INSERT INTO crisis_needs (crisis_id, kind, wanted, requested_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (crisis_id, kind) DO UPDATE SET wanted = excluded.wanted",
            )
            .bind(id.as_str())
            .bind(kind.as_str())
            .bind(i64::from(*n))
            .bind(time::to_db(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What every crisis wanted and got, oldest request first.
    pub async fn needs(&self, crisis: Option<&str>) -> Result<Vec<Need>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT n.crisis_id, n.kind, n.wanted, COALESCE(n.counted, (SELECT COUNT(*) FROM items i \
             WHERE i.crisis_id = n.crisis_id AND i.kind = n.kind AND i.state IN ('reserved', 'prepared', 'lent'))) \
             FROM crisis_needs n \
             WHERE (?1 IS NULL OR n.crisis_id = ?1) ORDER BY n.requested_at, n.crisis_id, n.kind",
        )
        .bind(crisis)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(crisis, kind, wanted, allocated)| {
                Ok(Need {
                    crisis,
                    kind: kind.parse().map_err(|_| StoreError::Corrupt { column: "crisis_needs.kind", value: kind })?,
                    wanted,
                    allocated,
                })
            })
            .collect()
    }

    /// Reserves available items for a crisis up to what it needs, in one transaction: with one
    /// writer, two crises can never get the same item. Returns what is still missing.
    ///
    /// A table-top exercise reserves nothing: it records what the stock could give it. A real
    /// crisis the stock cannot serve takes what physical exercises hold and have not lent, and
    /// each exercise so pre-empted is told in its main courante (`inventory.preempt`).
    pub async fn allocate(&self, id: &CrisisId, by: By<'_>, now: Timestamp) -> Result<Vec<Need>, StoreError> {
        let mut tx = self.write.begin().await?;
        let commune = commune_of(&mut tx, id).await?;
        let exercise: Option<(i64, String)> =
            sqlx::query_as("SELECT x.id, x.mode FROM crises k JOIN exercises x ON x.id = k.exercise_id WHERE k.id = ?")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let wants: Vec<(String, i64)> =
            sqlx::query_as("SELECT kind, wanted FROM crisis_needs WHERE crisis_id = ? ORDER BY kind")
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        if let Some((_, mode)) = &exercise
            && mode == ExerciseMode::TableTop.as_str()
        {
            let mut counted = serde_json::Map::new();
            for (kind, wanted) in &wants {
                let available: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM items WHERE kind = ? AND state = 'available'")
                        .bind(kind)
                        .fetch_one(&mut *tx)
                        .await?;
                let n = available.min(*wanted);
                sqlx::query("UPDATE crisis_needs SET counted = ? WHERE crisis_id = ? AND kind = ?")
                    .bind(n)
                    .bind(id.as_str())
                    .bind(kind)
                    .execute(&mut *tx)
                    .await?;
                counted.insert(kind.clone(), json!({ "wanted": wanted, "available": n }));
            }
            let e = NewEntry {
                by,
                commune: Some(&commune),
                crisis: Some(id.as_str()),
                action: AuditAction::InventoryCount,
                target: id.as_str(),
                details: serde_json::Value::Object(counted),
            };
            self.append(&mut tx, e, now).await?;
            tx.commit().await?;
            return Ok(self.needs(Some(id.as_str())).await?.into_iter().filter(|n| n.shortage() > 0).collect());
        }
        let actor = actor_name(by);
        let mut reserved = serde_json::Map::new();
        // Per exercise crisis pre-empted: what was taken from it.
        let mut preempted: std::collections::BTreeMap<String, Preempted> = Default::default();
        for (kind, wanted) in &wants {
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM items WHERE crisis_id = ? AND kind = ? AND state IN ('reserved', 'prepared', 'lent')",
            )
            .bind(id.as_str())
            .bind(kind)
            .fetch_one(&mut *tx)
            .await?;
            let missing = (wanted - held).max(0);
            if missing == 0 {
                continue;
            }
            let mut serials: Vec<String> = sqlx::query_scalar(
                "SELECT serial FROM items WHERE kind = ? AND state = 'available' ORDER BY asset_tag LIMIT ?",
            )
            .bind(kind)
            .bind(missing)
            .fetch_all(&mut *tx)
            .await?;
            for s in &serials {
                move_item(
                    &mut tx,
                    s,
                    &[ItemState::Available],
                    ItemState::Reserved,
                    Some(id.as_str()),
                    &actor,
                    None,
                    now,
                )
                .await?;
            }
            let still = missing - serials.len() as i64;
            if exercise.is_none() && still > 0 {
                let held_by_drills: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT i.serial, i.asset_tag, i.crisis_id FROM items i JOIN crises k ON k.id = i.crisis_id \
                     WHERE i.kind = ? AND i.state IN ('reserved', 'prepared') AND k.exercise_id IS NOT NULL \
                     ORDER BY k.requested_at DESC, i.asset_tag LIMIT ?",
                )
                .bind(kind)
                .bind(still)
                .fetch_all(&mut *tx)
                .await?;
                for (s, tag, drill) in held_by_drills {
                    let note = format!("repris à l'exercice {drill} par la crise {id}");
                    move_item(
                        &mut tx,
                        &s,
                        &[ItemState::Reserved, ItemState::Prepared],
                        ItemState::Reserved,
                        Some(id.as_str()),
                        &actor,
                        Some(&note),
                        now,
                    )
                    .await?;
                    let taken = preempted.entry(drill).or_insert_with(|| Preempted {
                        by_crisis: id.to_string(),
                        serials: Vec::new(),
                        asset_tags: Vec::new(),
                    });
                    taken.serials.push(s.clone());
                    taken.asset_tags.push(tag);
                    serials.push(s);
                }
            }
            if !serials.is_empty() {
                reserved.insert(kind.clone(), json!(serials));
            }
        }
        if !reserved.is_empty() {
            let e = NewEntry {
                by,
                commune: Some(&commune),
                crisis: Some(id.as_str()),
                action: AuditAction::InventoryReserve,
                target: id.as_str(),
                details: serde_json::Value::Object(reserved),
            };
            self.append(&mut tx, e, now).await?;
        }
        for (drill, taken) in &preempted {
            let drill_id = CrisisId::parse(drill)
                .map_err(|_| StoreError::Corrupt { column: "items.crisis_id", value: drill.clone() })?;
            let drill_commune = commune_of(&mut tx, &drill_id).await?;
            let e = NewEntry {
                by,
                commune: Some(&drill_commune),
                crisis: Some(drill),
                action: AuditAction::InventoryPreempt,
                target: drill,
                details: serde_json::to_value(taken)
                    .map_err(|source| StoreError::Encode { what: "inventory.preempt details", source })?,
            };
            self.append(&mut tx, e, now).await?;
            let kind = repli_core::LogKind::Information;
            let text = format!(
                "Matériel repris par la crise réelle {id} : {} ({} équipement(s)). L'exercice continue sans lui ; \
                 la liste d'attente le servira quand le stock le permettra.",
                taken.asset_tags.join(", "),
                taken.asset_tags.len()
            );
            let e = NewEntry {
                by: By::System,
                commune: Some(&drill_commune),
                crisis: Some(drill),
                action: AuditAction::log(kind),
                target: drill,
                details: crate::audit::log_details(kind, &text),
            };
            self.append(&mut tx, e, now).await?;
            tracing::info!(crisis = %id, exercise_crisis = %drill, items = taken.serials.len(), "exercise equipment pre-empted");
        }
        tx.commit().await?;
        Ok(self.needs(Some(id.as_str())).await?.into_iter().filter(|n| n.shortage() > 0).collect())
    }

    /// What real crises took from the open exercises' crises: (audit sequence number, exercise
    /// crisis, what was taken), oldest first, in one statement.
    pub async fn preemptions_of_open_exercises(&self) -> Result<Vec<(i64, CrisisId, Preempted)>, StoreError> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT a.seq, a.crisis, a.details FROM audit_log a JOIN crises k ON k.id = a.crisis \
             WHERE a.action = ? AND k.exercise_id IS NOT NULL \
             AND k.state NOT IN ('closed', 'rejected', 'cancelled') ORDER BY a.seq",
        )
        .bind(AuditAction::InventoryPreempt.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(seq, crisis, details)| {
                let id = CrisisId::parse(&crisis)
                    .map_err(|_| StoreError::Corrupt { column: "audit_log.crisis", value: crisis.clone() })?;
                let taken = serde_json::from_str(&details)
                    .map_err(|_| StoreError::Corrupt { column: "audit_log.details", value: details.clone() })?;
                Ok((seq, id, taken))
            })
            .collect()
    }

    /// Gives items back to the pool when a crisis is cancelled or its hand-back opens (only
    /// those not lent). A cancelled crisis wants nothing any more; at the hand-back, what it
    /// asked for stays and what it got is fixed (the items it holds and those its loans took),
    /// so the dossier and the crisis page keep their equipment table.
    pub(crate) async fn release_in(
        conn: &mut SqliteConnection,
        id: &str,
        handback: bool,
        actor: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        if handback {
            sqlx::query(
                "UPDATE crisis_needs SET counted = (SELECT COUNT(*) FROM items i WHERE i.kind = crisis_needs.kind \
                 AND ((i.crisis_id = crisis_needs.crisis_id AND i.state IN ('reserved', 'prepared', 'lent')) \
                 OR EXISTS (SELECT 1 FROM loans l WHERE l.serial = i.serial AND l.crisis_id = crisis_needs.crisis_id))) \
                 WHERE crisis_id = ? AND counted IS NULL",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        let serials: Vec<String> =
            sqlx::query_scalar("SELECT serial FROM items WHERE crisis_id = ? AND state IN ('reserved', 'prepared')")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
        for s in &serials {
            move_item(
                conn,
                s,
                &[ItemState::Reserved, ItemState::Prepared],
                ItemState::Available,
                None,
                actor,
                Some("libéré"),
                now,
            )
            .await?;
        }
        if !handback {
            sqlx::query("UPDATE crisis_needs SET wanted = 0, counted = NULL WHERE crisis_id = ?")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(serials.len() as u64)
    }

    /// Items still out for a crisis (reserved, prepared or lent).
    pub(crate) async fn outstanding_in(conn: &mut SqliteConnection, id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM items WHERE crisis_id = ? AND state IN ('reserved', 'prepared', 'lent')",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await?)
    }

    /// What stands between a crisis and the confirmation of its equipment's reception: the
    /// asset tags of items still out (neither returned nor written off), and of returned laptops
    /// and phones with no wipe recorded since their return.
    pub(crate) async fn reception_gaps_in(
        conn: &mut SqliteConnection,
        id: &str,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let out: Vec<String> = sqlx::query_scalar(
            "SELECT i.asset_tag FROM loans l JOIN items i ON i.serial = l.serial \
             WHERE l.crisis_id = ? AND l.returned_at IS NULL ORDER BY i.asset_tag",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let sql = format!(
            "SELECT i.asset_tag FROM loans l JOIN items i ON i.serial = l.serial \
             WHERE l.crisis_id = ? AND l.returned_at IS NOT NULL AND l.condition IN ('ok', 'damaged') \
             AND i.kind IN {} \
             AND NOT EXISTS (SELECT 1 FROM wipes w WHERE w.serial = l.serial AND w.crisis_id = l.crisis_id AND w.at >= l.returned_at) \
             ORDER BY i.asset_tag",
            ItemKind::WIPED_SQL
        );
        let unwiped: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(&mut *conn).await?;
        Ok((out, unwiped))
    }

    /// Replaces the commune's agents list (names and services), audited. Refused once accounts
    /// were created or items lent to these agents: names are then added, never replaced.
    pub async fn set_agents(
        &self,
        id: &CrisisId,
        agents: &[(String, String)],
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<Agent>, StoreError> {
        let mut tx = self.write.begin().await?;
        let commune = commune_of(&mut tx, id).await?;
        agents_open_in(&mut tx, id).await?;
        let lent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM loans WHERE crisis_id = ? AND agent_id IS NOT NULL")
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if lent > 0 {
            return Err(StoreError::AgentsListLocked { id: id.clone(), because: AgentsLock::ItemsLent });
        }
        if Store::accounts_made_in(&mut tx, id).await? {
            return Err(StoreError::AgentsListLocked { id: id.clone(), because: AgentsLock::AccountsMade });
        }
        sqlx::query("DELETE FROM agents WHERE crisis_id = ?").bind(id.as_str()).execute(&mut *tx).await?;
        insert_agents_in(&mut tx, id, agents).await?;
        // Names are personal data: the audit entry counts them.
        let e = NewEntry::crisis(
            actor,
            &commune,
            id.as_str(),
            AuditAction::CrisisAgents,
            id.as_str(),
            json!({ "agents": agents.len() }),
        );
        self.append(&mut tx, e, now).await?;
        Store::rearm_in(&mut tx, id).await?;
        tx.commit().await?;
        self.agents(id).await
    }

    /// Adds agents to the list, at any time before the hand-back. Once accounts exist, the
    /// steps that create accounts and add them to the space run again for the new names.
    pub async fn add_agents(
        &self,
        id: &CrisisId,
        agents: &[(String, String)],
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<Agent>, StoreError> {
        let mut tx = self.write.begin().await?;
        let commune = commune_of(&mut tx, id).await?;
        agents_open_in(&mut tx, id).await?;
        let total = insert_agents_in(&mut tx, id, agents).await?;
        let e = NewEntry::crisis(
            actor,
            &commune,
            id.as_str(),
            AuditAction::CrisisAgentsAdded,
            id.as_str(),
            json!({ "added": agents.len(), "agents": total }),
        );
        self.append(&mut tx, e, now).await?;
        self.reopen_accounts_in(&mut tx, id, By::User(actor), now).await?;
        Store::rearm_in(&mut tx, id).await?;
        tx.commit().await?;
        self.agents(id).await
    }

    /// Ops accept the agents named so far as the whole list: the accounts step stops waiting
    /// for the missing names.
    pub async fn accept_agents(&self, id: &CrisisId, actor: &Actor, now: Timestamp) -> Result<u32, StoreError> {
        let mut tx = self.write.begin().await?;
        let commune = commune_of(&mut tx, id).await?;
        agents_open_in(&mut tx, id).await?;
        let (named, declared, accepted): (i64, i64, Option<i64>) =
            sqlx::query_as("SELECT agents_named, agents, agents_short_ok FROM crises WHERE id = ?")
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if named == 0 {
            return Err(StoreError::NoAgentsNamed { id: id.clone() });
        }
        if named >= declared || accepted.is_some() {
            return Err(StoreError::AgentsListComplete { id: id.clone(), named, declared });
        }
        sqlx::query("UPDATE crises SET agents_short_ok = ? WHERE id = ?")
            .bind(named)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let e = NewEntry::crisis(
            actor,
            &commune,
            id.as_str(),
            AuditAction::CrisisAgentsAccepted,
            id.as_str(),
            json!({ "named": named, "declared": declared }),
        );
        self.append(&mut tx, e, now).await?;
        Store::rearm_in(&mut tx, id).await?;
        tx.commit().await?;
        u32::try_from(named)
            .map_err(|_| StoreError::Corrupt { column: "crises.agents_named", value: named.to_string() })
    }

    pub async fn agents(&self, id: &CrisisId) -> Result<Vec<Agent>, StoreError> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, name, service FROM agents WHERE crisis_id = ? ORDER BY id")
                .bind(id.as_str())
                .fetch_all(&self.read)
                .await?;
        Ok(rows.into_iter().map(|(id, name, service)| Agent { id, name, service }).collect())
    }

    /// Lends a reserved item to the commune: laptops and phones to a named agent.
    pub async fn lend(
        &self,
        id: &CrisisId,
        serial: &str,
        agent: Option<i64>,
        loan_days: u32,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.lend_all(id, &[(serial.to_owned(), agent)], loan_days, actor, now).await
    }

    /// Lends several items at once, all or none: one refused item leaves every other one as it
    /// was.
    pub async fn lend_all(
        &self,
        id: &CrisisId,
        items: &[(String, Option<i64>)],
        loan_days: u32,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for (serial, agent) in items {
            lend_one(self, &mut tx, id, serial, *agent, loan_days, actor, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes a lent item back, or records it missing.
    pub async fn check_in(
        &self,
        id: &CrisisId,
        serial: &str,
        condition: Condition,
        note: Option<&str>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        self.check_in_in(&mut tx, id, serial, condition, note, actor, now).await?;
        Store::rearm_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // one fact of the check-in each
    async fn check_in_in(
        &self,
        tx: &mut SqliteConnection,
        id: &CrisisId,
        serial: &str,
        condition: Condition,
        note: Option<&str>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ItemState, StoreError> {
        let held_by = held_for(tx, serial).await?;
        if held_by.as_deref() != Some(id.as_str()) {
            return Err(StoreError::ItemNotHeldFor {
                serial: serial.to_owned(),
                id: id.clone(),
                holding: Holding::Lent,
            });
        }
        let to = if condition == Condition::Missing { ItemState::Lost } else { ItemState::Returned };
        move_item(tx, serial, &[ItemState::Lent], to, Some(id.as_str()), &actor.name, note, now).await?;
        sqlx::query(
            "UPDATE loans SET returned_at = ?, condition = ?, note = ? WHERE serial = ? AND returned_at IS NULL",
        )
        .bind(time::to_db(now))
        .bind(condition.as_str())
        .bind(note)
        .bind(serial)
        .execute(&mut *tx)
        .await?;
        // A phone or router back without the SIM it holds: the SIM's loan is still open.
        let sim_out: Option<String> = sqlx::query_scalar(
            "SELECT s.asset_tag FROM items d JOIN items s ON s.serial = d.sim \
             JOIN loans l ON l.serial = s.serial AND l.returned_at IS NULL WHERE d.serial = ?",
        )
        .bind(serial)
        .fetch_optional(&mut *tx)
        .await?;
        let commune = commune_of(tx, id).await?;
        let e = NewEntry::crisis(
            actor,
            &commune,
            id.as_str(),
            AuditAction::InventoryCheckIn,
            serial,
            json!({ "condition": condition.as_str(), "note": note, "sim_not_returned": sim_out }),
        );
        self.append(tx, e, now).await?;
        Ok(to)
    }

    /// Records the wipe of a returned device and puts it back in the pool, or in maintenance
    /// when it came back damaged; returns where it went.
    pub async fn wipe(&self, serial: &str, w: &Wipe, actor: &Actor, now: Timestamp) -> Result<ItemState, StoreError> {
        let mut tx = self.write.begin().await?;
        let to = self.wipe_in(&mut tx, serial, w, actor, now).await?;
        tx.commit().await?;
        Ok(to)
    }

    async fn wipe_in(
        &self,
        tx: &mut SqliteConnection,
        serial: &str,
        w: &Wipe,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ItemState, StoreError> {
        let crisis = held_for(tx, serial).await?;
        let to = after_return(tx, serial).await?;
        move_item(tx, serial, &ItemState::WIPE_SOURCES, to, None, &actor.name, Some(&w.certificate), now).await?;
        sqlx::query(
            "INSERT INTO wipes (serial, crisis_id, at, method, operator, certificate) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(serial)
        .bind(&crisis)
        .bind(time::to_db(now))
        .bind(&w.method)
        .bind(&w.operator)
        .bind(&w.certificate)
        .execute(&mut *tx)
        .await?;
        let e = NewEntry {
            by: By::User(actor),
            commune: None,
            crisis: crisis.as_deref(),
            action: AuditAction::InventoryWipe,
            target: serial,
            details: json!({ "method": w.method, "operator": w.operator, "certificate": w.certificate }),
        };
        self.append(tx, e, now).await?;
        Ok(to)
    }

    /// Puts a returned item that needs no wipe (router, SIM, printer) back in stock after its
    /// check, or in maintenance when it came back damaged; returns where it went. A laptop or
    /// a phone is refused: it returns through its certified wipe ([`Store::wipe`]).
    pub async fn check_returned(
        &self,
        serial: &str,
        note: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ItemState, StoreError> {
        let mut tx = self.write.begin().await?;
        let to = self.check_returned_in(&mut tx, serial, note, actor, now).await?;
        tx.commit().await?;
        Ok(to)
    }

    async fn check_returned_in(
        &self,
        tx: &mut SqliteConnection,
        serial: &str,
        note: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ItemState, StoreError> {
        let crisis = held_for(tx, serial).await?;
        let kind: String =
            sqlx::query_scalar("SELECT kind FROM items WHERE serial = ?").bind(serial).fetch_one(&mut *tx).await?;
        let kind: ItemKind = kind.parse().map_err(|_| StoreError::Corrupt { column: "items.kind", value: kind })?;
        if kind.needs_wipe() {
            return Err(StoreError::WipeRequired { serial: serial.to_owned(), kind });
        }
        let to = after_return(tx, serial).await?;
        move_item(tx, serial, &ItemState::WIPE_SOURCES, to, None, &actor.name, Some(note), now).await?;
        let e = NewEntry {
            by: By::User(actor),
            commune: None,
            crisis: crisis.as_deref(),
            action: AuditAction::InventoryCheck,
            target: serial,
            details: json!({ "note": note, "to": to.as_str() }),
        };
        self.append(tx, e, now).await?;
        Ok(to)
    }

    /// Notes, condition and SIM links of an item.
    pub async fn item_extras(&self, serial: &str) -> Result<ItemExtras, StoreError> {
        let row: Option<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT i.notes, i.condition, i.sim, s.asset_tag FROM items i LEFT JOIN items s ON s.serial = i.sim \
             WHERE i.serial = ?",
        )
        .bind(serial)
        .fetch_optional(&self.read)
        .await?;
        let Some((notes, condition, sim, sim_tag)) = row else {
            return Err(StoreError::UnknownItem(serial.to_owned()));
        };
        let in_device: Option<(String, String)> = sqlx::query_as("SELECT serial, asset_tag FROM items WHERE sim = ?")
            .bind(serial)
            .fetch_optional(&self.read)
            .await?;
        Ok(ItemExtras { notes, condition, sim: sim.zip(sim_tag), in_device })
    }

    /// Ops edit an item's asset tag, model, notes or condition; audited with each change
    /// (before → after) and kept in its history. Nothing changed: nothing written.
    pub async fn edit_item(
        &self,
        serial: &str,
        e: &ItemEdit,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let row: Option<(String, String, String, String, String, Option<String>)> =
            sqlx::query_as("SELECT asset_tag, model, notes, condition, state, crisis_id FROM items WHERE serial = ?")
                .bind(serial)
                .fetch_optional(&mut *tx)
                .await?;
        let (tag, model, notes, condition, state, crisis) =
            row.ok_or_else(|| StoreError::UnknownItem(serial.to_owned()))?;
        let mut changes = serde_json::Map::new();
        for (field, before, after) in [
            ("asset_tag", &tag, &e.asset_tag),
            ("model", &model, &e.model),
            ("notes", &notes, &e.notes),
            ("condition", &condition, &e.condition.as_str().to_owned()),
        ] {
            if before != after {
                changes.insert(field.to_owned(), json!({ "from": before, "to": after }));
            }
        }
        if changes.is_empty() {
            return Ok(false);
        }
        if e.asset_tag != tag {
            let taken: Option<String> =
                sqlx::query_scalar("SELECT serial FROM items WHERE asset_tag = ? AND serial <> ?")
                    .bind(&e.asset_tag)
                    .bind(serial)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(other) = taken {
                return Err(StoreError::TagTaken { tag: e.asset_tag.clone(), serial: other });
            }
        }
        sqlx::query(
            "UPDATE items SET asset_tag = ?, model = ?, notes = ?, condition = ?, updated_at = ? WHERE serial = ?",
        )
        .bind(&e.asset_tag)
        .bind(&e.model)
        .bind(&e.notes)
        .bind(e.condition.as_str())
        .bind(time::to_db(now))
        .bind(serial)
        .execute(&mut *tx)
        .await?;
        let fields: Vec<&str> = changes.keys().map(String::as_str).collect();
        sqlx::query("INSERT INTO item_events (serial, at, actor, crisis_id, from_state, to_state, note) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(serial)
            .bind(time::to_db(now))
            .bind(&actor.name)
            .bind(&crisis)
            .bind(&state)
            .bind(&state)
            .bind(format!("fiche modifiée : {}", fields.join(", ")))
            .execute(&mut *tx)
            .await?;
        let entry = NewEntry {
            by: By::User(actor),
            commune: None,
            crisis: crisis.as_deref(),
            action: AuditAction::InventoryEdit,
            target: serial,
            details: serde_json::Value::Object(changes),
        };
        self.append(&mut tx, entry, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Puts a SIM card in a phone or router (or takes it out, `sim` none), audited. A SIM sits
    /// in one device at most: one already in another device is refused.
    pub async fn link_sim(
        &self,
        device: &str,
        sim: Option<&str>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        let kind_of = async |conn: &mut SqliteConnection, serial: &str| -> Result<ItemKind, StoreError> {
            let k: Option<String> = sqlx::query_scalar("SELECT kind FROM items WHERE serial = ?")
                .bind(serial)
                .fetch_optional(&mut *conn)
                .await?;
            let k = k.ok_or_else(|| StoreError::UnknownItem(serial.to_owned()))?;
            k.parse().map_err(|_| StoreError::Corrupt { column: "items.kind", value: k })
        };
        let kind = kind_of(&mut tx, device).await?;
        if !matches!(kind, ItemKind::Phone | ItemKind::Router) {
            return Err(StoreError::SimLink(SimLinkRefusal::NotADevice { serial: device.to_owned(), kind }));
        }
        if let Some(s) = sim {
            let k = kind_of(&mut tx, s).await?;
            if k != ItemKind::Sim {
                return Err(StoreError::SimLink(SimLinkRefusal::NotASim { serial: s.to_owned(), kind: k }));
            }
            let other: Option<String> = sqlx::query_scalar("SELECT serial FROM items WHERE sim = ? AND serial <> ?")
                .bind(s)
                .bind(device)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(d) = other {
                return Err(StoreError::SimLink(SimLinkRefusal::AlreadyIn { sim: s.to_owned(), device: d }));
            }
        }
        let previous: Option<String> =
            sqlx::query_scalar("SELECT sim FROM items WHERE serial = ?").bind(device).fetch_one(&mut *tx).await?;
        if previous.as_deref() == sim {
            return Ok(());
        }
        sqlx::query("UPDATE items SET sim = ?, updated_at = ? WHERE serial = ?")
            .bind(sim)
            .bind(time::to_db(now))
            .bind(device)
            .execute(&mut *tx)
            .await?;
        let crisis = held_for(&mut tx, device).await?;
        let entry = NewEntry {
            by: By::User(actor),
            commune: None,
            crisis: crisis.as_deref(),
            action: AuditAction::InventorySimLink,
            target: device,
            details: json!({ "sim": sim, "previous": previous }),
        };
        self.append(&mut tx, entry, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every SIM link: device serial → (SIM serial, SIM asset tag, ICCID).
    pub async fn sim_links(
        &self,
    ) -> Result<std::collections::HashMap<String, (String, String, Option<String>)>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT d.serial, s.serial, s.asset_tag, s.iccid FROM items d JOIN items s ON s.serial = d.sim",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(|(d, s, t, i)| (d, (s, t, i))).collect())
    }

    /// One step for many items, all or nothing: each item wiped, checked or taken back (by the
    /// crisis holding it, in good condition), each audited as if done alone. `crisis`, when
    /// given, is the only crisis the items may be held for. Every item that cannot is named
    /// (`StoreError::Refused`, with why) and nothing changes.
    pub async fn bulk(
        &self,
        serials: &[String],
        op: &BulkOp,
        crisis: Option<&CrisisId>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<(String, ItemState)>, StoreError> {
        let mut tx = self.write.begin().await?;
        let mut refused = Vec::new();
        let mut done = Vec::new();
        let mut rearm = std::collections::BTreeSet::new();
        for serial in serials {
            let outcome = async {
                let held = held_for(&mut tx, serial).await?;
                if let Some(id) = crisis
                    && held.as_deref() != Some(id.as_str())
                {
                    return Err(StoreError::ItemNotHeldFor {
                        serial: serial.clone(),
                        id: id.clone(),
                        holding: Holding::Held,
                    });
                }
                match op {
                    BulkOp::Wipe(w) => self.wipe_in(&mut tx, serial, w, actor, now).await,
                    BulkOp::Check(note) => self.check_returned_in(&mut tx, serial, note, actor, now).await,
                    BulkOp::Return => {
                        let Some(id) = held.as_deref().and_then(|h| CrisisId::parse(h).ok()) else {
                            let state: String = sqlx::query_scalar("SELECT state FROM items WHERE serial = ?")
                                .bind(serial)
                                .fetch_one(&mut *tx)
                                .await?;
                            let state = state
                                .parse()
                                .map_err(|_| StoreError::Corrupt { column: "items.state", value: state })?;
                            return Err(StoreError::ItemInState { serial: serial.clone(), state });
                        };
                        let to = self.check_in_in(&mut tx, &id, serial, Condition::Ok, None, actor, now).await?;
                        rearm.insert(id);
                        Ok(to)
                    }
                }
            }
            .await;
            match outcome {
                Ok(to) => done.push((serial.clone(), to)),
                Err(e) if e.is_refusal() => refused.push((serial.clone(), e)),
                Err(e) => return Err(e),
            }
        }
        if !refused.is_empty() {
            // Dropped uncommitted: nothing of the step is kept.
            return Err(StoreError::Refused(refused));
        }
        for id in &rearm {
            Store::rearm_in(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Writes off an item a crisis holds (lost, destroyed), with a reason.
    pub async fn write_off(
        &self,
        id: &CrisisId,
        serial: &str,
        reason: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        if held_for(&mut tx, serial).await?.as_deref() != Some(id.as_str()) {
            return Err(StoreError::ItemNotHeldFor {
                serial: serial.to_owned(),
                id: id.clone(),
                holding: Holding::Held,
            });
        }
        move_item(
            &mut tx,
            serial,
            &[ItemState::Reserved, ItemState::Prepared, ItemState::Lent],
            ItemState::Lost,
            Some(id.as_str()),
            &actor.name,
            Some(reason),
            now,
        )
        .await?;
        sqlx::query("UPDATE loans SET returned_at = ?, condition = 'missing', note = ? WHERE serial = ? AND returned_at IS NULL")
            .bind(time::to_db(now))
            .bind(reason)
            .bind(serial)
            .execute(&mut *tx)
            .await?;
        let commune = commune_of(&mut tx, id).await?;
        let e = NewEntry::crisis(
            actor,
            &commune,
            id.as_str(),
            AuditAction::InventoryWriteOff,
            serial,
            json!({ "reason": reason }),
        );
        self.append(&mut tx, e, now).await?;
        Store::rearm_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ops moves outside a loan: prepare a reserved item, start a wipe, send to or bring back
    /// from maintenance, retire. Audited with the reason.
    pub async fn service_item(
        &self,
        serial: &str,
        to: ItemState,
        reason: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let from = ItemState::service_sources(to);
        if from.is_empty() {
            return Err(StoreError::ItemMoveRefused { to });
        }
        let mut tx = self.write.begin().await?;
        let crisis = held_for(&mut tx, serial).await?;
        let was = move_item(&mut tx, serial, from, to, crisis.as_deref(), &actor.name, Some(reason), now).await?;
        let e = NewEntry {
            by: By::User(actor),
            commune: None,
            crisis: crisis.as_deref(),
            action: AuditAction::InventoryService,
            target: serial,
            details: json!({ "from": was.as_str(), "to": to.as_str(), "reason": reason }),
        };
        self.append(&mut tx, e, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Wipe certificate references of the items a crisis borrowed, by serial (the latest).
    pub async fn wipe_certificates(
        &self,
        id: &CrisisId,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT serial, certificate FROM wipes WHERE crisis_id = ? ORDER BY id")
                .bind(id.as_str())
                .fetch_all(&self.read)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// The loans of a crisis, with their agents.
    pub async fn loans(&self, id: &CrisisId) -> Result<Vec<Loan>, StoreError> {
        let sql = format!("{LOAN_SELECT} WHERE l.crisis_id = ? ORDER BY i.kind, i.asset_tag");
        let rows: Vec<LoanRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_all(&self.read).await?;
        rows.into_iter().map(loan_from).collect()
    }
}

pub(crate) type LoanRow = (
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// A loan with its item and agent, as [`loan_from`] reads it.
pub(crate) const LOAN_SELECT: &str = "SELECT l.serial, i.asset_tag, i.kind, i.model, a.id, a.name, a.service, \
     l.lent_at, l.due_back, l.returned_at, l.condition, l.note, i.imei, i.iccid, i.msisdn, l.crisis_id \
     FROM loans l JOIN items i ON i.serial = l.serial LEFT JOIN agents a ON a.id = l.agent_id";

pub(crate) fn loan_from(r: LoanRow) -> Result<Loan, StoreError> {
    Ok(Loan {
        serial: r.0,
        asset_tag: r.1,
        kind: r.2.parse().map_err(|_| StoreError::Corrupt { column: "items.kind", value: r.2.clone() })?,
        model: r.3,
        agent: match (r.4, r.5) {
            // `agents.service` is NOT NULL DEFAULT '': an Option only through the
            // LEFT JOIN, so it is there whenever the agent is.
            (Some(id), Some(name)) => Some(Agent { id, name, service: r.6.unwrap_or_default() }),
            _ => None,
        },
        lent_at: time::from_db("loans.lent_at", &r.7)?,
        due_back: time::from_db("loans.due_back", &r.8)?,
        returned_at: opt_from_db("loans.returned_at", r.9)?,
        condition: r.10,
        note: r.11,
        imei: r.12,
        iccid: r.13,
        msisdn: r.14,
        crisis: r.15,
    })
}

/// One loan inside [`Store::lend_all`]'s transaction.
#[allow(clippy::too_many_arguments)]
async fn lend_one(
    store: &Store,
    tx: &mut SqliteConnection,
    id: &CrisisId,
    serial: &str,
    agent: Option<i64>,
    loan_days: u32,
    actor: &Actor,
    now: Timestamp,
) -> Result<(), StoreError> {
    let row: Option<(String, Option<String>)> = sqlx::query_as("SELECT kind, crisis_id FROM items WHERE serial = ?")
        .bind(serial)
        .fetch_optional(&mut *tx)
        .await?;
    let (kind, held_by) = row.ok_or_else(|| StoreError::UnknownItem(serial.to_owned()))?;
    if held_by.as_deref() != Some(id.as_str()) {
        return Err(StoreError::ItemNotHeldFor {
            serial: serial.to_owned(),
            id: id.clone(),
            holding: Holding::Reserved,
        });
    }
    let kind: ItemKind = kind.parse().map_err(|_| StoreError::Corrupt { column: "items.kind", value: kind })?;
    if let Some(a) = agent {
        let ok: Option<i64> = sqlx::query_scalar("SELECT 1 FROM agents WHERE id = ? AND crisis_id = ?")
            .bind(a)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if ok.is_none() {
            return Err(StoreError::UnknownAgent { id: id.clone(), agent: a });
        }
    } else if kind.is_personal() {
        return Err(StoreError::AgentRequired { kind });
    }
    move_item(
        tx,
        serial,
        &[ItemState::Reserved, ItemState::Prepared],
        ItemState::Lent,
        Some(id.as_str()),
        &actor.name,
        None,
        now,
    )
    .await?;
    let due = now.checked_add(SignedDuration::from_hours(24 * i64::from(loan_days))).unwrap_or(now);
    sqlx::query("INSERT INTO loans (serial, crisis_id, agent_id, lent_at, due_back) VALUES (?, ?, ?, ?, ?)")
        .bind(serial)
        .bind(id.as_str())
        .bind(agent)
        .bind(time::to_db(now))
        .bind(time::to_db(due))
        .execute(&mut *tx)
        .await?;
    let commune = commune_of(tx, id).await?;
    let e = NewEntry::crisis(
        actor,
        &commune,
        id.as_str(),
        AuditAction::InventoryLend,
        serial,
        json!({ "agent": agent, "due_back": time::to_db(due) }),
    );
    store.append(tx, e, now).await?;
    Ok(())
}

/// What would refuse an import, each as `source:line: why`: the same serial, tag, IMEI or ICCID
/// twice in the files, or already in the pool. Read-only.
async fn clashes(conn: &mut SqliteConnection, items: &[(String, u64, Item)]) -> Result<Vec<String>, StoreError> {
    let mut errors = Vec::new();
    // Across files too: the same serial, tag, IMEI or ICCID twice.

    let mut seen = std::collections::HashMap::new();
    for (source, line, it) in items {
        for key in [Some(&it.serial), Some(&it.asset_tag), it.imei.as_ref(), it.iccid.as_ref()].into_iter().flatten() {
            if let Some((s0, l0)) = seen.insert(key.clone(), (source.clone(), *line)) {
                errors.push(format!("{source}:{line}: {key} figure déjà en {s0}:{l0}"));
            }
        }
    }
    for (source, line, it) in items {
        let clash: Option<String> = sqlx::query_scalar(
            "SELECT serial FROM items WHERE serial = ?1 OR asset_tag = ?2 OR (?3 IS NOT NULL AND imei = ?3) \
                 OR (?4 IS NOT NULL AND iccid = ?4) LIMIT 1",
        )
        .bind(&it.serial)
        .bind(&it.asset_tag)
        .bind(&it.imei)
        .bind(&it.iccid)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(existing) = clash {
            errors.push(format!(
                    "{source}:{line}: déjà dans le parc (équipement {existing} : même numéro de série, d'inventaire, IMEI ou ICCID)"
                ));
        }
    }
    Ok(errors)
}
