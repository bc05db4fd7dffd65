//! The guardrails written in Rust: [`PartSize`] (a bound per part),
//! [`MediaTypes`] (an allow-list of part media types) and [`Redact`]
//! (e-mail addresses, Luhn-checked payment card numbers and API-key-shaped
//! secrets in text, either redacted in place or denied).
//!
//! Each first scans without allocating and clones the payload only when it
//! has something to change, so a clean payload costs a scan.

use std::io::Write;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::guardrail::{for_each_part, for_each_part_mut, GuardFacts, Guardrail, Verdict};
use crate::PluginError;

/// Refuses a payload with a part larger than `max_bytes` (text in UTF-8
/// bytes, `raw` file bytes decoded size, `data` as serialized JSON).
#[derive(Debug, Clone)]
pub struct PartSize {
    name: String,
    max_bytes: usize,
}

// === impl PartSize ===

impl PartSize {
    /// A size limit named `name`.
    pub fn new(name: impl Into<String>, max_bytes: usize) -> Self {
        Self {
            name: name.into(),
            max_bytes,
        }
    }
}

/// Counts bytes written, to size a `data` part without building its text.
struct ByteCount(usize);

impl Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn part_size(part: &Map<String, Value>) -> usize {
    if let Some(text) = part.get("text").and_then(Value::as_str) {
        return text.len();
    }
    if let Some(raw) = part.get("raw").and_then(Value::as_str) {
        // base64: four characters carry three bytes.
        return raw.len() / 4 * 3;
    }
    if let Some(data) = part.get("data") {
        let mut count = ByteCount(0);
        // Writing to a counter cannot fail; a failure would only undercount.
        let _ = serde_json::to_writer(&mut count, data);
        return count.0;
    }
    0
}

impl Guardrail for PartSize {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, _facts: &GuardFacts<'_>, payload: &Value) -> Result<Verdict, PluginError> {
        let mut largest = 0;
        for_each_part(payload, &mut |part| largest = largest.max(part_size(part)));
        if largest > self.max_bytes {
            return Ok(Verdict::Deny {
                reason: "PART_TOO_LARGE".into(),
                message: format!(
                    "a part of {largest} bytes is over the limit of {} bytes",
                    self.max_bytes
                ),
            });
        }
        Ok(Verdict::Allow)
    }
}

/// Refuses a payload with a part whose media type is not allowed. A text
/// part without `mediaType` is `text/plain`, a data part `application/json`;
/// an entry `type/*` allows every subtype.
#[derive(Debug, Clone)]
pub struct MediaTypes {
    name: String,
    allow: Vec<String>,
}

// === impl MediaTypes ===

impl MediaTypes {
    /// An allow-list named `name` (entries compared case-insensitively).
    pub fn new(name: impl Into<String>, allow: Vec<String>) -> Self {
        Self {
            name: name.into(),
            allow: allow
                .into_iter()
                .map(|entry| entry.to_ascii_lowercase())
                .collect(),
        }
    }

    fn allows(&self, media_type: &str) -> bool {
        // Parameters (`; charset=utf-8`) do not change the type.
        let essence = media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        self.allow
            .iter()
            .any(|entry| match entry.strip_suffix("/*") {
                Some(top) => essence
                    .split_once('/')
                    .is_some_and(|(essence_top, _)| essence_top == top),
                None => *entry == essence,
            })
    }
}

fn media_type_of(part: &Map<String, Value>) -> &str {
    if let Some(media_type) = part.get("mediaType").and_then(Value::as_str) {
        return media_type;
    }
    if part.contains_key("text") {
        "text/plain"
    } else if part.contains_key("data") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

impl Guardrail for MediaTypes {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, _facts: &GuardFacts<'_>, payload: &Value) -> Result<Verdict, PluginError> {
        let mut refused: Option<String> = None;
        for_each_part(payload, &mut |part| {
            let media_type = media_type_of(part);
            if refused.is_none() && !self.allows(media_type) {
                refused = Some(convergio_schemas::echo(media_type).into_owned());
            }
        });
        Ok(match refused {
            Some(media_type) => Verdict::Deny {
                reason: "MEDIA_TYPE_NOT_ALLOWED".into(),
                message: format!("parts of type {media_type} are not allowed"),
            },
            None => Verdict::Allow,
        })
    }
}

/// What [`Redact`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// E-mail addresses.
    Email,
    /// Payment card numbers: 13 to 19 digits (spaces or dashes between
    /// them allowed) that pass the Luhn check.
    Card,
    /// API-key-shaped secrets: `sk-…`, AWS `AKIA…`, GitHub `ghp_…`, Slack
    /// `xox…-`, Google `AIza…` tokens.
    Secret,
}

// === impl Detector ===

impl Detector {
    fn reason(self) -> &'static str {
        match self {
            Self::Email => "EMAIL_ADDRESS",
            Self::Card => "CARD_NUMBER",
            Self::Secret => "SECRET",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Email => "[REDACTED:EMAIL]",
            Self::Card => "[REDACTED:CARD]",
            Self::Secret => "[REDACTED:SECRET]",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Self::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            Self::Card => r"\b\d(?:[ -]?\d){12,18}\b",
            Self::Secret => {
                r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{20,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36,}|\bxox[abposr]-[A-Za-z0-9-]{10,}|\bAIza[0-9A-Za-z_-]{35}"
            }
        }
    }
}

/// What [`Redact`] does with a finding.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RedactAction {
    /// Replace it with `[REDACTED:KIND]` and pass the payload on.
    #[default]
    Redact,
    /// Refuse the payload.
    Deny,
}

/// Finds e-mail addresses, card numbers and secrets in text parts (and in
/// the strings of data parts) and redacts them or refuses the payload.
#[derive(Debug, Clone)]
pub struct Redact {
    name: String,
    detectors: Vec<(Detector, Regex)>,
    action: RedactAction,
}

// === impl Redact ===

impl Redact {
    /// A redaction guardrail named `name` over `detect`.
    pub fn new(
        name: impl Into<String>,
        detect: &[Detector],
        action: RedactAction,
    ) -> Result<Self, PluginError> {
        let detectors = detect
            .iter()
            .map(|detector| {
                Regex::new(detector.pattern())
                    .map(|regex| (*detector, regex))
                    .map_err(|error| PluginError::Config {
                        detail: format!("detector {detector:?}: {error}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: name.into(),
            detectors,
            action,
        })
    }

    /// The first detector with a real finding in `text`.
    fn finds(&self, text: &str) -> Option<Detector> {
        self.detectors
            .iter()
            .find(|(detector, regex)| {
                regex
                    .find_iter(text)
                    .any(|found| is_finding(*detector, found.as_str()))
            })
            .map(|(detector, _)| *detector)
    }

    /// `text` with every finding replaced by its label.
    fn redacted(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (detector, regex) in &self.detectors {
            if !regex.is_match(&out) {
                continue;
            }
            out = regex
                .replace_all(&out, |captures: &regex::Captures<'_>| {
                    let found = &captures[0];
                    if is_finding(*detector, found) {
                        detector.label().to_owned()
                    } else {
                        found.to_owned()
                    }
                })
                .into_owned();
        }
        out
    }
}

/// Whether a regex match is a real finding: card numbers must pass Luhn.
fn is_finding(detector: Detector, found: &str) -> bool {
    match detector {
        Detector::Card => luhn_valid(found),
        Detector::Email | Detector::Secret => true,
    }
}

/// The Luhn check over the digits of `text` (other characters skipped).
pub fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, &digit)| {
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    sum % 10 == 0
}

/// Calls `visit` with every string a part carries as content: its `text`,
/// and every string inside its `data`.
fn for_each_text<'a>(part: &'a Map<String, Value>, visit: &mut dyn FnMut(&'a str)) {
    fn walk<'a>(value: &'a Value, visit: &mut dyn FnMut(&'a str)) {
        match value {
            Value::String(text) => visit(text),
            Value::Array(items) => items.iter().for_each(|item| walk(item, visit)),
            Value::Object(object) => object.values().for_each(|item| walk(item, visit)),
            _ => {}
        }
    }
    if let Some(Value::String(text)) = part.get("text") {
        visit(text);
    }
    if let Some(data) = part.get("data") {
        walk(data, visit);
    }
}

fn for_each_text_mut(part: &mut Map<String, Value>, visit: &mut dyn FnMut(&mut String)) {
    fn walk(value: &mut Value, visit: &mut dyn FnMut(&mut String)) {
        match value {
            Value::String(text) => visit(text),
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, visit)),
            Value::Object(object) => object.values_mut().for_each(|item| walk(item, visit)),
            _ => {}
        }
    }
    if let Some(Value::String(text)) = part.get_mut("text") {
        visit(text);
    }
    if let Some(data) = part.get_mut("data") {
        walk(data, visit);
    }
}

impl Guardrail for Redact {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, _facts: &GuardFacts<'_>, payload: &Value) -> Result<Verdict, PluginError> {
        let mut found: Option<Detector> = None;
        for_each_part(payload, &mut |part| {
            if found.is_none() {
                for_each_text(part, &mut |text| {
                    if found.is_none() {
                        found = self.finds(text);
                    }
                });
            }
        });
        let Some(detector) = found else {
            return Ok(Verdict::Allow);
        };
        match self.action {
            RedactAction::Deny => Ok(Verdict::Deny {
                reason: detector.reason().into(),
                message: format!(
                    "the payload carries {}",
                    match detector {
                        Detector::Email => "an e-mail address",
                        Detector::Card => "a payment card number",
                        Detector::Secret => "a secret",
                    }
                ),
            }),
            RedactAction::Redact => {
                let mut changed = payload.clone();
                for_each_part_mut(&mut changed, &mut |part| {
                    for_each_text_mut(part, &mut |text| {
                        if self.finds(text).is_some() {
                            *text = self.redacted(text);
                        }
                    });
                });
                Ok(Verdict::Modify(changed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::guardrail::Direction;

    fn facts() -> GuardFacts<'static> {
        GuardFacts {
            direction: Direction::Request,
            agent: "echo",
            skill: None,
            org: None,
            subject: "alice",
            switched_on: &[],
        }
    }

    fn message(text: &str) -> Value {
        json!({"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": text}]}})
    }

    #[test]
    fn luhn_accepts_test_cards_and_refuses_near_misses() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(luhn_valid("5555-5555-5555-4444"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(!luhn_valid("1234"));
    }

    #[test]
    fn redacts_emails_cards_and_secrets_but_not_other_numbers() -> Result<(), PluginError> {
        let redact = Redact::new(
            "pii",
            &[Detector::Email, Detector::Card, Detector::Secret],
            RedactAction::Redact,
        )?;
        let verdict = redact.check(
            &facts(),
            &message("mail bob@example.com, card 4111 1111 1111 1111, order 1234567890123, key sk-abcdefghijklmnopqrstuvwx"),
        )?;
        assert_eq!(
            verdict,
            Verdict::Modify(message(
                "mail [REDACTED:EMAIL], card [REDACTED:CARD], order 1234567890123, key [REDACTED:SECRET]"
            ))
        );
        assert_eq!(
            redact.check(&facts(), &message("nothing here 42"))?,
            Verdict::Allow
        );
        Ok(())
    }

    #[test]
    fn denies_a_card_number_when_told_to() -> Result<(), PluginError> {
        let redact = Redact::new("no-cards", &[Detector::Card], RedactAction::Deny)?;
        let Verdict::Deny { reason, .. } =
            redact.check(&facts(), &message("pay with 4111-1111-1111-1111"))?
        else {
            panic!("a card number must be denied");
        };
        assert_eq!(reason, "CARD_NUMBER");
        Ok(())
    }

    #[test]
    fn part_size_and_media_types_refuse_what_is_outside_their_bounds() -> Result<(), PluginError> {
        let size = PartSize::new("size", 10);
        assert_eq!(size.check(&facts(), &message("short"))?, Verdict::Allow);
        assert!(matches!(
            size.check(&facts(), &message("far longer than ten"))?,
            Verdict::Deny { .. }
        ));
        let media = MediaTypes::new("mime", vec!["text/*".into(), "application/json".into()]);
        assert_eq!(media.check(&facts(), &message("hi"))?, Verdict::Allow);
        let file = json!({"message": {"parts": [{"raw": "AAAA", "mediaType": "application/x-msdownload"}]}});
        assert!(matches!(
            media.check(&facts(), &file)?,
            Verdict::Deny { .. }
        ));
        Ok(())
    }
}
