//! Properties of the JCS (RFC 8785) canonical form that card signatures
//! cover (issue #15): it is a fixed point, reads back as the same JSON, sorts
//! keys by UTF-16 code units whatever order they came in, agrees with
//! serde_json's compact output where the two must agree (no floats), and
//! prints every finite double as ECMAScript does, exactly and shortest.

use convergio_auth::card_signature::canonical_json;
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// The largest integer a double holds exactly.
const MAX_EXACT: i64 = 1 << 53;

/// Keys that exercise UTF-16 ordering: ASCII, Latin-1, BMP above the
/// surrogates, astral characters (surrogate pairs), and anything else.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c1_]{0,3}",
        "[\u{80}-\u{ff}a]{1,2}",
        "[\u{e000}-\u{ffff}\u{10000}-\u{10ffff}a]{1,2}",
        any::<String>(),
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("JSON numbers are finite", |x| x.is_finite())
}

fn number(floats: bool) -> BoxedStrategy<Value> {
    let exact = (-MAX_EXACT..=MAX_EXACT).prop_map(Value::from);
    if floats {
        prop_oneof![
            exact,
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            finite_f64().prop_map(|x| Value::Number(Number::from_f64(x).expect("finite"))),
        ]
        .boxed()
    } else {
        exact.boxed()
    }
}

fn json(floats: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(floats),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Equal as JSON, numbers compared as the doubles JCS treats them as.
fn same_json(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => left.as_f64() == right.as_f64(),
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(l, r)| same_json(l, r))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .all(|(key, l)| right.get(key).is_some_and(|r| same_json(l, r)))
        }
        _ => left == right,
    }
}

/// Every object's keys, in document order, are in UTF-16 order.
fn keys_sorted(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(keys_sorted),
        Value::Object(map) => {
            let keys: Vec<Vec<u16>> = map.keys().map(|key| key.encode_utf16().collect()).collect();
            keys.windows(2).all(|pair| pair[0] < pair[1]) && map.values().all(keys_sorted)
        }
        _ => true,
    }
}

/// `value` with every object's keys inserted in UTF-16 order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(left, _), (right, _)| left.encode_utf16().cmp(right.encode_utf16()));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.clone(), sorted(value)))
                    .collect::<Map<String, Value>>(),
            )
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn canonical_form_is_a_fixed_point(value in json(true)) {
        let canonical = canonical_json(&value);
        let reparsed: Value = serde_json::from_str(&canonical).expect("canonical JSON parses");
        prop_assert_eq!(canonical_json(&reparsed), canonical);
    }

    #[test]
    fn canonical_form_reads_back_as_the_same_json_with_sorted_keys(value in json(true)) {
        let canonical = canonical_json(&value);
        // serde_json (preserve_order) keeps the document's key order.
        let reparsed: Value = serde_json::from_str(&canonical).expect("canonical JSON parses");
        prop_assert!(same_json(&reparsed, &value), "{} is not {}", canonical, value);
        prop_assert!(keys_sorted(&reparsed), "keys out of order in {}", canonical);
    }

    #[test]
    fn insertion_order_of_keys_does_not_matter(
        pairs in prop::collection::btree_map(key(), json(true), 0..8),
        rotation in 0usize..8,
    ) {
        let mut entries: Vec<(String, Value)> = pairs.into_iter().collect();
        let forward = Value::Object(entries.iter().cloned().collect());
        let len = entries.len().max(1);
        entries.rotate_left(rotation % len);
        entries.reverse();
        let shuffled = Value::Object(entries.into_iter().collect());
        prop_assert_eq!(canonical_json(&forward), canonical_json(&shuffled));
    }

    #[test]
    fn agrees_with_serde_json_when_there_are_no_floats(value in json(false)) {
        // Without floats, JCS is serde_json's compact form with sorted keys.
        let expected = serde_json::to_string(&sorted(&value)).expect("serialises");
        prop_assert_eq!(canonical_json(&value), expected);
    }

    #[test]
    fn numbers_print_as_ecmascript_does(x in finite_f64()) {
        let text = canonical_json(&Value::Number(Number::from_f64(x).expect("finite")));
        // Exact: the text reads back as the same double (-0 prints as 0).
        let back: f64 = text.parse().expect("a number");
        prop_assert!(back == x, "{} printed as {}", x, text);
        // Shortest: no more digits than Rust's shortest round-trip form.
        let digits = |s: &str| {
            let mantissa = s.split(['e', 'E']).next().unwrap_or_default();
            mantissa.chars().filter(char::is_ascii_digit).collect::<String>()
                .trim_start_matches('0').trim_end_matches('0').len()
        };
        prop_assert!(digits(&text) <= digits(&format!("{:e}", x)), "{} printed as {}", x, text);
        // ECMAScript's layout: plain digits from 1e-6 up to 1e21, else an
        // exponent with an explicit sign; never a leading '+' or zeros.
        let magnitude = x.abs();
        if x == 0.0 {
            prop_assert_eq!(text.as_str(), "0");
        } else if (1e-6..1e21).contains(&magnitude) {
            prop_assert!(!text.contains('e'), "{} printed as {}", x, text);
            if x.fract() == 0.0 {
                prop_assert!(!text.contains('.'), "{} printed as {}", x, text);
            }
        } else {
            prop_assert!(text.contains("e+") || text.contains("e-"), "{} printed as {}", x, text);
        }
        prop_assert!(!text.starts_with('+') && !text.starts_with("00") && !text.starts_with("-00"));
        if let Some((_, fraction)) = text.split('e').next().unwrap_or_default().split_once('.') {
            prop_assert!(!fraction.ends_with('0'), "{} printed as {}", x, text);
        }
    }
}
