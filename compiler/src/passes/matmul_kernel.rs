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
//!          strides) and a call of `@__ferrax_matmul_f32` (or `_f64`), a private function this
//!          pass adds once per element type. When the op before only zeroes `C` (a zero
//!          `linalg.fill`, or a copy of a zero-filled buffer), it is removed and the kernel
//!          writes `C` instead of adding to it.
//! Keeps:   every other op; a `linalg.matmul` it does not match stays, for the loop lowering.
//!
//! The kernel is the classic blocked scheme: for each block of `KC` contracted indices, it
//! copies that slab of `B` into panels of `NR` columns (zero-padded), then, for each block of
//! rows, copies `A`'s rows into panels of `MR` rows and computes every `MR x NR` tile of `C`
//! in `MR * NR / LANES` vector registers, one broadcast-FMA per register and contracted index.
//! The copies make every read of the inner loop contiguous, whatever the strides of `A` and
//! `B`. Copying `B` and the row blocks are `scf.parallel` loops: with threads (the threaded
//! pipeline) they run on all cores; without, they are plain loops. The tile shape fills 24 of
//! AVX-512's 32 vector registers.

use super::ir::{block_ops, op_name, operands, region_block, uses};
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

static PASS_ID: super::PassId = super::PassId;

/// Products with fewer multiply-adds than this keep their loop nest (packing would cost
/// more than it saves).
pub const MIN_WORK: u64 = 1 << 15;

/// The prefix of the kernels' names.
const KERNEL_PREFIX: &str = "__ferrax_matmul_";

/// Rows of `C` per register tile.
const MR: usize = 12;
/// Vector registers per row of a register tile.
const VECTORS_PER_ROW: usize = 2;
/// Contracted indices per packed slab (a `KC x NR` panel of `B` stays in the L1 cache).
const KC: usize = 256;
/// Rows of `C` per block at most (a block's packed `A` stays in the L2 cache).
const MC_MAX: usize = 144;

/// Creates the `matmul-kernel` pass.
pub fn create() -> Pass {
    super::module_pass(
        &PASS_ID,
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

fn run(module: OperationRef<'_, '_>, _pass: ExternalPass<'_>) {
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
    for element in ["f32", "f64"] {
        if found.iter().any(|m| m.element == element) {
            let kernel = Module::parse(context, &kernel_text(element))
                .expect("internal error: the matmul kernel does not parse");
            let function = kernel.body().first_operation().map(|f| (*f).clone());
            if let Some(function) = function {
                unsafe { mlir_sys::mlirBlockAppendOwnedOperation(body, function.into_raw()) };
            }
        }
    }
    for matmul in found {
        rewrite(context, &matmul);
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
fn rewrite(context: &Context, matmul: &Matmul) {
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
    let a = view(lhs, matmul.lhs_transposed);
    let b = view(rhs, matmul.rhs_transposed);
    let c = insert(
        OperationBuilder::new("memref.cast", location)
            .add_operands(&[unsafe { Value::from_raw(out) }])
            .add_results(&[rows_contiguous])
            .build()
            .expect("internal error: memref.cast"),
    );
    let zeroing = zero_initialisation(op, out);
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
    let callee = FlatSymbolRefAttribute::new(context, &format!("{KERNEL_PREFIX}{element}"));
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
/// `linalg.fill` of `out`, or a `memref.copy` into `out` of a buffer that only a zero
/// `linalg.fill` writes (bufferisation makes one zero buffer for products that share it),
/// with that buffer's allocation, fill and deallocation once nothing else reads it.
fn zero_initialisation(matmul: MlirOperation, out: MlirValue) -> Option<Vec<MlirOperation>> {
    let ops = block_ops(unsafe { mlir_sys::mlirOperationGetBlock(matmul) });
    let position = ops.iter().position(|op| op.ptr == matmul.ptr)?;
    let previous = *ops.get(position.checked_sub(1)?)?;
    let [source, target] = operands(previous)[..] else {
        return None;
    };
    if target.ptr != out.ptr {
        return None;
    }
    if op_name(previous) == "linalg.fill" {
        return is_zero(source).then(|| vec![previous]);
    }
    if op_name(previous) != "memref.copy" || !unsafe { mlir_sys::mlirValueIsAOpResult(source) } {
        return None;
    }
    let alloc = unsafe { mlir_sys::mlirOpResultGetOwner(source) };
    let users = uses(source);
    let fills: Vec<MlirOperation> = users
        .iter()
        .copied()
        .filter(|user| op_name(*user) == "linalg.fill")
        .collect();
    let only_zero_fill = op_name(alloc) == "memref.alloc"
        && matches!(fills[..], [fill] if operands(fill).first().is_some_and(|v| is_zero(*v)))
        && users.iter().all(|user| match op_name(*user).as_str() {
            "linalg.fill" | "memref.dealloc" => true,
            "memref.copy" => operands(*user).first().is_some_and(|v| v.ptr == source.ptr),
            _ => false,
        });
    if !only_zero_fill {
        return None;
    }
    let copies = users
        .iter()
        .filter(|user| op_name(**user) == "memref.copy")
        .count();
    if copies > 1 {
        return Some(vec![previous]);
    }
    let mut erased = vec![previous];
    erased.extend(users.iter().filter(|user| user.ptr != previous.ptr));
    erased.push(alloc);
    Some(erased)
}

/// Whether `value` is a float constant `+0.0`.
fn is_zero(value: MlirValue) -> bool {
    if !unsafe { mlir_sys::mlirValueIsAOpResult(value) } {
        return false;
    }
    let constant = unsafe { mlir_sys::mlirOpResultGetOwner(value) };
    if op_name(constant) != "arith.constant" {
        return false;
    }
    let Ok(text) = unsafe { OperationRef::from_raw(constant) }.attribute("value") else {
        return false;
    };
    let text = text.to_string();
    let number = text.split(':').next().map(|n| n.trim().parse::<f64>());
    matches!(number, Some(Ok(n)) if n == 0.0 && !n.is_sign_negative())
}

/// The kernel for one element type, as MLIR text: `@__ferrax_matmul_T(A, B, C, accumulate)`
/// computes `C = A @ B`, or `C += A @ B` when `accumulate` is true, for `A` of `M x K`, `B` of
/// `K x N` (any strides) and `C` of `M x N` (rows contiguous).
fn kernel_text(element: &str) -> String {
    let lanes = 64 / if element == "f64" { 8 } else { 4 };
    let nr = lanes * VECTORS_PER_ROW;
    let accumulators: Vec<String> = (0..MR)
        .flat_map(|r| (0..VECTORS_PER_ROW).map(move |v| format!("%acc{r}_{v}")))
        .collect();
    let vectors = vec!["{V}"; accumulators.len()].join(", ");

    // One step of the register tile: load a row of the B panel, then for each row of the A
    // panel broadcast its element and multiply-add.
    let mut step = String::new();
    for v in 0..VECTORS_PER_ROW {
        step += &format!(
            "            %bo{v} = arith.addi %bo, %c{} : index\n            %b{v} = vector.load %Bp[%bo{v}] : memref<?x{{T}}>, {{V}}\n",
            v * lanes
        );
    }
    let mut next = vec![];
    for r in 0..MR {
        step += &format!(
            "            %ao{r} = arith.addi %ao, %c{r} : index\n            %s{r} = memref.load %Ap[%ao{r}] : memref<?x{{T}}>\n            %a{r} = vector.broadcast %s{r} : {{T}} to {{V}}\n"
        );
        for v in 0..VECTORS_PER_ROW {
            step +=
                &format!("            %n{r}_{v} = vector.fma %a{r}, %b{v}, %acc{r}_{v} : {{V}}\n");
            next.push(format!("%n{r}_{v}"));
        }
    }
    let iter_args: Vec<String> = accumulators.iter().map(|a| format!("{a} = %zv")).collect();

    // Storing a whole tile straight into C, and an edge tile through a scratch tile.
    let mut store_full = String::new();
    let mut store_scratch = String::new();
    for r in 0..MR {
        store_full += &format!("            %row{r} = arith.addi %ip, %c{r} : index\n");
        for v in 0..VECTORS_PER_ROW {
            let acc = r * VECTORS_PER_ROW + v;
            store_full += &format!(
                "            %j{r}_{v} = arith.addi %j0, %c{col} : index
            %x{r}_{v} = scf.if %overwrite -> {{V}} {{
              scf.yield %tile#{acc} : {{V}}
            }} else {{
              %old = vector.load %C[%row{r}, %j{r}_{v}] : {{SC}}, {{V}}
              %sum = arith.addf %old, %tile#{acc} : {{V}}
              scf.yield %sum : {{V}}
            }}
            vector.store %x{r}_{v}, %C[%row{r}, %j{r}_{v}] : {{SC}}, {{V}}\n",
                col = v * lanes
            );
            store_scratch += &format!(
                "            vector.store %tile#{acc}, %scratch[%c{r}, %c{col}] : memref<{MR}x{nr}x{{T}}>, {{V}}\n",
                col = v * lanes
            );
        }
    }
    let mut pack_vectors = String::new();
    for v in 0..VECTORS_PER_ROW {
        pack_vectors += &format!(
            "          %pj{v} = arith.addi %qn, %c{col} : index
          %px{v} = vector.load %Brows[%kk, %pj{v}] : {{SC}}, {{V}}
          %pd{v} = arith.addi %ko, %c{col} : index
          vector.store %px{v}, %Bp[%pd{v}] : memref<?x{{T}}>, {{V}}\n",
            col = v * lanes
        );
    }
    let mut constants: Vec<usize> = (0..MR.max(3))
        .chain((0..VECTORS_PER_ROW).map(|v| v * lanes))
        .collect();
    constants.sort_unstable();
    constants.dedup();
    let constants: String = constants
        .iter()
        .map(|c| format!("  %c{c} = arith.constant {c} : index\n"))
        .collect();

    KERNEL
        .replace("{CONSTANTS}", &constants)
        .replace("{ITER_ARGS}", &iter_args.join(", "))
        .replace("{ACCUMULATORS}", &accumulators.len().to_string())
        .replace("{VECTORS}", &vectors)
        .replace("{STEP}", &step)
        .replace("{NEXT}", &next.join(", "))
        .replace("{STORE_FULL}", &store_full)
        .replace("{STORE_SCRATCH}", &store_scratch)
        .replace("{PACK_VECTORS}", &pack_vectors)
        .replace("{NAME}", &format!("{KERNEL_PREFIX}{element}"))
        .replace("{MR}", &MR.to_string())
        .replace("{NR}", &nr.to_string())
        .replace("{KC}", &KC.to_string())
        .replace("{MC_MAX}", &MC_MAX.to_string())
        .replace(
            "{SC}",
            &format!("memref<?x?x{element}, strided<[?, 1], offset: ?>>"),
        )
        .replace(
            "{SA}",
            &format!("memref<?x?x{element}, strided<[?, ?], offset: ?>>"),
        )
        .replace("{V}", &format!("vector<{lanes}x{element}>"))
        .replace("{T}", element)
}

/// The kernel's text; `kernel_text` fills in the register tile and the types (`{T}` the
/// element, `{V}` a vector register of it, `{SA}`/`{SC}` the views of the operands).
const KERNEL: &str = r#"func.func private @{NAME}(%A: {SA}, %B: {SA}, %C: {SC}, %accumulate: i1) {
{CONSTANTS}  %cMR = arith.constant {MR} : index
  %cNR = arith.constant {NR} : index
  %cKC = arith.constant {KC} : index
  %cMC = arith.constant {MC_MAX} : index
  %true = arith.constant true
  %zero = arith.constant 0.0 : {T}
  %zv = arith.constant dense<0.0> : {V}
  %M = memref.dim %A, %c0 : {SA}
  %K = memref.dim %A, %c1 : {SA}
  %N = memref.dim %B, %c1 : {SA}
  %Abase, %Aoffset, %Asizes:2, %Astrides:2 = memref.extract_strided_metadata %A : {SA} -> memref<{T}>, index, index, index, index, index
  %Bbase, %Boffset, %Bsizes:2, %Bstrides:2 = memref.extract_strided_metadata %B : {SA} -> memref<{T}>, index, index, index, index, index
  // Which copies read memory in order: A's rows contiguous (A stored as is), B's columns
  // contiguous (B stored transposed), B's rows contiguous (B stored as is).
  %arows = arith.cmpi eq, %Astrides#1, %c1 : index
  %bcolumns = arith.cmpi eq, %Bstrides#0, %c1 : index
  %brows = arith.cmpi eq, %Bstrides#1, %c1 : index
  %Brows = memref.reinterpret_cast %Bbase to offset: [%Boffset], sizes: [%K, %N], strides: [%Bstrides#0, 1] : memref<{T}> to {SC}
  %panels = arith.ceildivui %N, %cNR : index
  %bwidth = arith.muli %panels, %cNR : index
  %bsize = arith.muli %bwidth, %cKC : index
  %Bp = memref.alloc(%bsize) {alignment = 64 : i64} : memref<?x{T}>
  // Blocks of at most MC_MAX rows, whole tiles each; with an odd number of them the column
  // panels are split in two groups as well, so that two threads get equal shares.
  %blocks0 = arith.ceildivui %M, %cMC : index
  %mc0 = arith.ceildivui %M, %blocks0 : index
  %mc1 = arith.ceildivui %mc0, %cMR : index
  %MC = arith.muli %mc1, %cMR : index
  %blocks = arith.ceildivui %M, %MC : index
  %parity = arith.remui %blocks, %c2 : index
  %odd = arith.cmpi eq, %parity, %c1 : index
  %groups = arith.select %odd, %c2, %c1 : index
  %items = arith.muli %blocks, %groups : index
  %gpanels = arith.ceildivui %panels, %groups : index
  scf.for %pc = %c0 to %K step %cKC {
    %krest = arith.subi %K, %pc : index
    %kc = arith.minui %krest, %cKC : index
    // Pack B[pc : pc + kc, :] into panels of NR columns: panel q, element (k, c) at
    // q * NR * kc + k * NR + c; columns past N are zero.
    scf.parallel (%q) = (%c0) to (%panels) step (%c1) {
      %qn = arith.muli %q, %cNR : index
      %qb = arith.muli %qn, %kc : index
      %qend = arith.addi %qn, %cNR : index
      %wholepanel = arith.cmpi ule, %qend, %N : index
      %vectors = arith.andi %wholepanel, %brows : i1
      %bytransposed = arith.andi %wholepanel, %bcolumns : i1
      scf.if %vectors {
        scf.for %k = %c0 to %kc step %c1 {
          %kk = arith.addi %pc, %k : index
          %kn = arith.muli %k, %cNR : index
          %ko = arith.addi %qb, %kn : index
{PACK_VECTORS}        }
      } else {
        scf.if %bytransposed {
          scf.for %c = %c0 to %cNR step %c1 {
            %j = arith.addi %qn, %c : index
            %qc = arith.addi %qb, %c : index
            scf.for %k = %c0 to %kc step %c1 {
              %kk = arith.addi %pc, %k : index
              %x = memref.load %B[%kk, %j] : {SA}
              %kn = arith.muli %k, %cNR : index
              %d = arith.addi %qc, %kn : index
              memref.store %x, %Bp[%d] : memref<?x{T}>
            }
          }
        } else {
          scf.for %k = %c0 to %kc step %c1 {
            %kk = arith.addi %pc, %k : index
            %kn = arith.muli %k, %cNR : index
            %ko = arith.addi %qb, %kn : index
            scf.for %c = %c0 to %cNR step %c1 {
              %j = arith.addi %qn, %c : index
              %inside = arith.cmpi ult, %j, %N : index
              %v = scf.if %inside -> {T} {
                %x = memref.load %B[%kk, %j] : {SA}
                scf.yield %x : {T}
              } else {
                scf.yield %zero : {T}
              }
              %d = arith.addi %ko, %c : index
              memref.store %v, %Bp[%d] : memref<?x{T}>
            }
          }
        }
      }
      scf.reduce
    }
    %first = arith.cmpi eq, %pc, %c0 : index
    %add = arith.xori %accumulate, %true : i1
    %overwrite = arith.andi %first, %add : i1
    scf.parallel (%item) = (%c0) to (%items) step (%c1) {
      %block = arith.divui %item, %groups : index
      %group = arith.remui %item, %groups : index
      %qlow = arith.muli %group, %gpanels : index
      %qhigh0 = arith.addi %qlow, %gpanels : index
      %qhigh = arith.minui %qhigh0, %panels : index
      %i0 = arith.muli %block, %MC : index
      %mrest = arith.subi %M, %i0 : index
      %mc = arith.minui %mrest, %MC : index
      %apanels = arith.ceildivui %mc, %cMR : index
      %aheight = arith.muli %apanels, %cMR : index
      %asize = arith.muli %aheight, %kc : index
      %Ap = memref.alloc(%asize) {alignment = 64 : i64} : memref<?x{T}>
      %scratch = memref.alloc() {alignment = 64 : i64} : memref<{MR}x{NR}x{T}>
      // Pack A[i0 : i0 + mc, pc : pc + kc] into panels of MR rows: panel p, element (k, r)
      // at p * MR * kc + k * MR + r; rows past M are zero.
      scf.for %p = %c0 to %apanels step %c1 {
        %pm = arith.muli %p, %cMR : index
        %pb = arith.muli %pm, %kc : index
        %ip = arith.addi %i0, %pm : index
        %pend = arith.addi %ip, %cMR : index
        %wholerows = arith.cmpi ule, %pend, %M : index
        %byrows = arith.andi %wholerows, %arows : i1
        scf.if %byrows {
          scf.for %r = %c0 to %cMR step %c1 {
            %i = arith.addi %ip, %r : index
            %pr = arith.addi %pb, %r : index
            scf.for %k = %c0 to %kc step %c1 {
              %kk = arith.addi %pc, %k : index
              %x = memref.load %A[%i, %kk] : {SA}
              %km = arith.muli %k, %cMR : index
              %d = arith.addi %pr, %km : index
              memref.store %x, %Ap[%d] : memref<?x{T}>
            }
          }
        } else {
          scf.for %k = %c0 to %kc step %c1 {
            %kk = arith.addi %pc, %k : index
            %km = arith.muli %k, %cMR : index
            %ko = arith.addi %pb, %km : index
            scf.for %r = %c0 to %cMR step %c1 {
              %i = arith.addi %ip, %r : index
              %inside = arith.cmpi ult, %i, %M : index
              %v = scf.if %inside -> {T} {
                %x = memref.load %A[%i, %kk] : {SA}
                scf.yield %x : {T}
              } else {
                scf.yield %zero : {T}
              }
              %d = arith.addi %ko, %r : index
              memref.store %v, %Ap[%d] : memref<?x{T}>
            }
          }
        }
      }
      scf.for %q = %qlow to %qhigh step %c1 {
        %j0 = arith.muli %q, %cNR : index
        %qb = arith.muli %j0, %kc : index
        %nrest = arith.subi %N, %j0 : index
        %nwhole = arith.cmpi uge, %nrest, %cNR : index
        scf.for %p = %c0 to %apanels step %c1 {
          %pm = arith.muli %p, %cMR : index
          %pb = arith.muli %pm, %kc : index
          %ip = arith.addi %i0, %pm : index
          %tile:{ACCUMULATORS} = scf.for %k = %c0 to %kc step %c1 iter_args({ITER_ARGS}) -> ({VECTORS}) {
            %kn = arith.muli %k, %cNR : index
            %bo = arith.addi %qb, %kn : index
            %km = arith.muli %k, %cMR : index
            %ao = arith.addi %pb, %km : index
{STEP}            scf.yield {NEXT} : {VECTORS}
          }
          %mleft = arith.subi %M, %ip : index
          %mwhole = arith.cmpi uge, %mleft, %cMR : index
          %whole = arith.andi %mwhole, %nwhole : i1
          scf.if %whole {
{STORE_FULL}          } else {
{STORE_SCRATCH}            %mlimit = arith.minui %mleft, %cMR : index
            %nlimit = arith.minui %nrest, %cNR : index
            scf.for %r = %c0 to %mlimit step %c1 {
              scf.for %c = %c0 to %nlimit step %c1 {
                %t = memref.load %scratch[%r, %c] : memref<{MR}x{NR}x{T}>
                %i = arith.addi %ip, %r : index
                %j = arith.addi %j0, %c : index
                %x = scf.if %overwrite -> {T} {
                  scf.yield %t : {T}
                } else {
                  %old = memref.load %C[%i, %j] : {SC}
                  %sum = arith.addf %old, %t : {T}
                  scf.yield %sum : {T}
                }
                memref.store %x, %C[%i, %j] : {SC}
              }
            }
          }
        }
      }
      memref.dealloc %scratch : memref<{MR}x{NR}x{T}>
      memref.dealloc %Ap : memref<?x{T}>
      scf.reduce
    }
  }
  memref.dealloc %Bp : memref<?x{T}>
  return
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_parse_and_verify() {
        let context = ferrax_dialects::create_context();
        for element in ["f32", "f64"] {
            let module = Module::parse(&context, &kernel_text(element)).expect("the kernel parses");
            assert!(module.as_operation().verify());
        }
    }
}
