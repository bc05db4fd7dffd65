//! `convergio`: the one binary. `serve` runs the gateway with its registry
//! (and, unless told otherwise, the example agents); every other subcommand
//! is a client of a running server, reached at `--server`.
//!
//! This is the only crate that uses `anyhow`: errors from the library crates
//! are typed, and are turned into messages and a non-zero exit here.

/// Prints a line to stdout, ignoring a closed pipe (`convergio agents list | head`)
/// instead of panicking as `println!` does.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints a server document for scripts: with `--output yaml` as a YAML
/// document (`---` first, so a stream of them is one YAML stream), else as
/// JSON in `format` (`"{}"` one line, `"{:#}"` indented).
#[macro_export]
macro_rules! document {
    ($format:literal, $value:expr) => {{
        let value: &serde_json::Value = &$value;
        if $crate::yaml_output() {
            say!(
                "---\n{}",
                serde_yaml::to_string(value).unwrap_or_default().trim_end()
            );
        } else {
            say!($format, value);
        }
    }};
}

mod a2a_calls;
mod agents;
mod audit;
mod client;
mod config;
mod config_error;
mod data_dir;
mod env;
mod gateway_call;
mod graph;
mod graph_agents;
mod guardrails;
mod keys;
mod memory;
mod memory_config;
mod memory_wiring;
mod model_agents;
mod model_runtime;
mod model_serving;
mod models_config;
mod peers;
mod plan;
mod plugin_agents;
mod plugins;
mod policy;
mod probes;
mod reload;
mod retention;
mod secrets;
mod security_config;
mod serve;
mod telemetry;
mod telemetry_config;
mod upstream_config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The executor and the gateway allocate per request and per graph node;
// mimalloc roughly halves the orchestrator's CPU per run against glibc's
// allocator (see orchestrator/benches/graphs.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Convergio: the A2A gateway, agent registry and orchestrator.
#[derive(Debug, Parser)]
#[command(name = "convergio", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where client commands find the server and their credentials.
#[derive(Debug, Clone, clap::Args)]
struct ServerArgs {
    /// The Convergio server to talk to.
    #[arg(long, env = env::SERVER, default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    /// Administrator token; defaults to the one `convergio serve` stored in the data dir.
    #[arg(long, env = env::ADMIN_TOKEN, hide_env_values = true, global = true)]
    token: Option<String>,
    /// Data dir to read the stored admin token from.
    #[arg(long, env = env::DATA_DIR, default_value = "./.convergio", global = true)]
    data_dir: PathBuf,
    /// Print raw JSON instead of tables (the same as `--output json`).
    #[arg(long, global = true)]
    json: bool,
    /// `table`: tables and summaries; `json`: the server's documents as
    /// they are; `yaml`: the same documents as YAML.
    // Its own id: `graph input` has a positional named `output`.
    #[arg(long = "output", id = "output_format", value_enum,
          default_value_t = OutputFormat::Table, global = true)]
    output_format: OutputFormat,
}

/// How client commands print what the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// Tables and summaries for people.
    #[value(alias = "human")]
    Table,
    /// The server's JSON documents, unchanged, for scripts.
    Json,
    /// The server's documents as YAML.
    Yaml,
}

/// Whether `--output yaml` was given: set once, before the command runs.
static YAML_OUTPUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`document!`] prints YAML.
pub fn yaml_output() -> bool {
    YAML_OUTPUT.load(std::sync::atomic::Ordering::Relaxed)
}

// === impl ServerArgs ===

impl ServerArgs {
    /// The same arguments with `--output json` folded into `json`, the one
    /// flag the subcommands read.
    fn normalized(mut self) -> Self {
        self.json |= matches!(self.output_format, OutputFormat::Json | OutputFormat::Yaml);
        if self.output_format == OutputFormat::Yaml {
            YAML_OUTPUT.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self
    }
}

// Parsed once per process; boxing a variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (registry, A2A routing, example agents).
    Serve(serve::ServeArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Exit 0 when URL answers 2xx within two seconds (the container
    /// image's HEALTHCHECK: the runtime image has no curl).
    Probe {
        /// What to ask.
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Register, discover and manage agents on a running server.
    Agents {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: agents::AgentsCommand,
    },
    /// Issue, list and revoke API keys on a running server.
    Keys {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Add, list, show, approve and remove federation peers on a running server.
    Peers {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: peers::PeersCommand,
    },
    /// Validate and run graphs of agents on a running server; look runs up.
    Graph {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: graph::GraphCommand,
    },
    /// Make a plan for a goal over the agents you may use; print it, run it.
    Plan {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: plan::PlanArgs,
    },
    /// Show, run, approve or reject a stored plan.
    Plans {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: plan::PlansCommand,
    },
    /// Validate, test, apply and inspect Cedar policies.
    Policy {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Upload, list, show, remove and sign WebAssembly plugins.
    Plugins {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: plugins::PluginsCommand,
    },
    /// Set, list and delete this organisation's secrets (provider keys).
    Secrets {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: secrets::SecretsCommand,
    },
    /// Send a message to an agent through the gateway (A2A), and print
    /// the task or stream its events.
    Send {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: a2a_calls::SendArgs,
    },
    /// Post a design-document envelope (`/v1/envelope`) and print the answer.
    Envelope {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: a2a_calls::EnvelopeArgs,
    },
    /// Print the server's OpenAPI document (`/v1/openapi.json`).
    Openapi {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Get, list and cancel your A2A tasks at an agent through the gateway.
    Tasks {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: a2a_calls::TasksCommand,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages for convergio and every subcommand into DIR.
    Man {
        /// Where to write them (created if missing).
        dir: PathBuf,
    },
    /// Create, list and delete memory namespaces; write, read and search their items.
    Memory {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: memory::MemoryCommand,
    },
    /// List and verify the audit log.
    Audit {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file (with the current environment) and explain any error.
    Check {
        /// The YAML file.
        file: PathBuf,
    },
    /// Print the config file's JSON Schema (derived from its types; checked
    /// in at schemas/json/config.schema.json).
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Probe { url } => probe(&url).await,
        Command::Config(ConfigCommand::Schema) => {
            say!("{}", config::json_schema_text());
            Ok(())
        }
        Command::Agents { server, command } => agents::run(&server.normalized(), command).await,
        Command::Keys { server, command } => keys::run(&server.normalized(), command).await,
        Command::Peers { server, command } => peers::run(&server.normalized(), command).await,
        Command::Graph { server, command } => graph::run(&server.normalized(), command).await,
        Command::Plan { server, args } => plan::run(&server.normalized(), args).await,
        Command::Policy { server, command } => policy::run(&server.normalized(), command).await,
        Command::Audit { server, command } => audit::run(&server.normalized(), command).await,
        Command::Secrets { server, command } => secrets::run(&server.normalized(), command).await,
        Command::Plugins { server, command } => plugins::run(&server.normalized(), command).await,
        Command::Plans { server, command } => plan::plans(&server.normalized(), command).await,
        Command::Memory { server, command } => memory::run(&server.normalized(), command).await,
        Command::Envelope { server, args } => a2a_calls::envelope(&server.normalized(), args).await,
        Command::Openapi { server } => {
            let server = server.normalized();
            let client =
                client::Client::new(&server.server, server.token.clone(), &server.data_dir)?;
            let answer = client
                .send(reqwest::Method::GET, "/v1/openapi.json", None, None)
                .await?;
            document!("{:#}", answer.body);
            Ok(())
        }
        Command::Send { server, args } => a2a_calls::send(&server.normalized(), args).await,
        Command::Tasks { server, command } => a2a_calls::tasks(&server.normalized(), command).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "convergio", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => write_man_pages(&dir),
    }
}

/// One roff page per command and subcommand (`convergio-agents-list.1`).
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let command = <Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    say!("man pages written to {}", dir.display());
    Ok(())
}

async fn probe(url: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()?
        .get(url)
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let file = config::ConfigFile::read(path)?;
    let environment: std::collections::HashMap<String, String> = std::env::vars().collect();
    let config = config::Config::resolve(file, &environment, &config::Overrides::default())?;
    say!(
        "{}: valid (config version {})",
        path.display(),
        config::CONFIG_VERSION
    );
    say!("  listen        {}", config.listen);
    say!("  data_dir      {}", config.data_dir.display());
    say!("  database_url  {}", config.database_url);
    say!("  org_domain    {}", config.org_domain);
    say!("  examples      {}", config.examples);
    say!(
        "  federation    {} ({} configured peer(s))",
        if config.federation.enabled {
            config.federation.domain.as_str()
        } else {
            "off"
        },
        config.federation.peers.len()
    );
    let overridden: Vec<&str> = env::SERVER_KEYS
        .iter()
        .copied()
        .filter(|key| environment.get(*key).is_some_and(|value| !value.is_empty()))
        .collect();
    if !overridden.is_empty() {
        say!("  overridden by the environment: {}", overridden.join(", "));
    }
    Ok(())
}
