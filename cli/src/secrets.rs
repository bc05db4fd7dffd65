//! `convergio secrets set|list|delete`: an organisation's secrets (issue
//! 17) on a running server through its `/v1/secrets` API. `set` reads the
//! value from standard input and never prints it; it refuses a terminal, on
//! which the value would be echoed as it is typed (pipe it in, or redirect
//! a file).

use std::io::{IsTerminal as _, Read as _};

use anyhow::Context;
use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::ServerArgs;

/// The largest value `set` reads (the server's limit too).
const MAX_SECRET_BYTES: u64 = 16 * 1024;

/// Secret subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set (or replace) a secret; the value is read from stdin, never echoed.
    Set {
        /// The secret's name (`secret:NAME` in a declaration).
        name: String,
    },
    /// List this organisation's secrets (names and times, never values).
    List,
    /// Delete a secret.
    Delete {
        /// The secret's name.
        name: String,
    },
}

fn secret_path(name: &str) -> String {
    format!(
        "/v1/secrets/{}",
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

/// The value piped in: at most [`MAX_SECRET_BYTES`], one trailing line
/// break removed (what `echo` and most editors add).
fn read_value(mut input: impl std::io::Read) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    input
        .by_ref()
        .take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .context("reading the secret from stdin")?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_SECRET_BYTES,
        "the secret is longer than {MAX_SECRET_BYTES} bytes"
    );
    let mut value = String::from_utf8(bytes).context("the secret is not UTF-8 text")?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    anyhow::ensure!(!value.is_empty(), "the secret read from stdin is empty");
    Ok(value)
}

/// Runs a secrets subcommand.
pub async fn run(server: &ServerArgs, command: SecretsCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    match command {
        SecretsCommand::Set { name } => {
            let stdin = std::io::stdin();
            anyhow::ensure!(
                !stdin.is_terminal(),
                "refusing to read a secret from a terminal, which would echo it: \
                 pipe it in (`printf %s \"$KEY\" | convergio secrets set {name}`) \
                 or redirect a file (`convergio secrets set {name} < key.txt`)"
            );
            let value = read_value(stdin.lock())?;
            let request = client
                .request(Method::PUT, &secret_path(&name))
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(value);
            client
                .execute(request, &format!("PUT {}", secret_path(&name)))
                .await?;
            say!("set secret {name}");
        }
        SecretsCommand::List => {
            let answer = client.send(Method::GET, "/v1/secrets", None, None).await?;
            if server.json {
                document!("{}", answer.body);
                return Ok(());
            }
            say!("{:<32} UPDATED", "NAME");
            for secret in answer.body["secrets"].as_array().into_iter().flatten() {
                say!(
                    "{:<32} {}",
                    secret["name"].as_str().unwrap_or("-"),
                    secret["updated_at"].as_str().unwrap_or("-")
                );
            }
            if let Some(org) = answer.body.get("org").and_then(Value::as_str) {
                say!("(organisation {org})");
            }
        }
        SecretsCommand::Delete { name } => {
            client
                .send(Method::DELETE, &secret_path(&name), None, None)
                .await?;
            say!("deleted secret {name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_value_without_its_trailing_line_break() {
        assert_eq!(read_value(&b"sk-1\n"[..]).expect("reads"), "sk-1");
        assert_eq!(read_value(&b"sk-1\r\n"[..]).expect("reads"), "sk-1");
        assert_eq!(read_value(&b"a b\n\n"[..]).expect("reads"), "a b\n");
        assert!(read_value(&b"\n"[..]).is_err());
        assert!(read_value(&[0xff_u8][..]).is_err());
        let long = vec![b'a'; 16 * 1024 + 1];
        assert!(read_value(&long[..]).is_err());
    }
}
