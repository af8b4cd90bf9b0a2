//! `fx-autodiff`: replaces differentiation requests with the derivative computations.
//!
//! Runs on: `builtin.module`.
//! Input:   fx with `fx.jvp`, `fx.vjp`, `fx.grad` referring to private functions of the
//!          module, `fx.custom_jvp_call`, `fx.custom_vjp_call` and `fx.stop_gradient`.
//! Output:  fx without any of those ops; only the public (entry) functions remain.
//! Keeps:   the location of each primal op on the ops of its derivative.
//! Does not: simplify (`fx-fold`, which runs next, removes dead primal ops and repeats).
//!
//! Functions are processed in module order, which puts callees before callers, so the body a
//! request clones is already differentiated: higher order (`hessian`, `jvp` of `grad`) is
//! this pass running on its own output.
//!
//! Forward mode (`fx.jvp`) clones the callee's body before the request and pushes tangents
//! through each op with its JVP rule (`jvp_rule`). Reverse mode (`fx.grad`, `fx.vjp`) clones
//! the body (the forward sweep, whose values are the residuals), records the active ops (those
//! that depend on a differentiated input) on a tape, then walks the tape backwards applying
//! each op's transpose rule (`transpose_rule`: the transpose of the op's linearisation, which
//! reads the residuals it needs); cotangents of a value with several uses are added.
//! A `custom_jvp` function's rule is linearised (its tangent inputs are placeholders) and
//! transposed the same way; a `custom_vjp` function runs its `fwd` in the forward sweep and its
//! `bwd` in the backward sweep.

use super::ir::{
    block_arguments, block_ops, defining_op, op_name, operands, region_block, results, value_type,
};
use melior::{
    Context, IrRewriter, RewriterBase,
    ir::{
        Attribute, Block, BlockRef, Identifier, Location, OperationRef, Region, RegionLike, Type,
        TypeLike, Value,
        attribute::{
            DenseI64ArrayAttribute, FlatSymbolRefAttribute, IntegerAttribute, StringAttribute,
        },
        operation::{OperationBuilder, OperationLike, WalkOrder, WalkResult},
        r#type::{IntegerType, RankedTensorType, ShapedTypeLike},
    },
    pass::{ExternalPass, Pass},
};
use mlir_sys::{MlirBlock, MlirOperation, MlirValue};
use std::collections::HashMap;

static PASS_ID: super::PassId = super::PassId;

/// Creates the `fx-autodiff` pass.
pub fn create() -> Pass {
    super::module_pass(
        &PASS_ID,
        "fx-autodiff",
        "Replace fx differentiation requests with derivative computations",
        run,
    )
}

type V = MlirValue;
type AdResult<T> = Result<T, String>;

fn key(value: V) -> usize {
    value.ptr as usize
}

fn run(module: OperationRef<'_, '_>, pass: ExternalPass<'_>) {
    let context_ref = module.context();
    // Safety: `context_ref` outlives every use of `context` in this function.
    let context = unsafe { context_ref.to_ref() };
    if let Err(message) = differentiate_module(context, module.to_raw()) {
        eprintln!("internal error: fx-autodiff: {message}");
        pass.signal_failure();
    }
}

/// The ops of a block before its terminator, and the terminator's operands.
fn block_body(block: MlirBlock) -> AdResult<(Vec<MlirOperation>, Vec<V>)> {
    let mut ops = block_ops(block);
    let terminator = ops.pop().ok_or("a block without a terminator")?;
    Ok((ops, operands(terminator)))
}

fn function_arguments(function: MlirOperation) -> Vec<V> {
    block_arguments(region_block(function, 0))
}

fn has_regions(operation: MlirOperation) -> bool {
    unsafe { mlir_sys::mlirOperationGetNumRegions(operation) > 0 }
}

/// The values an op's regions use but do not define, in order of first use.
fn outer_values(operation: MlirOperation) -> Vec<V> {
    let mut defined: HashMap<usize, ()> = HashMap::new();
    let mut used = vec![];
    let root = operation;
    unsafe { OperationRef::from_raw(operation) }.walk(WalkOrder::PreOrder, |nested| {
        let raw = nested.to_raw();
        for index in 0..unsafe { mlir_sys::mlirOperationGetNumRegions(raw) } {
            let region = unsafe { mlir_sys::mlirOperationGetRegion(raw, index) };
            let mut block = unsafe { mlir_sys::mlirRegionGetFirstBlock(region) };
            while !block.ptr.is_null() {
                for argument in block_arguments(block) {
                    defined.insert(key(argument), ());
                }
                block = unsafe { mlir_sys::mlirBlockGetNextInRegion(block) };
            }
        }
        if raw.ptr != root.ptr {
            for result in results(raw) {
                defined.insert(key(result), ());
            }
            used.extend(operands(raw));
        }
        WalkResult::Advance
    });
    let mut seen: HashMap<usize, ()> = HashMap::new();
    used.into_iter()
        .filter(|v| !defined.contains_key(&key(*v)) && seen.insert(key(*v), ()).is_none())
        .collect()
}

/// The value `map` binds `value` to, or `value` itself.
fn mapped(map: &HashMap<usize, V>, value: V) -> V {
    map.get(&key(value)).copied().unwrap_or(value)
}

/// The value of an `arith.constant` of index type.
fn constant_index(value: V) -> AdResult<i64> {
    let Some(operation) = defining_op(value).filter(|op| op_name(*op) == "arith.constant") else {
        return Err(String::from("a loop bound that is not a constant"));
    };
    int_attribute(operation, "value")
}

fn symbol_attribute(operation: MlirOperation, name: &str) -> AdResult<String> {
    let operation = unsafe { OperationRef::from_raw(operation) };
    let attribute = operation.attribute(name).map_err(|e| e.to_string())?;
    let symbol = FlatSymbolRefAttribute::try_from(attribute).map_err(|e| e.to_string())?;
    Ok(symbol.value().to_string())
}

fn int_attribute(operation: MlirOperation, name: &str) -> AdResult<i64> {
    let operation = unsafe { OperationRef::from_raw(operation) };
    let attribute = operation.attribute(name).map_err(|e| e.to_string())?;
    Ok(IntegerAttribute::try_from(attribute)
        .map_err(|e| e.to_string())?
        .value())
}

fn i64s_attribute(operation: MlirOperation, name: &str) -> AdResult<Vec<i64>> {
    let operation = unsafe { OperationRef::from_raw(operation) };
    let attribute = operation.attribute(name).map_err(|e| e.to_string())?;
    let array = DenseI64ArrayAttribute::try_from(attribute).map_err(|e| e.to_string())?;
    (0..array.len())
        .map(|i| array.element(i).map_err(|e| e.to_string()))
        .collect()
}

fn string_attribute(operation: MlirOperation, name: &str) -> AdResult<String> {
    let operation = unsafe { OperationRef::from_raw(operation) };
    let attribute = operation.attribute(name).map_err(|e| e.to_string())?;
    Ok(StringAttribute::try_from(attribute)
        .map_err(|e| e.to_string())?
        .value()
        .to_string())
}

fn differentiate_module(context: &Context, module: MlirOperation) -> AdResult<()> {
    let functions: Vec<MlirOperation> = {
        let module_ref = unsafe { OperationRef::from_raw(module) };
        let mut functions = vec![];
        module_ref.walk(WalkOrder::PreOrder, |operation| {
            if operation.name().as_string_ref().as_str() == Ok("func.func") {
                functions.push(operation.to_raw());
            }
            WalkResult::Advance
        });
        functions
    };
    let mut by_name = HashMap::new();
    for function in &functions {
        by_name.insert(string_attribute(*function, "sym_name")?, *function);
    }
    let rewriter = IrRewriter::new(context);
    let ad = Ad {
        context,
        base: rewriter.as_rewriter_base(),
        functions: by_name,
    };
    for function in &functions {
        while let Some(request) = first_request(*function) {
            ad.expand_request(request)?;
        }
    }
    for function in &functions {
        let private = unsafe { OperationRef::from_raw(*function) }
            .attribute("sym_visibility")
            .is_ok();
        if private {
            continue;
        }
        // Custom calls become their primal and stop_gradient its operand, also inside loops.
        loop {
            let mut calls = vec![];
            unsafe { OperationRef::from_raw(*function) }.walk(WalkOrder::PreOrder, |operation| {
                if matches!(
                    operation.name().as_string_ref().as_str(),
                    Ok("ad.custom_jvp_call" | "ad.custom_vjp_call" | "fx.stop_gradient")
                ) {
                    calls.push(operation.to_raw());
                }
                WalkResult::Advance
            });
            if calls.is_empty() {
                break;
            }
            for call in calls {
                ad.base
                    .set_insertion_point_before(unsafe { OperationRef::from_raw(call) });
                let values = if op_name(call) == "fx.stop_gradient" {
                    operands(call)
                } else {
                    ad.inline(&symbol_attribute(call, "primal")?, &operands(call))?
                };
                ad.replace(call, &values);
            }
        }
    }
    for function in functions {
        if unsafe { OperationRef::from_raw(function) }
            .attribute("sym_visibility")
            .is_ok()
        {
            ad.base
                .erase_op(unsafe { OperationRef::from_raw(function) });
        }
    }
    Ok(())
}

/// The first differentiation request in `function`, also inside loops and branches.
fn first_request(function: MlirOperation) -> Option<MlirOperation> {
    let mut found = None;
    unsafe { OperationRef::from_raw(function) }.walk(WalkOrder::PreOrder, |operation| {
        if matches!(
            operation.name().as_string_ref().as_str(),
            Ok("ad.jvp" | "ad.vjp" | "ad.grad")
        ) {
            found = Some(operation.to_raw());
            WalkResult::Interrupt
        } else {
            WalkResult::Advance
        }
    });
    found
}

/// One entry of the reverse-mode tape.
enum Entry {
    /// An active primal op (its transpose rule runs backwards).
    Op(MlirOperation),
    /// A `custom_jvp` call: the rule's ops, linear in the tangent placeholders.
    CustomJvp {
        inputs: Vec<V>,
        outputs: Vec<V>,
        placeholders: Vec<V>,
        tangent_outputs: Vec<V>,
        rule_tape: Vec<Entry>,
    },
    /// A `custom_vjp` call: `bwd` maps residuals and output cotangents to input cotangents.
    CustomVjp {
        inputs: Vec<V>,
        outputs: Vec<V>,
        residuals: Vec<V>,
        bwd: String,
    },
    /// An `scf.for` of `count` iterations that stacks its carries (`stacking_loop`); its
    /// body starts with `body_len` ops of the original body, which use the `outer` active
    /// values.
    Loop {
        forward: MlirOperation,
        count: i64,
        body_len: usize,
        outer: Vec<V>,
    },
    /// An `scf.if` whose branches use the `outer` active values.
    If { op: MlirOperation, outer: Vec<V> },
}

struct Ad<'c, 'a> {
    context: &'c Context,
    base: RewriterBase<'c, 'a>,
    functions: HashMap<String, MlirOperation>,
}

impl<'c, 'a> Ad<'c, 'a> {
    fn function(&self, name: &str) -> AdResult<MlirOperation> {
        self.functions
            .get(name)
            .copied()
            .ok_or_else(|| format!("no function @{name}"))
    }

    fn replace(&self, operation: MlirOperation, values: &[V]) {
        let values: Vec<Value<'c, '_>> = values
            .iter()
            .map(|v| unsafe { Value::from_raw(*v) })
            .collect();
        self.base
            .replace_op_with_values(unsafe { OperationRef::from_raw(operation) }, &values);
    }

    /// A builder at the insertion point with `operation`'s location.
    fn builder_at(&self, operation: MlirOperation) -> Builder<'c, 'a> {
        Builder {
            context: self.context,
            base: self.base,
            location: unsafe { OperationRef::from_raw(operation) }.location(),
        }
    }

    /// Clones `operation` at the insertion point with its operands, and those of the ops in
    /// its regions, taken through `map`; binds its results in `map`.
    fn clone_op(&self, operation: MlirOperation, map: &mut HashMap<usize, V>) -> MlirOperation {
        let clone = self
            .base
            .clone_op(unsafe { OperationRef::from_raw(operation) })
            .to_raw();
        for (index, operand) in operands(operation).iter().enumerate() {
            unsafe {
                mlir_sys::mlirOperationSetOperand(clone, index as isize, mapped(map, *operand))
            };
        }
        if has_regions(clone) {
            unsafe { OperationRef::from_raw(clone) }.walk(WalkOrder::PreOrder, |nested| {
                let raw = nested.to_raw();
                if raw.ptr != clone.ptr {
                    for (index, operand) in operands(raw).iter().enumerate() {
                        if let Some(value) = map.get(&key(*operand)) {
                            unsafe {
                                mlir_sys::mlirOperationSetOperand(raw, index as isize, *value)
                            };
                        }
                    }
                }
                WalkResult::Advance
            });
        }
        for (old, new) in results(operation).iter().zip(results(clone)) {
            map.insert(key(*old), new);
        }
        clone
    }

    /// Clones `ops` in order at the insertion point (see `clone_op`), calling
    /// `visit(original, clone, map)` after each.
    fn clone_ops(
        &self,
        ops: &[MlirOperation],
        map: &mut HashMap<usize, V>,
        visit: &mut Visit<'_, 'c, 'a>,
    ) -> AdResult<()> {
        for operation in ops {
            let clone = self.clone_op(*operation, map);
            visit(self, *operation, clone, map)?;
        }
        Ok(())
    }

    /// Clones `function`'s body at the insertion point with its arguments bound to `args`;
    /// calls `visit` on each clone (in order) and returns the mapped results.
    fn clone_body(
        &self,
        function: &str,
        args: &[V],
        visit: &mut Visit<'_, 'c, 'a>,
    ) -> AdResult<Vec<V>> {
        let function = self.function(function)?;
        let parameters = function_arguments(function);
        if parameters.len() != args.len() {
            return Err(format!(
                "a call passes {} arguments to a function of {}",
                args.len(),
                parameters.len()
            ));
        }
        let mut map: HashMap<usize, V> = parameters
            .iter()
            .zip(args)
            .map(|(parameter, arg)| (key(*parameter), *arg))
            .collect();
        let (ops, outputs) = block_body(region_block(function, 0))?;
        self.clone_ops(&ops, &mut map, visit)?;
        Ok(outputs.iter().map(|v| mapped(&map, *v)).collect())
    }

    /// Clones `ops` as the forward sweep of reverse mode: each clone that depends on an
    /// `active` value goes on `tape` (see `record`).
    fn clone_recording(
        &self,
        ops: &[MlirOperation],
        map: &mut HashMap<usize, V>,
        active: &mut HashMap<usize, ()>,
        tape: &mut Vec<Entry>,
    ) -> AdResult<()> {
        self.clone_ops(ops, map, &mut |ad, original, clone, map| {
            if let Some(replacements) = ad.record(clone, active, tape)? {
                for (old, new) in results(original).iter().zip(replacements) {
                    map.insert(key(*old), new);
                }
            }
            Ok(())
        })
    }

    /// Inlines `function` on `args`; returns its results.
    fn inline(&self, function: &str, args: &[V]) -> AdResult<Vec<V>> {
        self.clone_body(function, args, &mut |_, _, _, _| Ok(()))
    }

    fn expand_request(&self, request: MlirOperation) -> AdResult<()> {
        let name = op_name(request);
        let callee = symbol_attribute(request, "callee")?;
        let all = operands(request);
        self.base
            .set_insertion_point_before(unsafe { OperationRef::from_raw(request) });
        let b = self.builder_at(request);
        let values = match name.as_str() {
            "ad.jvp" => {
                let n = int_attribute(request, "num_primals")? as usize;
                let (outputs, tangents) = self.jvp(&callee, &all[..n], &all[n..])?;
                let tangents: Vec<V> = outputs
                    .iter()
                    .zip(tangents)
                    .map(|(o, t)| t.map_or_else(|| b.zeros_like(*o), Ok))
                    .collect::<AdResult<_>>()?;
                [outputs, tangents].concat()
            }
            _ => {
                let argnums = i64s_attribute(request, "argnums")?;
                let (primals, cotangents) = if name == "ad.grad" {
                    (all.clone(), None)
                } else {
                    let n = int_attribute(request, "num_primals")? as usize;
                    (all[..n].to_vec(), Some(all[n..].to_vec()))
                };
                let (outputs, grads) = self.vjp(&b, &callee, &primals, cotangents, &argnums)?;
                [outputs, grads].concat()
            }
        };
        self.replace(request, &values);
        Ok(())
    }

    /// Forward mode: the callee's outputs and their tangents (None where zero).
    fn jvp(
        &self,
        callee: &str,
        primals: &[V],
        tangents: &[V],
    ) -> AdResult<(Vec<V>, Vec<Option<V>>)> {
        let function = self.function(callee)?;
        let parameters = function_arguments(function);
        if parameters.len() != primals.len() {
            return Err(String::from(
                "a jvp request with the wrong number of primals",
            ));
        }
        // Tangents are keyed by the callee's values, so two primals may be one value.
        let mut map: HashMap<usize, V> = HashMap::new();
        let mut tangent: HashMap<usize, V> = HashMap::new();
        for ((parameter, primal), t) in parameters.iter().zip(primals).zip(tangents) {
            map.insert(key(*parameter), *primal);
            if is_float(*t) {
                tangent.insert(key(*parameter), *t);
            }
        }
        let (ops, outputs) = block_body(region_block(function, 0))?;
        self.jvp_ops(&ops, &mut map, &mut tangent)?;
        Ok((
            outputs.iter().map(|v| mapped(&map, *v)).collect(),
            outputs
                .iter()
                .map(|v| tangent.get(&key(*v)).copied())
                .collect(),
        ))
    }

    /// Forward mode over `ops`: clones them at the insertion point (operands through `map`)
    /// and pushes the tangents, keyed by the original values, through each.
    fn jvp_ops(
        &self,
        ops: &[MlirOperation],
        map: &mut HashMap<usize, V>,
        tangent: &mut HashMap<usize, V>,
    ) -> AdResult<()> {
        for original in ops.iter().copied() {
            let has_tangent = |v: &V| tangent.contains_key(&key(*v));
            if has_regions(original)
                && (operands(original).iter().any(has_tangent)
                    || outer_values(original).iter().any(has_tangent))
            {
                self.jvp_region(original, map, tangent)?;
                continue;
            }
            let clone = self.clone_op(original, map);
            let operand_tangents: Vec<Option<V>> = operands(original)
                .iter()
                .map(|v| tangent.get(&key(*v)).copied())
                .collect();
            if operand_tangents.iter().all(Option::is_none) {
                continue;
            }
            let b = self.builder_at(clone);
            match op_name(clone).as_str() {
                "ad.custom_jvp_call" => {
                    let args = operands(clone);
                    let mut rule_args = args.clone();
                    for (arg, t) in args.iter().zip(&operand_tangents) {
                        rule_args.push(t.map_or_else(|| b.zeros_like(*arg), Ok)?);
                    }
                    let rule_outputs = self.inline(&symbol_attribute(clone, "jvp")?, &rule_args)?;
                    let n = results(clone).len();
                    for ((old, new), t) in results(original)
                        .iter()
                        .zip(&rule_outputs[..n])
                        .zip(&rule_outputs[n..])
                    {
                        map.insert(key(*old), *new);
                        tangent.insert(key(*old), *t);
                    }
                    self.base.erase_op(unsafe { OperationRef::from_raw(clone) });
                }
                "ad.custom_vjp_call" => {
                    return Err(String::from(
                        "forward-mode differentiation of a custom_vjp function is not defined (as in JAX)",
                    ));
                }
                _ => {
                    if let Some(t) = jvp_rule(&b, clone, &operand_tangents)? {
                        tangent.insert(key(results(original)[0]), t);
                    }
                }
            }
        }
        Ok(())
    }

    /// Forward mode through `scf.for`, `scf.if` or `scf.while`: a new op of the same kind
    /// that carries a tangent beside each float value.
    fn jvp_region(
        &self,
        original: MlirOperation,
        map: &mut HashMap<usize, V>,
        tangent: &mut HashMap<usize, V>,
    ) -> AdResult<()> {
        let b = self.builder_at(original);
        let name = op_name(original);
        let args = operands(original);
        let outputs = results(original);
        let floats: Vec<usize> = (0..outputs.len())
            .filter(|j| is_float(outputs[*j]))
            .collect();
        let mut types: Vec<Type<'c>> = outputs.iter().map(|v| value_type(*v)).collect();
        types.extend(floats.iter().map(|j| value_type(outputs[*j])));
        let carried_with_tangents = |carried: &[V]| -> AdResult<Vec<V>> {
            let mut values: Vec<V> = carried.iter().map(|v| mapped(map, *v)).collect();
            for j in &floats {
                values.push(tangent_of(&b, tangent, map, carried[*j])?);
            }
            Ok(values)
        };
        let (operation, blocks) = match name.as_str() {
            "scf.for" => {
                let mut new_operands: Vec<V> = args[..3].iter().map(|v| mapped(map, *v)).collect();
                new_operands.extend(carried_with_tangents(&args[3..])?);
                let block_types = [vec![Type::index(self.context)], types.clone()].concat();
                b.region_op("scf.for", &new_operands, &types, &[block_types])?
            }
            "scf.if" => {
                b.region_op("scf.if", &[mapped(map, args[0])], &types, &[vec![], vec![]])?
            }
            "scf.while" => {
                let new_operands = carried_with_tangents(&args)?;
                b.region_op(
                    "scf.while",
                    &new_operands,
                    &types,
                    &[types.clone(), types.clone()],
                )?
            }
            other => return Err(format!("no forward-mode rule for `{other}`")),
        };
        for (index, block) in blocks.iter().enumerate() {
            let terminator = if name == "scf.while" && index == 0 {
                "scf.condition"
            } else {
                "scf.yield"
            };
            self.jvp_region_body(original, index, *block, &floats, map, tangent, terminator)?;
        }
        self.base
            .set_insertion_point_after(unsafe { OperationRef::from_raw(operation) });
        let new_results = results(operation);
        for (j, output) in outputs.iter().enumerate() {
            map.insert(key(*output), new_results[j]);
        }
        for (index, j) in floats.iter().enumerate() {
            tangent.insert(key(outputs[*j]), new_results[outputs.len() + index]);
        }
        Ok(())
    }

    /// Fills `block`, the new form of region `index` of `original`: its arguments are those
    /// of the original region then the tangents of the `floats` carries; it ends with
    /// `terminator` of the mapped values then their tangents.
    #[allow(clippy::too_many_arguments)]
    fn jvp_region_body(
        &self,
        original: MlirOperation,
        index: usize,
        block: MlirBlock,
        floats: &[usize],
        map: &mut HashMap<usize, V>,
        tangent: &mut HashMap<usize, V>,
        terminator: &str,
    ) -> AdResult<()> {
        let source = region_block(original, index as isize);
        let source_arguments = block_arguments(source);
        let new_arguments = block_arguments(block);
        for (old, new) in source_arguments.iter().zip(&new_arguments) {
            map.insert(key(*old), *new);
        }
        if !source_arguments.is_empty() {
            // scf.for's induction variable comes before the carries.
            let lead = usize::from(op_name(original) == "scf.for");
            for (position, j) in floats.iter().enumerate() {
                tangent.insert(
                    key(source_arguments[lead + j]),
                    new_arguments[source_arguments.len() + position],
                );
            }
        }
        self.base
            .set_insertion_point_to_end(unsafe { BlockRef::from_raw(block) });
        let (ops, yielded) = block_body(source)?;
        self.jvp_ops(&ops, map, tangent)?;
        let b = self.builder_at(original);
        let lead = usize::from(terminator == "scf.condition");
        let mut values: Vec<V> = yielded.iter().map(|v| mapped(map, *v)).collect();
        for j in floats {
            values.push(tangent_of(&b, tangent, map, yielded[lead + j])?);
        }
        b.terminator(terminator, &values)
    }

    /// Reverse mode: the callee's outputs and the cotangents of the primals at `argnums`.
    /// Without `cotangents`, the first output is a scalar seeded with one (`fx.grad`).
    fn vjp(
        &self,
        b: &Builder<'c, 'a>,
        callee: &str,
        primals: &[V],
        cotangents: Option<Vec<V>>,
        argnums: &[i64],
    ) -> AdResult<(Vec<V>, Vec<V>)> {
        let mut active: HashMap<usize, ()> = HashMap::new();
        for argnum in argnums {
            let primal = *primals
                .get(*argnum as usize)
                .ok_or("argnums out of range")?;
            if is_float(primal) {
                active.insert(key(primal), ());
            }
        }
        // Two primals may be one value: differentiate with respect to fresh copies.
        let mut inputs = primals.to_vec();
        for argnum in argnums {
            let index = *argnum as usize;
            let copy = b.identity(inputs[index])?;
            active.insert(key(copy), ());
            inputs[index] = copy;
        }
        let mut tape = vec![];
        let outputs = self.clone_body(callee, &inputs, &mut |ad, original, clone, map| {
            if let Some(replacements) = ad.record(clone, &mut active, &mut tape)? {
                for (old, new) in results(original).iter().zip(replacements) {
                    map.insert(key(*old), new);
                }
            }
            Ok(())
        })?;
        let mut cotangent: HashMap<usize, V> = HashMap::new();
        match cotangents {
            Some(cts) => {
                for (output, ct) in outputs.iter().zip(cts) {
                    accumulate(b, &mut cotangent, *output, ct)?;
                }
            }
            None => {
                let first = *outputs
                    .first()
                    .ok_or("grad of a function without outputs")?;
                let one = b.splat(b.ty(first), 1.0)?;
                accumulate(b, &mut cotangent, first, one)?;
            }
        }
        self.backward(b, &tape, &mut cotangent)?;
        let grads = argnums
            .iter()
            .map(|argnum| {
                let input = inputs[*argnum as usize];
                cotangent
                    .get(&key(input))
                    .copied()
                    .map_or_else(|| b.zeros_like(input), Ok)
            })
            .collect::<AdResult<_>>()?;
        Ok((outputs, grads))
    }

    /// Records a cloned op on the tape when it depends on an active value. A custom call is
    /// replaced by its rule's forward computation, and a loop by one that also stacks its
    /// carries; the values that stand for their results are returned.
    fn record(
        &self,
        clone: MlirOperation,
        active: &mut HashMap<usize, ()>,
        tape: &mut Vec<Entry>,
    ) -> AdResult<Option<Vec<V>>> {
        if has_regions(clone) {
            return self.record_region(clone, active, tape);
        }
        let args = operands(clone);
        if !args.iter().any(|v| active.contains_key(&key(*v))) {
            return Ok(None);
        }
        let name = op_name(clone);
        let b = self.builder_at(clone);
        match name.as_str() {
            "ad.custom_jvp_call" => {
                // Linearise the rule: its tangent inputs are placeholders the tape starts from.
                let mut rule_args = args.clone();
                let mut placeholders = vec![];
                for arg in &args {
                    let zero = b.zeros_like(*arg)?;
                    let placeholder = b.identity(zero)?;
                    placeholders.push(placeholder);
                    rule_args.push(placeholder);
                }
                let mut rule_active: HashMap<usize, ()> =
                    placeholders.iter().map(|p| (key(*p), ())).collect();
                let mut rule_tape = vec![];
                let rule_outputs = self.clone_body(
                    &symbol_attribute(clone, "jvp")?,
                    &rule_args,
                    &mut |ad, original, rule_clone, map| {
                        if let Some(replacements) =
                            ad.record(rule_clone, &mut rule_active, &mut rule_tape)?
                        {
                            for (old, new) in results(original).iter().zip(replacements) {
                                map.insert(key(*old), new);
                            }
                        }
                        Ok(())
                    },
                )?;
                let n = results(clone).len();
                let outputs = rule_outputs[..n].to_vec();
                let tangent_outputs = rule_outputs[n..].to_vec();
                // The rule's primal outputs stand for the call's results.
                let identities = outputs
                    .iter()
                    .map(|o| b.identity(*o))
                    .collect::<AdResult<Vec<_>>>()?;
                self.replace(clone, &identities);
                for output in &identities {
                    active.insert(key(*output), ());
                }
                tape.push(Entry::CustomJvp {
                    inputs: args,
                    outputs: identities.clone(),
                    placeholders,
                    tangent_outputs,
                    rule_tape,
                });
                return Ok(Some(identities));
            }
            "ad.custom_vjp_call" => {
                let fwd_outputs = self.inline(&symbol_attribute(clone, "fwd")?, &args)?;
                let n = results(clone).len();
                let outputs = fwd_outputs[..n]
                    .iter()
                    .map(|o| b.identity(*o))
                    .collect::<AdResult<Vec<_>>>()?;
                let residuals = fwd_outputs[n..].to_vec();
                let bwd = symbol_attribute(clone, "bwd")?;
                self.replace(clone, &outputs);
                for output in &outputs {
                    active.insert(key(*output), ());
                }
                tape.push(Entry::CustomVjp {
                    inputs: args,
                    outputs: outputs.clone(),
                    residuals,
                    bwd,
                });
                return Ok(Some(outputs));
            }
            _ if is_nondifferentiable(&name) => {}
            _ => {
                for result in results(clone) {
                    if is_float(result) {
                        active.insert(key(result), ());
                    }
                }
                tape.push(Entry::Op(clone));
            }
        }
        Ok(None)
    }

    /// `record` for `scf.for`, `scf.if` and `scf.while`. The backward sweep recomputes the
    /// body of a loop iteration (or the branch taken) from saved carries, so only the
    /// carries are kept.
    fn record_region(
        &self,
        clone: MlirOperation,
        active: &mut HashMap<usize, ()>,
        tape: &mut Vec<Entry>,
    ) -> AdResult<Option<Vec<V>>> {
        let is_active = |v: &V| active.contains_key(&key(*v));
        let outer: Vec<V> = outer_values(clone).into_iter().filter(is_active).collect();
        if !operands(clone).iter().any(is_active) && outer.is_empty() {
            return Ok(None);
        }
        let outputs = match op_name(clone).as_str() {
            "scf.if" => {
                tape.push(Entry::If { op: clone, outer });
                results(clone)
            }
            "scf.for" => {
                let (forward, body_len) = self.stacking_loop(clone)?;
                let count = constant_index(operands(forward)[1])?;
                let outputs = results(forward)[..results(clone).len()].to_vec();
                self.replace(clone, &outputs);
                tape.push(Entry::Loop {
                    forward,
                    count,
                    body_len,
                    outer,
                });
                outputs
            }
            other => {
                return Err(format!(
                    "reverse-mode differentiation of `{other}` is not defined"
                ));
            }
        };
        for output in &outputs {
            if is_float(*output) {
                active.insert(key(*output), ());
            }
        }
        Ok(Some(outputs))
    }

    /// Rebuilds the `scf.for` `clone` (which counts from 0 by 1) with one more carry per
    /// carry: a stack of its value at the start of each iteration. Returns the new loop
    /// (its results: the carries, then the stacks) and the number of ops of the original
    /// body at the start of the new one.
    fn stacking_loop(&self, clone: MlirOperation) -> AdResult<(MlirOperation, usize)> {
        let args = operands(clone);
        if constant_index(args[0])? != 0 || constant_index(args[2])? != 1 {
            return Err(String::from("a loop that does not count from 0 by 1"));
        }
        let count = constant_index(args[1])?.max(0);
        let b = self.builder_at(clone);
        let inits = &args[3..];
        let mut stack_types = vec![];
        for init in inits {
            let shape = [vec![count], b.shape(*init)?].concat();
            stack_types.push(tensor_type(&shape, element(b.ty(*init))?));
        }
        let mut new_operands = args.clone();
        for ty in &stack_types {
            new_operands.push(b.splat(*ty, 0.0)?);
        }
        let types: Vec<Type<'c>> = inits
            .iter()
            .map(|v| b.ty(*v))
            .chain(stack_types.iter().copied())
            .collect();
        let block_types = [vec![Type::index(self.context)], types.clone()].concat();
        let (forward, blocks) = b.region_op("scf.for", &new_operands, &types, &[block_types])?;
        self.base
            .set_insertion_point_to_end(unsafe { BlockRef::from_raw(blocks[0]) });
        let source = region_block(clone, 0);
        let arguments = block_arguments(blocks[0]);
        let mut map: HashMap<usize, V> = block_arguments(source)
            .iter()
            .zip(&arguments)
            .map(|(old, new)| (key(*old), *new))
            .collect();
        let (ops, yielded) = block_body(source)?;
        self.clone_ops(&ops, &mut map, &mut |_, _, _, _| Ok(()))?;
        let body_len = block_ops(blocks[0]).len();
        let k = b.index_to_i32(arguments[0])?;
        let mut values: Vec<V> = yielded.iter().map(|v| mapped(&map, *v)).collect();
        let n = inits.len();
        for j in 0..n {
            values.push(b.stack_row(arguments[1 + n + j], arguments[1 + j], k)?);
        }
        b.terminator("scf.yield", &values)?;
        self.base
            .set_insertion_point_after(unsafe { OperationRef::from_raw(forward) });
        Ok((forward, body_len))
    }

    /// Runs the tape backwards, adding each entry's input cotangents into `cotangent`.
    fn backward(
        &self,
        b: &Builder<'c, 'a>,
        tape: &[Entry],
        cotangent: &mut HashMap<usize, V>,
    ) -> AdResult<()> {
        for entry in tape.iter().rev() {
            match entry {
                Entry::Op(operation) => {
                    let Some(ct) = results(*operation)
                        .first()
                        .and_then(|r| cotangent.get(&key(*r)).copied())
                    else {
                        continue;
                    };
                    let rule_builder = self.builder_at(*operation);
                    for (operand, contribution) in operands(*operation).iter().zip(transpose_rule(
                        &rule_builder,
                        *operation,
                        ct,
                    )?) {
                        if let Some(contribution) = contribution {
                            accumulate(b, cotangent, *operand, contribution)?;
                        }
                    }
                }
                Entry::CustomJvp {
                    inputs,
                    outputs,
                    placeholders,
                    tangent_outputs,
                    rule_tape,
                } => {
                    let mut inner: HashMap<usize, V> = HashMap::new();
                    let mut any = false;
                    for (output, tangent_output) in outputs.iter().zip(tangent_outputs) {
                        if let Some(ct) = cotangent.get(&key(*output)).copied() {
                            accumulate(b, &mut inner, *tangent_output, ct)?;
                            any = true;
                        }
                    }
                    if !any {
                        continue;
                    }
                    self.backward(b, rule_tape, &mut inner)?;
                    for (input, placeholder) in inputs.iter().zip(placeholders) {
                        if let Some(ct) = inner.get(&key(*placeholder)).copied() {
                            accumulate(b, cotangent, *input, ct)?;
                        }
                    }
                }
                Entry::CustomVjp {
                    inputs,
                    outputs,
                    residuals,
                    bwd,
                } => {
                    if !outputs.iter().any(|o| cotangent.contains_key(&key(*o))) {
                        continue;
                    }
                    let mut args = residuals.clone();
                    for output in outputs {
                        args.push(
                            cotangent
                                .get(&key(*output))
                                .copied()
                                .map_or_else(|| b.zeros_like(*output), Ok)?,
                        );
                    }
                    let input_cts = self.inline(bwd, &args)?;
                    for (input, ct) in inputs.iter().zip(input_cts) {
                        accumulate(b, cotangent, *input, ct)?;
                    }
                }
                Entry::Loop {
                    forward,
                    count,
                    body_len,
                    outer,
                } => self.backward_loop(*forward, *count, *body_len, outer, cotangent)?,
                Entry::If { op, outer } => self.backward_if(*op, outer, cotangent)?,
            }
        }
        Ok(())
    }

    /// The backward sweep of a loop made by `stacking_loop`: a loop from the last iteration
    /// to the first that recomputes the body from the stacked carries and transposes it. Its
    /// carries are the cotangents of the float carries and of the `outer` active values the
    /// body uses.
    fn backward_loop(
        &self,
        forward: MlirOperation,
        count: i64,
        body_len: usize,
        outer: &[V],
        cotangent: &mut HashMap<usize, V>,
    ) -> AdResult<()> {
        let outputs = results(forward);
        let n = outputs.len() / 2;
        let (carries, stacks) = outputs.split_at(n);
        let floats: Vec<usize> = (0..n).filter(|j| is_float(carries[*j])).collect();
        if !floats
            .iter()
            .any(|j| cotangent.contains_key(&key(carries[*j])))
        {
            return Ok(());
        }
        let b = self.builder_at(forward);
        let forward_operands = operands(forward);
        let mut new_operands = forward_operands[..3].to_vec();
        for j in &floats {
            new_operands.push(tangent_of(&b, cotangent, &HashMap::new(), carries[*j])?);
        }
        for value in outer {
            new_operands.push(b.zeros_like(*value)?);
        }
        let types: Vec<Type<'c>> = new_operands[3..].iter().map(|v| b.ty(*v)).collect();
        let block_types = [vec![Type::index(self.context)], types.clone()].concat();
        let (reverse, blocks) = b.region_op("scf.for", &new_operands, &types, &[block_types])?;
        self.base
            .set_insertion_point_to_end(unsafe { BlockRef::from_raw(blocks[0]) });
        let arguments = block_arguments(blocks[0]);
        let last = b.index_constant(count - 1)?;
        let k = b.index_sub(last, arguments[0])?;
        let k32 = b.index_to_i32(k)?;
        let source = region_block(forward, 0);
        let source_arguments = block_arguments(source);
        let mut map: HashMap<usize, V> = HashMap::new();
        map.insert(key(source_arguments[0]), k);
        let mut active: HashMap<usize, ()> = outer.iter().map(|v| (key(*v), ())).collect();
        let mut carry_values = vec![];
        for j in 0..n {
            let carry = b.unstack_row(stacks[j], k32)?;
            map.insert(key(source_arguments[1 + j]), carry);
            if is_float(carry) {
                active.insert(key(carry), ());
            }
            carry_values.push(carry);
        }
        let ops = block_ops(source);
        let yielded = operands(*ops.last().ok_or("an empty loop body")?);
        let mut tape = vec![];
        self.clone_recording(&ops[..body_len], &mut map, &mut active, &mut tape)?;
        let mut inner: HashMap<usize, V> = HashMap::new();
        for (position, j) in floats.iter().enumerate() {
            accumulate(
                &b,
                &mut inner,
                mapped(&map, yielded[*j]),
                arguments[1 + position],
            )?;
        }
        self.backward(&b, &tape, &mut inner)?;
        let mut values = vec![];
        for j in &floats {
            values.push(tangent_of(&b, &inner, &HashMap::new(), carry_values[*j])?);
        }
        for (i, value) in outer.iter().enumerate() {
            let running = arguments[1 + floats.len() + i];
            values.push(match inner.get(&key(*value)) {
                Some(ct) => b.add(running, *ct)?,
                None => running,
            });
        }
        b.terminator("scf.yield", &values)?;
        self.base
            .set_insertion_point_after(unsafe { OperationRef::from_raw(reverse) });
        let totals = results(reverse);
        for (position, j) in floats.iter().enumerate() {
            accumulate(&b, cotangent, forward_operands[3 + j], totals[position])?;
        }
        for (i, value) in outer.iter().enumerate() {
            accumulate(&b, cotangent, *value, totals[floats.len() + i])?;
        }
        Ok(())
    }

    /// The backward sweep of an `scf.if`: an `scf.if` on the same condition whose branches
    /// recompute the original branch and transpose it; its results are the cotangents of
    /// the `outer` active values the branches use.
    fn backward_if(
        &self,
        op: MlirOperation,
        outer: &[V],
        cotangent: &mut HashMap<usize, V>,
    ) -> AdResult<()> {
        let outputs = results(op);
        let floats: Vec<usize> = (0..outputs.len())
            .filter(|j| is_float(outputs[*j]))
            .collect();
        if !floats
            .iter()
            .any(|j| cotangent.contains_key(&key(outputs[*j])))
        {
            return Ok(());
        }
        let b = self.builder_at(op);
        let mut output_cts = vec![];
        for j in &floats {
            output_cts.push(tangent_of(&b, cotangent, &HashMap::new(), outputs[*j])?);
        }
        let types: Vec<Type<'c>> = outer.iter().map(|v| b.ty(*v)).collect();
        let (reverse, blocks) =
            b.region_op("scf.if", &[operands(op)[0]], &types, &[vec![], vec![]])?;
        for (index, block) in blocks.iter().enumerate() {
            self.base
                .set_insertion_point_to_end(unsafe { BlockRef::from_raw(*block) });
            let (ops, yielded) = block_body(region_block(op, index as isize))?;
            let mut map: HashMap<usize, V> = HashMap::new();
            let mut active: HashMap<usize, ()> = outer.iter().map(|v| (key(*v), ())).collect();
            let mut tape = vec![];
            self.clone_recording(&ops, &mut map, &mut active, &mut tape)?;
            let mut inner: HashMap<usize, V> = HashMap::new();
            for (position, j) in floats.iter().enumerate() {
                accumulate(
                    &b,
                    &mut inner,
                    mapped(&map, yielded[*j]),
                    output_cts[position],
                )?;
            }
            self.backward(&b, &tape, &mut inner)?;
            let values = outer
                .iter()
                .map(|v| tangent_of(&b, &inner, &HashMap::new(), *v))
                .collect::<AdResult<Vec<_>>>()?;
            b.terminator("scf.yield", &values)?;
        }
        self.base
            .set_insertion_point_after(unsafe { OperationRef::from_raw(reverse) });
        for (value, total) in outer.iter().zip(results(reverse)) {
            accumulate(&b, cotangent, *value, total)?;
        }
        Ok(())
    }
}

/// What `clone_ops` calls after each clone: `(ad, original, clone, map)`.
type Visit<'v, 'c, 'a> = dyn FnMut(&Ad<'c, 'a>, MlirOperation, MlirOperation, &mut HashMap<usize, V>) -> AdResult<()>
    + 'v;

/// The (co)tangent `values` holds for `value`, or zeros shaped like `map`'s image of it.
fn tangent_of(
    b: &Builder,
    values: &HashMap<usize, V>,
    map: &HashMap<usize, V>,
    value: V,
) -> AdResult<V> {
    match values.get(&key(value)) {
        Some(t) => Ok(*t),
        None => b.zeros_like(mapped(map, value)),
    }
}

/// Ops whose derivative is zero (or whose results are not floats).
fn is_nondifferentiable(name: &str) -> bool {
    matches!(
        name,
        "fx.constant"
            | "fx.compare"
            | "fx.sign"
            | "fx.floor"
            | "fx.round"
            | "fx.and"
            | "fx.or"
            | "fx.not"
            | "fx.stop_gradient"
    )
}

fn accumulate(
    b: &Builder,
    cotangent: &mut HashMap<usize, V>,
    value: V,
    contribution: V,
) -> AdResult<()> {
    let total = match cotangent.get(&key(value)) {
        Some(existing) => b.add(*existing, contribution)?,
        None => contribution,
    };
    cotangent.insert(key(value), total);
    Ok(())
}

fn is_float(value: V) -> bool {
    RankedTensorType::try_from(value_type(value)).is_ok_and(|t| t.element().is_float())
}

/// Builds fx ops at the rewriter's insertion point, with one location.
#[derive(Clone, Copy)]
struct Builder<'c, 'a> {
    context: &'c Context,
    base: RewriterBase<'c, 'a>,
    location: Location<'c>,
}

impl<'c> Builder<'c, '_> {
    fn ty(&self, value: V) -> Type<'c> {
        value_type(value)
    }

    fn shape(&self, value: V) -> AdResult<Vec<i64>> {
        shape_of(self.ty(value))
    }

    /// Builds and inserts an op; returns it.
    fn build(
        &self,
        name: &str,
        operands: &[V],
        results: &[Type<'c>],
        attributes: &[(&str, Attribute<'c>)],
        regions: Vec<Region<'c>>,
    ) -> AdResult<MlirOperation> {
        let operands: Vec<Value<'c, '_>> = operands
            .iter()
            .map(|v| unsafe { Value::from_raw(*v) })
            .collect();
        let attributes: Vec<(Identifier<'c>, Attribute<'c>)> = attributes
            .iter()
            .map(|(name, value)| (Identifier::new(self.context, name), *value))
            .collect();
        let operation = OperationBuilder::new(name, self.location)
            .add_operands(&operands)
            .add_results(results)
            .add_attributes(&attributes)
            .add_regions_vec(regions)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(self.base.insert(operation).to_raw())
    }

    fn op(
        &self,
        name: &str,
        operands: &[V],
        result: Type<'c>,
        attributes: &[(&str, Attribute<'c>)],
    ) -> AdResult<V> {
        let operation = self.build(name, operands, &[result], attributes, vec![])?;
        Ok(results(operation)[0])
    }

    /// An op with one single-block region per entry of `regions` (its block's argument
    /// types); returns it and the blocks, to be filled and terminated.
    fn region_op(
        &self,
        name: &str,
        operands: &[V],
        result_types: &[Type<'c>],
        regions: &[Vec<Type<'c>>],
    ) -> AdResult<(MlirOperation, Vec<MlirBlock>)> {
        let regions: Vec<Region<'c>> = regions
            .iter()
            .map(|types| {
                let arguments: Vec<(Type<'c>, Location<'c>)> =
                    types.iter().map(|ty| (*ty, self.location)).collect();
                let region = Region::new();
                region.append_block(Block::new(&arguments));
                region
            })
            .collect();
        let count = regions.len();
        let operation = self.build(name, operands, result_types, &[], regions)?;
        let blocks = (0..count)
            .map(|index| region_block(operation, index as isize))
            .collect();
        Ok((operation, blocks))
    }

    /// A terminator (`scf.yield`, `scf.condition`) at the insertion point.
    fn terminator(&self, name: &str, operands: &[V]) -> AdResult<()> {
        self.build(name, operands, &[], &[], vec![]).map(|_| ())
    }

    fn index_constant(&self, value: i64) -> AdResult<V> {
        let index = Type::index(self.context);
        let attribute = IntegerAttribute::new(index, value).into();
        self.op("arith.constant", &[], index, &[("value", attribute)])
    }

    fn index_sub(&self, a: V, b: V) -> AdResult<V> {
        self.op("arith.subi", &[a, b], Type::index(self.context), &[])
    }

    /// An `index` value as a `tensor<i32>`.
    fn index_to_i32(&self, index: V) -> AdResult<V> {
        let i32_type: Type<'c> = IntegerType::new(self.context, 32).into();
        let scalar = self.op("arith.index_cast", &[index], i32_type, &[])?;
        self.op(
            "tensor.from_elements",
            &[scalar],
            tensor_type(&[], i32_type),
            &[],
        )
    }

    /// The start indices of row `k` (a `tensor<i32>`) of a tensor of `rank` dimensions.
    fn row_indices(&self, k: V, rank: usize) -> AdResult<Vec<V>> {
        let mut indices = vec![k];
        for _ in 1..rank {
            indices.push(self.splat(self.ty(k), 0.0)?);
        }
        Ok(indices)
    }

    /// `stack` with row `k` set to `row`.
    fn stack_row(&self, stack: V, row: V, k: V) -> AdResult<V> {
        let shape = [vec![1], self.shape(row)?].concat();
        let row = self.reshape(row, tensor_type(&shape, element(self.ty(row))?))?;
        let indices = self.row_indices(k, shape.len())?;
        self.dynamic_update_slice(stack, row, &indices)
    }

    /// Row `k` of `stack`.
    fn unstack_row(&self, stack: V, k: V) -> AdResult<V> {
        let shape = self.shape(stack)?;
        let sizes = [vec![1], shape[1..].to_vec()].concat();
        let indices = self.row_indices(k, shape.len())?;
        let row = self.dynamic_slice(stack, &indices, &sizes)?;
        self.reshape(row, tensor_type(&shape[1..], element(self.ty(stack))?))
    }

    fn binary(&self, name: &str, a: V, b: V) -> AdResult<V> {
        self.op(name, &[a, b], self.ty(a), &[])
    }

    fn unary(&self, name: &str, a: V) -> AdResult<V> {
        self.op(name, &[a], self.ty(a), &[])
    }

    fn add(&self, a: V, b: V) -> AdResult<V> {
        self.binary("fx.add", a, b)
    }

    fn sub(&self, a: V, b: V) -> AdResult<V> {
        self.binary("fx.sub", a, b)
    }

    fn mul(&self, a: V, b: V) -> AdResult<V> {
        self.binary("fx.mul", a, b)
    }

    fn div(&self, a: V, b: V) -> AdResult<V> {
        self.binary("fx.div", a, b)
    }

    fn neg(&self, a: V) -> AdResult<V> {
        self.unary("fx.neg", a)
    }

    /// A distinct value equal to `a` (a `fx.stop_gradient` is not differentiated through,
    /// so this uses `a + 0`... which would be; `fx.reshape` to the same type is an identity op).
    fn identity(&self, a: V) -> AdResult<V> {
        self.op("fx.reshape", &[a], self.ty(a), &[])
    }

    fn splat(&self, ty: Type<'c>, value: f64) -> AdResult<V> {
        let tensor = RankedTensorType::try_from(ty).map_err(|e| e.to_string())?;
        let element = tensor.element();
        let text = if element.is_float() {
            format!("dense<{value:.17e}> : {ty}")
        } else {
            format!("dense<{}> : {ty}", value as i64)
        };
        let attribute = Attribute::parse(self.context, &text)
            .ok_or_else(|| format!("cannot parse `{text}`"))?;
        self.op("fx.constant", &[], ty, &[("value", attribute)])
    }

    fn zeros_like(&self, value: V) -> AdResult<V> {
        self.splat(self.ty(value), 0.0)
    }

    fn compare(&self, predicate: &str, a: V, b: V) -> AdResult<V> {
        let ty = with_element(self.ty(a), IntegerType::new(self.context, 1).into())?;
        let predicate = StringAttribute::new(self.context, predicate).into();
        self.op("fx.compare", &[a, b], ty, &[("predicate", predicate)])
    }

    fn select(&self, pred: V, a: V, b: V) -> AdResult<V> {
        self.op("fx.select", &[pred, a, b], self.ty(a), &[])
    }

    fn convert(&self, a: V, like: Type<'c>) -> AdResult<V> {
        if self.ty(a) == like {
            return Ok(a);
        }
        self.op("fx.convert", &[a], like, &[])
    }

    fn array(&self, values: &[i64]) -> Attribute<'c> {
        DenseI64ArrayAttribute::new(self.context, values).into()
    }

    fn broadcast(&self, a: V, dims: &[i64], like: Type<'c>) -> AdResult<V> {
        let ty = with_element(like, element(self.ty(a))?)?;
        if self.ty(a) == ty && dims.iter().enumerate().all(|(i, d)| *d == i as i64) {
            return Ok(a);
        }
        self.op(
            "fx.broadcast_in_dim",
            &[a],
            ty,
            &[("broadcast_dimensions", self.array(dims))],
        )
    }

    fn reshape(&self, a: V, like: Type<'c>) -> AdResult<V> {
        let ty = with_element(like, element(self.ty(a))?)?;
        if self.ty(a) == ty {
            return Ok(a);
        }
        self.op("fx.reshape", &[a], ty, &[])
    }

    fn reduce_sum(&self, a: V, axes: &[i64]) -> AdResult<V> {
        self.reduce("sum", a, axes)
    }

    fn reduce(&self, kind: &str, a: V, axes: &[i64]) -> AdResult<V> {
        if axes.is_empty() {
            return Ok(a);
        }
        let shape: Vec<i64> = self
            .shape(a)?
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(&(*i as i64)))
            .map(|(_, d)| *d)
            .collect();
        let ty = tensor_type(&shape, element(self.ty(a))?);
        let kind = StringAttribute::new(self.context, kind).into();
        self.op(
            "fx.reduce",
            &[a],
            ty,
            &[("kind", kind), ("axes", self.array(axes))],
        )
    }

    fn integer_pow(&self, a: V, exponent: i64) -> AdResult<V> {
        let exponent =
            IntegerAttribute::new(IntegerType::new(self.context, 64).into(), exponent).into();
        self.op(
            "fx.integer_pow",
            &[a],
            self.ty(a),
            &[("exponent", exponent)],
        )
    }

    fn reverse(&self, a: V, dimensions: &[i64]) -> AdResult<V> {
        self.op(
            "fx.reverse",
            &[a],
            self.ty(a),
            &[("dimensions", self.array(dimensions))],
        )
    }

    fn transpose(&self, a: V, permutation: &[i64]) -> AdResult<V> {
        if permutation.iter().enumerate().all(|(i, p)| *p == i as i64) {
            return Ok(a);
        }
        let in_shape = self.shape(a)?;
        let shape: Vec<i64> = permutation.iter().map(|p| in_shape[*p as usize]).collect();
        let ty = tensor_type(&shape, element(self.ty(a))?);
        self.op(
            "fx.transpose",
            &[a],
            ty,
            &[("permutation", self.array(permutation))],
        )
    }

    fn dot_general(&self, a: V, b: V, dims: &Dims) -> AdResult<V> {
        let (sa, sb) = (self.shape(a)?, self.shape(b)?);
        let free = |shape: &[i64], batch: &[i64], contracting: &[i64]| -> Vec<i64> {
            (0..shape.len() as i64)
                .filter(|d| !batch.contains(d) && !contracting.contains(d))
                .map(|d| shape[d as usize])
                .collect()
        };
        let mut shape: Vec<i64> = dims.lhs_batch.iter().map(|d| sa[*d as usize]).collect();
        shape.extend(free(&sa, &dims.lhs_batch, &dims.lhs_contracting));
        shape.extend(free(&sb, &dims.rhs_batch, &dims.rhs_contracting));
        let ty = tensor_type(&shape, element(self.ty(a))?);
        let attributes = [
            ("lhs_batching_dimensions", self.array(&dims.lhs_batch)),
            ("rhs_batching_dimensions", self.array(&dims.rhs_batch)),
            (
                "lhs_contracting_dimensions",
                self.array(&dims.lhs_contracting),
            ),
            (
                "rhs_contracting_dimensions",
                self.array(&dims.rhs_contracting),
            ),
        ];
        self.op("fx.dot_general", &[a, b], ty, &attributes)
    }

    /// `trunc(q)` as `sign(q) * floor(|q|)`.
    fn dynamic_slice(&self, a: V, indices: &[V], sizes: &[i64]) -> AdResult<V> {
        let ty = tensor_type(sizes, element(self.ty(a))?);
        let operands = [&[a], indices].concat();
        self.op(
            "fx.dynamic_slice",
            &operands,
            ty,
            &[("sizes", self.array(sizes))],
        )
    }

    fn dynamic_update_slice(&self, a: V, update: V, indices: &[V]) -> AdResult<V> {
        let operands = [&[a, update], indices].concat();
        self.op("fx.dynamic_update_slice", &operands, self.ty(a), &[])
    }

    fn trunc(&self, q: V) -> AdResult<V> {
        let magnitude = self.unary("fx.abs", q)?;
        let floor = self.unary("fx.floor", magnitude)?;
        let sign = self.unary("fx.sign", q)?;
        self.mul(sign, floor)
    }

    /// JAX's balanced tie-break for `max`/`min`: 1 where `x` is the answer alone, 0.5 on ties.
    fn balanced_eq(&self, x: V, z: V, y: V) -> AdResult<V> {
        let x_is = self.compare("eq", x, z)?;
        let y_is = self.compare("eq", y, z)?;
        let half = self.splat(self.ty(x), 0.5)?;
        let one = self.splat(self.ty(x), 1.0)?;
        let zero = self.zeros_like(x)?;
        let share = self.select(y_is, half, one)?;
        self.select(x_is, share, zero)
    }
}

/// The dimension numbers of an `fx.dot_general`.
#[derive(Clone)]
struct Dims {
    lhs_batch: Vec<i64>,
    rhs_batch: Vec<i64>,
    lhs_contracting: Vec<i64>,
    rhs_contracting: Vec<i64>,
}

fn dot_dims(operation: MlirOperation) -> AdResult<Dims> {
    Ok(Dims {
        lhs_batch: i64s_attribute(operation, "lhs_batching_dimensions")?,
        rhs_batch: i64s_attribute(operation, "rhs_batching_dimensions")?,
        lhs_contracting: i64s_attribute(operation, "lhs_contracting_dimensions")?,
        rhs_contracting: i64s_attribute(operation, "rhs_contracting_dimensions")?,
    })
}

/// The cotangent of a `dot_general`'s lhs `x` (JAX's `_dot_general_transpose_lhs`); with
/// `swap_ans` the answer's free dimensions are (y's, x's), as for the rhs.
fn dot_transpose_lhs(
    b: &Builder,
    ct: V,
    x_rank: usize,
    y: V,
    dims: &Dims,
    swap_ans: bool,
) -> AdResult<V> {
    let y_rank = b.shape(y)?.len();
    let remaining = |rank: usize, a: &[i64], c: &[i64]| -> Vec<i64> {
        (0..rank as i64)
            .filter(|d| !a.contains(d) && !c.contains(d))
            .collect()
    };
    let x_kept = remaining(x_rank, &dims.lhs_contracting, &dims.lhs_batch);
    let y_kept = remaining(y_rank, &dims.rhs_contracting, &dims.rhs_batch);
    let nb = dims.lhs_batch.len() as i64;
    let ans_batch: Vec<i64> = (0..nb).collect();
    let ans_y: Vec<i64> = if swap_ans {
        (nb..nb + y_kept.len() as i64).collect()
    } else {
        (nb + x_kept.len() as i64..nb + x_kept.len() as i64 + y_kept.len() as i64).collect()
    };
    let contracted = Dims {
        lhs_batch: ans_batch,
        rhs_batch: dims.rhs_batch.clone(),
        lhs_contracting: ans_y,
        rhs_contracting: y_kept,
    };
    let mut order: Vec<usize> = (0..dims.rhs_contracting.len()).collect();
    order.sort_by_key(|i| dims.rhs_contracting[*i]);
    let x_contract_sorted_by_y: Vec<i64> = order.iter().map(|i| dims.lhs_contracting[*i]).collect();
    let mut layout: Vec<i64> = dims.lhs_batch.clone();
    layout.extend(x_kept);
    layout.extend(x_contract_sorted_by_y);
    let mut out_axes: Vec<i64> = (0..layout.len() as i64).collect();
    out_axes.sort_by_key(|i| layout[*i as usize]);
    let product = b.dot_general(ct, y, &contracted)?;
    b.transpose(product, &out_axes)
}

fn element<'c>(ty: Type<'c>) -> AdResult<Type<'c>> {
    Ok(RankedTensorType::try_from(ty)
        .map_err(|e| e.to_string())?
        .element())
}

fn shape_of(ty: Type<'_>) -> AdResult<Vec<i64>> {
    RankedTensorType::try_from(ty).map_err(|e| e.to_string())?;
    super::ir::static_shape(ty)
        .ok_or_else(|| String::from("dynamic dimensions are not supported yet"))
}

fn tensor_type<'c>(shape: &[i64], element: Type<'c>) -> Type<'c> {
    RankedTensorType::new(
        &shape.iter().map(|d| *d as u64).collect::<Vec<_>>(),
        element,
        None,
    )
    .into()
}

fn with_element<'c>(ty: Type<'c>, element: Type<'c>) -> AdResult<Type<'c>> {
    Ok(tensor_type(&shape_of(ty)?, element))
}

/// The tangent of `operation`'s result given its operands' tangents (None where zero).
fn jvp_rule(b: &Builder, operation: MlirOperation, tangents: &[Option<V>]) -> AdResult<Option<V>> {
    let name = op_name(operation);
    let args = operands(operation);
    let z = results(operation)[0];
    let t = |i: usize| tangents.get(i).copied().flatten();
    let zero_or = |i: usize| t(i).map_or_else(|| b.zeros_like(args[i]), Ok);
    let scale = |i: usize, factor: &dyn Fn() -> AdResult<V>| -> AdResult<Option<V>> {
        match t(i) {
            Some(tangent) => Ok(Some(b.mul(tangent, factor()?)?)),
            None => Ok(None),
        }
    };
    let sum = |x: Option<V>, y: Option<V>| -> AdResult<Option<V>> {
        match (x, y) {
            (Some(x), Some(y)) => Ok(Some(b.add(x, y)?)),
            (x, y) => Ok(x.or(y)),
        }
    };
    if !is_float(z) {
        return Ok(None);
    }
    Ok(match name.as_str() {
        _ if is_nondifferentiable(&name) => None,
        "fx.add" => sum(t(0), t(1))?,
        "fx.sub" => sum(t(0), t(1).map(|x| b.neg(x)).transpose()?)?,
        "fx.mul" => sum(scale(0, &|| Ok(args[1]))?, scale(1, &|| Ok(args[0]))?)?,
        "fx.div" => sum(
            scale(0, &|| Ok(args[1]))?
                .map(|_| b.div(t(0).expect("tangent"), args[1]))
                .transpose()?,
            scale(1, &|| b.div(z, args[1]))?
                .map(|x| b.neg(x))
                .transpose()?,
        )?,
        "fx.rem" => sum(
            t(0),
            scale(1, &|| b.div(args[0], args[1]).and_then(|q| b.trunc(q)))?
                .map(|x| b.neg(x))
                .transpose()?,
        )?,
        "fx.pow" => sum(
            scale(0, &|| pow_lhs_factor(b, args[0], args[1]))?,
            scale(1, &|| pow_rhs_factor(b, args[0], z))?,
        )?,
        "fx.max" | "fx.min" => sum(
            scale(0, &|| b.balanced_eq(args[0], z, args[1]))?,
            scale(1, &|| b.balanced_eq(args[1], z, args[0]))?,
        )?,
        "fx.neg" => t(0).map(|x| b.neg(x)).transpose()?,
        "fx.exp" => scale(0, &|| Ok(z))?,
        "fx.log" => t(0).map(|x| b.div(x, args[0])).transpose()?,
        "fx.log1p" => t(0)
            .map(|x| {
                b.splat(b.ty(z), 1.0)
                    .and_then(|one| b.add(one, args[0]))
                    .and_then(|d| b.div(x, d))
            })
            .transpose()?,
        "fx.expm1" => scale(0, &|| b.splat(b.ty(z), 1.0).and_then(|one| b.add(z, one)))?,
        "fx.sin" => scale(0, &|| b.unary("fx.cos", args[0]))?,
        "fx.cos" => scale(0, &|| b.unary("fx.sin", args[0]).and_then(|s| b.neg(s)))?,
        "fx.tanh" => scale(0, &|| tanh_factor(b, z))?,
        "fx.sqrt" => t(0)
            .map(|x| b.add(z, z).and_then(|two_z| b.div(x, two_z)))
            .transpose()?,
        "fx.abs" => t(0).map(|x| abs_transpose(b, args[0], x)).transpose()?,
        "fx.integer_pow" => {
            let k = int_attribute(operation, "exponent")?;
            scale(0, &|| integer_pow_factor(b, args[0], k))?
        }
        "fx.select" => {
            if t(1).is_none() && t(2).is_none() {
                None
            } else {
                Some(b.select(args[0], zero_or(1)?, zero_or(2)?)?)
            }
        }
        "fx.convert" => t(0).map(|x| b.convert(x, b.ty(z))).transpose()?,
        "fx.broadcast_in_dim" => t(0)
            .map(|x| {
                b.broadcast(
                    x,
                    &i64s_attribute(operation, "broadcast_dimensions")?,
                    b.ty(z),
                )
            })
            .transpose()?,
        "fx.reshape" => t(0).map(|x| b.reshape(x, b.ty(z))).transpose()?,
        "fx.reduce" => match string_attribute(operation, "kind")?.as_str() {
            "prod" => match t(0) {
                Some(x) => {
                    let axes = i64s_attribute(operation, "axes")?;
                    let (permutation, _, products) = exclusive_products(b, args[0], &axes)?;
                    let moved = b.transpose(x, &permutation)?;
                    let flat_t = b.reshape(moved, b.ty(products))?;
                    let weighted = b.mul(flat_t, products)?;
                    let last = b.shape(weighted)?.len() as i64 - 1;
                    Some(b.reduce_sum(weighted, &[last])?)
                }
                None => None,
            },
            "sum" => t(0)
                .map(|x| b.reduce_sum(x, &i64s_attribute(operation, "axes")?))
                .transpose()?,
            _ => {
                let (mask, counts) = chooser_mask(b, operation)?;
                match t(0) {
                    Some(x) => {
                        let picked = b.mul(x, mask)?;
                        let total = b.reduce_sum(picked, &i64s_attribute(operation, "axes")?)?;
                        Some(b.div(total, counts)?)
                    }
                    None => None,
                }
            }
        },
        "fx.dynamic_slice" => t(0)
            .map(|x| b.dynamic_slice(x, &args[1..], &b.shape(z)?))
            .transpose()?,
        "fx.dynamic_update_slice" => {
            if t(0).is_none() && t(1).is_none() {
                None
            } else {
                Some(b.dynamic_update_slice(zero_or(0)?, zero_or(1)?, &args[2..])?)
            }
        }
        "fx.slice" => t(0)
            .map(|x| {
                let attributes = [
                    (
                        "start_indices",
                        b.array(&i64s_attribute(operation, "start_indices")?),
                    ),
                    (
                        "limit_indices",
                        b.array(&i64s_attribute(operation, "limit_indices")?),
                    ),
                    ("strides", b.array(&i64s_attribute(operation, "strides")?)),
                ];
                b.op("fx.slice", &[x], b.ty(z), &attributes)
            })
            .transpose()?,
        "fx.pad" => {
            let attributes = [
                (
                    "edge_padding_low",
                    b.array(&i64s_attribute(operation, "edge_padding_low")?),
                ),
                (
                    "edge_padding_high",
                    b.array(&i64s_attribute(operation, "edge_padding_high")?),
                ),
                (
                    "interior_padding",
                    b.array(&i64s_attribute(operation, "interior_padding")?),
                ),
            ];
            Some(b.op("fx.pad", &[zero_or(0)?, zero_or(1)?], b.ty(z), &attributes)?)
        }
        "fx.asin" | "fx.acos" | "fx.atan" | "fx.erf" => {
            scale(0, &|| inverse_trig_factor(b, &name, args[0]))?
        }
        "fx.atan2" => {
            let (dy, dx) = atan2_factors(b, args[0], args[1])?;
            sum(scale(0, &|| Ok(dy))?, scale(1, &|| Ok(dx))?)?
        }
        "fx.transpose" => t(0)
            .map(|x| b.transpose(x, &i64s_attribute(operation, "permutation")?))
            .transpose()?,
        "fx.reverse" => t(0)
            .map(|x| b.reverse(x, &i64s_attribute(operation, "dimensions")?))
            .transpose()?,
        "fx.dot_general" => {
            let dims = dot_dims(operation)?;
            let left = t(0).map(|x| b.dot_general(x, args[1], &dims)).transpose()?;
            let right = t(1).map(|x| b.dot_general(args[0], x, &dims)).transpose()?;
            sum(left, right)?
        }
        other => return Err(format!("`{other}` has no JVP rule")),
    })
}

/// `f'(x)` of `asin`, `acos`, `atan` and `erf`.
fn inverse_trig_factor(b: &Builder, name: &str, x: V) -> AdResult<V> {
    let one = b.splat(b.ty(x), 1.0)?;
    let square = b.mul(x, x)?;
    match name {
        "fx.asin" | "fx.acos" => {
            let rest = b.sub(one, square)?;
            let root = b.unary("fx.sqrt", rest)?;
            let factor = b.div(one, root)?;
            if name == "fx.acos" {
                b.neg(factor)
            } else {
                Ok(factor)
            }
        }
        "fx.atan" => {
            let denominator = b.add(one, square)?;
            b.div(one, denominator)
        }
        _ => {
            let negated = b.neg(square)?;
            let gaussian = b.unary("fx.exp", negated)?;
            let scale = b.splat(b.ty(x), std::f64::consts::FRAC_2_SQRT_PI)?;
            b.mul(scale, gaussian)
        }
    }
}

/// `(d/dy, d/dx)` of `atan2(y, x)`: `x / (x² + y²)` and `-y / (x² + y²)`.
fn atan2_factors(b: &Builder, y: V, x: V) -> AdResult<(V, V)> {
    let xx = b.mul(x, x)?;
    let yy = b.mul(y, y)?;
    let denominator = b.add(xx, yy)?;
    let dy = b.div(x, denominator)?;
    let over = b.div(y, denominator)?;
    Ok((dy, b.neg(over)?))
}

fn pow_lhs_factor(b: &Builder, x: V, y: V) -> AdResult<V> {
    // y * x^(y-1), and 0 where y == 0.
    let one = b.splat(b.ty(y), 1.0)?;
    let y_minus_one = b.sub(y, one)?;
    let power = b.binary("fx.pow", x, y_minus_one)?;
    let factor = b.mul(y, power)?;
    let zero = b.zeros_like(y)?;
    let y_is_zero = b.compare("eq", y, zero)?;
    b.select(y_is_zero, zero, factor)
}

fn pow_rhs_factor(b: &Builder, x: V, z: V) -> AdResult<V> {
    // z * log(x), with log(1) where x == 0.
    let zero = b.zeros_like(x)?;
    let one = b.splat(b.ty(x), 1.0)?;
    let x_is_zero = b.compare("eq", x, zero)?;
    let safe = b.select(x_is_zero, one, x)?;
    let log = b.unary("fx.log", safe)?;
    b.mul(z, log)
}

fn tanh_factor(b: &Builder, z: V) -> AdResult<V> {
    let one = b.splat(b.ty(z), 1.0)?;
    let square = b.mul(z, z)?;
    b.sub(one, square)
}

fn abs_transpose(b: &Builder, x: V, t: V) -> AdResult<V> {
    let zero = b.zeros_like(x)?;
    let nonnegative = b.compare("ge", x, zero)?;
    let negated = b.neg(t)?;
    b.select(nonnegative, t, negated)
}

fn integer_pow_factor(b: &Builder, x: V, k: i64) -> AdResult<V> {
    match k {
        0 => b.zeros_like(x),
        1 => b.splat(b.ty(x), 1.0),
        _ => {
            let power = b.integer_pow(x, k - 1)?;
            let factor = b.splat(b.ty(x), k as f64)?;
            b.mul(factor, power)
        }
    }
}

/// For `reduce prod` over `axes` of `x`: the reduced axes moved last and flattened to one of
/// size `n`, and for each element the product of the others (`P[..., i] = prod_{j != i} x_j`),
/// computed without dividing, so zeros are handled. Returns (permutation, flat shape, P).
fn exclusive_products(b: &Builder, x: V, axes: &[i64]) -> AdResult<(Vec<i64>, Vec<i64>, V)> {
    let shape = b.shape(x)?;
    let rank = shape.len() as i64;
    let kept: Vec<i64> = (0..rank).filter(|d| !axes.contains(d)).collect();
    let mut permutation = kept.clone();
    permutation.extend(axes.iter().copied());
    let moved = b.transpose(x, &permutation)?;
    let n: i64 = axes.iter().map(|a| shape[*a as usize]).product();
    let mut flat: Vec<i64> = kept.iter().map(|d| shape[*d as usize]).collect();
    flat.push(n);
    let element_type = element(b.ty(x))?;
    let flat_x = b.reshape(moved, tensor_type(&flat, element_type))?;
    let k = kept.len() as i64;
    let mut square = flat.clone();
    square.push(n);
    let mut dims: Vec<i64> = (0..k).collect();
    dims.push(k + 1);
    let spread = b.broadcast(flat_x, &dims, tensor_type(&square, element_type))?;
    let rows: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "[{}]",
                (0..n)
                    .map(|j| if i == j { "true" } else { "false" })
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    let eye_type = tensor_type(&[n, n], IntegerType::new(b.context, 1).into());
    let text = if n == 0 {
        format!("dense<false> : {eye_type}")
    } else {
        format!("dense<[{}]> : {eye_type}", rows.join(", "))
    };
    let eye = Attribute::parse(b.context, &text).ok_or("cannot build an identity mask")?;
    let eye = b.op("fx.constant", &[], eye_type, &[("value", eye)])?;
    let eye = b.broadcast(
        eye,
        &[k, k + 1],
        tensor_type(&square, IntegerType::new(b.context, 1).into()),
    )?;
    let ones = b.splat(tensor_type(&square, element_type), 1.0)?;
    let masked = b.select(eye, ones, spread)?;
    let products = b.reduce("prod", masked, &[k + 1])?;
    Ok((permutation, flat, products))
}

/// For `reduce max/min`: where the operand equals the answer (1.0 or 0.0), and how many times.
fn chooser_mask(b: &Builder, operation: MlirOperation) -> AdResult<(V, V)> {
    let x = operands(operation)[0];
    let z = results(operation)[0];
    let axes = i64s_attribute(operation, "axes")?;
    let rank = b.shape(x)?.len() as i64;
    let kept: Vec<i64> = (0..rank).filter(|d| !axes.contains(d)).collect();
    let answer = b.broadcast(z, &kept, b.ty(x))?;
    let equal = b.compare("eq", x, answer)?;
    let mask = b.convert(equal, b.ty(x))?;
    let counts = b.reduce_sum(mask, &axes)?;
    Ok((mask, counts))
}

/// The cotangents of `operation`'s operands given its result's cotangent `ct` (None where an
/// operand gets nothing): the transpose of the op's linearisation at the primal values.
fn transpose_rule(b: &Builder, operation: MlirOperation, ct: V) -> AdResult<Vec<Option<V>>> {
    let name = op_name(operation);
    let args = operands(operation);
    let z = results(operation)[0];
    Ok(match name.as_str() {
        "fx.add" => vec![Some(ct), Some(ct)],
        "fx.sub" => vec![Some(ct), Some(b.neg(ct)?)],
        "fx.mul" => vec![Some(b.mul(ct, args[1])?), Some(b.mul(args[0], ct)?)],
        "fx.div" => {
            let over_b = b.div(ct, args[1])?;
            let z_over_b = b.div(z, args[1])?;
            let scaled = b.mul(ct, z_over_b)?;
            vec![Some(over_b), Some(b.neg(scaled)?)]
        }
        "fx.rem" => {
            let q = b.div(args[0], args[1])?;
            let truncated = b.trunc(q)?;
            let scaled = b.mul(ct, truncated)?;
            vec![Some(ct), Some(b.neg(scaled)?)]
        }
        "fx.pow" => vec![
            Some(b.mul(ct, pow_lhs_factor(b, args[0], args[1])?)?),
            Some(b.mul(ct, pow_rhs_factor(b, args[0], z)?)?),
        ],
        "fx.max" | "fx.min" => vec![
            Some(b.mul(ct, b.balanced_eq(args[0], z, args[1])?)?),
            Some(b.mul(ct, b.balanced_eq(args[1], z, args[0])?)?),
        ],
        "fx.neg" => vec![Some(b.neg(ct)?)],
        "fx.exp" => vec![Some(b.mul(ct, z)?)],
        "fx.log" => vec![Some(b.div(ct, args[0])?)],
        "fx.log1p" => {
            let one = b.splat(b.ty(z), 1.0)?;
            let d = b.add(one, args[0])?;
            vec![Some(b.div(ct, d)?)]
        }
        "fx.expm1" => {
            let one = b.splat(b.ty(z), 1.0)?;
            let d = b.add(z, one)?;
            vec![Some(b.mul(ct, d)?)]
        }
        "fx.sin" => vec![Some(b.mul(ct, b.unary("fx.cos", args[0])?)?)],
        "fx.cos" => {
            let s = b.unary("fx.sin", args[0])?;
            let scaled = b.mul(ct, s)?;
            vec![Some(b.neg(scaled)?)]
        }
        "fx.tanh" => vec![Some(b.mul(ct, tanh_factor(b, z)?)?)],
        "fx.sqrt" => {
            let two_z = b.add(z, z)?;
            vec![Some(b.div(ct, two_z)?)]
        }
        "fx.abs" => vec![Some(abs_transpose(b, args[0], ct)?)],
        "fx.integer_pow" => {
            let k = int_attribute(operation, "exponent")?;
            vec![Some(b.mul(ct, integer_pow_factor(b, args[0], k)?)?)]
        }
        "fx.select" => {
            let zero = b.zeros_like(ct)?;
            vec![
                None,
                Some(b.select(args[0], ct, zero)?),
                Some(b.select(args[0], zero, ct)?),
            ]
        }
        "fx.convert" => vec![Some(b.convert(ct, b.ty(args[0]))?)],
        "fx.broadcast_in_dim" => {
            let dims = i64s_attribute(operation, "broadcast_dimensions")?;
            let in_shape = b.shape(args[0])?;
            let out_shape = b.shape(z)?;
            let mut axes: Vec<i64> = (0..out_shape.len() as i64)
                .filter(|d| !dims.contains(d))
                .collect();
            for (i, d) in dims.iter().enumerate() {
                if in_shape[i] == 1 && out_shape[*d as usize] != 1 {
                    axes.push(*d);
                }
            }
            axes.sort_unstable();
            let summed = b.reduce_sum(ct, &axes)?;
            vec![Some(b.reshape(summed, b.ty(args[0]))?)]
        }
        "fx.reshape" => vec![Some(b.reshape(ct, b.ty(args[0]))?)],
        "fx.reduce" => {
            let axes = i64s_attribute(operation, "axes")?;
            let rank = b.shape(args[0])?.len() as i64;
            let kept: Vec<i64> = (0..rank).filter(|d| !axes.contains(d)).collect();
            match string_attribute(operation, "kind")?.as_str() {
                "sum" => vec![Some(b.broadcast(ct, &kept, b.ty(args[0]))?)],
                "prod" => {
                    let (permutation, flat, products) = exclusive_products(b, args[0], &axes)?;
                    let k = flat.len() as i64 - 1;
                    let spread = b.broadcast(ct, &(0..k).collect::<Vec<_>>(), b.ty(products))?;
                    let weighted = b.mul(spread, products)?;
                    let moved_shape: Vec<i64> = permutation
                        .iter()
                        .map(|p| b.shape(args[0]).map(|s| s[*p as usize]))
                        .collect::<AdResult<_>>()?;
                    let unflat =
                        b.reshape(weighted, tensor_type(&moved_shape, element(b.ty(args[0]))?))?;
                    let mut inverse = vec![0i64; permutation.len()];
                    for (i, p) in permutation.iter().enumerate() {
                        inverse[*p as usize] = i as i64;
                    }
                    vec![Some(b.transpose(unflat, &inverse)?)]
                }
                _ => {
                    let (mask, counts) = chooser_mask(b, operation)?;
                    let share = b.div(ct, counts)?;
                    let spread = b.broadcast(share, &kept, b.ty(args[0]))?;
                    vec![Some(b.mul(spread, mask)?)]
                }
            }
        }
        "fx.dynamic_slice" => {
            let zeros = b.zeros_like(args[0])?;
            vec![Some(b.dynamic_update_slice(zeros, ct, &args[1..])?)]
        }
        "fx.dynamic_update_slice" => {
            let zeros = b.zeros_like(args[1])?;
            vec![
                Some(b.dynamic_update_slice(ct, zeros, &args[2..])?),
                Some(b.dynamic_slice(ct, &args[2..], &b.shape(args[1])?)?),
            ]
        }
        "fx.slice" => {
            let start = i64s_attribute(operation, "start_indices")?;
            let strides = i64s_attribute(operation, "strides")?;
            let in_shape = b.shape(args[0])?;
            let out_shape = b.shape(z)?;
            let high: Vec<i64> = (0..start.len())
                .map(|d| {
                    in_shape[d]
                        - if out_shape[d] == 0 {
                            start[d]
                        } else {
                            start[d] + (out_shape[d] - 1) * strides[d] + 1
                        }
                })
                .collect();
            let interior: Vec<i64> = strides.iter().map(|s| s - 1).collect();
            let padding = b.splat(tensor_type(&[], element(b.ty(ct))?), 0.0)?;
            let attributes = [
                ("edge_padding_low", b.array(&start)),
                ("edge_padding_high", b.array(&high)),
                ("interior_padding", b.array(&interior)),
            ];
            vec![Some(b.op(
                "fx.pad",
                &[ct, padding],
                b.ty(args[0]),
                &attributes,
            )?)]
        }
        "fx.pad" => {
            let low = i64s_attribute(operation, "edge_padding_low")?;
            let interior = i64s_attribute(operation, "interior_padding")?;
            let in_shape = b.shape(args[0])?;
            let limit: Vec<i64> = (0..low.len())
                .map(|d| low[d] + (in_shape[d] - 1).max(0) * (interior[d] + 1) + 1)
                .collect();
            let strides: Vec<i64> = interior.iter().map(|i| i + 1).collect();
            let attributes = [
                ("start_indices", b.array(&low)),
                ("limit_indices", b.array(&limit)),
                ("strides", b.array(&strides)),
            ];
            let operand_ct = b.op("fx.slice", &[ct], b.ty(args[0]), &attributes)?;
            let rank = in_shape.len() as i64;
            let all: Vec<i64> = (0..rank).collect();
            let total = b.reduce_sum(ct, &all)?;
            let inner = b.reduce_sum(operand_ct, &all)?;
            vec![Some(operand_ct), Some(b.sub(total, inner)?)]
        }
        "fx.asin" | "fx.acos" | "fx.atan" | "fx.erf" => {
            vec![Some(b.mul(ct, inverse_trig_factor(b, &name, args[0])?)?)]
        }
        "fx.atan2" => {
            let (dy, dx) = atan2_factors(b, args[0], args[1])?;
            vec![Some(b.mul(ct, dy)?), Some(b.mul(ct, dx)?)]
        }
        "fx.reverse" => vec![Some(
            b.reverse(ct, &i64s_attribute(operation, "dimensions")?)?,
        )],
        "fx.transpose" => {
            let permutation = i64s_attribute(operation, "permutation")?;
            let mut inverse = vec![0i64; permutation.len()];
            for (i, p) in permutation.iter().enumerate() {
                inverse[*p as usize] = i as i64;
            }
            vec![Some(b.transpose(ct, &inverse)?)]
        }
        "fx.dot_general" => {
            let dims = dot_dims(operation)?;
            let x_rank = b.shape(args[0])?.len();
            let y_rank = b.shape(args[1])?.len();
            let lhs = dot_transpose_lhs(b, ct, x_rank, args[1], &dims, false)?;
            let swapped = Dims {
                lhs_batch: dims.rhs_batch.clone(),
                rhs_batch: dims.lhs_batch.clone(),
                lhs_contracting: dims.rhs_contracting.clone(),
                rhs_contracting: dims.lhs_contracting.clone(),
            };
            let rhs = dot_transpose_lhs(b, ct, y_rank, args[0], &swapped, true)?;
            vec![Some(lhs), Some(rhs)]
        }
        other => return Err(format!("`{other}` has no transpose rule")),
    })
}
