//! `matmul-kernel`: computes large float matrix products with a packed, register-tiled,
//! vectorised kernel instead of a loop nest.
//!
//! Runs on: `builtin.module`, after bufferisation, before the `linalg` ops become loops.
//! Input:   `linalg.matmul` ops on memrefs, as `fx-to-linalg` makes them of a large float32
//!          or float64 `dot_general` of two matrices (`x @ w`, `x.T @ g`, `g @ w.T`): loops
//!          `(m, n, k)`, `C[m, n] += A[.] * B[.]` with `A` indexed by `m` and `k` in either
//!          order and `B` by `k` and `n` in either order.
//! Output:  each one whose `C` has the identity layout becomes views (`memref.transpose` for
//!          an operand stored the other way round, `memref.cast` to dynamic sizes and
//!          strides) and a call of the kernel for its element type (`crate::kernel_text`):
//!          with `Kernel::InModule` the pass adds the kernel's MLIR to the module, once per
//!          element type; with `Prebuilt` or `PrebuiltThreaded` it adds a declaration of the
//!          sequential or threaded kernel built with the compiler (`crate::kernels`). When the
//!          op before only zeroes `C` (a zero `linalg.fill`, or a copy of a buffer that a
//!          zero `linalg.fill` set and nothing wrote since), it is removed and the kernel
//!          writes `C` instead of adding to it.
//! Keeps:   every other op; a `linalg.matmul` it does not match stays, for the loop lowering.

use super::ir::{block_ops, defining_op, op_name, operands, region_block, uses};
use crate::kernel_text::{kernel_declaration, kernel_name, kernel_text};
use melior::{
    Context,
    ir::{
        Attribute, AttributeLike, BlockLike, Identifier, Location, Module, OperationRef, Type,
        Value,
        attribute::FlatSymbolRefAttribute,
        operation::{OperationBuilder, OperationLike, WalkOrder, WalkResult},
    },
    pass::{ExternalPass, Pass},
};
use mlir_sys::{MlirOperation, MlirType, MlirValue};

/// Products with fewer multiply-adds than this keep their loop nest (packing would cost
/// more than it saves).
pub const MIN_WORK: u64 = 1 << 15;

/// Where the kernel comes from.
#[derive(Clone, Copy, PartialEq)]
pub enum Kernel {
    /// Its MLIR, added to the module (libraries: compiled for their target CPU).
    InModule,
    /// The kernel built with the compiler (`crate::kernels`), declared: the JIT provides it.
    Prebuilt,
    /// The threaded kernel built with the compiler, declared.
    PrebuiltThreaded,
}

static PASS_ID: super::PassId = super::PassId;
static PREBUILT_PASS_ID: super::PassId = super::PassId;
static PREBUILT_THREADED_PASS_ID: super::PassId = super::PassId;

/// Creates the `matmul-kernel` pass, for a kernel of `kind`.
pub fn create(kind: Kernel) -> Pass {
    let (id, run): (
        &'static super::PassId,
        fn(OperationRef<'_, '_>, ExternalPass<'_>),
    ) = match kind {
        Kernel::InModule => (&PASS_ID, |m, _| run(m, Kernel::InModule)),
        Kernel::Prebuilt => (&PREBUILT_PASS_ID, |m, _| run(m, Kernel::Prebuilt)),
        Kernel::PrebuiltThreaded => (&PREBUILT_THREADED_PASS_ID, |m, _| {
            run(m, Kernel::PrebuiltThreaded)
        }),
    };
    super::module_pass(
        id,
        "matmul-kernel",
        "Compute large float matrix products with a packed, register-tiled kernel",
        run,
    )
}

/// A contraction the kernel computes.
struct Matmul {
    operation: MlirOperation,
    element: &'static str,
    /// `A` is indexed `(k, m)`, `B` `(n, k)`.
    lhs_transposed: bool,
    rhs_transposed: bool,
}

fn run(module: OperationRef<'_, '_>, kind: Kernel) {
    let mut found = vec![];
    module.walk(WalkOrder::PreOrder, |operation| {
        if let Some(matmul) = matmul(operation.to_raw()) {
            found.push(matmul);
        }
        WalkResult::Advance
    });
    if found.is_empty() {
        return;
    }
    let context_ref = module.context();
    // Safety: `context_ref` outlives every use of `context` in this function.
    let context = unsafe { context_ref.to_ref() };
    let body = region_block(module.to_raw(), 0);
    let threaded = kind == Kernel::PrebuiltThreaded;
    for element in ["f32", "f64"] {
        if found.iter().any(|m| m.element == element) {
            let name = kernel_name(element, threaded);
            let text = match kind {
                Kernel::InModule => kernel_text(element, &name, false, false),
                Kernel::Prebuilt | Kernel::PrebuiltThreaded => kernel_declaration(element, &name),
            };
            let kernel = Module::parse(context, &text)
                .expect("internal error: the matmul kernel does not parse");
            let function = kernel.body().first_operation().map(|f| (*f).clone());
            if let Some(function) = function {
                unsafe { mlir_sys::mlirBlockAppendOwnedOperation(body, function.into_raw()) };
            }
        }
    }
    for matmul in found {
        rewrite(context, &matmul, &kernel_name(matmul.element, threaded));
    }
}

/// The contraction `operation` computes, if the kernel can.
fn matmul(operation: MlirOperation) -> Option<Matmul> {
    if op_name(operation) != "linalg.matmul" {
        return None;
    }
    let [lhs, rhs, out] = operands(operation)[..] else {
        return None;
    };
    let types = [lhs, rhs, out].map(|v| unsafe { mlir_sys::mlirValueGetType(v) });
    if !types.iter().all(|t| is_strided_matrix(*t)) || !has_identity_layout(types[2]) {
        return None;
    }
    let element = unsafe { mlir_sys::mlirShapedTypeGetElementType(types[2]) };
    let element = if unsafe { mlir_sys::mlirTypeIsAF32(element) } {
        "f32"
    } else if unsafe { mlir_sys::mlirTypeIsAF64(element) } {
        "f64"
    } else {
        return None;
    };
    let op = unsafe { OperationRef::from_raw(operation) };
    let maps = maps(op.attribute("indexing_maps").ok()?)?;
    let [lhs_map, rhs_map, out_map] = &maps[..] else {
        return None;
    };
    // Loops (m, n, k) = (d0, d1, d2).
    let lhs_transposed = match lhs_map[..] {
        [Some(0), Some(2)] => false,
        [Some(2), Some(0)] => true,
        _ => return None,
    };
    let rhs_transposed = match rhs_map[..] {
        [Some(2), Some(1)] => false,
        [Some(1), Some(2)] => true,
        _ => return None,
    };
    (out_map[..] == [Some(0), Some(1)]).then_some(Matmul {
        operation,
        element,
        lhs_transposed,
        rhs_transposed,
    })
}

/// A rank-2 memref with static sizes and a strided layout.
fn is_strided_matrix(t: MlirType) -> bool {
    unsafe {
        mlir_sys::mlirTypeIsAMemRef(t)
            && mlir_sys::mlirShapedTypeHasStaticShape(t)
            && mlir_sys::mlirShapedTypeGetRank(t) == 2
            && (has_identity_layout(t)
                || mlir_sys::mlirAttributeIsAStridedLayout(mlir_sys::mlirMemRefTypeGetLayout(t)))
    }
}

fn has_identity_layout(t: MlirType) -> bool {
    unsafe { mlir_sys::mlirAffineMapIsIdentity(mlir_sys::mlirMemRefTypeGetAffineMap(t)) }
}

/// The loop dimension each result of each indexing map reads (`None` for an expression
/// that is not a dimension).
fn maps(attribute: Attribute) -> Option<Vec<Vec<Option<usize>>>> {
    let raw = attribute.to_raw();
    unsafe {
        (0..mlir_sys::mlirArrayAttrGetNumElements(raw))
            .map(|i| {
                let map =
                    mlir_sys::mlirAffineMapAttrGetValue(mlir_sys::mlirArrayAttrGetElement(raw, i));
                (0..mlir_sys::mlirAffineMapGetNumResults(map))
                    .map(|r| {
                        let expr = mlir_sys::mlirAffineMapGetResult(map, r);
                        mlir_sys::mlirAffineExprIsADim(expr)
                            .then(|| mlir_sys::mlirAffineDimExprGetPosition(expr) as usize)
                    })
                    .collect()
            })
            .collect::<Vec<_>>()
    }
    .into()
}

/// Replaces the contraction with views of its operands and a call of the kernel.
fn rewrite(context: &Context, matmul: &Matmul, kernel: &str) {
    let location = Location::unknown(context);
    let op = matmul.operation;
    let block = unsafe { mlir_sys::mlirOperationGetBlock(op) };
    let insert = |operation: melior::ir::Operation| -> MlirValue {
        let raw = operation.into_raw();
        unsafe {
            mlir_sys::mlirBlockInsertOwnedOperationBefore(block, op, raw);
            mlir_sys::mlirOperationGetResult(raw, 0)
        }
    };
    let element = matmul.element;
    let parse_type = |text: &str| {
        Type::parse(context, text).expect("internal error: a matmul view type does not parse")
    };
    let strided = parse_type(&format!(
        "memref<?x?x{element}, strided<[?, ?], offset: ?>>"
    ));
    let rows_contiguous = parse_type(&format!(
        "memref<?x?x{element}, strided<[?, 1], offset: ?>>"
    ));
    let [lhs, rhs, out] = operands(op)[..] else {
        return;
    };
    let view = |value: MlirValue, transposed: bool| -> MlirValue {
        let value = unsafe { Value::from_raw(value) };
        let cast = insert(
            OperationBuilder::new("memref.cast", location)
                .add_operands(&[value])
                .add_results(&[strided])
                .build()
                .expect("internal error: memref.cast"),
        );
        if !transposed {
            return cast;
        }
        let permutation = Attribute::parse(context, "affine_map<(d0, d1) -> (d1, d0)>")
            .expect("internal error: permutation");
        insert(
            OperationBuilder::new("memref.transpose", location)
                .add_operands(&[unsafe { Value::from_raw(cast) }])
                .add_results(&[strided])
                .add_attributes(&[(Identifier::new(context, "permutation"), permutation)])
                .build()
                .expect("internal error: memref.transpose"),
        )
    };
    // Before the views are inserted: it looks at the op before the product.
    let zeroing = zero_initialisation(op, out);
    let a = view(lhs, matmul.lhs_transposed);
    let b = view(rhs, matmul.rhs_transposed);
    let c = insert(
        OperationBuilder::new("memref.cast", location)
            .add_operands(&[unsafe { Value::from_raw(out) }])
            .add_results(&[rows_contiguous])
            .build()
            .expect("internal error: memref.cast"),
    );
    let accumulate = Attribute::parse(context, if zeroing.is_some() { "false" } else { "true" })
        .expect("internal error: i1 attribute");
    let bool_type = Type::parse(context, "i1").expect("internal error: i1");
    let flag = insert(
        OperationBuilder::new("arith.constant", location)
            .add_results(&[bool_type])
            .add_attributes(&[(Identifier::new(context, "value"), accumulate)])
            .build()
            .expect("internal error: arith.constant"),
    );
    let arguments: Vec<Value> = [a, b, c, flag]
        .iter()
        .map(|v| unsafe { Value::from_raw(*v) })
        .collect();
    let callee = FlatSymbolRefAttribute::new(context, kernel);
    let call = OperationBuilder::new("func.call", location)
        .add_operands(&arguments)
        .add_attributes(&[(Identifier::new(context, "callee"), callee.into())])
        .build()
        .expect("internal error: func.call");
    unsafe {
        mlir_sys::mlirBlockInsertOwnedOperationBefore(block, op, call.into_raw());
        mlir_sys::mlirOperationDestroy(op);
        for erased in zeroing.unwrap_or_default() {
            mlir_sys::mlirOperationDestroy(erased);
        }
    }
}

/// The ops that only set `out` to zero before `matmul`, if its previous op does: a zero
/// `linalg.fill` of `out`, or a `memref.copy` into `out` of a buffer that holds zeros then.
/// Bufferisation makes one zero buffer for the products and `select`s that use zeros, and may
/// reuse it later as a product's output: the buffer holds zeros at the copy when a zero
/// `linalg.fill` comes first and everything that uses it in between only reads it. When
/// nothing but such copies and reads uses the buffer, its allocation, fill and deallocation
/// go too, with the last copy.
fn zero_initialisation(matmul: MlirOperation, out: MlirValue) -> Option<Vec<MlirOperation>> {
    let ops = block_ops(unsafe { mlir_sys::mlirOperationGetBlock(matmul) });
    let position = ops.iter().position(|op| op.ptr == matmul.ptr)?;
    let copy_position = position.checked_sub(1)?;
    let previous = ops[copy_position];
    let [source, target] = operands(previous)[..] else {
        return None;
    };
    if target.ptr != out.ptr {
        return None;
    }
    if op_name(previous) == "linalg.fill" {
        return is_zero(source).then(|| vec![previous]);
    }
    if op_name(previous) != "memref.copy" {
        return None;
    }
    let alloc = defining_op(source).filter(|op| op_name(*op) == "memref.alloc")?;
    let users = uses(source);
    // Whether `user` only reads the buffer: a copy from it, or a linalg op with it among
    // its inputs only (its output is its last operand).
    let reads = |user: MlirOperation| match op_name(user).as_str() {
        "memref.copy" => operands(user).first().is_some_and(|v| v.ptr == source.ptr),
        "linalg.generic" | "linalg.matmul" => {
            operands(user).last().is_some_and(|v| v.ptr != source.ptr)
        }
        _ => false,
    };
    let position_of = |user: MlirOperation| ops.iter().position(|op| op.ptr == user.ptr);
    let fills: Vec<MlirOperation> = users
        .iter()
        .copied()
        .filter(|user| op_name(*user) == "linalg.fill")
        .collect();
    let [fill] = fills[..] else { return None };
    let fill_position = position_of(fill)?;
    if fill_position > copy_position || !operands(fill).first().is_some_and(|v| is_zero(*v)) {
        return None;
    }
    // Every use up to the copy only reads the zeros (ops after it cannot change them).
    let zeros_at_copy = users.iter().all(|user| {
        user.ptr == fill.ptr
            || reads(*user)
            || position_of(*user).is_some_and(|p| p > copy_position)
    });
    if !zeros_at_copy {
        return None;
    }
    let only_reads = users.iter().all(|user| {
        matches!(op_name(*user).as_str(), "linalg.fill" | "memref.dealloc") || reads(*user)
    });
    let readers = users.iter().filter(|user| reads(**user)).count();
    if !only_reads || readers > 1 {
        return Some(vec![previous]);
    }
    let mut erased = vec![previous];
    erased.extend(users.iter().filter(|user| user.ptr != previous.ptr));
    erased.push(alloc);
    Some(erased)
}

/// Whether `value` is a float constant `+0.0`.
fn is_zero(value: MlirValue) -> bool {
    let Some(constant) = defining_op(value).filter(|op| op_name(*op) == "arith.constant") else {
        return false;
    };
    let Ok(text) = unsafe { OperationRef::from_raw(constant) }.attribute("value") else {
        return false;
    };
    let text = text.to_string();
    let number = text.split(':').next().map(|n| n.trim().parse::<f64>());
    matches!(number, Some(Ok(n)) if n == 0.0 && !n.is_sign_negative())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product into a copy of a zero buffer, as bufferisation makes for `relu(x @ w)`, with
    /// `between` placed after the zero fill and before the copy, and the zero buffer then
    /// reused as a second product's output; returns the module after the pass.
    fn after_pass(between: &str) -> String {
        let text = format!(
            r#"func.func @f(%x: memref<64x64xf32>, %w: memref<64x64xf32>, %y: memref<64x64xf32>, %z: memref<64x64xf32>) {{
  %zero = arith.constant 0.0 : f32
  %zeros = memref.alloc() : memref<64x64xf32>
  linalg.fill ins(%zero : f32) outs(%zeros : memref<64x64xf32>)
  {between}
  %c = memref.alloc() : memref<64x64xf32>
  memref.copy %zeros, %c : memref<64x64xf32> to memref<64x64xf32>
  linalg.matmul ins(%x, %w : memref<64x64xf32>, memref<64x64xf32>) outs(%c : memref<64x64xf32>)
  memref.copy %c, %y : memref<64x64xf32> to memref<64x64xf32>
  linalg.matmul ins(%x, %w : memref<64x64xf32>, memref<64x64xf32>) outs(%zeros : memref<64x64xf32>)
  memref.copy %zeros, %z : memref<64x64xf32> to memref<64x64xf32>
  return
}}"#
        );
        let context = ferrax_dialects::create_context();
        let mut module = Module::parse(&context, &text).expect("the test module parses");
        let manager = melior::pass::PassManager::new(&context);
        manager.add_pass(create(Kernel::Prebuilt));
        manager.run(&mut module).expect("the pass runs");
        module.as_operation().to_string()
    }

    #[test]
    fn a_product_into_zeros_overwrites_instead_of_adding() {
        let ir = after_pass("");
        // The first product writes its output without the copy of zeros; the second adds to
        // the zero buffer itself, which its fill keeps zero.
        assert_eq!(ir.matches("memref.copy").count(), 2, "{ir}");
        assert_eq!(ir.matches("arith.constant false").count(), 1, "{ir}");
        assert_eq!(ir.matches("arith.constant true").count(), 1, "{ir}");
        assert_eq!(ir.matches("linalg.fill").count(), 1, "{ir}");
    }

    #[test]
    fn zeros_written_before_the_copy_are_added_to() {
        let ir = after_pass(
            "linalg.matmul ins(%x, %w : memref<64x64xf32>, memref<64x64xf32>) outs(%zeros : memref<64x64xf32>)",
        );
        // The product right after the fill overwrites it; the copy of what it wrote stays,
        // and the product into that copy adds to it.
        assert_eq!(ir.matches("arith.constant false").count(), 1, "{ir}");
        assert_eq!(ir.matches("arith.constant true").count(), 2, "{ir}");
        assert_eq!(ir.matches("memref.copy").count(), 3, "{ir}");
    }

    #[test]
    fn kernels_parse_and_verify() {
        let context = ferrax_dialects::create_context();
        for element in ["f32", "f64"] {
            let text = kernel_text(element, &kernel_name(element, false), false, false);
            let module = Module::parse(&context, &text).expect("the kernel parses");
            assert!(module.as_operation().verify());
        }
    }
}
