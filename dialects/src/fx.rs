//! Builders for `fx` ops, one function per op, named after its mnemonic.
//!
//! Binary elementwise ops take operands of one type (the specialiser broadcasts and converts
//! first); the result has that type. Shape-changing ops take their result type.

use melior::{
    Context,
    ir::{
        Attribute, Identifier, Location, Operation, Type, Value, ValueLike,
        attribute::{DenseI64ArrayAttribute, IntegerAttribute, StringAttribute},
        operation::OperationBuilder,
        r#type::IntegerType,
    },
};

fn build<'c>(
    name: &str,
    location: Location<'c>,
    operands: &[Value<'c, '_>],
    result: Type<'c>,
    attributes: &[(&str, Attribute<'c>)],
) -> Operation<'c> {
    let context = location.context();
    let attributes: Vec<_> = attributes
        .iter()
        .map(|(name, value)| (Identifier::new(unsafe { context.to_ref() }, name), *value))
        .collect();
    OperationBuilder::new(name, location)
        .add_operands(operands)
        .add_attributes(&attributes)
        .add_results(&[result])
        .build()
        .expect("valid fx operation")
}

macro_rules! binary {
    ($($name:ident => $mnemonic:literal),* $(,)?) => {$(
        #[doc = concat!("Creates an `", $mnemonic, "` operation.")]
        pub fn $name<'c>(location: Location<'c>, lhs: Value<'c, '_>, rhs: Value<'c, '_>) -> Operation<'c> {
            build($mnemonic, location, &[lhs, rhs], lhs.r#type(), &[])
        }
    )*};
}

macro_rules! unary {
    ($($name:ident => $mnemonic:literal),* $(,)?) => {$(
        #[doc = concat!("Creates an `", $mnemonic, "` operation.")]
        pub fn $name<'c>(location: Location<'c>, operand: Value<'c, '_>) -> Operation<'c> {
            build($mnemonic, location, &[operand], operand.r#type(), &[])
        }
    )*};
}

binary! {
    add => "fx.add", sub => "fx.sub", mul => "fx.mul", div => "fx.div", rem => "fx.rem",
    pow => "fx.pow", max => "fx.max", min => "fx.min", and => "fx.and", or => "fx.or",
    atan2 => "fx.atan2",
}

unary! {
    neg => "fx.neg", exp => "fx.exp", log => "fx.log", log1p => "fx.log1p", expm1 => "fx.expm1",
    sin => "fx.sin", cos => "fx.cos", tanh => "fx.tanh", sqrt => "fx.sqrt", abs => "fx.abs",
    sign => "fx.sign", floor => "fx.floor", not => "fx.not", round => "fx.round",
    asin => "fx.asin", acos => "fx.acos", atan => "fx.atan", erf => "fx.erf",
}

/// Creates an `fx.constant` operation holding `value` (a dense elements attribute).
pub fn constant<'c>(
    location: Location<'c>,
    value: Attribute<'c>,
    result: Type<'c>,
) -> Operation<'c> {
    build("fx.constant", location, &[], result, &[("value", value)])
}

/// Creates an `fx.integer_pow` operation: `operand ** exponent` for a static integer.
pub fn integer_pow<'c>(
    context: &'c Context,
    location: Location<'c>,
    operand: Value<'c, '_>,
    exponent: i64,
) -> Operation<'c> {
    let exponent = IntegerAttribute::new(IntegerType::new(context, 64).into(), exponent).into();
    build(
        "fx.integer_pow",
        location,
        &[operand],
        operand.r#type(),
        &[("exponent", exponent)],
    )
}

/// Comparison predicates of `fx.compare`, as JAX's `lax` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Predicate {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Predicate {
    pub fn as_str(self) -> &'static str {
        match self {
            Predicate::Eq => "eq",
            Predicate::Ne => "ne",
            Predicate::Lt => "lt",
            Predicate::Le => "le",
            Predicate::Gt => "gt",
            Predicate::Ge => "ge",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Predicate::Eq,
            Predicate::Ne,
            Predicate::Lt,
            Predicate::Le,
            Predicate::Gt,
            Predicate::Ge,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}

/// Creates an `fx.compare` operation; the result is a bool (`i1`) tensor of the operands' shape.
pub fn compare<'c>(
    context: &'c Context,
    location: Location<'c>,
    predicate: Predicate,
    lhs: Value<'c, '_>,
    rhs: Value<'c, '_>,
    result: Type<'c>,
) -> Operation<'c> {
    let predicate = StringAttribute::new(context, predicate.as_str()).into();
    build(
        "fx.compare",
        location,
        &[lhs, rhs],
        result,
        &[("predicate", predicate)],
    )
}

/// Creates an `fx.select` operation: `pred ? on_true : on_false`, elementwise.
pub fn select<'c>(
    location: Location<'c>,
    pred: Value<'c, '_>,
    on_true: Value<'c, '_>,
    on_false: Value<'c, '_>,
) -> Operation<'c> {
    build(
        "fx.select",
        location,
        &[pred, on_true, on_false],
        on_true.r#type(),
        &[],
    )
}

/// Creates an `fx.convert` operation (a dtype conversion of the same shape).
pub fn convert<'c>(
    location: Location<'c>,
    operand: Value<'c, '_>,
    result: Type<'c>,
) -> Operation<'c> {
    build("fx.convert", location, &[operand], result, &[])
}

/// Creates an `fx.broadcast_in_dim` operation: operand dimension `i` becomes result dimension
/// `broadcast_dimensions[i]` (its size is 1 or the result's).
pub fn broadcast_in_dim<'c>(
    context: &'c Context,
    location: Location<'c>,
    operand: Value<'c, '_>,
    broadcast_dimensions: &[i64],
    result: Type<'c>,
) -> Operation<'c> {
    let dimensions = DenseI64ArrayAttribute::new(context, broadcast_dimensions).into();
    build(
        "fx.broadcast_in_dim",
        location,
        &[operand],
        result,
        &[("broadcast_dimensions", dimensions)],
    )
}

/// Creates an `fx.reshape` operation (same element count, row-major order).
pub fn reshape<'c>(
    location: Location<'c>,
    operand: Value<'c, '_>,
    result: Type<'c>,
) -> Operation<'c> {
    build("fx.reshape", location, &[operand], result, &[])
}

/// Reductions of `fx.reduce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Max,
    Min,
    Prod,
}

impl ReduceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "max",
            ReduceKind::Min => "min",
            ReduceKind::Prod => "prod",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ReduceKind::Sum,
            ReduceKind::Max,
            ReduceKind::Min,
            ReduceKind::Prod,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Creates an `fx.reduce` operation over `axes` (sorted, distinct); those dimensions are removed.
pub fn reduce<'c>(
    context: &'c Context,
    location: Location<'c>,
    kind: ReduceKind,
    operand: Value<'c, '_>,
    axes: &[i64],
    result: Type<'c>,
) -> Operation<'c> {
    let kind = StringAttribute::new(context, kind.as_str()).into();
    let axes = DenseI64ArrayAttribute::new(context, axes).into();
    build(
        "fx.reduce",
        location,
        &[operand],
        result,
        &[("kind", kind), ("axes", axes)],
    )
}

/// Creates an `fx.slice` operation: elements `start[d] + k * stride[d] < limit[d]` of each dimension.
pub fn slice<'c>(
    context: &'c Context,
    location: Location<'c>,
    operand: Value<'c, '_>,
    start_indices: &[i64],
    limit_indices: &[i64],
    strides: &[i64],
    result: Type<'c>,
) -> Operation<'c> {
    let start = DenseI64ArrayAttribute::new(context, start_indices).into();
    let limit = DenseI64ArrayAttribute::new(context, limit_indices).into();
    let strides = DenseI64ArrayAttribute::new(context, strides).into();
    build(
        "fx.slice",
        location,
        &[operand],
        result,
        &[
            ("start_indices", start),
            ("limit_indices", limit),
            ("strides", strides),
        ],
    )
}

/// Creates an `fx.stop_gradient` operation (the identity, with a zero derivative).
pub fn stop_gradient<'c>(location: Location<'c>, operand: Value<'c, '_>) -> Operation<'c> {
    build(
        "fx.stop_gradient",
        location,
        &[operand],
        operand.r#type(),
        &[],
    )
}

/// Creates an `fx.pad` operation: `low`/`high` elements of `padding_value` at each edge and
/// `interior` between neighbours, per dimension (all non-negative).
#[allow(clippy::too_many_arguments)]
pub fn pad<'c>(
    context: &'c Context,
    location: Location<'c>,
    operand: Value<'c, '_>,
    padding_value: Value<'c, '_>,
    low: &[i64],
    high: &[i64],
    interior: &[i64],
    result: Type<'c>,
) -> Operation<'c> {
    let array =
        |values: &[i64]| -> Attribute<'c> { DenseI64ArrayAttribute::new(context, values).into() };
    build(
        "fx.pad",
        location,
        &[operand, padding_value],
        result,
        &[
            ("edge_padding_low", array(low)),
            ("edge_padding_high", array(high)),
            ("interior_padding", array(interior)),
        ],
    )
}

/// Dimension numbers of `fx.dot_general`: batch and contracting dimensions of each side.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DotDimensions {
    pub lhs_batch: Vec<i64>,
    pub rhs_batch: Vec<i64>,
    pub lhs_contracting: Vec<i64>,
    pub rhs_contracting: Vec<i64>,
}

/// Creates an `fx.dot_general` operation. The result's dimensions are the batch dimensions,
/// then the lhs's free dimensions, then the rhs's (in order).
pub fn dot_general<'c>(
    context: &'c Context,
    location: Location<'c>,
    lhs: Value<'c, '_>,
    rhs: Value<'c, '_>,
    dimensions: &DotDimensions,
    result: Type<'c>,
) -> Operation<'c> {
    let array =
        |values: &[i64]| -> Attribute<'c> { DenseI64ArrayAttribute::new(context, values).into() };
    build(
        "fx.dot_general",
        location,
        &[lhs, rhs],
        result,
        &[
            ("lhs_batching_dimensions", array(&dimensions.lhs_batch)),
            ("rhs_batching_dimensions", array(&dimensions.rhs_batch)),
            (
                "lhs_contracting_dimensions",
                array(&dimensions.lhs_contracting),
            ),
            (
                "rhs_contracting_dimensions",
                array(&dimensions.rhs_contracting),
            ),
        ],
    )
}

/// Creates an `fx.transpose` operation: result dimension `i` is operand dimension `permutation[i]`.
pub fn transpose<'c>(
    context: &'c Context,
    location: Location<'c>,
    operand: Value<'c, '_>,
    permutation: &[i64],
    result: Type<'c>,
) -> Operation<'c> {
    let permutation = DenseI64ArrayAttribute::new(context, permutation).into();
    build(
        "fx.transpose",
        location,
        &[operand],
        result,
        &[("permutation", permutation)],
    )
}

/// Creates an `fx.reverse` operation: the operand with the order of `dimensions` reversed.
pub fn reverse<'c>(
    context: &'c Context,
    location: Location<'c>,
    operand: Value<'c, '_>,
    dimensions: &[i64],
) -> Operation<'c> {
    let dimensions = DenseI64ArrayAttribute::new(context, dimensions).into();
    build(
        "fx.reverse",
        location,
        &[operand],
        operand.r#type(),
        &[("dimensions", dimensions)],
    )
}

/// Creates an `fx.dynamic_slice` operation: the block of `sizes` starting at the (run-time)
/// `start_indices`, one `tensor<i32>` per dimension, each clamped so the block fits.
pub fn dynamic_slice<'c>(
    context: &'c Context,
    location: Location<'c>,
    operand: Value<'c, '_>,
    start_indices: &[Value<'c, '_>],
    sizes: &[i64],
    result: Type<'c>,
) -> Operation<'c> {
    let sizes = DenseI64ArrayAttribute::new(context, sizes).into();
    let mut operands = vec![operand];
    operands.extend_from_slice(start_indices);
    build(
        "fx.dynamic_slice",
        location,
        &operands,
        result,
        &[("sizes", sizes)],
    )
}

/// Creates an `fx.dynamic_update_slice` operation: `operand` with the block at the (run-time)
/// `start_indices` replaced by `update`; the indices are clamped so the block fits.
pub fn dynamic_update_slice<'c>(
    location: Location<'c>,
    operand: Value<'c, '_>,
    update: Value<'c, '_>,
    start_indices: &[Value<'c, '_>],
) -> Operation<'c> {
    let mut operands = vec![operand, update];
    operands.extend_from_slice(start_indices);
    build(
        "fx.dynamic_update_slice",
        location,
        &operands,
        operand.r#type(),
        &[],
    )
}
