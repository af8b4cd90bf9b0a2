//! Emission of fx ops for traced arrays: NumPy broadcasting, JAX's dtype promotion and the
//! shape rules of each op, with the source location of the expression on every op.

use super::value::{ArrayType, DType, Traced, Value, mlir_element, promote, shape_repr};
use crate::diagnostic::Diagnostic;
use crate::syntax::span::{SourceMap, Span};
use ferrax_dialects::fx;
use melior::{
    Context,
    dialect::func,
    ir::{
        Attribute, Block, BlockLike, Identifier, Location, Operation, Region, RegionLike, Type,
        ValueLike,
        attribute::{DenseElementsAttribute, StringAttribute, TypeAttribute},
        operation::OperationLike,
        r#type::{FunctionType, RankedTensorType},
    },
};
use mlir_sys::MlirValue;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub type DResult<T> = Result<T, Diagnostic>;

/// A region whose tracing was interrupted (see `Emitter::suspend_region`).
pub struct SuspendedRegion<'c>((usize, Block<'c>));

/// Elementwise binary ops of fx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Max,
    Min,
    And,
    Or,
    Atan2,
}

/// Elementwise unary ops of fx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Neg,
    Exp,
    Log,
    Log1p,
    Expm1,
    Sin,
    Cos,
    Tanh,
    Sqrt,
    Abs,
    Sign,
    Floor,
    Not,
    Round,
    Asin,
    Acos,
    Atan,
    Erf,
}

impl Unary {
    pub fn name(self) -> &'static str {
        match self {
            Unary::Neg => "negative",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Log1p => "log1p",
            Unary::Expm1 => "expm1",
            Unary::Sin => "sin",
            Unary::Cos => "cos",
            Unary::Tanh => "tanh",
            Unary::Sqrt => "sqrt",
            Unary::Abs => "abs",
            Unary::Sign => "sign",
            Unary::Floor => "floor",
            Unary::Not => "logical_not",
            Unary::Round => "round",
            Unary::Asin => "arcsin",
            Unary::Acos => "arccos",
            Unary::Atan => "arctan",
            Unary::Erf => "erf",
        }
    }

    /// Ops defined on floats only: integer operands are converted to float first (as jnp).
    fn float_only(self) -> bool {
        matches!(
            self,
            Unary::Exp
                | Unary::Log
                | Unary::Log1p
                | Unary::Expm1
                | Unary::Sin
                | Unary::Cos
                | Unary::Tanh
                | Unary::Sqrt
                | Unary::Asin
                | Unary::Acos
                | Unary::Atan
                | Unary::Erf
        )
    }
}

/// Builds functions: a stack of blocks under construction (a differentiated function is
/// traced into its own `func.func` while its caller is being traced), the values defined in
/// them, and where they came from.
pub struct Emitter<'c, 'a> {
    /// Finished functions, in the order they were completed (callees before callers). Declared
    /// first so they are dropped before the blocks whose values they may still use.
    pub functions: Vec<Operation<'c>>,
    pub context: &'c Context,
    sources: &'a SourceMap,
    /// Blocks under construction, innermost last, each with a unique id; the rest are the
    /// region blocks of loops, which see the values of the blocks around them.
    blocks: Vec<(usize, Block<'c>)>,
    /// Ids of the blocks that are function bodies (isolated from the blocks around them).
    functions_open: Vec<usize>,
    next_block: usize,
    /// Every traced value: the MLIR value and the id of the block that defines it.
    values: Vec<(MlirValue, usize)>,
    /// Copies of constants made in inner functions: (block id, value) to the copy.
    copies: RefCell<HashMap<(usize, usize), MlirValue>>,
    /// Values of enclosing functions that an inner function uses, each turned into a new
    /// parameter of the inner function: (function block id, the outer value, the parameter).
    captures: RefCell<Vec<(usize, Traced, MlirValue)>>,
    /// Set when a value is used in a function other than the one that defines it.
    escaped: Cell<bool>,
    /// The exact values of small constants, so a conversion makes a new constant instead of
    /// rounding (a Python float meeting a float64 array keeps all its digits, as in JAX).
    exact: HashMap<usize, Vec<f64>>,
}

impl<'c, 'a> Emitter<'c, 'a> {
    pub fn new(context: &'c Context, sources: &'a SourceMap) -> Self {
        Self {
            context,
            sources,
            blocks: vec![],
            functions_open: vec![],
            next_block: 0,
            values: vec![],
            functions: vec![],
            escaped: Cell::new(false),
            exact: HashMap::new(),
            copies: RefCell::new(HashMap::new()),
            captures: RefCell::new(vec![]),
        }
    }

    /// Starts a function with arguments of `inputs`; returns them as traced values.
    pub fn begin_function(&mut self, inputs: &[ArrayType], location: Location<'c>) -> Vec<Traced> {
        let arguments = self.begin_region(inputs, location);
        self.functions_open
            .push(self.blocks.last().map(|(id, _)| *id).expect("just pushed"));
        arguments
    }

    /// Starts the block of a region (a loop body), which sees the values around it.
    pub fn begin_region(&mut self, inputs: &[ArrayType], location: Location<'c>) -> Vec<Traced> {
        self.open_block(&[], inputs, location).1
    }

    /// Starts the body of an `scf.for`: its first argument is the induction variable (an
    /// `index`), returned raw, then one argument per carry.
    pub fn begin_loop_region(
        &mut self,
        inputs: &[ArrayType],
        location: Location<'c>,
    ) -> (MlirValue, Vec<Traced>) {
        let (leading, arguments) = self.open_block(&[Type::index(self.context)], inputs, location);
        (leading[0], arguments)
    }

    fn open_block(
        &mut self,
        leading: &[Type<'c>],
        inputs: &[ArrayType],
        location: Location<'c>,
    ) -> (Vec<MlirValue>, Vec<Traced>) {
        let types: Vec<(Type<'c>, Location<'c>)> = leading
            .iter()
            .copied()
            .chain(inputs.iter().map(|ty| self.tensor_type(ty)))
            .map(|ty| (ty, location))
            .collect();
        let block = Block::new(&types);
        let id = self.next_block;
        self.next_block += 1;
        let raw: Vec<MlirValue> = (0..types.len())
            .map(|i| block.argument(i).expect("one argument per type").to_raw())
            .collect();
        self.blocks.push((id, block));
        let (leading, arguments) = raw.split_at(leading.len());
        let arguments = arguments
            .iter()
            .zip(inputs)
            .map(|(raw, ty)| {
                self.values.push((*raw, id));
                Traced {
                    id: self.values.len() - 1,
                    ty: ty.clone(),
                }
            })
            .collect();
        (leading.to_vec(), arguments)
    }

    /// Appends an argument of type `ty` to the innermost block (a loop's extra carry).
    pub fn add_region_argument(&mut self, ty: &ArrayType, location: Location<'c>) -> Traced {
        let (id, block) = self.blocks.last().expect("a region is open");
        let id = *id;
        let raw = block.add_argument(self.tensor_type(ty), location).to_raw();
        self.values.push((raw, id));
        Traced {
            id: self.values.len() - 1,
            ty: ty.clone(),
        }
    }

    /// Closes the innermost region without its terminator, so another region can be traced
    /// before this one is finished (`resume_region`, then `end_region`).
    pub fn suspend_region(&mut self) -> SuspendedRegion<'c> {
        SuspendedRegion(self.blocks.pop().expect("a region is open"))
    }

    /// Makes a suspended region the innermost again.
    pub fn resume_region(&mut self, region: SuspendedRegion<'c>) {
        self.blocks.push(region.0);
    }

    /// An `index` constant in the innermost block.
    pub fn index_constant(&self, value: i64, location: Location<'c>) -> MlirValue {
        let index = Type::index(self.context);
        let operation = melior::ir::operation::OperationBuilder::new("arith.constant", location)
            .add_attributes(&[(
                Identifier::new(self.context, "value"),
                melior::ir::attribute::IntegerAttribute::new(index, value).into(),
            )])
            .add_results(&[index])
            .build()
            .expect("valid index constant");
        self.append(operation)[0]
    }

    /// A rank-0 integer array as an `index` value (`tensor.extract`, `arith.index_cast`).
    pub fn array_to_index(
        &mut self,
        span: Span,
        traced: &Traced,
        location: Location<'c>,
    ) -> MlirValue {
        let traced = self.convert(span, traced, DType::I32);
        let scalar = self.extract_scalar(&traced, location);
        // Safety: a live value of the innermost block.
        let scalar = unsafe { melior::ir::Value::from_raw(scalar) };
        let operation = melior::ir::operation::OperationBuilder::new("arith.index_cast", location)
            .add_operands(&[scalar])
            .add_results(&[Type::index(self.context)])
            .build()
            .expect("valid index_cast");
        self.append(operation)[0]
    }

    /// An `index` value as a rank-0 weak int32 array.
    pub fn index_to_array(&mut self, index: MlirValue, location: Location<'c>) -> Traced {
        let i32_type = Type::parse(self.context, "i32").expect("i32 parses");
        let ty = ArrayType {
            dtype: DType::I32,
            shape: vec![],
            weak: true,
        };
        // Safety: a live value of the innermost block.
        let index = unsafe { melior::ir::Value::from_raw(index) };
        let cast = melior::ir::operation::OperationBuilder::new("arith.index_cast", location)
            .add_operands(&[index])
            .add_results(&[i32_type])
            .build()
            .expect("valid index_cast");
        let scalar = self.append(cast)[0];
        let operation =
            melior::ir::operation::OperationBuilder::new("tensor.from_elements", location)
                .add_operands(&[unsafe { melior::ir::Value::from_raw(scalar) }])
                .add_results(&[self.tensor_type(&ty)])
                .build()
                .expect("valid from_elements");
        self.push(operation, ty)
    }

    /// Ends the innermost function, returning `results`, as `func.func @name`. Entry
    /// functions are public with the C interface; the others are private. Returns the values
    /// of enclosing functions it captured: they are its last parameters, in order.
    pub fn end_function(
        &mut self,
        name: &str,
        results: &[Traced],
        entry: bool,
        location: Location<'c>,
    ) -> Vec<Traced> {
        let values: Vec<melior::ir::Value<'c, '_>> =
            results.iter().map(|t| self.value(t)).collect();
        let result_types: Vec<Type<'c>> = results.iter().map(|t| self.tensor_type(&t.ty)).collect();
        self.append(func::r#return(&values, location));
        let (id, block) = self.blocks.pop().expect("a function is open");
        self.functions_open.pop();
        let captured: Vec<Traced> = {
            let mut captures = self.captures.borrow_mut();
            let (mine, others): (Vec<_>, Vec<_>) =
                captures.drain(..).partition(|(f, _, _)| *f == id);
            *captures = others;
            mine.into_iter().map(|(_, traced, _)| traced).collect()
        };
        let input_types: Vec<Type<'c>> = (0..block.argument_count())
            .map(|i| block.argument(i).expect("argument exists").r#type())
            .collect();
        let region = Region::new();
        region.append_block(block);
        let function_type = FunctionType::new(self.context, &input_types, &result_types);
        let mut attributes = vec![];
        if entry {
            attributes.push((
                Identifier::new(self.context, "llvm.emit_c_interface"),
                Attribute::unit(self.context),
            ));
        } else {
            attributes.push((
                Identifier::new(self.context, "sym_visibility"),
                StringAttribute::new(self.context, "private").into(),
            ));
        }
        self.functions.push(func::func(
            self.context,
            StringAttribute::new(self.context, name),
            TypeAttribute::new(function_type.into()),
            region,
            &attributes,
            location,
        ));
        captured
    }

    /// Ends the innermost region block with the terminator `name` on `operands` (a leading raw
    /// value, such as `scf.condition`'s flag, may come first); returns the block.
    pub fn end_region(
        &mut self,
        name: &str,
        leading: Option<MlirValue>,
        operands: &[Traced],
        location: Location<'c>,
    ) -> Block<'c> {
        let mut values: Vec<melior::ir::Value<'c, '_>> = vec![];
        if let Some(raw) = leading {
            // Safety: a live value of the innermost block.
            values.push(unsafe { melior::ir::Value::from_raw(raw) });
        }
        values.extend(operands.iter().map(|t| self.value(t)));
        let terminator = melior::ir::operation::OperationBuilder::new(name, location)
            .add_operands(&values)
            .build()
            .expect("valid terminator");
        self.append(terminator);
        self.blocks.pop().expect("a region is open").1
    }

    /// The scalar of a rank-0 bool array, as an `i1` (`tensor.extract`).
    pub fn extract_scalar(&self, traced: &Traced, location: Location<'c>) -> MlirValue {
        let element =
            Type::parse(self.context, mlir_element(traced.ty.dtype)).expect("element types parse");
        let operation = melior::ir::operation::OperationBuilder::new("tensor.extract", location)
            .add_operands(&[self.value(traced)])
            .add_results(&[element])
            .build()
            .expect("valid tensor.extract");
        self.append(operation)[0]
    }

    /// Appends an op with regions and results of types `tys` (e.g. `scf.while`); its operands
    /// are the raw `leading` values (loop bounds, a condition), then `operands`.
    pub fn push_with_regions(
        &mut self,
        name: &str,
        leading: &[MlirValue],
        operands: &[Traced],
        regions: Vec<Block<'c>>,
        tys: Vec<ArrayType>,
        location: Location<'c>,
    ) -> Vec<Traced> {
        // Safety: `leading` are live values of the innermost block.
        let mut values: Vec<melior::ir::Value<'c, '_>> = leading
            .iter()
            .map(|raw| unsafe { melior::ir::Value::from_raw(*raw) })
            .collect();
        values.extend(operands.iter().map(|t| self.value(t)));
        let types: Vec<Type<'c>> = tys.iter().map(|t| self.tensor_type(t)).collect();
        let regions: Vec<Region<'c>> = regions
            .into_iter()
            .map(|block| {
                let region = Region::new();
                region.append_block(block);
                region
            })
            .collect();
        let operation = melior::ir::operation::OperationBuilder::new(name, location)
            .add_operands(&values)
            .add_results(&types)
            .add_regions_vec(regions)
            .build()
            .expect("valid region op");
        self.push_many(operation, tys)
    }

    /// True (once) when a traced value was used outside the function that defines it.
    pub fn take_escaped(&self) -> bool {
        self.escaped.replace(false)
    }

    /// The MLIR value of `traced` in the innermost function. A value of an enclosing function
    /// that is computed from constants alone (a module-level array) is copied in; any other
    /// value from outside sets the escape flag (see `take_escaped`).
    pub fn value(&self, traced: &Traced) -> melior::ir::Value<'c, 'c> {
        let (raw, block) = self.values[traced.id];
        let current = self.blocks.last().map(|(id, _)| *id);
        let function = self.functions_open.last().copied().unwrap_or(0);
        let visible = self
            .blocks
            .iter()
            .rev()
            .any(|(id, _)| *id == block && *id >= function);
        let raw = if visible {
            raw
        } else {
            match current.and_then(|current| self.copy_constant(current, raw)) {
                Some(copy) => copy,
                None => match self.capture(traced, block) {
                    Some(parameter) => parameter,
                    None => {
                        self.escaped.set(true);
                        raw
                    }
                },
            }
        };
        // Safety: the value belongs to a block of this emitter, alive until the module is built.
        unsafe { melior::ir::Value::from_raw(raw) }
    }

    /// Makes a value of an enclosing, still open function a new parameter of the innermost
    /// function (closure conversion); the caller passes the value (see `end_function`).
    fn capture(&self, traced: &Traced, defining_block: usize) -> Option<MlirValue> {
        let function = *self.functions_open.last()?;
        if !self.blocks.iter().any(|(id, _)| *id == defining_block) || defining_block >= function {
            return None;
        }
        if let Some((_, _, parameter)) = self
            .captures
            .borrow()
            .iter()
            .find(|(f, t, _)| *f == function && t.id == traced.id)
        {
            return Some(*parameter);
        }
        let (_, block) = self.blocks.iter().find(|(id, _)| *id == function)?;
        let parameter = block
            .add_argument(
                self.tensor_type(&traced.ty),
                Location::unknown(self.context),
            )
            .to_raw();
        self.captures
            .borrow_mut()
            .push((function, traced.clone(), parameter));
        Some(parameter)
    }

    /// Copies the ops that compute `value` into the innermost block, when they depend on no
    /// block argument.
    fn copy_constant(&self, block: usize, value: MlirValue) -> Option<MlirValue> {
        if let Some(copy) = self.copies.borrow().get(&(block, value.ptr as usize)) {
            return Some(*copy);
        }
        // Safety: `value` is a live value of an enclosing block.
        let copy = unsafe {
            if !mlir_sys::mlirValueIsAOpResult(value) {
                return None;
            }
            let owner = mlir_sys::mlirOpResultGetOwner(value);
            let count = mlir_sys::mlirOperationGetNumOperands(owner);
            let mut operands = vec![];
            for i in 0..count {
                operands
                    .push(self.copy_constant(block, mlir_sys::mlirOperationGetOperand(owner, i))?);
            }
            let clone = mlir_sys::mlirOperationClone(owner);
            for (i, operand) in operands.into_iter().enumerate() {
                mlir_sys::mlirOperationSetOperand(clone, i as isize, operand);
            }
            let (_, current) = self.blocks.last()?;
            mlir_sys::mlirBlockAppendOwnedOperation(current.to_raw(), clone);
            mlir_sys::mlirOperationGetResult(
                clone,
                mlir_sys::mlirOpResultGetResultNumber(value) as isize,
            )
        };
        self.copies
            .borrow_mut()
            .insert((block, value.ptr as usize), copy);
        Some(copy)
    }

    pub fn location(&self, span: Span) -> Location<'c> {
        let source = self.sources.get(span.file);
        let (line, col) = source.line_col(span.start);
        Location::new(self.context, &source.name, line, col)
    }

    pub fn tensor_type(&self, ty: &ArrayType) -> Type<'c> {
        Type::parse(self.context, &ty.mlir()).expect("array types print as valid tensor types")
    }

    /// Appends `operation` to the innermost block; returns its results.
    fn append(&self, operation: Operation<'c>) -> Vec<MlirValue> {
        let (_, block) = self.blocks.last().expect("a function is open");
        let operation = block.append_operation(operation);
        operation.results().map(|r| r.to_raw()).collect()
    }

    fn push(&mut self, operation: Operation<'c>, ty: ArrayType) -> Traced {
        self.push_many(operation, vec![ty]).remove(0)
    }

    /// Appends an op with several results of types `tys`.
    pub fn push_many(&mut self, operation: Operation<'c>, tys: Vec<ArrayType>) -> Vec<Traced> {
        let block = self
            .blocks
            .last()
            .map(|(id, _)| *id)
            .expect("a function is open");
        let results = self.append(operation);
        results
            .into_iter()
            .zip(tys)
            .map(|(raw, ty)| {
                self.values.push((raw, block));
                Traced {
                    id: self.values.len() - 1,
                    ty,
                }
            })
            .collect()
    }

    /// An `fx.constant` with `values` (row-major) converted to `ty.dtype`.
    pub fn constant(&mut self, span: Span, values: &[f64], ty: ArrayType) -> Traced {
        let tensor = self.tensor_type(&ty);
        let shaped: Type<'c> = RankedTensorType::new(
            &ty.shape.iter().map(|d| *d as u64).collect::<Vec<_>>(),
            Type::parse(self.context, mlir_element(ty.dtype)).expect("element types parse"),
            None,
        )
        .into();
        if values.len() == 1 && ty.size() != 1 {
            let scalar = self.constant(
                span,
                values,
                ArrayType {
                    dtype: ty.dtype,
                    shape: vec![],
                    weak: ty.weak,
                },
            );
            let dims: Vec<i64> = vec![];
            return self.broadcast_in_dim(span, &scalar, &dims, &ty.shape);
        }
        let attribute: Attribute<'c> = match ty.dtype {
            DType::F32 => DenseElementsAttribute::f32_values(
                shaped,
                &values.iter().map(|v| *v as f32).collect::<Vec<_>>(),
            )
            .into(),
            DType::F64 => DenseElementsAttribute::f64_values(shaped, values).into(),
            DType::I32 => DenseElementsAttribute::i32_values(
                shaped,
                &values.iter().map(|v| *v as i32).collect::<Vec<_>>(),
            )
            .into(),
            DType::I64 => DenseElementsAttribute::i64_values(
                shaped,
                &values.iter().map(|v| *v as i64).collect::<Vec<_>>(),
            )
            .into(),
            DType::Bool => DenseElementsAttribute::bool_values(
                shaped,
                &values
                    .iter()
                    .map(|v| i32::from(*v != 0.0))
                    .collect::<Vec<_>>(),
            )
            .into(),
        };
        let location = self.location(span);
        let traced = self.push(fx::constant(location, attribute, tensor), ty);
        if values.len() <= 4096 {
            self.exact.insert(traced.id, values.to_vec());
        }
        traced
    }

    /// A Python scalar, list or array as a traced array (scalars are weakly typed).
    pub fn to_array(&mut self, span: Span, value: &Value) -> DResult<Traced> {
        match value {
            Value::Array(traced) => Ok(traced.clone()),
            Value::Bool(b) => Ok(self.constant(
                span,
                &[f64::from(u8::from(*b))],
                ArrayType::new(DType::Bool, vec![]),
            )),
            Value::Int(i) => {
                if i32::try_from(*i).is_err() {
                    return Err(Diagnostic::new(
                        "ferrax::dtype::overflow",
                        span,
                        format!("the integer {i} does not fit in int32"),
                    )
                    .label("too large for int32"));
                }
                Ok(self.constant(
                    span,
                    &[*i as f64],
                    ArrayType {
                        dtype: DType::I32,
                        shape: vec![],
                        weak: true,
                    },
                ))
            }
            Value::Float(f) => Ok(self.constant(
                span,
                &[*f],
                ArrayType {
                    dtype: DType::F32,
                    shape: vec![],
                    weak: true,
                },
            )),
            Value::Tuple(items) | Value::List(items) => self.stack_literal(span, items),
            other => Err(Diagnostic::new(
                "ferrax::type::not_array",
                span,
                format!("expected an array, found {}", other.describe()),
            )
            .label("not an array")),
        }
    }

    /// `jnp.array([...])`: a nested list of scalars becomes a constant; arrays inside are
    /// broadcast and stacked.
    pub fn stack_literal(&mut self, span: Span, items: &[Value]) -> DResult<Traced> {
        if let Some((shape, values, dtype)) = static_nested(items) {
            return Ok(self.constant(span, &values, ArrayType::new(dtype, shape)));
        }
        let mut parts = vec![];
        for item in items {
            parts.push(self.to_array(span, item)?);
        }
        let Some(first) = parts.first().cloned() else {
            return Ok(self.constant(span, &[], ArrayType::new(DType::F32, vec![0])));
        };
        let mut dtype = (first.ty.dtype, first.ty.weak);
        for part in &parts {
            if part.ty.shape != first.ty.shape {
                return Err(Diagnostic::new(
                    "ferrax::shape::stack",
                    span,
                    format!(
                        "all elements must have the same shape, found {} and {}",
                        shape_repr(&first.ty.shape),
                        shape_repr(&part.ty.shape)
                    ),
                ));
            }
            dtype = promote(dtype, (part.ty.dtype, part.ty.weak));
        }
        // Stack: broadcast each element to [n, ...] and pick row i with a one-hot select.
        let n = parts.len() as i64;
        let mut shape = vec![n];
        shape.extend(first.ty.shape.iter().copied());
        let index_type = ArrayType::new(DType::I32, shape.clone());
        let rows: Vec<f64> = (0..n)
            .flat_map(|i| std::iter::repeat_n(i as f64, first.ty.size() as usize))
            .collect();
        let rows = self.constant(span, &rows, index_type.clone());
        let mut result: Option<Traced> = None;
        for (i, part) in parts.iter().enumerate() {
            let part = self.convert(span, part, dtype.0);
            let part = self.broadcast_to(span, &part, &shape)?;
            result = Some(match result {
                None => part,
                Some(acc) => {
                    let index =
                        self.constant(span, &[i as f64], ArrayType::new(DType::I32, vec![]));
                    let index = self.broadcast_to(span, &index, &shape)?;
                    let pick = self.compare(span, fx::Predicate::Eq, &rows, &index);
                    self.select(span, &pick, &part, &acc)
                }
            });
        }
        let mut result = result.expect("at least one element");
        result.ty.weak = false;
        Ok(result)
    }

    /// Converts to `dtype` (keeps the weak flag only when the dtype does not change).
    pub fn convert(&mut self, span: Span, traced: &Traced, dtype: DType) -> Traced {
        if traced.ty.dtype == dtype {
            return traced.clone();
        }
        if let Some(values) = self.exact.get(&traced.id).cloned() {
            return self.constant(
                span,
                &values,
                ArrayType::new(dtype, traced.ty.shape.clone()),
            );
        }
        let ty = ArrayType::new(dtype, traced.ty.shape.clone());
        let location = self.location(span);
        let operation = fx::convert(location, self.value(traced), self.tensor_type(&ty));
        self.push(operation, ty)
    }

    /// Broadcasts to `shape` by NumPy's rules (trailing dimensions align).
    pub fn broadcast_to(&mut self, span: Span, traced: &Traced, shape: &[i64]) -> DResult<Traced> {
        if traced.ty.shape == shape {
            return Ok(traced.clone());
        }
        let rank = traced.ty.shape.len();
        if rank > shape.len() {
            return Err(broadcast_error(span, &traced.ty.shape, shape));
        }
        let offset = shape.len() - rank;
        for (i, dim) in traced.ty.shape.iter().enumerate() {
            if *dim != 1 && *dim != shape[offset + i] {
                return Err(broadcast_error(span, &traced.ty.shape, shape));
            }
        }
        let dims: Vec<i64> = (offset..shape.len()).map(|d| d as i64).collect();
        Ok(self.broadcast_in_dim(span, traced, &dims, shape))
    }

    /// Operand dimension `i` becomes result dimension `dims[i]` (the caller checks the sizes).
    pub fn broadcast_in_dim(
        &mut self,
        span: Span,
        traced: &Traced,
        dims: &[i64],
        shape: &[i64],
    ) -> Traced {
        if traced.ty.shape == shape {
            return traced.clone();
        }
        let ty = ArrayType {
            dtype: traced.ty.dtype,
            shape: shape.to_vec(),
            weak: traced.ty.weak,
        };
        let location = self.location(span);
        let operation = fx::broadcast_in_dim(
            self.context,
            location,
            self.value(traced),
            dims,
            self.tensor_type(&ty),
        );
        self.push(operation, ty)
    }

    /// Promotes two arrays to a common dtype and broadcasts them to a common shape.
    pub fn unify(&mut self, span: Span, a: &Traced, b: &Traced) -> DResult<(Traced, Traced)> {
        let (dtype, weak) = promote((a.ty.dtype, a.ty.weak), (b.ty.dtype, b.ty.weak));
        let shape = broadcast_shapes(&a.ty.shape, &b.ty.shape)
            .ok_or_else(|| broadcast_error(span, &a.ty.shape, &b.ty.shape))?;
        let mut a = self.convert(span, a, dtype);
        let mut b = self.convert(span, b, dtype);
        a.ty.weak = weak;
        b.ty.weak = weak;
        let a = self.broadcast_to(span, &a, &shape)?;
        let b = self.broadcast_to(span, &b, &shape)?;
        Ok((a, b))
    }

    /// An elementwise binary op on two arrays of one type.
    pub fn binary(&mut self, span: Span, op: Binary, a: &Traced, b: &Traced) -> Traced {
        let location = self.location(span);
        let (lhs, rhs) = (self.value(a), self.value(b));
        let operation = match op {
            Binary::Add => fx::add(location, lhs, rhs),
            Binary::Sub => fx::sub(location, lhs, rhs),
            Binary::Mul => fx::mul(location, lhs, rhs),
            Binary::Div => fx::div(location, lhs, rhs),
            Binary::Rem => fx::rem(location, lhs, rhs),
            Binary::Pow => fx::pow(location, lhs, rhs),
            Binary::Max => fx::max(location, lhs, rhs),
            Binary::Min => fx::min(location, lhs, rhs),
            Binary::And => fx::and(location, lhs, rhs),
            Binary::Or => fx::or(location, lhs, rhs),
            Binary::Atan2 => fx::atan2(location, lhs, rhs),
        };
        self.push(operation, a.ty.clone())
    }

    /// An elementwise unary op; float-only ops convert integer operands to float32 first.
    pub fn unary(&mut self, span: Span, op: Unary, a: &Traced) -> Traced {
        let a = if op.float_only() && !a.ty.dtype.is_float() {
            let weak = a.ty.weak;
            let mut converted = self.convert(span, a, DType::F32);
            converted.ty.weak = weak;
            converted
        } else {
            a.clone()
        };
        let location = self.location(span);
        let operand = self.value(&a);
        let operation = match op {
            Unary::Neg => fx::neg(location, operand),
            Unary::Exp => fx::exp(location, operand),
            Unary::Log => fx::log(location, operand),
            Unary::Log1p => fx::log1p(location, operand),
            Unary::Expm1 => fx::expm1(location, operand),
            Unary::Sin => fx::sin(location, operand),
            Unary::Cos => fx::cos(location, operand),
            Unary::Tanh => fx::tanh(location, operand),
            Unary::Sqrt => fx::sqrt(location, operand),
            Unary::Abs => fx::abs(location, operand),
            Unary::Sign => fx::sign(location, operand),
            Unary::Floor => fx::floor(location, operand),
            Unary::Not => fx::not(location, operand),
            Unary::Round => fx::round(location, operand),
            Unary::Asin => fx::asin(location, operand),
            Unary::Acos => fx::acos(location, operand),
            Unary::Atan => fx::atan(location, operand),
            Unary::Erf => fx::erf(location, operand),
        };
        self.push(operation, a.ty)
    }

    /// `fx.dot_general`: the result is batch dimensions, then lhs free, then rhs free ones
    /// (both operands of one dtype; the caller checks the sizes).
    pub fn dot_general(
        &mut self,
        span: Span,
        a: &Traced,
        b: &Traced,
        dims: &fx::DotDimensions,
    ) -> Traced {
        let free = |shape: &[i64], batch: &[i64], contracting: &[i64]| -> Vec<i64> {
            (0..shape.len() as i64)
                .filter(|d| !batch.contains(d) && !contracting.contains(d))
                .map(|d| shape[d as usize])
                .collect()
        };
        let mut shape: Vec<i64> = dims
            .lhs_batch
            .iter()
            .map(|d| a.ty.shape[*d as usize])
            .collect();
        shape.extend(free(&a.ty.shape, &dims.lhs_batch, &dims.lhs_contracting));
        shape.extend(free(&b.ty.shape, &dims.rhs_batch, &dims.rhs_contracting));
        let ty = ArrayType {
            dtype: a.ty.dtype,
            shape,
            weak: a.ty.weak && b.ty.weak,
        };
        let location = self.location(span);
        let operation = fx::dot_general(
            self.context,
            location,
            self.value(a),
            self.value(b),
            dims,
            self.tensor_type(&ty),
        );
        self.push(operation, ty)
    }

    /// `fx.transpose`: result dimension `i` is operand dimension `permutation[i]`.
    pub fn transpose(&mut self, span: Span, a: &Traced, permutation: &[i64]) -> Traced {
        if permutation.iter().enumerate().all(|(i, p)| *p == i as i64) {
            return a.clone();
        }
        let shape = permutation
            .iter()
            .map(|p| a.ty.shape[*p as usize])
            .collect();
        let ty = ArrayType {
            dtype: a.ty.dtype,
            shape,
            weak: a.ty.weak,
        };
        let location = self.location(span);
        let operation = fx::transpose(
            self.context,
            location,
            self.value(a),
            permutation,
            self.tensor_type(&ty),
        );
        self.push(operation, ty)
    }

    /// `fx.reverse` of `dimensions`.
    pub fn reverse(&mut self, span: Span, a: &Traced, dimensions: &[i64]) -> Traced {
        if dimensions.is_empty() {
            return a.clone();
        }
        let location = self.location(span);
        let operation = fx::reverse(self.context, location, self.value(a), dimensions);
        self.push(operation, a.ty.clone())
    }

    /// `fx.pad` with a scalar padding value (`low`, `high`, `interior` per dimension, ≥ 0).
    pub fn pad(
        &mut self,
        span: Span,
        a: &Traced,
        value: f64,
        low: &[i64],
        high: &[i64],
        interior: &[i64],
    ) -> Traced {
        let shape: Vec<i64> = (0..a.ty.shape.len())
            .map(|d| low[d] + high[d] + a.ty.shape[d] + (a.ty.shape[d] - 1).max(0) * interior[d])
            .collect();
        let ty = ArrayType {
            dtype: a.ty.dtype,
            shape,
            weak: a.ty.weak,
        };
        if a.ty.size() == 0 || ty.size() == 0 {
            // Padding an empty array gives only padding.
            let values = if ty.size() == 0 { vec![] } else { vec![value] };
            return self.constant(span, &values, ty);
        }
        let padding = self.constant(span, &[value], ArrayType::new(a.ty.dtype, vec![]));
        let location = self.location(span);
        let operation = fx::pad(
            self.context,
            location,
            self.value(a),
            self.value(&padding),
            low,
            high,
            interior,
            self.tensor_type(&ty),
        );
        self.push(operation, ty)
    }

    pub fn stop_gradient(&mut self, span: Span, a: &Traced) -> Traced {
        let location = self.location(span);
        let operation = fx::stop_gradient(location, self.value(a));
        self.push(operation, a.ty.clone())
    }

    /// A constant array of `ty` that is one at flat position `index` and zero elsewhere.
    pub fn basis(&mut self, span: Span, ty: &ArrayType, index: usize) -> Traced {
        let mut values = vec![0.0; ty.size() as usize];
        values[index] = 1.0;
        self.constant(span, &values, ArrayType::new(ty.dtype, ty.shape.clone()))
    }

    pub fn integer_pow(&mut self, span: Span, a: &Traced, exponent: i64) -> Traced {
        let location = self.location(span);
        let operation = fx::integer_pow(self.context, location, self.value(a), exponent);
        self.push(operation, a.ty.clone())
    }

    /// A comparison of two arrays of one type; the result is bool.
    pub fn compare(
        &mut self,
        span: Span,
        predicate: fx::Predicate,
        a: &Traced,
        b: &Traced,
    ) -> Traced {
        let ty = ArrayType::new(DType::Bool, a.ty.shape.clone());
        let location = self.location(span);
        let operation = fx::compare(
            self.context,
            location,
            predicate,
            self.value(a),
            self.value(b),
            self.tensor_type(&ty),
        );
        self.push(operation, ty)
    }

    /// `pred ? on_true : on_false` for arrays of one shape (`on_true` and `on_false` of one type).
    pub fn select(
        &mut self,
        span: Span,
        pred: &Traced,
        on_true: &Traced,
        on_false: &Traced,
    ) -> Traced {
        let location = self.location(span);
        let operation = fx::select(
            location,
            self.value(pred),
            self.value(on_true),
            self.value(on_false),
        );
        self.push(operation, on_true.ty.clone())
    }

    pub fn reshape(&mut self, span: Span, a: &Traced, shape: &[i64]) -> Traced {
        if a.ty.shape == shape {
            return a.clone();
        }
        let ty = ArrayType {
            dtype: a.ty.dtype,
            shape: shape.to_vec(),
            weak: a.ty.weak,
        };
        let location = self.location(span);
        let operation = fx::reshape(location, self.value(a), self.tensor_type(&ty));
        self.push(operation, ty)
    }

    /// Reduces over `axes` (sorted, distinct, in range), removing them.
    pub fn reduce(&mut self, span: Span, kind: fx::ReduceKind, a: &Traced, axes: &[i64]) -> Traced {
        if axes.is_empty() {
            return a.clone();
        }
        let shape: Vec<i64> =
            a.ty.shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(&(*i as i64)))
                .map(|(_, d)| *d)
                .collect();
        let ty = ArrayType {
            dtype: a.ty.dtype,
            shape,
            weak: a.ty.weak,
        };
        let location = self.location(span);
        let operation = fx::reduce(
            self.context,
            location,
            kind,
            self.value(a),
            axes,
            self.tensor_type(&ty),
        );
        self.push(operation, ty)
    }
}

/// NumPy's broadcast of two shapes, or None when they do not broadcast.
pub fn broadcast_shapes(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let rank = a.len().max(b.len());
    let mut shape = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        shape[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(shape)
}

fn broadcast_error(span: Span, a: &[i64], b: &[i64]) -> Diagnostic {
    Diagnostic::new(
        "ferrax::shape::broadcast",
        span,
        format!(
            "shapes {} and {} cannot be broadcast together",
            shape_repr(a),
            shape_repr(b)
        ),
    )
    .label(format!("{} and {}", shape_repr(a), shape_repr(b)))
    .help("broadcasting aligns trailing dimensions; each pair must be equal or one of them 1")
}

/// A nested list of Python scalars: its shape, row-major values and dtype (as `jnp.array`).
fn static_nested(items: &[Value]) -> Option<(Vec<i64>, Vec<f64>, DType)> {
    let mut values = vec![];
    let mut dtype = DType::Bool;
    let mut shape = vec![items.len() as i64];
    let mut inner_shape: Option<Vec<i64>> = None;
    for item in items {
        match item {
            Value::Bool(b) => {
                values.push(f64::from(u8::from(*b)));
                inner_shape.get_or_insert(vec![]);
            }
            Value::Int(i) => {
                values.push(*i as f64);
                if dtype == DType::Bool {
                    dtype = DType::I32;
                }
                inner_shape.get_or_insert(vec![]);
            }
            Value::Float(f) => {
                values.push(*f);
                dtype = DType::F32;
                inner_shape.get_or_insert(vec![]);
            }
            Value::Tuple(inner) | Value::List(inner) => {
                let (s, v, d) = static_nested(inner)?;
                if inner_shape.as_ref().is_some_and(|known| *known != s) {
                    return None;
                }
                inner_shape = Some(s);
                values.extend(v);
                if d == DType::F32 || (d == DType::I32 && dtype == DType::Bool) {
                    dtype = d;
                }
            }
            _ => return None,
        }
    }
    if items.is_empty() {
        dtype = DType::F32;
    }
    shape.extend(inner_shape.unwrap_or_default());
    if shape.iter().product::<i64>() != values.len() as i64 {
        return None;
    }
    Some((shape, values, dtype))
}

impl Emitter<'_, '_> {
    /// Elements `start[d] + k * stride[d] < limit[d]` of each dimension (all in range, strides > 0).
    pub fn slice(
        &mut self,
        span: Span,
        a: &Traced,
        start: &[i64],
        limit: &[i64],
        strides: &[i64],
    ) -> Traced {
        let shape: Vec<i64> = (0..start.len())
            .map(|d| ((limit[d] - start[d]).max(0) + strides[d] - 1) / strides[d])
            .collect();
        if shape == a.ty.shape {
            return a.clone();
        }
        let ty = ArrayType {
            dtype: a.ty.dtype,
            shape,
            weak: a.ty.weak,
        };
        if ty.size() == 0 {
            // An empty slice reads nothing: an empty constant (MLIR rejects its offsets).
            return self.constant(span, &[], ty);
        }
        let location = self.location(span);
        let operation = fx::slice(
            self.context,
            location,
            self.value(a),
            start,
            limit,
            strides,
            self.tensor_type(&ty),
        );
        self.push(operation, ty)
    }
}

impl Emitter<'_, '_> {
    /// The block of `sizes` at run-time `indices` (rank-0 int32 arrays, one per dimension);
    /// each index is clamped so the block fits, as in `lax.dynamic_slice`.
    pub fn dynamic_slice(
        &mut self,
        span: Span,
        a: &Traced,
        indices: &[Traced],
        sizes: &[i64],
    ) -> Traced {
        let ty = ArrayType {
            dtype: a.ty.dtype,
            shape: sizes.to_vec(),
            weak: a.ty.weak,
        };
        let location = self.location(span);
        let indices: Vec<_> = indices.iter().map(|t| self.value(t)).collect();
        let operation = fx::dynamic_slice(
            self.context,
            location,
            self.value(a),
            &indices,
            sizes,
            self.tensor_type(&ty),
        );
        self.push(operation, ty)
    }

    /// `a` with the block at run-time `indices` replaced by `update` (of `a`'s dtype); the
    /// indices are clamped so the block fits, as in `lax.dynamic_update_slice`.
    pub fn dynamic_update_slice(
        &mut self,
        span: Span,
        a: &Traced,
        update: &Traced,
        indices: &[Traced],
    ) -> Traced {
        let location = self.location(span);
        let indices: Vec<_> = indices.iter().map(|t| self.value(t)).collect();
        let operation =
            fx::dynamic_update_slice(location, self.value(a), self.value(update), &indices);
        self.push(operation, a.ty.clone())
    }
}
