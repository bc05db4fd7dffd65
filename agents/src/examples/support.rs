//! The customer-support agents of `examples/graphs/dynamic_routing.yaml`
//! and `dynamic_routing_rules.yaml`: `intent_classifier` (the router) and
//! the three queues it routes to, `billing_specialist`, `tech_support` and
//! `generalist` (one [`SpecialistLogic`] per [`Queue`]).
//!
//! - `intent_classifier` reads the query (the text parts and every string
//!   inside the data parts) and answers one text part, the label `billing`,
//!   `technical` or `general`, which the graph's edges match with
//!   `when: {equals: <label>}`. A data field `category` naming a label wins;
//!   otherwise each label scores one per query word in its [`KEYWORDS`] list,
//!   the highest score wins (ties go to the earlier label) and a query with
//!   no keyword is `general`.
//! - A specialist triages a ticket for its queue; it takes no action and
//!   answers nothing it does not know. Output: one text part,
//!   `[<queue>] <the ticket's first line>` (at most 120 characters), the
//!   references found (words with a digit, such as `INV-1042`), and the
//!   queue's fixed next step. The ticket is a data field `text` when there
//!   is one, else the text parts.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::examples::shared::{all_strings, card, complete, message_text, objects_where, words};
use crate::logic::{text_part, AgentLogic};
use crate::tasks::TaskContext;
use crate::AgentsError;

/// A support queue, and the label the classifier gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Invoices, payments, refunds.
    Billing,
    /// Errors, crashes, access problems.
    Technical,
    /// Everything else.
    General,
}

/// The words that score a query for each queue (matched as whole,
/// lowercased words).
pub const KEYWORDS: [(Queue, &[&str]); 2] = [
    (
        Queue::Billing,
        &[
            "invoice",
            "invoices",
            "bill",
            "billed",
            "billing",
            "charge",
            "charged",
            "refund",
            "payment",
            "paid",
            "pay",
            "price",
            "pricing",
            "subscription",
            "receipt",
            "vat",
        ],
    ),
    (
        Queue::Technical,
        &[
            "error",
            "errors",
            "crash",
            "crashes",
            "crashed",
            "bug",
            "broken",
            "fails",
            "failed",
            "failure",
            "exception",
            "timeout",
            "login",
            "password",
            "install",
            "slow",
        ],
    ),
];

// === impl Queue ===

impl Queue {
    /// The label (`billing`, `technical`, `general`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Billing => "billing",
            Self::Technical => "technical",
            Self::General => "general",
        }
    }

    /// The queue's documented next step.
    fn next_step(self) -> &'static str {
        match self {
            Self::Billing => "a billing specialist checks the referenced invoices and payments and answers within one business day.",
            Self::Technical => "technical support reproduces the problem; reply with the exact error message and the steps that led to it.",
            Self::General => "the general desk answers in order of arrival; no specialist is needed.",
        }
    }

    fn from_label(label: &str) -> Option<Self> {
        [Self::Billing, Self::Technical, Self::General]
            .into_iter()
            .find(|queue| queue.label().eq_ignore_ascii_case(label.trim()))
    }
}

/// The queue for the query in `message`.
pub fn classify(message: &Value) -> Queue {
    let category = objects_where(message, |object| object.contains_key("category"))
        .into_iter()
        .filter_map(|object| object.get("category").and_then(Value::as_str))
        .find_map(Queue::from_label);
    if let Some(queue) = category {
        return queue;
    }
    let query: Vec<String> = all_strings(message).into_iter().flat_map(words).collect();
    let mut best = (Queue::General, 0);
    for (queue, keywords) in KEYWORDS {
        let score = query
            .iter()
            .filter(|word| keywords.contains(&word.as_str()))
            .count();
        if score > best.1 {
            best = (queue, score);
        }
    }
    best.0
}

/// A specialist's answer to the ticket in `message`.
pub fn triage(queue: Queue, message: &Value) -> String {
    let ticket = objects_where(message, |object| {
        object.get("text").is_some_and(Value::is_string)
    })
    .into_iter()
    .find_map(|object| object.get("text").and_then(Value::as_str))
    .map(str::to_owned)
    .unwrap_or_else(|| message_text(message));
    let first_line: String = ticket
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("(empty ticket)")
        .chars()
        .take(120)
        .collect();
    let mut references: Vec<&str> = Vec::new();
    for word in ticket.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '#');
        if word.chars().any(|c| c.is_ascii_digit()) && !references.contains(&word) {
            references.push(word);
        }
    }
    let references = if references.is_empty() {
        "none".to_owned()
    } else {
        references.join(", ")
    };
    format!(
        "[{}] {first_line}\nReferences: {references}\nNext step: {}",
        queue.label(),
        queue.next_step()
    )
}

/// The intent classifier (the graph's router).
#[derive(Debug, Default, Clone, Copy)]
pub struct IntentClassifierLogic;

/// A support queue's specialist.
#[derive(Debug, Clone, Copy)]
pub struct SpecialistLogic {
    /// The queue it works.
    pub queue: Queue,
}

/// The name of a queue's specialist agent.
pub fn specialist_name(queue: Queue) -> &'static str {
    match queue {
        Queue::Billing => "billing_specialist",
        Queue::Technical => "tech_support",
        Queue::General => "generalist",
    }
}

/// The intent classifier's card template.
pub fn classifier_card() -> Value {
    card(
        "intent_classifier",
        "Classifies a customer query as billing, technical or general by keywords (or its `category` field) and answers with the label alone, for routing.",
        json!({
            "id": "classify-intent",
            "name": "Classify intent",
            "description": "Returns one text part: `billing`, `technical` or `general`.",
            "tags": ["support", "routing", "classification"],
            "examples": ["I was charged twice for invoice INV-1042", "the app crashes on login"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["text/plain"]
        }),
    )
}

/// A specialist's card template.
pub fn specialist_card(queue: Queue) -> Value {
    let label = queue.label();
    card(
        specialist_name(queue),
        &format!("Triages a support ticket for the {label} queue: quotes it, lists the references it carries and states the queue's next step. Takes no action."),
        json!({
            "id": format!("triage-{label}"),
            "name": format!("Triage a {label} ticket"),
            "description": "Returns one text part: the queue and first line of the ticket, its references, and the next step.",
            "tags": ["support", "triage", label],
            "examples": ["I was charged twice for invoice INV-1042"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["text/plain"]
        }),
    )
}

#[async_trait]
impl AgentLogic for IntentClassifierLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let label = classify(&message).label();
        complete(&context, &message, "intent", vec![text_part(label)], 0)
    }
}

#[async_trait]
impl AgentLogic for SpecialistLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let answer = triage(self.queue, &message);
        complete(&context, &message, "triage", vec![text_part(answer)], 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(query: &str) -> Value {
        json!({"parts": [{"text": query}]})
    }

    #[test]
    fn classifies_by_keywords_and_category() {
        let check =
            |message: Value, expected: Queue| assert_eq!(classify(&message), expected, "{message}");
        check(
            text("I was charged twice for invoice INV-1042"),
            Queue::Billing,
        );
        check(
            text("The app crashes with an error on login"),
            Queue::Technical,
        );
        check(text("Do you have an office in Milan?"), Queue::General);
        // Whole words only: "payday" is no payment.
        check(text("payday greetings"), Queue::General);
        check(
            json!({"parts": [{"data": {"ticket": {"category": "billing", "text": "hi"}}}]}),
            Queue::Billing,
        );
        check(
            json!({"parts": [{"data": {"ticket": {"category": "other", "text": "an error occurred"}}}]}),
            Queue::Technical,
        );
    }

    #[test]
    fn a_specialist_quotes_the_ticket_and_its_references() {
        let answer = triage(
            Queue::Billing,
            &text("Charged twice for INV-1042 (order #77)\nplease help"),
        );
        assert_eq!(
            answer.lines().take(2).collect::<Vec<_>>(),
            [
                "[billing] Charged twice for INV-1042 (order #77)",
                "References: INV-1042, #77"
            ]
        );
        assert!(answer.contains("Next step: a billing specialist"));
        let from_data = triage(
            Queue::Technical,
            &json!({"parts": [{"data": {"ticket": {"text": "an error occurred"}}}]}),
        );
        assert!(
            from_data.starts_with("[technical] an error occurred\nReferences: none"),
            "{from_data}"
        );
    }
}
