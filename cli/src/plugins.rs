//! `convergio plugins add|list|show|remove|sign`: stored WebAssembly
//! plugins (issue 21) on a running server through its `/v1/plugins` API.
//! `add` uploads a module as a new version of the named plugin (with a
//! signature file when given, and the capabilities it is granted, each
//! `--grant`, which the server checks against `plugins.allow_grants`); `sign` prints the detached JWS over a
//! module's SHA-256 made with an organisation key (the server's own is
//! `federation-key.pem` in its data dir), which `add --signature` sends.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::ServerArgs;

/// What a plugin is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Served as an A2A agent at `/agents/{name}`.
    Agent,
    /// A payload guardrail (`guardrails.rules[].check.plugin.name`).
    Guardrail,
}

/// Plugin subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Upload FILE.wasm as a new version of the plugin NAME.
    Add {
        /// The module (`.wasm`).
        file: PathBuf,
        /// The plugin's name.
        #[arg(long)]
        name: String,
        /// What it is for (fixed by its first version).
        #[arg(long, value_enum)]
        kind: Kind,
        /// A file holding the module's signature (`convergio plugins sign`).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// A capability this version is granted: `clock`, `random` or `env`
        /// (repeat for more; each must be in the server's
        /// `plugins.allow_grants`). Files and the network are never granted.
        #[arg(long = "grant", value_name = "CAPABILITY")]
        grants: Vec<String>,
    },
    /// List this organisation's plugins.
    List,
    /// Show one plugin and its versions.
    Show {
        /// The plugin's name.
        name: String,
    },
    /// Write one version's module to a file (checked against its SHA-256).
    Download {
        /// The plugin's name.
        name: String,
        /// The version (default: the newest).
        #[arg(long)]
        version: Option<i64>,
        /// Where to write the module.
        #[arg(long)]
        out: PathBuf,
    },
    /// Remove a plugin with every version.
    Remove {
        /// The plugin's name.
        name: String,
    },
    /// Print the signature of FILE.wasm by an organisation key (a PEM file;
    /// default: `federation-key.pem` in the data dir).
    Sign {
        /// The module (`.wasm`).
        file: PathBuf,
        /// The organisation's signing key (PKCS#8 PEM, Ed25519).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

fn plugin_path(name: &str) -> String {
    format!(
        "/v1/plugins/{}",
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

/// A version's grants as shown: `clock,random`, or `none`.
fn grants_of(version: &Value) -> String {
    let names: Vec<&str> = version["grants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Runs a plugins subcommand.
pub async fn run(server: &ServerArgs, command: PluginsCommand) -> anyhow::Result<()> {
    if let PluginsCommand::Sign { file, key } = &command {
        let key_file = key
            .clone()
            .unwrap_or_else(|| server.data_dir.join("federation-key.pem"));
        let pem = std::fs::read_to_string(&key_file)
            .with_context(|| format!("reading the key {}", key_file.display()))?;
        let key = convergio_auth::OrgSigningKey::from_pem(&pem)
            .with_context(|| format!("{} is not an organisation key", key_file.display()))?;
        let sha256 = convergio_auth::plugin_signature::module_sha256(&read(file)?);
        let signature = convergio_auth::plugin_signature::sign_module(&sha256, &key)
            .context("signing the module")?;
        say!("{signature}");
        return Ok(());
    }
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    match command {
        PluginsCommand::Add {
            file,
            name,
            kind,
            signature,
            grants,
        } => {
            let module = read(&file)?;
            let kind = match kind {
                Kind::Agent => "agent",
                Kind::Guardrail => "guardrail",
            };
            let mut path = format!("{}?kind={kind}", plugin_path(&name));
            if !grants.is_empty() {
                let grants: Vec<String> = grants
                    .iter()
                    .map(|grant| utf8_percent_encode(grant, NON_ALPHANUMERIC).to_string())
                    .collect();
                path.push_str(&format!("&grants={}", grants.join(",")));
            }
            let mut request = client
                .request(Method::POST, &path)
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(module);
            if let Some(signature) = signature {
                let text = std::fs::read_to_string(&signature)
                    .with_context(|| format!("reading {}", signature.display()))?;
                request = request.header("convergio-plugin-signature", text.trim());
            }
            let response = client.execute(request, &format!("POST {path}")).await?;
            let body: Value = response.json().await.context("reading the answer")?;
            if server.json {
                document!("{}", body);
            } else {
                let latest = body["versions"]
                    .as_array()
                    .and_then(|versions| versions.last())
                    .cloned()
                    .unwrap_or(Value::Null);
                say!(
                    "stored plugin {name} version {} ({kind}, org {}, sha256 {}{}, grants {})",
                    latest["version"],
                    body["org"].as_str().unwrap_or("-"),
                    latest["sha256"].as_str().unwrap_or("-"),
                    if latest["signed"] == Value::Bool(true) {
                        ", signed"
                    } else {
                        ""
                    },
                    grants_of(&latest)
                );
            }
        }
        PluginsCommand::List => {
            let answer = client.send(Method::GET, "/v1/plugins", None, None).await?;
            if server.json {
                document!("{}", answer.body);
                return Ok(());
            }
            say!(
                "{:<32} {:<10} {:>7} {:<17} SHA256",
                "NAME",
                "KIND",
                "LATEST",
                "GRANTS"
            );
            for plugin in answer.body["plugins"].as_array().into_iter().flatten() {
                let newest = plugin["versions"]
                    .as_array()
                    .and_then(|versions| versions.last())
                    .cloned()
                    .unwrap_or(Value::Null);
                say!(
                    "{:<32} {:<10} {:>7} {:<17} {}",
                    plugin["name"].as_str().unwrap_or("-"),
                    plugin["kind"].as_str().unwrap_or("-"),
                    plugin["latest"],
                    grants_of(&newest),
                    newest["sha256"].as_str().unwrap_or("-")
                );
            }
        }
        PluginsCommand::Show { name } => {
            let answer = client
                .send(Method::GET, &plugin_path(&name), None, None)
                .await?;
            if server.json {
                document!("{:#}", answer.body);
                return Ok(());
            }
            say!(
                "plugin {name} ({}, org {})",
                answer.body["kind"].as_str().unwrap_or("-"),
                answer.body["org"].as_str().unwrap_or("-")
            );
            for version in answer.body["versions"].as_array().into_iter().flatten() {
                say!(
                    "  v{:<4} {} {:>9} bytes  {}  grants {}  {} {}",
                    version["version"],
                    version["sha256"].as_str().unwrap_or("-"),
                    version["size"],
                    match version["signed_by"].as_str() {
                        Some(kid) => format!("signed by {kid}"),
                        None => "unsigned".to_owned(),
                    },
                    grants_of(version),
                    version["uploaded_by"].as_str().unwrap_or("-"),
                    version["uploaded_at"].as_str().unwrap_or("-")
                );
            }
        }
        PluginsCommand::Download { name, version, out } => {
            let shown = client
                .send(Method::GET, &plugin_path(&name), None, None)
                .await?;
            let versions = shown.body["versions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let wanted = versions
                .iter()
                .rev()
                .find(|known| version.is_none_or(|version| known["version"] == version))
                .with_context(|| match version {
                    Some(version) => format!("plugin {name} has no version {version}"),
                    None => format!("plugin {name} has no version"),
                })?;
            let number = wanted["version"].as_i64().unwrap_or_default();
            let path = format!("{}/versions/{number}", plugin_path(&name));
            let response = client
                .execute(client.request(Method::GET, &path), &format!("GET {path}"))
                .await?;
            let module = response.bytes().await.context("reading the module")?;
            let sha256 = convergio_auth::plugin_signature::module_sha256(&module);
            anyhow::ensure!(
                wanted["sha256"].as_str() == Some(sha256.as_str()),
                "the module downloaded does not match its SHA-256 {}",
                wanted["sha256"]
            );
            std::fs::write(&out, &module).with_context(|| format!("writing {}", out.display()))?;
            say!(
                "wrote plugin {name} version {number} ({} bytes, sha256 {sha256}) to {}",
                module.len(),
                out.display()
            );
        }
        PluginsCommand::Remove { name } => {
            client
                .send(Method::DELETE, &plugin_path(&name), None, None)
                .await?;
            say!("removed plugin {name}");
        }
        PluginsCommand::Sign { .. } => {}
    }
    Ok(())
}
