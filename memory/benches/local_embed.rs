//! Local embedding throughput (issue 20): `cargo bench -p convergio-memory
//! --bench local_embed` loads all-MiniLM-L6-v2 from
//! `CONVERGIO_TEST_MINILM_DIR` (`scripts/minilm-model.sh`) and prints the
//! load time and sentences/s for short sentences (about 12 tokens) and for
//! document chunks (about 250 tokens, near the model's 256-token cut), on
//! every core the machine has (candle's CPU kernels use them all).
//! Figures only; correctness is `tests/local_embed.rs`'s.

use std::path::PathBuf;
use std::time::Instant;

use convergio_memory::local::LocalModel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORDS: [&str; 24] = [
    "agent",
    "memory",
    "vector",
    "search",
    "policy",
    "gateway",
    "graph",
    "node",
    "kitten",
    "sofa",
    "tax",
    "filing",
    "quarterly",
    "report",
    "engine",
    "retrieval",
    "couch",
    "resting",
    "organisation",
    "namespace",
    "document",
    "chunk",
    "model",
    "embedding",
];

/// `count` texts of `words` words each, varied so no two are the same.
fn texts(count: usize, words: usize) -> Vec<String> {
    (0..count)
        .map(|text| {
            (0..words)
                .map(|word| WORDS[(text * 7 + word * 13 + word * word) % WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn main() {
    let Some(directory) = std::env::var_os("CONVERGIO_TEST_MINILM_DIR") else {
        eprintln!(
            "CONVERGIO_TEST_MINILM_DIR is not set: run scripts/minilm-model.sh and export the \
             directory it prints"
        );
        std::process::exit(2);
    };
    let started = Instant::now();
    let model = LocalModel::load(&PathBuf::from(directory)).expect("the model loads");
    println!(
        "load: {:.2} s ({} dimensions, {} threads)",
        started.elapsed().as_secs_f64(),
        model.dimensions(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    // Warm up (first-touch of the weights, thread pools).
    model.embed_blocking(&texts(8, 10)).expect("embedded");
    for (label, count, words) in [
        ("short sentences (10 words)", 512, 10),
        ("chunks (200 words, ~250 tokens)", 64, 200),
    ] {
        let batch = texts(count, words);
        let started = Instant::now();
        let vectors = model.embed_blocking(&batch).expect("embedded");
        let elapsed = started.elapsed();
        assert_eq!(vectors.len(), count);
        println!(
            "{label}: {count} in {:.2} s, {:.1} sentences/s",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64()
        );
    }
    let single = texts(50, 10);
    let started = Instant::now();
    for text in &single {
        model
            .embed_blocking(std::slice::from_ref(text))
            .expect("embedded");
    }
    let elapsed = started.elapsed();
    println!(
        "one query at a time (10 words): {:.1} ms each",
        elapsed.as_secs_f64() * 1e3 / single.len() as f64
    );
}
