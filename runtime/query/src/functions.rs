//! What a function call may build. DataFusion's memory pool sees what operators hold,
//! not what a function builds, and some functions build far more than their arguments
//! hold (`repeat('x', 2000000000)`, `range(10000000000)`), or double what they are given,
//! call after call (`encode(encode(…, 'hex'), 'hex')`). So each session's scalar functions
//! are wrapped ([`Bounded`]) and a call is refused, before it allocates, when
//!
//! - one value it is given is over [`MAX_VALUE_BYTES`] (a string's or binary's bytes) or
//!   [`MAX_VALUE_ELEMENTS`] (a list's elements): no chain of calls grows a value beyond
//!   that, and real values are far smaller (line protocol strings are at most 64 KiB);
//! - it is one of the functions whose output grows with an argument ([`Growth`]), and
//!   what it would build over one batch of rows is over [`MAX_BUILT_BYTES`].
//!
//! The error names the function and the bound.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, GenericListArray, OffsetSizeTrait};
use datafusion::arrow::compute::{cast, kernels::length::length};
use datafusion::arrow::datatypes::{
    DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit,
};
use datafusion::common::{ExprSchema, Result};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};
use datafusion::scalar::ScalarValue;
use std::collections::HashSet;

/// The most one call of a growing function may build over one batch of rows.
pub const MAX_BUILT_BYTES: u64 = 64 << 20;

/// The largest string or binary value a function is given.
pub const MAX_VALUE_BYTES: u64 = 1 << 20;

/// The most elements of a list a function is given.
pub const MAX_VALUE_ELEMENTS: u64 = 1 << 20;

/// How a function's output grows with its arguments, beyond their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text `n` times.
    Repeat,
    /// `lpad(text, n[, fill])`, `rpad`: `n` characters.
    Pad,
    /// `replace(text, from, to)`, `regexp_replace(text, pattern, to[, flags])`: at worst
    /// `to` between every two characters.
    Replace,
    /// `array_repeat(element, n)`: the element `n` times.
    ArrayRepeat,
    /// `array_resize(array, n[, value])`: `n` elements.
    ArrayResize,
    /// `range`, `generate_series`: an element per step from start to stop.
    Range,
}

fn growth_of(name: &str) -> Option<Growth> {
    Some(match name {
        "repeat" => Growth::Repeat,
        "lpad" | "rpad" => Growth::Pad,
        "replace" | "regexp_replace" => Growth::Replace,
        "array_repeat" => Growth::ArrayRepeat,
        "array_resize" => Growth::ArrayResize,
        "range" | "generate_series" => Growth::Range,
        _ => return None,
    })
}

/// Replaces every scalar function of `context` with a bounded one.
pub(crate) fn bound(context: &SessionContext) {
    let state = context.state();
    let mut done = HashSet::new();
    for function in state.scalar_functions().values() {
        // The map holds each function under its aliases too.
        if !done.insert(function.name().to_string()) {
            continue;
        }
        let bounded = Bounded {
            growth: growth_of(function.name()),
            inner: function.as_ref().clone(),
        };
        context.register_udf(ScalarUDF::new_from_impl(bounded));
    }
}

/// A function whose calls are refused when they would build too much, and which is
/// otherwise its inner one: every other method is the inner one's.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: ScalarUDF,
    growth: Option<Growth>,
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[expect(deprecated, reason = "the inner function's own answer")]
        self.inner.inner().display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[expect(deprecated, reason = "the inner function's own answer")]
        self.inner.inner().is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        // `now()` and its kin become values here, and must.
        self.inner.inner().simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.inner().preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.inner().propagate_constraints(interval, inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.inner().struct_field_mapping(literal_args)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.inner().placement(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.inner.name();
        for arg in &args.args {
            check_value(name, arg)?;
        }
        if let Some(growth) = self.growth {
            let built = built_bytes(growth, &args.args, args.number_rows)?;
            if built > MAX_BUILT_BYTES {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "{name} would build {} in one call, more than the {} a function may \
                     build at once",
                    readable(built),
                    readable(MAX_BUILT_BYTES)
                )));
            }
        }
        self.inner.invoke_with_args(args)
    }
}

fn readable(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Refuses `arg` of a call of `name` if one of its values is over the bounds.
fn check_value(name: &str, arg: &ColumnarValue) -> Result<()> {
    let (bytes, elements) = match arg {
        ColumnarValue::Scalar(scalar) => scalar_extent(scalar),
        ColumnarValue::Array(array) => array_extent(array)?,
    };
    if bytes > MAX_VALUE_BYTES || elements > MAX_VALUE_ELEMENTS {
        return Err(DataFusionError::ResourcesExhausted(format!(
            "{name} was given a value of {} and {elements} elements; a function is given \
             values of at most {} and {MAX_VALUE_ELEMENTS} elements",
            readable(bytes),
            readable(MAX_VALUE_BYTES),
        )));
    }
    Ok(())
}

/// The bytes of the longest string or binary value, and the elements of the longest list,
/// of `array`.
fn array_extent(array: &ArrayRef) -> Result<(u64, u64)> {
    let longest = |lengths: ArrayRef| -> Result<u64> {
        let lengths = cast(&lengths, &DataType::Int64)?;
        Ok(lengths
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .max()
            .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    };
    Ok(match array.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => (longest(length(array)?)?, 0),
        DataType::Dictionary(_, _) => array_extent(array.as_any_dictionary().values())?,
        DataType::List(_) => list_extent(array.as_list::<i32>())?,
        DataType::LargeList(_) => list_extent(array.as_list::<i64>())?,
        _ => (0, 0),
    })
}

fn list_extent<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> Result<(u64, u64)> {
    let elements = list
        .offsets()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_usize() as u64)
        .max()
        .unwrap_or(0);
    let (bytes, inner) = array_extent(list.values())?;
    Ok((bytes, elements.max(inner)))
}

/// [`array_extent`] of a scalar.
fn scalar_extent(scalar: &ScalarValue) -> (u64, u64) {
    match scalar {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => (s.len() as u64, 0),
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b))
        | ScalarValue::FixedSizeBinary(_, Some(b)) => (b.len() as u64, 0),
        ScalarValue::Dictionary(_, inner) => scalar_extent(inner),
        ScalarValue::List(list) => list_extent(list.as_ref()).unwrap_or((u64::MAX, u64::MAX)),
        ScalarValue::LargeList(list) => list_extent(list.as_ref()).unwrap_or((u64::MAX, u64::MAX)),
        _ => (0, 0),
    }
}

/// An argument as the estimates read it: one value for every row, or a value per row.
enum Arg {
    Same(ArrayRef),
    PerRow(ArrayRef),
}

impl Arg {
    /// `arg`, without expanding a scalar to every row.
    fn of(arg: &ColumnarValue) -> Result<Self> {
        Ok(match arg {
            ColumnarValue::Scalar(scalar) => Self::Same(scalar.to_array_of_size(1)?),
            ColumnarValue::Array(array) => Self::PerRow(std::sync::Arc::clone(array)),
        })
    }

    fn array(&self) -> &ArrayRef {
        match self {
            Self::Same(array) | Self::PerRow(array) => array,
        }
    }

    /// The value of row `row` from `values` (of [`Self::array`]).
    fn at<T: Copy + Default>(&self, values: &[T], row: usize) -> T {
        let index = match self {
            Self::Same(_) => 0,
            Self::PerRow(_) => row,
        };
        values.get(index).copied().unwrap_or_default()
    }
}

/// What a call of a function growing as `growth` builds for `rows` rows of `args`, at
/// most (sums and products saturate).
fn built_bytes(growth: Growth, args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let args: Vec<Arg> = args.iter().map(Arg::of).collect::<Result<_>>()?;
    let values = |index: usize, read: fn(&ArrayRef) -> Result<Vec<u64>>| -> Result<Vec<u64>> {
        args.get(index)
            .map_or(Ok(Vec::new()), |arg| read(arg.array()))
    };
    let arg = |index: usize| args.get(index);
    let per_row =
        |index: usize, values: &[u64], row: usize| arg(index).map_or(0, |arg| arg.at(values, row));
    let sum = |each: &dyn Fn(usize) -> u64| {
        (0..rows).fold(0_u64, |total, row| total.saturating_add(each(row)))
    };
    Ok(match growth {
        Growth::Repeat => {
            let (text, n) = (values(0, element_bytes)?, values(1, counts)?);
            sum(&|row| per_row(0, &text, row).saturating_mul(per_row(1, &n, row)))
        }
        Growth::Pad => {
            let n = values(1, counts)?;
            // A character is at most 4 bytes.
            sum(&|row| per_row(1, &n, row).saturating_mul(4))
        }
        Growth::Replace => {
            let (text, to) = (values(0, element_bytes)?, values(2, element_bytes)?);
            sum(&|row| {
                let text = per_row(0, &text, row);
                text.saturating_add(text.saturating_add(1).saturating_mul(per_row(2, &to, row)))
            })
        }
        Growth::ArrayRepeat => {
            let (each, n) = (values(0, element_bytes)?, values(1, counts)?);
            sum(&|row| {
                per_row(0, &each, row)
                    .max(8)
                    .saturating_mul(per_row(1, &n, row))
            })
        }
        Growth::ArrayResize => {
            let n = values(1, counts)?;
            sum(&|row| per_row(1, &n, row).saturating_mul(16))
        }
        Growth::Range => {
            // `stop`, `start, stop` or `start, stop, step`.
            let (start, stop, step) = match args.as_slice() {
                [stop] => (None, stop, None),
                [start, stop] => (Some(start), stop, None),
                [start, stop, step] => (Some(start), stop, Some(step)),
                _ => return Ok(0),
            };
            let read = |arg: Option<&Arg>, read: fn(&ArrayRef) -> Result<Vec<Option<i64>>>| {
                arg.map(|arg| read(arg.array())).transpose()
            };
            let (starts, stops, by) = (
                read(start, positions)?,
                positions(stop.array())?,
                read(step, steps)?,
            );
            sum(&|row| {
                let from = start
                    .zip(starts.as_ref())
                    .map_or(Some(0), |(a, v)| a.at(v, row));
                // Integers step by one unless told; dates and timestamps always name theirs.
                let by = step.zip(by.as_ref()).map_or(Some(1), |(a, v)| a.at(v, row));
                match (from, stop.at(&stops, row), by) {
                    (Some(from), Some(to), Some(by)) if by != 0 => {
                        let count = (i128::from(to) - i128::from(from)) / i128::from(by) + 1;
                        u64::try_from(count.max(0))
                            .unwrap_or(u64::MAX)
                            .saturating_mul(8)
                    }
                    _ => 0,
                }
            })
        }
    })
}

/// The non-negative counts in `array` (an integer argument), 0 where null or negative.
fn counts(array: &ArrayRef) -> Result<Vec<u64>> {
    let ints = cast(array, &DataType::Int64)?;
    Ok(ints
        .as_primitive::<Int64Type>()
        .iter()
        .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// The bytes of each value of `array`: a string's or binary's length, a fixed width, or
/// for nested values the array's size shared out.
fn element_bytes(array: &ArrayRef) -> Result<Vec<u64>> {
    let rows = array.len().max(1);
    match array.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => counts(&length(array)?),
        data_type => {
            let each = data_type
                .primitive_width()
                .map_or((array.get_array_memory_size() / rows) as u64, |w| w as u64);
            Ok(vec![each; array.len()])
        }
    }
}

const DAY_NANOS: i64 = 86_400_000_000_000;

/// Positions on a line where `range` counts steps: integers as they are, dates and
/// timestamps in nanoseconds (saturating, for dates beyond what nanoseconds hold).
fn positions(array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let nanos_per_unit: i64 = match array.data_type() {
        DataType::Date32 => DAY_NANOS,
        DataType::Date64 | DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
        _ => 1,
    };
    let units = match array.data_type() {
        DataType::Date32 => cast(&cast(array, &DataType::Int32)?, &DataType::Int64)?,
        _ => cast(array, &DataType::Int64)?,
    };
    Ok(units
        .as_primitive::<Int64Type>()
        .iter()
        .map(|n| n.map(|n| n.saturating_mul(nanos_per_unit)))
        .collect())
}

/// Steps in the units of [`positions`]: integers, or intervals in nanoseconds (a month
/// counted as 28 days, the shortest, so that the count is never under the truth).
fn steps(array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    match array.data_type() {
        DataType::Interval(_) => {
            let mdn = cast(array, &DataType::Interval(IntervalUnit::MonthDayNano))?;
            Ok(mdn
                .as_primitive::<IntervalMonthDayNanoType>()
                .iter()
                .map(|interval| {
                    interval.map(|i| {
                        i64::from(i.months)
                            .saturating_mul(28 * DAY_NANOS)
                            .saturating_add(i64::from(i.days).saturating_mul(DAY_NANOS))
                            .saturating_add(i.nanoseconds)
                    })
                })
                .collect())
        }
        _ => positions(array),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn column(array: ArrayRef) -> ColumnarValue {
        ColumnarValue::Array(array)
    }

    fn int(n: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(n)))
    }

    #[test]
    fn what_a_call_builds_is_counted_before_it_runs() {
        let text: ArrayRef = Arc::new(StringArray::from(vec!["ab", "abc"]));
        let counts: ArrayRef = Arc::new(Int64Array::from(vec![Some(10), None]));
        let args = [column(Arc::clone(&text)), column(Arc::clone(&counts))];
        assert_eq!(built_bytes(Growth::Repeat, &args, 2).expect("counts"), 20);
        assert_eq!(built_bytes(Growth::Pad, &args, 2).expect("counts"), 40);
        let negative: ArrayRef = Arc::new(Int64Array::from(vec![-5, 3]));
        let args = [column(Arc::clone(&text)), column(negative)];
        assert_eq!(built_bytes(Growth::Repeat, &args, 2).expect("counts"), 9);
        // A scalar counts once per row, and is never built for every row.
        let big = ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some("x".repeat(1000))));
        assert_eq!(
            built_bytes(Growth::Repeat, &[big.clone(), int(1 << 40)], 8192).expect("counts"),
            1000 * (1 << 40) * 8192
        );
        assert_eq!(
            built_bytes(Growth::Repeat, &[big, int(i64::MAX)], 8192).expect("counts"),
            u64::MAX,
            "saturates"
        );
        let to = ColumnarValue::Scalar(ScalarValue::Utf8(Some("yyyy".into())));
        let from = ColumnarValue::Scalar(ScalarValue::Utf8(Some(String::new())));
        assert_eq!(
            built_bytes(Growth::Replace, &[column(text), from, to], 2).expect("counts"),
            2 + 3 * 4 + 3 + 4 * 4
        );

        assert_eq!(
            built_bytes(Growth::Range, &[int(10_000_000_000)], 1).expect("counts"),
            80_000_000_008
        );
        assert_eq!(
            built_bytes(Growth::Range, &[int(10), int(0), int(-2)], 1).expect("counts"),
            48
        );
        // No rows, no panic.
        let empty: ArrayRef = Arc::new(Int64Array::from(Vec::<i64>::new()));
        assert_eq!(
            built_bytes(Growth::Range, &[column(empty), int(10)], 0).expect("counts"),
            0
        );
        assert_eq!(
            built_bytes(Growth::ArrayResize, &[int(1), int(i64::MAX)], 4).expect("counts"),
            u64::MAX
        );
    }

    #[test]
    fn values_over_the_bound_are_refused_whatever_the_function() {
        let long = ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            "x".repeat(MAX_VALUE_BYTES as usize + 1),
        )));
        let error = check_value("upper", &long).expect_err("over");
        assert!(
            error.to_string().contains("upper was given a value of"),
            "{error}"
        );
        let fine: ArrayRef = Arc::new(StringArray::from(vec!["a"; 10]));
        check_value("upper", &column(fine)).expect("short values");
    }
}
