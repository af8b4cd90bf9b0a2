//! Calls SELU and its gradient, compiled by Ferrax into a shared library, from Rust through
//! `ferrax-runtime` (no compiler, no Python):
//!
//! ```text
//! ferrax compile examples/selu.py selu --sig "x: f32[?]" \
//!     --entry "dselu=jax.grad(lambda x: jnp.sum(selu(x)))" --emit lib -o build/libselu.so
//! cargo run -p ferrax-tests --bin ferrax-rust-example -- build/libselu.so
//! ```
//!
//! `ferrax-rust-example bench LIB ENTRY CALLS` times calls of an entry whose inputs are
//! zeros, through `Entry::call_into` (no allocation per call), and prints the time per call.

use ferrax_runtime::library::{Dim, Param};
use ferrax_runtime::{Array, DType, Library};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [command, library, entry, calls] if command == "bench" => bench(library, entry, calls),
        [library] => selu(library),
        _ => Err(String::from(
            "usage: ferrax-rust-example LIB | ferrax-rust-example bench LIB ENTRY CALLS",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn selu(path: &str) -> Result<(), String> {
    let library = Library::open(path).map_err(|e| e.to_string())?;
    let x = Array::from_f64(
        DType::F32,
        vec![8],
        &[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0],
    );
    for name in ["selu", "dselu"] {
        let entry = library.entry(name).map_err(|e| e.to_string())?;
        let outputs = entry.call(&[&x]).map_err(|e| e.to_string())?;
        let values: Vec<String> = (0..outputs[0].len())
            .map(|i| format!("{}", outputs[0].get(i) as f32))
            .collect();
        println!("{name}: {}", values.join(" "));
    }
    let matrix = Array::zeros(DType::F32, vec![2, 4]);
    let entry = library.entry("selu").map_err(|e| e.to_string())?;
    match entry.call(&[&matrix]) {
        Err(error) => println!("wrong shape: {error}"),
        Ok(_) => return Err(String::from("a wrong shape was accepted")),
    }
    Ok(())
}

fn bench(path: &str, name: &str, calls: &str) -> Result<(), String> {
    let calls: u32 = calls
        .parse()
        .map_err(|_| format!("`{calls}` is not a count"))?;
    let library = Library::open(path).map_err(|e| e.to_string())?;
    let entry = library.entry(name).map_err(|e| e.to_string())?;
    let zeros = |p: &Param| -> Result<Array, String> {
        let shape = p
            .shape
            .iter()
            .map(|d| match d {
                Dim::Static(size) => Ok(*size),
                Dim::Size(_) => Err(String::from("bench takes entries of static shapes")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Array::zeros(p.dtype, shape))
    };
    let inputs: Vec<Array> = entry
        .signature
        .inputs
        .iter()
        .map(zeros)
        .collect::<Result<_, _>>()?;
    let inputs: Vec<&Array> = inputs.iter().collect();
    let mut outputs: Vec<Array> = entry
        .signature
        .outputs
        .iter()
        .map(zeros)
        .collect::<Result<_, _>>()?;
    for _ in 0..calls.min(1000) {
        entry
            .call_into(&inputs, &mut outputs)
            .map_err(|e| e.to_string())?;
    }
    let start = std::time::Instant::now();
    for _ in 0..calls {
        entry
            .call_into(&inputs, &mut outputs)
            .map_err(|e| e.to_string())?;
    }
    let per_call = start.elapsed().as_nanos() as f64 / f64::from(calls.max(1));
    println!("{name}: {per_call:.1} ns per call ({calls} calls)");
    Ok(())
}
