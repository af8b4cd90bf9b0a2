//! `fx-to-linalg`: lowers fx ops to upstream dialects on tensors.
//!
//! Runs on: `builtin.module`.
//! Input:   fx ops on builtin ranked tensors with static shapes (no differentiation ops).
//! Output:  arith and math ops on tensors (elementwise; `convert-elementwise-to-linalg` turns
//!          them into `linalg.generic`), `linalg.generic` for broadcasts and reductions,
//!          `tensor` ops for reshapes and slices. No `fx.*` op remains.
//! Keeps:   every op's `loc`; function signatures.
//! Does not: fuse, tile or bufferise (upstream passes do, later in the pipeline).
//!
//! Each fx op is replaced by the ops its rule in `lower` builds, in program order, so the
//! operands of an op are already lowered when it is reached. The one exception: a product
//! `k * exp(x)` that its float32 exp computes (`exp_form`, decided on the fx program before
//! anything is lowered) is replaced by the exp's value.

use super::ir::{
    defining_op, i64_array, op_name, operand_uses, operands, results, splat_of, value_type,
};
use melior::{
    Context, IrRewriter, RewriterBase,
    ir::{
        Attribute, Block, BlockLike, Identifier, Location, Operation, OperationRef, Region,
        RegionLike, Type, TypeLike, Value, ValueLike,
        attribute::{DenseI64ArrayAttribute, IntegerAttribute, StringAttribute},
        operation::{OperationBuilder, OperationLike, WalkOrder, WalkResult},
        r#type::{DimSize, IntegerType, RankedTensorType, ShapedTypeLike},
    },
    pass::{ExternalPass, Pass},
};
use mlir_sys::{MlirOperation, MlirValue};
use std::collections::HashMap;

static PASS_ID: super::PassId = super::PassId;

/// Creates the `fx-to-linalg` pass.
pub fn create() -> Pass {
    super::module_pass(
        &PASS_ID,
        "fx-to-linalg",
        "Lower fx ops to linalg, tensor, arith and math on tensors",
        run,
    )
}

fn run(module: OperationRef<'_, '_>, pass: ExternalPass<'_>) {
    let context_ref = module.context();
    // Safety: `context_ref` outlives every use of `context` in this function.
    let context = unsafe { context_ref.to_ref() };
    let mut fx_ops = vec![];
    module.walk(WalkOrder::PreOrder, |operation| {
        if operation
            .name()
            .as_string_ref()
            .as_str()
            .is_ok_and(|name| name.starts_with("fx."))
        {
            fx_ops.push(operation.to_raw());
        }
        WalkResult::Advance
    });
    let rewriter = IrRewriter::new(context);
    let base = rewriter.as_rewriter_base();
    // How each float32 exp is computed, decided on the fx program before anything is lowered,
    // and the products `k * exp(x)` that an exp's lowering computed, with their values.
    let exp_forms: HashMap<usize, ExpForm> = fx_ops
        .iter()
        .filter_map(|raw| Some((raw.ptr as usize, exp_form(*raw)?)))
        .collect();
    let mut absorbed: Vec<(MlirOperation, Value)> = vec![];
    for raw in fx_ops {
        let operation = unsafe { OperationRef::from_raw(raw) };
        if let Some(i) = absorbed
            .iter()
            .position(|(product, _)| product.ptr == raw.ptr)
        {
            let (_, value) = absorbed.swap_remove(i);
            base.replace_op_with_values(operation, &[value]);
            continue;
        }
        let exp_form = exp_forms.get(&(raw.ptr as usize)).copied();
        base.set_insertion_point_before(operation);
        let mut lowering = Lowering {
            context,
            base,
            location: operation.location(),
            sizes: vec![],
            exp_form,
        };
        let lowered = lowering.result_sizes(operation).and_then(|sizes| {
            lowering.sizes = sizes;
            lowering.lower(operation)
        });
        match lowered {
            Ok(value) => {
                if let Some(product) = exp_form.and_then(|form| form.product) {
                    absorbed.push((product, value));
                }
                base.replace_op_with_values(operation, &[value]);
            }
            Err(message) => {
                let name = operation
                    .name()
                    .as_string_ref()
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                eprintln!("internal error: fx-to-linalg cannot lower `{name}`: {message}");
                pass.signal_failure();
                return;
            }
        }
    }
}

/// Element kinds, which decide between the float, signed and bool forms of an op.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Bool,
}

struct Lowering<'c, 'a> {
    context: &'c Context,
    base: RewriterBase<'c, 'a>,
    location: Location<'c>,
    /// The sizes of the result's dynamic dimensions, in order (see `result_sizes`).
    sizes: Vec<Value<'c, 'a>>,
    /// How to compute the op, a float32 exp.
    exp_form: Option<ExpForm>,
}

/// How a float32 `exp(x)` is computed: `scale * exp(x)` (for `product`, which it replaces),
/// observed only where `x <= bound` or NaN.
#[derive(Clone, Copy)]
struct ExpForm {
    product: Option<MlirOperation>,
    scale: f64,
    bound: f64,
}

type LResult<'c, 'a> = Result<Value<'c, 'a>, String>;

impl<'c, 'a> Lowering<'c, 'a> {
    /// The sizes of the dynamic dimensions of `operation`'s result: the `dynamic_sizes` of a
    /// broadcast, the kept dimensions of a reduction's operand, otherwise the first
    /// operand's (an elementwise op, whose operands have the result's shape).
    fn result_sizes(&self, operation: OperationRef<'c, 'a>) -> Result<Vec<Value<'c, 'a>>, String> {
        let result = operation.result(0).map_err(|e| e.to_string())?.r#type();
        let dims = shape(result)?;
        if !dims.contains(&DYNAMIC) {
            return Ok(vec![]);
        }
        let name = operation
            .name()
            .as_string_ref()
            .as_str()
            .unwrap_or("")
            .to_string();
        if name == "fx.broadcast_in_dim" {
            return Ok(operation
                .operands()
                .skip(1)
                .map(|v| unsafe { Value::from_raw(v.to_raw()) })
                .collect());
        }
        let input = operation.operand(0).map_err(|e| e.to_string())?;
        let input: Value<'c, 'a> = unsafe { Value::from_raw(input.to_raw()) };
        let source_dims: Vec<usize> = if name == "fx.reduce" {
            let axes = i64_array(operation.attribute("axes").map_err(|e| e.to_string())?)?;
            (0..shape(input.r#type())?.len())
                .filter(|d| !axes.contains(&(*d as i64)))
                .collect()
        } else {
            (0..dims.len()).collect()
        };
        let mut sizes = vec![];
        for (d, source) in dims.iter().zip(source_dims) {
            if *d == DYNAMIC {
                let position = self.op(
                    "arith.constant",
                    &[],
                    Type::index(self.context),
                    &[(
                        "value",
                        IntegerAttribute::new(Type::index(self.context), source as i64).into(),
                    )],
                )?;
                sizes.push(self.op(
                    "tensor.dim",
                    &[input, position],
                    Type::index(self.context),
                    &[],
                )?);
            }
        }
        Ok(sizes)
    }

    fn lower(&self, operation: OperationRef<'c, 'a>) -> LResult<'c, 'a> {
        let name = operation
            .name()
            .as_string_ref()
            .as_str()
            .map_err(|_| "bad name")?
            .to_string();
        let result_type = operation.result(0).map_err(|e| e.to_string())?.r#type();
        let operand = |i: usize| operation.operand(i).map_err(|e| e.to_string());
        let mnemonic = name.trim_start_matches("fx.");
        if shape(result_type)?.contains(&0) {
            // A tensor without elements has no contents to compute.
            return self.empty(result_type);
        }
        match mnemonic {
            "constant" => {
                let value = operation.attribute("value").map_err(|e| e.to_string())?;
                self.op("arith.constant", &[], result_type, &[("value", value)])
            }
            "add" | "sub" | "mul" | "div" | "rem" | "max" | "min" | "pow" | "and" | "or" => {
                let (lhs, rhs) = (operand(0)?, operand(1)?);
                let op = match (mnemonic, kind(lhs.r#type())?) {
                    ("add", Kind::Float) => "arith.addf",
                    ("add", _) => "arith.addi",
                    ("sub", Kind::Float) => "arith.subf",
                    ("sub", _) => "arith.subi",
                    ("mul", Kind::Float) => "arith.mulf",
                    ("mul", _) => "arith.muli",
                    ("div", Kind::Float) => "arith.divf",
                    ("div", _) => "arith.divsi",
                    ("rem", Kind::Float) => "arith.remf",
                    ("rem", _) => "arith.remsi",
                    ("max", Kind::Float) => "arith.maximumf",
                    ("max", Kind::Int) => "arith.maxsi",
                    ("max", Kind::Bool) => "arith.maxui",
                    ("min", Kind::Float) => "arith.minimumf",
                    ("min", Kind::Int) => "arith.minsi",
                    ("min", Kind::Bool) => "arith.minui",
                    ("pow", Kind::Float) => "math.powf",
                    ("and", Kind::Bool | Kind::Int) => "arith.andi",
                    ("or", Kind::Bool | Kind::Int) => "arith.ori",
                    _ => {
                        return Err(format!(
                            "no lowering for these operand types ({})",
                            lhs.r#type()
                        ));
                    }
                };
                // Float products and sums may contract into fused multiply-adds, as XLA's do on
                // the CPU.
                let contract: &[(&str, Attribute<'c>)] =
                    if matches!(op, "arith.addf" | "arith.subf" | "arith.mulf") {
                        &[("fastmath", self.attribute("#arith.fastmath<contract>")?)]
                    } else {
                        &[]
                    };
                self.op(op, &[lhs, rhs], result_type, contract)
            }
            "neg" => {
                let x = operand(0)?;
                match kind(x.r#type())? {
                    Kind::Float => self.op("arith.negf", &[x], result_type, &[]),
                    _ => {
                        let zero = self.splat(result_type, 0.0)?;
                        self.op("arith.subi", &[zero, x], result_type, &[])
                    }
                }
            }
            "round" => {
                let x = operand(0)?;
                if kind(x.r#type())? != Kind::Float {
                    return Ok(x);
                }
                self.op("math.roundeven", &[x], result_type, &[])
            }
            "atan2" => self.op("math.atan2", &[operand(0)?, operand(1)?], result_type, &[]),
            "exp" | "log" | "log1p" | "expm1" | "sin" | "cos" | "tanh" | "sqrt" | "floor"
            | "asin" | "acos" | "atan" | "erf" => {
                let x = operand(0)?;
                if kind(x.r#type())? != Kind::Float {
                    return Err(String::from("expects a float operand"));
                }
                if let Some(form) = self.exp_form {
                    return self.exp_f32(x, result_type, form);
                }
                self.op(&format!("math.{mnemonic}"), &[x], result_type, &[])
            }
            "abs" => {
                let x = operand(0)?;
                match kind(x.r#type())? {
                    Kind::Float => self.op("math.absf", &[x], result_type, &[]),
                    Kind::Int => self.op("math.absi", &[x], result_type, &[]),
                    Kind::Bool => Ok(x),
                }
            }
            "sign" => {
                // sign(x) = x > 0 ? 1 : (x < 0 ? -1 : x), which keeps 0, -0 and NaN.
                let x = operand(0)?;
                let k = kind(x.r#type())?;
                if k == Kind::Bool {
                    return Ok(x);
                }
                let zero = self.splat(result_type, 0.0)?;
                let one = self.splat(result_type, 1.0)?;
                let minus_one = self.splat(result_type, -1.0)?;
                let positive = self.compare(k, "gt", x, zero)?;
                let negative = self.compare(k, "lt", x, zero)?;
                let inner = self.op("arith.select", &[negative, minus_one, x], result_type, &[])?;
                self.op("arith.select", &[positive, one, inner], result_type, &[])
            }
            "not" => {
                let x = operand(0)?;
                let ones = self.splat(result_type, -1.0)?;
                self.op("arith.xori", &[x, ones], result_type, &[])
            }
            "integer_pow" => {
                let x = operand(0)?;
                let exponent = IntegerAttribute::try_from(
                    operation.attribute("exponent").map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?
                .value();
                self.integer_pow(x, exponent, result_type)
            }
            "compare" => {
                let (lhs, rhs) = (operand(0)?, operand(1)?);
                let predicate = StringAttribute::try_from(
                    operation
                        .attribute("predicate")
                        .map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?
                .value()
                .to_string();
                self.compare(kind(lhs.r#type())?, &predicate, lhs, rhs)
            }
            "select" => self.op(
                "arith.select",
                &[operand(0)?, operand(1)?, operand(2)?],
                result_type,
                &[],
            ),
            "convert" => self.convert(operand(0)?, result_type),
            "broadcast_in_dim" => {
                let dims = i64_array(
                    operation
                        .attribute("broadcast_dimensions")
                        .map_err(|e| e.to_string())?,
                )?;
                self.broadcast(operand(0)?, &dims, result_type)
            }
            "reshape" if operand(0)?.r#type() == result_type => Ok(operand(0)?),
            "reshape" => self.reshape(operand(0)?, result_type),
            "reduce" => {
                let axes = i64_array(operation.attribute("axes").map_err(|e| e.to_string())?)?;
                let reduce_kind = StringAttribute::try_from(
                    operation.attribute("kind").map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?
                .value()
                .to_string();
                self.reduce(operand(0)?, &reduce_kind, &axes, result_type)
            }
            "slice" => {
                let start = i64_array(
                    operation
                        .attribute("start_indices")
                        .map_err(|e| e.to_string())?,
                )?;
                let strides =
                    i64_array(operation.attribute("strides").map_err(|e| e.to_string())?)?;
                let sizes = shape(result_type)?;
                let x = operand(0)?;
                let attribute = |values: &[i64]| -> Attribute<'c> {
                    DenseI64ArrayAttribute::new(self.context, values).into()
                };
                let segments = self.attribute("array<i32: 1, 0, 0, 0>")?;
                self.op(
                    "tensor.extract_slice",
                    &[x],
                    result_type,
                    &[
                        ("static_offsets", attribute(&start)),
                        ("static_sizes", attribute(&sizes)),
                        ("static_strides", attribute(&strides)),
                        ("operandSegmentSizes", segments),
                    ],
                )
            }
            "pad" => {
                let low = i64_array(
                    operation
                        .attribute("edge_padding_low")
                        .map_err(|e| e.to_string())?,
                )?;
                let interior = i64_array(
                    operation
                        .attribute("interior_padding")
                        .map_err(|e| e.to_string())?,
                )?;
                let (x, padding) = (operand(0)?, operand(1)?);
                let element = element_type(result_type)?;
                let scalar = self.op("tensor.extract", &[padding], element, &[])?;
                let filled = self.fill(scalar, result_type)?;
                let sizes = shape(x.r#type())?;
                let strides: Vec<i64> = interior.iter().map(|i| i + 1).collect();
                let attribute = |values: &[i64]| -> Attribute<'c> {
                    DenseI64ArrayAttribute::new(self.context, values).into()
                };
                let segments = self.attribute("array<i32: 1, 1, 0, 0, 0>")?;
                self.op(
                    "tensor.insert_slice",
                    &[x, filled],
                    result_type,
                    &[
                        ("static_offsets", attribute(&low)),
                        ("static_sizes", attribute(&sizes)),
                        ("static_strides", attribute(&strides)),
                        ("operandSegmentSizes", segments),
                    ],
                )
            }
            "transpose" => {
                let permutation = i64_array(
                    operation
                        .attribute("permutation")
                        .map_err(|e| e.to_string())?,
                )?;
                // Input dimension permutation[i] is indexed by result dimension i.
                let mut input = vec![String::new(); permutation.len()];
                for (i, p) in permutation.iter().enumerate() {
                    input[*p as usize] = format!("d{i}");
                }
                self.copy_generic(operand(0)?, &input, result_type)
            }
            "dot_general" => self.dot_general(operation, operand(0)?, operand(1)?, result_type),
            "dynamic_slice" => {
                let x = operand(0)?;
                let sizes = shape(result_type)?;
                let indices: Vec<Value> = operation.operands().skip(1).collect();
                let offsets = self.clamped_offsets(&indices, &shape(x.r#type())?, &sizes)?;
                self.slice_op("tensor.extract_slice", &[x], &offsets, &sizes, result_type)
            }
            "dynamic_update_slice" => {
                let (x, update) = (operand(0)?, operand(1)?);
                let sizes = shape(update.r#type())?;
                if sizes.contains(&0) {
                    return Ok(x);
                }
                let indices: Vec<Value> = operation.operands().skip(2).collect();
                let offsets = self.clamped_offsets(&indices, &shape(x.r#type())?, &sizes)?;
                self.slice_op(
                    "tensor.insert_slice",
                    &[update, x],
                    &offsets,
                    &sizes,
                    result_type,
                )
            }
            "reverse" => {
                let dimensions = i64_array(
                    operation
                        .attribute("dimensions")
                        .map_err(|e| e.to_string())?,
                )?;
                let sizes = shape(result_type)?;
                let input: Vec<String> = (0..sizes.len())
                    .map(|d| {
                        if dimensions.contains(&(d as i64)) {
                            format!("{} - d{d}", sizes[d] - 1)
                        } else {
                            format!("d{d}")
                        }
                    })
                    .collect();
                self.copy_generic(operand(0)?, &input, result_type)
            }
            other => Err(format!("`fx.{other}` has no lowering")),
        }
    }

    fn attribute(&self, text: &str) -> Result<Attribute<'c>, String> {
        Attribute::parse(self.context, text)
            .ok_or_else(|| format!("cannot parse attribute `{text}`"))
    }

    /// Builds an op with one result before the op being lowered.
    fn op(
        &self,
        name: &str,
        operands: &[Value<'c, '_>],
        result: Type<'c>,
        attributes: &[(&str, Attribute<'c>)],
    ) -> LResult<'c, 'a> {
        self.build(
            OperationBuilder::new(name, self.location),
            operands,
            result,
            attributes,
            vec![],
        )
    }

    /// The offsets of a dynamic slice of `sizes` in a tensor of `dims`: each start index
    /// (a `tensor<i32>`) clamped to `[0, dim - size]`, as an `index`.
    fn clamped_offsets(
        &self,
        indices: &[Value<'c, '_>],
        dims: &[i64],
        sizes: &[i64],
    ) -> Result<Vec<Value<'c, 'a>>, String> {
        let i32_type: Type<'c> = IntegerType::new(self.context, 32).into();
        let constant = |value: i64| {
            self.op(
                "arith.constant",
                &[],
                i32_type,
                &[("value", IntegerAttribute::new(i32_type, value).into())],
            )
        };
        let mut offsets = vec![];
        for ((index, dim), size) in indices.iter().zip(dims).zip(sizes) {
            let scalar = self.op("tensor.extract", &[*index], i32_type, &[])?;
            let low = self.op("arith.maxsi", &[scalar, constant(0)?], i32_type, &[])?;
            let clamped = self.op("arith.minsi", &[low, constant(dim - size)?], i32_type, &[])?;
            offsets.push(self.op(
                "arith.index_cast",
                &[clamped],
                Type::index(self.context),
                &[],
            )?);
        }
        Ok(offsets)
    }

    /// `tensor.extract_slice` / `tensor.insert_slice` of `sizes` at dynamic `offsets`, unit
    /// strides; `operands` are the source (and, for insert, the destination).
    fn slice_op(
        &self,
        name: &str,
        operands: &[Value<'c, '_>],
        offsets: &[Value<'c, '_>],
        sizes: &[i64],
        result: Type<'c>,
    ) -> LResult<'c, 'a> {
        let rank = sizes.len();
        let attribute = |values: &[i64]| -> Attribute<'c> {
            DenseI64ArrayAttribute::new(self.context, values).into()
        };
        let segments = self.attribute(&format!(
            "array<i32: {}{rank}, 0, 0>",
            "1, ".repeat(operands.len())
        ))?;
        let mut all = operands.to_vec();
        all.extend_from_slice(offsets);
        self.op(
            name,
            &all,
            result,
            &[
                ("static_offsets", attribute(&vec![i64::MIN; rank])),
                ("static_sizes", attribute(sizes)),
                ("static_strides", attribute(&vec![1; rank])),
                ("operandSegmentSizes", segments),
            ],
        )
    }

    fn build(
        &self,
        builder: OperationBuilder<'c>,
        operands: &[Value<'c, '_>],
        result: Type<'c>,
        attributes: &[(&str, Attribute<'c>)],
        regions: Vec<Region<'c>>,
    ) -> LResult<'c, 'a> {
        let attributes: Vec<(Identifier<'c>, Attribute<'c>)> = attributes
            .iter()
            .map(|(name, value)| (Identifier::new(self.context, name), *value))
            .collect();
        let operation: Operation<'c> = builder
            .add_operands(operands)
            .add_results(&[result])
            .add_attributes(&attributes)
            .add_regions_vec(regions)
            .build()
            .map_err(|e| e.to_string())?;
        let inserted = self.base.insert(operation);
        let value: Value<'c, '_> = inserted.result(0).map_err(|e| e.to_string())?.into();
        Ok(unsafe { Value::from_raw(value.to_raw()) })
    }

    /// `scale * exp(x)` for float32 without a libm call, so loops vectorise (`form`: see
    /// `exp_form`): range reduction by ln 2 as in Cephes' `expf`, a degree-6 polynomial
    /// `p` of the remainder whose coefficients carry `scale`, times `2^n`, added to `p`'s
    /// exponent bits. `n` comes from rounding `x * log2(e)` by adding `1.5 * 2^23`, whose low
    /// bits then hold `n` too. Like XLA on the CPU (which flushes subnormals), results below
    /// the smallest normal float are 0; `+inf` above the largest finite one, NaN kept. When
    /// every element observed has `x <= bound` or NaN (see `observed_bound`) and `bound`
    /// cannot overflow, the test for overflow is left out.
    fn exp_f32(&self, x: Value<'c, '_>, ty: Type<'c>, form: ExpForm) -> LResult<'c, 'a> {
        let ExpForm { scale, bound, .. } = form;
        let constant = |value: f64| self.splat(ty, value);
        // Products and sums may contract into fused multiply-adds: half the instructions and
        // half the latency of the dependent chain, and no less accurate.
        let contract = self.attribute("#arith.fastmath<contract>")?;
        let binary = |name: &str, a: Value<'c, 'a>, b: Value<'c, 'a>| {
            let attributes: &[(&str, Attribute<'c>)] = if name.ends_with('f') {
                &[("fastmath", contract)]
            } else {
                &[]
            };
            self.op(name, &[a, b], ty, attributes)
        };
        let x: Value<'c, 'a> = unsafe { Value::from_raw(x.to_raw()) };
        let magic = constant(12_582_912.0)?;
        let scaled = binary("arith.mulf", x, constant(std::f64::consts::LOG2_E)?)?;
        let rounded = binary("arith.addf", scaled, magic)?;
        let n = binary("arith.subf", rounded, magic)?;
        let hi_part = binary("arith.mulf", n, constant(0.693_359_375)?)?;
        let lo_part = binary("arith.mulf", n, constant(-2.121_944_4e-4)?)?;
        let r = binary("arith.subf", x, hi_part)?;
        let r = binary("arith.subf", r, lo_part)?;
        // exp(r) = 1 + r + r^2 q(r) on [-ln(2)/2, ln(2)/2], q of degree 4 fitted for the least
        // relative error, times `scale`, by Horner's rule: six fused multiply-adds, at most
        // 0.88 ulp from exp for `scale` 1.
        let mut p = constant(scale * 1.355_225_220_322_609e-3)?;
        for coefficient in [
            8.371_885_865_926_743e-3,
            4.167_369_753_122_33e-2,
            1.666_648_834_943_771_4e-1,
            4.999_996_721_744_537_4e-1,
            1.0,
            1.0,
        ] {
            let product = binary("arith.mulf", p, r)?;
            p = binary("arith.addf", product, constant(scale * coefficient)?)?;
        }
        // p is in [0.7, 1.42] `scale`, and n in [-126, 128], wherever the result is normal:
        // adding n << 23 to p's bits multiplies by 2^n. (The low 9 bits of `rounded` are n's.)
        let int_type: Type<'c> = RankedTensorType::new(
            &shape(ty)?.iter().map(|d| *d as u64).collect::<Vec<_>>(),
            IntegerType::new(self.context, 32).into(),
            None,
        )
        .into();
        let int =
            |name: &str, a: Value<'c, 'a>, b: Value<'c, 'a>| self.op(name, &[a, b], int_type, &[]);
        let n_bits = self.op("arith.bitcast", &[rounded], int_type, &[])?;
        let exponent = int("arith.shli", n_bits, self.splat(int_type, 23.0)?)?;
        let p_bits = self.op("arith.bitcast", &[p], int_type, &[])?;
        let bits = int("arith.addi", p_bits, exponent)?;
        let result = self.op("arith.bitcast", &[bits], ty, &[])?;
        // Below `low` the result is below the smallest normal float: 0, as JAX's on the CPU,
        // which flushes subnormals (exp(x) itself is below ln(2^-126)).
        let low = -126.0 * std::f64::consts::LN_2 - scale.ln().min(0.0);
        // Above `high` exp(x) or the product overflows: +inf.
        let high = f32_at_most(f64::from(f32::MAX).ln() - scale.ln().max(0.0));
        if bound <= high {
            // One test, for results below `low` and for NaN (an unordered comparison):
            // max(x, -1) + 1, which is +0 for x <= -1 and NaN for NaN (`x < -1 ? -1 : x` is
            // one `vmaxps` on x86, no comparison).
            let below = self.compare(Kind::Float, "ult", x, constant(low)?)?;
            let minus_one = constant(-1.0)?;
            let less = self.compare(Kind::Float, "lt", x, minus_one)?;
            let at_least_minus_one = self.op("arith.select", &[less, minus_one, x], ty, &[])?;
            let special = binary("arith.addf", at_least_minus_one, constant(1.0)?)?;
            return self.op("arith.select", &[below, special, result], ty, &[]);
        }
        let underflow = self.compare(Kind::Float, "lt", x, constant(low)?)?;
        let result = self.op(
            "arith.select",
            &[underflow, constant(0.0)?, result],
            ty,
            &[],
        )?;
        // Above `high`, and for NaN (an unordered comparison): x + inf, which is +inf or NaN.
        let overflow = self.compare(Kind::Float, "ugt", x, constant(high)?)?;
        let special = binary("arith.addf", x, constant(f64::INFINITY)?)?;
        self.op("arith.select", &[overflow, special, result], ty, &[])
    }

    /// A constant tensor of `ty` with every element `value` (-1 is all ones for bool).
    fn splat(&self, ty: Type<'c>, value: f64) -> LResult<'c, 'a> {
        if shape(ty)?.contains(&DYNAMIC) {
            let scalar_type: Type<'c> = RankedTensorType::new(&[], element_type(ty)?, None).into();
            let scalar = self.splat(scalar_type, value)?;
            let scalar = self.op("tensor.extract", &[scalar], element_type(ty)?, &[])?;
            return self.fill(scalar, ty);
        }
        let text = match kind(ty)? {
            Kind::Float if value.is_infinite() => {
                let bits = match (bit_width(ty)? == 64, value > 0.0) {
                    (true, true) => "0x7FF0000000000000",
                    (true, false) => "0xFFF0000000000000",
                    (false, true) => "0x7F800000",
                    (false, false) => "0xFF800000",
                };
                format!("dense<{bits}> : {ty}")
            }
            Kind::Float => format!("dense<{value:.17e}> : {ty}"),
            Kind::Bool => format!(
                "dense<{}> : {ty}",
                if value != 0.0 { "true" } else { "false" }
            ),
            Kind::Int => format!("dense<{}> : {ty}", value as i64),
        };
        let attribute = self.attribute(&text)?;
        self.op("arith.constant", &[], ty, &[("value", attribute)])
    }

    fn compare(
        &self,
        k: Kind,
        predicate: &str,
        lhs: Value<'c, '_>,
        rhs: Value<'c, '_>,
    ) -> LResult<'c, 'a> {
        let ty = bool_type(self.context, lhs.r#type())?;
        let (name, code) = match k {
            Kind::Float => (
                "arith.cmpf",
                match predicate {
                    "eq" => 1,
                    "gt" => 2,
                    "ge" => 3,
                    "lt" => 4,
                    "le" => 5,
                    "ugt" => 9,
                    "ult" => 11,
                    "ne" => 13,
                    other => return Err(format!("unknown predicate {other}")),
                },
            ),
            Kind::Int | Kind::Bool => (
                "arith.cmpi",
                match (predicate, k) {
                    ("eq", _) => 0,
                    ("ne", _) => 1,
                    ("lt", Kind::Int) => 2,
                    ("le", Kind::Int) => 3,
                    ("gt", Kind::Int) => 4,
                    ("ge", Kind::Int) => 5,
                    ("lt", _) => 6,
                    ("le", _) => 7,
                    ("gt", _) => 8,
                    ("ge", _) => 9,
                    (other, _) => return Err(format!("unknown predicate {other}")),
                },
            ),
        };
        let predicate =
            IntegerAttribute::new(IntegerType::new(self.context, 64).into(), code).into();
        self.op(name, &[lhs, rhs], ty, &[("predicate", predicate)])
    }

    /// `x ** exponent` by repeated squaring; a negative exponent divides one by the power.
    fn integer_pow(&self, x: Value<'c, '_>, exponent: i64, ty: Type<'c>) -> LResult<'c, 'a> {
        let k = kind(ty)?;
        let mul = if k == Kind::Float {
            "arith.mulf"
        } else {
            "arith.muli"
        };
        let mut result: Option<Value<'c, 'a>> = None;
        let mut power: Value<'c, 'a> = unsafe { Value::from_raw(x.to_raw()) };
        let mut n = exponent.unsigned_abs();
        while n > 0 {
            if n & 1 == 1 {
                result = Some(match result {
                    None => power,
                    Some(acc) => self.op(mul, &[acc, power], ty, &[])?,
                });
            }
            n >>= 1;
            if n > 0 {
                power = self.op(mul, &[power, power], ty, &[])?;
            }
        }
        let result = match result {
            Some(r) => r,
            None => self.splat(ty, 1.0)?,
        };
        if exponent < 0 {
            let one = self.splat(ty, 1.0)?;
            let div = if k == Kind::Float {
                "arith.divf"
            } else {
                "arith.divsi"
            };
            return self.op(div, &[one, result], ty, &[]);
        }
        Ok(result)
    }

    fn convert(&self, x: Value<'c, '_>, to: Type<'c>) -> LResult<'c, 'a> {
        let from = x.r#type();
        let (from_kind, to_kind) = (kind(from)?, kind(to)?);
        let (from_width, to_width) = (bit_width(from)?, bit_width(to)?);
        if from == to {
            return Ok(unsafe { Value::from_raw(x.to_raw()) });
        }
        let name = match (from_kind, to_kind) {
            (Kind::Float, Kind::Float) if to_width > from_width => "arith.extf",
            (Kind::Float, Kind::Float) => "arith.truncf",
            (Kind::Int, Kind::Float) => "arith.sitofp",
            (Kind::Bool, Kind::Float) => "arith.uitofp",
            (Kind::Float, Kind::Int) => "arith.fptosi",
            (Kind::Int, Kind::Int) if to_width > from_width => "arith.extsi",
            (Kind::Int, Kind::Int) => "arith.trunci",
            (Kind::Bool, Kind::Int) => "arith.extui",
            (from_kind, Kind::Bool) => {
                let zero = self.splat(from, 0.0)?;
                return self.compare(from_kind, "ne", x, zero);
            }
        };
        self.op(name, &[x], to, &[])
    }

    /// `tensor.empty` of `ty`.
    fn empty(&self, ty: Type<'c>) -> LResult<'c, 'a> {
        let dynamic = shape(ty)?.iter().filter(|d| **d == DYNAMIC).count();
        let sizes = if dynamic == 0 {
            &[][..]
        } else if dynamic == self.sizes.len() {
            &self.sizes[..]
        } else {
            return Err(format!("no sizes for the dynamic dimensions of {ty}"));
        };
        self.op("tensor.empty", sizes, ty, &[])
    }

    /// A `linalg.generic` with one input, one output and a body built by `body`.
    fn generic(
        &self,
        input: Value<'c, '_>,
        init: Value<'c, '_>,
        maps: &str,
        iterators: &str,
        body: impl FnOnce(&Block<'c>, Value<'c, '_>, Value<'c, '_>) -> Result<Value<'c, 'c>, String>,
    ) -> LResult<'c, 'a> {
        let input_element = element_type(input.r#type())?;
        let output_element = element_type(init.r#type())?;
        let block = Block::new(&[
            (input_element, self.location),
            (output_element, self.location),
        ]);
        let (a, b) = (
            block.argument(0).map_err(|e| e.to_string())?,
            block.argument(1).map_err(|e| e.to_string())?,
        );
        let yielded = body(&block, a.into(), b.into())?;
        block.append_operation(
            OperationBuilder::new("linalg.yield", self.location)
                .add_operands(&[yielded])
                .build()
                .map_err(|e| e.to_string())?,
        );
        let region = Region::new();
        region.append_block(block);
        let attributes = [
            ("indexing_maps", self.attribute(maps)?),
            ("iterator_types", self.attribute(iterators)?),
            ("operandSegmentSizes", self.attribute("array<i32: 1, 1>")?),
        ];
        self.build(
            OperationBuilder::new("linalg.generic", self.location),
            &[input, init],
            init.r#type(),
            &attributes,
            vec![region],
        )
    }

    /// A `linalg.generic` over batch, lhs-free, rhs-free and contracting dimensions that
    /// multiplies and accumulates into a zero-filled result.
    fn dot_general(
        &self,
        operation: OperationRef<'c, 'a>,
        lhs: Value<'c, '_>,
        rhs: Value<'c, '_>,
        ty: Type<'c>,
    ) -> LResult<'c, 'a> {
        let attribute = |name: &str| -> Result<Vec<i64>, String> {
            i64_array(operation.attribute(name).map_err(|e| e.to_string())?)
        };
        let (lhs_batch, rhs_batch) = (
            attribute("lhs_batching_dimensions")?,
            attribute("rhs_batching_dimensions")?,
        );
        let (lhs_contracting, rhs_contracting) = (
            attribute("lhs_contracting_dimensions")?,
            attribute("rhs_contracting_dimensions")?,
        );
        let (lhs_rank, rhs_rank) = (
            shape(lhs.r#type())?.len() as i64,
            shape(rhs.r#type())?.len() as i64,
        );
        let lhs_free: Vec<i64> = (0..lhs_rank)
            .filter(|d| !lhs_batch.contains(d) && !lhs_contracting.contains(d))
            .collect();
        let rhs_free: Vec<i64> = (0..rhs_rank)
            .filter(|d| !rhs_batch.contains(d) && !rhs_contracting.contains(d))
            .collect();
        let (nb, nl, nr, nc) = (
            lhs_batch.len(),
            lhs_free.len(),
            rhs_free.len(),
            lhs_contracting.len(),
        );
        // A large float product of two matrices is a `linalg.matmul` (loops m, n, k), which
        // `matmul-kernel` replaces by its tiled kernel. Being a named op, it also keeps
        // elementwise producers from fusing into it (they would be recomputed per `k`).
        let element = element_type(ty)?;
        let sizes = shape(ty)?;
        let work = |contracted: i64| sizes.iter().product::<i64>().saturating_mul(contracted);
        let is_matmul = (element.is_f32() || element.is_f64())
            && (nb, nl, nr, nc) == (0, 1, 1, 1)
            && work(shape(lhs.r#type())?[lhs_contracting[0] as usize])
                >= super::matmul_kernel::MIN_WORK as i64;
        let (maps, iterators, name) = if is_matmul {
            let lhs_map = if lhs_free[0] == 0 { "d0, d2" } else { "d2, d0" };
            let rhs_map = if rhs_free[0] == 1 { "d2, d1" } else { "d1, d2" };
            (
                format!(
                    "[affine_map<(d0, d1, d2) -> ({lhs_map})>, affine_map<(d0, d1, d2) -> ({rhs_map})>, affine_map<(d0, d1, d2) -> (d0, d1)>]"
                ),
                None,
                "linalg.matmul",
            )
        } else {
            let (maps, iterators) = contraction_maps(
                (&lhs_batch, &lhs_free, &lhs_contracting, lhs_rank),
                (&rhs_batch, &rhs_free, &rhs_contracting, rhs_rank),
            );
            (maps, Some(iterators), "linalg.generic")
        };
        let k = kind(ty)?;
        let zero = self.attribute(&format!(
            "{} : {element}",
            if k == Kind::Float { "0.0" } else { "0" }
        ))?;
        let zero = self.op("arith.constant", &[], element, &[("value", zero)])?;
        let init = self.fill(zero, ty)?;
        let block = Block::new(&[
            (element, self.location),
            (element, self.location),
            (element, self.location),
        ]);
        let arguments: Vec<Value> = (0..3)
            .map(|i| block.argument(i).map(Into::into).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let (mul, add) = match k {
            Kind::Float => ("arith.mulf", "arith.addf"),
            Kind::Int => ("arith.muli", "arith.addi"),
            Kind::Bool => ("arith.andi", "arith.ori"),
        };
        // Float products may fuse into the sums, and sums reassociate (as XLA's), so LLVM
        // uses FMAs and vectorises a contraction that runs innermost.
        let fastmath: Vec<(Identifier<'c>, Attribute<'c>)> = if k == Kind::Float {
            vec![(
                Identifier::new(self.context, "fastmath"),
                self.attribute("#arith.fastmath<reassoc,contract>")?,
            )]
        } else {
            vec![]
        };
        let product = block.append_operation(
            OperationBuilder::new(mul, self.location)
                .add_operands(&[arguments[0], arguments[1]])
                .add_results(&[element])
                .add_attributes(&fastmath)
                .build()
                .map_err(|e| e.to_string())?,
        );
        let product: Value = product.result(0).map_err(|e| e.to_string())?.into();
        let sum = block.append_operation(
            OperationBuilder::new(add, self.location)
                .add_operands(&[arguments[2], product])
                .add_results(&[element])
                .add_attributes(&fastmath)
                .build()
                .map_err(|e| e.to_string())?,
        );
        let sum: Value = sum.result(0).map_err(|e| e.to_string())?.into();
        block.append_operation(
            OperationBuilder::new("linalg.yield", self.location)
                .add_operands(&[sum])
                .build()
                .map_err(|e| e.to_string())?,
        );
        let region = Region::new();
        region.append_block(block);
        let mut attributes = vec![
            ("indexing_maps", self.attribute(&maps)?),
            ("operandSegmentSizes", self.attribute("array<i32: 2, 1>")?),
        ];
        if let Some(iterators) = iterators {
            attributes.push(("iterator_types", self.attribute(&iterators)?));
        }
        self.build(
            OperationBuilder::new(name, self.location),
            &[lhs, rhs, init],
            ty,
            &attributes,
            vec![region],
        )
    }

    /// A `linalg.generic` that copies `x` into a new tensor of `ty`: result element `(d0, ...)`
    /// is `x[input[0], ...]` (affine expressions of the result's dimensions).
    fn copy_generic(&self, x: Value<'c, '_>, input: &[String], ty: Type<'c>) -> LResult<'c, 'a> {
        let rank = shape(ty)?.len();
        let all: Vec<String> = (0..rank).map(|d| format!("d{d}")).collect();
        let maps = format!(
            "[affine_map<({all}) -> ({})>, affine_map<({all}) -> ({all})>]",
            input.join(", "),
            all = all.join(", ")
        );
        let iterators = format!(
            "[{}]",
            vec!["#linalg.iterator_type<parallel>"; rank].join(", ")
        );
        let init = self.empty(ty)?;
        self.generic(x, init, &maps, &iterators, |_, a, _| {
            Ok(unsafe { Value::from_raw(a.to_raw()) })
        })
    }

    /// A tensor of `ty` filled with the scalar `value` (`tensor.empty` + `linalg.fill`).
    fn fill(&self, value: Value<'c, '_>, ty: Type<'c>) -> LResult<'c, 'a> {
        let empty = self.empty(ty)?;
        self.build(
            OperationBuilder::new("linalg.fill", self.location),
            &[value, empty],
            ty,
            &[("operandSegmentSizes", self.attribute("array<i32: 1, 1>")?)],
            vec![fill_region(element_type(ty)?, self.location)?],
        )
    }

    fn broadcast(&self, x: Value<'c, '_>, dims: &[i64], ty: Type<'c>) -> LResult<'c, 'a> {
        let input_shape = shape(x.r#type())?;
        let output_shape = shape(ty)?;
        let picked: Vec<String> = dims
            .iter()
            .zip(&input_shape)
            .map(|(d, size)| {
                if *size == 1 && output_shape[*d as usize] != 1 {
                    String::from("0")
                } else {
                    format!("d{d}")
                }
            })
            .collect();
        self.copy_generic(x, &picked, ty)
    }

    fn reduce(
        &self,
        x: Value<'c, '_>,
        reduce_kind: &str,
        axes: &[i64],
        ty: Type<'c>,
    ) -> LResult<'c, 'a> {
        let input_shape = shape(x.r#type())?;
        if let Some(chunks) = split_reduction_chunks(&input_shape, axes) {
            // Reduce `chunks` contiguous pieces of the input (a parallel loop over the pieces),
            // then the partial results.
            let size: i64 = input_shape.iter().product();
            let pieces = RankedTensorType::new(
                &[chunks as u64, (size / chunks) as u64],
                element_type(x.r#type())?,
                None,
            );
            let pieces = self.reshape(x, pieces.into())?;
            let partial = RankedTensorType::new(&[chunks as u64], element_type(ty)?, None);
            let partial = self.reduce(pieces, reduce_kind, &[1], partial.into())?;
            return self.reduce(partial, reduce_kind, &[0], ty);
        }
        let k = kind(ty)?;
        let rank = input_shape.len();
        let element = element_type(ty)?;
        let identity = match (reduce_kind, k) {
            ("sum", _) => String::from(if k == Kind::Float { "0.0" } else { "0" }),
            ("max", Kind::Float) => String::from("0xFF800000"),
            ("min", Kind::Float) => String::from("0x7F800000"),
            ("max", Kind::Int) => format!(
                "{}",
                if bit_width(ty)? == 64 {
                    i64::MIN
                } else {
                    i32::MIN as i64
                }
            ),
            ("min", Kind::Int) => format!(
                "{}",
                if bit_width(ty)? == 64 {
                    i64::MAX
                } else {
                    i32::MAX as i64
                }
            ),
            ("max", Kind::Bool) => String::from("0"),
            ("min", Kind::Bool) => String::from("1"),
            ("prod", Kind::Float) => String::from("1.0"),
            ("prod", _) => String::from("1"),
            (other, _) => return Err(format!("unknown reduction {other}")),
        };
        let identity = if k == Kind::Float && bit_width(ty)? == 64 && identity.starts_with("0x") {
            String::from(if reduce_kind == "max" {
                "0xFFF0000000000000"
            } else {
                "0x7FF0000000000000"
            })
        } else {
            identity
        };
        let scalar = self.attribute(&format!("{identity} : {element}"))?;
        let scalar = self.op("arith.constant", &[], element, &[("value", scalar)])?;
        let fill = self.fill(scalar, ty)?;
        let all: Vec<String> = (0..rank).map(|d| format!("d{d}")).collect();
        let kept: Vec<String> = (0..rank)
            .filter(|d| !axes.contains(&(*d as i64)))
            .map(|d| format!("d{d}"))
            .collect();
        let maps = format!(
            "[affine_map<({}) -> ({})>, affine_map<({}) -> ({})>]",
            all.join(", "),
            all.join(", "),
            all.join(", "),
            kept.join(", ")
        );
        let iterators: Vec<&str> = (0..rank)
            .map(|d| {
                if axes.contains(&(d as i64)) {
                    "#linalg.iterator_type<reduction>"
                } else {
                    "#linalg.iterator_type<parallel>"
                }
            })
            .collect();
        let op = match (reduce_kind, k) {
            ("sum", Kind::Float) => "arith.addf",
            ("sum", Kind::Int) => "arith.addi",
            ("sum", Kind::Bool) => "arith.ori",
            ("max", Kind::Float) => "arith.maximumf",
            ("min", Kind::Float) => "arith.minimumf",
            ("max", Kind::Int) => "arith.maxsi",
            ("min", Kind::Int) => "arith.minsi",
            ("max", Kind::Bool) => "arith.maxui",
            ("prod", Kind::Float) => "arith.mulf",
            ("prod", Kind::Int) => "arith.muli",
            ("prod", Kind::Bool) => "arith.andi",
            _ => "arith.minui",
        };
        let location = self.location;
        // Float sums and products may be reassociated (as XLA does), so LLVM vectorises them.
        let fastmath: Vec<(Identifier<'c>, Attribute<'c>)> =
            if matches!(op, "arith.addf" | "arith.mulf") {
                vec![(
                    Identifier::new(self.context, "fastmath"),
                    self.attribute("#arith.fastmath<reassoc>")?,
                )]
            } else {
                vec![]
            };
        self.generic(
            x,
            fill,
            &maps,
            &format!("[{}]", iterators.join(", ")),
            |block, a, b| {
                let combined = OperationBuilder::new(op, location)
                    .add_operands(&[a, b])
                    .add_results(&[element])
                    .add_attributes(&fastmath)
                    .build()
                    .map_err(|e| e.to_string())?;
                let combined = block.append_operation(combined);
                let value: Value<'c, '_> = combined.result(0).map_err(|e| e.to_string())?.into();
                Ok(unsafe { Value::from_raw(value.to_raw()) })
            },
        )
    }

    /// Reshape through a rank-1 (or rank-0) tensor: collapse everything, then expand.
    fn reshape(&self, x: Value<'c, '_>, ty: Type<'c>) -> LResult<'c, 'a> {
        let from = shape(x.r#type())?;
        let to = shape(ty)?;
        let element = element_type(ty)?;
        let size: i64 = to.iter().product();
        let flat_shape: Vec<i64> = if from.is_empty() || to.is_empty() {
            vec![]
        } else {
            vec![size]
        };
        let flat: Type<'c> = RankedTensorType::new(
            &flat_shape.iter().map(|d| *d as u64).collect::<Vec<_>>(),
            element,
            None,
        )
        .into();
        let reassociation = |rank: usize| -> String {
            if flat_shape.is_empty() {
                String::from("[]")
            } else {
                format!(
                    "[[{}]]",
                    (0..rank)
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        };
        let collapsed = if from.len() == flat_shape.len() {
            unsafe { Value::from_raw(x.to_raw()) }
        } else {
            let association = self.attribute(&reassociation(from.len()))?;
            self.op(
                "tensor.collapse_shape",
                &[x],
                flat,
                &[("reassociation", association)],
            )?
        };
        if to.len() == flat_shape.len() {
            return Ok(collapsed);
        }
        let association = self.attribute(&reassociation(to.len()))?;
        let output_shape: Attribute<'c> = DenseI64ArrayAttribute::new(self.context, &to).into();
        self.op(
            "tensor.expand_shape",
            &[collapsed],
            ty,
            &[
                ("reassociation", association),
                ("static_output_shape", output_shape),
            ],
        )
    }
}

/// Reductions of all of an input of at least this many elements are split in pieces.
const SPLIT_REDUCTION: i64 = 262_144;

/// How many contiguous pieces a reduction over every axis of a static `shape` is split into, so
/// that threads can reduce the pieces: the largest divisor of its size up to 64 that leaves
/// pieces of at least 4,096 elements. None for smaller or partial reductions, and for sizes
/// without such a divisor.
fn split_reduction_chunks(shape: &[i64], axes: &[i64]) -> Option<i64> {
    let size: i64 = shape.iter().product();
    let every_axis = (0..shape.len() as i64).all(|axis| axes.contains(&axis));
    if !every_axis || shape.contains(&DYNAMIC) || size < SPLIT_REDUCTION {
        return None;
    }
    (8..=64)
        .rev()
        .find(|chunks| size % chunks == 0 && size / chunks >= 4096)
}

fn fill_region<'c>(element: Type<'c>, location: Location<'c>) -> Result<Region<'c>, String> {
    let block = Block::new(&[(element, location), (element, location)]);
    let value = block.argument(0).map_err(|e| e.to_string())?;
    block.append_operation(
        OperationBuilder::new("linalg.yield", location)
            .add_operands(&[value.into()])
            .build()
            .map_err(|e| e.to_string())?,
    );
    let region = Region::new();
    region.append_block(block);
    Ok(region)
}

fn tensor(ty: Type<'_>) -> Result<RankedTensorType<'_>, String> {
    RankedTensorType::try_from(ty).map_err(|_| format!("expected a ranked tensor, found {ty}"))
}

fn element_type(ty: Type<'_>) -> Result<Type<'_>, String> {
    Ok(tensor(ty)?.element())
}

/// A dynamic dimension in `shape`'s result (MLIR's `ShapedType::kDynamic`).
const DYNAMIC: i64 = i64::MIN;

/// The dimensions of a ranked tensor type, `DYNAMIC` for a dynamic one.
/// The indexing maps and iterator types of a contraction's `linalg.generic`: loops over the
/// batch, lhs-free, rhs-free and contracting dimensions. Dimensions are `(batch, free,
/// contracting, rank)` of each operand.
fn contraction_maps(
    (lhs_batch, lhs_free, lhs_contracting, lhs_rank): (&[i64], &[i64], &[i64], i64),
    (rhs_batch, rhs_free, rhs_contracting, rhs_rank): (&[i64], &[i64], &[i64], i64),
) -> (String, String) {
    let (nb, nl, nr, nc) = (
        lhs_batch.len(),
        lhs_free.len(),
        rhs_free.len(),
        lhs_contracting.len(),
    );
    let total = nb + nl + nr + nc;
    // Loop order: batch, lhs free, contracting, rhs free; the innermost loop then walks
    // the rhs and the result contiguously (for `x @ w`, `i, k, j`), which vectorises.
    // When both operands end with a contracted dimension (`x @ w.T`, as reverse mode
    // makes), the contraction goes innermost instead: a dot product along both rows.
    let contracting_inner = nr > 0
        && nc > 0
        && lhs_contracting.contains(&(lhs_rank - 1))
        && rhs_contracting.contains(&(rhs_rank - 1));
    let (c_off, r_off) = if contracting_inner {
        (nb + nl + nr, nb + nl)
    } else {
        (nb + nl, nb + nl + nc)
    };
    let map_of = |rank: i64,
                  batch: &[i64],
                  free: &[i64],
                  free_offset: usize,
                  contracting: &[i64]|
     -> String {
        let dims: Vec<String> = (0..rank)
            .map(|d| {
                if let Some(k) = batch.iter().position(|b| *b == d) {
                    format!("d{k}")
                } else if let Some(k) = contracting.iter().position(|c| *c == d) {
                    format!("d{}", c_off + k)
                } else {
                    format!(
                        "d{}",
                        free_offset + free.iter().position(|f| *f == d).unwrap_or(0)
                    )
                }
            })
            .collect();
        dims.join(", ")
    };
    let all: Vec<String> = (0..total).map(|d| format!("d{d}")).collect();
    let out: Vec<String> = (0..nb + nl)
        .chain(r_off..r_off + nr)
        .map(|d| format!("d{d}"))
        .collect();
    let maps = format!(
        "[affine_map<({all}) -> ({})>, affine_map<({all}) -> ({})>, affine_map<({all}) -> ({})>]",
        map_of(lhs_rank, lhs_batch, lhs_free, nb, lhs_contracting),
        map_of(rhs_rank, rhs_batch, rhs_free, r_off, rhs_contracting),
        out.join(", "),
        all = all.join(", ")
    );
    let iterators: Vec<&str> = (0..total)
        .map(|d| {
            if (c_off..c_off + nc).contains(&d) {
                "#linalg.iterator_type<reduction>"
            } else {
                "#linalg.iterator_type<parallel>"
            }
        })
        .collect();
    (maps, format!("[{}]", iterators.join(", ")))
}

/// How `exp`, when it is a float32 `fx.exp`, is computed. When its only use is a product
/// `k * exp(x)` (or `exp(x) * k`) with a splat `k` in [2^-20, 2^20], the exp computes the
/// product, its polynomial's coefficients carrying `k`: one rounding and one multiplication
/// fewer.
fn exp_form(exp: MlirOperation) -> Option<ExpForm> {
    if op_name(exp) != "fx.exp" {
        return None;
    }
    let result = results(exp)[0];
    let ty = RankedTensorType::try_from(value_type(result)).ok()?;
    if !ty.element().is_f32() {
        return None;
    }
    let x = operands(exp)[0];
    let scaled = match operand_uses(result)[..] {
        [(product, position)] if op_name(product) == "fx.mul" => {
            splat_of(operands(product)[1 - position])
                .filter(|k| (2f64.powi(-20)..=2f64.powi(20)).contains(k))
                .map(|k| (product, k))
        }
        _ => None,
    };
    let (product, scale) = scaled.map_or((None, 1.0), |(product, k)| (Some(product), k));
    // The values observed: the product's, when the exp computes it.
    let observed = product.map_or(result, |product| results(product)[0]);
    Some(ExpForm {
        product,
        scale,
        bound: observed_bound(observed, x, 6),
    })
}

/// The least `c` known to hold `x <= c` (or x NaN) wherever an element of `value` is
/// observed; +inf when none is known. A `select` observes the arm that holds `value` only
/// where its predicate takes that arm, and a predicate that compares `x` with a splat `c`
/// bounds `x` there; elementwise arithmetic observes its operands where its result is
/// observed. `depth` limits the users followed.
fn observed_bound(value: MlirValue, x: MlirValue, depth: usize) -> f64 {
    let users = operand_uses(value);
    if depth == 0 || users.is_empty() {
        return f64::INFINITY;
    }
    let mut bound = f64::NEG_INFINITY;
    for (user, position) in users {
        let further = || observed_bound(results(user)[0], x, depth - 1);
        let here = match op_name(user).as_str() {
            "fx.select" if position > 0 => {
                arm_bound(operands(user)[0], x, position == 1).min(further())
            }
            "fx.add" | "fx.sub" | "fx.mul" | "fx.div" | "fx.neg" => further(),
            _ => f64::INFINITY,
        };
        bound = bound.max(here);
    }
    bound
}

/// The bound `c` on `x` where `predicate` holds (`holds`) or fails, when `predicate` compares
/// `x` with a splat `c` and that case bounds `x` from above (or leaves NaN); +inf otherwise.
fn arm_bound(predicate: MlirValue, x: MlirValue, holds: bool) -> f64 {
    let Some(compare) = defining_op(predicate).filter(|op| op_name(*op) == "fx.compare") else {
        return f64::INFINITY;
    };
    let relation = unsafe { OperationRef::from_raw(compare) }
        .attribute("predicate")
        .ok()
        .and_then(|a| StringAttribute::try_from(a).ok())
        .map(|a| a.value().to_string())
        .unwrap_or_default();
    let args = operands(compare);
    // The relation as `x relation c`.
    let (relation, c) = if args[0].ptr == x.ptr {
        (relation.as_str(), splat_of(args[1]))
    } else if args[1].ptr == x.ptr {
        let mirrored = match relation.as_str() {
            "lt" => "gt",
            "le" => "ge",
            "gt" => "lt",
            "ge" => "le",
            other => other,
        };
        (mirrored, splat_of(args[0]))
    } else {
        return f64::INFINITY;
    };
    match (c, relation, holds) {
        (Some(c), "lt" | "le" | "eq", true) | (Some(c), "gt" | "ge" | "ne", false)
            if !c.is_nan() =>
        {
            c
        }
        _ => f64::INFINITY,
    }
}

/// The largest float32 at most `value`.
fn f32_at_most(value: f64) -> f64 {
    let near = value as f32;
    f64::from(if f64::from(near) > value {
        near.next_down()
    } else {
        near
    })
}

fn shape(ty: Type<'_>) -> Result<Vec<i64>, String> {
    let tensor = tensor(ty)?;
    (0..tensor.rank())
        .map(|d| match tensor.dim_size(d).map_err(|e| e.to_string())? {
            DimSize::Static(size) => Ok(size as i64),
            DimSize::Dynamic => Ok(DYNAMIC),
        })
        .collect()
}

fn kind(ty: Type<'_>) -> Result<Kind, String> {
    let element = element_type(ty)?;
    if element.is_float() {
        Ok(Kind::Float)
    } else if element.is_integer() {
        Ok(
            if IntegerType::try_from(element)
                .map(|i| i.width())
                .unwrap_or(0)
                == 1
            {
                Kind::Bool
            } else {
                Kind::Int
            },
        )
    } else {
        Err(format!("unsupported element type {element}"))
    }
}

fn bit_width(ty: Type<'_>) -> Result<u32, String> {
    let element = element_type(ty)?;
    if element.is_f32() {
        return Ok(32);
    }
    if element.is_f64() {
        return Ok(64);
    }
    IntegerType::try_from(element)
        .map(|i| i.width())
        .map_err(|_| format!("unsupported element type {element}"))
}

fn bool_type<'c>(context: &'c Context, ty: Type<'c>) -> Result<Type<'c>, String> {
    let dims: Vec<u64> = shape(ty)?.iter().map(|d| *d as u64).collect();
    Ok(RankedTensorType::new(&dims, IntegerType::new(context, 1).into(), None).into())
}
