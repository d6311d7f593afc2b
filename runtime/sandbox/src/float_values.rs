//! Float field values a guest hands over apart from its line protocol (WIT `host.write`).
//!
//! Finding a float's shortest decimal digits costs an interpreter compiled to
//! WebAssembly thousands of instructions per value and the host a few nanoseconds. So a
//! guest may put a NUL character where a float field's value goes and pass the value
//! itself as 8 little-endian bytes; the host writes each value as the plugin API's
//! `float64_field` does in Python, so the line reads exactly as if the guest had
//! formatted it.

use std::fmt::Write as _;

/// Why the floats could not be filled in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FillError {
    /// The values do not match the placeholders.
    Mismatch(String),
    /// The text would grow past the given length: a whole float is written with all its
    /// digits (up to 311 of them), so 9 bytes from the guest may become hundreds.
    TooLong,
}

/// `text` with its NUL characters replaced, in order, by the floats in `floats` (8
/// little-endian bytes each), if that is at most `max_len` bytes long. With no floats
/// the text is taken as it is, NULs included.
pub(crate) fn fill_in(text: String, floats: &[u8], max_len: usize) -> Result<String, FillError> {
    if floats.is_empty() {
        return Ok(text);
    }
    if !floats.len().is_multiple_of(8) {
        return Err(FillError::Mismatch(format!(
            "write: {} bytes of float values, not a multiple of 8",
            floats.len()
        )));
    }
    let placeholders = text.bytes().filter(|&b| b == 0).count();
    if placeholders != floats.len() / 8 {
        return Err(FillError::Mismatch(format!(
            "write: {placeholders} float placeholders for {} float values",
            floats.len() / 8
        )));
    }
    let mut filled = String::with_capacity(text.len() + placeholders * 20);
    let mut values = floats
        .chunks_exact(8)
        .map(|bytes| f64::from_le_bytes(bytes.try_into().expect("chunks_exact yields 8 bytes")));
    let mut pieces = text.split('\0');
    if let Some(first) = pieces.next() {
        filled.push_str(first);
    }
    for (piece, value) in pieces.zip(&mut values) {
        push_float_field(&mut filled, value);
        filled.push_str(piece);
        if filled.len() > max_len {
            return Err(FillError::TooLong);
        }
    }
    Ok(filled)
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

    #[test]
    fn placeholders_are_filled_in_order() {
        let text = "m,t=a x=\0,y=1i 5\nm x=\0".to_string();
        assert_eq!(
            fill_in(text, &bytes(&[0.5, -1e20]), usize::MAX).expect("filled in"),
            "m,t=a x=0.5,y=1i 5\nm x=-100000000000000000000.0"
        );
    }

    #[test]
    fn without_floats_the_text_is_kept_with_its_nuls() {
        let text = "m s=\"a\0b\"".to_string();
        assert_eq!(fill_in(text.clone(), &[], 0), Ok(text));
    }

    #[test]
    fn filling_in_stops_at_the_length_allowed() {
        let text = "m x=\0\nm x=\0".to_string();
        let huge = bytes(&[1e308, 1e308]);
        assert_eq!(fill_in(text.clone(), &huge, 400), Err(FillError::TooLong));
        assert_eq!(fill_in(text, &huge, 1_000).map(|t| t.len()), Ok(631));
    }

    #[test]
    fn mismatched_floats_are_refused() {
        assert_eq!(
            fill_in("m x=\0,y=\0".into(), &bytes(&[1.5]), usize::MAX),
            Err(FillError::Mismatch(
                "write: 2 float placeholders for 1 float values".to_string()
            ))
        );
        assert_eq!(
            fill_in("m x=\0".into(), &[0; 7], usize::MAX),
            Err(FillError::Mismatch(
                "write: 7 bytes of float values, not a multiple of 8".to_string()
            ))
        );
    }
}
