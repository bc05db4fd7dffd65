//! Rebuilds `plugins/examples/keyword-guardrail.wasm` from its WAT source
//! (no wasm32 Rust target is needed): `cargo run -p convergio-plugins
//! --example build_example_guardrail`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let bytes = wat::parse_file(dir.join("keyword-guardrail.wat"))?;
    std::fs::write(dir.join("keyword-guardrail.wasm"), &bytes)?;
    println!("wrote {} bytes", bytes.len());
    Ok(())
}
