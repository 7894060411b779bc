//! libmsa from Rust: encode documents, generate greedily with streaming, print what was retrieved, cancel
//! from a callback. usage: msa-example <checkpoint dir>
mod ffi;
mod msa;

use std::io::Write;
use std::process::ExitCode;

const DOCS: [&str; 4] = ["The capital of France is Paris.", "Mount Everest is 8849 metres tall.",
                         "Python was created by Guido van Rossum.", "Bananas are rich in potassium."];
const PROMPT: &str = "How tall is Mount Everest?";

fn run(dir: &str) -> Result<bool, msa::Error> {
    println!("libmsa {}", msa::version());
    let model = msa::Model::load(dir)?;
    let mut memory = msa::Memory::new(&model)?;
    let mut progress_calls = 0;
    memory.add_documents(&DOCS, |_done, _total| {
        progress_calls += 1;
        true
    })?;
    println!("documents: 4 added, progress calls: {}", progress_calls);

    let mut params = msa::GenerateParams::new()?;
    params.raw.top_k = 2;
    params.raw.max_new_tokens = 16;
    params.raw.temperature = 0.0;
    params.raw.seed = 7;
    params.raw.interleave = 0;
    print!("stream: ");
    let generation = memory.generate(PROMPT, &params, |piece| {
        let mut out = std::io::stdout();
        let _ = out.write_all(piece);
        let _ = out.flush();
        true
    })?;
    println!();
    let tokens: Vec<String> = generation.tokens().iter().map(|t| t.to_string()).collect();
    println!("tokens: {}", tokens.join(" "));
    println!("stop: {}", generation.stop_reason());
    for (layer, ids) in generation.retrieved() {
        for id in ids {
            println!("retrieved: layer {} [{}] {}", layer, id, DOCS[id as usize]);
        }
    }

    let mut pieces = 0;
    let stopped = memory.generate(PROMPT, &params, |_| {
        pieces += 1;
        false
    })?;
    println!("cancelled: {} after {} piece(s), {} token(s)", msa::status_name(stopped.status), pieces,
             stopped.tokens().len());
    Ok(stopped.cancelled)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 {
        eprintln!("usage: {} <checkpoint dir>", args[0]);
        return ExitCode::from(2);
    }
    if !msa::version_compatible() {
        eprintln!("libmsa {} cannot serve this program", msa::version());
        return ExitCode::FAILURE;
    }
    match run(&args[1]) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", e);
            ExitCode::FAILURE
        }
    }
}
