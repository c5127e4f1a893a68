//! The lines loadgen sends, generated deterministically or read from a file,
//! and the ledger balances they must produce. Pure: no sockets, no clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::rng::Rng;

/// The account names generated ledger lines use (those of the ledger
/// anchors' `gen_ledger.py`, so generated traffic looks like the seed's).
pub const NAMES: [&str; 76] = [
    "Abigail",
    "Addison",
    "Aiden",
    "Alexander",
    "Amelia",
    "Andrew",
    "Anna",
    "Aria",
    "Aubrey",
    "Audrey",
    "Ava",
    "Avery",
    "Benjamin",
    "Brooklyn",
    "Caleb",
    "Camila",
    "Carter",
    "Charlotte",
    "Chloe",
    "Christopher",
    "Daniel",
    "David",
    "Dylan",
    "Eleanor",
    "Elijah",
    "Elizabeth",
    "Ella",
    "Emily",
    "Emma",
    "Ethan",
    "Evelyn",
    "Gabriel",
    "Grace",
    "Hannah",
    "Harper",
    "Henry",
    "Isaac",
    "Isabella",
    "Jackson",
    "Jacob",
    "James",
    "Jayden",
    "John",
    "Joseph",
    "Joshua",
    "Julian",
    "Layla",
    "Leah",
    "Liam",
    "Lillian",
    "Logan",
    "Lucas",
    "Luke",
    "Madison",
    "Mason",
    "Matthew",
    "Mia",
    "Michael",
    "Natalie",
    "Nora",
    "Noah",
    "Oliver",
    "Olivia",
    "Owen",
    "Riley",
    "Ryan",
    "Samuel",
    "Scarlett",
    "Sebastian",
    "Sofia",
    "Sophia",
    "Victoria",
    "William",
    "Wyatt",
    "Zoe",
    "Zoey",
];

/// Balances in integer cents by account name; a `BTreeMap` of bytes is
/// already in SPEC's byte order.
pub type Balances = BTreeMap<Vec<u8>, i128>;

/// Client `client`'s generated ledger lines, each `NAME credit|debit $D.CC\n`
/// with an amount from $0.01 to $9999.99, and the balance change they make
/// (added to `deltas`). The same `(seed, client)` always gives the same lines.
pub fn ledger_lines(seed: u64, client: usize, lines: u64, deltas: &mut Balances) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ (client as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut by_name = [0i128; NAMES.len()];
    let mut used = [false; NAMES.len()];
    let mut out = Vec::with_capacity(lines as usize * 24);
    let mut text = String::with_capacity(32);
    for _ in 0..lines {
        let name = rng.below(NAMES.len() as u64) as usize;
        let credit = rng.below(2) == 0;
        let cents = 1 + rng.below(999_999) as i128;
        text.clear();
        let kind = if credit { "credit" } else { "debit" };
        writeln!(
            text,
            "{} {kind} ${}.{:02}",
            NAMES[name],
            cents / 100,
            cents % 100
        )
        .expect("writing to a String cannot fail");
        out.extend_from_slice(text.as_bytes());
        by_name[name] += if credit { cents } else { -cents };
        used[name] = true;
    }
    for (i, name) in NAMES.iter().enumerate() {
        if used[i] {
            *deltas.entry(name.as_bytes().to_vec()).or_insert(0) += by_name[i];
        }
    }
    out
}

/// Echo line `seq` of client `client`: `cCCCCC SSSSSSSSSSSS ` padded with `x`
/// to `len` bytes, the last one `\n`. Unique per (client, seq), so a reply
/// out of order or from another connection cannot pass the check.
pub fn echo_line(client: usize, seq: u64, len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let mut text = String::with_capacity(24);
    write!(text, "c{client:05} {seq:012} ").expect("writing to a String cannot fail");
    out.extend_from_slice(text.as_bytes());
    let end = start + len.max(text.len() + 1) - 1;
    out.resize(end, b'x');
    out.push(b'\n');
}

/// The lines of an `--input` file, each ending in exactly one `\n` (a last
/// line without one gets it, so repeated sends never glue two lines).
pub fn split_input(data: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = data
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if let Some(last) = lines.last_mut()
        && last.last() != Some(&b'\n')
    {
        last.push(b'\n');
    }
    lines
}

/// Why an expected log could not be computed from `--input` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoExpectedLog(pub String);

/// One ledger line per SPEC: `Some((name, signed cents))` if valid, `None`
/// if the server must discard it. An amount with more than two decimals is
/// valid but not representable in cents: that is the `Err`.
///
/// # Errors
/// [`NoExpectedLog`] for a valid amount with more than two decimals.
pub fn parse_ledger_line(line: &[u8]) -> Result<Option<(&[u8], i128)>, NoExpectedLog> {
    let line = crate::handlers::strip_terminator(line);
    let Ok(text) = std::str::from_utf8(line) else {
        return Ok(None);
    };
    let mut fields = text.split([' ', '\t']).filter(|f| !f.is_empty());
    let (Some(name), Some(kind), Some(amount), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Ok(None);
    };
    let sign = if kind.eq_ignore_ascii_case("credit") {
        1
    } else if kind.eq_ignore_ascii_case("debit") {
        -1
    } else {
        return Ok(None);
    };
    let amount = amount.strip_prefix('$').unwrap_or(amount);
    let (int, frac) = match amount.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (amount, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Ok(None);
    }
    let frac = frac.unwrap_or("");
    if int.len() + frac.len() > 28 {
        return Ok(None);
    }
    if frac.len() > 2 {
        return Err(NoExpectedLog(format!(
            "amount {amount:?} has more than two decimals"
        )));
    }
    let int: i128 = int.parse().expect("at most 28 ASCII digits fit an i128");
    let frac_cents: i128 = match frac.len() {
        0 => 0,
        1 => i128::from(frac.as_bytes()[0] - b'0') * 10,
        _ => frac.parse().expect("two ASCII digits"),
    };
    Ok(Some((name.as_bytes(), sign * (int * 100 + frac_cents))))
}

/// Adds every valid line's change to `balances`.
///
/// # Errors
/// See [`parse_ledger_line`].
pub fn apply_lines<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    balances: &mut Balances,
) -> Result<(), NoExpectedLog> {
    for line in lines {
        if let Some((name, cents)) = parse_ledger_line(line)? {
            *balances.entry(name.to_vec()).or_insert(0) += cents;
        }
    }
    Ok(())
}

/// Largest balance, in cents, loadgen vouches for: far inside what the
/// server's `rust_decimal` holds, so no transaction of ours hits its overflow
/// rule (which discards it, and which this model does not copy).
const MAX_CHECKED_CENTS: i128 = 10i128.pow(26);

/// The log SPEC asks for: `NAME $BALANCE\n` per account, byte order, two
/// decimals, negative as `$-12.34`, never `$-0.00`; every balance `times` K.
///
/// # Errors
/// [`NoExpectedLog`] when a balance is too large to vouch for.
pub fn render_log(balances: &Balances, times: u64) -> Result<Vec<u8>, NoExpectedLog> {
    let mut out = Vec::new();
    let mut text = String::new();
    for (name, &cents) in balances {
        let total = cents
            .checked_mul(i128::from(times))
            .filter(|t| t.abs() < MAX_CHECKED_CENTS)
            .ok_or_else(|| NoExpectedLog("a balance is too large to check".into()))?;
        text.clear();
        let sign = if total < 0 { "-" } else { "" };
        let abs = total.unsigned_abs();
        writeln!(text, " ${sign}{}.{:02}", abs / 100, abs % 100)
            .expect("writing to a String cannot fail");
        out.extend_from_slice(name);
        out.extend_from_slice(text.as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ledger_lines_are_deterministic_and_distinct_per_client() {
        let (mut d1, mut d2) = (Balances::new(), Balances::new());
        let a = ledger_lines(42, 3, 500, &mut d1);
        let b = ledger_lines(42, 3, 500, &mut d2);
        assert_eq!(a, b);
        assert_eq!(d1, d2);
        assert_ne!(a, ledger_lines(42, 4, 500, &mut Balances::new()));
        assert_ne!(a, ledger_lines(43, 3, 500, &mut Balances::new()));
        assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 500);
    }

    #[test]
    fn generated_deltas_match_an_independent_parse() {
        let mut deltas = Balances::new();
        let data = ledger_lines(7, 1, 2_000, &mut deltas);
        let mut parsed = Balances::new();
        apply_lines(data.split_inclusive(|&b| b == b'\n'), &mut parsed).unwrap();
        assert_eq!(deltas, parsed);
        for line in data.split_inclusive(|&b| b == b'\n') {
            let (_, cents) = parse_ledger_line(line)
                .unwrap()
                .expect("generated lines are valid");
            assert!((1..=999_999).contains(&cents.abs()), "{line:?}");
        }
    }

    #[test]
    fn echo_lines_have_the_asked_length() {
        let mut out = Vec::new();
        echo_line(7, 12, 32, &mut out);
        assert_eq!(out, b"c00007 000000000012 xxxxxxxxxxx\n");
        out.clear();
        echo_line(7, 12, 5, &mut out);
        assert_eq!(
            out, b"c00007 000000000012 \n",
            "never shorter than its header"
        );
    }

    #[test]
    fn ledger_line_parsing_follows_spec() {
        fn ok(l: &str) -> Option<(&[u8], i128)> {
            parse_ledger_line(l.as_bytes()).unwrap()
        }
        assert_eq!(ok("Marc credit $2\n"), Some((&b"Marc"[..], 200)));
        assert_eq!(ok(" \tMarc\t DEBIT  1.5 \r\n"), Some((&b"Marc"[..], -150)));
        assert_eq!(ok("Marc Credit $1234.56"), Some((&b"Marc"[..], 123_456)));
        for bad in [
            "Marc credit 2.",
            "Marc credit .5",
            "Marc credit -2",
            "Marc credit $1,000",
            "Marc transfer 2",
            "Marc credit",
            "Marc credit 2 x",
            "",
            "Marc credit 1e3",
            "Marc credit $$2",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
        assert_eq!(parse_ledger_line(b"M\xff credit 2\n").unwrap(), None);
        assert!(parse_ledger_line(b"Marc credit 1.005").is_err());
    }

    #[test]
    fn log_rendering_per_spec() {
        let mut b = Balances::new();
        b.insert(b"marc".to_vec(), 5);
        b.insert(b"Marc".to_vec(), -1234);
        b.insert(b"Zed".to_vec(), 0);
        b.insert(b"Ann".to_vec(), 10_000);
        assert_eq!(
            render_log(&b, 1).unwrap(),
            b"Ann $100.00\nMarc $-12.34\nZed $0.00\nmarc $0.05\n"
        );
        assert_eq!(
            render_log(&b, 20).unwrap(),
            b"Ann $2000.00\nMarc $-246.80\nZed $0.00\nmarc $1.00\n"
        );
        assert_eq!(render_log(&Balances::new(), 1).unwrap(), b"");
        b.insert(b"Big".to_vec(), 10i128.pow(25));
        assert!(render_log(&b, 1000).is_err());
    }

    #[test]
    fn seed_example_hundred_clients() {
        let mut b = Balances::new();
        for _ in 0..100 {
            apply_lines([&b"Marc credit $2\n"[..], b"Marc debit $1\n"], &mut b).unwrap();
        }
        assert_eq!(render_log(&b, 1).unwrap(), b"Marc $100.00\n");
    }

    #[test]
    fn input_lines_always_end_in_newline() {
        assert_eq!(split_input(b"a\nb"), vec![b"a\n".to_vec(), b"b\n".to_vec()]);
        assert_eq!(split_input(b"a\r\n"), vec![b"a\r\n".to_vec()]);
        assert!(split_input(b"").is_empty());
    }
}
