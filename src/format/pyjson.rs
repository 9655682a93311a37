//! Byte-exact reimplementation of Python 3.11's `json.dumps` for the two settings stigmem
//! uses.
//!
//! stigmem signs `json.dumps(body, sort_keys=True, separators=(",", ":"))` and writes
//! `json.dumps(manifest, indent=2)`; a signature only verifies if the bytes match to the
//! last character, so "equivalent JSON" is not good enough. Both use Python's default
//! `ensure_ascii=True`.
//!
//! Objects keep insertion order because serde_json is built with `preserve_order`.
//!
//! # Limits
//!
//! A [`serde_json::Value`] cannot hold everything a Python object can, so a few inputs
//! render differently from Python's round trip through `json.loads`/`json.dumps`:
//!
//! - integers outside the `i64`/`u64` range are parsed by serde_json as floats, while Python
//!   keeps them exact;
//! - the literal `-0` is parsed by serde_json as the float `-0.0`, while Python reads the
//!   integer `0`;
//! - NaN and infinities cannot occur (serde_json refuses them), and neither can the lone
//!   surrogates Python's `json.loads` accepts in `\u` escapes;
//! - without serde_json's `float_roundtrip` feature, its float parser is not correctly
//!   rounded: about one 17-digit float in twelve reads back one unit in the last place off,
//!   and then prints differently. Floats this module is *given* always print as Python
//!   prints them; the caveat is only for floats read from text.
//!
//! Each of these makes a signature check fail rather than pass, so they are safe for
//! verification; none occurs in anything stigmem writes.

use std::fmt::Write;

use serde_json::{Map, Number, Value};

/// `json.dumps(v, indent=2)`: two-space indentation, `","` at line ends, `": "` between key
/// and value, keys in insertion order, empty containers as `[]` and `{}`, no trailing
/// newline.
pub fn dumps_indent2(v: &Value) -> String {
    let mut out = String::new();
    write_indented(&mut out, v, 0);
    out
}

/// `json.dumps(v, sort_keys=True, separators=(",", ":"))`: no whitespace, keys sorted by
/// code point at every level.
pub fn dumps_canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, v);
    out
}

fn write_indented(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, level + 1);
                write_indented(out, item, level + 1);
            }
            newline(out, level);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, level + 1);
                write_str(out, key);
                out.push_str(": ");
                write_indented(out, item, level + 1);
            }
            newline(out, level);
            out.push('}');
        }
        // Scalars and empty containers print the same at any indentation.
        other => write_scalar_or_empty(out, other),
    }
}

fn newline(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_canonical(out: &mut String, v: &Value) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in sorted_entries(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, key);
                out.push(':');
                write_canonical(out, item);
            }
            out.push('}');
        }
        other => write_scalar_or_empty(out, other),
    }
}

/// Python sorts `str` keys by code point. Rust compares `str` by UTF-8 bytes, which orders
/// the same way (UTF-8 preserves code point order); UTF-16 order would differ for astral
/// characters against U+E000..U+FFFF.
fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn write_scalar_or_empty(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&float_repr(f));
    }
}

/// Python's `float.__repr__` for a finite float (the caller never passes NaN or infinity,
/// which a JSON number cannot hold).
///
/// Python prints the shortest digit string that reads back as the same float, the closest
/// such string to the float's exact value, ties going to an even last digit. Rust's `{:e}`
/// gives a shortest string too but breaks exact ties upwards (`1658206780088562.3` where
/// Python writes `…562.2`), so the same number of digits is re-rounded exactly, which Rust
/// does half-to-even, and used when it still reads back. Checked against Python 3.11's
/// `repr` on a million random bit patterns plus powers of ten and small decimals.
///
/// Python (`format_float_short` with mode `'r'`) then writes `0.d₁d₂… × 10^decpt` in fixed
/// notation when `-4 < decpt <= 16`, adding `.0` to whole numbers, and otherwise in
/// scientific notation with a signed exponent of at least two digits (`1e+16`, `1.5e-07`).
pub fn float_repr(f: f64) -> String {
    let shortest = format!("{f:e}");
    let n_digits = shortest
        .split('e')
        .next()
        .unwrap_or("")
        .bytes()
        .filter(u8::is_ascii_digit)
        .count();
    let rounded = format!("{f:.prec$e}", prec = n_digits.saturating_sub(1));
    let sci = if rounded.parse::<f64>().ok() == Some(f) {
        rounded
    } else {
        shortest
    };
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("Rust's {:e} output for an f64 always contains 'e'");
    let exp: i32 = exp
        .parse()
        .expect("Rust's {:e} exponent is always a decimal integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Re-rounding can only carry into a shorter number if that number also reads back, in
    // which case `{:e}` would have printed it; trimming keeps the layout right regardless.
    let digits = match digits.trim_end_matches('0') {
        "" => "0",
        d => d,
    };
    let decpt = exp + 1;
    let n = digits.len() as i32;

    let mut out = String::from(sign);
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(digits);
        } else if decpt >= n {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(
            out,
            "e{}{:02}",
            if e < 0 { '-' } else { '+' },
            e.unsigned_abs()
        );
    }
    out
}

/// A string literal as Python's `ensure_ascii` encoder writes it: printable ASCII as is
/// (including `/`), the five short escapes, and everything else, DEL (0x7f) included, as
/// lowercase `\uXXXX` UTF-16 code units.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// "a number", "an object", ...: for messages about JSON of the wrong shape.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_layout_matches_python_repr() {
        // python3 -c 'for f in [1.0,1e16,1e15,1.5e-7,0.1,0.0001,0.00001,-0.0,1e100,
        //   1.2345e-300,5e-324,1.7976931348623157e308,123456789012345678.0,1e22,100000.0,
        //   -2.5,123.456]: print(repr(f))'
        let cases = [
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e-7, "1.5e-07"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-0.0, "-0.0"),
            (1e100, "1e+100"),
            (1.2345e-300, "1.2345e-300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e22, "1e+22"),
            (100000.0, "100000.0"),
            (-2.5, "-2.5"),
            (123.456, "123.456"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "repr({f:?})");
        }
    }

    #[test]
    fn short_escapes_and_del() {
        // python3 -c 'import json; print(json.dumps("\"\\/\x7f\x00\x1f\b\f\n\r\t"))'
        assert_eq!(
            dumps_canonical(&json!("\"\\/\u{7f}\u{0}\u{1f}\u{8}\u{c}\n\r\t")),
            r#""\"\\/\u007f\u0000\u001f\b\f\n\r\t""#
        );
    }

    #[test]
    fn empty_containers_nest_without_newlines() {
        // python3 -c 'import json; print(json.dumps({"a":[],"b":{},"c":[1,{"d":[]}]},indent=2))'
        let v = json!({"a": [], "b": {}, "c": [1, {"d": []}]});
        assert_eq!(
            dumps_indent2(&v),
            "{\n  \"a\": [],\n  \"b\": {},\n  \"c\": [\n    1,\n    {\n      \"d\": []\n    }\n  ]\n}"
        );
        assert_eq!(dumps_indent2(&json!([])), "[]");
        assert_eq!(dumps_indent2(&json!({})), "{}");
    }
}
