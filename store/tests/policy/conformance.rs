//! Policy storage conformance: versions, activation, rollback, the audit
//! chain's appends, queries and tamper detection, concurrent writers and
//! the watcher, the same cases on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use convergio_policy::engine::{ADMIN_ONLY_POLICIES, EXAMPLE_POLICIES};
use convergio_policy::{AuditEntry, AuditFilter, PolicyError, PolicyWatcher};
use convergio_schemas::{AuthMethod, Principal};
use serde_json::json;

use crate::{member, Harness};

fn root() -> Principal {
    Principal {
        subject: "root".to_owned(),
        org: Some("acme.example".to_owned()),
        scopes: vec!["admin".to_owned()],
        method: AuthMethod::AdminToken,
    }
}

fn entry(subject: &str, action: &str, decision: &str) -> AuditEntry {
    let principal = member(subject);
    let mut entry = AuditEntry::change(
        None,
        &principal,
        action,
        "agent:x",
        json!({"b": 1, "a": [2]}),
    );
    entry.decision = decision.to_owned();
    entry
}

async fn put_activates_a_new_version_and_keeps_history(harness: Harness) {
    let admin = harness.admin().await;
    let first = admin
        .put(&root(), EXAMPLE_POLICIES, "initial", None)
        .await
        .expect("valid set");
    assert_eq!(first.version, 1);
    assert!(first.active);
    let second = admin
        .put(
            &root(),
            ADMIN_ONLY_POLICIES,
            "tighten",
            Some("req-1".to_owned()),
        )
        .await
        .expect("valid set");
    assert_eq!(second.version, 2);
    assert_eq!(admin.engine().active_version(), Some(2));
    let store = admin.store();
    assert_eq!(store.active_version().await.expect("reads"), Some(2));
    let versions = store.list_versions().await.expect("lists");
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.active))
            .collect::<Vec<_>>(),
        vec![(2, true), (1, false)]
    );
    let old = store.get(Some(1)).await.expect("exists");
    assert_eq!(old.text, EXAMPLE_POLICIES);
    assert_eq!(old.author, "root");
    assert_eq!(old.reason, "initial");
    assert_eq!(store.get(None).await.expect("active").version, 2);
}

async fn invalid_writes_leave_the_active_policy_unchanged(harness: Harness) {
    let admin = harness.admin().await;
    admin
        .put(&root(), EXAMPLE_POLICIES, "initial", None)
        .await
        .expect("valid set");
    let attempts = [
        "permit (principal, action, resource",
        "permit (principal is Robot, action, resource);",
    ];
    for text in attempts {
        let error = admin
            .put(&root(), text, "bad", None)
            .await
            .expect_err("invalid");
        assert!(
            matches!(error, PolicyError::InvalidPolicy { .. }),
            "{error}"
        );
    }
    let lock_out = admin
        .put(
            &root(),
            "@id(\"d\") permit (principal, action == Action::\"discover\", resource);",
            "oops",
            None,
        )
        .await
        .expect_err("would lock administrators out");
    assert!(matches!(lock_out, PolicyError::LockOut));
    let missing = admin
        .rollback(&root(), 42, "", None)
        .await
        .expect_err("no such version");
    assert!(matches!(
        missing,
        PolicyError::VersionNotFound { version: 42 }
    ));
    assert_eq!(
        admin.store().active_version().await.expect("reads"),
        Some(1)
    );
    assert_eq!(admin.store().list_versions().await.expect("lists").len(), 1);
    assert_eq!(admin.engine().active_version(), Some(1));
    assert_eq!(admin.engine().active_text(), EXAMPLE_POLICIES);
}

async fn rollback_reactivates_old_text_as_a_new_version(harness: Harness) {
    let admin = harness.admin().await;
    admin
        .put(&root(), EXAMPLE_POLICIES, "v1", None)
        .await
        .expect("valid");
    admin.reset(&root(), "", None).await.expect("valid");
    assert_eq!(admin.engine().active_text(), ADMIN_ONLY_POLICIES);
    let rolled = admin
        .rollback(&root(), 1, "undo", None)
        .await
        .expect("exists");
    assert_eq!(rolled.version, 3);
    assert_eq!(rolled.text, EXAMPLE_POLICIES);
    assert!(rolled.reason.contains("rollback to version 1"));
    assert_eq!(admin.engine().active_version(), Some(3));
}

async fn audit_chain_verifies_and_pages_with_filters(harness: Harness) {
    let admin = harness.admin().await;
    let audit = admin.audit();
    for index in 0..7 {
        let decision = if index % 2 == 0 { "allow" } else { "deny" };
        let record = audit
            .append(&entry(
                if index < 5 { "alice" } else { "bob" },
                "send_message",
                decision,
            ))
            .await
            .expect("appends");
        assert_eq!(record.seq, index + 1);
    }
    let verified = audit.verify().await.expect("chain is intact");
    assert_eq!(verified.records, 7);

    let mut filter = AuditFilter {
        principal: Some("alice".to_owned()),
        limit: Some(2),
        ..AuditFilter::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = audit.query(&filter).await.expect("queries");
        seen.extend(page.records.iter().map(|record| record.seq));
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);

    let denied = audit
        .query(&AuditFilter {
            decision: Some("deny".to_owned()),
            ..AuditFilter::default()
        })
        .await
        .expect("queries");
    assert_eq!(
        denied.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![2, 4, 6]
    );
    let future = audit
        .query(&AuditFilter {
            since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            ..AuditFilter::default()
        })
        .await
        .expect("queries");
    assert!(future.records.is_empty());
    let past = audit
        .query(&AuditFilter {
            until: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            action: Some("send_message".to_owned()),
            ..AuditFilter::default()
        })
        .await
        .expect("queries");
    assert_eq!(past.records.len(), 7);
}

async fn batched_appends_continue_one_chain(harness: Harness) {
    let admin = harness.admin().await;
    let audit = admin.audit();
    audit
        .append(&entry("alice", "send_message", "allow"))
        .await
        .expect("appends one");
    let batch: Vec<AuditEntry> = (0..5)
        .map(|index| entry(&format!("user-{index}"), "send_message", "deny"))
        .collect();
    let records = audit.append_batch(&batch).await.expect("appends a batch");
    assert_eq!(
        records.iter().map(|record| record.seq).collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6]
    );
    assert!(
        records
            .windows(2)
            .all(|pair| pair[1].prev_hash == pair[0].hash),
        "each record chains to the one before it in the batch"
    );
    assert!(audit.append_batch(&[]).await.expect("empty").is_empty());
    // Through the sink: a burst is written in batches, in order, none lost.
    let (sink, writer) = convergio_policy::AuditSink::spawn(audit.clone(), 64);
    for index in 0..300 {
        sink.record(entry(&format!("burst-{index}"), "send_message", "allow"))
            .await;
    }
    drop(sink);
    assert_eq!(writer.finish().await, 300);
    let verified = audit.verify().await.expect("chain is intact");
    assert_eq!(verified.records, 306);
    let last = audit
        .query(&AuditFilter {
            principal: Some("burst-299".to_owned()),
            ..AuditFilter::default()
        })
        .await
        .expect("queries");
    assert_eq!(
        last.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![306],
        "the queue keeps its order"
    );
}

async fn edited_audit_row_breaks_verification_at_its_seq(harness: Harness) {
    let admin = harness.admin().await;
    for _ in 0..5 {
        admin
            .audit()
            .append(&entry("alice", "send_message", "deny"))
            .await
            .expect("appends");
    }
    let changed = harness
        .execute("UPDATE audit_records SET decision = 'allow' WHERE seq = 3")
        .await;
    assert_eq!(changed, 1);
    let error = admin.audit().verify().await.expect_err("tampered");
    assert!(
        matches!(error, PolicyError::AuditBroken { seq: 3, .. }),
        "{error}"
    );
}

async fn deleted_audit_row_breaks_verification_at_its_seq(harness: Harness) {
    let admin = harness.admin().await;
    for _ in 0..5 {
        admin
            .audit()
            .append(&entry("alice", "send_message", "allow"))
            .await
            .expect("appends");
    }
    assert_eq!(
        harness
            .execute("DELETE FROM audit_records WHERE seq = 2")
            .await,
        1
    );
    let error = admin.audit().verify().await.expect_err("tampered");
    assert!(
        matches!(error, PolicyError::AuditBroken { seq: 2, .. }),
        "{error}"
    );
}

// Regression: issue #15, defect 10
async fn audit_row_whose_detail_is_not_json_breaks_verification_at_its_seq(harness: Harness) {
    let admin = harness.admin().await;
    for _ in 0..5 {
        admin
            .audit()
            .append(&entry("alice", "send_message", "allow"))
            .await
            .expect("appends");
    }
    assert_eq!(
        harness
            .execute("UPDATE audit_records SET detail = 'not json {' WHERE seq = 4")
            .await,
        1
    );
    let error = admin.audit().verify().await.expect_err("tampered");
    assert!(
        matches!(error, PolicyError::AuditBroken { seq: 4, .. }),
        "{error}"
    );
    // An earlier edit is still the first break reported.
    harness
        .execute("UPDATE audit_records SET decision = 'deny' WHERE seq = 2")
        .await;
    let error = admin.audit().verify().await.expect_err("tampered");
    assert!(
        matches!(error, PolicyError::AuditBroken { seq: 2, .. }),
        "{error}"
    );
}

async fn concurrent_appends_keep_a_valid_chain(harness: Harness) {
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..4 {
        // Separate store handles stand in for separate replicas.
        let store = harness.store().await;
        tasks.spawn(async move {
            let log = convergio_policy::AuditLog::new(store);
            for _ in 0..10 {
                log.append(&entry(&format!("writer-{writer}"), "send_message", "allow"))
                    .await
                    .expect("appends");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("writer task finished");
    }
    let admin = harness.admin().await;
    let verified = admin.audit().verify().await.expect("chain is intact");
    assert_eq!(verified.records, 40);
}

async fn watcher_picks_up_a_change_made_through_another_handle(harness: Harness) {
    let writer = harness.admin().await;
    writer
        .put(&root(), EXAMPLE_POLICIES, "v1", None)
        .await
        .expect("valid");
    let reader = harness.admin().await;
    assert_eq!(reader.engine().active_version(), None);
    let watcher = PolicyWatcher::spawn(reader.clone(), Duration::from_millis(50));
    writer.reset(&root(), "", None).await.expect("valid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.engine().active_version() != Some(2) {
        assert!(
            Instant::now() < deadline,
            "watcher did not pick up version 2"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reader.engine().active_text(), ADMIN_ONLY_POLICIES);
    watcher.stop();
}

convergio_tests::on_both_backends!(
    crate::open;
    put_activates_a_new_version_and_keeps_history,
    invalid_writes_leave_the_active_policy_unchanged,
    rollback_reactivates_old_text_as_a_new_version,
    audit_chain_verifies_and_pages_with_filters,
    batched_appends_continue_one_chain,
    edited_audit_row_breaks_verification_at_its_seq,
    deleted_audit_row_breaks_verification_at_its_seq,
    audit_row_whose_detail_is_not_json_breaks_verification_at_its_seq,
    concurrent_appends_keep_a_valid_chain,
    watcher_picks_up_a_change_made_through_another_handle,
);
