//! The built-in deterministic planner (`planner: builtin`, the default):
//! offline, no model, the same plan for the same goal and candidates.
//!
//! 1. **Terms.** The goal's words, lowercased, without stop words, with a
//!    plural `s` dropped (`problems` → `problem`).
//! 2. **Vocabulary.** A candidate's words come from its name, its skills'
//!    ids, names and tags (split on `_`, `-` and spaces). Descriptions are
//!    not used: their generic words ("reports findings") would match
//!    everything.
//! 3. **Selection, rarest term first.** Terms are taken in order of how few
//!    candidates they match (then of position in the goal). A term no
//!    candidate matches is noted; a term an already chosen agent matches is
//!    covered; otherwise the candidate matching most goal terms (then the
//!    first by name) is chosen for it. So `security` picks the one security
//!    reviewer and `code`, which every reviewer matches, adds nobody.
//! 4. **Order, by role.** Each chosen agent gets a stage from the word that
//!    chose it, else its name, else its registry role: preparation
//!    (`analyze`, `extract`, …) → work → critics (role `critic`) →
//!    aggregation (`aggregate`, `merge`, …) → reporting (`report`,
//!    `summary`, …). Agents in the same stage run in parallel; each stage
//!    takes the outputs of the stage before it; the first takes the
//!    request's `inputs` (or the whole run input). A stage whose input
//!    modes share none of the previous stage's output modes is noted.
//! 5. **Limits.** `max_steps` keeps the steps chosen first (the rarest
//!    terms); `min_trust`, `allow_external` and the `planner` role rule
//!    candidates out before selection. Every choice is in the rationale.

use std::collections::{BTreeMap, BTreeSet};

use convergio_schemas::AgentRole;

use crate::document::{CandidateCard, Considered, Constraints, PlanDocument, PlanStep};
use crate::error::PlannerError;

/// Words that carry no meaning for matching.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "for", "to", "in", "on", "with", "this", "that", "these",
    "those", "it", "its", "is", "are", "be", "by", "from", "as", "at", "into", "then", "me", "my",
    "our", "your", "all", "any", "some", "please", "about", "their", "them",
];

/// Stages, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Prepare,
    Work,
    Critique,
    Aggregate,
    Report,
}

// === impl Stage ===

impl Stage {
    fn of_word(word: &str) -> Option<Self> {
        const PREPARE: &[&str] = &[
            "analyze",
            "analyse",
            "analyzer",
            "analyser",
            "analysi",
            "extract",
            "extractor",
            "parse",
            "parser",
            "fetch",
            "fetcher",
            "collect",
            "collector",
            "gather",
            "research",
            "researcher",
            "search",
            "plan",
        ];
        const AGGREGATE: &[&str] = &[
            "aggregate",
            "aggregator",
            "aggregation",
            "merge",
            "merger",
            "combine",
            "consolidate",
        ];
        const REPORT: &[&str] = &[
            "report",
            "reporter",
            "summary",
            "summarize",
            "summarise",
            "summarizer",
            "markdown",
            "document",
            "documentation",
            "render",
            "present",
        ];
        if PREPARE.contains(&word) {
            Some(Self::Prepare)
        } else if AGGREGATE.contains(&word) {
            Some(Self::Aggregate)
        } else if REPORT.contains(&word) {
            Some(Self::Report)
        } else {
            None
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Prepare => "preparation",
            Self::Work => "work",
            Self::Critique => "critique",
            Self::Aggregate => "aggregation",
            Self::Report => "reporting",
        }
    }
}

/// Lowercased words of `text` (split on anything not alphanumeric), with a
/// plural `s` dropped.
pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| stem(&word.to_lowercase()))
}

fn stem(word: &str) -> String {
    if word.len() > 4 && word.ends_with('s') && !word.ends_with("ss") {
        word[..word.len() - 1].to_owned()
    } else {
        word.to_owned()
    }
}

/// A candidate's matching vocabulary.
pub(crate) fn vocabulary(card: &CandidateCard) -> BTreeSet<String> {
    let mut vocabulary: BTreeSet<String> = words(&card.name).collect();
    for skill in &card.skills {
        vocabulary.extend(words(&skill.id));
        vocabulary.extend(words(&skill.name));
        for tag in &skill.tags {
            vocabulary.extend(words(tag));
        }
    }
    vocabulary
}

/// Why a candidate may not be planned with, if it may not.
pub(crate) fn ineligible(card: &CandidateCard, constraints: &Constraints) -> Option<String> {
    if card.role == AgentRole::Planner {
        return Some("a planner, not a worker".to_owned());
    }
    if card.name.starts_with("external://") && !constraints.allow_external {
        return Some("another organisation's agent and allow_external is false".to_owned());
    }
    match constraints.min_trust {
        Some(floor) if card.trust.rank() < floor.rank() => Some(format!(
            "trust {} is below min_trust {}",
            card.trust.as_str(),
            floor.as_str()
        )),
        _ => None,
    }
}

/// A step id for `agent`: its name's last segment, made an id.
fn step_id(agent: &str, taken: &BTreeSet<String>) -> String {
    let base: String = agent
        .rsplit('/')
        .next()
        .unwrap_or(agent)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = if base.is_empty() {
        "step".to_owned()
    } else {
        base
    };
    let mut id = base.clone();
    let mut counter = 2;
    while taken.contains(&id) {
        id = format!("{base}_{counter}");
        counter += 1;
    }
    id
}

/// Plans `goal` over `candidates`; `inputs` are the run inputs the first
/// steps take (empty: the whole run input).
pub fn plan(
    goal: &str,
    candidates: &[CandidateCard],
    inputs: &[String],
    constraints: &Constraints,
) -> Result<PlanDocument, PlannerError> {
    let mut considered: BTreeMap<String, Considered> = BTreeMap::new();
    let mut eligible: Vec<(&CandidateCard, BTreeSet<String>)> = Vec::new();
    for card in candidates {
        match ineligible(card, constraints) {
            Some(reason) => {
                considered.insert(
                    card.name.clone(),
                    Considered {
                        agent: card.name.clone(),
                        selected: false,
                        reason: format!("ruled out: {reason}"),
                    },
                );
            }
            None => eligible.push((card, vocabulary(card))),
        }
    }
    eligible.sort_by(|a, b| a.0.name.cmp(&b.0.name));

    let mut terms: Vec<String> = Vec::new();
    for word in words(goal) {
        if !STOP_WORDS.contains(&word.as_str()) && !terms.contains(&word) {
            terms.push(word);
        }
    }
    let goal_terms: BTreeSet<&str> = terms.iter().map(String::as_str).collect();
    let matches = |vocabulary: &BTreeSet<String>| {
        vocabulary
            .iter()
            .filter(|word| goal_terms.contains(word.as_str()))
            .count()
    };
    let frequency = |term: &str| {
        eligible
            .iter()
            .filter(|(_, vocabulary)| vocabulary.contains(term))
            .count()
    };
    let mut order: Vec<(usize, usize, &str)> = terms
        .iter()
        .enumerate()
        .map(|(position, term)| (frequency(term), position, term.as_str()))
        .collect();
    order.sort();

    let mut rationale = Vec::new();
    let mut chosen: Vec<(usize, &str)> = Vec::new(); // (eligible index, choosing term)
    let mut unmatched = Vec::new();
    for (count, _, term) in order {
        if count == 0 {
            unmatched.push(term);
            continue;
        }
        if let Some((index, _)) = chosen
            .iter()
            .find(|(index, _)| eligible[*index].1.contains(term))
        {
            rationale.push(format!(
                "`{term}` is covered by {}",
                eligible[*index].0.name
            ));
            continue;
        }
        let best = eligible
            .iter()
            .enumerate()
            .filter(|(_, (_, vocabulary))| vocabulary.contains(term))
            .max_by(|(ia, (a, va)), (ib, (b, vb))| {
                matches(va)
                    .cmp(&matches(vb))
                    .then_with(|| b.name.cmp(&a.name))
                    .then_with(|| ib.cmp(ia))
            });
        if let Some((index, (card, vocabulary))) = best {
            rationale.push(format!(
                "`{term}` matches {count} candidate(s); chose {} (matches {} goal term(s))",
                card.name,
                matches(vocabulary)
            ));
            chosen.push((index, term));
        }
    }
    if !unmatched.is_empty() {
        rationale.push(format!(
            "no candidate's name, skills or tags match: {}",
            unmatched.join(", ")
        ));
    }
    if chosen.is_empty() {
        return Err(PlannerError::NoMatch {
            goal: goal.chars().take(200).collect(),
        });
    }
    if let Some(max_steps) = constraints.max_steps {
        let max_steps = max_steps.max(1) as usize;
        if chosen.len() > max_steps {
            let dropped: Vec<&str> = chosen[max_steps..]
                .iter()
                .map(|(index, _)| eligible[*index].0.name.as_str())
                .collect();
            rationale.push(format!(
                "max_steps is {max_steps}: left out {} (chosen for the most common terms)",
                dropped.join(", ")
            ));
            for agent in dropped {
                considered.insert(
                    agent.to_owned(),
                    Considered {
                        agent: agent.to_owned(),
                        selected: false,
                        reason: "matched, but over max_steps".to_owned(),
                    },
                );
            }
            chosen.truncate(max_steps);
        }
    }

    // Stages.
    let mut staged: BTreeMap<Stage, Vec<(usize, &str)>> = BTreeMap::new();
    for (index, term) in &chosen {
        let card = eligible[*index].0;
        let stage = Stage::of_word(term)
            .or_else(|| words(&card.name).find_map(|word| Stage::of_word(&word)))
            .unwrap_or(if card.role == AgentRole::Critic {
                Stage::Critique
            } else {
                Stage::Work
            });
        staged.entry(stage).or_default().push((*index, term));
    }

    let mut steps: Vec<PlanStep> = Vec::new();
    let mut taken = BTreeSet::new();
    let mut previous: Option<(Vec<String>, Vec<&CandidateCard>)> = None;
    for (stage, members) in &staged {
        let mut ids = Vec::new();
        let mut cards = Vec::new();
        for (index, term) in members {
            let card = eligible[*index].0;
            let id = step_id(&card.name, &taken);
            taken.insert(id.clone());
            let skill = card
                .skills
                .iter()
                .max_by_key(|skill| {
                    let mut vocabulary: BTreeSet<String> = words(&skill.id).collect();
                    vocabulary.extend(words(&skill.name));
                    skill
                        .tags
                        .iter()
                        .for_each(|tag| vocabulary.extend(words(tag)));
                    matches(&vocabulary)
                })
                .map(|skill| skill.name.clone())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| card.name.clone());
            let (inputs, after) = match &previous {
                Some((ids, _)) => (
                    ids.iter().map(|id| format!("{id}.output")).collect(),
                    Vec::new(),
                ),
                None => (inputs.to_vec(), Vec::new()),
            };
            steps.push(PlanStep {
                id: id.clone(),
                agent: card.name.clone(),
                task: format!("{skill} ({}) for: {goal}", stage.label()),
                inputs,
                after,
            });
            considered.insert(
                card.name.clone(),
                Considered {
                    agent: card.name.clone(),
                    selected: true,
                    reason: format!("chosen for `{term}`; {} stage", stage.label()),
                },
            );
            ids.push(id);
            cards.push(card);
        }
        if let Some((before, before_cards)) = &previous {
            rationale.push(format!(
                "{} stage ({}) runs after {}",
                stage.label(),
                ids.join(", "),
                before.join(", ")
            ));
            for card in &cards {
                let fits = card.input_modes.is_empty()
                    || before_cards.iter().all(|earlier| {
                        earlier.output_modes.is_empty()
                            || earlier
                                .output_modes
                                .iter()
                                .any(|mode| card.input_modes.contains(mode))
                    });
                if !fits {
                    rationale.push(format!(
                        "{} accepts {:?}, which not every earlier step produces",
                        card.name, card.input_modes
                    ));
                }
            }
        } else {
            rationale.push(format!(
                "{} stage ({}) starts, in parallel",
                stage.label(),
                ids.join(", ")
            ));
        }
        previous = Some((ids, cards));
    }
    for (card, _) in &eligible {
        considered
            .entry(card.name.clone())
            .or_insert_with(|| Considered {
                agent: card.name.clone(),
                selected: false,
                reason: "no goal term chose it".to_owned(),
            });
    }
    Ok(PlanDocument {
        goal: goal.to_owned(),
        steps,
        rationale,
        candidates: considered.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::CandidateSkill;
    use convergio_schemas::TrustLevel;

    fn card(name: &str, skill: &str, tags: &[&str]) -> CandidateCard {
        CandidateCard {
            name: name.to_owned(),
            skills: vec![CandidateSkill {
                id: skill.to_lowercase().replace(' ', "-"),
                name: skill.to_owned(),
                description: String::new(),
                tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            }],
            input_modes: vec!["text/plain".to_owned(), "application/json".to_owned()],
            output_modes: vec!["application/json".to_owned(), "text/plain".to_owned()],
            trust: TrustLevel::Internal,
            ..CandidateCard::default()
        }
    }

    /// The shipped review agents' cards, as the registry holds them.
    pub(crate) fn review_agents() -> Vec<CandidateCard> {
        vec![
            card(
                "code_analyzer",
                "Analyze code",
                &["code-review", "analysis", "metrics"],
            ),
            card(
                "security_expert",
                "Security review",
                &["code-review", "security", "static-analysis"],
            ),
            card(
                "style_checker",
                "Style review",
                &["code-review", "style", "lint"],
            ),
            card(
                "performance_expert",
                "Performance review",
                &["code-review", "performance", "static-analysis"],
            ),
            card(
                "review_aggregator",
                "Aggregate findings",
                &["code-review", "aggregation"],
            ),
            card(
                "report_generator",
                "Render report",
                &["code-review", "report", "markdown"],
            ),
            card("echo", "Echo", &["test"]),
        ]
    }

    #[test]
    fn plans_the_review_goal_over_the_review_agents() {
        let plan = plan(
            "review this code for security and style problems and write a report",
            &review_agents(),
            &["source_code".to_owned()],
            &Constraints::default(),
        )
        .expect("a plan");
        let agents: Vec<(&str, &[String])> = plan
            .steps
            .iter()
            .map(|step| (step.agent.as_str(), step.inputs.as_slice()))
            .collect();
        assert_eq!(agents.len(), 3, "{}", plan.readable());
        assert_eq!(agents[0].0, "security_expert");
        assert_eq!(agents[1].0, "style_checker");
        assert_eq!(agents[0].1, ["source_code".to_owned()]);
        assert_eq!(agents[2].0, "report_generator");
        assert_eq!(
            agents[2].1,
            [
                "security_expert.output".to_owned(),
                "style_checker.output".to_owned()
            ]
        );
        assert!(plan
            .candidates
            .iter()
            .any(|c| c.agent == "performance_expert" && !c.selected));
        assert!(!plan.rationale.is_empty());
    }

    #[test]
    fn max_steps_and_no_match() {
        let plan = plan(
            "review this code for security and style problems and write a report",
            &review_agents(),
            &[],
            &Constraints {
                max_steps: Some(2),
                ..Constraints::default()
            },
        )
        .expect("a plan");
        assert_eq!(plan.steps.len(), 2);
        let none = super::plan("bake bread", &review_agents(), &[], &Constraints::default());
        assert!(matches!(none, Err(PlannerError::NoMatch { .. })));
    }
}
