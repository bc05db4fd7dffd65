//! Property (issue #15): parsing and validating a graph document never
//! panics, whatever the caller sends. Two generators: graph-shaped
//! documents built from the DSL's own words (ids that clash or dangle,
//! cycles, sub-graphs, odd limits) and written as YAML, then cut and
//! spliced; and free "YAML-ish" token soup. Every outcome is a graph or
//! errors, and an error's line, when given, is a line of the text.

use convergio_orchestrator::{parse_yaml, validate, AnyAgent, Limits, StaticCatalog};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const IDS: [&str; 5] = ["a", "b", "c", "judge", "sub"];
const INPUTS: [&str; 6] = [
    "task",
    "a.output",
    "b.output.x",
    "zz.output",
    "a",
    "sub.output",
];

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::sample::select(items).prop_map(Value::from)
}

fn one_or_many(items: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        pick(items),
        prop::collection::vec(pick(items), 0..3).prop_map(Value::Array),
    ]
}

/// Any small JSON, for values in odd places.
fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(-1.5), Just(0.0), Just(1e300), Just(0.25)].prop_map(Value::from),
        "[a-z.]{0,6}".prop_map(Value::from),
    ]
}

fn maybe(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value);
    }
}

fn node() -> impl Strategy<Value = Value> {
    (
        pick(&IDS),
        pick(&["echo", "a", "missing", "external://x.example/agents/y"]),
        prop::option::of(pick(&["agent", "judge", "router", "subgraph", "weird"])),
        prop::option::of(prop::collection::vec(pick(&INPUTS), 0..3)),
        prop::option::of(pick(&["workers", "other"])),
        prop::option::of(pick(&["inner", "nowhere"])),
        prop::option::of(prop_oneof![
            pick(&["fail", "skip", "continue"]),
            Just(json!({"retry_policy": {"max_retries": 2}, "fallback": "b"})),
        ]),
    )
        .prop_map(|(id, agent, kind, inputs, group, subgraph, on_error)| {
            let mut node = Map::new();
            node.insert("id".into(), id);
            node.insert("agent".into(), agent);
            maybe(&mut node, "kind", kind);
            maybe(&mut node, "inputs", inputs.map(Value::Array));
            maybe(&mut node, "parallel_group", group);
            maybe(&mut node, "subgraph", subgraph);
            maybe(&mut node, "on_error", on_error);
            Value::Object(node)
        })
}

fn edge() -> impl Strategy<Value = Value> {
    (
        one_or_many(&IDS),
        one_or_many(&IDS),
        prop::option::of(prop_oneof![
            Just(json!("otherwise")),
            Just(json!({"path": "done", "equals": false})),
            Just(json!({"path": "a.b", "contains": "x"})),
            Just(json!({"exists": "x"})),
        ]),
        prop::option::of(odd_value()),
    )
        .prop_map(|(from, to, when, traversals)| {
            let mut edge = Map::new();
            edge.insert("from".into(), from);
            edge.insert("to".into(), to);
            maybe(&mut edge, "when", when);
            maybe(&mut edge, "max_traversals", traversals);
            Value::Object(edge)
        })
}

fn config() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(
            &[
                "max_iterations",
                "timeout_seconds",
                "total_timeout_seconds",
                "timeout_per_agent_seconds",
                "max_concurrent_agents",
                "max_tokens_per_run",
                "checkpoint_enabled",
                "execution",
            ][..],
        ),
        odd_value(),
        0..4,
    )
    .prop_map(|map| {
        Value::Object(
            map.into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    })
}

fn graph(depth: u32) -> BoxedStrategy<Value> {
    let subgraphs = if depth == 0 {
        Just(None).boxed()
    } else {
        prop::option::of(
            prop::collection::btree_map(
                prop::sample::select(&["inner", "other"][..]),
                graph(depth - 1),
                0..2,
            )
            .prop_map(|map| {
                Value::Object(
                    map.into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect(),
                )
            }),
        )
        .boxed()
    };
    (
        "[a-z_]{1,8}",
        prop::option::of(one_or_many(&IDS)),
        prop::collection::vec(node(), 0..6),
        prop::collection::vec(edge(), 0..6),
        prop::option::of(config()),
        subgraphs,
    )
        .prop_map(|(name, entry, nodes, edges, config, subgraphs)| {
            let mut graph = Map::new();
            graph.insert("name".into(), Value::from(name));
            maybe(&mut graph, "entry", entry);
            graph.insert("nodes".into(), Value::Array(nodes));
            graph.insert("edges".into(), Value::Array(edges));
            maybe(&mut graph, "config", config);
            maybe(&mut graph, "subgraphs", subgraphs);
            Value::Object(graph)
        })
        .boxed()
}

/// A generated graph as YAML, then possibly cut: a line dropped or
/// duplicated, or a token spliced in.
fn graph_text() -> impl Strategy<Value = String> {
    (
        graph(1),
        any::<prop::sample::Index>(),
        prop_oneof![
            Just(""),
            Just("drop"),
            Just("dup"),
            Just(": ["),
            Just("- "),
            Just("  "),
            Just("&x "),
            Just("*x"),
        ],
    )
        .prop_map(|(graph, index, edit)| {
            let text = serde_yaml::to_string(&graph).expect("JSON values serialise as YAML");
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.is_empty() {
                return text;
            }
            let at = index.index(lines.len());
            match edit {
                "" => {}
                "drop" => {
                    lines.remove(at);
                }
                "dup" => lines.insert(at, lines[at].clone()),
                token => lines[at].insert_str(0, token),
            }
            lines.join("\n")
        })
}

/// Free token soup over the DSL's words and YAML's punctuation.
fn yaml_ish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            &[
                "name: g",
                "nodes:",
                "edges:",
                "entry:",
                "subgraphs:",
                "config:",
                "\n",
                "\n  ",
                "\n    ",
                "- ",
                "id: a",
                "id: b",
                "agent: echo",
                "from: a",
                "to: b",
                "to: [a, b]",
                "inputs: [a.output]",
                "when: otherwise",
                "kind: subgraph",
                "subgraph: s",
                "max_iterations: 3",
                "[",
                "]",
                "{",
                "}",
                ",",
                ": ",
                "#",
                "'",
                "\"",
                "&a ",
                "*a",
                "!!str ",
                "~",
                "1e9",
                "-1",
                ".nan",
                "? ",
                "|",
                ">",
                "---",
                "...",
            ][..],
        ),
        0..60,
    )
    .prop_map(|tokens| tokens.concat())
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let line_count = text.lines().count().max(1);
    let errors = match parse_yaml(text) {
        Err(error) => error.validation_errors().to_vec(),
        Ok(spec) => {
            let small = Limits {
                max_nodes: 4,
                max_edges: 8,
                max_subgraph_depth: 1,
                ..Limits::default()
            };
            let mut errors = validate(&spec, &AnyAgent, &Limits::default())
                .err()
                .unwrap_or_default();
            errors.extend(
                validate(&spec, &StaticCatalog::new(["echo", "a"]), &small)
                    .err()
                    .unwrap_or_default(),
            );
            errors
        }
    };
    for error in errors {
        if let Some(line) = error.line {
            prop_assert!(
                (1..=line_count).contains(&line),
                "line {} of a {}-line text: {:?}",
                line,
                line_count,
                error
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn graph_shaped_documents_validate_or_fail_without_panicking(text in graph_text()) {
        check(&text)?;
    }

    #[test]
    fn yaml_ish_token_soup_fails_without_panicking(text in yaml_ish()) {
        check(&text)?;
    }
}
