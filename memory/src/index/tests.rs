//! Unit tests of the binary-quantised index: the counting sort's order,
//! removal and replayed changes, filters, dimensions and small namespaces.

use serde_json::json;

use super::*;

fn cosine_f64(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// A deterministic pseudo-random vector (no rand in unit tests).
fn vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..dimensions)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

#[test]
fn unit_dot_is_the_cosine_of_the_vectors_as_given() {
    let vectors: Vec<Vec<f32>> = (0..20)
        .map(|seed| {
            (0..37)
                .map(|i| ((seed * 31 + i * 7) % 13) as f32 - 6.0)
                .collect()
        })
        .collect();
    for a in &vectors {
        for b in &vectors {
            let expected = cosine_f64(a, b);
            let got = f64::from(dot(&unit(a), &unit(b)));
            assert!((expected - got).abs() < 1e-5, "{expected} vs {got}");
        }
    }
    assert_eq!(unit(&[0.0, 0.0]), vec![0.0, 0.0]);
    assert_eq!(dot(&[0.0, 0.0], &unit(&[3.0, 4.0])), 0.0);
}

/// Issue 20: own writes and other replicas' changes may reach an index
/// twice and out of order; each chunk is added once, a removal wins over
/// an add that arrives after it, and the revision moves only forward (an
/// own write only when it is exactly the next one).
#[test]
fn changes_apply_once_in_any_order() {
    let index = VectorIndex::new();
    let metadata = Value::Null;
    let (east, north) = (vec![1.0, 0.0], vec![0.0, 1.0]);
    let at = |revision| {
        Some(Revision {
            created_at: 7,
            revision,
        })
    };
    index.load("ns", 2, at(3), vec![(1, east.clone(), metadata.clone())]);
    assert!(index.follow("ns", &[], &[2], 4));
    assert!(index.follow("ns", &[(2, &north, &metadata)], &[], 4));
    assert_eq!(index.len("ns"), 1, "removed before its add arrived");
    index.apply("ns", 2, &[(3, &north, &metadata)], &[], Some(5));
    assert!(index.follow("ns", &[(3, &north, &metadata)], &[], 5));
    let ids: Vec<i64> = index
        .search("ns", &north, 10, 10, None)
        .iter()
        .map(|hit| hit.id)
        .collect();
    assert_eq!(ids, vec![3, 1], "one point per chunk");
    assert_eq!(index.revisions(), vec![("ns".to_owned(), at(5))]);
    index.apply("ns", 2, &[], &[1], Some(7));
    assert_eq!(
        index.revisions(),
        vec![("ns".to_owned(), at(5))],
        "6 is missing"
    );
    assert!(index.follow("ns", &[], &[], 4));
    assert_eq!(
        index.revisions(),
        vec![("ns".to_owned(), at(5))],
        "never back"
    );

    // A removal for a namespace without an index makes none; an add makes
    // one whose revision is unknown (the next catch-up rebuilds).
    index.apply("other", 2, &[], &[9], Some(1));
    assert!(!index.contains("other"));
    assert!(!index.follow("other", &[], &[9], 1));
    index.apply("other", 2, &[(9, &east, &metadata)], &[], Some(1));
    assert_eq!(index.dimensions("other"), Some(2));
    let other = index
        .revisions()
        .into_iter()
        .find(|(name, _)| name == "other");
    assert_eq!(other, Some(("other".to_owned(), None)));
}

/// The counting sort walks by ascending distance, ties in slot order,
/// across bands, skipping what `accept` refuses, and stops at `wanted`;
/// the pass rate it is told sizes its bands and never changes the answer,
/// however wrong it is.
#[test]
fn nearest_walks_by_distance_with_ties_in_slot_order() {
    let distances: Vec<u16> = vec![3, 0, 2, 0, 3, 1, 2, 4, 0];
    let mut histogram = vec![0u32; 5];
    for distance in &distances {
        histogram[usize::from(*distance)] += 1;
    }
    let check = |wanted: usize, accept: &dyn Fn(usize) -> bool, expected: &[usize]| {
        for rate in [1.0, 0.5, 0.1, 0.0, f64::NAN] {
            assert_eq!(
                nearest(&distances, &histogram, wanted, rate, accept),
                expected,
                "wanted {wanted}, rate {rate}"
            );
        }
    };
    let all = |_: usize| true;
    check(9, &all, &[1, 3, 8, 5, 2, 6, 0, 4, 7]);
    check(100, &all, &[1, 3, 8, 5, 2, 6, 0, 4, 7]);
    check(2, &all, &[1, 3]);
    check(4, &all, &[1, 3, 8, 5]);
    check(0, &all, &[]);
    // Odd slots only: the first band (distance 0) holds one, the walk
    // goes on through wider bands.
    check(3, &|slot| slot % 2 == 1, &[1, 3, 5]);
    check(9, &|slot| slot % 2 == 1, &[1, 3, 5, 7]);
    check(9, &|_| false, &[]);
    assert!(nearest(&[], &[0; 5], 10, 1.0, |_| true).is_empty());
}

/// A removed point is never answered, a replayed add of it (a follower's
/// stale read) does not bring it back, and the point moved into its slot
/// is still found by its own id.
#[test]
fn a_removed_point_is_never_answered_nor_re_added_by_a_replayed_add() {
    let index = VectorIndex::new();
    let dimensions = 24;
    let points: Vec<(i64, Vec<f32>, Value)> = (1..=50)
        .map(|id| (id, vector(id as u64, dimensions), json!({"id": id})))
        .collect();
    index.load("ns", dimensions, None, points.clone());
    let removed = [1, 7, 50];
    index.apply("ns", dimensions, &[], &removed, None);
    assert_eq!(index.len("ns"), 47);
    for (id, vector, metadata) in &points {
        let hits = index.search("ns", vector, 5, 5, None);
        if removed.contains(id) {
            assert!(hits.iter().all(|hit| hit.id != *id));
            // Replayed: the follower read the row before the delete.
            assert!(index.follow("ns", &[(*id, vector, metadata)], &[], 0));
            index.apply("ns", dimensions, &[(*id, vector, metadata)], &[], None);
        } else {
            assert_eq!(hits[0].id, *id, "found by its own vector");
            assert!((hits[0].score - 1.0).abs() < 1e-5);
        }
    }
    assert_eq!(index.len("ns"), 47, "no removed id added again");
    let every = index.search("ns", &points[0].1, 100, 100, None);
    assert_eq!(every.len(), 47);
    assert!(every.iter().all(|hit| !removed.contains(&hit.id)));
    // A load starts from the rows again: the removed set goes with it.
    index.load("ns", dimensions, None, points);
    assert_eq!(index.len("ns"), 50);
}

/// A filter that matches 3 points of 40,000 (past the parallel scan's
/// threshold) still answers all 3, however far their codes are.
#[test]
fn a_filter_matching_very_few_points_still_returns_them() {
    let dimensions = 64;
    let points: Vec<(i64, Vec<f32>, Value)> = (1..=40_000)
        .map(|id| {
            let rare = id % 13_331 == 0;
            (
                id,
                vector(id as u64, dimensions),
                json!({"rare": rare, "group": id % 2}),
            )
        })
        .collect();
    let index = VectorIndex::new();
    index.load("ns", dimensions, None, points.clone());
    let filter: MetadataFilter = json!({"rare": true})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let query = vector(7, dimensions);
    let mut ids: Vec<i64> = index
        .search("ns", &query, 10, 40, Some(&filter))
        .iter()
        .map(|hit| hit.id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![13_331, 26_662, 39_993]);
    // The parallel scan finds each point by its own vector.
    for id in [1, 20_000, 40_000] {
        let hits = index.search("ns", &points[id - 1].1, 1, 1, None);
        assert_eq!(hits[0].id, id as i64);
    }
    assert!(index.bytes("ns") > 40_000 * dimensions * 4);
    assert_eq!(index.bytes("missing"), 0);
}

/// Vectors and queries of other dimensions than the namespace's are
/// ignored, as they always were: no point added, nothing found.
#[test]
fn other_dimensions_are_ignored() {
    let index = VectorIndex::new();
    let metadata = Value::Null;
    index.load(
        "ns",
        3,
        None,
        vec![
            (1, vec![1.0, 0.0, 0.0], metadata.clone()),
            (2, vec![1.0, 0.0], metadata.clone()),
        ],
    );
    assert_eq!(index.len("ns"), 1, "a loaded vector of 2 dimensions");
    index.apply("ns", 3, &[(3, &[0.0, 1.0, 0.0, 0.0], &metadata)], &[], None);
    assert_eq!(index.len("ns"), 1, "an added vector of 4 dimensions");
    assert!(index.search("ns", &[1.0, 0.0], 10, 40, None).is_empty());
    assert!(index
        .search("ns", &[1.0, 0.0, 0.0, 0.0], 10, 40, None)
        .is_empty());
    assert_eq!(index.search("ns", &[1.0, 0.0, 0.0], 10, 40, None).len(), 1);
    assert!(index.search("ns", &[1.0, 0.0, 0.0], 0, 40, None).is_empty());
    assert!(index
        .search("missing", &[1.0, 0.0, 0.0], 10, 40, None)
        .is_empty());
}

/// Asking for more than the namespace holds answers every point, best
/// first, with exact cosine scores.
#[test]
fn k_larger_than_the_namespace_answers_every_point() {
    let index = VectorIndex::new();
    let dimensions = 16;
    let points: Vec<(i64, Vec<f32>, Value)> = (1..=5)
        .map(|id| (id, vector(id as u64, dimensions), Value::Null))
        .collect();
    index.load("ns", dimensions, None, points.clone());
    let query = vector(99, dimensions);
    let hits = index.search("ns", &query, 50, 1, None);
    assert_eq!(hits.len(), 5);
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    for hit in &hits {
        let expected = cosine_f64(&query, &points[(hit.id - 1) as usize].1);
        assert!((f64::from(hit.score) - expected).abs() < 1e-5);
    }
}
