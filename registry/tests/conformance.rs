//! The storage conformance suite: one set of behaviours, run against SQLite
//! (a temporary file) and PostgreSQL (a fresh database per test). A backend
//! that passes here can carry the registry.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use convergio_registry::model::{now, Actor, AgentRecord, TaskRoute, TrustChange};
use convergio_registry::{DiscoveryQuery, RegistryError, Store};
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use support::{card, record, record_in, simple_card};

convergio_tests::on_both_backends!(
    crate::support::open_store;
    inserted_record_reads_back_unchanged,
    duplicate_live_id_is_a_conflict,
    update_is_compare_and_swap_and_keeps_history,
    stale_update_leaves_the_old_row_and_no_history,
    soft_delete_hides_the_agent_but_keeps_its_history,
    deregistered_id_can_be_registered_again_as_next_version,
    trust_change_is_recorded_with_who_when_and_why,
    a_record_inserted_at_a_given_trust_reads_back_with_its_change,
    unknown_ids_are_not_found,
    discovery_filters_combine_and_ignore_case,
    free_text_ranks_and_combines_with_filters,
    pagination_is_stable_while_inserting,
    ranked_pagination_is_stable_while_inserting,
    bad_page_tokens_are_rejected,
    failed_bulk_insert_leaves_nothing_behind,
    task_routes_round_trip_and_page_by_owner,
    owned_task_ids_read_only_the_page_asked_about,
    contexts_belong_to_their_first_principal_per_agent,
    concurrent_updates_of_one_version_let_exactly_one_win,
    side_table_terms_follow_registration_and_update,
    free_text_skips_deregistered_agents_unless_asked,
    refreshed_upstreams_keep_the_version_and_the_history,
);

fn admin_change(id: &AgentId, to: TrustLevel, reason: &str) -> TrustChange {
    TrustChange {
        agent_id: id.clone(),
        from: TrustLevel::Registered,
        to,
        actor: Actor::admin(),
        reason: reason.to_owned(),
        at: now(),
    }
}

fn ids(records: &[AgentRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.to_string()).collect()
}

async fn discover_ids(store: &Arc<dyn Store>, query: DiscoveryQuery) -> Vec<String> {
    ids(&store.discover(&query).await.expect("discovery works").items)
}

async fn inserted_record_reads_back_unchanged(store: Arc<dyn Store>) {
    let original = record("weather", simple_card("Weather"));
    let stored = store.insert(&original).await.expect("insert");
    assert_eq!(stored, original);
    let read = store.get(&original.id, None).await.expect("get");
    assert_eq!(read, original);
    assert_eq!(
        store.get(&original.id, Some(1)).await.expect("get v1"),
        original
    );
}

async fn duplicate_live_id_is_a_conflict(store: Arc<dyn Store>) {
    let original = record("weather", simple_card("Weather"));
    store.insert(&original).await.expect("insert");
    let again = record("weather", simple_card("Other weather"));
    let error = store.insert(&again).await.expect_err("duplicate");
    assert!(
        matches!(error, RegistryError::AgentExists { .. }),
        "{error:?}"
    );
    assert_eq!(store.get(&original.id, None).await.expect("get"), original);
}

async fn update_is_compare_and_swap_and_keeps_history(store: Arc<dyn Store>) {
    let v1 = record("weather", simple_card("Weather"));
    store.insert(&v1).await.expect("insert");
    let mut next = record("weather", simple_card("Weather two"));
    next.role = AgentRole::Critic;
    next.trust = TrustLevel::Internal; // ignored: updates keep trust
    let v2 = store.update(&v1.id, 1, &next).await.expect("update");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.card, next.card);
    assert_eq!(v2.role, AgentRole::Critic);
    assert_eq!(v2.trust, TrustLevel::Registered);
    assert_eq!(v2.created_at, v1.created_at);
    assert_eq!(store.get(&v1.id, Some(1)).await.expect("old version"), v1);
    let versions = store.list_versions(&v1.id).await.expect("versions");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(versions[1], v2);
    // The discovery index follows the new card.
    let found = discover_ids(
        &store,
        DiscoveryQuery {
            role: Some(AgentRole::Critic),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(found, vec![v1.id.to_string()]);
}

async fn stale_update_leaves_the_old_row_and_no_history(store: Arc<dyn Store>) {
    let v1 = record("weather", simple_card("Weather"));
    store.insert(&v1).await.expect("insert");
    let v2 = store
        .update(&v1.id, 1, &record("weather", simple_card("Weather two")))
        .await
        .expect("update");
    let error = store
        .update(&v1.id, 1, &record("weather", simple_card("Weather stale")))
        .await
        .expect_err("stale");
    assert!(
        matches!(
            error,
            RegistryError::StaleVersion {
                expected: 1,
                current: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(store.get(&v1.id, None).await.expect("get"), v2);
    assert_eq!(
        store.list_versions(&v1.id).await.expect("versions").len(),
        2
    );
    let stale_trust = store
        .set_trust(
            &v1.id,
            Some(1),
            &admin_change(&v1.id, TrustLevel::Trusted, "stale"),
        )
        .await
        .expect_err("stale trust change");
    assert!(matches!(stale_trust, RegistryError::StaleVersion { .. }));
    assert!(store
        .trust_history(&v1.id)
        .await
        .expect("history")
        .is_empty());
    assert_eq!(store.get(&v1.id, None).await.expect("get"), v2);
}

async fn soft_delete_hides_the_agent_but_keeps_its_history(store: Arc<dyn Store>) {
    let v1 = record("weather", simple_card("Weather"));
    store.insert(&v1).await.expect("insert");
    let stale = store
        .delete(&v1.id, Some(7), now())
        .await
        .expect_err("stale delete");
    assert!(matches!(stale, RegistryError::StaleVersion { .. }));
    let tombstone = store.delete(&v1.id, Some(1), now()).await.expect("delete");
    assert!(tombstone.deleted_at.is_some());
    assert_eq!(tombstone.version, 2);
    assert_eq!(store.get(&v1.id, None).await.expect("get"), tombstone);
    assert_eq!(store.get(&v1.id, Some(1)).await.expect("v1"), v1);
    assert!(discover_ids(&store, DiscoveryQuery::default())
        .await
        .is_empty());
    let with_deleted = discover_ids(
        &store,
        DiscoveryQuery {
            include_deleted: true,
            skill: Some("do".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(with_deleted, vec![v1.id.to_string()]);
    let again = store
        .delete(&v1.id, None, now())
        .await
        .expect_err("already deleted");
    assert!(matches!(again, RegistryError::AgentNotFound { .. }));
    let update = store
        .update(&v1.id, 2, &v1)
        .await
        .expect_err("update deleted");
    assert!(matches!(update, RegistryError::AgentNotFound { .. }));
    let versions = store.list_versions(&v1.id).await.expect("versions");
    assert_eq!(versions.len(), 2);
    assert!(versions[1].deleted_at.is_some());
}

async fn deregistered_id_can_be_registered_again_as_next_version(store: Arc<dyn Store>) {
    let v1 = record("weather", simple_card("Weather"));
    store.insert(&v1).await.expect("insert");
    store.delete(&v1.id, None, now()).await.expect("delete");
    let fresh = record("weather", simple_card("Weather reborn"));
    let revived = store.insert(&fresh).await.expect("register again");
    assert_eq!(revived.version, 3);
    assert!(revived.deleted_at.is_none());
    assert_eq!(revived.card, fresh.card);
    let versions = store.list_versions(&v1.id).await.expect("versions");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(versions[1].deleted_at.is_some());
    let found = discover_ids(
        &store,
        DiscoveryQuery {
            q: Some("reborn".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(found, vec![v1.id.to_string()]);
}

async fn a_record_inserted_at_a_given_trust_reads_back_with_its_change(store: Arc<dyn Store>) {
    let mut synced = record("ledger", simple_card("Ledger"));
    synced.trust = TrustLevel::Untrusted;
    let change = admin_change(&synced.id, TrustLevel::Untrusted, "peer untrusted");
    let stored = store
        .insert_with_trust_change(&synced, Some(&change))
        .await
        .expect("insert");
    assert_eq!((stored.version, stored.trust), (1, TrustLevel::Untrusted));
    assert_eq!(
        store.trust_history(&synced.id).await.expect("history"),
        [change]
    );

    // A refused insert leaves no trust change behind.
    let again = admin_change(&synced.id, TrustLevel::Trusted, "a second time");
    let error = store
        .insert_with_trust_change(&synced, Some(&again))
        .await
        .expect_err("the id is live");
    assert!(
        matches!(error, RegistryError::AgentExists { .. }),
        "{error}"
    );
    assert_eq!(
        store
            .trust_history(&synced.id)
            .await
            .expect("history")
            .len(),
        1
    );
}

async fn trust_change_is_recorded_with_who_when_and_why(store: Arc<dyn Store>) {
    let v1 = record("weather", simple_card("Weather"));
    store.insert(&v1).await.expect("insert");
    let change = admin_change(&v1.id, TrustLevel::Trusted, "audited by ops");
    let v2 = store
        .set_trust(&v1.id, Some(1), &change)
        .await
        .expect("set trust");
    assert_eq!(v2.trust, TrustLevel::Trusted);
    assert_eq!(v2.version, 2);
    let mut lower = admin_change(&v1.id, TrustLevel::Untrusted, "incident 42");
    lower.from = TrustLevel::Internal; // the store records the real previous level
    store
        .set_trust(&v1.id, None, &lower)
        .await
        .expect("lower trust");
    let history = store.trust_history(&v1.id).await.expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], change);
    assert_eq!(history[1].from, TrustLevel::Trusted);
    assert_eq!(history[1].to, TrustLevel::Untrusted);
    assert_eq!(history[1].reason, "incident 42");
    assert_eq!(history[1].actor, Actor::admin());
    assert_eq!(
        store.get(&v1.id, Some(1)).await.expect("v1").trust,
        TrustLevel::Registered
    );
    let min_trusted = discover_ids(
        &store,
        DiscoveryQuery {
            min_trust: Some(TrustLevel::Registered),
            ..Default::default()
        },
    )
    .await;
    assert!(min_trusted.is_empty());
}

async fn unknown_ids_are_not_found(store: Arc<dyn Store>) {
    let ghost = AgentId::internal("ghost").expect("valid");
    let not_found = |error: RegistryError| matches!(error, RegistryError::AgentNotFound { .. });
    assert!(not_found(store.get(&ghost, None).await.expect_err("get")));
    assert!(not_found(
        store.list_versions(&ghost).await.expect_err("versions")
    ));
    assert!(not_found(
        store.trust_history(&ghost).await.expect_err("trust")
    ));
    assert!(not_found(
        store
            .update(&ghost, 1, &record("ghost", simple_card("Ghost")))
            .await
            .expect_err("update")
    ));
    assert!(not_found(
        store.delete(&ghost, None, now()).await.expect_err("delete")
    ));
    assert!(not_found(
        store
            .set_trust(
                &ghost,
                None,
                &admin_change(&ghost, TrustLevel::Trusted, "x")
            )
            .await
            .expect_err("trust")
    ));
    let existing = record("real", simple_card("Real"));
    store.insert(&existing).await.expect("insert");
    assert!(not_found(
        store
            .get(&existing.id, Some(9))
            .await
            .expect_err("no version 9")
    ));
}

async fn seed_catalogue(store: &Arc<dyn Store>) {
    let records = vec![
        record_in(
            "weather",
            None,
            AgentRole::Worker,
            TrustLevel::Registered,
            card(
                "Weather",
                "Forecasts for any city",
                &[("forecast", "Forecast", &["weather", "Climate"])],
                "text/plain",
                "application/json",
            ),
        ),
        record_in(
            "translator",
            Some("lingo.example"),
            AgentRole::Worker,
            TrustLevel::Trusted,
            card(
                "Translator",
                "Translates text between languages",
                &[("translate", "Translate", &["language", "text"])],
                "text/plain",
                "text/plain",
            ),
        ),
        record_in(
            "planner",
            None,
            AgentRole::Planner,
            TrustLevel::Internal,
            card(
                "Trip planner",
                "Plans trips using weather forecasts",
                &[("plan-trip", "Plan trip", &["travel", "weather"])],
                "text/plain",
                "application/json",
            ),
        ),
        record_in(
            "invoice",
            Some("acme.example"),
            AgentRole::Worker,
            TrustLevel::Untrusted,
            card(
                "Invoice extractor",
                "Extracts fields from invoices",
                &[("extract", "Extract invoice", &["finance", "pdf"])],
                "application/pdf",
                "application/json",
            ),
        ),
    ];
    store.bulk_insert(&records).await.expect("bulk insert");
}

async fn discovery_filters_combine_and_ignore_case(store: Arc<dyn Store>) {
    seed_catalogue(&store).await;
    let query = |f: fn(&mut DiscoveryQuery)| {
        let mut query = DiscoveryQuery::default();
        f(&mut query);
        query
    };
    let all = discover_ids(&store, DiscoveryQuery::default()).await;
    assert_eq!(
        all,
        vec![
            "convergio://agents/weather",
            "external://lingo.example/agents/translator",
            "convergio://agents/planner",
            "external://acme.example/agents/invoice",
        ],
        "unranked listings are in registration order"
    );
    let check = |expected: &[&str], found: Vec<String>| {
        let found: BTreeSet<String> = found.into_iter().collect();
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(found, expected);
    };
    check(
        &["convergio://agents/weather", "convergio://agents/planner"],
        discover_ids(&store, query(|q| q.tag = Some("WEATHER".into()))).await,
    );
    check(
        &["convergio://agents/weather"],
        discover_ids(&store, query(|q| q.tag = Some("climate".into()))).await,
    );
    check(
        &["external://lingo.example/agents/translator"],
        discover_ids(&store, query(|q| q.skill = Some("Translate".into()))).await,
    );
    check(
        &["convergio://agents/planner"],
        discover_ids(&store, query(|q| q.skill = Some("plan trip".into()))).await,
    );
    check(
        &["external://acme.example/agents/invoice"],
        discover_ids(
            &store,
            query(|q| q.input_mode = Some("application/pdf".into())),
        )
        .await,
    );
    check(
        &[
            "convergio://agents/weather",
            "convergio://agents/planner",
            "external://acme.example/agents/invoice",
        ],
        discover_ids(
            &store,
            query(|q| q.output_mode = Some("application/json".into())),
        )
        .await,
    );
    check(
        &["convergio://agents/planner"],
        discover_ids(&store, query(|q| q.role = Some(AgentRole::Planner))).await,
    );
    check(
        &["external://acme.example/agents/invoice"],
        discover_ids(&store, query(|q| q.org = Some("ACME.example".into()))).await,
    );
    check(
        &[
            "external://lingo.example/agents/translator",
            "convergio://agents/planner",
        ],
        discover_ids(&store, query(|q| q.min_trust = Some(TrustLevel::Trusted))).await,
    );
    check(
        &["convergio://agents/planner"],
        discover_ids(
            &store,
            query(|q| {
                q.tag = Some("weather".into());
                q.min_trust = Some(TrustLevel::Verified);
            }),
        )
        .await,
    );
    check(
        &[],
        discover_ids(
            &store,
            query(|q| {
                q.tag = Some("weather".into());
                q.org = Some("acme.example".into());
            }),
        )
        .await,
    );
}

async fn free_text_ranks_and_combines_with_filters(store: Arc<dyn Store>) {
    seed_catalogue(&store).await;
    let text = |q: &str| DiscoveryQuery {
        q: Some(q.into()),
        ..Default::default()
    };
    // "weather" is the name of one agent and a tag/description word of another:
    // the name match ranks first.
    let found = discover_ids(&store, text("weather")).await;
    assert_eq!(
        found,
        vec!["convergio://agents/weather", "convergio://agents/planner"]
    );
    assert_eq!(
        discover_ids(&store, text("invoices")).await,
        vec!["external://acme.example/agents/invoice"]
    );
    assert_eq!(
        discover_ids(&store, text("Translates  TEXT!")).await,
        vec!["external://lingo.example/agents/translator"]
    );
    assert!(discover_ids(&store, text("submarine")).await.is_empty());
    let mut filtered = text("weather");
    filtered.role = Some(AgentRole::Planner);
    assert_eq!(
        discover_ids(&store, filtered).await,
        vec!["convergio://agents/planner"]
    );
    // Punctuation-only text is no text filter at all.
    assert_eq!(discover_ids(&store, text("\"*)(")).await.len(), 4);
}

async fn pagination_is_stable_while_inserting(store: Arc<dyn Store>) {
    let originals: Vec<AgentRecord> = (0..25)
        .map(|i| {
            record(
                &format!("agent-{:03}", i * 2),
                simple_card(&format!("Agent {i}")),
            )
        })
        .collect();
    store.bulk_insert(&originals).await.expect("seed");
    let mut seen = Vec::new();
    let mut token = None;
    let mut inserted = 0;
    loop {
        let page = store
            .discover(&DiscoveryQuery {
                page_size: Some(7),
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page");
        seen.extend(ids(&page.items));
        // Insert between pages, both before and after the cursor.
        for name in [
            format!("agent-{:03}", inserted * 2 + 1),
            format!("aaa-{inserted}"),
        ] {
            store
                .insert(&record(&name, simple_card("Late")))
                .await
                .expect("insert while paging");
        }
        inserted += 1;
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no record appears twice");
    // Every record present when paging began comes first, in registration
    // order; records inserted meanwhile follow them.
    assert_eq!(seen[..originals.len()].to_vec(), ids(&originals));
}

async fn ranked_pagination_is_stable_while_inserting(store: Arc<dyn Store>) {
    let originals: Vec<AgentRecord> = (0..12)
        .map(|i| record(&format!("geo-{i:02}"), simple_card("Geocoder")))
        .collect();
    store.bulk_insert(&originals).await.expect("seed");
    let mut seen = Vec::new();
    let mut token = None;
    for round in 0.. {
        let page = store
            .discover(&DiscoveryQuery {
                q: Some("geocoder".into()),
                page_size: Some(5),
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page");
        seen.extend(ids(&page.items));
        store
            .insert(&record(&format!("other-{round}"), simple_card("Unrelated")))
            .await
            .expect("insert while paging");
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no record appears twice");
    assert_eq!(seen.len(), originals.len(), "no record is skipped");
}

async fn bad_page_tokens_are_rejected(store: Arc<dyn Store>) {
    for token in ["%%%", "e30", "bm90IGpzb24"] {
        let error = store
            .discover(&DiscoveryQuery {
                page_token: Some(token.into()),
                ..Default::default()
            })
            .await
            .expect_err("bad token");
        assert!(
            matches!(error, RegistryError::InvalidInput { .. }),
            "{error:?}"
        );
    }
    let error = store
        .discover(&DiscoveryQuery {
            page_size: Some(101),
            ..Default::default()
        })
        .await
        .expect_err("page too large");
    assert!(matches!(error, RegistryError::InvalidInput { .. }));
}

async fn failed_bulk_insert_leaves_nothing_behind(store: Arc<dyn Store>) {
    let existing = record("taken", simple_card("Taken"));
    store.insert(&existing).await.expect("insert");
    let batch = vec![
        record("fresh-1", simple_card("Fresh one")),
        record("fresh-2", simple_card("Fresh two")),
        record("taken", simple_card("Taken again")),
    ];
    let error = store.bulk_insert(&batch).await.expect_err("collision");
    assert!(
        matches!(error, RegistryError::AgentExists { .. }),
        "{error:?}"
    );
    for name in ["fresh-1", "fresh-2"] {
        let id = AgentId::internal(name).expect("valid");
        assert!(store.get(&id, None).await.is_err(), "{name} must not exist");
    }
    assert_eq!(
        discover_ids(&store, DiscoveryQuery::default()).await,
        vec![existing.id.to_string()]
    );
    let found = discover_ids(
        &store,
        DiscoveryQuery {
            q: Some("fresh".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(found.is_empty(), "the text index has no trace of the batch");
    assert_eq!(store.get(&existing.id, None).await.expect("get"), existing);
}

async fn task_routes_round_trip_and_page_by_owner(store: Arc<dyn Store>) {
    let echo = AgentId::internal("echo").expect("valid");
    let other = AgentId::internal("other").expect("valid");
    for i in 0..5 {
        let at = now();
        let route = TaskRoute {
            task_id: format!("task-{i}"),
            context_id: Some(format!("ctx-{i}")),
            agent_id: if i % 2 == 0 {
                echo.clone()
            } else {
                other.clone()
            },
            owner: if i < 4 { "alice".into() } else { "bob".into() },
            created_at: at,
            updated_at: at,
        };
        store.put_task_route(&route).await.expect("put");
        assert_eq!(
            store.get_task_route(&route.task_id).await.expect("get"),
            Some(route)
        );
    }
    assert_eq!(store.get_task_route("missing").await.expect("get"), None);
    let first = store
        .list_task_routes("alice", None, 3, None)
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 3);
    let second = store
        .list_task_routes("alice", None, 3, first.next_page_token.as_deref())
        .await
        .expect("page 2");
    assert_eq!(second.items.len(), 1);
    assert!(second.next_page_token.is_none());
    let echo_only = store
        .list_task_routes("alice", Some(&echo), 10, None)
        .await
        .expect("by agent");
    assert_eq!(
        echo_only
            .items
            .iter()
            .map(|r| r.task_id.as_str())
            .collect::<Vec<_>>(),
        vec!["task-0", "task-2"]
    );
    // Overwriting keeps created_at.
    let mut route = store
        .get_task_route("task-1")
        .await
        .expect("get")
        .expect("exists");
    let created = route.created_at;
    route.context_id = None;
    route.updated_at = now();
    route.created_at = now();
    store.put_task_route(&route).await.expect("overwrite");
    let stored = store
        .get_task_route("task-1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.context_id, None);
    assert_eq!(stored.created_at, created);
}

// Regression: issue #15, defects 2 and 3: every ListTasks page loaded all of
// the caller's task routes, and totalSize was the upstream's over all callers.
async fn owned_task_ids_read_only_the_page_asked_about(store: Arc<dyn Store>) {
    let echo = AgentId::internal("echo").expect("valid");
    let other = AgentId::internal("other").expect("valid");
    let route = |task_id: String, agent: &AgentId, owner: &str| {
        let at = now();
        TaskRoute {
            task_id,
            context_id: None,
            agent_id: agent.clone(),
            owner: owner.to_owned(),
            created_at: at,
            updated_at: at,
        }
    };
    for i in 0..1_200 {
        let owner = if i % 3 == 0 { "acme/bob" } else { "acme/alice" };
        store
            .put_task_route(&route(format!("t-{i:04}"), &echo, owner))
            .await
            .expect("put");
    }
    store
        .put_task_route(&route("t-other".into(), &other, "acme/alice"))
        .await
        .expect("put");
    // A page of the upstream's ids: alice's, bob's, another agent's, unknown.
    let page: Vec<String> = ["t-0001", "t-0003", "t-0004", "t-other", "t-none"]
        .map(str::to_owned)
        .to_vec();
    let mut owned = store
        .owned_task_ids("acme/alice", &echo, &page)
        .await
        .expect("owned");
    owned.sort();
    assert_eq!(owned, ["t-0001", "t-0004"]);
    assert!(store
        .owned_task_ids("acme/alice", &echo, &[])
        .await
        .expect("empty page")
        .is_empty());
    // More ids than one statement binds are looked up in chunks, each once.
    let all: Vec<String> = (0..1_200).map(|i| format!("t-{i:04}")).collect();
    let owned = store
        .owned_task_ids("acme/alice", &echo, &all)
        .await
        .expect("owned");
    assert_eq!(owned.len(), 800);
    assert_eq!(
        owned.iter().collect::<BTreeSet<_>>().len(),
        800,
        "each once"
    );
    // Counts are the caller's own, per agent.
    assert_eq!(
        store
            .count_task_routes("acme/alice", &echo)
            .await
            .expect("count"),
        800
    );
    assert_eq!(
        store
            .count_task_routes("acme/bob", &echo)
            .await
            .expect("count"),
        400
    );
    assert_eq!(
        store
            .count_task_routes("acme/alice", &other)
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        store
            .count_task_routes("acme/carol", &echo)
            .await
            .expect("count"),
        0
    );
}

// Regression: issue #15, defect 4: context ids were not owned at all.
async fn contexts_belong_to_their_first_principal_per_agent(store: Arc<dyn Store>) {
    let echo = AgentId::internal("echo").expect("valid");
    let other = AgentId::internal("other").expect("valid");
    let claim = |agent: &AgentId, owner: &str| {
        let store = store.clone();
        let agent = agent.clone();
        let owner = owner.to_owned();
        async move {
            store
                .claim_context(&agent, "ctx-1", &owner, now())
                .await
                .expect("claim")
        }
    };
    assert_eq!(claim(&echo, "acme/alice").await, "acme/alice");
    assert_eq!(claim(&echo, "acme/alice").await, "acme/alice", "idempotent");
    assert_eq!(claim(&echo, "acme/bob").await, "acme/alice", "first wins");
    // The same id at another agent is another context.
    assert_eq!(claim(&other, "acme/bob").await, "acme/bob");
    // Racing first claims agree on one winner.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let agent = echo.clone();
            tokio::spawn(async move {
                store
                    .claim_context(&agent, "ctx-race", &format!("acme/p{i}"), now())
                    .await
                    .expect("claim")
            })
        })
        .collect();
    let mut winners = BTreeSet::new();
    for racer in racers {
        winners.insert(racer.await.expect("joins"));
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
}

async fn concurrent_updates_of_one_version_let_exactly_one_win(store: Arc<dyn Store>) {
    let v1 = record("contended", simple_card("Contended"));
    store.insert(&v1).await.expect("insert");
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let id = v1.id.clone();
        tasks.push(tokio::spawn(async move {
            let next = record("contended", simple_card(&format!("Writer {i}")));
            store.update(&id, 1, &next).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("task joins") {
            Ok(record) => {
                wins += 1;
                assert_eq!(record.version, 2);
            }
            Err(RegistryError::StaleVersion { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        store.list_versions(&v1.id).await.expect("versions").len(),
        2
    );
}

/// One registration writes every side-table row in a single batch; an update
/// replaces them (issue #2, registration batching).
async fn side_table_terms_follow_registration_and_update(store: Arc<dyn Store>) {
    let first = record(
        "mover",
        card(
            "Mover",
            "Moves things",
            &[
                ("lift", "Lift", &["heavy", "crane"]),
                ("carry", "Carry", &["far"]),
            ],
            "text/plain",
            "application/json",
        ),
    );
    store.insert(&first).await.expect("insert");
    let by = |f: &dyn Fn(&mut DiscoveryQuery)| {
        let mut query = DiscoveryQuery::default();
        f(&mut query);
        query
    };
    let mover = vec![first.id.to_string()];
    let old_terms = [
        by(&|q| q.skill = Some("lift".into())),
        by(&|q| q.skill = Some("Carry".into())),
        by(&|q| q.tag = Some("crane".into())),
        by(&|q| q.tag = Some("far".into())),
        by(&|q| q.input_mode = Some("text/plain".into())),
        by(&|q| q.output_mode = Some("application/json".into())),
    ];
    for query in &old_terms {
        assert_eq!(
            discover_ids(&store, query.clone()).await,
            mover,
            "{query:?}"
        );
    }
    let next = record(
        "mover",
        card(
            "Mover",
            "Moves things",
            &[("drop", "Drop", &["light"])],
            "text/csv",
            "text/csv",
        ),
    );
    store.update(&first.id, 1, &next).await.expect("update");
    for query in &old_terms {
        assert!(
            discover_ids(&store, query.clone()).await.is_empty(),
            "{query:?} still finds the old card"
        );
    }
    for query in [
        by(&|q| q.skill = Some("drop".into())),
        by(&|q| q.tag = Some("light".into())),
        by(&|q| q.input_mode = Some("text/csv".into())),
        by(&|q| q.output_mode = Some("text/csv".into())),
    ] {
        assert_eq!(
            discover_ids(&store, query.clone()).await,
            mover,
            "{query:?}"
        );
    }
}

async fn free_text_skips_deregistered_agents_unless_asked(store: Arc<dyn Store>) {
    seed_catalogue(&store).await;
    let weather = AgentId::internal("weather").expect("valid");
    store.delete(&weather, None, now()).await.expect("delete");
    let text = |include_deleted: bool, role: Option<AgentRole>| DiscoveryQuery {
        q: Some("weather".into()),
        role,
        include_deleted,
        ..Default::default()
    };
    assert_eq!(
        discover_ids(&store, text(false, None)).await,
        vec!["convergio://agents/planner"]
    );
    assert_eq!(
        discover_ids(&store, text(true, None)).await,
        vec!["convergio://agents/weather", "convergio://agents/planner"]
    );
    assert_eq!(
        discover_ids(&store, text(true, Some(AgentRole::Worker))).await,
        vec!["convergio://agents/weather"]
    );
    assert!(discover_ids(&store, text(false, Some(AgentRole::Worker)))
        .await
        .is_empty());
}

/// The server's own agents get a new loopback port at each start; the
/// refresh moves the address in place (issue #14).
async fn refreshed_upstreams_keep_the_version_and_the_history(store: Arc<dyn Store>) {
    let v1 = record("echo", simple_card("Echo"));
    store.insert(&v1).await.expect("insert");
    let mut moved_card = simple_card("Echo");
    moved_card["supportedInterfaces"][0]["url"] = serde_json::json!("http://127.0.0.1:9002/a2a");
    let moved = record("echo", moved_card.clone());
    let refreshed = store
        .refresh_upstreams(&v1.id, 1, &moved)
        .await
        .expect("refresh");
    assert_eq!(refreshed.version, 1);
    assert_eq!(refreshed.card, moved_card);
    assert_eq!(refreshed.upstreams[0].url, "http://127.0.0.1:9002/a2a");
    assert_eq!(refreshed.trust, v1.trust);
    assert_eq!(refreshed.created_at, v1.created_at);
    assert_eq!(store.get(&v1.id, None).await.expect("get"), refreshed);
    let versions = store.list_versions(&v1.id).await.expect("versions");
    assert_eq!(versions, vec![refreshed.clone()], "no history row");
    // Still a compare-and-swap, and only of live agents.
    let stale = store
        .refresh_upstreams(&v1.id, 2, &moved)
        .await
        .expect_err("stale");
    assert!(
        matches!(stale, RegistryError::StaleVersion { .. }),
        "{stale:?}"
    );
    // Discovery still finds it by its unchanged terms.
    let found = discover_ids(
        &store,
        DiscoveryQuery {
            q: Some("echo".to_owned()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(found, vec![v1.id.to_string()]);
}
