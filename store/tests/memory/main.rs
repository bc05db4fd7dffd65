//! Memory's tables (issue 20) on SQLite and PostgreSQL
//! (`CONVERGIO_TEST_POSTGRES_URL`, a fresh database per test), each case run
//! on both through `convergio_tests::on_both_backends!`, driven through the
//! memory crate's service so the store is exercised as it is used:
//! namespaces owned by one organisation, structured records checked
//! against their schema with versions, the item bound, TTL, vector
//! documents chunked, embedded (a deterministic bag-of-words embedder
//! written here, the outside providers being tested in the memory crate)
//! and searched with a metadata filter, a failing embedder that writes
//! nothing, a second replica that rebuilds its index from the rows, a
//! replica whose index follows another's writes without a restart
//! (migration 0020's revisions and change records), and a namespace's
//! scope (global or one agent's) read back and listed by agent.

use std::sync::Arc;

use async_trait::async_trait;
use convergio_memory::embed::{Embedder, Embedders};
use convergio_memory::{
    Chunking, EmbeddingSpec, FollowReport, Memory, MemoryError, MemoryStore, NamespaceKind,
    NamespaceScope, NamespaceSpec, Retention, SearchRequest,
};
use convergio_store::memory::MemoryTables;
use convergio_store::{Db, DbConfig};
use convergio_tests::embeddings::bag_of_words;
use serde_json::{json, Value};

const ORG: &str = "acme.example";
const DIMENSIONS: usize = 64;

/// The test kit's bag of words in 64 dimensions: texts that share words
/// point the same way.
struct BagOfWords;

#[async_trait]
impl Embedder for BagOfWords {
    async fn embed(&self, texts: &[String]) -> convergio_memory::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|text| bag_of_words(text, DIMENSIONS))
            .collect())
    }

    fn dimensions(&self) -> usize {
        DIMENSIONS
    }
}

/// A provider that always fails, as a refusing or unreachable one would.
struct Failing;

#[async_trait]
impl Embedder for Failing {
    async fn embed(&self, _texts: &[String]) -> convergio_memory::Result<Vec<Vec<f32>>> {
        Err(MemoryError::Embedding {
            detail: "HTTP 500: the provider broke".to_owned(),
            unavailable: false,
        })
    }

    fn dimensions(&self) -> usize {
        DIMENSIONS
    }
}

/// `model: fail` fails, anything else is the bag of words.
struct TestEmbedders;

#[async_trait]
impl Embedders for TestEmbedders {
    async fn embedder(
        &self,
        _org: &str,
        spec: &EmbeddingSpec,
    ) -> convergio_memory::Result<Arc<dyn Embedder>> {
        let model = match spec {
            EmbeddingSpec::Openai { model, .. } | EmbeddingSpec::Local { model } => model,
        };
        if model == "fail" {
            Ok(Arc::new(Failing))
        } else {
            Ok(Arc::new(BagOfWords))
        }
    }
}

/// A fresh database, by URL; each service opens its own pool (a replica).
struct Harness {
    url: String,
}

async fn open(url: &str) -> Harness {
    Harness {
        url: url.to_owned(),
    }
}

impl Harness {
    async fn tables(&self) -> Arc<MemoryTables> {
        let db = Db::open(&self.url, &DbConfig::default())
            .await
            .expect("database opens");
        Arc::new(MemoryTables::new(&db))
    }

    async fn memory(&self) -> Memory {
        Memory::new(self.tables().await, Arc::new(TestEmbedders))
    }
}

fn vector_spec(model: &str, chunking: Chunking) -> NamespaceSpec {
    NamespaceSpec {
        kind: NamespaceKind::Vector,
        chunking: Some(chunking),
        embedding: Some(EmbeddingSpec::Openai {
            base_url: "http://127.0.0.1:9/v1".to_owned(),
            model: model.to_owned(),
            api_key: "secret:embeddings".to_owned(),
            dimensions: DIMENSIONS,
        }),
        ..NamespaceSpec::default()
    }
}

fn profile_spec() -> NamespaceSpec {
    NamespaceSpec {
        kind: NamespaceKind::Structured,
        schema: Some(json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
            "additionalProperties": false
        })),
        retention: Retention {
            max_items: Some(2),
            ..Retention::default()
        },
        ..NamespaceSpec::default()
    }
}

async fn namespaces_are_owned_and_unique(harness: Harness) {
    let memory = harness.memory().await;
    let row = memory
        .create_namespace(ORG, "profiles", profile_spec())
        .await
        .expect("created");
    assert_eq!(row.org, ORG);
    let again = memory
        .create_namespace("other.example", "profiles", profile_spec())
        .await;
    assert!(
        matches!(again, Err(MemoryError::NamespaceExists { .. })),
        "{again:?}"
    );
    let stored = memory.namespace("profiles").await.expect("stored");
    assert_eq!(stored.spec, profile_spec());
    assert_eq!(memory.namespaces(ORG).await.expect("listed").len(), 1);
    assert!(memory
        .namespaces("other.example")
        .await
        .expect("listed")
        .is_empty());
    let missing = memory.namespace("nope").await;
    assert!(matches!(
        missing,
        Err(MemoryError::NamespaceNotFound { .. })
    ));
    let bad = memory
        .create_namespace(ORG, "bad/name", profile_spec())
        .await;
    assert!(matches!(bad, Err(MemoryError::Invalid { .. })), "{bad:?}");
    memory.delete_namespace(&stored).await.expect("deleted");
    assert!(memory.namespace("profiles").await.is_err());
}

async fn a_namespaces_scope_round_trips_and_lists_by_agent(harness: Harness) {
    let memory = harness.memory().await;
    let scoped = |agent: &str| NamespaceSpec {
        scope: NamespaceScope::Agent(agent.to_owned()),
        ..profile_spec()
    };
    for (org, name, spec) in [
        (ORG, "shared", profile_spec()),
        (ORG, "writer-notes", scoped("writer")),
        (ORG, "writer-facts", scoped("writer")),
        (ORG, "critic-notes", scoped("critic")),
        ("other.example", "their-writer", scoped("writer")),
    ] {
        memory
            .create_namespace(org, name, spec)
            .await
            .expect("created");
    }
    // Read back by a fresh store (no cache in between).
    let fresh = Memory::new(harness.tables().await, Arc::new(TestEmbedders));
    let stored = fresh.namespace("writer-notes").await.expect("stored");
    assert_eq!(stored.spec, scoped("writer"));
    assert_eq!(stored.spec.scope.agent(), Some("writer"));
    let shared = fresh.namespace("shared").await.expect("stored");
    assert_eq!(shared.spec.scope, NamespaceScope::Global);
    let names = |rows: Vec<convergio_memory::NamespaceRow>| {
        rows.into_iter().map(|row| row.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(fresh.agent_namespaces(ORG, "writer").await.expect("listed")),
        vec!["writer-facts".to_owned(), "writer-notes".to_owned()]
    );
    assert_eq!(
        names(fresh.agent_namespaces(ORG, "critic").await.expect("listed")),
        vec!["critic-notes".to_owned()]
    );
    assert!(fresh
        .agent_namespaces(ORG, "nobody")
        .await
        .expect("listed")
        .is_empty());
    assert_eq!(fresh.namespaces(ORG).await.expect("listed").len(), 4);
}

async fn structured_records_follow_schema_and_versions(harness: Harness) {
    let memory = harness.memory().await;
    let ns = memory
        .create_namespace(ORG, "profiles", profile_spec())
        .await
        .expect("created");
    let first = memory
        .put(&ns, "alice", json!({"name": "Alice", "age": 30}), None)
        .await
        .expect("stored");
    assert_eq!((first.version, first.created), (1, true));
    let second = memory
        .put(&ns, "alice", json!({"name": "Alice", "age": 31}), Some(1))
        .await
        .expect("updated");
    assert_eq!((second.version, second.created), (2, false));
    let stale = memory
        .put(&ns, "alice", json!({"name": "Alice", "age": 32}), Some(1))
        .await;
    assert!(matches!(stale, Err(MemoryError::Stale { .. })), "{stale:?}");
    let read = memory.get(&ns, "alice").await.expect("read");
    assert_eq!(read.value, json!({"name": "Alice", "age": 31}));
    assert_eq!(read.version, 2);

    // A record breaking the schema is refused with pointers; nothing changes.
    let broken = memory
        .put(&ns, "alice", json!({"name": 7, "age": -1, "x": true}), None)
        .await;
    let Err(MemoryError::SchemaViolation { violations }) = broken else {
        panic!("expected a schema violation, got {broken:?}");
    };
    assert!(
        violations.iter().any(|v| v.starts_with("/name")),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|v| v.starts_with("/age")),
        "{violations:?}"
    );
    assert_eq!(memory.get(&ns, "alice").await.expect("read").version, 2);

    // The item bound refuses a third key, not a rewrite of one stored.
    memory
        .put(&ns, "bob", json!({"name": "Bob"}), None)
        .await
        .expect("second item");
    let full = memory
        .put(&ns, "carol", json!({"name": "Carol"}), None)
        .await;
    assert!(
        matches!(full, Err(MemoryError::NamespaceFull { .. })),
        "{full:?}"
    );
    memory
        .put(&ns, "bob", json!({"name": "Robert"}), None)
        .await
        .expect("rewrite within the bound");

    let listed = memory.list(&ns, None, 10).await.expect("listed");
    let keys: Vec<&str> = listed.iter().map(|item| item.key.as_str()).collect();
    assert_eq!(keys, vec!["alice", "bob"]);
    let page = memory.list(&ns, Some("alice"), 10).await.expect("page");
    assert_eq!(page.len(), 1);

    let stale_delete = memory.delete(&ns, "alice", Some(1)).await;
    assert!(matches!(stale_delete, Err(MemoryError::Stale { .. })));
    memory.delete(&ns, "alice", Some(2)).await.expect("deleted");
    let gone = memory.get(&ns, "alice").await;
    assert!(matches!(gone, Err(MemoryError::ItemNotFound { .. })));
    let again = memory.delete(&ns, "alice", None).await;
    assert!(matches!(again, Err(MemoryError::ItemNotFound { .. })));
}

async fn expired_items_are_gone(harness: Harness) {
    let memory = harness.memory().await;
    let tables = harness.tables().await;
    let ns = memory
        .create_namespace(ORG, "notes", NamespaceSpec::default())
        .await
        .expect("created");
    memory
        .put(&ns, "n1", json!("remember"), None)
        .await
        .expect("stored");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(tables
        .item("notes", "n1", now)
        .await
        .expect("read")
        .is_some());
    // Seen from the future, past any TTL it might have had: still there
    // (no TTL declared); a TTL namespace's item is gone after it.
    assert!(tables
        .item("notes", "n1", now + 10_000)
        .await
        .expect("read")
        .is_some());
    let ttl = NamespaceSpec {
        retention: Retention {
            ttl_seconds: Some(60),
            ..Retention::default()
        },
        ..NamespaceSpec::default()
    };
    let short = memory
        .create_namespace(ORG, "short", ttl)
        .await
        .expect("created");
    memory
        .put(&short, "s1", json!({"a": 1}), None)
        .await
        .expect("stored");
    assert!(tables
        .item("short", "s1", now)
        .await
        .expect("read")
        .is_some());
    assert!(tables
        .item("short", "s1", now + 120)
        .await
        .expect("read")
        .is_none());
    assert!(tables
        .items("short", now + 120, None, 10)
        .await
        .expect("listed")
        .is_empty());
}

/// Retention's memory kind: expired items go with their chunks and leave
/// the index; live ones, items without a TTL and an item written again
/// after it expired stay.
async fn the_pruner_deletes_expired_items_with_their_chunks(harness: Harness) {
    let memory = harness.memory().await;
    let tables = harness.tables().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut spec = vector_spec(
        "bag",
        Chunking {
            size: 40,
            overlap: 0,
        },
    );
    spec.retention.ttl_seconds = Some(60);
    let vectors = memory
        .create_namespace(ORG, "recent", spec)
        .await
        .expect("created");
    let text = "the kitten sleeps on the sofa. the dog barks at the mail carrier.";
    for key in ["old", "older"] {
        memory
            .put(&vectors, key, document(text, json!({})), None)
            .await
            .expect("stored");
    }
    let keep = memory
        .create_namespace(ORG, "forever", NamespaceSpec::default())
        .await
        .expect("created");
    memory
        .put(&keep, "k", json!("kept"), None)
        .await
        .expect("stored");
    assert_eq!(memory.index().len("recent"), 4, "two chunks per document");

    // Nothing has expired yet.
    assert_eq!(memory.prune_expired(now, 100).await.expect("pruned"), 0);
    // Seen two minutes later, in batches of one: both documents go, with
    // their chunks, from the rows and from the index; "forever" stays.
    let later = now + 120;
    assert_eq!(memory.prune_expired(later, 1).await.expect("pruned"), 1);
    assert_eq!(memory.prune_expired(later, 1).await.expect("pruned"), 1);
    assert_eq!(memory.prune_expired(later, 1).await.expect("pruned"), 0);
    assert!(tables.chunks("recent").await.expect("read").is_empty());
    assert!(memory.index().is_empty("recent"));
    assert!(tables
        .item("forever", "k", later)
        .await
        .expect("read")
        .is_some());

    // A key written again after its item was pruned starts at version 1.
    let again = memory
        .put(&vectors, "old", document(text, json!({})), None)
        .await
        .expect("stored");
    assert_eq!(again.version, 1);
    assert_eq!(memory.index().len("recent"), 2);
    let hits = memory
        .search(
            &vectors,
            &SearchRequest {
                query: "kitten sofa".to_owned(),
                top_k: 5,
                filter: None,
            },
        )
        .await
        .expect("searched");
    assert!(hits.iter().all(|hit| hit.key == "old"), "{hits:?}");
}

fn document(text: &str, metadata: Value) -> Value {
    json!({"text": text, "metadata": metadata})
}

async fn vector_documents_are_searched_with_filters(harness: Harness) {
    let memory = harness.memory().await;
    let ns = memory
        .create_namespace(
            ORG,
            "docs",
            vector_spec(
                "bag",
                Chunking {
                    size: 60,
                    overlap: 10,
                },
            ),
        )
        .await
        .expect("created");
    let written = memory
        .put(
            &ns,
            "pets",
            document(
                "the kitten sleeps on the sofa all afternoon. dogs bark at the mail carrier every morning.",
                json!({"topic": "pets"}),
            ),
            None,
        )
        .await
        .expect("stored");
    assert!(written.chunk_ids.len() >= 2, "{written:?}");
    memory
        .put(
            &ns,
            "tax",
            document(
                "quarterly tax filing is due in april",
                json!({"topic": "finance"}),
            ),
            None,
        )
        .await
        .expect("stored");
    let search = |query: &str, filter: Option<Value>| SearchRequest {
        query: query.to_owned(),
        top_k: 3,
        filter: filter.and_then(|value| value.as_object().cloned()),
    };
    let hits = memory
        .search(&ns, &search("kitten sofa", None))
        .await
        .expect("searched");
    assert_eq!(
        hits.first().map(|hit| hit.key.as_str()),
        Some("pets"),
        "{hits:?}"
    );
    assert!(hits.first().is_some_and(|hit| hit.text.contains("kitten")));
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    let filtered = memory
        .search(
            &ns,
            &search("kitten sofa", Some(json!({"topic": "finance"}))),
        )
        .await
        .expect("searched");
    assert!(!filtered.is_empty());
    assert!(filtered.iter().all(|hit| hit.key == "tax"), "{filtered:?}");

    // A rewrite replaces the chunks: the old text is never answered again.
    let rewritten = memory
        .put(
            &ns,
            "pets",
            document("parrots talk", json!({"topic": "pets"})),
            None,
        )
        .await
        .expect("rewritten");
    assert_eq!(rewritten.removed_chunk_ids, written.chunk_ids);
    let after = memory
        .search(&ns, &search("kitten sofa", None))
        .await
        .expect("searched");
    assert!(
        after.iter().all(|hit| !hit.text.contains("kitten")),
        "{after:?}"
    );

    // A second replica builds its index from the rows and answers alike.
    let replica = harness.memory().await;
    assert_eq!(replica.load_indexes().await.expect("loaded"), 2);
    let there = replica
        .search(&ns, &search("quarterly tax", None))
        .await
        .expect("searched");
    assert_eq!(there.first().map(|hit| hit.key.as_str()), Some("tax"));

    memory.delete(&ns, "tax", None).await.expect("deleted");
    let gone = memory
        .search(&ns, &search("quarterly tax", None))
        .await
        .expect("searched");
    assert!(gone.iter().all(|hit| hit.key != "tax"), "{gone:?}");
    // The replica's index still names the deleted chunk; the rows do not,
    // so it is not answered there either.
    let stale_index = replica
        .search(&ns, &search("quarterly tax", None))
        .await
        .expect("searched");
    assert!(
        stale_index.iter().all(|hit| hit.key != "tax"),
        "{stale_index:?}"
    );

    // Bad documents are refused before anything is embedded or written.
    for bad in [
        json!("just text"),
        json!({"text": "  "}),
        json!({"text": "x", "other": 1}),
    ] {
        let refused = memory.put(&ns, "bad", bad, None).await;
        assert!(
            matches!(refused, Err(MemoryError::Invalid { .. })),
            "{refused:?}"
        );
    }
    let structured_search = memory
        .create_namespace(ORG, "plain", NamespaceSpec::default())
        .await
        .expect("created");
    let wrong = memory.search(&structured_search, &search("x", None)).await;
    assert!(
        matches!(wrong, Err(MemoryError::WrongKind { .. })),
        "{wrong:?}"
    );
}

/// The keys `memory` answers for `query` in `namespace` (top 5).
async fn found(memory: &Memory, namespace: &str, query: &str) -> Vec<String> {
    let row = memory.namespace(namespace).await.expect("namespace");
    let hits = memory
        .search(
            &row,
            &SearchRequest {
                query: query.to_owned(),
                top_k: 5,
                filter: None,
            },
        )
        .await
        .expect("searched");
    hits.into_iter().map(|hit| hit.key).collect()
}

fn followed(count: usize) -> FollowReport {
    FollowReport {
        followed: count,
        ..FollowReport::default()
    }
}

/// Issue 20: replica A's index follows what replica B writes to the same
/// database — puts, rewrites, deletions, retention's pruning — by the
/// namespace's revision and its change records, without a restart; its
/// own writes need no catch-up; a cursor older than the retained changes,
/// or a namespace deleted and created again under its name, makes it
/// rebuild from the rows; a namespace deleted by B leaves A's index.
async fn a_replica_follows_another_replicas_writes(harness: Harness) {
    let replica_a = harness.memory().await;
    let replica_b = harness.memory().await;
    let tables = harness.tables().await;
    let chunking = Chunking {
        size: 40,
        overlap: 0,
    };
    let ns = replica_b
        .create_namespace(ORG, "shared", vector_spec("bag", chunking))
        .await
        .expect("created");
    replica_a.load_indexes().await.expect("loaded");
    assert_eq!(
        replica_a.follow_changes().await.expect("followed"),
        FollowReport::default(),
        "nothing moved"
    );

    // Puts through B are found by A's search after one catch-up.
    let pets = "the kitten sleeps on the sofa. the dog barks at the mail carrier.";
    replica_b
        .put(&ns, "pets", document(pets, json!({})), None)
        .await
        .expect("stored");
    replica_b
        .put(
            &ns,
            "tax",
            document("quarterly tax filing due", json!({})),
            None,
        )
        .await
        .expect("stored");
    assert!(found(&replica_a, "shared", "kitten sofa").await.is_empty());
    assert_eq!(
        replica_a.follow_changes().await.expect("followed"),
        followed(1)
    );
    assert_eq!(found(&replica_a, "shared", "kitten sofa").await[0], "pets");
    assert_eq!(found(&replica_a, "shared", "quarterly tax").await[0], "tax");
    let stored = |tables: Arc<MemoryTables>| async move {
        tables.chunks("shared").await.expect("chunks").len()
    };
    assert_eq!(
        replica_a.index().len("shared"),
        stored(tables.clone()).await
    );

    // A rewrite and a deletion through B leave A's index too (not only its
    // answers, which are read back from the rows anyway).
    replica_b
        .put(
            &ns,
            "pets",
            document("parrots talk all day", json!({})),
            None,
        )
        .await
        .expect("rewritten");
    replica_b.delete(&ns, "tax", None).await.expect("deleted");
    assert_eq!(
        replica_a.follow_changes().await.expect("followed"),
        followed(1)
    );
    assert_eq!(
        replica_a.index().len("shared"),
        stored(tables.clone()).await
    );
    assert!(!found(&replica_a, "shared", "quarterly tax")
        .await
        .contains(&"tax".to_owned()));
    assert_eq!(found(&replica_a, "shared", "parrots").await[0], "pets");

    // A's own write advances its index's revision: nothing to catch up.
    replica_a
        .put(&ns, "own", document("lighthouse keepers", json!({})), None)
        .await
        .expect("stored");
    assert_eq!(
        replica_a.follow_changes().await.expect("followed"),
        FollowReport::default()
    );
    // B's catch-up applies A's write.
    assert_eq!(
        replica_b.follow_changes().await.expect("followed"),
        followed(1)
    );
    assert_eq!(found(&replica_b, "shared", "lighthouse").await[0], "own");

    // Changes pruned before A read them: A rebuilds from the rows.
    replica_b
        .put(&ns, "late", document("volcanic islands", json!({})), None)
        .await
        .expect("stored");
    assert!(replica_b.prune_changes(i64::MAX).await.expect("pruned") > 0);
    assert_eq!(
        replica_a.follow_changes().await.expect("followed"),
        FollowReport {
            rebuilt: 1,
            ..FollowReport::default()
        }
    );
    assert_eq!(found(&replica_a, "shared", "volcanic").await[0], "late");
    assert_eq!(
        replica_a.index().len("shared"),
        stored(tables.clone()).await
    );

    // Retention's pruning through B leaves A's index.
    let mut expiring = vector_spec("bag", chunking);
    expiring.retention.ttl_seconds = Some(60);
    let short = replica_b
        .create_namespace(ORG, "short", expiring)
        .await
        .expect("created");
    replica_b
        .put(&short, "note", document("ephemeral note", json!({})), None)
        .await
        .expect("stored");
    assert_eq!(found(&replica_a, "short", "ephemeral").await[0], "note");
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        + 120;
    assert_eq!(replica_b.prune_expired(later, 10).await.expect("pruned"), 1);
    assert_eq!(replica_a.index().len("short"), 1);
    assert_eq!(
        replica_a.follow_changes().await.expect("followed"),
        followed(1)
    );
    assert!(replica_a.index().is_empty("short"));

    // Deleted and created again under the same name through B (within the
    // same second, most likely): A rebuilds, keeping nothing of the old.
    replica_b.delete_namespace(&ns).await.expect("deleted");
    let again = replica_b
        .create_namespace(ORG, "shared", vector_spec("bag", chunking))
        .await
        .expect("created again");
    replica_b
        .put(&again, "fresh", document("fresh snow", json!({})), None)
        .await
        .expect("stored");
    let report = replica_a.follow_changes().await.expect("followed");
    assert_eq!(report.rebuilt, 1, "{report:?}");
    assert_eq!(replica_a.index().len("shared"), 1);
    assert_eq!(
        found(&replica_a, "shared", "fresh snow").await,
        vec!["fresh"]
    );

    // Deleted through B: A drops its graph.
    replica_b.delete_namespace(&again).await.expect("deleted");
    let report = replica_a.follow_changes().await.expect("followed");
    assert_eq!(report.dropped, 1, "{report:?}");
    assert!(!replica_a.index().contains("shared"));
}

async fn a_failing_embedder_writes_nothing(harness: Harness) {
    let memory = harness.memory().await;
    let tables = harness.tables().await;
    let ns = memory
        .create_namespace(ORG, "broken", vector_spec("fail", Chunking::default()))
        .await
        .expect("created");
    let failed = memory
        .put(&ns, "doc", document("some text", json!({})), None)
        .await;
    assert!(
        matches!(failed, Err(MemoryError::Embedding { .. })),
        "{failed:?}"
    );
    assert!(memory.get(&ns, "doc").await.is_err());
    assert!(tables.chunks("broken").await.expect("read").is_empty());

    // An oversize document is refused before the provider is asked.
    let limited = NamespaceSpec {
        retention: Retention {
            max_item_bytes: Some(64),
            ..Retention::default()
        },
        ..vector_spec("bag", Chunking::default())
    };
    let small = memory
        .create_namespace(ORG, "small", limited)
        .await
        .expect("created");
    let oversize = memory
        .put(
            &small,
            "big",
            document(&"word ".repeat(100), json!({})),
            None,
        )
        .await;
    assert!(
        matches!(oversize, Err(MemoryError::TooLarge { .. })),
        "{oversize:?}"
    );
    assert!(tables.chunks("small").await.expect("read").is_empty());
}

convergio_tests::on_both_backends!(crate::open;
    namespaces_are_owned_and_unique,
    a_namespaces_scope_round_trips_and_lists_by_agent,
    structured_records_follow_schema_and_versions,
    expired_items_are_gone,
    the_pruner_deletes_expired_items_with_their_chunks,
    vector_documents_are_searched_with_filters,
    a_replica_follows_another_replicas_writes,
    a_failing_embedder_writes_nothing,
);
