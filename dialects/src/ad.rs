//! Builders for the differentiation requests of the `ad` namespace: `ad.jvp`, `ad.vjp`,
//! `ad.grad`, `ad.custom_jvp_call`, `ad.custom_vjp_call`.
//!
//! Their operands and results are lists of tensors of different types, which IRDL cannot
//! express (a constraint variable gives every element of a variadic list one type), so they
//! are unregistered ops: the context accepts them unverified, `fx-autodiff` checks and
//! replaces them, and nothing after it sees one.

use melior::{
    Context,
    ir::{
        Attribute, Identifier, Location, Operation, Type, Value,
        attribute::{DenseI64ArrayAttribute, FlatSymbolRefAttribute, IntegerAttribute},
        operation::OperationBuilder,
        r#type::IntegerType,
    },
};

fn build_many<'c>(
    name: &str,
    location: Location<'c>,
    operands: &[Value<'c, '_>],
    results: &[Type<'c>],
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
        .add_results(results)
        .build()
        .expect("valid fx operation")
}

fn symbol<'c>(context: &'c Context, name: &str) -> Attribute<'c> {
    FlatSymbolRefAttribute::new(context, name).into()
}

fn integer<'c>(context: &'c Context, value: i64) -> Attribute<'c> {
    IntegerAttribute::new(IntegerType::new(context, 64).into(), value).into()
}

/// Creates an `ad.jvp` operation: `callee` at `primals` pushed forward along `tangents` (one per
/// primal); the results are the callee's results, then their tangents.
pub fn jvp<'c>(
    context: &'c Context,
    location: Location<'c>,
    callee: &str,
    primals: &[Value<'c, '_>],
    tangents: &[Value<'c, '_>],
    results: &[Type<'c>],
) -> Operation<'c> {
    let operands: Vec<Value<'c, '_>> = primals.iter().chain(tangents).copied().collect();
    build_many(
        "ad.jvp",
        location,
        &operands,
        results,
        &[
            ("callee", symbol(context, callee)),
            ("num_primals", integer(context, primals.len() as i64)),
        ],
    )
}

/// Creates an `ad.vjp` operation: `callee` at `primals` pulled back from `cotangents` (one per
/// callee result); the results are the callee's results, then the cotangents of the primals
/// at `argnums`.
pub fn vjp<'c>(
    context: &'c Context,
    location: Location<'c>,
    callee: &str,
    primals: &[Value<'c, '_>],
    cotangents: &[Value<'c, '_>],
    argnums: &[i64],
    results: &[Type<'c>],
) -> Operation<'c> {
    let operands: Vec<Value<'c, '_>> = primals.iter().chain(cotangents).copied().collect();
    build_many(
        "ad.vjp",
        location,
        &operands,
        results,
        &[
            ("callee", symbol(context, callee)),
            ("num_primals", integer(context, primals.len() as i64)),
            (
                "argnums",
                DenseI64ArrayAttribute::new(context, argnums).into(),
            ),
        ],
    )
}

/// Creates an `ad.grad` operation: the gradient of the callee's first (scalar) result with
/// respect to the primals at `argnums`; the results are the callee's results, then the gradients.
pub fn grad<'c>(
    context: &'c Context,
    location: Location<'c>,
    callee: &str,
    primals: &[Value<'c, '_>],
    argnums: &[i64],
    has_aux: bool,
    results: &[Type<'c>],
) -> Operation<'c> {
    build_many(
        "ad.grad",
        location,
        primals,
        results,
        &[
            ("callee", symbol(context, callee)),
            (
                "argnums",
                DenseI64ArrayAttribute::new(context, argnums).into(),
            ),
            (
                "has_aux",
                IntegerAttribute::new(IntegerType::new(context, 1).into(), i64::from(has_aux))
                    .into(),
            ),
        ],
    )
}

/// Creates an `ad.custom_jvp_call` operation: calls `primal`; differentiation uses the rule
/// `jvp` (`(primals..., tangents...) -> (outputs..., output tangents...)`).
pub fn custom_jvp_call<'c>(
    context: &'c Context,
    location: Location<'c>,
    primal: &str,
    jvp: &str,
    args: &[Value<'c, '_>],
    results: &[Type<'c>],
) -> Operation<'c> {
    build_many(
        "ad.custom_jvp_call",
        location,
        args,
        results,
        &[
            ("primal", symbol(context, primal)),
            ("jvp", symbol(context, jvp)),
        ],
    )
}

/// Creates an `ad.custom_vjp_call` operation: calls `primal`; reverse mode runs `fwd`
/// (`args -> (outputs..., residuals...)`) and `bwd` (`(residuals..., cotangents...) -> one
/// cotangent per argument`).
#[allow(clippy::too_many_arguments)]
pub fn custom_vjp_call<'c>(
    context: &'c Context,
    location: Location<'c>,
    primal: &str,
    fwd: &str,
    bwd: &str,
    args: &[Value<'c, '_>],
    results: &[Type<'c>],
) -> Operation<'c> {
    build_many(
        "ad.custom_vjp_call",
        location,
        args,
        results,
        &[
            ("primal", symbol(context, primal)),
            ("fwd", symbol(context, fwd)),
            ("bwd", symbol(context, bwd)),
        ],
    )
}
