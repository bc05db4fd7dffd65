//! The debate agents of `examples/graphs/debate.yaml`: `advocate` and
//! `critic` (one [`DebaterLogic`] per [`Side`]), the `arbiter` judge and the
//! `verdict_writer`.
//!
//! They run a debate's procedure; they do not invent arguments. The topic
//! is text: its first non-empty line that is not a point is the motion,
//! every line starting with `+` is a point for it and every line starting
//! with `-` a point against (other lines are ignored).
//!
//! - `advocate` and `critic` put their side's point for the round: the
//!   advocate's round is one past the latest ruling's in its input (1 with
//!   none), the critic answers the advocate's round. Output: one data part
//!   `{"side": "for"|"against", "round", "point" (null once the side has
//!   no point left), "motion"}`.
//! - `arbiter` rules on the arguments' round `r`: `continue` while either
//!   side still has a point to make, else `carried` (more points made for
//!   the motion), `defeated` (more against) or `tied`. Output: one data
//!   part `{"decision", "round", "motion", "points_for", "points_against",
//!   "leaning"}`; `leaning` is the ruling on the points made so far.
//! - `verdict_writer` writes the ruling up as one text part; a `continue`
//!   ruling (the graph's round limit ended the debate) is settled by its
//!   leaning, and the text says so.
//!
//! Arguments and rulings are found by shape (objects with `side`, objects
//! with `decision`) anywhere in the data parts, so the agents do not depend
//! on the graph's node ids.

use std::cmp::Ordering;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::examples::shared::{card, complete, message_text, objects_where};
use crate::logic::{data_part, text_part, AgentLogic};
use crate::tasks::TaskContext;
use crate::AgentsError;

/// The side a debater argues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// For the motion (`advocate`).
    For,
    /// Against the motion (`critic`).
    Against,
}

// === impl Side ===

impl Side {
    /// `for` or `against`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::For => "for",
            Self::Against => "against",
        }
    }
}

/// A debate topic: the motion and the points on each side.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Topic {
    /// What is debated.
    pub motion: String,
    /// Points for the motion, in order.
    pub points_for: Vec<String>,
    /// Points against the motion, in order.
    pub points_against: Vec<String>,
}

// === impl Topic ===

impl Topic {
    /// Reads a topic from text (see the module docs for the format).
    pub fn parse(text: &str) -> Self {
        let mut topic = Self::default();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(point) = line.strip_prefix('+') {
                topic.points_for.push(point.trim().to_owned());
            } else if let Some(point) = line.strip_prefix('-') {
                topic.points_against.push(point.trim().to_owned());
            } else if topic.motion.is_empty() {
                topic.motion = line.to_owned();
            }
        }
        topic
    }

    fn points(&self, side: Side) -> &[String] {
        match side {
            Side::For => &self.points_for,
            Side::Against => &self.points_against,
        }
    }
}

fn round_of(object: &Map<String, Value>) -> Option<u64> {
    object.get("round").and_then(Value::as_u64)
}

/// The latest round among the arguments of `side` in the message.
fn argument_round(message: &Value, side: Side) -> Option<u64> {
    objects_where(message, |object| {
        object.get("side").and_then(Value::as_str) == Some(side.as_str())
    })
    .into_iter()
    .filter_map(round_of)
    .max()
}

/// The argument a debater of `side` makes on `message`.
pub fn argue(side: Side, message: &Value) -> Value {
    let topic = Topic::parse(&message_text(message));
    let round = match side {
        Side::For => {
            objects_where(message, |object| object.contains_key("decision"))
                .into_iter()
                .filter_map(round_of)
                .max()
                .unwrap_or(0)
                + 1
        }
        Side::Against => argument_round(message, Side::For).unwrap_or(1),
    }
    .max(1);
    let point = usize::try_from(round - 1)
        .ok()
        .and_then(|index| topic.points(side).get(index));
    json!({"side": side.as_str(), "round": round, "point": point, "motion": topic.motion})
}

/// The arbiter's ruling on `message`.
pub fn rule(message: &Value) -> Value {
    let topic = Topic::parse(&message_text(message));
    let round = argument_round(message, Side::For)
        .into_iter()
        .chain(argument_round(message, Side::Against))
        .max()
        .unwrap_or(0);
    let made = |side: Side| (topic.points(side).len() as u64).min(round);
    let (points_for, points_against) = (made(Side::For), made(Side::Against));
    let leaning = match points_for.cmp(&points_against) {
        Ordering::Greater => "carried",
        Ordering::Less => "defeated",
        Ordering::Equal => "tied",
    };
    let most_points = topic.points_for.len().max(topic.points_against.len()) as u64;
    let decision = if round < most_points {
        "continue"
    } else {
        leaning
    };
    json!({
        "decision": decision,
        "round": round,
        "motion": topic.motion,
        "points_for": points_for,
        "points_against": points_against,
        "leaning": leaning,
    })
}

/// The verdict text for the ruling in `message`.
pub fn verdict(message: &Value) -> Result<String, AgentsError> {
    let ruling = objects_where(message, |object| object.contains_key("decision"))
        .into_iter()
        .next()
        .ok_or_else(|| AgentsError::Logic {
            reason: "no ruling found: send the arbiter's output (an object with `decision`)".into(),
        })?;
    let field = |name: &str| ruling.get(name).cloned().unwrap_or(Value::Null);
    let decision = field("decision");
    let at_limit = decision == "continue";
    let outcome = if at_limit { field("leaning") } else { decision };
    let mut text = format!(
        "Motion {} {}: {} point(s) for, {} against, after {} round(s).",
        field("motion"),
        outcome.as_str().unwrap_or("undecided"),
        field("points_for"),
        field("points_against"),
        field("round"),
    );
    if at_limit {
        text.push_str(" The debate reached its round limit with points still to make; this rules on the points made.");
    }
    for side in [Side::For, Side::Against] {
        let last_point = objects_where(message, |object| {
            object.get("side").and_then(Value::as_str) == Some(side.as_str())
        })
        .into_iter()
        .filter_map(|argument| argument.get("point").and_then(Value::as_str))
        .next_back();
        if let Some(point) = last_point {
            text.push_str(&format!("\nLast point {}: {point}", side.as_str()));
        }
    }
    Ok(text)
}

/// `advocate` (for) and `critic` (against).
#[derive(Debug, Clone, Copy)]
pub struct DebaterLogic {
    /// The side argued.
    pub side: Side,
}

/// The arbiter (the graph's judge).
#[derive(Debug, Default, Clone, Copy)]
pub struct ArbiterLogic;

/// The verdict writer.
#[derive(Debug, Default, Clone, Copy)]
pub struct VerdictWriterLogic;

/// The card template of a debater.
pub fn debater_card(side: Side) -> Value {
    let (name, id, stance) = match side {
        Side::For => ("advocate", "argue-for", "for"),
        Side::Against => ("critic", "argue-against", "against"),
    };
    card(
        name,
        &format!("Argues {stance} a debate's motion, one point per round, from the points given with the topic (lines starting with `+` for, `-` against). Deterministic: it makes no argument up."),
        json!({
            "id": id,
            "name": format!("Argue {stance}"),
            "description": format!("Returns {{\"side\":\"{stance}\",\"round\",\"point\",\"motion\"}} for the round after the latest ruling (advocate) or the advocate's round (critic)."),
            "tags": ["debate", "argument", stance],
            "examples": ["Tabs or spaces?\n+ spaces look the same everywhere\n- tabs let readers pick the width"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["application/json"]
        }),
    )
}

/// The arbiter's card template.
pub fn arbiter_card() -> Value {
    card(
        "arbiter",
        "Judges a debate round: asks for another round while a side has points to make, then rules the motion carried, defeated or tied by the points made.",
        json!({
            "id": "rule-on-round",
            "name": "Rule on a round",
            "description": "Returns {\"decision\": \"continue\"|\"carried\"|\"defeated\"|\"tied\", \"round\", \"motion\", \"points_for\", \"points_against\", \"leaning\"}.",
            "tags": ["debate", "judge", "evaluation"],
            "examples": ["the topic plus both sides' arguments for the round"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["application/json"]
        }),
    )
}

/// The verdict writer's card template.
pub fn verdict_writer_card() -> Value {
    card(
        "verdict_writer",
        "Writes a debate's final ruling up as a short text verdict with each side's last point.",
        json!({
            "id": "write-verdict",
            "name": "Write the verdict",
            "description": "Takes the arbiter's ruling (and the last arguments) and returns the verdict as text.",
            "tags": ["debate", "summary", "verdict"],
            "examples": ["{\"decision\": \"carried\", \"round\": 2, \"motion\": \"Tabs or spaces?\"}"],
            "inputModes": ["application/json"],
            "outputModes": ["text/plain"]
        }),
    )
}

#[async_trait]
impl AgentLogic for DebaterLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let argument = argue(self.side, &message);
        complete(&context, &message, "argument", vec![data_part(argument)], 0)
    }
}

#[async_trait]
impl AgentLogic for ArbiterLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let ruling = rule(&message);
        complete(&context, &message, "ruling", vec![data_part(ruling)], 0)
    }
}

#[async_trait]
impl AgentLogic for VerdictWriterLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let text = verdict(&message)?;
        complete(&context, &message, "verdict", vec![text_part(text)], 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str =
        "Tabs or spaces?\n+ spaces render the same everywhere\n+ every formatter emits spaces\n- tabs let readers pick the width";

    /// A message as the orchestrator builds it for several inputs: the
    /// structured ones in a data part, the topic in the text part.
    fn message(data: Value) -> Value {
        json!({"parts": [{"data": data}, {"text": TOPIC}]})
    }

    #[test]
    fn reads_the_motion_and_each_sides_points() {
        let topic = Topic::parse(TOPIC);
        assert_eq!(topic.motion, "Tabs or spaces?");
        assert_eq!(topic.points_for.len(), 2);
        assert_eq!(topic.points_against, ["tabs let readers pick the width"]);
    }

    #[test]
    fn the_advocate_opens_and_then_follows_the_latest_ruling() {
        let opening = argue(
            Side::For,
            &message(json!({"con.output": null, "judge.output": null})),
        );
        assert_eq!(opening["round"], 1);
        assert_eq!(opening["point"], "spaces render the same everywhere");
        let second = argue(
            Side::For,
            &message(json!({"judge.output": {"decision": "continue", "round": 1}})),
        );
        assert_eq!(second["round"], 2);
        assert_eq!(second["point"], "every formatter emits spaces");
    }

    #[test]
    fn the_critic_answers_the_advocates_round_and_runs_out_of_points() {
        let answer = argue(
            Side::Against,
            &message(json!({"pro.output": {"side": "for", "round": 2}})),
        );
        assert_eq!(answer["side"], "against");
        assert_eq!(answer["round"], 2);
        assert_eq!(answer["point"], Value::Null);
    }

    #[test]
    fn the_arbiter_continues_while_points_remain_then_rules() {
        let first = rule(&message(
            json!({"pro.output": {"side": "for", "round": 1}, "con.output": {"side": "against", "round": 1}}),
        ));
        assert_eq!(first["decision"], "continue");
        assert_eq!(first["leaning"], "tied");
        let second = rule(&message(
            json!({"pro.output": {"side": "for", "round": 2}, "con.output": {"side": "against", "round": 2}}),
        ));
        assert_eq!(second["decision"], "carried");
        assert_eq!(
            (
                second["points_for"].clone(),
                second["points_against"].clone()
            ),
            (json!(2), json!(1))
        );
    }

    #[test]
    fn the_verdict_settles_a_round_limit_by_the_leaning() {
        let ruling = json!({"judge.output": {"decision": "continue", "leaning": "defeated", "round": 3, "motion": "m", "points_for": 1, "points_against": 3},
            "con.output": {"side": "against", "round": 3, "point": "third"}});
        let text = verdict(&json!({"parts": [{"data": ruling}]})).expect("verdict");
        assert!(
            text.starts_with("Motion \"m\" defeated: 1 point(s) for, 3 against, after 3 round(s)."),
            "{text}"
        );
        assert!(
            text.contains("round limit") && text.contains("Last point against: third"),
            "{text}"
        );
        assert!(verdict(&json!({"parts": [{"text": "no ruling"}]})).is_err());
    }
}
