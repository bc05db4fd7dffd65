//! Retrieval quality of the ANN index: recall@10 against exact search on
//! 2,000 clustered vectors of 384 dimensions (the shape of sentence
//! embeddings: many topics, documents near their topic), with and without
//! a metadata filter, and after tombstoning a tenth of the points. No
//! timing here: `cargo bench -p convergio-memory --bench vectors` measures.

use convergio_memory::index::{matches, MetadataFilter, VectorIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const DIMENSIONS: usize = 384;

fn normalised(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-9);
    vector.iter_mut().for_each(|v| *v /= norm);
    vector
}

/// `count` points around `clusters` random centres, each tagged with its
/// centre's parity.
fn clustered(count: usize, clusters: usize, seed: u64) -> Vec<(Vec<f32>, Value)> {
    let mut random = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            normalised(
                (0..DIMENSIONS)
                    .map(|_| random.gen_range(-1.0..1.0))
                    .collect(),
            )
        })
        .collect();
    (0..count)
        .map(|_| {
            let centre = random.gen_range(0..clusters);
            let point = centres[centre]
                .iter()
                .map(|c| c + random.gen_range(-0.06..0.06))
                .collect();
            (normalised(point), json!({"group": centre % 2}))
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn exact(
    points: &[(i64, Vec<f32>, Value)],
    query: &[f32],
    k: usize,
    filter: Option<&MetadataFilter>,
) -> Vec<i64> {
    let mut scored: Vec<(f32, i64)> = points
        .iter()
        .filter(|(_, _, metadata)| filter.is_none_or(|filter| matches(metadata, filter)))
        .map(|(id, vector, _)| (cosine(vector, query), *id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

fn recall(
    index: &VectorIndex,
    points: &[(i64, Vec<f32>, Value)],
    queries: &[Vec<f32>],
    filter: Option<&MetadataFilter>,
) -> f64 {
    let mut found = 0;
    let mut wanted = 0;
    for query in queries {
        let truth = exact(points, query, 10, filter);
        let got: Vec<i64> = index
            .search("ns", query, 10, 64, filter)
            .into_iter()
            .map(|hit| hit.id)
            .collect();
        wanted += truth.len();
        found += truth.iter().filter(|id| got.contains(id)).count();
    }
    found as f64 / wanted as f64
}

#[test]
fn recall_at_10_beats_0_95_against_exact_search() {
    let data = clustered(2_000, 100, 7);
    let points: Vec<(i64, Vec<f32>, Value)> = data
        .into_iter()
        .enumerate()
        .map(|(id, (vector, metadata))| (id as i64 + 1, vector, metadata))
        .collect();
    let index = VectorIndex::new();
    // Half loaded at start, half inserted one by one as writes would.
    let (loaded, written) = points.split_at(1_000);
    index.load("ns", DIMENSIONS, None, loaded.to_vec());
    for (id, vector, metadata) in written {
        index.apply(
            "ns",
            DIMENSIONS,
            &[(*id, vector.as_slice(), metadata)],
            &[],
            None,
        );
    }
    assert_eq!(index.len("ns"), 2_000);
    let queries: Vec<Vec<f32>> = clustered(50, 100, 7 + 1)
        .into_iter()
        .map(|(vector, _)| vector)
        .collect();

    let plain = recall(&index, &points, &queries, None);
    assert!(plain >= 0.95, "recall@10 {plain}");
    let filter: MetadataFilter = json!({"group": 1}).as_object().cloned().unwrap_or_default();
    let filtered = recall(&index, &points, &queries, Some(&filter));
    assert!(filtered >= 0.95, "filtered recall@10 {filtered}");
    for hit in index.search("ns", &queries[0], 10, 64, Some(&filter)) {
        let metadata = &points[(hit.id - 1) as usize].2;
        assert!(matches(metadata, &filter));
    }

    // Tombstones are never answered, and recall holds over what is left.
    let removed: Vec<i64> = points.iter().step_by(10).map(|(id, _, _)| *id).collect();
    index.apply("ns", DIMENSIONS, &[], &removed, None);
    let left: Vec<(i64, Vec<f32>, Value)> = points
        .iter()
        .filter(|(id, _, _)| !removed.contains(id))
        .cloned()
        .collect();
    for query in &queries {
        for hit in index.search("ns", query, 10, 64, None) {
            assert!(!removed.contains(&hit.id));
        }
    }
    let after = recall(&index, &left, &queries, None);
    assert!(after >= 0.95, "recall@10 after deletions {after}");
}
