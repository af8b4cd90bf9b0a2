//! Text forms of arrays: JAX's repr (NumPy's formatting rules) and the conformance JSON.

use crate::{Array, DType};

/// `Array([1., 2.], dtype=float32)`, as JAX prints it.
pub fn repr(array: &Array, weak: bool) -> String {
    let prefix = "Array(";
    let weak = if weak { ", weak_type=True" } else { "" };
    if array.is_empty() {
        // An empty array prints flat, with its shape as a Python tuple.
        let dims: Vec<String> = array.shape.iter().map(usize::to_string).collect();
        let comma = if dims.len() == 1 { "," } else { "" };
        return format!(
            "{prefix}[], shape=({}{comma}), dtype={}{weak})",
            dims.join(", "),
            array.dtype.name()
        );
    }
    let elements = format_elements(array);
    let body = nest(
        &array.shape,
        &elements,
        1 + prefix.len(),
        array.len() > 1000,
    );
    format!("{prefix}{body}, dtype={}{weak})", array.dtype.name())
}

/// `{"dtype": "float32", "shape": [2], "data": [1.0, 2.0]}`.
pub fn json(array: &Array) -> String {
    let data: Vec<String> = (0..array.len())
        .map(|i| {
            let v = array.get(i);
            match array.dtype {
                DType::Bool => String::from(if v != 0.0 { "true" } else { "false" }),
                DType::I32 | DType::I64 => format!("{}", v as i64),
                _ => json_float(v),
            }
        })
        .collect();
    let shape: Vec<String> = array.shape.iter().map(|d| d.to_string()).collect();
    format!(
        "{{\"dtype\": \"{}\", \"shape\": [{}], \"data\": [{}]}}",
        array.dtype.name(),
        shape.join(", "),
        data.join(", ")
    )
}

/// A float as Python's `json` writes it.
pub fn json_float(v: f64) -> String {
    if v.is_nan() {
        String::from("NaN")
    } else if v.is_infinite() {
        String::from(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        format!("{v:?}")
    }
}

/// Every element formatted and padded to a common width, as NumPy's array2string does.
fn format_elements(array: &Array) -> Vec<String> {
    let n = array.len();
    let values: Vec<f64> = (0..n).map(|i| array.get(i)).collect();
    match array.dtype {
        DType::Bool => {
            let texts: Vec<String> = values
                .iter()
                .map(|v| String::from(if *v != 0.0 { "True" } else { "False" }))
                .collect();
            pad_left(texts)
        }
        DType::I32 | DType::I64 => {
            pad_left(values.iter().map(|v| format!("{}", *v as i64)).collect())
        }
        DType::F32 | DType::F64 => format_floats(&values, array.dtype),
    }
}

fn pad_left(texts: Vec<String>) -> Vec<String> {
    let width = texts.iter().map(|t| t.len()).max().unwrap_or(0);
    texts.into_iter().map(|t| format!("{t:>width$}")).collect()
}

/// The shortest digits that round-trip in the element type.
fn shortest(v: f64, dtype: DType) -> String {
    if dtype == DType::F32 {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    }
}

fn format_floats(values: &[f64], dtype: DType) -> Vec<String> {
    let finite: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v != 0.0)
        .map(f64::abs)
        .collect();
    let exponential = !finite.is_empty() && {
        let max = finite.iter().copied().fold(0.0, f64::max);
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        max >= 1e8 || min < 1e-4 || max / min > 1e3
    };
    if exponential {
        // One number of fraction digits and of exponent digits for all, as NumPy does.
        let parts: Vec<Option<(String, i32)>> = values
            .iter()
            .map(|v| float_exponential(*v, dtype))
            .collect();
        let digits = parts
            .iter()
            .flatten()
            .map(|(mantissa, _)| mantissa.split_once('.').map_or(0, |(_, f)| f.len()))
            .max()
            .unwrap_or(0);
        let width = parts
            .iter()
            .flatten()
            .map(|(_, exponent)| exponent.unsigned_abs().to_string().len())
            .max()
            .unwrap_or(2)
            .max(2);
        let texts: Vec<String> = parts
            .iter()
            .zip(values)
            .map(|(part, v)| match part {
                None => special(*v),
                Some((mantissa, exponent)) => {
                    let fraction = mantissa.split_once('.').map_or(0, |(_, f)| f.len());
                    let sign = if *exponent < 0 { '-' } else { '+' };
                    format!(
                        "{mantissa}{}e{sign}{:0width$}",
                        "0".repeat(digits - fraction),
                        exponent.unsigned_abs()
                    )
                }
            })
            .collect();
        return pad_left(texts);
    }
    // Positional: integer parts right-aligned, fractions left-aligned (NumPy's maxprec, trim '.').
    let parts: Vec<(String, String)> = values
        .iter()
        .map(|v| {
            if !v.is_finite() {
                return (special(*v), String::new());
            }
            let text = positional(*v, dtype);
            match text.split_once('.') {
                Some((int, frac)) => (int.to_string(), format!(".{frac}")),
                None => (text, String::from(".")),
            }
        })
        .collect();
    let left = parts.iter().map(|(i, _)| i.len()).max().unwrap_or(0);
    let right = parts.iter().map(|(_, f)| f.len()).max().unwrap_or(0);
    parts
        .into_iter()
        .map(|(i, f)| format!("{i:>left$}{f:<right$}"))
        .collect()
}

fn special(v: f64) -> String {
    if v.is_nan() {
        String::from("nan")
    } else if v > 0.0 {
        String::from("inf")
    } else {
        String::from("-inf")
    }
}

/// Shortest positional digits, at most 8 after the point.
fn positional(v: f64, dtype: DType) -> String {
    let text = shortest(v, dtype);
    let text = if text.contains('e') {
        format!("{v:.8}")
    } else {
        text
    };
    match text.split_once('.') {
        Some((int, frac)) if frac.len() > 8 => {
            let rounded = format!("{:.8}", v);
            let (i, f) = rounded.split_once('.').unwrap_or((int, ""));
            let f = f.trim_end_matches('0');
            format!("{i}.{f}")
        }
        Some((int, frac)) if frac.chars().all(|c| c == '0') => format!("{int}."),
        Some(_) => text,
        None => format!("{text}."),
    }
}

/// The shortest mantissa (with its point) and the exponent of a finite `v`.
fn float_exponential(v: f64, dtype: DType) -> Option<(String, i32)> {
    if !v.is_finite() {
        return None;
    }
    let text = if dtype == DType::F32 {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.")
    };
    Some((mantissa, exponent.parse().unwrap_or(0)))
}

/// Nested brackets for `shape`, 1-D rows wrapped at 75 characters, `...` past 1000 elements.
fn nest(shape: &[usize], elements: &[String], indent: usize, summarise: bool) -> String {
    if shape.is_empty() {
        return elements.first().cloned().unwrap_or_default();
    }
    let n = shape[0];
    let stride: usize = shape[1..].iter().product();
    let picks: Vec<Option<usize>> = if summarise && n > 6 {
        (0..3)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((n - 3..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    };
    if shape.len() == 1 {
        let mut lines = vec![String::new()];
        for (k, pick) in picks.iter().enumerate() {
            let item = match pick {
                Some(i) => elements[*i].clone(),
                None => String::from("..."),
            };
            let separator = if k + 1 < picks.len() { "," } else { "" };
            let current_len = lines.last().map_or(0, |l| l.len());
            if current_len > 0 && indent + current_len + 1 + item.len() + separator.len() > 75 {
                lines.push(String::new());
            }
            let current = lines.last_mut().expect("one line at least");
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&item);
            current.push_str(separator);
        }
        let joined = lines.join(&format!("\n{}", " ".repeat(indent)));
        return format!("[{joined}]");
    }
    let rows: Vec<String> = picks
        .iter()
        .map(|pick| match pick {
            Some(i) => nest(
                &shape[1..],
                &elements[i * stride..(i + 1) * stride],
                indent + 1,
                summarise,
            ),
            None => String::from("..."),
        })
        .collect();
    let blank_lines = "\n".repeat(shape.len() - 1);
    format!(
        "[{}]",
        rows.join(&format!(",{blank_lines}{}", " ".repeat(indent)))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: Vec<usize>, values: &[f64]) -> Array {
        Array::from_f64(DType::F32, shape, values)
    }

    #[test]
    fn scalars_and_vectors_print_like_jax() {
        assert_eq!(
            repr(&f32s(vec![], &[14.990607]), false),
            "Array(14.990607, dtype=float32)"
        );
        assert_eq!(
            repr(&f32s(vec![], &[14.0]), true),
            "Array(14., dtype=float32, weak_type=True)"
        );
        assert_eq!(
            repr(&f32s(vec![2], &[1.0, 2.0]), false),
            "Array([1., 2.], dtype=float32)"
        );
        assert_eq!(
            repr(&f32s(vec![5], &[-1.7258986, -0.69175917, 0.0, 0.5253505, 2.101402]), false),
            "Array([-1.7258986 , -0.69175917,  0.        ,  0.5253505 ,  2.101402  ],      dtype=float32)"
                .replace(",      dtype", ", dtype")
        );
        assert_eq!(
            repr(
                &Array::from_f64(DType::I32, vec![3], &[1.0, 20.0, 3.0]),
                false
            ),
            "Array([ 1, 20,  3], dtype=int32)"
        );
        assert_eq!(
            repr(&Array::from_f64(DType::Bool, vec![2], &[1.0, 0.0]), false),
            "Array([ True, False], dtype=bool)"
        );
    }

    #[test]
    fn matrices_nest() {
        assert_eq!(
            repr(&f32s(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]), false),
            "Array([[1., 2.],\n       [3., 4.]], dtype=float32)"
        );
    }

    #[test]
    fn json_matches_the_conformance_form() {
        assert_eq!(
            json(&f32s(vec![2], &[1.0, 0.5])),
            "{\"dtype\": \"float32\", \"shape\": [2], \"data\": [1.0, 0.5]}"
        );
    }
}
