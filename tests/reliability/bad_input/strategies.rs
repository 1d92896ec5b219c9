//! The generators the properties share: `J`, a JSON value of our own, and values meant to
//! break a field (`bad_value`); strings that mean something somewhere (`MEANINGFUL`) or trip
//! up text handling (`odd_string`); numbers at and past every limit; RFC 3339 near misses.

use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// A JSON value of our own, so that numbers can be any token (1e400, 2^64) and objects can
// repeat a key, which serde_json::Value cannot express.

#[derive(Debug, Clone)]
pub(super) enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

pub(super) fn s(v: &str) -> J {
    J::Str(v.into())
}

pub(super) fn n(v: &str) -> J {
    J::Num(v.into())
}

/// Strings that mean something to some field somewhere.
pub(super) const MEANINGFUL: &[&str] = &[
    "probe",
    "job-purge",
    "enrichment",
    "default",
    "PROBE",
    "2000-01-01T00:00:00Z",
    "2999-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00+14:00",
    "2020-02-30T00:00:00Z",
    "2020-01-01T24:00:00Z",
    "2020-01-01T00:00:60Z",
    "2020-01-01",
    "+262143-12-31T23:59:59Z",
    "-262143-01-01T00:00:00Z",
    "now",
    "0 0 * * * *",
    "* * * * * *",
    "0 0 0 31 2 *",
    "0 0 0 1 1 * 2100",
    "60 * * * * *",
    "@hourly",
    "every day",
    "UTC",
    "Europe/Berlin",
    "Mars/Olympus",
    "BACKGROUND_JOB_SUCCEEDED",
    "BACKGROUND_JOB_RUNNING",
    "SUCCEEDED",
    "succeeded",
    "failed",
    "canceled",
    "cancelled",
    "running",
    "available",
    "P30D",
    "P1Y",
    "PT24H",
    "P0D",
    "-P1D",
    "P99999999999Y",
    "P1Y2M3DT4H5M6.789S",
    "PT",
    "conversations",
    "attachments",
    "memories",
    "0190f5a0-0000-7000-8000-000000000001",
    "1h",
    "'; DROP TABLE memwarden.jobs; --",
    "%00",
    "\\u0000",
    "..",
    "../../etc/passwd",
];

/// Characters that trip up text handling: NUL (which PostgreSQL cannot store), controls, bidi overrides, combining marks, BOMs,
/// surrogates' neighbours, the last code point, emoji with joiners.
const ODD_CHARS: &[char] = &[
    '\u{0}',
    '\u{1}',
    '\u{7}',
    '\t',
    '\n',
    '\r',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{ad}',
    '\u{300}',
    '\u{200b}',
    '\u{200d}',
    '\u{202e}',
    '\u{2028}',
    '\u{fdd0}',
    '\u{feff}',
    '\u{fffd}',
    '\u{ffff}',
    '\u{10ffff}',
    '\u{1f4a5}',
    '\u{1f468}',
    'é',
    'ß',
    'İ',
    '中',
    '"',
    '\\',
    '/',
    '%',
    ' ',
    ':',
    '{',
    '}',
];

pub(super) fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9_.-]{0,16}",
        2 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
        3 => prop::sample::select(MEANINGFUL).prop_map(String::from),
        2 => prop::collection::vec(prop::sample::select(ODD_CHARS), 0..12)
            .prop_map(|v| v.into_iter().collect()),
        1 => Just(String::new()),
        1 => Just("   ".to_string()),
        1 => "[a-z]{200,600}",
        2 => rfc3339ish(),
    ]
    .boxed()
}

pub(super) fn number() -> BoxedStrategy<String> {
    const SPECIAL: &[&str] = &[
        "0",
        "-0",
        "-1",
        "1",
        "0.5",
        "-0.0",
        "1e400",
        "-1e400",
        "1e-400",
        "1E2",
        "32767",
        "32768",
        "-32769",
        "2147483647",
        "2147483648",
        "-2147483649",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1.7976931348623157e308",
    ];
    prop_oneof![
        2 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<u64>().prop_map(|v| v.to_string()),
        1 => any::<i16>().prop_map(|v| v.to_string()),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        3 => prop::sample::select(SPECIAL).prop_map(String::from),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<J> {
    prop_oneof![
        1 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        3 => number().prop_map(J::Num),
        4 => odd_string().prop_map(J::Str),
    ]
    .boxed()
}

pub(super) fn key(fields: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(fields).prop_map(String::from),
        1 => odd_string(),
    ]
    .boxed()
}

pub(super) fn json_value(fields: &'static [&'static str]) -> BoxedStrategy<J> {
    leaf()
        .prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
                prop::collection::vec((key(fields), inner), 0..6).prop_map(J::Obj),
            ]
        })
        .boxed()
}

/// A value meant to break one field: the wrong type, an empty or odd string, a huge or
/// negative number, an unknown enum value, a nested structure.
pub(super) fn bad_value() -> BoxedStrategy<J> {
    prop_oneof![
        6 => leaf(),
        1 => Just(J::Arr(vec![])),
        1 => Just(J::Obj(vec![])),
        1 => Just(J::Arr(vec![s("BACKGROUND_JOB_RUNNING"), J::Null, n("1")])),
        1 => Just(J::Obj(vec![("sleep_ms".into(), n("-1"))])),
        1 => json_value(&["a", "b"]),
    ]
    .boxed()
}

/// RFC 3339 and near misses: out-of-range fields, odd separators and offsets, missing parts.
pub(super) fn rfc3339ish() -> BoxedStrategy<String> {
    let year = prop_oneof![0i64..=10_000, -300_000i64..=300_000];
    let field = |hi: u32| 0u32..=hi;
    let sep = prop::sample::select(vec!["T", "t", " ", "_", ""]);
    let frac = prop_oneof![Just(String::new()), "\\.[0-9]{1,12}", Just(".".to_string())];
    let offset = prop_oneof![
        Just("Z".to_string()),
        Just("z".to_string()),
        Just(String::new()),
        Just("-00:00".to_string()),
        (prop::sample::select(vec!["+", "-"]), 0u32..=99, 0u32..=99)
            .prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
        Just("+0100".to_string()),
        Just(" UTC".to_string()),
    ];
    let structured = (
        year,
        field(13),
        field(32),
        sep,
        field(25),
        field(61),
        field(61),
        frac,
        offset,
    )
        .prop_map(|(y, mo, d, sep, h, mi, s, frac, off)| {
            let y = if (0..10_000).contains(&y) {
                format!("{y:04}")
            } else {
                format!("{y:+}")
            };
            format!("{y}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        });
    prop_oneof![
        6 => structured,
        1 => "[0-9T:.Z+ -]{0,30}",
        1 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
    .boxed()
}
