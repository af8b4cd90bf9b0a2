// The fx dialect: value-semantics array ops on builtin tensors, close to JAX's primitives.
// Loaded at run time by `ferrax_dialects::load`; the op reference is docs/fx-dialect.md.
// A constraint variable used twice in one op means "the same type" (IRDL unifies it).
irdl.dialect @fx {
  irdl.operation @constant {
    %t = irdl.base "!builtin.tensor"
    %value = irdl.any
    irdl.attributes { "value" = %value }
    irdl.results(res: %t)
  }
  irdl.operation @add {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @sub {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @mul {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @div {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @rem {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @pow {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @max {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @min {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @and {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @or {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
  irdl.operation @neg {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @exp {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @log {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @log1p {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @expm1 {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @sin {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @cos {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @tanh {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @sqrt {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @abs {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @sign {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @floor {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @not {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @integer_pow {
    %t = irdl.base "!builtin.tensor"
    %exponent = irdl.base "#builtin.integer"
    irdl.operands(operand: %t)
    irdl.attributes { "exponent" = %exponent }
    irdl.results(res: %t)
  }
  irdl.operation @compare {
    %t = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    %predicate = irdl.base "#builtin.string"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.attributes { "predicate" = %predicate }
    irdl.results(res: %r)
  }
  irdl.operation @select {
    %p = irdl.base "!builtin.tensor"
    %t = irdl.base "!builtin.tensor"
    irdl.operands(pred: %p, on_true: %t, on_false: %t)
    irdl.results(res: %t)
  }
  irdl.operation @convert {
    %t = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %r)
  }
  irdl.operation @broadcast_in_dim {
    %t = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    %i = irdl.is index
    %broadcast_dimensions = irdl.base "#builtin.dense_array"
    irdl.operands(operand: %t, dynamic_sizes: variadic %i)
    irdl.attributes { "broadcast_dimensions" = %broadcast_dimensions }
    irdl.results(res: %r)
  }
  irdl.operation @reshape {
    %t = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %r)
  }
  irdl.operation @reduce {
    %t = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    %kind = irdl.base "#builtin.string"
    %axes = irdl.base "#builtin.dense_array"
    irdl.operands(operand: %t)
    irdl.attributes { "kind" = %kind, "axes" = %axes }
    irdl.results(res: %r)
  }
  irdl.operation @slice {
    %t = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    %start_indices = irdl.base "#builtin.dense_array"
    %limit_indices = irdl.base "#builtin.dense_array"
    %strides = irdl.base "#builtin.dense_array"
    irdl.operands(operand: %t)
    irdl.attributes { "start_indices" = %start_indices, "limit_indices" = %limit_indices, "strides" = %strides }
    irdl.results(res: %r)
  }
  irdl.operation @pad {
    %t = irdl.base "!builtin.tensor"
    %s = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    %edge_padding_low = irdl.base "#builtin.dense_array"
    %edge_padding_high = irdl.base "#builtin.dense_array"
    %interior_padding = irdl.base "#builtin.dense_array"
    irdl.operands(operand: %t, padding_value: %s)
    irdl.attributes { "edge_padding_low" = %edge_padding_low, "edge_padding_high" = %edge_padding_high, "interior_padding" = %interior_padding }
    irdl.results(res: %r)
  }
  irdl.operation @stop_gradient {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @dot_general {
    %l = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    %o = irdl.base "!builtin.tensor"
    %lhs_batching_dimensions = irdl.base "#builtin.dense_array"
    %rhs_batching_dimensions = irdl.base "#builtin.dense_array"
    %lhs_contracting_dimensions = irdl.base "#builtin.dense_array"
    %rhs_contracting_dimensions = irdl.base "#builtin.dense_array"
    irdl.operands(lhs: %l, rhs: %r)
    irdl.attributes { "lhs_batching_dimensions" = %lhs_batching_dimensions, "rhs_batching_dimensions" = %rhs_batching_dimensions, "lhs_contracting_dimensions" = %lhs_contracting_dimensions, "rhs_contracting_dimensions" = %rhs_contracting_dimensions }
    irdl.results(res: %o)
  }
  irdl.operation @transpose {
    %t = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    %permutation = irdl.base "#builtin.dense_array"
    irdl.operands(operand: %t)
    irdl.attributes { "permutation" = %permutation }
    irdl.results(res: %r)
  }
  irdl.operation @reverse {
    %t = irdl.base "!builtin.tensor"
    %dimensions = irdl.base "#builtin.dense_array"
    irdl.operands(operand: %t)
    irdl.attributes { "dimensions" = %dimensions }
    irdl.results(res: %t)
  }
  irdl.operation @dynamic_slice {
    %t = irdl.base "!builtin.tensor"
    %r = irdl.base "!builtin.tensor"
    %i = irdl.is tensor<i32>
    %sizes = irdl.base "#builtin.dense_array"
    irdl.operands(operand: %t, start_indices: variadic %i)
    irdl.attributes { "sizes" = %sizes }
    irdl.results(res: %r)
  }
  irdl.operation @dynamic_update_slice {
    %t = irdl.base "!builtin.tensor"
    %u = irdl.base "!builtin.tensor"
    %i = irdl.is tensor<i32>
    irdl.operands(operand: %t, update: %u, start_indices: variadic %i)
    irdl.results(res: %t)
  }
  irdl.operation @round {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @asin {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @acos {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @atan {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @erf {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(operand: %t)
    irdl.results(res: %t)
  }
  irdl.operation @atan2 {
    %t = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %t, rhs: %t)
    irdl.results(res: %t)
  }
}
