//! Property (issue #15): paging through discovery with `next_page_token`
//! never skips or repeats an agent. For generated catalogues of cards that
//! share words (so ranks tie and differ), with or without free text, an
//! organisation filter and a trust floor, and any page size, the pages
//! concatenated are exactly the one-page answer, in the same order. On
//! SQLite, whose ranked pages come from the in-memory text index.

mod support;

use convergio_registry::{DiscoveryQuery, Store};
use convergio_schemas::{AgentRole, TrustLevel};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{card, record_in};

const WORDS: [&str; 6] = ["harbour", "pilot", "tide", "berth", "river", "lock"];
const ORGS: [&str; 2] = ["a.example", "b.example"];
const TRUST: [TrustLevel; 3] = [
    TrustLevel::Registered,
    TrustLevel::Verified,
    TrustLevel::Trusted,
];

/// One generated agent: words of its name and description, a skill tag,
/// its organisation (None: internal) and trust.
#[derive(Debug, Clone)]
struct Agent {
    name_words: Vec<usize>,
    description_words: Vec<usize>,
    tag: usize,
    org: Option<usize>,
    trust: usize,
}

#[derive(Debug, Clone)]
struct Search {
    words: Vec<usize>,
    org: Option<usize>,
    min_trust: Option<usize>,
    page_size: u32,
}

fn agent() -> impl Strategy<Value = Agent> {
    (
        prop::collection::vec(0..WORDS.len(), 1..3),
        prop::collection::vec(0..WORDS.len(), 0..6),
        0..WORDS.len(),
        prop::option::of(0..ORGS.len()),
        0..TRUST.len(),
    )
        .prop_map(|(name_words, description_words, tag, org, trust)| Agent {
            name_words,
            description_words,
            tag,
            org,
            trust,
        })
}

fn search() -> impl Strategy<Value = Search> {
    (
        prop::collection::vec(0..WORDS.len(), 0..3),
        prop::option::of(0..ORGS.len()),
        prop::option::of(0..TRUST.len()),
        1u32..8,
    )
        .prop_map(|(words, org, min_trust, page_size)| Search {
            words,
            org,
            min_trust,
            page_size,
        })
}

fn words(indices: &[usize]) -> String {
    indices
        .iter()
        .map(|index| WORDS[*index])
        .collect::<Vec<_>>()
        .join(" ")
}

async fn ids(store: &dyn Store, query: &DiscoveryQuery) -> (Vec<String>, Option<String>) {
    let page = store.discover(query).await.expect("discovery answers");
    let ids = page
        .items
        .iter()
        .map(|record| record.id.to_string())
        .collect();
    (ids, page.next_page_token)
}

async fn check(agents: Vec<Agent>, search: Search) -> Result<(), TestCaseError> {
    let backend = support::sqlite().await;
    for (index, agent) in agents.iter().enumerate() {
        let card = card(
            &format!("{} {index}", words(&agent.name_words)),
            &words(&agent.description_words),
            &[("skill", "Skill", &[WORDS[agent.tag]])],
            "text/plain",
            "text/plain",
        );
        let record = record_in(
            &format!("agent-{index}"),
            agent.org.map(|org| ORGS[org]),
            AgentRole::Worker,
            TRUST[agent.trust],
            card,
        );
        backend.store.insert(&record).await.expect("insert");
    }
    let query = DiscoveryQuery {
        q: (!search.words.is_empty()).then(|| words(&search.words)),
        org: search.org.map(|org| ORGS[org].to_owned()),
        min_trust: search.min_trust.map(|trust| TRUST[trust]),
        ..DiscoveryQuery::default()
    };
    let (everything, rest) = ids(
        backend.store.as_ref(),
        &DiscoveryQuery {
            page_size: Some(100),
            ..query.clone()
        },
    )
    .await;
    prop_assert!(rest.is_none(), "fewer than 100 agents fit one page");

    let mut paged = Vec::new();
    let mut token = None;
    for _ in 0..=agents.len() {
        let (page, next) = ids(
            backend.store.as_ref(),
            &DiscoveryQuery {
                page_size: Some(search.page_size),
                page_token: token.clone(),
                ..query.clone()
            },
        )
        .await;
        prop_assert!(page.len() <= search.page_size as usize);
        paged.extend(page);
        match next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    prop_assert_eq!(
        &paged,
        &everything,
        "pages of {} for {:?}",
        search.page_size,
        query
    );
    backend.finish().await;
    Ok(())
}

#[test]
fn ranked_pages_never_skip_or_repeat() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime");
    // Each case opens a fresh database, so fewer cases than proptest's 256.
    let mut runner = TestRunner::new(Config::with_cases(32));
    runner
        .run(
            &(prop::collection::vec(agent(), 0..24), search()),
            |(agents, search)| runtime.block_on(check(agents, search)),
        )
        .expect("paging never skips or repeats");
}
