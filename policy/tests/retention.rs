//! Retention of the audit chain (issue 15) on SQLite and PostgreSQL: a
//! pruned prefix leaves a checkpoint, verification continues from it and
//! says which range it checked, the newest record is never pruned, tampering
//! after a prune is still detected, and a tampered prefix is not pruned
//! (pruning never erases the evidence).

use chrono::{Duration, Utc};
use convergio_policy::{connect, AuditEntry, AuditLog, PolicyError};
use convergio_schemas::{AuthMethod, Principal};
use convergio_tests::postgres::TestDatabase;
use serde_json::json;

/// A fresh database: a SQLite file in a temp dir or a PostgreSQL database.
struct Harness {
    url: String,
    _dir: Option<tempfile::TempDir>,
    /// Dropped with the harness, also when a test fails.
    _database: Option<TestDatabase>,
}

impl Harness {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            url: format!("sqlite://{}/policy.db", dir.path().display()),
            _dir: Some(dir),
            _database: None,
        }
    }

    async fn postgres() -> Self {
        let database = TestDatabase::create("convergio_p").await;
        Self {
            url: database.url().to_owned(),
            _dir: None,
            _database: Some(database),
        }
    }

    async fn audit(&self) -> AuditLog {
        AuditLog::new(connect(&self.url).await.expect("store opens"))
    }

    /// Runs raw SQL against the database (to tamper with rows).
    async fn execute(&self, sql: &str) -> u64 {
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
            let done = sqlx::query(sql).execute(&pool).await.expect("sql runs");
            pool.close().await;
            done.rows_affected()
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
            let done = sqlx::query(sql).execute(&pool).await.expect("sql runs");
            pool.close().await;
            done.rows_affected()
        }
    }

    /// Ends the test; the database goes with the harness.
    async fn finish(self) {}
}

fn entry(age_minutes: i64) -> AuditEntry {
    let principal = Principal {
        subject: "alice".to_owned(),
        org: Some("acme.example".to_owned()),
        scopes: Vec::new(),
        method: AuthMethod::Jwt,
    };
    let mut entry = AuditEntry::change(
        None,
        &principal,
        "send_message",
        "agent:echo",
        json!({"n": age_minutes}),
    );
    entry.at = Utc::now() - Duration::minutes(age_minutes);
    entry
}

/// Six records two hours old, four a minute old.
async fn seeded(harness: &Harness) -> AuditLog {
    let audit = harness.audit().await;
    let entries: Vec<AuditEntry> = [120, 120, 120, 120, 120, 120, 1, 1, 1, 1]
        .into_iter()
        .map(entry)
        .collect();
    audit.append_batch(&entries).await.expect("append");
    audit
}

async fn prune_then_verify_reports_the_checked_range(harness: Harness) {
    let audit = seeded(&harness).await;
    let cutoff = Some(Utc::now() - Duration::hours(1));
    assert_eq!(audit.prune(cutoff, 4).await.expect("first batch"), 4);
    let checkpoint = audit.checkpoint().await.expect("read").expect("checkpoint");
    assert_eq!((checkpoint.seq, checkpoint.pruned), (4, 4));
    assert_eq!(audit.prune(cutoff, 4).await.expect("rest"), 2);
    assert_eq!(audit.prune(cutoff, 4).await.expect("none"), 0);
    let verified = audit.verify().await.expect("chain verifies after a prune");
    assert_eq!(
        (verified.first_seq, verified.last_seq, verified.records),
        (7, 10, 4)
    );
    let checkpoint = verified.checkpoint.expect("reported");
    assert_eq!((checkpoint.seq, checkpoint.pruned), (6, 6));

    // A row cap prunes by count, but never the newest record: appends
    // continue the chain from it.
    assert_eq!(audit.prune(None, 100).await.expect("cap"), 3);
    assert_eq!(audit.count().await.expect("count"), 1);
    assert_eq!(audit.prune(None, 100).await.expect("head stays"), 0);
    audit.append(&entry(0)).await.expect("append after a prune");
    let verified = audit.verify().await.expect("verifies");
    assert_eq!((verified.first_seq, verified.last_seq), (10, 11));

    // Tampering after a prune is still detected.
    harness
        .execute("UPDATE audit_records SET decision = 'deny' WHERE seq = 11")
        .await;
    let error = audit.verify().await.expect_err("tampered");
    assert!(
        matches!(error, PolicyError::AuditBroken { seq: 11, .. }),
        "{error}"
    );
    harness.finish().await;
}

async fn deleting_the_record_after_the_checkpoint_breaks_verification(harness: Harness) {
    let audit = seeded(&harness).await;
    let cutoff = Some(Utc::now() - Duration::hours(1));
    assert_eq!(audit.prune(cutoff, 100).await.expect("prune"), 6);
    assert_eq!(
        harness
            .execute("DELETE FROM audit_records WHERE seq = 7")
            .await,
        1
    );
    let error = audit.verify().await.expect_err("a record is missing");
    assert!(
        matches!(error, PolicyError::AuditBroken { seq: 7, .. }),
        "{error}"
    );
    harness.finish().await;
}

async fn a_tampered_prefix_is_not_pruned(harness: Harness) {
    let audit = seeded(&harness).await;
    harness
        .execute("UPDATE audit_records SET subject = 'mallory' WHERE seq = 3")
        .await;
    let cutoff = Some(Utc::now() - Duration::hours(1));
    let error = audit.prune(cutoff, 100).await.expect_err("refused");
    assert!(
        matches!(error, PolicyError::AuditBroken { seq: 3, .. }),
        "{error}"
    );
    assert_eq!(audit.count().await.expect("count"), 10, "nothing deleted");
    assert!(audit.checkpoint().await.expect("read").is_none());
    let error = audit.verify().await.expect_err("still detected");
    assert!(
        matches!(error, PolicyError::AuditBroken { seq: 3, .. }),
        "{error}"
    );
    harness.finish().await;
}

#[tokio::test]
async fn prune_then_verify_reports_the_checked_range_on_sqlite() {
    prune_then_verify_reports_the_checked_range(Harness::sqlite()).await;
}

#[tokio::test]
async fn prune_then_verify_reports_the_checked_range_on_postgres() {
    prune_then_verify_reports_the_checked_range(Harness::postgres().await).await;
}

#[tokio::test]
async fn deleting_the_record_after_the_checkpoint_breaks_verification_on_sqlite() {
    deleting_the_record_after_the_checkpoint_breaks_verification(Harness::sqlite()).await;
}

#[tokio::test]
async fn deleting_the_record_after_the_checkpoint_breaks_verification_on_postgres() {
    deleting_the_record_after_the_checkpoint_breaks_verification(Harness::postgres().await).await;
}

#[tokio::test]
async fn a_tampered_prefix_is_not_pruned_on_sqlite() {
    a_tampered_prefix_is_not_pruned(Harness::sqlite()).await;
}

#[tokio::test]
async fn a_tampered_prefix_is_not_pruned_on_postgres() {
    a_tampered_prefix_is_not_pruned(Harness::postgres().await).await;
}
