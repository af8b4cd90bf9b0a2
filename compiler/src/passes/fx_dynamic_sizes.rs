//! `fx-dynamic-sizes`: makes the sizes a signature leaves open (`f32[?]`) dynamic.
//!
//! Runs on: `builtin.module` at the `fx` stage (after `fx-autodiff`), traced with a distinct
//! probe size (a *sentinel*) standing for each open size. The caller has checked, by tracing
//! again with other sentinels, that the program does not depend on the sizes' values.
//! Input:   fx, `scf` and `tensor.extract` ops whose tensor types hold sentinels.
//! Output:  the same program with a dynamic dimension (`?`) for each sentinel, the sizes read
//!          with `tensor.dim` from the entry arguments at the top of each function, and passed
//!          to `fx.broadcast_in_dim` as its `dynamic_sizes` operands; a splat `fx.constant` of
//!          a dynamic shape becomes a scalar constant and a broadcast.
//! Fails:   with a message naming the op and its location when an op that needs static sizes
//!          (a contraction, a slice, a reshape that changes the shape, ...) meets an open size.
//!
//! Not a registered pass: it needs the sentinels, so `Session::compile_native` calls `run`.

use melior::{
    Context, IrRewriter,
    ir::{
        Attribute, AttributeLike, BlockLike, BlockRef, Identifier, OperationRef, RegionLike, Type,
        TypeLike, Value, ValueLike,
        attribute::{DenseI64ArrayAttribute, IntegerAttribute},
        operation::{OperationBuilder, OperationLike, WalkOrder, WalkResult},
        r#type::{DimSize, FunctionType, RankedTensorType, ShapedTypeLike},
    },
};
use mlir_sys::{MlirOperation, MlirValue};
use std::collections::HashMap;

/// Ops that work on any sizes: elementwise, broadcasts, reductions, control flow.
const SIZE_POLYMORPHIC: &[&str] = &[
    "fx.add",
    "fx.sub",
    "fx.mul",
    "fx.div",
    "fx.rem",
    "fx.pow",
    "fx.max",
    "fx.min",
    "fx.and",
    "fx.or",
    "fx.atan2",
    "fx.neg",
    "fx.exp",
    "fx.log",
    "fx.log1p",
    "fx.expm1",
    "fx.sin",
    "fx.cos",
    "fx.tanh",
    "fx.sqrt",
    "fx.abs",
    "fx.sign",
    "fx.floor",
    "fx.not",
    "fx.round",
    "fx.asin",
    "fx.acos",
    "fx.atan",
    "fx.erf",
    "fx.integer_pow",
    "fx.compare",
    "fx.select",
    "fx.convert",
    "fx.broadcast_in_dim",
    "fx.reduce",
    "fx.constant",
    "fx.reshape",
    "func.return",
    "scf.for",
    "scf.if",
    "scf.while",
    "scf.yield",
    "scf.condition",
];

/// Rewrites `module` so that each size in `sentinels` is dynamic (see the module docs).
pub fn run(context: &Context, module: OperationRef, sentinels: &[i64]) -> Result<(), String> {
    let mut functions = vec![];
    module.walk(WalkOrder::PreOrder, |operation| {
        if operation.name().as_string_ref().as_str() == Ok("func.func") {
            functions.push(operation.to_raw());
        }
        WalkResult::Advance
    });
    for function in functions {
        rewrite_function(context, function, sentinels)?;
    }
    Ok(())
}

fn rewrite_function(
    context: &Context,
    function: MlirOperation,
    sentinels: &[i64],
) -> Result<(), String> {
    let rewriter = IrRewriter::new(context);
    let base = rewriter.as_rewriter_base();
    let entry =
        unsafe { mlir_sys::mlirRegionGetFirstBlock(mlir_sys::mlirOperationGetRegion(function, 0)) };
    let location = unsafe { OperationRef::from_raw(function) }.location();
    // The function's ops, before any is added.
    let mut ops = vec![];
    unsafe { OperationRef::from_raw(function) }.walk(WalkOrder::PreOrder, |operation| {
        if operation.to_raw().ptr != function.ptr {
            ops.push(operation.to_raw());
        }
        WalkResult::Advance
    });
    // The size of each sentinel, read from the first argument dimension that has it.
    base.set_insertion_point_to_start(unsafe { BlockRef::from_raw(entry) });
    let mut sizes: HashMap<i64, MlirValue> = HashMap::new();
    let arguments: Vec<MlirValue> = (0..unsafe { mlir_sys::mlirBlockGetNumArguments(entry) })
        .map(|i| unsafe { mlir_sys::mlirBlockGetArgument(entry, i) })
        .collect();
    let index = Type::index(context);
    for argument in &arguments {
        for (d, dim) in dims(*argument).into_iter().enumerate() {
            if sentinels.contains(&dim) && !sizes.contains_key(&dim) {
                let position = base.insert(
                    OperationBuilder::new("arith.constant", location)
                        .add_attributes(&[(
                            Identifier::new(context, "value"),
                            IntegerAttribute::new(index, d as i64).into(),
                        )])
                        .add_results(&[index])
                        .build()
                        .map_err(|e| e.to_string())?,
                );
                let size = base.insert(
                    OperationBuilder::new("tensor.dim", location)
                        .add_operands(&[
                            unsafe { Value::from_raw(*argument) },
                            position.result(0).map_err(|e| e.to_string())?.into(),
                        ])
                        .add_results(&[index])
                        .build()
                        .map_err(|e| e.to_string())?,
                );
                sizes.insert(dim, size.result(0).map_err(|e| e.to_string())?.to_raw());
            }
        }
    }
    for operation in ops {
        let op = unsafe { OperationRef::from_raw(operation) };
        let values: Vec<MlirValue> = op
            .operands()
            .map(|v| v.to_raw())
            .chain(op.results().map(|v| v.to_raw()))
            .collect();
        if !values
            .iter()
            .any(|v| dims(*v).iter().any(|d| sentinels.contains(d)))
        {
            continue;
        }
        let name = op
            .name()
            .as_string_ref()
            .as_str()
            .unwrap_or("?")
            .to_string();
        let supported = SIZE_POLYMORPHIC.contains(&name.as_str())
            && (name != "fx.reshape" || same_type(op.operand(0), op.result(0)));
        if !supported {
            return Err(format!("`{name}` at {} needs static sizes", op.location()));
        }
        let result = op.result(0).map(|r| r.to_raw()).ok();
        let dynamic_sizes = |value: MlirValue| -> Vec<MlirValue> {
            dims(value)
                .iter()
                .filter_map(|d| sizes.get(d).copied())
                .collect()
        };
        match (name.as_str(), result) {
            ("fx.broadcast_in_dim", Some(result)) => {
                let mut operands: Vec<MlirValue> = op.operands().map(|v| v.to_raw()).collect();
                operands.extend(dynamic_sizes(result));
                unsafe {
                    mlir_sys::mlirOperationSetOperands(
                        operation,
                        operands.len() as isize,
                        operands.as_ptr(),
                    )
                };
            }
            ("fx.constant", Some(result)) => {
                base.set_insertion_point_before(op);
                splat_as_broadcast(context, &base, op, result, &dynamic_sizes(result))?;
            }
            _ => {}
        }
    }
    // Every value typed with a sentinel gets a dynamic dimension instead.
    unsafe { OperationRef::from_raw(function) }.walk(WalkOrder::PreOrder, |operation| {
        for result in operation.results() {
            retype(result.to_raw(), sentinels);
        }
        for index in 0..operation.region_count() {
            let Ok(region) = operation.region(index) else {
                continue;
            };
            let mut block = region.first_block();
            while let Some(b) = block {
                for i in 0..b.argument_count() {
                    if let Ok(argument) = b.argument(i) {
                        retype(argument.to_raw(), sentinels);
                    }
                }
                block = b.next_in_region();
            }
        }
        WalkResult::Advance
    });
    // The function's type follows its arguments and returned values.
    let inputs: Vec<Type> = arguments
        .iter()
        .map(|a| unsafe { Type::from_raw(mlir_sys::mlirValueGetType(*a)) })
        .collect();
    let mut outputs = vec![];
    let mut last = unsafe { mlir_sys::mlirBlockGetFirstOperation(entry) };
    while !last.ptr.is_null() {
        let next = unsafe { mlir_sys::mlirOperationGetNextInBlock(last) };
        if next.ptr.is_null() {
            break;
        }
        last = next;
    }
    for returned in unsafe { OperationRef::from_raw(last) }.operands() {
        outputs.push(returned.r#type());
    }
    let function_type: Attribute = melior::ir::attribute::TypeAttribute::new(
        FunctionType::new(context, &inputs, &outputs).into(),
    )
    .into();
    unsafe {
        mlir_sys::mlirOperationSetAttributeByName(
            function,
            melior::StringRef::new("function_type").to_raw(),
            function_type.to_raw(),
        )
    };
    Ok(())
}

fn same_type(
    a: Result<Value, melior::Error>,
    b: Result<melior::ir::operation::OperationResult, melior::Error>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.r#type() == b.r#type(),
        _ => false,
    }
}

/// The dimensions of a ranked tensor value (none for other types).
fn dims(value: MlirValue) -> Vec<i64> {
    let ty = unsafe { Type::from_raw(mlir_sys::mlirValueGetType(value)) };
    RankedTensorType::try_from(ty)
        .map(|t| {
            (0..t.rank())
                .map(|d| match t.dim_size(d) {
                    Ok(DimSize::Static(size)) => size as i64,
                    _ => -1,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Gives `value` a dynamic dimension wherever its type has a sentinel.
fn retype(value: MlirValue, sentinels: &[i64]) {
    let ty = unsafe { Type::from_raw(mlir_sys::mlirValueGetType(value)) };
    let Ok(tensor) = RankedTensorType::try_from(ty) else {
        return;
    };
    let shape = dims(value);
    if !shape.iter().any(|d| sentinels.contains(d)) {
        return;
    }
    let new_shape: Vec<i64> = shape
        .iter()
        .map(|d| if sentinels.contains(d) { i64::MIN } else { *d })
        .collect();
    let new = unsafe {
        mlir_sys::mlirRankedTensorTypeGet(
            new_shape.len() as isize,
            new_shape.as_ptr(),
            tensor.element().to_raw(),
            mlir_sys::mlirAttributeGetNull(),
        )
    };
    unsafe { mlir_sys::mlirValueSetType(value, new) };
}

/// Replaces a splat `fx.constant` of a shape with sentinels by a scalar constant broadcast
/// to the shape, with `sizes` as its dynamic sizes.
fn splat_as_broadcast(
    context: &Context,
    base: &melior::RewriterBase,
    op: OperationRef,
    result: MlirValue,
    sizes: &[MlirValue],
) -> Result<(), String> {
    let value = op.attribute("value").map_err(|e| e.to_string())?;
    let raw = value.to_raw();
    if !unsafe { mlir_sys::mlirAttributeIsADenseElements(raw) }
        || !unsafe { mlir_sys::mlirDenseElementsAttrIsSplat(raw) }
    {
        return Err(format!(
            "a constant array at {} has the length of a size known only at run time",
            op.location()
        ));
    }
    let element = unsafe { mlir_sys::mlirDenseElementsAttrGetSplatValue(raw) };
    let ty = unsafe { Type::from_raw(mlir_sys::mlirValueGetType(result)) };
    let tensor = RankedTensorType::try_from(ty).map_err(|e| e.to_string())?;
    let scalar_type = RankedTensorType::new(&[], tensor.element(), None);
    let scalar_value = unsafe {
        Attribute::from_raw(mlir_sys::mlirDenseElementsAttrGet(
            scalar_type.to_raw(),
            1,
            &element,
        ))
    };
    let location = op.location();
    let scalar = base.insert(
        OperationBuilder::new("fx.constant", location)
            .add_attributes(&[(Identifier::new(context, "value"), scalar_value)])
            .add_results(&[scalar_type.into()])
            .build()
            .map_err(|e| e.to_string())?,
    );
    let mut operands: Vec<Value> = vec![scalar.result(0).map_err(|e| e.to_string())?.into()];
    operands.extend(sizes.iter().map(|s| unsafe { Value::from_raw(*s) }));
    let broadcast = base.insert(
        OperationBuilder::new("fx.broadcast_in_dim", location)
            .add_operands(&operands)
            .add_attributes(&[(
                Identifier::new(context, "broadcast_dimensions"),
                DenseI64ArrayAttribute::new(context, &[]).into(),
            )])
            .add_results(&[ty])
            .build()
            .map_err(|e| e.to_string())?,
    );
    let new = broadcast.result(0).map_err(|e| e.to_string())?.to_raw();
    unsafe { mlir_sys::mlirValueReplaceAllUsesOfWith(result, new) };
    base.erase_op(op);
    Ok(())
}
