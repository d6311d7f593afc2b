//! Values a guest hands over apart from its line protocol (WIT `host.write`).
//!
//! Writing a float's shortest decimal digits, or an integer's digits, costs an
//! interpreter compiled to WebAssembly hundreds or thousands of instructions per value
//! and the host a few nanoseconds. So a guest may put a placeholder character where a
//! float field's value (NUL) or a timestamp (SOH, U+0001) goes and pass the value itself
//! as 8 little-endian bytes; the host writes each value as the plugin API's
//! `float64_field` and `build` do in Python, so the line reads exactly as if the guest
//! had written it.

use std::fmt::Write as _;

/// Stands for the next float value.
const FLOAT: u8 = 0;
/// Stands for the next timestamp.
const TIMESTAMP: u8 = 1;

/// Why the values could not be filled in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FillError {
    /// The values do not match the placeholders.
    Mismatch(String),
    /// The text would grow past the given length: a whole float is written with all its
    /// digits (up to 311 of them), so 9 bytes from the guest may become hundreds.
    TooLong,
}

/// `text` with its placeholders replaced, in order: each NUL by the next of `floats`
/// (`f64`s) and each SOH by the next of `timestamps` (`i64`s), 8 little-endian bytes
/// each, if that is at most `max_len` bytes long. With neither floats nor timestamps
/// the text is taken as it is, NULs and SOHs included.
pub(crate) fn fill_in(
    text: String,
    floats: &[u8],
    timestamps: &[u8],
    max_len: usize,
) -> Result<String, FillError> {
    if floats.is_empty() && timestamps.is_empty() {
        return Ok(text);
    }
    let bytes = text.as_bytes();
    let float_count = memchr::memchr_iter(FLOAT, bytes).count();
    let timestamp_count = memchr::memchr_iter(TIMESTAMP, bytes).count();
    let mut floats = values(floats, "float", float_count)?.map(f64::from_le_bytes);
    let mut timestamps = values(timestamps, "timestamp", timestamp_count)?.map(i64::from_le_bytes);

    let mut filled = String::with_capacity(text.len() + (float_count + timestamp_count) * 20);
    let mut written = 0;
    for at in memchr::memchr2_iter(FLOAT, TIMESTAMP, bytes) {
        // Both placeholders are ASCII, so `at` is on a character boundary.
        filled.push_str(&text[written..at]);
        written = at + 1;
        if bytes[at] == FLOAT {
            push_float_field(&mut filled, floats.next().expect("one float per NUL"));
        } else {
            let timestamp = timestamps.next().expect("one timestamp per SOH");
            let _ = write!(filled, "{timestamp}");
        }
        if filled.len() > max_len {
            return Err(FillError::TooLong);
        }
    }
    filled.push_str(&text[written..]);
    Ok(filled)
}

/// The 8-byte values in `bytes`, which must hold one for each of `placeholders`.
fn values<'a>(
    bytes: &'a [u8],
    kind: &str,
    placeholders: usize,
) -> Result<impl Iterator<Item = [u8; 8]> + 'a, FillError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(FillError::Mismatch(format!(
            "write: {} bytes of {kind} values, not a multiple of 8",
            bytes.len()
        )));
    }
    if placeholders != bytes.len() / 8 {
        return Err(FillError::Mismatch(format!(
            "write: {placeholders} {kind} placeholders for {} {kind} values",
            bytes.len() / 8
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| chunk.try_into().expect("chunks_exact yields 8 bytes")))
}

/// Appends `value` as the plugin API's `float64_field` writes it: upstream's
/// `f"{int(value)}.0" if value % 1 == 0 else str(value)`.
fn push_float_field(out: &mut String, value: f64) {
    if value.is_finite() && value.fract() == 0.0 {
        if value == 0.0 {
            out.push_str("0.0"); // `int(-0.0)` is 0
        } else {
            // With a precision, Rust writes the exact value: all the integer's digits.
            let _ = write!(out, "{value:.1}");
        }
    } else {
        push_python_repr(out, value);
    }
}

/// Appends `value` as Python's `repr(float)` (and `str(float)`) writes it: the shortest digits that read
/// back as the same value, positional from 1e-4 up to 1e16 (with `.0` when there is no
/// fractional part), scientific with a signed two-digit-or-more exponent outside it.
fn push_python_repr(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("nan");
        return;
    }
    if value.is_sign_negative() {
        out.push('-');
    }
    if value.is_infinite() {
        out.push_str("inf");
        return;
    }
    // Rust's `{:e}` is the shortest round-trip form: `d[.ddd]e<exponent>`.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a decimal exponent");
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    // Where the decimal point goes, counted from the first digit, as in CPython's
    // `format_float_short`.
    let point = exponent + 1;
    if !(-4 < point && point <= 16) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.abs());
    } else if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(value: f64) -> String {
        let mut out = String::new();
        push_python_repr(&mut out, value);
        out
    }

    fn bytes(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn floats_read_as_python_writes_them() {
        // What CPython's `repr` returns for each.
        for (value, python) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (22.22222222222222, "22.22222222222222"),
            (-17.77777777777778, "-17.77777777777778"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1.25e-4, "0.000125"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1234567890123456.7, "1234567890123456.8"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(repr(value), python, "{value:?}");
        }
    }

    #[test]
    fn whole_floats_are_written_with_all_their_digits() {
        // What `f"{int(value)}.0"` returns for each.
        for (value, python) in [
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (-3.0, "-3.0"),
            (1e16, "10000000000000000.0"),
            (2f64.powi(70), "1180591620717411303424.0"),
            (
                1e100,
                "10000000000000000159028911097599180468360808563945281389781327557747838772170381060813469985856815104.0",
            ),
        ] {
            let mut out = String::new();
            push_float_field(&mut out, value);
            assert_eq!(out, python, "{value:?}");
        }
    }

    #[test]
    fn every_float_reads_back_as_itself() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = f64::from_bits(state);
            if value.is_finite() {
                assert_eq!(repr(value).parse::<f64>(), Ok(value), "{value:?}");
            }
        }
    }

    fn stamps(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn placeholders_are_filled_in_order() {
        let text = "m,t=a x=\0,y=1i \u{1}\nm x=\0\nm,t=é y=2i \u{1}".to_string();
        let timestamps = stamps(&[i64::MIN, i64::MAX]);
        assert_eq!(
            fill_in(text, &bytes(&[0.5, -1e20]), &timestamps, usize::MAX).expect("filled in"),
            "m,t=a x=0.5,y=1i -9223372036854775808\nm x=-100000000000000000000.0\n\
             m,t=é y=2i 9223372036854775807"
        );
        let text = "m y=1i \u{1}\nm y=2i 7".to_string();
        assert_eq!(
            fill_in(text, &[], &stamps(&[5]), usize::MAX).expect("filled in"),
            "m y=1i 5\nm y=2i 7"
        );
    }

    #[test]
    fn without_values_the_text_is_kept_with_its_placeholder_characters() {
        let text = "m s=\"a\0b\u{1}c\"".to_string();
        assert_eq!(fill_in(text.clone(), &[], &[], 0), Ok(text));
    }

    #[test]
    fn filling_in_stops_at_the_length_allowed() {
        let text = "m x=\0\nm x=\0".to_string();
        let huge = bytes(&[1e308, 1e308]);
        assert_eq!(
            fill_in(text.clone(), &huge, &[], 400),
            Err(FillError::TooLong)
        );
        assert_eq!(fill_in(text, &huge, &[], 1_000).map(|t| t.len()), Ok(631));
    }

    #[test]
    fn mismatched_values_are_refused() {
        let mismatch = |text: &str, floats: &[u8], timestamps: &[u8]| match fill_in(
            text.into(),
            floats,
            timestamps,
            usize::MAX,
        ) {
            Err(FillError::Mismatch(message)) => message,
            other => panic!("{text:?} was filled in: {other:?}"),
        };
        assert_eq!(
            mismatch("m x=\0,y=\0", &bytes(&[1.5]), &[]),
            "write: 2 float placeholders for 1 float values"
        );
        assert_eq!(
            mismatch("m x=\0", &[0; 7], &[]),
            "write: 7 bytes of float values, not a multiple of 8"
        );
        assert_eq!(
            mismatch("m x=\0 \u{1}", &bytes(&[1.5]), &[]),
            "write: 1 timestamp placeholders for 0 timestamp values"
        );
        assert_eq!(
            mismatch("m x=1i \u{1}", &[], &[0; 12]),
            "write: 12 bytes of timestamp values, not a multiple of 8"
        );
    }
}
