//! One compilation: the module's source, what to trace, and the stages to run. This is the
//! API the CLI and the tests use (`eval`, `run`, `compile`).

use crate::aot::{self, EntryInfo, NativeKind, Param};
use crate::backend;
use crate::cache::{Cache, Cached};
use crate::diagnostic::Diagnostic;
use crate::eager;
use crate::passes;
use crate::pipeline::{self, InternalError, RunOptions};
use crate::specialise::{
    self, ArrayType, Callee, DType, Entry, EntryArg, EntryArgKind, Output, StaticValue,
};
use crate::syntax::ast::{self, ExprKind, UnaryOp};
use crate::syntax::parser::{parse_expression, parse_module};
use crate::syntax::span::{FileId, SourceMap, Span};
use ferrax_runtime::Array;
use melior::ir::operation::{OperationLike, OperationPrintingFlags};

/// Why a compilation failed.
#[derive(Debug)]
pub enum Error {
    /// Errors in the user's program (render them against `Session::sources`).
    User(Vec<Diagnostic>),
    Internal(InternalError),
}

impl From<Diagnostic> for Error {
    fn from(diagnostic: Diagnostic) -> Self {
        Error::User(vec![diagnostic])
    }
}

impl From<InternalError> for Error {
    fn from(error: InternalError) -> Self {
        Error::Internal(error)
    }
}

/// A computed result: arrays, static Python values, and tuples or lists of them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Array { array: Array, weak: bool },
    Static(StaticValue),
    Tuple(Vec<Value>),
    List(Vec<Value>),
}

impl Value {
    /// The result as JAX prints it: `Array([1., 2.], dtype=float32)`, tuples as Python's.
    pub fn repr(&self) -> String {
        match self {
            Value::Array { array, weak } => ferrax_runtime::repr(array, *weak),
            Value::Static(s) => match s {
                StaticValue::None => String::from("None"),
                StaticValue::Bool(b) => String::from(if *b { "True" } else { "False" }),
                StaticValue::Int(i) => i.to_string(),
                StaticValue::Float(f) if f.is_nan() => String::from("nan"),
                StaticValue::Float(f) if f.is_infinite() => {
                    String::from(if *f > 0.0 { "inf" } else { "-inf" })
                }
                StaticValue::Float(f) => format!("{f:?}"),
                StaticValue::Str(s) => {
                    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
                }
            },
            Value::Tuple(items) if items.len() == 1 => format!("({},)", items[0].repr()),
            Value::Tuple(items) => format!(
                "({})",
                items.iter().map(Value::repr).collect::<Vec<_>>().join(", ")
            ),
            Value::List(items) => format!(
                "[{}]",
                items.iter().map(Value::repr).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The result in the conformance JSON form (shared/conformance/README.md).
    pub fn to_json(&self) -> String {
        match self {
            Value::Array { array, .. } => ferrax_runtime::json(array),
            Value::Static(s) => match s {
                StaticValue::None => String::from("null"),
                StaticValue::Bool(b) => b.to_string(),
                StaticValue::Int(i) => i.to_string(),
                StaticValue::Float(f) => ferrax_runtime::json_float(*f),
                StaticValue::Str(s) => format!("{s:?}"),
            },
            Value::Tuple(items) | Value::List(items) => {
                format!(
                    "[{}]",
                    items
                        .iter()
                        .map(Value::to_json)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    }
}

/// Timings of `Session::bench`.
pub struct Bench {
    /// Tracing, the pass pipeline and the JIT's compilation.
    pub compile: std::time::Duration,
    /// Each timed call.
    pub calls: Vec<std::time::Duration>,
}

/// An internal error of `stage` that has a message but no IR to show.
fn stage_error(stage: &'static str, message: String) -> Error {
    Error::Internal(InternalError {
        stage,
        messages: vec![message],
        ir: String::new(),
    })
}

fn eager_error(message: String) -> Error {
    stage_error("eager", message)
}

fn jit_error(message: String) -> Error {
    stage_error("jit", message)
}

/// An argument of `run`: a literal (its text) or an array.
pub enum RunArg {
    Literal(String),
    Array(Array),
}

/// A parsed module and the sources diagnostics point into.
pub struct Session {
    pub sources: SourceMap,
    /// Where compiled functions are kept between runs (`eval`, `run`, `bench`); none in tests.
    pub cache: Option<Cache>,
    /// Run op by op in the `eager` interpreter instead of compiling (`bench --eager`).
    pub eager: bool,
    module: ast::Module,
    prelude: ast::Module,
    pub options: RunOptions,
}

impl Session {
    /// Parses the module `text`, reported as `name`.
    pub fn new(name: &str, text: &str) -> Result<Session, (SourceMap, Error)> {
        let mut sources = SourceMap::default();
        let file = sources.add(name, text);
        let (module, errors) = parse_module(file, text);
        if !errors.is_empty() {
            return Err((sources, Error::User(errors)));
        }
        let prelude_file = sources.add("<ferrax prelude>", specialise::PRELUDE);
        let (prelude, errors) = parse_module(prelude_file, specialise::PRELUDE);
        if !errors.is_empty() {
            return Err((sources, Error::User(errors)));
        }
        Ok(Session {
            sources,
            cache: None,
            eager: false,
            module,
            prelude,
            options: RunOptions::default(),
        })
    }

    fn parse_extra(&mut self, name: &str, text: &str) -> Result<ast::Expr, Error> {
        let file = self.sources.add(name, text);
        let (expr, errors) = parse_expression(file, text);
        match expr {
            Some(expr) if errors.is_empty() => Ok(expr),
            _ => Err(Error::User(errors)),
        }
    }

    /// Evaluates an expression in the module's namespace, compiling and running its array work.
    pub fn eval(&mut self, expression: &str) -> Result<Value, Error> {
        let expr = self.parse_extra("<expr>", expression)?;
        self.execute(
            &Entry::Expr(expr),
            "eval",
            vec![],
            &format!("eval {expression}"),
        )
    }

    /// Calls the module's function `function` on `args` (literals are traced as JAX's `jit`
    /// would, `.npy` arrays are inputs).
    pub fn run(&mut self, function: &str, args: Vec<RunArg>) -> Result<Value, Error> {
        let (entry, inputs) = self.call_entry(function, args)?;
        let description = describe_call(&entry);
        self.execute(&entry, &sanitise(function), inputs, &description)
    }

    /// Compiles `function` for `args`, then calls it `warmup` times and `iterations` more
    /// times, timing each of those calls (as `%timeit`, after a warm-up).
    pub fn bench(
        &mut self,
        function: &str,
        args: Vec<RunArg>,
        warmup: usize,
        iterations: usize,
    ) -> Result<Bench, Error> {
        let (entry, inputs) = self.call_entry(function, args)?;
        let name = sanitise(function);
        if self.eager {
            return self.bench_eager(&entry, &name, &inputs, warmup, iterations);
        }
        let started = std::time::Instant::now();
        let prepared = self.prepare(&entry, &name, &describe_call(&entry))?;
        let compile = started.elapsed();
        let Some(compiled) = &prepared.function else {
            return Ok(Bench {
                compile,
                calls: vec![std::time::Duration::ZERO; iterations],
            });
        };
        let mut outputs = output_arrays(&prepared.output);
        for _ in 0..warmup {
            compiled.call(&inputs, &mut outputs).map_err(jit_error)?;
        }
        let mut calls = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = std::time::Instant::now();
            compiled.call(&inputs, &mut outputs).map_err(jit_error)?;
            calls.push(start.elapsed());
        }
        Ok(Bench { compile, calls })
    }

    /// The entry for calling `function` on `args`, and the input arrays.
    fn call_entry(
        &mut self,
        function: &str,
        args: Vec<RunArg>,
    ) -> Result<(Entry, Vec<Array>), Error> {
        let call_span = Span::new(FileId(0), 0, 0);
        let mut entry_args = vec![];
        let mut inputs = vec![];
        for (index, arg) in args.into_iter().enumerate() {
            // A Python scalar passed to a jitted function is weakly typed, as in JAX.
            let (array, weak) = match arg {
                RunArg::Array(array) => (array, false),
                RunArg::Literal(text) => {
                    let expr = self.parse_extra(&format!("<argument {}>", index + 1), &text)?;
                    let array = literal_array(&expr)?;
                    let weak = array.shape.is_empty() && array.dtype != ferrax_runtime::DType::Bool;
                    (array, weak)
                }
            };
            let dtype = array.dtype;
            let ty = ArrayType {
                dtype,
                shape: array.shape.iter().map(|d| *d as i64).collect(),
                weak,
            };
            entry_args.push(EntryArg {
                name: None,
                kind: EntryArgKind::Array(ty),
            });
            inputs.push(array);
        }
        let entry = Entry::Call {
            callee: Callee::Name(function.to_string()),
            span: call_span,
            args: entry_args,
        };
        Ok((entry, inputs))
    }

    /// Compiles `function` for the signature `signature` (`"x: f32[3], y: f32[3]"`) and
    /// returns the module at stage `emit` as text, with source locations when `locations`.
    pub fn compile(
        &mut self,
        function: &str,
        signature: &str,
        emit: &str,
        locations: bool,
    ) -> Result<String, Error> {
        let signature_file = self.sources.add("<signature>", signature);
        let args = parse_signature(signature_file, signature)?;
        let entry = Entry::Call {
            callee: Callee::Name(function.to_string()),
            span: Span::new(signature_file, 0, signature.len()),
            args,
        };
        let context = ferrax_dialects::create_context();
        let mut traced = self.trace(&context, &entry, &sanitise(function))?;
        let until = if emit == "llvm-ir" { "llvm-mlir" } else { emit };
        pipeline::run_until(&context, &mut traced.module, until, self.options)?;
        if emit == "llvm-ir" {
            return Ok(pipeline::translate_to_llvm_ir(&traced.module));
        }
        let flags = OperationPrintingFlags::new()
            .enable_debug_info(locations, false)
            .use_local_scope();
        Ok(traced
            .module
            .as_operation()
            .to_string_with_flags(flags)
            .unwrap_or_else(|_| traced.module.as_operation().to_string()))
    }

    /// Compiles library entries for `signature` (every entry takes the same arguments) to
    /// native code for `cpu` (the host when `None`); returns the code and the entries.
    ///
    /// A size the signature leaves open (`f32[?]`, or a name such as `n`) is traced as a
    /// probe value, twice with different values; the two programs must be the same but for
    /// those sizes (so the code does not depend on them), and `fx-dynamic-sizes` then makes
    /// them dynamic.
    pub fn compile_native(
        &mut self,
        entries: &[LibraryEntry],
        signature: &str,
        cpu: Option<&str>,
        kind: NativeKind,
    ) -> Result<(Vec<u8>, Vec<EntryInfo>), Error> {
        let signature_file = self.sources.add("<signature>", signature);
        let signature_span = Span::new(signature_file, 0, signature.len());
        let parsed = parse_signature_dims(signature_file, signature)?;
        let user_error = |message: String| {
            Error::User(vec![
                Diagnostic::new("ferrax::cli::signature", signature_span, message)
                    .label("in this signature"),
            ])
        };
        let mut sizes: Vec<String> = vec![];
        let mut params = vec![];
        for (index, (arg, dims, _)) in parsed.iter().enumerate() {
            let name = arg.name.clone().unwrap_or_else(|| format!("x{index}"));
            if !is_c_identifier(&name) {
                return Err(user_error(format!("`{name}` cannot name a C parameter")));
            }
            let EntryArgKind::Array(ty) = &arg.kind else {
                continue;
            };
            let mut shape = vec![];
            for dim in dims {
                shape.push(match dim {
                    Dim::Static(size) => *size,
                    Dim::Dynamic(size) => {
                        let k = sizes.iter().position(|s| s == size).unwrap_or_else(|| {
                            sizes.push(size.clone());
                            sizes.len() - 1
                        });
                        aot::size_dim(k)
                    }
                });
            }
            params.push(Param {
                name,
                ty: ArrayType {
                    shape,
                    weak: false,
                    ..ty.clone()
                },
            });
        }
        if let Some(clash) = sizes.iter().find(|s| params.iter().any(|p| &p.name == *s)) {
            return Err(user_error(format!(
                "`{clash}` names both an argument and a size"
            )));
        }
        let probes: Vec<Vec<i64>> = if sizes.is_empty() {
            vec![vec![]]
        } else {
            PROBES
                .iter()
                .map(|base| (0..sizes.len() as i64).map(|k| base + 2 * k).collect())
                .collect()
        };
        let contexts: Vec<melior::Context> = entries
            .iter()
            .map(|_| ferrax_dialects::create_context())
            .collect();
        let mut modules = vec![];
        let mut infos = vec![];
        for (entry, context) in entries.iter().zip(&contexts) {
            let (mut traced, text) =
                self.trace_probe(context, entry, &params, &probes[0], signature_span)?;
            for sentinels in &probes[1..] {
                let probe_context = ferrax_dialects::create_context();
                let (_, other) =
                    self.trace_probe(&probe_context, entry, &params, sentinels, signature_span)?;
                if other != text {
                    return Err(user_error(format!(
                        "the code of `{}` depends on the value of a size known only at run \
                         time (a size used as a number, an array of that length, a slice, a \
                         reshape...); give that size a number",
                        entry.name
                    )));
                }
            }
            if !sizes.is_empty() {
                passes::fx_dynamic_sizes::run(context, traced.module.as_operation(), &probes[0])
                    .map_err(|message| {
                        user_error(format!(
                            "`{}` cannot take sizes known only at run time: {message}",
                            entry.name
                        ))
                    })?;
                pipeline::verify(context, &traced.module, "fx-dynamic-sizes")?;
            }
            let mut leaves = vec![];
            collect_leaves(&traced.output, &mut leaves);
            let taken: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            let outputs = leaves
                .iter()
                .enumerate()
                .map(|(index, ty)| {
                    let mut name = if leaves.len() == 1 {
                        String::from("out")
                    } else {
                        format!("out{index}")
                    };
                    while taken.contains(&name.as_str()) || sizes.contains(&name) {
                        name.push('_');
                    }
                    let shape = ty
                        .shape
                        .iter()
                        .map(|d| {
                            probes[0]
                                .iter()
                                .position(|s| s == d)
                                .map_or(*d, aot::size_dim)
                        })
                        .collect();
                    Param {
                        name,
                        ty: ArrayType {
                            shape,
                            weak: false,
                            ..ty.clone()
                        },
                    }
                })
                .collect();
            // A library's caller chooses its threads: its loops stay on one.
            let options = RunOptions {
                sequential: true,
                kernel_in_module: true,
                ..self.options
            };
            pipeline::run_between(context, &mut traced.module, "fx", "llvm-mlir", options)?;
            infos.push(EntryInfo {
                name: entry.name.clone(),
                sizes: sizes.clone(),
                inputs: params.clone(),
                outputs,
                donated: traced.donated.clone(),
            });
            modules.push(traced.module);
        }
        let modules: Vec<&melior::ir::Module> = modules.iter().collect();
        let native = aot::emit_native(&modules, &[], cpu, kind, aot::Optimisation::Full)
            .map_err(|message| stage_error("native code", message))?;
        Ok((native.code, infos))
    }

    /// Traces `entry` on `params` with their open sizes set to `sentinels`, up to `fx`;
    /// returns it and its text with the sentinels marked (see `sized_text`).
    fn trace_probe<'c>(
        &mut self,
        context: &'c melior::Context,
        entry: &LibraryEntry,
        params: &[Param],
        sentinels: &[i64],
        span: Span,
    ) -> Result<(specialise::Traced<'c>, String), Error> {
        let args: Vec<EntryArg> = params
            .iter()
            .map(|p| EntryArg {
                name: None,
                kind: EntryArgKind::Array(ArrayType {
                    shape: p
                        .ty
                        .shape
                        .iter()
                        .map(|d| aot::dim_size(*d).map_or(*d, |k| sentinels[k]))
                        .collect(),
                    ..p.ty.clone()
                }),
            })
            .collect();
        let callee = self.callee(entry)?;
        let mut traced = self.trace(
            context,
            &Entry::Call { callee, span, args },
            &aot::implementation_name(&entry.name),
        )?;
        pipeline::run_until(context, &mut traced.module, "fx", self.options)?;
        let text = sized_text(&traced.module.as_operation().to_string(), sentinels);
        Ok((traced, text))
    }

    /// Traces `entry` into a module holding `function`.
    fn trace<'c>(
        &self,
        context: &'c melior::Context,
        entry: &Entry,
        function: &str,
    ) -> Result<specialise::Traced<'c>, Diagnostic> {
        specialise::trace(
            context,
            &self.sources,
            &self.prelude,
            &self.module,
            entry,
            function,
        )
    }

    /// The function a library entry calls.
    fn callee(&mut self, entry: &LibraryEntry) -> Result<Callee, Error> {
        if !entry.is_expression {
            return Ok(Callee::Name(entry.function.clone()));
        }
        let file = self
            .sources
            .add(format!("<entry {}>", entry.name), entry.function.as_str());
        let (expr, errors) = parse_expression(file, &entry.function);
        match expr {
            Some(expr) if errors.is_empty() => Ok(Callee::Expr(expr)),
            _ => Err(Error::User(errors)),
        }
    }

    /// `bench` in the `eager` interpreter: the program at the `fx` stage, run op by op.
    fn bench_eager(
        &mut self,
        entry: &Entry,
        function: &str,
        inputs: &[Array],
        warmup: usize,
        iterations: usize,
    ) -> Result<Bench, Error> {
        let started = std::time::Instant::now();
        let context = ferrax_dialects::create_context();
        let mut traced = self.trace(&context, entry, function)?;
        pipeline::run_until(&context, &mut traced.module, "fx", self.options)?;
        let compile = started.elapsed();
        for _ in 0..warmup {
            eager::run(&traced.module, function, inputs).map_err(eager_error)?;
        }
        let mut calls = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = std::time::Instant::now();
            eager::run(&traced.module, function, inputs).map_err(eager_error)?;
            calls.push(start.elapsed());
        }
        Ok(Bench { compile, calls })
    }

    fn execute(
        &mut self,
        entry: &Entry,
        function: &str,
        inputs: Vec<Array>,
        description: &str,
    ) -> Result<Value, Error> {
        if self.eager {
            let context = ferrax_dialects::create_context();
            let mut traced = self.trace(&context, entry, function)?;
            pipeline::run_until(&context, &mut traced.module, "fx", self.options)?;
            let results = eager::run(&traced.module, function, &inputs).map_err(eager_error)?;
            return Ok(assemble(&traced.output, &results));
        }
        let prepared = self.prepare(entry, function, description)?;
        let mut outputs = output_arrays(&prepared.output);
        if let Some(compiled) = &prepared.function {
            compiled.call(&inputs, &mut outputs).map_err(jit_error)?;
        }
        Ok(assemble(&prepared.output, &outputs))
    }

    /// Compiles `entry` into `function`, or loads it from the cache (under a key made of the
    /// source, `description` and `function`) when the session has one.
    fn prepare(
        &mut self,
        entry: &Entry,
        function: &str,
        description: &str,
    ) -> Result<Prepared, Error> {
        let source = self
            .sources
            .sources
            .first()
            .map(|s| s.text.clone())
            .unwrap_or_default();
        let key = self
            .cache
            .as_ref()
            .map(|cache| cache.key(&[&source, description, function]));
        if let (Some(cache), Some(key)) = (&self.cache, &key)
            && let Some(cached) = cache.load(key, function)
        {
            return Ok(Prepared {
                output: cached.output.clone(),
                function: Some(Function::Cached(cached)),
            });
        }
        let context = ferrax_dialects::create_context();
        let mut traced = self.trace(&context, entry, function)?;
        let mut leaves = vec![];
        collect_leaves(&traced.output, &mut leaves);
        if leaves.is_empty() {
            return Ok(Prepared {
                output: traced.output,
                function: None,
            });
        }
        pipeline::run_until(&context, &mut traced.module, "llvm-mlir", self.options)?;
        // The code runs on this host, in the JIT or from the cache: libm calls may go to
        // libmvec's vector variants.
        crate::vector_math::add_variants(&traced.module, &crate::vector_math::host_widths())
            .map_err(jit_error)?;
        let native = backend::native(&traced.module, function).map_err(jit_error)?;
        // A cache that cannot be written (a read-only folder, no `ld`) is not an error.
        let stored = match (&self.cache, &key) {
            (Some(cache), Some(key)) => cache.store(key, &native, function, &traced.output).ok(),
            _ => None,
        };
        let compiled = match stored {
            Some(cached) => Function::Cached(cached),
            None => Function::Jit(backend::Compiled::link(&native, function).map_err(jit_error)?),
        };
        Ok(Prepared {
            output: traced.output,
            function: Some(compiled),
        })
    }
}

/// A compiled function, and the structure of its result.
struct Prepared {
    output: Output,
    /// None when the result has no array (nothing to compute).
    function: Option<Function>,
}

enum Function {
    Jit(backend::Compiled),
    Cached(Cached),
}

impl Function {
    fn call(&self, inputs: &[Array], outputs: &mut [Array]) -> Result<(), String> {
        match self {
            Function::Jit(compiled) => compiled.call(inputs, outputs),
            Function::Cached(cached) => cached.callable.call(inputs, outputs),
        }
    }
}

/// Zero arrays for the array leaves of `output`.
fn output_arrays(output: &Output) -> Vec<Array> {
    let mut leaves = vec![];
    collect_leaves(output, &mut leaves);
    leaves
        .iter()
        .map(|ty| Array::zeros(ty.dtype, ty.shape.iter().map(|d| *d as usize).collect()))
        .collect()
}

/// What identifies a call entry besides the source: the function and its argument types.
fn describe_call(entry: &Entry) -> String {
    let mut text = String::from("call");
    if let Entry::Call { callee, args, .. } = entry {
        if let Callee::Name(name) = callee {
            text.push_str(&format!(" {name}"));
        }
        for arg in args {
            match &arg.kind {
                EntryArgKind::Array(ty) => {
                    text.push_str(&format!(" {}{}", ty.mlir(), if ty.weak { "w" } else { "" }))
                }
                EntryArgKind::Static(value) => text.push_str(&format!(" {value:?}")),
            }
        }
    }
    text
}

/// The probe values of the sizes a signature leaves open: `PROBES[p] + 2 * k` stands for
/// size `k` in probe `p`. Large and odd, so that no program has them for another reason.
const PROBES: [i64; 2] = [1_000_003, 2_000_003];

/// The module's text with each probe size in a tensor type written `?k` (for size `k`).
fn sized_text(text: &str, sentinels: &[i64]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("tensor<") {
        let (before, after) = rest.split_at(start + "tensor<".len());
        out.push_str(before);
        let end = after.find('>').unwrap_or(after.len());
        let dims: Vec<String> = after[..end]
            .split('x')
            .map(|part| {
                match part
                    .parse::<i64>()
                    .ok()
                    .and_then(|d| sentinels.iter().position(|s| *s == d))
                {
                    Some(k) => format!("?{k}"),
                    None => part.to_string(),
                }
            })
            .collect();
        out.push_str(&dims.join("x"));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// An entry of a compiled library: its C name and the function it calls, a function of the
/// module or (`is_expression`) an expression such as `jax.grad(f)`.
pub struct LibraryEntry {
    pub name: String,
    pub function: String,
    pub is_expression: bool,
}

/// A name C accepts for a function or parameter (not a keyword).
pub fn is_c_identifier(name: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "auto", "bool", "break", "case", "char", "const", "continue", "default", "do", "double",
        "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
        "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct",
        "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "true", "false",
    ];
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&name)
}

fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn collect_leaves(output: &Output, leaves: &mut Vec<ArrayType>) {
    match output {
        Output::Array { ty, .. } => leaves.push(ty.clone()),
        Output::Static(_) => {}
        Output::Tuple(items) | Output::List(items) => {
            items.iter().for_each(|o| collect_leaves(o, leaves))
        }
    }
}

fn assemble(output: &Output, results: &[Array]) -> Value {
    match output {
        Output::Array { index, ty } => Value::Array {
            array: results[*index].clone(),
            weak: ty.weak,
        },
        Output::Static(value) => Value::Static(value.clone()),
        Output::Tuple(items) => Value::Tuple(items.iter().map(|o| assemble(o, results)).collect()),
        Output::List(items) => Value::List(items.iter().map(|o| assemble(o, results)).collect()),
    }
}

/// A literal argument (`2.0`, `-1`, `True`, `[1.0, 2.0]`) as an array: floats are float32,
/// ints int32, as JAX converts Python values passed to a jitted function.
fn literal_array(expr: &ast::Expr) -> Result<Array, Error> {
    fn walk(
        expr: &ast::Expr,
        values: &mut Vec<f64>,
        is_float: &mut bool,
        is_bool: &mut bool,
    ) -> Result<Vec<usize>, Diagnostic> {
        match &expr.kind {
            ExprKind::Int(i) => {
                values.push(*i as f64);
                *is_bool = false;
                Ok(vec![])
            }
            ExprKind::Float(f) => {
                values.push(*f);
                *is_float = true;
                *is_bool = false;
                Ok(vec![])
            }
            ExprKind::Bool(b) => {
                values.push(f64::from(u8::from(*b)));
                Ok(vec![])
            }
            ExprKind::UnaryOp {
                op: UnaryOp::Neg,
                operand,
            } => {
                let shape = walk(operand, values, is_float, is_bool)?;
                if let Some(last) = values.last_mut() {
                    *last = -*last;
                }
                Ok(shape)
            }
            ExprKind::List(items) | ExprKind::Tuple(items) => {
                let mut inner: Option<Vec<usize>> = None;
                for item in items {
                    let shape = walk(item, values, is_float, is_bool)?;
                    if inner.as_ref().is_some_and(|s| *s != shape) {
                        return Err(Diagnostic::new(
                            "ferrax::cli::argument",
                            item.span,
                            "the rows of an array literal must have one shape",
                        ));
                    }
                    inner = Some(shape);
                }
                let mut shape = vec![items.len()];
                shape.extend(inner.unwrap_or_default());
                Ok(shape)
            }
            _ => Err(Diagnostic::new(
                "ferrax::cli::argument",
                expr.span,
                "an argument must be a number, a bool, a list of them, or @file.npy",
            )
            .label("not a literal")),
        }
    }
    let mut values = vec![];
    let (mut is_float, mut is_bool) = (false, true);
    let shape = walk(expr, &mut values, &mut is_float, &mut is_bool)?;
    let dtype = if is_float || values.is_empty() {
        ferrax_runtime::DType::F32
    } else if is_bool {
        ferrax_runtime::DType::Bool
    } else {
        ferrax_runtime::DType::I32
    };
    Ok(Array::from_f64(dtype, shape, &values))
}

/// A dimension of a signature: a size, or a size known at run time (`?` or a name; one name
/// is one size across the signature).
#[derive(Clone, Debug, PartialEq)]
enum Dim {
    Static(i64),
    Dynamic(String),
}

/// `"x: f32[1000000], n: i32[]"` into named array arguments; a dynamic dimension is an error.
fn parse_signature(file: FileId, text: &str) -> Result<Vec<EntryArg>, Diagnostic> {
    let args = parse_signature_dims(file, text)?;
    let mut static_args = vec![];
    for (arg, dims, span) in args {
        if dims.iter().any(|d| matches!(d, Dim::Dynamic(_))) {
            return Err(Diagnostic::new(
                "ferrax::cli::signature",
                span,
                "a dimension known only at run time (`?` or a name) needs a library",
            )
            .label("a size known only at run time")
            .help("compile it with --emit lib, staticlib, obj or asm, or give the size a number"));
        }
        static_args.push(arg);
    }
    Ok(static_args)
}

/// `"x: f32[?], w: f32[n, 3]"` into named array arguments with their dimensions (a dynamic
/// dimension has size 0 in the argument's type) and spans.
fn parse_signature_dims(
    file: FileId,
    text: &str,
) -> Result<Vec<(EntryArg, Vec<Dim>, Span)>, Diagnostic> {
    let mut args = vec![];
    let mut depth = 0;
    let mut start = 0;
    let mut pieces = vec![];
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                pieces.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push((start, text.len()));
    for (start, end) in pieces {
        let piece = &text[start..end];
        if piece.trim().is_empty() {
            continue;
        }
        let span = Span::new(file, start, end);
        let bad = || {
            Diagnostic::new(
                "ferrax::cli::signature",
                span,
                format!("cannot read `{}` as an argument type", piece.trim()),
            )
            .label("expected `name: dtype[dims]`")
            .help("for example --sig \"x: f32[1000], w: f32[3,3], n: i32[]\"")
        };
        let (name, ty) = match piece.split_once(':') {
            Some((name, ty)) => (Some(name.trim().to_string()), ty.trim()),
            None => (None, piece.trim()),
        };
        let open = ty.find('[').ok_or_else(bad)?;
        if !ty.ends_with(']') {
            return Err(bad());
        }
        let dtype = DType::parse(&ty[..open]).ok_or_else(bad)?;
        let dims_text = &ty[open + 1..ty.len() - 1];
        let mut shape = vec![];
        let mut dims = vec![];
        for (d, dim) in dims_text
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .enumerate()
        {
            if dim == "?" {
                let arg = name.clone().unwrap_or_else(|| format!("x{}", args.len()));
                dims.push(Dim::Dynamic(format!("{arg}_size{d}")));
                shape.push(0);
            } else if let Ok(size) = dim.parse::<i64>() {
                if size < 0 {
                    return Err(bad());
                }
                dims.push(Dim::Static(size));
                shape.push(size);
            } else if is_c_identifier(dim) {
                dims.push(Dim::Dynamic(dim.to_string()));
                shape.push(0);
            } else {
                return Err(bad());
            }
        }
        args.push((
            EntryArg {
                name,
                kind: EntryArgKind::Array(ArrayType::new(dtype, shape)),
            },
            dims,
            span,
        ));
    }
    Ok(args)
}
