//! The approximate nearest-neighbour index of vector namespaces: one HNSW
//! graph per namespace (the `hnsw_rs` crate, cosine distance), keyed by
//! chunk row id, with each live chunk's metadata beside it for filtering.
//!
//! Why `hnsw_rs`: it is maintained, inserts incrementally through `&self`
//! (concurrent writers need no rebuild), searches with a filter applied
//! during the graph walk (so a metadata filter still returns k hits where
//! the graph allows), and is pure Rust. It cannot remove a point, so a
//! replaced or deleted chunk becomes a tombstone: it leaves the live map
//! and the filter skips it. Tombstones are dropped at the next start, when
//! the graph is rebuilt from the rows.
//!
//! Each namespace's graph remembers the namespace revision it reflects
//! (see `store.rs`): a load records the revision read before the chunks,
//! this process's own write advances it only when it made exactly the next
//! one, and following the other replicas ([`VectorIndex::follow`]) raises
//! it after applying their changes. Applying a change twice, or an add
//! after the remove of the same chunk, is harmless: chunk ids are never
//! reused, and an id the graph has seen (live or tombstoned) is never
//! inserted again.
//!
//! **Invariant:** derived, never the truth: built from the store's chunks
//! ([`VectorIndex::load`]) and told of every committed write; a search's
//! ids are read back from the store before they are answered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use hnsw_rs::prelude::{Distance, FilterT, Hnsw};
use serde_json::{Map, Value};

use crate::store::Revision;

/// A graph's revision when it does not know one (made by a write before
/// any load): the next catch-up rebuilds it.
const UNKNOWN_REVISION: i64 = -1;

/// Neighbours kept per point on upper layers (`M`); layer 0 keeps twice.
pub const MAX_CONNECTIONS: usize = 24;
/// Candidates considered while inserting.
pub const EF_CONSTRUCTION: usize = 200;
/// Layers at most.
const MAX_LAYERS: usize = 16;
/// The least candidate list while searching; `k` widens it.
pub const EF_SEARCH: usize = 64;

/// A metadata filter: every named top-level field must equal its value.
pub type MetadataFilter = Map<String, Value>;

/// Whether `metadata` satisfies `filter`.
pub fn matches(metadata: &Value, filter: &MetadataFilter) -> bool {
    filter
        .iter()
        .all(|(field, wanted)| metadata.get(field) == Some(wanted))
}

/// Cosine distance between vectors made unit length on the way in
/// ([`unit`]): one minus their dot product, summed in eight lanes so the
/// compiler vectorises it. `hnsw_rs`' `DistCosine` recomputes both norms in
/// f64 on every comparison (most of a build's time), and its `DistDot`
/// asserts on a rounding above 1.
#[derive(Debug, Default, Clone, Copy)]
struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot(va, vb)).max(0.0)
    }
}

/// The dot product of `va` and `vb` (the shorter's length).
fn dot(va: &[f32], vb: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (va.chunks_exact(8), vb.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += a[lane] * b[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `vector` scaled to unit length (a zero vector stays zero: every other
/// vector is then at distance 1 from it).
fn unit(vector: &[f32]) -> Vec<f32> {
    let norm = dot(vector, vector).sqrt();
    if norm > 0.0 && norm.is_finite() {
        vector.iter().map(|value| value / norm).collect()
    } else {
        vec![0.0; vector.len()]
    }
}

/// Which chunk ids a graph holds.
#[derive(Default)]
struct Points {
    /// Live chunk ids and their metadata.
    live: HashMap<usize, Value>,
    /// Removed ids (tombstones, and removals that arrived before their
    /// add): never inserted again.
    dead: HashSet<usize>,
}

/// One namespace's graph and its live points.
struct NamespaceIndex {
    graph: Hnsw<'static, f32, UnitCosine>,
    points: RwLock<Points>,
    dimensions: usize,
    /// The namespace's creation this graph was loaded for (`None`: made by
    /// a write, never loaded).
    created_at: Option<i64>,
    /// The namespace revision the graph reflects ([`UNKNOWN_REVISION`]
    /// when made by a write, never loaded).
    revision: AtomicI64,
}

/// A hit: a chunk id and its cosine similarity (1 is the same direction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// The chunk's row id.
    pub id: i64,
    /// Cosine similarity.
    pub score: f32,
}

/// Every vector namespace's index.
#[derive(Default)]
pub struct VectorIndex {
    namespaces: RwLock<HashMap<String, Arc<NamespaceIndex>>>,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.namespaces.read().map(|map| map.len()).unwrap_or(0);
        f.debug_struct("VectorIndex")
            .field("namespaces", &count)
            .finish()
    }
}

struct LiveFilter<'a> {
    live: &'a HashMap<usize, Value>,
    filter: Option<&'a MetadataFilter>,
}

impl FilterT for LiveFilter<'_> {
    fn hnsw_filter(&self, id: &usize) -> bool {
        match (self.live.get(id), self.filter) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(metadata), Some(filter)) => matches(metadata, filter),
        }
    }
}

fn to_id(id: i64) -> Option<usize> {
    usize::try_from(id).ok()
}

// === impl NamespaceIndex ===

impl NamespaceIndex {
    fn new(dimensions: usize, capacity: usize, at: Option<Revision>) -> Self {
        Self {
            graph: Hnsw::new(
                MAX_CONNECTIONS,
                capacity.max(1_000),
                MAX_LAYERS,
                EF_CONSTRUCTION,
                UnitCosine,
            ),
            points: RwLock::new(Points {
                live: HashMap::with_capacity(capacity),
                dead: HashSet::new(),
            }),
            dimensions,
            created_at: at.map(|at| at.created_at),
            revision: AtomicI64::new(at.map_or(UNKNOWN_REVISION, |at| at.revision)),
        }
    }

    /// Tombstones `removed`, then inserts the `added` points the graph has
    /// never seen (live or removed).
    fn apply(&self, added: &[(i64, &[f32], &Value)], removed: &[i64]) {
        if let Ok(mut points) = self.points.write() {
            for id in removed.iter().filter_map(|id| to_id(*id)) {
                points.live.remove(&id);
                points.dead.insert(id);
            }
        }
        for (id, vector, metadata) in added {
            let Some(id) = to_id(*id) else { continue };
            if vector.len() != self.dimensions {
                continue;
            }
            // Claimed under the lock, so two appliers of one change never
            // both insert it; a search meanwhile skips an id that is live
            // but not yet in the graph (it only asks about graph points).
            let fresh = self.points.write().is_ok_and(|mut points| {
                if points.live.contains_key(&id) || points.dead.contains(&id) {
                    false
                } else {
                    points.live.insert(id, (*metadata).clone());
                    true
                }
            });
            if fresh {
                self.graph.insert_slice((&unit(vector), id));
            }
        }
    }

    fn at(&self) -> Option<Revision> {
        let revision = self.revision.load(Ordering::Acquire);
        match (self.created_at, revision) {
            (Some(created_at), revision) if revision != UNKNOWN_REVISION => Some(Revision {
                created_at,
                revision,
            }),
            _ => None,
        }
    }
}

// === impl VectorIndex ===

impl VectorIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn namespace(&self, namespace: &str) -> Option<Arc<NamespaceIndex>> {
        self.namespaces
            .read()
            .ok()
            .and_then(|map| map.get(namespace).cloned())
    }

    /// (Re)builds `namespace`'s graph from `points` (chunk id, vector,
    /// metadata), replacing any it had; inserts in parallel. `at` is the
    /// namespace's revision read **before** the points, so the changes
    /// after it cover everything the points may lack.
    pub fn load(
        &self,
        namespace: &str,
        dimensions: usize,
        at: Option<Revision>,
        points: Vec<(i64, Vec<f32>, Value)>,
    ) {
        let index = NamespaceIndex::new(dimensions, points.len(), at);
        let mut units = Vec::with_capacity(points.len());
        if let Ok(mut stored) = index.points.write() {
            for (id, vector, metadata) in &points {
                if let (Some(id), true) = (to_id(*id), vector.len() == dimensions) {
                    stored.live.insert(id, metadata.clone());
                    units.push((unit(vector), id));
                }
            }
        }
        let batch: Vec<(&Vec<f32>, usize)> =
            units.iter().map(|(vector, id)| (vector, *id)).collect();
        index.graph.parallel_insert(&batch);
        if let Ok(mut map) = self.namespaces.write() {
            map.insert(namespace.to_owned(), Arc::new(index));
        }
    }

    /// A committed write of this process: adds points to `namespace`, and
    /// tombstones `removed` ids. A namespace without a graph gets one only
    /// when points are added (its revision unknown, so the next catch-up
    /// rebuilds it). The graph's revision advances to `revision` only when
    /// that is exactly the next one; otherwise a write of another replica
    /// came between, and the catch-up applies both.
    pub fn apply(
        &self,
        namespace: &str,
        dimensions: usize,
        added: &[(i64, &[f32], &Value)],
        removed: &[i64],
        revision: Option<i64>,
    ) {
        let index = match self.namespace(namespace) {
            Some(index) => index,
            None if added.is_empty() => return,
            None => {
                let Ok(mut map) = self.namespaces.write() else {
                    return;
                };
                map.entry(namespace.to_owned())
                    .or_insert_with(|| Arc::new(NamespaceIndex::new(dimensions, 0, None)))
                    .clone()
            }
        };
        index.apply(added, removed);
        if let Some(revision) = revision.filter(|revision| *revision > 0) {
            // Fails, harmlessly, unless the graph was exactly one behind.
            let _ = index.revision.compare_exchange(
                revision - 1,
                revision,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// Other replicas' changes to `namespace` up to `revision`, applied to
    /// its graph, whose revision then becomes at least `revision`; false
    /// when this process has no graph of it.
    pub fn follow(
        &self,
        namespace: &str,
        added: &[(i64, &[f32], &Value)],
        removed: &[i64],
        revision: i64,
    ) -> bool {
        let Some(index) = self.namespace(namespace) else {
            return false;
        };
        index.apply(added, removed);
        index.revision.fetch_max(revision, Ordering::AcqRel);
        true
    }

    /// Every namespace with a graph here and the revision it reflects
    /// (`None`: unknown, rebuild it).
    pub fn revisions(&self) -> Vec<(String, Option<Revision>)> {
        self.namespaces
            .read()
            .map(|map| {
                map.iter()
                    .map(|(name, index)| (name.clone(), index.at()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The dimensions of `namespace`'s graph, if it has one.
    pub fn dimensions(&self, namespace: &str) -> Option<usize> {
        self.namespace(namespace).map(|index| index.dimensions)
    }

    /// Whether `namespace` has a graph in this process (built or loaded).
    pub fn contains(&self, namespace: &str) -> bool {
        self.namespace(namespace).is_some()
    }

    /// Forgets `namespace` (deleted).
    pub fn drop_namespace(&self, namespace: &str) {
        if let Ok(mut map) = self.namespaces.write() {
            map.remove(namespace);
        }
    }

    /// Live points of `namespace`.
    pub fn len(&self, namespace: &str) -> usize {
        self.namespace(namespace)
            .and_then(|index| index.points.read().ok().map(|points| points.live.len()))
            .unwrap_or(0)
    }

    /// Whether `namespace` has no live point.
    pub fn is_empty(&self, namespace: &str) -> bool {
        self.len(namespace) == 0
    }

    /// The `k` live points nearest `query` that satisfy `filter`, nearest
    /// first. `ef` widens the candidate list (at least [`EF_SEARCH`] and `k`).
    pub fn search(
        &self,
        namespace: &str,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&MetadataFilter>,
    ) -> Vec<Neighbour> {
        let Some(index) = self.namespace(namespace) else {
            return Vec::new();
        };
        if query.len() != index.dimensions || k == 0 {
            return Vec::new();
        }
        let Ok(points) = index.points.read() else {
            return Vec::new();
        };
        let live_filter = LiveFilter {
            live: &points.live,
            filter: filter.filter(|filter| !filter.is_empty()),
        };
        let ef = ef.max(EF_SEARCH).max(k);
        index
            .graph
            .search_filter(&unit(query), k, ef, Some(&live_filter))
            .into_iter()
            .filter_map(|neighbour| {
                let id = i64::try_from(neighbour.d_id).ok()?;
                Some(Neighbour {
                    id,
                    score: 1.0 - neighbour.distance,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use hnsw_rs::prelude::DistCosine;

    use super::*;

    #[test]
    fn unit_cosine_is_the_cosine_distance_of_the_vectors_as_given() {
        let vectors: Vec<Vec<f32>> = (0..20)
            .map(|seed| {
                (0..37)
                    .map(|i| ((seed * 31 + i * 7) % 13) as f32 - 6.0)
                    .collect()
            })
            .collect();
        for a in &vectors {
            for b in &vectors {
                let expected = DistCosine.eval(a, b);
                let got = UnitCosine.eval(&unit(a), &unit(b));
                assert!((expected - got).abs() < 1e-5, "{expected} vs {got}");
                assert!(got >= 0.0);
            }
        }
        assert_eq!(unit(&[0.0, 0.0]), vec![0.0, 0.0]);
        assert_eq!(UnitCosine.eval(&[0.0, 0.0], &unit(&[3.0, 4.0])), 1.0);
    }

    /// Issue 20: own writes and other replicas' changes may reach a graph
    /// twice and out of order; each chunk is inserted once, a removal
    /// wins over an add that arrives after it, and the revision moves
    /// only forward (an own write only when it is exactly the next one).
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

        // A removal for a namespace without a graph makes none; an add
        // makes one whose revision is unknown (the next catch-up rebuilds).
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
}
