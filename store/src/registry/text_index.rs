//! The SQLite agent store's ranked free-text index, held in memory
//! (PostgreSQL ranks with `ts_rank` over its generated `tsvector` instead).
//!
//! FTS5's bm25 costs about a microsecond per matching row and cannot stop
//! early, so a common word in a large registry (a quarter of 100k cards)
//! took tens of milliseconds to rank however the SQL was written. This index
//! keeps, per term, the agents that contain it with a precomputed *impact*
//! (sorted by row number), and per agent the facts discovery filters on. A
//! ranked query intersects the posting lists of its terms, checks each match's
//! filters in memory, scores it by adding its impacts, and keeps the best
//! `page_size + 1`: a few nanoseconds per match. Only the page's rows are
//! then read from SQLite.
//!
//! **Invariants:**
//! - The rows are the truth; this index is derived from them. It is built
//!   from every row when the store opens and updated from the record each
//!   write returns, after that write commits (a failed write changes
//!   nothing here).
//! - An agent's entry is replaced only by a record of a higher version, so
//!   two writes whose updates reach the index out of commit order still
//!   leave the newer one (every write, deregistration and trust change
//!   included, raises the version).
//! - The ranking depends only on the agent and the query, never on other
//!   agents (no corpus statistics): a ranked page boundary stays put while
//!   agents are inserted, as on PostgreSQL.
//!
//! **Ranking:** an agent's impact for a term is BM25's saturated term
//! frequency, `f·(k1+1) / (f + k1·(1 − b + b·len/avglen))` with `k1 = 1.2`,
//! `b = 0.75`, where `f` weights the term's occurrences by column (name 10,
//! description 3, skills 1, as bm25 was weighted) and `len` is the agent's
//! token count against a fixed `avglen`. A query scores the sum of its
//! terms' impacts; ties go to the earlier registration (the smaller row
//! number). Impacts are integers, so a score round-trips exactly through a
//! page token.
//!
//! **Tokens:** runs of letters and digits, lower-cased, with diacritics
//! removed (`café` matches `cafe`), for stored text and queries alike.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{PoisonError, RwLock};

use convergio_schemas::AgentRole;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use convergio_registry::model::AgentRecord;
use convergio_registry::store::{DiscoveryQuery, IndexTerms};
use convergio_registry::{RegistryError, Result};

/// Column weights: a name hit counts most.
const NAME_WEIGHT: u32 = 10;
const DESCRIPTION_WEIGHT: u32 = 3;
const SKILLS_WEIGHT: u32 = 1;
/// BM25's term-frequency saturation and length normalisation.
const K1: f64 = 1.2;
const B: f64 = 0.75;
/// The token count an agent card is normalised against. Fixed (not the
/// registry's running average) so an agent's impacts never change because
/// other agents were registered.
const AVERAGE_LENGTH: f64 = 40.0;
/// Impacts are stored as integers at this scale.
const IMPACT_SCALE: f64 = 10_000.0;

/// Splits `text` into index tokens: lower-cased runs of letters and digits
/// with diacritics removed.
pub(crate) fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|token| !token.is_empty())
        .map(fold)
}

/// Lower-cases `token` and removes its diacritics.
fn fold(token: &str) -> String {
    if token.is_ascii() {
        return token.to_ascii_lowercase();
    }
    token
        .to_lowercase()
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .collect()
}

/// One agent of one term's posting list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Posting {
    pk: u32,
    impact: u32,
}

/// What discovery filters on, per agent.
#[derive(Debug, Clone)]
struct Doc {
    version: i64,
    deleted: bool,
    role: AgentRole,
    trust_rank: i16,
    /// Term ids of the agent's postings, to remove them on replacement.
    terms: Box<[u32]>,
    /// Sorted facet ids: org, skills, tags, input and output modes.
    facets: Box<[u32]>,
}

/// The index's data, behind one lock.
#[derive(Debug, Default)]
struct Inner {
    term_ids: HashMap<Box<str>, u32>,
    postings: Vec<Vec<Posting>>,
    facet_ids: HashMap<Box<str>, u32>,
    /// Agents by row number (`pk`); row numbers are dense.
    docs: Vec<Option<Doc>>,
}

/// An agent's entry, computed outside the lock.
struct Prepared {
    pk: u32,
    version: i64,
    deleted: bool,
    role: AgentRole,
    trust_rank: i16,
    /// (token, impact), one per distinct token.
    impacts: Vec<(String, u32)>,
    facets: Vec<String>,
}

/// The in-memory ranked index of one SQLite store.
#[derive(Debug, Default)]
pub(crate) struct TextIndex {
    inner: RwLock<Inner>,
}

/// What the index keeps of one agent, taken from its record or, when the
/// store opens, from its stored row and side-table rows (the same facts:
/// both are written from one [`IndexTerms`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexedAgent<'a> {
    /// The row number.
    pub pk: i64,
    pub version: i64,
    pub deleted: bool,
    pub role: AgentRole,
    pub trust_rank: i16,
    pub org: &'a str,
    pub terms: &'a IndexTerms,
}

impl<'a> IndexedAgent<'a> {
    /// The agent `record`, stored at row `pk`, whose index terms are `terms`.
    pub(crate) fn of(pk: i64, record: &'a AgentRecord, terms: &'a IndexTerms) -> Self {
        Self {
            pk,
            version: record.version,
            deleted: record.deleted_at.is_some(),
            role: record.role,
            trust_rank: record.trust.rank(),
            org: &record.org,
            terms,
        }
    }
}

/// Where a ranked page starts: after the result of `rank` at row `pk`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct After {
    pub rank: f64,
    pub pk: i64,
}

/// One ranked result: the agent's row number and its rank (lower is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ranked {
    pub pk: i64,
    pub rank: f64,
}

// === impl TextIndex ===

impl TextIndex {
    /// Records `record` (stored at row `pk`) unless the index already holds
    /// a newer version of it, deriving its terms from the card (writes that
    /// already hold the terms use [`TextIndex::apply_all`]).
    pub(crate) fn apply(&self, pk: i64, record: &AgentRecord) -> Result<()> {
        let terms = IndexTerms::of(record);
        self.apply_all([IndexedAgent::of(pk, record, &terms)])
    }

    /// Records many agents under one lock (a bulk write, or opening).
    pub(crate) fn apply_all<'a>(
        &self,
        agents: impl IntoIterator<Item = IndexedAgent<'a>>,
    ) -> Result<()> {
        let prepared = agents
            .into_iter()
            .map(prepare)
            .collect::<Result<Vec<_>>>()?;
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for entry in prepared {
            inner.apply(entry);
        }
        Ok(())
    }

    /// The best `limit` agents for `query`'s text that sort after `after`, best
    /// first. `terms` are the query's free-text terms (not empty).
    pub(crate) fn search(
        &self,
        query: &DiscoveryQuery,
        terms: &[String],
        after: Option<After>,
        limit: usize,
    ) -> Vec<Ranked> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.search(query, terms, after, limit)
    }

    /// The heap the index holds, in bytes (counted, not measured: hash
    /// tables are estimated at their capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let postings: usize = inner
            .postings
            .iter()
            .map(|list| list.capacity() * size_of::<Posting>() + size_of::<Vec<Posting>>())
            .sum();
        let docs: usize = inner.docs.capacity() * size_of::<Option<Doc>>()
            + inner
                .docs
                .iter()
                .flatten()
                .map(|doc| (doc.terms.len() + doc.facets.len()) * size_of::<u32>())
                .sum::<usize>();
        let dictionary = |map: &HashMap<Box<str>, u32>| -> usize {
            map.capacity() * (size_of::<Box<str>>() + size_of::<u32>() + 1)
                + map.keys().map(|key| key.len()).sum::<usize>()
        };
        postings + docs + dictionary(&inner.term_ids) + dictionary(&inner.facet_ids)
    }

    /// Gives back the spare capacity of posting lists grown by appends
    /// (after the store opens; later appends grow them again as needed).
    pub(crate) fn shrink(&self) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for list in &mut inner.postings {
            list.shrink_to_fit();
        }
        inner.docs.shrink_to_fit();
    }
}

/// Computes an agent's entry, outside the lock.
fn prepare(agent: IndexedAgent<'_>) -> Result<Prepared> {
    let pk = u32::try_from(agent.pk)
        .map_err(|_| RegistryError::corrupt(format!("row number {} is out of range", agent.pk)))?;
    let terms = agent.terms;
    // Weighted occurrences per token, and the card's length in tokens.
    let mut weighted: HashMap<String, u32> = HashMap::new();
    let mut length = 0u32;
    for (text, weight) in [
        (&terms.search_name, NAME_WEIGHT),
        (&terms.search_description, DESCRIPTION_WEIGHT),
        (&terms.search_skills, SKILLS_WEIGHT),
    ] {
        for token in tokens(text) {
            length += 1;
            *weighted.entry(token).or_default() += weight;
        }
    }
    let norm = K1 * (1.0 - B + B * f64::from(length) / AVERAGE_LENGTH);
    let impacts = weighted
        .into_iter()
        .map(|(token, f)| {
            let f = f64::from(f);
            let impact = (f * (K1 + 1.0) / (f + norm) * IMPACT_SCALE).round();
            // At least 1: every token that occurs is a match.
            (token, (impact as u32).max(1))
        })
        .collect();
    let mut facets = vec![org_facet(agent.org)];
    facets.extend(terms.skills.iter().map(|skill| skill_facet(skill)));
    facets.extend(terms.tags.iter().map(|tag| tag_facet(tag)));
    facets.extend(terms.input_modes.iter().map(|mode| input_facet(mode)));
    facets.extend(terms.output_modes.iter().map(|mode| output_facet(mode)));
    Ok(Prepared {
        pk,
        version: agent.version,
        deleted: agent.deleted,
        role: agent.role,
        trust_rank: agent.trust_rank,
        impacts,
        facets,
    })
}

// Facet keys: one dictionary, a prefix per kind (no token contains ':').
fn org_facet(org: &str) -> String {
    format!("g:{}", org.to_ascii_lowercase())
}
fn skill_facet(skill: &str) -> String {
    format!("s:{skill}")
}
fn tag_facet(tag: &str) -> String {
    format!("t:{tag}")
}
fn input_facet(mode: &str) -> String {
    format!("i:{mode}")
}
fn output_facet(mode: &str) -> String {
    format!("o:{mode}")
}

/// A candidate in the top-k heap. Better results sort first (higher score,
/// then the earlier row), so the max-heap's top is the worst one kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    score: u64,
    pk: u32,
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .cmp(&self.score)
            .then_with(|| self.pk.cmp(&other.pk))
    }
}

/// The query's filters, resolved to facet ids once.
struct Filters {
    include_deleted: bool,
    role: Option<AgentRole>,
    min_trust: Option<i16>,
    /// Facets every match must have.
    facets: Vec<u32>,
}

impl Filters {
    fn admit(&self, doc: &Doc) -> bool {
        (self.include_deleted || !doc.deleted)
            && self.role.is_none_or(|role| doc.role == role)
            && self.min_trust.is_none_or(|min| doc.trust_rank >= min)
            && self
                .facets
                .iter()
                .all(|facet| doc.facets.binary_search(facet).is_ok())
    }
}

// === impl Inner ===

impl Inner {
    fn apply(&mut self, entry: Prepared) {
        let slot = entry.pk as usize;
        if self.docs.len() <= slot {
            self.docs.resize(slot + 1, None);
        }
        if let Some(old) = &self.docs[slot] {
            if old.version > entry.version {
                return;
            }
            let old_terms = old.terms.clone();
            for term in old_terms.iter() {
                let list = &mut self.postings[*term as usize];
                if let Ok(at) = list.binary_search_by_key(&entry.pk, |posting| posting.pk) {
                    list.remove(at);
                }
            }
        }
        let mut terms = Vec::with_capacity(entry.impacts.len());
        for (token, impact) in entry.impacts {
            let term = self.term_id(token);
            terms.push(term);
            let posting = Posting {
                pk: entry.pk,
                impact,
            };
            let list = &mut self.postings[term as usize];
            // Agents are registered in row order: almost always an append.
            match list.last() {
                Some(last) if last.pk >= entry.pk => {
                    match list.binary_search_by_key(&entry.pk, |posting| posting.pk) {
                        Ok(at) => list[at] = posting,
                        Err(at) => list.insert(at, posting),
                    }
                }
                _ => list.push(posting),
            }
        }
        let mut facets: Vec<u32> = entry
            .facets
            .into_iter()
            .map(|facet| self.facet_id(facet))
            .collect();
        facets.sort_unstable();
        facets.dedup();
        self.docs[slot] = Some(Doc {
            version: entry.version,
            deleted: entry.deleted,
            role: entry.role,
            trust_rank: entry.trust_rank,
            terms: terms.into_boxed_slice(),
            facets: facets.into_boxed_slice(),
        });
    }

    fn term_id(&mut self, token: String) -> u32 {
        if let Some(id) = self.term_ids.get(token.as_str()) {
            return *id;
        }
        let id = self.postings.len() as u32;
        self.postings.push(Vec::new());
        self.term_ids.insert(token.into_boxed_str(), id);
        id
    }

    fn facet_id(&mut self, facet: String) -> u32 {
        let next = self.facet_ids.len() as u32;
        *self.facet_ids.entry(facet.into_boxed_str()).or_insert(next)
    }

    /// The query's filters; `None` when one names a facet no agent has, so
    /// nothing can match.
    fn filters(&self, query: &DiscoveryQuery) -> Option<Filters> {
        let mut keys = Vec::new();
        if let Some(org) = query.org_key() {
            keys.push(org_facet(&org));
        }
        if let Some(skill) = query.skill_key() {
            keys.push(skill_facet(&skill));
        }
        if let Some(tag) = query.tag_key() {
            keys.push(tag_facet(&tag));
        }
        if let Some(mode) = &query.input_mode {
            keys.push(input_facet(mode));
        }
        if let Some(mode) = &query.output_mode {
            keys.push(output_facet(mode));
        }
        let facets = keys
            .iter()
            .map(|key| self.facet_ids.get(key.as_str()).copied())
            .collect::<Option<Vec<u32>>>()?;
        Some(Filters {
            include_deleted: query.include_deleted,
            role: query.role,
            min_trust: query.min_trust.map(|trust| trust.rank()),
            facets,
        })
    }

    fn search(
        &self,
        query: &DiscoveryQuery,
        terms: &[String],
        after: Option<After>,
        limit: usize,
    ) -> Vec<Ranked> {
        let Some(filters) = self.filters(query) else {
            return Vec::new();
        };
        // Every term must occur: an unknown one matches nothing.
        let mut lists = Vec::with_capacity(terms.len());
        for term in terms {
            let token = fold(term);
            match self.term_ids.get(token.as_str()) {
                Some(id) => lists.push(self.postings[*id as usize].as_slice()),
                None => return Vec::new(),
            }
        }
        // The same term twice counts twice (as it did in bm25), but its list
        // is walked once per occurrence like any other.
        lists.sort_by_key(|list| list.len());
        let Some((driver, others)) = lists.split_first() else {
            return Vec::new();
        };
        // The page start as a candidate: results must sort strictly after it.
        let after = after.map(|after| Candidate {
            score: (-after.rank).max(0.0) as u64,
            pk: u32::try_from(after.pk).unwrap_or(u32::MAX),
        });
        let mut positions = vec![0usize; others.len()];
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(limit + 1);
        'drive: for posting in driver.iter() {
            let mut score = u64::from(posting.impact);
            for (list, position) in others.iter().zip(positions.iter_mut()) {
                // Gallop to the first posting at or after the driver's row.
                let rest = &list[*position..];
                let skip = rest.partition_point(|other| other.pk < posting.pk);
                *position += skip;
                match list.get(*position) {
                    Some(other) if other.pk == posting.pk => score += u64::from(other.impact),
                    Some(_) => continue 'drive,
                    None => break 'drive,
                }
            }
            let Some(Some(doc)) = self.docs.get(posting.pk as usize) else {
                continue;
            };
            if !filters.admit(doc) {
                continue;
            }
            let candidate = Candidate {
                score,
                pk: posting.pk,
            };
            if after.is_some_and(|after| candidate <= after) {
                continue;
            }
            if heap.len() < limit {
                heap.push(candidate);
            } else if heap.peek().is_some_and(|worst| candidate < *worst) {
                heap.pop();
                heap.push(candidate);
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|candidate| Ranked {
                pk: i64::from(candidate.pk),
                // Lower is better, as bm25 was: page tokens keep that sense.
                rank: -(candidate.score as f64),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
