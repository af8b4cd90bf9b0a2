//! `ferrax`: compile and run JAX-style Python files from the command line.
//!
//! The only crate that prints or exits. User errors are miette diagnostics with exit status 1;
//! internal errors print an "internal error" banner and exit with status 3.

use clap::{Parser, Subcommand, ValueEnum};
use ferrax_compiler::aot::{self, NativeKind};
use ferrax_compiler::cache::Cache;
use ferrax_compiler::diagnostic::render;
use ferrax_compiler::pipeline::EMIT_STAGES;
use ferrax_compiler::session::{Error, LibraryEntry, RunArg, Session, Value, is_c_identifier};
use ferrax_compiler::syntax::span::SourceMap;
use ferrax_runtime::{read_npy, write_npy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferrax",
    version,
    about = "Ahead-of-time compiler for JAX-style array programs"
)]
struct Cli {
    /// Print the IR after every pass to stderr.
    #[arg(long, global = true)]
    print_ir_after_all: bool,
    /// Compile everything, ignoring the cache of compiled code (for eval, run and bench;
    /// the cache is in $FERRAX_CACHE_DIR, or ~/.cache/ferrax).
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate an expression in the file's namespace and print the result.
    Eval {
        file: PathBuf,
        expr: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Call a function of the file on arguments (literals or @path.npy).
    Run {
        file: PathBuf,
        function: String,
        args: Vec<String>,
        /// Write each array of the result as a .npy file in this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Time a function: compile once, warm up, then time repeated calls (like `%timeit`).
    Bench {
        file: PathBuf,
        function: String,
        args: Vec<String>,
        /// Untimed calls first.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Timed calls.
        #[arg(long, default_value_t = 100)]
        iterations: usize,
        /// Run op by op in an interpreter instead of compiled code (the "without jit"
        /// baseline).
        #[arg(long)]
        eager: bool,
    },
    /// Compile functions for a signature: print the IR at a stage, or emit native code, an
    /// object, or a library with its C header.
    Compile {
        file: PathBuf,
        /// Functions of the file; each is an entry of its name.
        functions: Vec<String>,
        /// Argument types of every entry, e.g. "x: f32[1000000], w: f32[3,3]".
        #[arg(long)]
        sig: String,
        /// A stage to print (fx, linalg, bufferized, llvm-mlir, llvm-ir; one function), or
        /// asm, obj, lib (a shared library) or staticlib (an archive); a library gets a C
        /// header beside it.
        #[arg(long, default_value = "fx")]
        emit: String,
        /// An entry given by an expression, NAME=EXPR, e.g.
        /// "dselu=jax.grad(lambda x: jnp.sum(selu(x)))".
        #[arg(long = "entry")]
        entries: Vec<String>,
        /// The CPU to generate code for (LLVM's names, e.g. skylake-avx512); default: this
        /// machine's.
        #[arg(long)]
        target_cpu: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// What went wrong, and how the process ends.
enum Failure {
    /// Diagnostics were printed: exit 1.
    User,
    /// A bad command line or file: printed here, exit 1.
    Usage(String),
    Internal(String),
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("internal error: the compiler panicked. This is a bug in Ferrax.\n{info}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Deeply nested programs recurse deeply in the compiler: give it a large stack.
    let worker = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || run(cli));
    let result = match worker.map(|handle| handle.join()) {
        Ok(Ok(result)) => result,
        _ => return ExitCode::from(3),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User) => ExitCode::from(1),
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Internal(message)) => {
            eprintln!("{message}");
            ExitCode::from(3)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let options = ferrax_compiler::pipeline::RunOptions {
        print_ir_after_all: cli.print_ir_after_all,
        ..Default::default()
    };
    // Printing the IR needs the passes to run: no cache then.
    let cache = if cli.no_cache || cli.print_ir_after_all {
        None
    } else {
        cache_folder().map(Cache::new)
    };
    match cli.command {
        Command::Eval { file, expr, format } => {
            let mut session = open(&file)?;
            session.options = options;
            session.cache = cache;
            let value = session
                .eval(&expr)
                .map_err(|e| report(&session.sources, e))?;
            print_value(&value, format);
        }
        Command::Run {
            file,
            function,
            args,
            out,
            format,
        } => {
            let mut session = open(&file)?;
            session.options = options;
            session.cache = cache;
            let run_args = run_arguments(args)?;
            let value = session
                .run(&function, run_args)
                .map_err(|e| report(&session.sources, e))?;
            match out {
                Some(dir) => write_outputs(&dir, &value)?,
                None => print_value(&value, format),
            }
        }
        Command::Bench {
            file,
            function,
            args,
            warmup,
            iterations,
            eager,
        } => {
            if iterations == 0 {
                return Err(Failure::Usage(String::from(
                    "--iterations must be at least 1",
                )));
            }
            let mut session = open(&file)?;
            session.options = options;
            session.cache = cache;
            session.eager = eager;
            let run_args = run_arguments(args)?;
            let bench = session
                .bench(&function, run_args, warmup, iterations)
                .map_err(|e| report(&session.sources, e))?;
            let mut calls = bench.calls.clone();
            calls.sort();
            let median = calls[calls.len() / 2];
            println!(
                "compile {}; {} calls: median {}, min {}, max {}",
                duration(bench.compile),
                calls.len(),
                duration(median),
                duration(calls[0]),
                duration(calls[calls.len() - 1])
            );
        }
        Command::Compile {
            file,
            functions,
            sig,
            emit,
            entries,
            target_cpu,
            output,
        } => {
            if NATIVE.contains(&emit.as_str()) {
                if let Some(cpu) = &target_cpu
                    && !aot::TARGET_CPUS.contains(&cpu.as_str())
                {
                    return Err(Failure::Usage(format!(
                        "unknown --target-cpu `{cpu}`; LLVM's 64-bit x86 CPUs are: {}",
                        aot::TARGET_CPUS.join(", ")
                    )));
                }
                let mut session = open(&file)?;
                session.options = options;
                let entries = library_entries(functions, entries)?;
                return compile_native(
                    &mut session,
                    &entries,
                    &sig,
                    &emit,
                    target_cpu.as_deref(),
                    output,
                );
            }
            if !EMIT_STAGES.contains(&emit.as_str()) {
                return Err(Failure::Usage(format!(
                    "unknown output `{emit}`; the stages are {}, and native outputs {}",
                    EMIT_STAGES.join(", "),
                    NATIVE.join(", ")
                )));
            }
            let [function] = functions.as_slice() else {
                return Err(Failure::Usage(String::from(
                    "printing a stage takes exactly one function",
                )));
            };
            if !entries.is_empty() || target_cpu.is_some() {
                return Err(Failure::Usage(String::from(
                    "--entry and --target-cpu are for native outputs (asm, obj, lib, staticlib)",
                )));
            }
            let mut session = open(&file)?;
            session.options = options;
            let text = session
                .compile(function, &sig, &emit, emit == "fx")
                .map_err(|e| report(&session.sources, e))?;
            match output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?,
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}

/// The cache's folder: `$FERRAX_CACHE_DIR`, or `$XDG_CACHE_HOME/ferrax`, or
/// `~/.cache/ferrax`; none when it cannot be created.
fn cache_folder() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let folder = env("FERRAX_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("ferrax")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("ferrax")))?;
    std::fs::create_dir_all(&folder).ok()?;
    Some(folder)
}

/// The native outputs of `compile --emit`.
const NATIVE: [&str; 4] = ["asm", "obj", "lib", "staticlib"];

/// The entries named by `FUNC` arguments and `--entry NAME=EXPR` options.
fn library_entries(
    functions: Vec<String>,
    expressions: Vec<String>,
) -> Result<Vec<LibraryEntry>, Failure> {
    let mut entries: Vec<LibraryEntry> = functions
        .into_iter()
        .map(|function| LibraryEntry {
            name: function.clone(),
            function,
            is_expression: false,
        })
        .collect();
    for text in expressions {
        let Some((name, expression)) = text.split_once('=') else {
            return Err(Failure::Usage(format!(
                "--entry `{text}` should be NAME=EXPRESSION"
            )));
        };
        entries.push(LibraryEntry {
            name: name.trim().to_string(),
            function: expression.trim().to_string(),
            is_expression: true,
        });
    }
    if entries.is_empty() {
        return Err(Failure::Usage(String::from(
            "name at least one function or --entry to compile",
        )));
    }
    for (index, entry) in entries.iter().enumerate() {
        if !is_c_identifier(&entry.name) {
            return Err(Failure::Usage(format!(
                "`{}` cannot name a C function",
                entry.name
            )));
        }
        if entries[..index].iter().any(|e| e.name == entry.name) {
            return Err(Failure::Usage(format!(
                "two entries are named `{}`",
                entry.name
            )));
        }
    }
    Ok(entries)
}

/// `compile --emit asm|obj|lib|staticlib`.
fn compile_native(
    session: &mut Session,
    entries: &[LibraryEntry],
    sig: &str,
    emit: &str,
    cpu: Option<&str>,
    output: Option<PathBuf>,
) -> Result<(), Failure> {
    let kind = if emit == "asm" {
        NativeKind::Assembly
    } else {
        NativeKind::Object
    };
    let (code, infos) = session
        .compile_native(entries, sig, cpu, kind)
        .map_err(|e| report(&session.sources, e))?;
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes)
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))
    };
    let Some(output) = output else {
        if emit == "asm" {
            print!("{}", String::from_utf8_lossy(&code));
            return Ok(());
        }
        return Err(Failure::Usage(format!("--emit {emit} needs -o FILE")));
    };
    if emit == "asm" || emit == "obj" {
        return write(&output, &code);
    }
    aot::write_library(&output, emit == "lib", &code, &infos)
        .map(|_| ())
        .map_err(Failure::Usage)
}

/// Literal arguments, or `@path.npy` files.
fn run_arguments(args: Vec<String>) -> Result<Vec<RunArg>, Failure> {
    let mut run_args = vec![];
    for arg in args {
        run_args.push(match arg.strip_prefix('@') {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| Failure::Usage(format!("cannot read {path}: {e}")))?;
                RunArg::Array(read_npy(&bytes).map_err(|e| Failure::Usage(format!("{path}: {e}")))?)
            }
            None => RunArg::Literal(arg),
        });
    }
    Ok(run_args)
}

/// `1.23 ms`, `456 µs`, `78 ns`.
fn duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos() as f64;
    if nanos >= 1e9 {
        format!("{:.3} s", nanos / 1e9)
    } else if nanos >= 1e6 {
        format!("{:.3} ms", nanos / 1e6)
    } else if nanos >= 1e3 {
        format!("{:.2} µs", nanos / 1e3)
    } else {
        format!("{nanos:.0} ns")
    }
}

fn open(path: &Path) -> Result<Session, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    let name = path.display().to_string();
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let offset = error.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
            let mut sources = SourceMap::default();
            let file = sources.add(&name, text);
            let diagnostic = ferrax_compiler::diagnostic::Diagnostic::new(
                "ferrax::syntax::encoding",
                ferrax_compiler::syntax::span::Span::new(file, offset, offset + 1),
                "the file is not valid UTF-8",
            )
            .label("invalid byte");
            return Err(report(&sources, Error::User(vec![diagnostic])));
        }
    };
    Session::new(&name, &text).map_err(|(sources, error)| report(&sources, error))
}

fn report(sources: &SourceMap, error: Error) -> Failure {
    match error {
        Error::User(diagnostics) => {
            eprint!("{}", render(&diagnostics, sources));
            Failure::User
        }
        Error::Internal(error) => Failure::Internal(error.to_string()),
    }
}

fn print_value(value: &Value, format: Format) {
    match format {
        Format::Text => println!("{}", value.repr()),
        Format::Json => println!("{}", value.to_json()),
    }
}

fn write_outputs(dir: &Path, value: &Value) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", dir.display())))?;
    let mut arrays = vec![];
    fn collect<'v>(value: &'v Value, arrays: &mut Vec<&'v ferrax_runtime::Array>) {
        match value {
            Value::Array { array, .. } => arrays.push(array),
            Value::Static(_) => {}
            Value::Tuple(items) | Value::List(items) => {
                items.iter().for_each(|v| collect(v, arrays))
            }
        }
    }
    collect(value, &mut arrays);
    for (i, array) in arrays.iter().enumerate() {
        let name = if arrays.len() == 1 {
            String::from("result.npy")
        } else {
            format!("result_{i}.npy")
        };
        let path = dir.join(name);
        std::fs::write(&path, write_npy(array))
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
        println!("{}", path.display());
    }
    Ok(())
}
