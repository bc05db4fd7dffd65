//! Runs one example agent until Ctrl-C, for manual tests and SDK interop:
//! `cargo run -p convergio-agents --example serve -- echo [127.0.0.1:0]`.
//! Prints the base URL on the first line of stdout.

use std::str::FromStr;

use convergio_agents::{spawn, ExampleAgent, ServeOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "echo".to_owned());
    let address = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let agent = ExampleAgent::from_str(&name)?;
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let running = spawn(agent, listener, ServeOptions::default()).await?;
    println!("{}", running.base_url);
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}
