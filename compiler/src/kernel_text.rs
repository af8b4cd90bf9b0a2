//! The matmul kernel as MLIR text: `@NAME(A, B, C, accumulate)` computes `C = A @ B`, or
//! `C += A @ B` when `accumulate` is true, for `A` of `M x K`, `B` of `K x N` (any strides)
//! and `C` of `M x N` (rows contiguous).
//!
//! `matmul-kernel` adds it to modules that compile it (libraries); the build compiles it
//! once (`kernels_module`, `build.rs`) into the kernels the JIT calls (`kernels`). This file
//! uses nothing from the crate, so that `build.rs` can include it.
//!
//! The scheme: the work is split in shares, one per thread (one without threads): ranges of
//! `NR`-column panels of `C` when `B` is at least as wide as `A` is tall and has a panel for
//! each share, else ranges of rows. Each share, for each block of `KC` contracted indices, copies its slab of `B` into
//! panels of `NR` columns (zero-padded), then, for each block of its rows, copies `A`'s rows
//! into panels of `MR` rows and computes every `MR x NR` tile of its part of `C` in
//! `MR * NR / LANES` vector registers, one broadcast-FMA per register and contracted index.
//! The copies make every read of the inner loop contiguous, whatever the strides of `A` and
//! `B`; each share copies for itself (the smaller operand is copied by every share), so no
//! thread reads what another wrote, and one parallel region serves the whole product. The
//! 8 x 32 tile (float32) keeps 16 of AVX-512's 32 vector registers; 8 rows divide the usual
//! batch sizes, so few tiles are partial.

/// The prefix of the kernels' names.
pub const KERNEL_PREFIX: &str = "__ferrax_matmul_";

/// Rows of `C` per register tile.
pub const MR: usize = 8;
/// Vector registers per row of a register tile.
pub const VECTORS_PER_ROW: usize = 2;
/// Contracted indices per packed slab (a `KC x NR` panel of `B` stays in the L1 cache).
pub const KC: usize = 256;
/// Rows of `C` per block at most (a block's packed `A` stays in the L2 cache).
pub const MC_MAX: usize = 144;

/// The kernel's symbol for `element`, threaded (OpenMP) or not.
pub fn kernel_name(element: &str, threaded: bool) -> String {
    if threaded {
        format!("{KERNEL_PREFIX}threads_{element}")
    } else {
        format!("{KERNEL_PREFIX}{element}")
    }
}

/// A private declaration of the kernel `name` for `element`.
pub fn kernel_declaration(element: &str, name: &str) -> String {
    format!(
        "func.func private @{name}(memref<?x?x{element}, strided<[?, ?], offset: ?>>, \
         memref<?x?x{element}, strided<[?, ?], offset: ?>>, \
         memref<?x?x{element}, strided<[?, 1], offset: ?>>, i1)"
    )
}

/// The passes that lower the kernel (scf, vector, memref on its own) to the LLVM dialect.
const KERNEL_PIPELINE: &str = "builtin.module(expand-strided-metadata,lower-affine,convert-scf-to-cf,\
     convert-vector-to-llvm,finalize-memref-to-llvm,convert-arith-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,\
     reconcile-unrealized-casts)";

/// `KERNEL_PIPELINE` with the kernel's parallel loops on OpenMP.
const THREADED_KERNEL_PIPELINE: &str = "builtin.module(convert-scf-to-openmp,canonicalize,expand-strided-metadata,\
     lower-affine,convert-scf-to-cf,convert-vector-to-llvm,convert-openmp-to-llvm,finalize-memref-to-llvm,\
     convert-arith-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,reconcile-unrealized-casts)";

/// The declaration of the OpenMP runtime function that threaded kernels call, once per module.
const THREADS_DECLARATION: &str = "func.func private @omp_get_max_threads() -> i32";

/// The module of the public float32 and float64 kernels, threaded or not, and the pipeline
/// that lowers it to the LLVM dialect: what `build.rs` and `kernels::compiled_here` compile.
pub fn kernels_module(threaded: bool) -> (String, &'static str) {
    let mut text: Vec<String> = ["f32", "f64"]
        .iter()
        .map(|e| kernel_text(e, &kernel_name(e, threaded), true, threaded))
        .collect();
    if threaded {
        text.push(THREADS_DECLARATION.to_string());
        (text.join("\n"), THREADED_KERNEL_PIPELINE)
    } else {
        (text.join("\n"), KERNEL_PIPELINE)
    }
}

/// The kernel for `element` (`f32` or `f64`) as a `func.func` named `name`, private or
/// public; `threaded`, it shares its work among OpenMP's threads (its module needs
/// `THREADS_DECLARATION`).
pub fn kernel_text(element: &str, name: &str, public: bool, threaded: bool) -> String {
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
    // Copying one column of an A panel whose rows are whole: a load from each row.
    let mut pack_rows = String::new();
    for r in 0..MR {
        pack_rows += &format!(
            "            %pi{r} = arith.addi %ip, %c{r} : index
            %pa{r} = memref.load %A[%pi{r}, %kk] : {{SA}}
            %po{r} = arith.addi %ko, %c{r} : index
            memref.store %pa{r}, %Ap[%po{r}] : memref<?x{{T}}>\n"
        );
    }
    // The rows' offsets (0 and 1 are used whatever MR is) and the vectors' columns.
    let mut constants: Vec<usize> = (0..MR.max(2))
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
        .replace("{PACK_ROWS}", &pack_rows)
        .replace(
            "{SHARES}",
            if threaded {
                "  %threads = func.call @omp_get_max_threads() : () -> i32\n  %shares = arith.index_cast %threads : i32 to index\n"
            } else {
                "  %shares = arith.constant 1 : index\n"
            },
        )
        .replace("{NAME}", name)
        .replace("{VISIBILITY}", if public { "" } else { "private " })
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
const KERNEL: &str = r#"func.func {VISIBILITY}@{NAME}(%A: {SA}, %B: {SA}, %C: {SC}, %accumulate: i1) {
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
  %wholepanels = arith.divui %N, %cNR : index
  %add = arith.xori %accumulate, %true : i1
  // One share of the work per thread, each with copies of its own: a range of column panels
  // (all rows; A is copied by every share) when B has as many columns as A has rows and
  // enough panels, else a range of rows (B is copied by every share). No share reads what
  // another wrote.
{SHARES}  %rowtiles = arith.ceildivui %M, %cMR : index
  %enoughpanels = arith.cmpi uge, %panels, %shares : index
  %wide = arith.cmpi uge, %N, %M : index
  %bycolumns = arith.andi %wide, %enoughpanels : i1
  %sharepanels = arith.ceildivui %panels, %shares : index
  %sharetiles = arith.ceildivui %rowtiles, %shares : index
  %sharerows = arith.muli %sharetiles, %cMR : index
  scf.parallel (%share) = (%c0) to (%shares) step (%c1) {
    %qlow0 = arith.muli %share, %sharepanels : index
    %qlow1 = arith.minui %qlow0, %panels : index
    %qhigh0 = arith.addi %qlow1, %sharepanels : index
    %qhigh1 = arith.minui %qhigh0, %panels : index
    %ilow0 = arith.muli %share, %sharerows : index
    %ilow1 = arith.minui %ilow0, %M : index
    %ihigh0 = arith.addi %ilow1, %sharerows : index
    %ihigh1 = arith.minui %ihigh0, %M : index
    %qlow = arith.select %bycolumns, %qlow1, %c0 : index
    %qhigh = arith.select %bycolumns, %qhigh1, %panels : index
    %ilow = arith.select %bycolumns, %c0, %ilow1 : index
    %ihigh = arith.select %bycolumns, %M, %ihigh1 : index
    %qcount = arith.subi %qhigh, %qlow : index
    %mshare = arith.subi %ihigh, %ilow : index
    // A share without rows or columns (more threads than work) copies nothing.
    %hasrows = arith.cmpi ugt, %mshare, %c0 : index
    %hascolumns = arith.cmpi ugt, %qcount, %c0 : index
    %work = arith.andi %hasrows, %hascolumns : i1
    scf.if %work {
      // Blocks of at most MC_MAX rows, whole tiles each.
      %blocks = arith.ceildivui %mshare, %cMC : index
      %mc0 = arith.ceildivui %mshare, %blocks : index
      %mc1 = arith.ceildivui %mc0, %cMR : index
      %MC = arith.muli %mc1, %cMR : index
      %bwidth = arith.muli %qcount, %cNR : index
      %bsize = arith.muli %bwidth, %cKC : index
      %asize = arith.muli %MC, %cKC : index
      %Bp = memref.alloc(%bsize) {alignment = 64 : i64} : memref<?x{T}>
      %Ap = memref.alloc(%asize) {alignment = 64 : i64} : memref<?x{T}>
      %scratch = memref.alloc() {alignment = 64 : i64} : memref<{MR}x{NR}x{T}>
      %qwhole = arith.minui %qhigh, %wholepanels : index
      %qvectors0 = arith.select %brows, %qwhole, %qlow : index
      %qvectors = arith.maxui %qvectors0, %qlow : index
      scf.for %pc = %c0 to %K step %cKC {
        %krest = arith.subi %K, %pc : index
        %kc = arith.minui %krest, %cKC : index
        %first = arith.cmpi eq, %pc, %c0 : index
        %overwrite = arith.andi %first, %add : i1
        // Copy B[pc : pc + kc, the share's panels] into panels of NR columns: panel q at
        // (q - qlow) * NR * kc, element (k, c) of it at k * NR + c; columns past N are zero.
        // Where B's rows are contiguous, the whole panels are copied a row of B at a time, in
        // vectors (reading B in order); the other panels one by one.
        scf.for %k = %c0 to %kc step %c1 {
          %kk = arith.addi %pc, %k : index
          %kn = arith.muli %k, %cNR : index
          scf.for %q = %qlow to %qvectors step %c1 {
            %qn = arith.muli %q, %cNR : index
            %ql = arith.subi %q, %qlow : index
            %qln = arith.muli %ql, %cNR : index
            %qb = arith.muli %qln, %kc : index
            %ko = arith.addi %qb, %kn : index
{PACK_VECTORS}        }
        }
        scf.for %q = %qvectors to %qhigh step %c1 {
          %qn = arith.muli %q, %cNR : index
          %ql = arith.subi %q, %qlow : index
          %qln = arith.muli %ql, %cNR : index
          %qb = arith.muli %qln, %kc : index
          %qend = arith.addi %qn, %cNR : index
          %wholepanel = arith.cmpi ule, %qend, %N : index
          %bytransposed = arith.andi %wholepanel, %bcolumns : i1
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
        scf.for %i0 = %ilow to %ihigh step %MC {
          %mrest = arith.subi %ihigh, %i0 : index
          %mc = arith.minui %mrest, %MC : index
          %apanels = arith.ceildivui %mc, %cMR : index
          // Copy A[i0 : i0 + mc, pc : pc + kc] into panels of MR rows: panel p, element (k, r)
          // at p * MR * kc + k * MR + r; rows past the share's are zero.
          scf.for %p = %c0 to %apanels step %c1 {
            %pm = arith.muli %p, %cMR : index
            %pb = arith.muli %pm, %kc : index
            %ip = arith.addi %i0, %pm : index
            %pend = arith.addi %ip, %cMR : index
            %wholerows = arith.cmpi ule, %pend, %ihigh : index
            %byrows = arith.andi %wholerows, %arows : i1
            scf.if %byrows {
              scf.for %k = %c0 to %kc step %c1 {
                %kk = arith.addi %pc, %k : index
                %km = arith.muli %k, %cMR : index
                %ko = arith.addi %pb, %km : index
{PACK_ROWS}            }
            } else {
              scf.for %k = %c0 to %kc step %c1 {
                %kk = arith.addi %pc, %k : index
                %km = arith.muli %k, %cMR : index
                %ko = arith.addi %pb, %km : index
                scf.for %r = %c0 to %cMR step %c1 {
                  %i = arith.addi %ip, %r : index
                  %inside = arith.cmpi ult, %i, %ihigh : index
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
            %ql = arith.subi %q, %qlow : index
            %qln = arith.muli %ql, %cNR : index
            %qb = arith.muli %qln, %kc : index
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
{STEP}              scf.yield {NEXT} : {VECTORS}
              }
              %mleft = arith.subi %ihigh, %ip : index
              %mwhole = arith.cmpi uge, %mleft, %cMR : index
              %whole = arith.andi %mwhole, %nwhole : i1
              scf.if %whole {
{STORE_FULL}            } else {
{STORE_SCRATCH}              %mlimit = arith.minui %mleft, %cMR : index
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
        }
      }
      memref.dealloc %scratch : memref<{MR}x{NR}x{T}>
      memref.dealloc %Ap : memref<?x{T}>
      memref.dealloc %Bp : memref<?x{T}>
    }
    scf.reduce
  }
  return
}"#;
