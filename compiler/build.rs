//! Builds the matmul kernels that JIT-compiled code calls (`src/kernels.rs`): the kernel of
//! `src/kernel_text.rs` for float32 and float64, sequential and threaded, lowered with
//! LLVM/MLIR 22's tools and optimised for x86-64-v4 (AVX-512) into one shared library,
//! `$OUT_DIR/libferrax_kernels.so`, which the compiler embeds. Compiling it once here saves
//! every module with a matrix product the 100-odd milliseconds LLVM takes over it.

#[path = "src/kernel_text.rs"]
#[allow(dead_code)]
mod kernel_text;

use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &str = "/usr/lib/llvm-22/bin";
const OPENMP: &str = "/usr/lib/llvm-22/lib";

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} ({e}); scripts/install-deps.sh installs LLVM/MLIR 22's tools",
            command.get_program()
        )
    });
    assert!(status.success(), "{command:?} failed");
}

fn tool(name: &str) -> Command {
    Command::new(Path::new(TOOLS).join(name))
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/kernel_text.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut objects = vec![];
    for threaded in [false, true] {
        let variant = if threaded { "threaded" } else { "sequential" };
        let (text, pipeline) = kernel_text::kernels_module(threaded);
        let source = out.join(format!("{variant}.mlir"));
        std::fs::write(&source, text).expect("OUT_DIR is writable");
        let lowered = out.join(format!("{variant}.llvm.mlir"));
        run(tool("mlir-opt")
            .arg(&source)
            .arg(format!("--pass-pipeline={pipeline}"))
            .arg("-o")
            .arg(&lowered));
        let ir = out.join(format!("{variant}.ll"));
        run(tool("mlir-translate")
            .arg("--mlir-to-llvmir")
            .arg(&lowered)
            .arg("-o")
            .arg(&ir));
        let optimised = out.join(format!("{variant}.bc"));
        run(tool("opt")
            .args([
                "-O2",
                "-mtriple=x86_64-unknown-linux-gnu",
                "-mcpu=x86-64-v4",
            ])
            .arg(&ir)
            .arg("-o")
            .arg(&optimised));
        let object = out.join(format!("{variant}.o"));
        run(tool("llc")
            .args([
                "-O2",
                "-mcpu=x86-64-v4",
                "-relocation-model=pic",
                "-filetype=obj",
            ])
            .arg(&optimised)
            .arg("-o")
            .arg(&object));
        objects.push(object);
    }
    run(Command::new("cc")
        .arg("-shared")
        .arg("-o")
        .arg(out.join("libferrax_kernels.so"))
        .args(&objects)
        .arg(format!("-L{OPENMP}"))
        .arg("-lomp")
        .arg(format!("-Wl,-rpath,{OPENMP}")));
}
