//! Unit tests of the in-memory text index: tokens, ranking, filters,
//! replacement by version, and paging by cursor. The conformance suite
//! covers the same behaviour through the store on both backends.

use chrono::Utc;
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use serde_json::json;

use super::*;

fn record(name: &str, description: &str, skills: &[(&str, &[&str])]) -> AgentRecord {
    let skills: Vec<_> = skills
        .iter()
        .map(|(skill, tags)| {
            json!({"id": skill.to_lowercase().replace(' ', "-"), "name": skill,
                   "description": format!("does {skill}"), "tags": tags})
        })
        .collect();
    // Agent names are ASCII; the card name is free text.
    let short: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    AgentRecord {
        id: AgentId::internal(&short).expect("valid name"),
        name: short,
        org: "convergio.local".into(),
        role: AgentRole::Worker,
        card: json!({"name": name, "description": description, "version": "1",
                     "supportedInterfaces": [], "capabilities": {},
                     "defaultInputModes": ["text/plain"], "defaultOutputModes": ["application/json"],
                     "skills": skills}),
        upstreams: Vec::new(),
        trust: TrustLevel::Registered,
        version: 1,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        deleted_at: None,
    }
}

fn text(q: &str) -> DiscoveryQuery {
    DiscoveryQuery {
        q: Some(q.into()),
        ..Default::default()
    }
}

/// The ids `query` finds, best first, one page of up to 100.
fn found(index: &TextIndex, query: &DiscoveryQuery) -> Vec<i64> {
    let terms = query.text_terms();
    index
        .search(query, &terms, None, 100)
        .into_iter()
        .map(|hit| hit.pk)
        .collect()
}

fn seeded() -> TextIndex {
    let index = TextIndex::default();
    index
        .apply(
            1,
            &record(
                "Weather",
                "Forecasts for any city",
                &[("Forecast", &["weather"])],
            ),
        )
        .expect("apply");
    index
        .apply(
            2,
            &record(
                "Planner",
                "Plans trips around the weather",
                &[("Plan", &["travel"])],
            ),
        )
        .expect("apply");
    index
        .apply(
            3,
            &record(
                "Invoicer",
                "Reads invoices",
                &[("Extract invoices", &["finance"])],
            ),
        )
        .expect("apply");
    index
}

#[test]
fn tokens_are_lower_cased_letter_and_digit_runs_without_diacritics() {
    let cases = [
        ("Café DÉJÀ-vu", vec!["cafe", "deja", "vu"]),
        ("agent-000123 v2.1", vec!["agent", "000123", "v2", "1"]),
        ("  \"*)( ", vec![]),
        ("Straße Ürün", vec!["straße", "urun"]),
    ];
    for (input, expected) in cases {
        assert_eq!(tokens(input).collect::<Vec<_>>(), expected, "{input}");
    }
}

#[test]
fn a_name_hit_ranks_above_a_description_hit_and_all_terms_must_occur() {
    let index = seeded();
    assert_eq!(found(&index, &text("weather")), vec![1, 2]);
    assert_eq!(found(&index, &text("weather trips")), vec![2]);
    assert_eq!(found(&index, &text("INVOICES")), vec![3]);
    assert!(found(&index, &text("weather submarine")).is_empty());
    assert!(found(&index, &text("submarine")).is_empty());
}

#[test]
fn diacritics_in_queries_and_cards_match_each_other() {
    let index = TextIndex::default();
    index
        .apply(1, &record("Café", "Orders coffee", &[]))
        .expect("apply");
    assert_eq!(found(&index, &text("cafe")), vec![1]);
    assert_eq!(found(&index, &text("CAFÉ")), vec![1]);
}

#[test]
fn filters_are_checked_per_match() {
    let index = seeded();
    let mut query = text("weather");
    query.tag = Some("Travel".into());
    assert_eq!(found(&index, &query), vec![2]);
    query.tag = Some("unknown-tag".into());
    assert!(found(&index, &query).is_empty());

    let mut query = text("weather");
    query.role = Some(AgentRole::Planner);
    assert!(found(&index, &query).is_empty());

    let mut query = text("weather");
    query.min_trust = Some(TrustLevel::Trusted);
    assert!(found(&index, &query).is_empty());

    let mut query = text("weather");
    query.input_mode = Some("text/plain".into());
    query.output_mode = Some("application/json".into());
    query.org = Some("CONVERGIO.local".into());
    query.skill = Some("forecast".into());
    assert_eq!(found(&index, &query), vec![1]);
}

#[test]
fn a_newer_version_replaces_an_agent_and_an_older_one_is_ignored() {
    let index = seeded();
    let mut renamed = record("Weather", "Tides and currents", &[]);
    renamed.version = 3;
    index.apply(1, &renamed).expect("apply");
    assert_eq!(found(&index, &text("weather")), vec![1, 2]);
    assert!(
        found(&index, &text("forecasts")).is_empty(),
        "the old text is gone"
    );
    assert_eq!(found(&index, &text("tides")), vec![1]);

    // An update that reaches the index late does not undo a newer one.
    let mut stale = record("Weather", "Forecasts for any city", &[]);
    stale.version = 2;
    index.apply(1, &stale).expect("apply");
    assert_eq!(found(&index, &text("tides")), vec![1]);
    assert!(found(&index, &text("forecasts")).is_empty());

    let mut deleted = renamed.clone();
    deleted.version = 4;
    deleted.deleted_at = Some(Utc::now());
    index.apply(1, &deleted).expect("apply");
    assert!(found(&index, &text("tides")).is_empty());
    let mut query = text("tides");
    query.include_deleted = true;
    assert_eq!(found(&index, &query), vec![1]);
}

#[test]
fn pages_follow_the_cursor_without_gaps_or_repeats() {
    let index = TextIndex::default();
    // Equal scores everywhere: the row number alone orders the pages.
    for pk in 1..=23 {
        index
            .apply(
                pk,
                &record(&format!("geo{pk:02}"), "Geocoder for addresses", &[]),
            )
            .expect("apply");
    }
    // One stronger match, first on the first page.
    index
        .apply(24, &record("Geocoder", "Geocoder geocoder", &[]))
        .expect("apply");
    let query = text("geocoder");
    let terms = query.text_terms();
    let mut seen = Vec::new();
    let mut after: Option<After> = None;
    loop {
        let page = index.search(&query, &terms, after, 5);
        let Some(last) = page.last() else { break };
        seen.extend(page.iter().map(|hit| hit.pk));
        after = Some(After {
            rank: last.rank,
            pk: last.pk,
        });
    }
    // The strongest match first, then the equal ones in row order.
    let mut expected = vec![24];
    expected.extend(1..=23);
    assert_eq!(seen, expected);
}
