//! Units: simulated time (integer picoseconds), cycles of a named clock,
//! byte sizes and frequencies, and the parsing of description values such as
//! `"256ns"`, `"1GHz"` and `"128KiB"`.
//!
//! Every value read from a description is parsed once into these integer
//! types; nothing downstream handles a bare float of unknown unit.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Add, AddAssign, Mul, Sub};

/// Why a unit-carrying string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind}: {reason} (expected e.g. {example})")]
pub struct UnitError {
    pub input: String,
    pub kind: &'static str,
    pub reason: String,
    pub example: &'static str,
}

/// A point in or span of simulated time, in picoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ps(pub u64);

/// A count of cycles of some clock. Which clock is the caller's to name
/// (fields say `_cycles` of the PMCA clock, etc.); convert with [`Clock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cycles(pub u64);

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

/// A clock frequency in hertz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hz(pub u64);

const PS_PER_S: u128 = 1_000_000_000_000;

impl Ps {
    pub const ZERO: Ps = Ps(0);
    pub fn from_ns(ns: u64) -> Ps {
        Ps(ns * 1000)
    }
    /// Nanoseconds as a float, for reports only.
    pub fn as_ns_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    pub fn saturating_sub(self, other: Ps) -> Ps {
        Ps(self.0.saturating_sub(other.0))
    }
}

impl Add for Ps {
    type Output = Ps;
    fn add(self, o: Ps) -> Ps {
        Ps(self.0 + o.0)
    }
}
impl AddAssign for Ps {
    fn add_assign(&mut self, o: Ps) {
        self.0 += o.0;
    }
}
impl Sub for Ps {
    type Output = Ps;
    fn sub(self, o: Ps) -> Ps {
        Ps(self.0 - o.0)
    }
}
impl Mul<u64> for Ps {
    type Output = Ps;
    fn mul(self, k: u64) -> Ps {
        Ps(self.0 * k)
    }
}
impl Add for Cycles {
    type Output = Cycles;
    fn add(self, o: Cycles) -> Cycles {
        Cycles(self.0 + o.0)
    }
}
impl AddAssign for Cycles {
    fn add_assign(&mut self, o: Cycles) {
        self.0 += o.0;
    }
}
impl Sub for Cycles {
    type Output = Cycles;
    fn sub(self, o: Cycles) -> Cycles {
        Cycles(self.0 - o.0)
    }
}
impl Mul<u64> for Cycles {
    type Output = Cycles;
    fn mul(self, k: u64) -> Cycles {
        Cycles(self.0 * k)
    }
}
impl Add for Bytes {
    type Output = Bytes;
    fn add(self, o: Bytes) -> Bytes {
        Bytes(self.0 + o.0)
    }
}
impl AddAssign for Bytes {
    fn add_assign(&mut self, o: Bytes) {
        self.0 += o.0;
    }
}
impl Mul<u64> for Bytes {
    type Output = Bytes;
    fn mul(self, k: u64) -> Bytes {
        Bytes(self.0 * k)
    }
}
impl std::iter::Sum for Bytes {
    fn sum<I: Iterator<Item = Bytes>>(it: I) -> Bytes {
        Bytes(it.map(|b| b.0).sum())
    }
}

/// A clock domain: converts between its cycles and picoseconds.
///
/// Frequencies whose period is not a whole number of picoseconds (e.g.
/// 666 MHz) are handled exactly: cycle `n` ends at `ceil(n * 1e12 / f)` ps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub freq: Hz,
}

impl Clock {
    pub fn new(freq: Hz) -> Clock {
        assert!(freq.0 > 0, "a clock needs a non-zero frequency");
        Clock { freq }
    }
    /// Time taken by `c` cycles of this clock, rounded up to a whole picosecond.
    pub fn to_ps(&self, c: Cycles) -> Ps {
        let num = c.0 as u128 * PS_PER_S;
        Ps(num.div_ceil(self.freq.0 as u128) as u64)
    }
    /// The smallest cycle count `c` with `to_ps(c) >= t`, so that the two
    /// conversions agree even when the period is not a whole picosecond.
    pub fn cycles_ceil(&self, t: Ps) -> Cycles {
        let floor = (t.0 as u128 * self.freq.0 as u128 / PS_PER_S) as u64;
        if self.to_ps(Cycles(floor)) >= t {
            Cycles(floor)
        } else {
            Cycles(floor + 1)
        }
    }
    /// The first clock edge at or after `t`.
    pub fn next_edge(&self, t: Ps) -> Ps {
        self.to_ps(self.cycles_ceil(t))
    }
    /// The period, rounded to the nearest picosecond (for display).
    pub fn period_ps(&self) -> u64 {
        ((PS_PER_S + self.freq.0 as u128 / 2) / self.freq.0 as u128) as u64
    }
}

fn split_number(s: &str) -> (&str, &str) {
    let idx = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    (s[..idx].trim(), s[idx..].trim())
}

/// Parses `number unit` where the number may be fractional, and returns the
/// value in the base unit as an exact integer (the product must be whole).
fn parse_scaled(
    input: &str,
    kind: &'static str,
    example: &'static str,
    units: &[(&str, u128)],
) -> Result<u64, UnitError> {
    let err = |reason: String| UnitError {
        input: input.to_string(),
        kind,
        reason,
        example,
    };
    let s = input.trim();
    if s.starts_with('-') {
        return Err(err("negative values are not allowed".into()));
    }
    let (num, unit) = split_number(s);
    if num.is_empty() {
        return Err(err("missing number".into()));
    }
    let names: Vec<&str> = units.iter().map(|(n, _)| *n).collect();
    if unit.is_empty() {
        return Err(err(format!("missing unit (one of {})", names.join(", "))));
    }
    let scale = units
        .iter()
        .find(|(n, _)| *n == unit)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            err(format!(
                "unknown unit `{unit}` (one of {})",
                names.join(", ")
            ))
        })?;
    let num = num.replace('_', "");
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num.as_str(), ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err("missing number".into()));
    }
    if frac_part.contains('.') {
        return Err(err("more than one decimal point".into()));
    }
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part
            .parse()
            .map_err(|_| err("number too large".into()))?
    };
    let frac_den = 10u128
        .checked_pow(frac_part.len() as u32)
        .ok_or_else(|| err("too many decimals".into()))?;
    let frac: u128 = if frac_part.is_empty() {
        0
    } else {
        frac_part.parse().map_err(|_| err("bad decimals".into()))?
    };
    let total_num = int
        .checked_mul(frac_den)
        .and_then(|v| v.checked_add(frac))
        .and_then(|v| v.checked_mul(scale))
        .ok_or_else(|| err("number too large".into()))?;
    if total_num % frac_den != 0 {
        return Err(err(format!(
            "not a whole number of the base unit ({})",
            units[0].0
        )));
    }
    u64::try_from(total_num / frac_den).map_err(|_| err("number too large".into()))
}

const TIME_UNITS: &[(&str, u128)] = &[
    ("ps", 1),
    ("ns", 1_000),
    ("us", 1_000_000),
    ("µs", 1_000_000),
    ("ms", 1_000_000_000),
    ("s", 1_000_000_000_000),
];
const FREQ_UNITS: &[(&str, u128)] = &[
    ("Hz", 1),
    ("kHz", 1_000),
    ("MHz", 1_000_000),
    ("GHz", 1_000_000_000),
];
const SIZE_UNITS: &[(&str, u128)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

/// Parses a time such as `256ns`, `1.5us`, `20s` into picoseconds.
pub fn parse_time(s: &str) -> Result<Ps, UnitError> {
    parse_scaled(s, "time", "`256ns`, `1.5us`, `20s`", TIME_UNITS).map(Ps)
}

/// Parses a frequency such as `1GHz`, `666MHz`.
pub fn parse_frequency(s: &str) -> Result<Hz, UnitError> {
    let hz = parse_scaled(s, "frequency", "`1GHz`, `666MHz`", FREQ_UNITS)?;
    if hz == 0 {
        return Err(UnitError {
            input: s.to_string(),
            kind: "frequency",
            reason: "must be greater than zero".into(),
            example: "`1GHz`",
        });
    }
    Ok(Hz(hz))
}

/// Parses a size such as `128KiB`, `4MiB`, `64B`.
pub fn parse_size(s: &str) -> Result<Bytes, UnitError> {
    parse_scaled(s, "size", "`128KiB`, `4MiB`, `64B`", SIZE_UNITS).map(Bytes)
}

fn format_with(v: u64, units: &[(&str, u128)]) -> String {
    // The largest unit that divides the value exactly; keeps round trips exact.
    let mut best = units[0];
    for &(name, k) in units {
        if name == "µs" {
            continue;
        }
        if v as u128 % k == 0 && k >= best.1 {
            best = (name, k);
        }
    }
    format!("{}{}", v as u128 / best.1, best.0)
}

impl fmt::Display for Ps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0ns");
        }
        f.write_str(&format_with(self.0, TIME_UNITS))
    }
}
impl fmt::Display for Hz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_with(self.0, FREQ_UNITS))
    }
}
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binary: Vec<(&str, u128)> = SIZE_UNITS
            .iter()
            .copied()
            .filter(|(n, _)| n.ends_with("iB") || *n == "B")
            .collect();
        f.write_str(&format_with(self.0, &binary))
    }
}
impl fmt::Display for Cycles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cycles", self.0)
    }
}

macro_rules! serde_via_str {
    ($ty:ty, $parse:ident, $expect:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expect)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        $parse(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
serde_via_str!(Ps, parse_time, "a time with its unit, e.g. \"256ns\"");
serde_via_str!(
    Hz,
    parse_frequency,
    "a frequency with its unit, e.g. \"1GHz\""
);
serde_via_str!(Bytes, parse_size, "a size with its unit, e.g. \"128KiB\"");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("256ns").unwrap(), Ps(256_000));
        assert_eq!(parse_time("1.5us").unwrap(), Ps(1_500_000));
        assert_eq!(parse_time("20s").unwrap(), Ps(20_000_000_000_000));
        assert_eq!(parse_time(" 7 ps ").unwrap(), Ps(7));
        assert!(parse_time("0.5ps").unwrap_err().reason.contains("whole"));
        assert!(parse_time("256")
            .unwrap_err()
            .reason
            .contains("missing unit"));
        assert!(parse_time("256nz")
            .unwrap_err()
            .reason
            .contains("unknown unit"));
        assert!(parse_time("-1ns").unwrap_err().reason.contains("negative"));
        assert!(parse_time("ns").is_err());
    }

    #[test]
    fn parses_sizes_and_frequencies() {
        assert_eq!(parse_size("128KiB").unwrap(), Bytes(131_072));
        assert_eq!(parse_size("1MiB").unwrap(), Bytes(1 << 20));
        assert_eq!(parse_size("64B").unwrap(), Bytes(64));
        assert_eq!(parse_frequency("1GHz").unwrap(), Hz(1_000_000_000));
        assert_eq!(parse_frequency("666MHz").unwrap(), Hz(666_000_000));
        assert!(parse_frequency("0GHz").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["256ns", "1500ns", "20s", "3ps"] {
            let t = parse_time(s).unwrap();
            assert_eq!(parse_time(&t.to_string()).unwrap(), t);
        }
        assert_eq!(Ps(256_000).to_string(), "256ns");
        assert_eq!(Bytes(131_072).to_string(), "128KiB");
        assert_eq!(Hz(1_000_000_000).to_string(), "1GHz");
    }

    #[test]
    fn clock_conversions() {
        let ghz = Clock::new(Hz(1_000_000_000));
        assert_eq!(ghz.to_ps(Cycles(596)), Ps(596_000));
        assert_eq!(ghz.cycles_ceil(Ps(1_001)), Cycles(2));
        // 666 MHz: period 1501.5015 ps; 2 cycles are 3003.003 ps, rounded up.
        let c = Clock::new(Hz(666_000_000));
        assert_eq!(c.to_ps(Cycles(2)), Ps(3004));
        assert_eq!(c.to_ps(Cycles(1)), Ps(1502));
        assert_eq!(c.next_edge(Ps(1502)), Ps(1502));
        assert_eq!(c.next_edge(Ps(1503)), Ps(3004));
    }
}
