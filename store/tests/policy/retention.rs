//! Retention of the audit chain (issue 15): a
//! pruned prefix leaves a checkpoint, verification continues from it and
//! says which range it checked, the newest record is never pruned, tampering
//! after a prune is still detected, and a tampered prefix is not pruned
//! (pruning never erases the evidence).

use chrono::{Duration, Utc};
use convergio_policy::{AuditEntry, AuditLog, PolicyError};
use serde_json::json;

use crate::{member, Harness};

fn entry(age_minutes: i64) -> AuditEntry {
    let principal = member("alice");
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
}

convergio_tests::on_both_backends!(
    crate::open;
    prune_then_verify_reports_the_checked_range,
    deleting_the_record_after_the_checkpoint_breaks_verification,
    a_tampered_prefix_is_not_pruned,
);
