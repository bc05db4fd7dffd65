//! `convergio plan "goal"` (issue 19): asks a running server for a plan
//! (`POST /v1/plans`), prints it as a readable list and as the graph YAML
//! it would run, and with `--execute` runs it (`POST
//! /v1/plans/{id}:execute`, sync) and prints the result like `graph run`.
//! With `--review` the run waits for a person instead: the plan id and the
//! approve/reject routes are printed; with `--replan N` a failed step makes
//! the planner plan again from that point, at most N times (§9.2). The plan id goes to stderr, so stdout
//! stays the plan (or the result). `convergio plans show|execute|approve|
//! reject ID` work on a stored plan; `convergio plans list` lists yours.

use anyhow::Context;
use convergio_planner::PlanDocument;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::graph::{parse_inputs, print_result, table, text_of};
use crate::ServerArgs;

/// `convergio plan`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// What the plan should achieve.
    goal: String,
    /// Candidate agents (comma-separated or repeated); default: every agent
    /// the caller may discover and call (narrow with --tag/--skill/--org).
    #[arg(long, value_delimiter = ',')]
    agents: Vec<String>,
    /// Only candidates with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Only candidates with this skill.
    #[arg(long)]
    skill: Option<String>,
    /// Only candidates of this organisation.
    #[arg(long)]
    org: Option<String>,
    /// Most steps in the plan.
    #[arg(long)]
    max_steps: Option<u32>,
    /// `builtin` (default) or a planner agent's name.
    #[arg(long)]
    planner: Option<String>,
    /// A run input the first steps take (repeatable), e.g. `source_code`.
    #[arg(long = "first-input", value_name = "NAME")]
    first_inputs: Vec<String>,
    /// Run the plan once made (sync) and print the result.
    #[arg(long)]
    execute: bool,
    /// With --execute: wait for a person to approve, edit or reject the plan.
    #[arg(long)]
    review: bool,
    /// With --execute: when a step fails, ask the planner for a new plan
    /// from that point, at most N times (§9.2).
    #[arg(long, value_name = "N")]
    replan: Option<u32>,
    /// A run input, `NAME=VALUE` or `NAME=@path` (repeatable).
    #[arg(long = "input", value_name = "NAME=VALUE")]
    inputs: Vec<String>,
}

/// `convergio plans` subcommands: your plans, or a stored plan by id.
#[derive(Debug, clap::Subcommand)]
pub enum PlansCommand {
    /// List your plans, newest first (the latest version of each).
    List {
        /// Only plans in this status (proposed, awaiting_review, rejected, executed).
        #[arg(long)]
        status: Option<String>,
        /// Plans per page.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// The page after the one that printed this token.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Show a plan (yours only) and the graph it runs.
    Show {
        /// The plan id.
        id: String,
        /// An older version.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Run a plan (sync) and print the result; with --review wait for a person.
    Execute {
        /// The plan id.
        id: String,
        /// Wait for a person to approve, edit or reject it.
        #[arg(long)]
        review: bool,
        /// When a step fails, ask the planner for a new plan from that
        /// point, at most N times.
        #[arg(long, value_name = "N")]
        replan: Option<u32>,
        /// A run input, `NAME=VALUE` or `NAME=@path` (repeatable).
        #[arg(long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
    },
    /// Approve a plan awaiting review (optionally an edited plan document, JSON or YAML); it runs.
    Approve {
        /// The plan id.
        id: String,
        /// The edited plan document.
        #[arg(long)]
        plan: Option<std::path::PathBuf>,
    },
    /// Reject a plan awaiting review: it never runs.
    Reject {
        /// The plan id.
        id: String,
    },
}

/// Runs a `convergio plans` subcommand.
pub async fn plans(server: &ServerArgs, command: PlansCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    let path = |id: &str, action: &str| {
        format!(
            "/v1/plans/{}{action}",
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    let (method, path, body) = match &command {
        PlansCommand::List {
            status,
            page_size,
            page_token,
        } => {
            let mut query = format!("page_size={page_size}");
            for (name, value) in [("status", status), ("page_token", page_token)] {
                if let Some(value) = value {
                    query.push_str(&format!(
                        "&{name}={}",
                        percent_encoding::utf8_percent_encode(
                            value,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ));
                }
            }
            (Method::GET, format!("/v1/plans?{query}"), None)
        }
        PlansCommand::Show { id, version } => {
            let mut path = path(id, "");
            if let Some(version) = version {
                path.push_str(&format!("?version={version}"));
            }
            (Method::GET, path, None)
        }
        PlansCommand::Execute {
            id,
            review,
            replan,
            inputs,
        } => {
            let input = parse_inputs(inputs)?;
            let body = execute_body(input, *review, *replan);
            (Method::POST, path(id, ":execute"), Some(body))
        }
        PlansCommand::Approve { id, plan } => {
            let body = match plan {
                Some(file) => json!({"plan": crate::model_agents::read_declaration(file)?}),
                None => json!({}),
            };
            (Method::POST, path(id, ":approve"), Some(body))
        }
        PlansCommand::Reject { id } => (Method::POST, path(id, ":reject"), Some(json!({}))),
    };
    let answer = client.send(method, &path, body.as_ref(), None).await?.body;
    match command {
        PlansCommand::List { .. } => {
            if server.json {
                document!("{:#}", answer);
            } else {
                say!("{}", plans_table(&answer).trim_end());
            }
            Ok(())
        }
        PlansCommand::Show { .. } | PlansCommand::Reject { .. } => {
            if server.json {
                document!("{:#}", answer);
                return Ok(());
            }
            say!(
                "plan {} version {}: {}",
                answer["plan_id"].as_str().unwrap_or_default(),
                answer["version"],
                answer["status"].as_str().unwrap_or_default()
            );
            if let Ok(document) = serde_json::from_value::<PlanDocument>(answer["document"].clone())
            {
                say!("{}", document.readable());
            }
            Ok(())
        }
        PlansCommand::Execute {
            review: true, id, ..
        } => {
            eprintln!("plan {id} awaits review: convergio plans approve|reject {id}");
            if server.json {
                document!("{:#}", answer);
            }
            Ok(())
        }
        PlansCommand::Execute { .. } | PlansCommand::Approve { .. } => {
            eprintln!("run {}", answer["run_id"].as_str().unwrap_or_default());
            print_result(&answer, server.json)
        }
    }
}

/// `GET /v1/plans` as a table, with the next page's command when there is one.
fn plans_table(list: &Value) -> String {
    let plans = list["plans"].as_array().cloned().unwrap_or_default();
    if plans.is_empty() {
        return "no plans\n".to_owned();
    }
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|plan| {
            vec![
                text_of(&plan["plan_id"]),
                text_of(&plan["version"]),
                text_of(&plan["status"]),
                text_of(&plan["stored_at"]),
                text_of(&plan["document"]["goal"]),
            ]
        })
        .collect();
    let mut text = table(
        &["PLAN", "VERSION", "STATUS", "STORED", "GOAL"],
        &rows,
        &[1],
    );
    if let Some(token) = list["next_page_token"].as_str() {
        text.push_str(&format!(
            "more: convergio plans list --page-token {token}\n"
        ));
    }
    text
}

/// Makes (and optionally runs) a plan.
pub async fn run(server: &ServerArgs, args: PlanArgs) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    let mut filter = Map::new();
    for (key, value) in [
        ("tag", &args.tag),
        ("skill", &args.skill),
        ("org", &args.org),
    ] {
        if let Some(value) = value {
            filter.insert(key.to_owned(), Value::String(value.clone()));
        }
    }
    let mut request = json!({"goal": args.goal, "constraints": {}});
    if !args.agents.is_empty() {
        request["agents"] = json!(args.agents);
    }
    if !filter.is_empty() {
        request["filter"] = Value::Object(filter);
    }
    if let Some(max_steps) = args.max_steps {
        request["constraints"]["max_steps"] = json!(max_steps);
    }
    if let Some(planner) = &args.planner {
        request["planner"] = json!(planner);
    }
    if !args.first_inputs.is_empty() {
        request["inputs"] = json!(args.first_inputs);
    }
    let stored = client
        .send(Method::POST, "/v1/plans", Some(&request), None)
        .await?
        .body;
    let plan_id = stored["plan_id"].as_str().unwrap_or_default().to_owned();
    eprintln!("plan {plan_id} (version {})", stored["version"]);
    if server.json {
        document!("{:#}", stored);
    } else {
        let document: PlanDocument = serde_json::from_value(stored["document"].clone())
            .context("the server's plan document does not decode")?;
        say!("{}", document.readable());
        say!("Graph:");
        say!("{}", stored["graph_yaml"].as_str().unwrap_or_default());
    }
    if !args.execute {
        return Ok(());
    }
    let input = parse_inputs(&args.inputs)?;
    let execute = execute_body(input, args.review, args.replan);
    let answer = client
        .send(
            Method::POST,
            &format!("/v1/plans/{plan_id}:execute"),
            Some(&execute),
            None,
        )
        .await?
        .body;
    if args.review {
        eprintln!(
            "plan {plan_id} awaits review: POST /v1/plans/{plan_id}:approve (optionally with an edited {{\"plan\": …}}) or :reject"
        );
        if server.json {
            document!("{:#}", answer);
        }
        return Ok(());
    }
    eprintln!("run {}", answer["run_id"].as_str().unwrap_or_default());
    print_result(&answer, server.json)
}

/// The body of `POST /v1/plans/{id}:execute` (sync).
fn execute_body(input: Value, review: bool, replan: Option<u32>) -> Value {
    let mut body = json!({"mode": "sync", "input": input, "review": review});
    if let Some(max_replans) = replan {
        body["replan"] = json!({"max_replans": max_replans});
    }
    body
}
