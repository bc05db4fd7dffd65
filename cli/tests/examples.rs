//! First contact (issue #14): every graph shipped in `examples/graphs/`
//! validates against, and runs to a successful end on, the real
//! `convergio serve` with nothing but its own example agents. The directory
//! is read at test time, so a new example without an entry in [`RUNS`]
//! fails this test until someone says how to run it.

mod support;

use std::path::{Path, PathBuf};

use support::{cli, start, Server};

/// How to run one example: each entry is a run's `--input` pairs and
/// strings its printed result must contain.
type Runs = &'static [(
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
)];

const TOPIC: &str = "Tabs or spaces?\n+ spaces render the same everywhere\n+ every formatter emits spaces\n- tabs let readers pick the width";
const GOAL: &str = "Build the signup API. Launch a campaign for the beta\nHire a support lead";

/// The runs of every example graph, by file name.
const RUNS: &[(&str, Runs)] = &[
    (
        "code_review_pipeline.yaml",
        &[(
            &[("source_code", "import os\ndef run(cmd):\n    password = \"hunter2\"\n    os.system(cmd)\n")],
            &["# Code review report", "password"],
        )],
    ),
    (
        "debate.yaml",
        &[
            (
                &[("topic", TOPIC)],
                &["Motion \"Tabs or spaces?\" carried: 2 point(s) for, 1 against, after 2 round(s)."],
            ),
            // More points than the loop bound allows: the round limit ends it.
            (
                &[("topic", "Ship on Fridays?\n- a\n- b\n- c\n- d")],
                &["defeated", "round limit"],
            ),
        ],
    ),
    (
        "dynamic_routing.yaml",
        &[
            (
                &[("query", "I was charged twice for invoice INV-1042")],
                &["[billing] I was charged twice", "References: INV-1042"],
            ),
            (
                &[("query", "The app crashes with an error on login")],
                &["[technical] The app crashes"],
            ),
            (
                &[("query", "Do you have an office in Milan?")],
                &["[general] Do you have an office"],
            ),
        ],
    ),
    (
        // Text tickets meet the rules without a `path`; the orchestrator's
        // tests cover the field rules with object tickets.
        "dynamic_routing_rules.yaml",
        &[
            (
                &[("ticket", "Please resend invoice INV-7")],
                &["[billing] Please resend invoice INV-7"],
            ),
            (
                &[("ticket", "an error occurred at checkout")],
                &["[technical] an error occurred at checkout"],
            ),
            (
                &[("ticket", "Where is your office?")],
                &["[general] Where is your office?"],
            ),
        ],
    ),
    (
        "hierarchical.yaml",
        &[(
            &[("goal", GOAL)],
            // The two teams' shares; operations has no team in this graph.
            &["2 step(s), 10 point(s): engineering 5, marketing 5"],
        )],
    ),
    (
        "parallel_fanout.yaml",
        &[(
            &[("source_code", "import os\ndef run(cmd):\n    os.system(cmd)\n")],
            &["unique findings", "security/"],
        )],
    ),
    (
        "sequential.yaml",
        &[(
            &[("goal", GOAL)],
            &["3 step(s), 12 point(s): engineering 5, marketing 5, operations 2"],
        )],
    ),
    (
        "supervisor_worker.yaml",
        &[(
            &[("task", "password = \"hunter2\"\n")],
            &["unique findings", "password"],
        )],
    ),
];

fn example_graphs() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/graphs");
    let mut graphs: Vec<PathBuf> = std::fs::read_dir(&directory)
        .expect("examples/graphs is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml")
        })
        .collect();
    graphs.sort();
    graphs
}

fn graph(server: &Server, data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["graph"];
    full.extend_from_slice(args);
    cli(Some((server, data_dir)), &full)
}

#[test]
fn every_example_graph_validates_and_runs_on_the_shipped_agents() {
    let graphs = example_graphs();
    assert!(graphs.len() >= 8, "found only {graphs:?}");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    for path in &graphs {
        let file = path
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a UTF-8 file name");
        let runs = RUNS
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, runs)| *runs)
            .unwrap_or_else(|| {
                panic!("examples/graphs/{file} has no entry in RUNS: add its inputs and expected output")
            });
        let path = path.to_str().expect("a UTF-8 path");

        let (ok, stdout, stderr) = graph(&server, data_dir.path(), &["validate", path]);
        assert!(ok, "{file} does not validate: {stdout}{stderr}");
        assert!(stdout.contains("valid (graph "), "{file}: {stdout}");

        for (inputs, expected) in runs {
            let mut args = vec!["run".to_owned(), path.to_owned()];
            for (name, value) in *inputs {
                args.push("--input".to_owned());
                args.push(format!("{name}={value}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, stdout, stderr) = graph(&server, data_dir.path(), &args);
            assert!(
                ok,
                "{file} {inputs:?} failed\nstdout: {stdout}\nstderr: {stderr}"
            );
            assert!(
                stderr
                    .lines()
                    .any(|line| line.starts_with("run ") && line.ends_with(" succeeded")),
                "{file} {inputs:?}: {stderr}"
            );
            for text in *expected {
                assert!(
                    stdout.contains(text),
                    "{file} {inputs:?}: {text:?} not in the result\nstdout: {stdout}\nstderr: {stderr}"
                );
            }
        }
    }
    // Every table entry names a shipped file, so the table cannot rot.
    for (name, _) in RUNS {
        assert!(
            graphs.iter().any(|path| path.ends_with(name)),
            "RUNS names {name}, which examples/graphs/ no longer has"
        );
    }
}
