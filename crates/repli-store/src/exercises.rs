//! Exercises: the crises of a drill created together with the addresses its notifications may
//! reach and its timed injects, in one transaction; injects delivered to the main courante when due.

use jiff::Timestamp;
use repli_core::exercise::InjectEffect;
use repli_core::{Actor, AuditAction, CrisisId, CrisisState, ExerciseMode, InseeCode, LogKind};
use serde_json::json;
use sqlx::{Row, SqliteConnection};

use crate::audit::NewEntry;
use crate::crises::{NewCrisis, insert_crisis_in};
use crate::sla::{NewNotification, enqueue_in};
use crate::time::{self, opt_from_db};
use crate::{By, Store, StoreError};

/// A validated exercise.
#[derive(Debug, Clone)]
pub struct NewExercise {
    pub name: String,
    pub mode: ExerciseMode,
    /// The scenario as given, kept for the after-action report.
    pub scenario: String,
    /// The only phone numbers and e-mail addresses its notifications may reach.
    pub recipients: Vec<String>,
    /// One request per commune.
    pub crises: Vec<NewCrisis>,
    pub injects: Vec<NewInject>,
}

/// A timed inject.
#[derive(Debug, Clone)]
pub struct NewInject {
    /// None: every crisis of the exercise.
    pub commune: Option<InseeCode>,
    pub due_at: Timestamp,
    pub text: String,
    pub effect: Option<InjectEffect>,
}

/// An exercise as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExerciseRecord {
    pub id: i64,
    pub name: String,
    pub mode: ExerciseMode,
    pub started_at: Timestamp,
    pub started_by: String,
    pub scenario: String,
    pub recipients: Vec<String>,
    /// Its crises and their states, by crisis id.
    pub crises: Vec<(CrisisId, CrisisState)>,
    pub injects: Vec<InjectRecord>,
}

impl ExerciseRecord {
    /// An exercise is over when none of its crises is open.
    pub fn is_open(&self) -> bool {
        self.crises.iter().any(|(_, s)| s.is_open())
    }
}

/// A timed inject as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectRecord {
    pub id: i64,
    pub commune: Option<InseeCode>,
    pub due_at: Timestamp,
    pub text: String,
    pub effect: Option<InjectEffect>,
    pub delivered_at: Option<Timestamp>,
}

fn effect_to_db(e: Option<InjectEffect>) -> Option<String> {
    e.and_then(|e| serde_json::to_string(&e).ok())
}

fn effect_from_db(s: Option<String>) -> Result<Option<InjectEffect>, StoreError> {
    s.map(|s| serde_json::from_str(&s).map_err(|_| corrupt("exercise_injects.effect", &s))).transpose()
}

/// id, exercise_id, commune, text, effect.
type DueRow = (i64, i64, Option<String>, String, Option<String>);

/// id, commune, due_at, text, effect, delivered_at.
type InjectRow = (i64, Option<String>, String, String, Option<String>, Option<String>);

fn corrupt(column: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt { column, value: value.to_string() }
}

/// The addresses an exercise's notifications may reach.
pub(crate) async fn recipients_in(conn: &mut SqliteConnection, exercise: i64) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT address FROM exercise_recipients WHERE exercise_id = ? ORDER BY address")
        .bind(exercise)
        .fetch_all(&mut *conn)
        .await?)
}

impl Store {
    /// Records an exercise and the request of each of its communes, all or nothing: a commune
    /// unknown, without a convention, or already in an open exercise refuses the whole exercise.
    /// Returns the exercise's id.
    pub async fn create_exercise(&self, new: &NewExercise, actor: &Actor, now: Timestamp) -> Result<i64, StoreError> {
        let mut tx = self.write.begin().await?;
        let at = time::to_db(now);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO exercises (name, mode, started_at, started_by, scenario) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&new.name)
        .bind(new.mode.as_str())
        .bind(&at)
        .bind(actor.user_id)
        .bind(&new.scenario)
        .fetch_one(&mut *tx)
        .await?;
        for a in &new.recipients {
            sqlx::query("INSERT OR IGNORE INTO exercise_recipients (exercise_id, address) VALUES (?, ?)")
                .bind(id)
                .bind(a)
                .execute(&mut *tx)
                .await?;
        }
        for i in &new.injects {
            sqlx::query(
                "INSERT INTO exercise_injects (exercise_id, commune, due_at, text, effect) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(i.commune.as_ref().map(InseeCode::as_str))
            .bind(time::to_db(i.due_at))
            .bind(&i.text)
            .bind(effect_to_db(i.effect))
            .execute(&mut *tx)
            .await?;
        }
        let target = format!("exercise:{id}");
        let communes: Vec<&str> = new.crises.iter().map(|c| c.commune.as_str()).collect();
        let e = NewEntry {
            by: By::User(actor),
            commune: None,
            crisis: None,
            action: AuditAction::ExerciseStart,
            target: &target,
            details: json!({
                "exercise": id,
                "name": new.name,
                "mode": new.mode.as_str(),
                "communes": communes,
                "recipients": new.recipients.len(),
                "injects": new.injects.len(),
            }),
        };
        self.append(&mut tx, e, now).await?;
        for c in &new.crises {
            insert_crisis_in(self, &mut tx, c, actor, Some(id), now).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Every exercise, the most recent first.
    pub async fn exercises(&self) -> Result<Vec<ExerciseRecord>, StoreError> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM exercises ORDER BY id DESC").fetch_all(&self.read).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(x) = self.exercise(id).await? {
                out.push(x);
            }
        }
        Ok(out)
    }

    pub async fn exercise(&self, id: i64) -> Result<Option<ExerciseRecord>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let Some(row) = sqlx::query(
            "SELECT x.name, x.mode, x.started_at, x.scenario, u.name AS started_by FROM exercises x \
             JOIN users u ON u.id = x.started_by WHERE x.id = ?",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(None);
        };
        let mode: String = row.try_get("mode")?;
        let started_at: String = row.try_get("started_at")?;
        let crises: Vec<(String, String)> =
            sqlx::query_as("SELECT id, state FROM crises WHERE exercise_id = ? ORDER BY id")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
        let injects: Vec<InjectRow> = sqlx::query_as(
            "SELECT id, commune, due_at, text, effect, delivered_at FROM exercise_injects WHERE exercise_id = ? \
             ORDER BY due_at, id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(ExerciseRecord {
            id,
            name: row.try_get("name")?,
            mode: mode.parse().map_err(|_| corrupt("exercises.mode", &mode))?,
            started_at: time::from_db("exercises.started_at", &started_at)?,
            started_by: row.try_get("started_by")?,
            scenario: row.try_get("scenario")?,
            recipients: recipients_in(&mut conn, id).await?,
            crises: crises
                .into_iter()
                .map(|(c, s)| {
                    Ok((
                        CrisisId::parse(&c).map_err(|_| corrupt("crises.id", &c))?,
                        s.parse().map_err(|_| corrupt("crises.state", &s))?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?,
            injects: injects
                .into_iter()
                .map(|(id, commune, due, text, effect, delivered)| {
                    Ok(InjectRecord {
                        id,
                        commune: commune
                            .map(|c| InseeCode::parse(&c).map_err(|_| corrupt("exercise_injects.commune", &c)))
                            .transpose()?,
                        due_at: time::from_db("exercise_injects.due_at", &due)?,
                        text,
                        effect: effect_from_db(effect)?,
                        delivered_at: opt_from_db("exercise_injects.delivered_at", delivered)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        }))
    }

    /// Delivers the injects due at `now`: each becomes a main-courante entry (kind « inject »,
    /// by replid) of the open crises it targets, and a notification on `channels` to the
    /// exercise's addresses, in one transaction. Returns the effects of the injects delivered,
    /// in order, for the caller to apply to the exercise's tenant (none: a message only).
    pub async fn deliver_injects(
        &self,
        channels: &[&str],
        now: Timestamp,
    ) -> Result<Vec<Option<InjectEffect>>, StoreError> {
        let mut tx = self.write.begin().await?;
        let due: Vec<DueRow> = sqlx::query_as(
            "SELECT id, exercise_id, commune, text, effect FROM exercise_injects \
             WHERE delivered_at IS NULL AND due_at <= ? ORDER BY due_at, id",
        )
        .bind(time::to_db(now))
        .fetch_all(&mut *tx)
        .await?;
        let mut effects = Vec::with_capacity(due.len());
        for (inject, exercise, commune, text, effect) in &due {
            let effect = effect_from_db(effect.clone())?;
            let text = match &effect {
                Some(e) => format!("{text} (effet simulé : {})", e.label_fr()),
                None => text.clone(),
            };
            effects.push(effect);
            let targets: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, commune FROM crises WHERE exercise_id = ?1 AND (?2 IS NULL OR commune = ?2) \
                 AND state NOT IN ('closed', 'rejected', 'cancelled') ORDER BY id",
            )
            .bind(exercise)
            .bind(commune)
            .fetch_all(&mut *tx)
            .await?;
            for (crisis, commune) in &targets {
                deliver_inject_in(self, &mut tx, *inject, crisis, commune, &text, channels, now).await?;
            }
            sqlx::query("UPDATE exercise_injects SET delivered_at = ? WHERE id = ?")
                .bind(time::to_db(now))
                .bind(inject)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(effects)
    }
}

#[allow(clippy::too_many_arguments)]
async fn deliver_inject_in(
    store: &Store,
    tx: &mut SqliteConnection,
    inject: i64,
    crisis: &str,
    commune: &str,
    text: &str,
    channels: &[&str],
    now: Timestamp,
) -> Result<(), StoreError> {
    let e = NewEntry {
        by: By::System,
        commune: Some(commune),
        crisis: Some(crisis),
        action: AuditAction::log(LogKind::Inject),
        target: crisis,
        details: {
            let mut d = crate::audit::log_details(LogKind::Inject, text);
            d["inject"] = json!(inject);
            d
        },
    };
    store.append(tx, e, now).await?;
    let key = format!("inject:{inject}:{crisis}");
    let subject = format!("Crise {crisis} : inject d'exercice");
    for channel in channels {
        let n = NewNotification {
            key: &key,
            channel,
            crisis: Some(crisis),
            recipient: None,
            audience: "ops",
            subject: &subject,
            body: text,
        };
        enqueue_in(tx, &n, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditFilter;
    use crate::crises::tests::request;
    use crate::testutil::*;
    use repli_core::{CrisisAction, Role};

    fn drill(communes: &[&str]) -> NewExercise {
        NewExercise {
            name: "Exercice de printemps".into(),
            mode: ExerciseMode::TableTop,
            scenario: String::new(),
            recipients: vec!["+33612345678".into(), "animation@exemple.fr".into()],
            crises: communes.iter().map(|c| request(c)).collect(),
            injects: vec![NewInject {
                commune: None,
                due_at: t("2026-11-23T09:30:00Z"),
                text: "La DGS ne répond plus".into(),
                effect: None,
            }],
        }
    }

    #[tokio::test]
    async fn an_exercise_runs_beside_a_real_crisis_numbered_apart_and_flagged_in_the_audit_log() {
        let (_d, store) = store().await;
        let ops = user(&store, Role::Ops, None).await;
        let now = t("2026-11-23T09:00:00Z");
        let (real, _) = store.create_crisis(&request("13005"), &ops, None, now).await.unwrap();
        let id = store.create_exercise(&drill(&["13005", "13001"]), &ops, now).await.unwrap();
        let x = store.exercise(id).await.unwrap().unwrap();
        let ids: Vec<&str> = x.crises.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(ids, ["13001-2026-901", "13005-2026-901"]);
        assert!(x.is_open());
        // Real numbering goes on without the exercise's.
        store.transition(&real.id, CrisisAction::Cancel, Some("doublon"), By::User(&ops), now).await.unwrap();
        let insee = InseeCode::parse("13005").unwrap();
        assert_eq!(store.commune(&insee).await.unwrap().unwrap().open_crisis, None, "only a drill is open");
        let (next, _) = store.create_crisis(&request("13005"), &ops, None, now).await.unwrap();
        assert_eq!(next.id.as_str(), "13005-2026-002");
        assert!(next.exercise.is_none());
        // The commune's open crisis is the real one, never the drill beside it.
        let aubagne = store.commune(&InseeCode::parse("13005").unwrap()).await.unwrap().unwrap();
        assert_eq!(aubagne.open_crisis, Some(next.id.clone()));
        let drill_crisis = store.crisis(&x.crises[1].0).await.unwrap().unwrap();
        assert_eq!(drill_crisis.exercise.as_ref().map(|e| e.name.as_str()), Some("Exercice de printemps"));
        // Every entry of an exercise's crisis carries the flag, inside the hashed details.
        let entries = store
            .audit_entries(&AuditFilter { crisis: Some("13005-2026-901".into()), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert!(!entries.is_empty());
        for e in &entries {
            let d: serde_json::Value = serde_json::from_str(&e.details).unwrap();
            assert_eq!(d["exercise"], json!(id), "{} not flagged", e.action);
        }
        let real_entries = store
            .audit_entries(&AuditFilter { crisis: Some(next.id.to_string()), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert!(real_entries.iter().all(|e| !e.details.contains("\"exercise\"")));
        store.verify_audit(None).await.unwrap();
    }

    #[tokio::test]
    async fn a_commune_already_in_an_open_exercise_refuses_the_whole_new_one() {
        let (_d, store) = store().await;
        let ops = user(&store, Role::Ops, None).await;
        let now = t("2026-11-23T09:00:00Z");
        store.create_exercise(&drill(&["13005"]), &ops, now).await.unwrap();
        let err = store.create_exercise(&drill(&["13001", "13005"]), &ops, now).await.unwrap_err();
        assert!(matches!(err, StoreError::OpenCrisis { .. }), "{err:?}");
        // All or nothing: Aix got no crisis, and there is one exercise.
        assert_eq!(store.exercises().await.unwrap().len(), 1);
        assert!(
            store.crises(&crate::CrisisFilter::default()).await.unwrap().iter().all(|c| c.commune.as_str() == "13005")
        );
    }

    #[tokio::test]
    async fn an_exercise_notification_is_prefixed_and_reaches_only_the_scenario_addresses() {
        let (_d, store) = store().await;
        let ops = user(&store, Role::Ops, None).await;
        let now = t("2026-11-23T09:00:00Z");
        let id = store.create_exercise(&drill(&["13005"]), &ops, now).await.unwrap();
        let crisis = store.exercise(id).await.unwrap().unwrap().crises[0].0.to_string();
        let send = |channel: &'static str, recipient: Option<&'static str>, key: &'static str| NewNotification {
            key,
            channel,
            crisis: Some(""),
            recipient,
            audience: if recipient.is_some() { "dgs" } else { "ops" },
            subject: "Kit prêt",
            body: "Votre kit est prêt.",
        };
        for (channel, recipient, key) in [
            ("sms", None, "ops-sms"),
            ("smtp", None, "ops-mail"),
            ("webhook", None, "ops-hook"),
            ("log", None, "ops-log"),
            ("sms", Some("+33612345678"), "dgs-ok"),
            ("sms", Some("+33699999999"), "dgs-other"),
        ] {
            let n = NewNotification { crisis: Some(&crisis), ..send(channel, recipient, key) };
            store.enqueue_notification(&n, now).await.unwrap();
        }
        let queued = store.notifications(100).await.unwrap();
        let mut seen: Vec<(String, Option<String>)> =
            queued.iter().map(|n| (n.channel.clone(), n.recipient.clone())).collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("log".to_owned(), None),
                ("sms".to_owned(), Some("+33612345678".to_owned())),
                ("sms".to_owned(), Some("+33612345678".to_owned())),
                ("smtp".to_owned(), Some("animation@exemple.fr".to_owned())),
            ]
        );
        assert!(queued.iter().all(|n| n.subject.starts_with("[EXERCICE] ") && n.body.starts_with("[EXERCICE] ")));
        // A real crisis's notifications are untouched.
        let (real, _) = store.create_crisis(&request("13001"), &ops, None, now).await.unwrap();
        let n = NewNotification { crisis: Some(real.id.as_str()), ..send("sms", None, "real") };
        assert!(store.enqueue_notification(&n, now).await.unwrap());
        let last = store.notifications(1).await.unwrap().remove(0);
        assert_eq!((last.subject.as_str(), last.recipient), ("Kit prêt", None));
    }

    #[tokio::test]
    async fn a_due_inject_reaches_the_main_courante_of_its_open_crises_once() {
        let (_d, store) = store().await;
        let ops = user(&store, Role::Ops, None).await;
        let id = store.create_exercise(&drill(&["13005", "13001"]), &ops, t("2026-11-23T09:00:00Z")).await.unwrap();
        assert_eq!(store.deliver_injects(&["sms"], t("2026-11-23T09:29:00Z")).await.unwrap().len(), 0);
        assert_eq!(store.deliver_injects(&["sms"], t("2026-11-23T09:31:00Z")).await.unwrap(), [None]);
        assert_eq!(store.deliver_injects(&["sms"], t("2026-11-23T09:32:00Z")).await.unwrap().len(), 0);
        let x = store.exercise(id).await.unwrap().unwrap();
        assert_eq!(x.injects[0].delivered_at, Some(t("2026-11-23T09:31:00Z")));
        for (c, _) in &x.crises {
            let log = store.log_entries(c).await.unwrap();
            assert_eq!(log.len(), 1);
            assert_eq!((log[0].kind, log[0].text.as_str()), (LogKind::Inject, "La DGS ne répond plus"));
        }
        let sms = store.notifications(10).await.unwrap();
        assert_eq!(sms.len(), 2, "one per crisis, to the scenario's phone");
        assert!(sms.iter().all(|n| n.recipient.as_deref() == Some("+33612345678")));
    }

    #[tokio::test]
    async fn an_exercise_forgets_its_players_once_every_crisis_of_it_was_erased() {
        let (_d, store) = store().await;
        let ops = user(&store, Role::Ops, None).await;
        let now = t("2026-11-23T09:00:00Z");
        let mut new = drill(&["13005", "13001"]);
        new.scenario = "contact = { phone = \"06 12 34 56 78\" }".into();
        let id = store.create_exercise(&new, &ops, now).await.unwrap();
        let crises: Vec<CrisisId> =
            store.exercise(id).await.unwrap().unwrap().crises.into_iter().map(|(c, _)| c).collect();
        store.transition(&crises[0], CrisisAction::Cancel, Some("fin"), By::User(&ops), now).await.unwrap();
        let later = t("2027-06-01T09:00:00Z");
        // One crisis still open: its players are still needed.
        store.purge_personal_data(later, later).await.unwrap();
        let x = store.exercise(id).await.unwrap().unwrap();
        assert!(!x.scenario.is_empty() && !x.recipients.is_empty());
        store.transition(&crises[1], CrisisAction::Cancel, Some("fin"), By::User(&ops), now).await.unwrap();
        store.purge_personal_data(later, later).await.unwrap();
        let x = store.exercise(id).await.unwrap().unwrap();
        assert!(x.scenario.is_empty() && x.recipients.is_empty(), "{x:?}");
        let filter = AuditFilter {
            action: Some(AuditAction::ExercisePurgePersonalData.into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(store.audit_entries(&filter).await.unwrap().len(), 1);
        // Once only.
        store.purge_personal_data(later, later).await.unwrap();
        assert_eq!(store.audit_entries(&filter).await.unwrap().len(), 1);
    }
}
