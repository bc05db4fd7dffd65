//! Parsing and validation: the §4.1 document verbatim, the builder producing
//! the same graph, and every error collected and located at its YAML line.

mod support;

use convergio_orchestrator::dsl::{GraphConfig, OneOrMany};
use convergio_orchestrator::{
    parse_yaml, validate, AnyAgent, Graph, Limits, OrchestratorError, StaticCatalog, ValidationCode,
};
use support::example;

const AGENTS: [&str; 6] = [
    "code_analyzer",
    "security_expert",
    "performance_expert",
    "style_checker",
    "review_aggregator",
    "report_generator",
];

#[test]
fn design_document_yaml_parses_and_validates_unchanged() {
    let spec = parse_yaml(&example("code_review_pipeline.yaml")).expect("parses");
    assert_eq!(spec.name, "code_review_pipeline");
    assert_eq!(spec.nodes.len(), 6);
    assert_eq!(
        spec.edges[0].to,
        OneOrMany::Many(vec![
            "security_reviewer".into(),
            "performance_reviewer".into(),
            "style_reviewer".into()
        ])
    );
    assert_eq!(
        spec.config,
        GraphConfig {
            max_iterations: Some(20),
            timeout_seconds: Some(300.0),
            checkpoint_enabled: true
        }
    );
    let graph = validate(&spec, &StaticCatalog::new(AGENTS), &Limits::default()).expect("valid");
    assert_eq!(graph.entries, vec![0]);
    assert_eq!(graph.sinks, vec![5]);
    assert_eq!(
        graph.edges.len(),
        7,
        "wait_for adds no duplicate of the explicit edges"
    );
    assert!(!graph.has_cycle());
}

#[test]
fn builder_produces_the_same_graph_as_the_yaml() {
    let spec = parse_yaml(&example("code_review_pipeline.yaml")).expect("parses");
    let catalog = StaticCatalog::new(AGENTS);
    let from_yaml = validate(&spec, &catalog, &Limits::default()).expect("valid yaml");
    let from_builder = Graph::new("code_review_pipeline")
        .description("Multi-stage code review with specialists")
        .add_node("analyzer", "code_analyzer")
        .with_inputs(["source_code"])
        .add_parallel(
            "reviewers",
            [
                ("security_reviewer", "security_expert"),
                ("performance_reviewer", "performance_expert"),
                ("style_reviewer", "style_checker"),
            ],
        )
        .with_inputs(["analyzer.output"])
        .add_node("aggregator", "review_aggregator")
        .with_inputs([
            "security_reviewer.output",
            "performance_reviewer.output",
            "style_reviewer.output",
        ])
        .wait_for("reviewers")
        .add_node("reporter", "report_generator")
        .with_inputs(["aggregator.output"])
        .connect("analyzer", "reviewers")
        .connect("reviewers", "aggregator")
        .connect("aggregator", "reporter")
        .config(GraphConfig {
            max_iterations: Some(20),
            timeout_seconds: Some(300.0),
            checkpoint_enabled: true,
        })
        .build(&catalog, &Limits::default());
    assert_eq!(from_builder.expect("valid builder graph"), from_yaml);
}

#[test]
fn section_4_2_builder_shape_builds_and_runs_groups_in_parallel() {
    let graph = Graph::new("code_review")
        .add_node("analyze", "code_analyzer")
        .add_parallel(
            "review",
            ["security_expert", "performance_expert", "style_checker"],
        )
        .add_node("aggregate", "review_aggregator")
        .add_node("report", "report_generator")
        .connect("analyze", "review")
        .connect("review", "aggregate")
        .connect("aggregate", "report")
        .build(&StaticCatalog::new(AGENTS), &Limits::default())
        .expect("valid");
    assert_eq!(graph.nodes.len(), 6);
    assert_eq!(graph.edges.len(), 7);
    assert_eq!(
        graph.nodes[4].inputs.len(),
        3,
        "the aggregator receives every reviewer's output"
    );
}

const BROKEN: &str = "name: broken
nodes:
  - id: a
    agent: known
    inputs: [source_code]
  - id: b
    agent: ghost
    inputs: [nowhere.output]
  - id: a
    agent: known
  - id: c
    agent: known
    wait_for: [nobody]
  - id: island
    agent: known
    inputs: [c.output, c.result]
edges:
  - from: a
    to: b
  - from: b
    to: missing
  - from: island
    to: island
";

#[test]
fn collects_every_error_with_its_yaml_line() {
    let spec = parse_yaml(BROKEN).expect("schema-valid");
    let errors =
        validate(&spec, &StaticCatalog::new(["known"]), &Limits::default()).expect_err("invalid");
    let found: Vec<(ValidationCode, Option<usize>)> = errors
        .iter()
        .map(|error| (error.code, error.line))
        .collect();
    let expect = [
        (ValidationCode::DuplicateId, Some(9)),
        (ValidationCode::UnknownAgent, Some(7)),
        (ValidationCode::UnknownInput, Some(8)),
        (ValidationCode::UnknownGroup, Some(13)),
        (ValidationCode::UnknownInput, Some(16)),
        (ValidationCode::MissingNode, Some(21)),
        (ValidationCode::Unreachable, Some(14)),
    ];
    for expected in expect {
        assert!(
            found.contains(&expected),
            "missing {expected:?} in {found:?}"
        );
    }
    for error in &errors {
        assert!(error.to_string().starts_with("line "), "{error}");
    }
}

#[test]
fn a_cycle_with_a_traversal_bound_or_max_iterations_is_accepted() {
    let looped = "name: l\nnodes:\n  - {id: a, agent: x}\n  - {id: b, agent: x}\nentry: [a]\nedges:\n  - {from: a, to: b}\n  - {from: b, to: a, max_traversals: 3}\n";
    let graph = validate(
        &parse_yaml(looped).expect("parses"),
        &AnyAgent,
        &Limits::default(),
    )
    .expect("bounded");
    assert!(graph.has_cycle());
    let capped = "name: l\nnodes:\n  - {id: a, agent: x}\n  - {id: b, agent: x}\nentry: [a]\nedges:\n  - {from: a, to: b}\n  - {from: b, to: a}\nconfig: {max_iterations: 4}\n";
    assert!(validate(
        &parse_yaml(capped).expect("parses"),
        &AnyAgent,
        &Limits::default()
    )
    .is_ok());
    let unbounded = capped.replace("config: {max_iterations: 4}\n", "");
    let errors = validate(
        &parse_yaml(&unbounded).expect("parses"),
        &AnyAgent,
        &Limits::default(),
    )
    .expect_err("unbounded");
    assert_eq!(errors[0].code, ValidationCode::UnboundedCycle);
}

#[test]
fn a_graph_over_the_size_limit_is_rejected_early() {
    let mut yaml = String::from("name: big\nnodes:\n");
    for index in 0..20 {
        yaml.push_str(&format!("  - {{id: n{index}, agent: x}}\n"));
    }
    let limits = Limits {
        max_nodes: 10,
        ..Limits::default()
    };
    let errors =
        validate(&parse_yaml(&yaml).expect("parses"), &AnyAgent, &limits).expect_err("too big");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, ValidationCode::TooLarge);
    assert_eq!(errors[0].line, Some(2));
}

#[test]
fn schema_violations_and_bad_yaml_are_typed_errors() {
    let bad_strategy = "name: g\nnodes:\n  - id: a\n    agent: x\n    on_error: explode\n";
    let error = parse_yaml(bad_strategy).expect_err("schema");
    assert!(matches!(error, OrchestratorError::Invalid { .. }));
    assert_eq!(error.kind(), convergio_schemas::ErrorKind::InvalidInput);
    assert!(error
        .validation_errors()
        .iter()
        .any(|e| e.pointer == "/nodes/0/on_error" && e.line == Some(5)));
    let error = parse_yaml("name: [unclosed").expect_err("yaml");
    assert_eq!(error.kind(), convergio_schemas::ErrorKind::MalformedBody);
    assert!(parse_yaml("").is_err());
    assert!(parse_yaml("- just\n- a list\n").is_err());
}

#[test]
fn every_example_graph_parses_and_validates() {
    let directory = format!("{}/../examples/graphs", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(directory).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let spec = parse_yaml(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        validate(&spec, &AnyAgent, &Limits::default())
            .unwrap_or_else(|errors| panic!("{}: {errors:?}", path.display()));
        count += 1;
    }
    assert!(count >= 7);
}

#[test]
fn every_truncation_and_mangling_of_a_document_gives_a_result_not_a_panic() {
    let text = example("debate.yaml");
    let catalog = AnyAgent;
    for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
        for candidate in [
            text[..end].to_owned(),
            text[..end].replace("  ", " "),
            text[end..].to_owned(),
        ] {
            if let Ok(spec) = parse_yaml(&candidate) {
                let _ = validate(&spec, &catalog, &Limits::default());
            }
        }
    }
}

#[test]
fn a_ten_thousand_node_chain_validates_without_deep_recursion() {
    let mut builder = Graph::new("long");
    for index in 0..10_000 {
        builder = builder.add_node(&format!("n{index}"), "step");
    }
    for index in 1..10_000 {
        builder = builder.connect(&format!("n{}", index - 1), &format!("n{index}"));
    }
    let graph = builder.build(&AnyAgent, &Limits::default()).expect("valid");
    assert_eq!(graph.entries, vec![0]);
    assert_eq!(graph.sinks, vec![9_999]);
    let too_many = Limits {
        max_nodes: 9_999,
        ..Limits::default()
    };
    assert_eq!(
        builder
            .build(&AnyAgent, &too_many)
            .expect_err("over the limit")[0]
            .code,
        ValidationCode::TooLarge
    );
}

#[test]
fn shared_state_references_and_updates_are_checked() {
    let yaml = "name: s\nstate:\n  notes: {reducer: append, initial: {}}\n  best: {}\nnodes:\n  - {id: state, agent: a}\n  - {id: b, agent: a, inputs: [state.missing, state.best], update_state: {nope: output, best: output.x}}\n";
    let spec = parse_yaml(yaml).expect("schema-valid");
    let errors = validate(&spec, &AnyAgent, &Limits::default()).expect_err("invalid");
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expect = [
        "node id `state` is reserved",
        "an append key's initial value must be a list",
        "state key `missing`, which `state:` does not declare",
        "updates state key `nope`, which `state:` does not declare",
    ];
    for expected in expect {
        assert!(
            messages.iter().any(|message| message.contains(expected)),
            "{expected} in {messages:?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{messages:?}");
    // The schema refuses a source other than the output.
    let bad = "name: s\nstate: {k: {}}\nnodes:\n  - {id: b, agent: a, update_state: {k: input}}\n";
    assert!(parse_yaml(bad).is_err());
    // The builder declares the same.
    let built = Graph::new("s")
        .state("notes", convergio_orchestrator::dsl::Reducer::Append)
        .add_node("b", "a")
        .update_state("notes", "output")
        .build(&AnyAgent, &Limits::default())
        .expect("valid");
    assert_eq!(built.nodes[0].update_state.len(), 1);
}

#[test]
fn only_a_node_that_calls_an_agent_may_stream() {
    let yaml = "name: s\nnodes:\n  - {id: a, agent: a, stream: true}\n  - {id: r, kind: router, rules: [{when: {path: x, equals: 1}, route: a}], default_route: a, stream: true}\nedges:\n  - {from: a, to: r}\n";
    let spec = parse_yaml(yaml).expect("schema-valid");
    let errors = validate(&spec, &AnyAgent, &Limits::default()).expect_err("invalid");
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("node `r` calls no agent, so it has nothing to stream"),
        "{messages:?}"
    );
    // The schema refuses a non-boolean; the builder declares the same.
    assert!(parse_yaml("name: s\nnodes:\n  - {id: a, agent: a, stream: yes please}\n").is_err());
    let built = Graph::new("s")
        .add_node("a", "a")
        .stream()
        .build(&AnyAgent, &Limits::default())
        .expect("valid");
    assert!(built.nodes[0].stream);
}
