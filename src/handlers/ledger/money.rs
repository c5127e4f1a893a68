//! The ledger's arithmetic: exact sums of `Decimal`s (an overflow is
//! refused, never rounded) and balances rounded to cents for the log.

use std::io::Write;

use rust_decimal::{Decimal, RoundingStrategy};

/// Largest magnitude of a `Decimal` mantissa (96 bits).
pub(super) const MAX_MANTISSA: u128 = (1 << 96) - 1;

/// 10^0 ..= 10^28: scales never exceed 28.
const POW10: [i128; 29] = {
    let mut table = [1i128; 29];
    let mut i = 1;
    while i < table.len() {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// `m * 10^k` stays far inside `i128` (with room to add a `Decimal`
/// mantissa) while `|m| <= SCALE_UP_LIMIT[k]`.
const SCALE_UP_LIMIT: [u128; 29] = {
    let mut table = [0u128; 29];
    let mut i = 0;
    while i < table.len() {
        table[i] = (1u128 << 126) / POW10[i] as u128;
        i += 1;
    }
    table
};

/// An account's balance: the value of a `Decimal` (a mantissa of at most 96
/// bits, a scale of at most 28) kept as a plain `i128` and its scale, so the
/// ledger's common sum (an amount at the balance's scale) is one `i128`
/// addition and one compare, not a trip through `Decimal`'s parts. Every
/// other sum goes through [`add_exact`], so the results are the same.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct Balance {
    /// `|mantissa| <= MAX_MANTISSA`: a `Decimal` holds it exactly.
    mantissa: i128,
    /// Digits after the point, at most 28.
    scale: u32,
}

impl Balance {
    /// `mantissa * 10^-scale`, given as a `Decimal`'s parts.
    #[inline(always)]
    pub(super) fn new(mantissa: i128, scale: u32) -> Self {
        debug_assert!(mantissa.unsigned_abs() <= MAX_MANTISSA && scale <= 28);
        Balance { mantissa, scale }
    }

    pub(super) fn from_decimal(d: Decimal) -> Self {
        Balance::new(d.mantissa(), d.scale())
    }

    pub(super) fn to_decimal(self) -> Decimal {
        Decimal::from_i128_with_scale(self.mantissa, self.scale)
    }

    /// Adds `mantissa * 10^-scale` (a `Decimal`'s parts) exactly, or
    /// returns false and changes nothing when no `Decimal` holds the exact
    /// sum (the ledger's overflow).
    #[inline(always)]
    pub(super) fn add(&mut self, mantissa: i128, scale: u32) -> bool {
        if scale == self.scale {
            // |each| < 2^96: the i128 sum cannot overflow.
            let sum = self.mantissa + mantissa;
            if sum.unsigned_abs() <= MAX_MANTISSA {
                self.mantissa = sum;
                return true;
            }
        }
        self.add_slow(Decimal::from_i128_with_scale(mantissa, scale))
    }

    /// [`Balance::add`] of another balance (`--reactors N` merging loops).
    pub(super) fn add_balance(&mut self, other: Balance) -> bool {
        self.add(other.mantissa, other.scale)
    }

    #[cold]
    fn add_slow(&mut self, delta: Decimal) -> bool {
        match add_exact(self.to_decimal(), delta) {
            Some(sum) => {
                *self = Balance::from_decimal(sum);
                true
            }
            None => false,
        }
    }
}

/// `a + b` exactly, or `None` when no `Decimal` holds the exact sum (the
/// ledger's overflow). Unlike `Decimal::checked_add` it never rounds.
pub fn add_exact(a: Decimal, b: Decimal) -> Option<Decimal> {
    add_aligned(a.mantissa(), a.scale(), b.mantissa(), b.scale()).or_else(|| {
        // Trailing zeros (a balance that once held `2.50`) may have forced a
        // scale the sum does not need. Without them, an operand that will not
        // scale up to the other's scale proves the sum is too big: the other
        // operand's last digit is then nonzero, so the sum's is too.
        let (a, b) = (a.normalize(), b.normalize());
        add_aligned(a.mantissa(), a.scale(), b.mantissa(), b.scale())
    })
}

/// Sums `ma * 10^-sa + mb * 10^-sb` at the larger scale, dropping trailing
/// zeros only while the mantissa is too wide (that loses nothing).
fn add_aligned(ma: i128, sa: u32, mb: i128, sb: u32) -> Option<Decimal> {
    let (mut sum, mut scale) = if sa == sb {
        // The common case; |ma|, |mb| < 2^96, so this cannot overflow.
        (ma + mb, sa)
    } else {
        // Only the operand with the smaller scale moves. Past the limit the
        // sum could not fit in 96 bits anyway (see `add_exact`).
        let (small, k, other, scale) = if sa < sb {
            (ma, sb - sa, mb, sb)
        } else {
            (mb, sa - sb, ma, sa)
        };
        if small.unsigned_abs() > SCALE_UP_LIMIT[k as usize] {
            return None;
        }
        (small * POW10[k as usize] + other, scale)
    };
    while sum.unsigned_abs() > MAX_MANTISSA {
        if scale == 0 || sum % 10 != 0 {
            return None;
        }
        sum /= 10;
        scale -= 1;
    }
    Some(decimal(sum.unsigned_abs(), sum < 0, scale))
}

/// A `Decimal` from a magnitude below 2^96 and a scale of at most 28.
pub(super) fn decimal(magnitude: u128, negative: bool, scale: u32) -> Decimal {
    debug_assert!(magnitude <= MAX_MANTISSA && scale <= 28);
    let lo = magnitude as u32;
    let mid = (magnitude >> 32) as u32;
    let hi = (magnitude >> 64) as u32;
    Decimal::from_parts(lo, mid, hi, negative, scale)
}

/// The balance in whole cents, rounded half away from zero.
pub(super) fn to_cents(balance: Balance) -> i128 {
    let rounded = balance
        .to_decimal()
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    // round_dp leaves a scale of at most 2; |mantissa| < 2^96, so * 100 fits.
    rounded.mantissa() * POW10[(2 - rounded.scale().min(2)) as usize]
}

/// `12.34`, `-12.34`, `0.00`: a zero is never signed (`mantissa` of a
/// negative zero is 0).
pub(super) fn push_cents(out: &mut Vec<u8>, cents: i128) {
    if cents < 0 {
        out.push(b'-');
    }
    let abs = cents.unsigned_abs();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}.{:02}", abs / 100, abs % 100);
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{Ledger, Outcome};
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    // ----- overflow -----------------------------------------------------------

    const MAX28: &[u8] = b"9999999999999999999999999999";

    fn line(parts: &[&[u8]]) -> Vec<u8> {
        parts.join(&b" "[..])
    }

    #[test]
    fn a_transaction_that_would_overflow_is_discarded() {
        let mut ledger = Ledger::new(PathBuf::from("x"));
        let credit = line(&[b"a", b"credit", MAX28]);
        // 7 * (10^28 - 1) < 2^96 - 1 < 8 * (10^28 - 1)
        for _ in 0..7 {
            assert_eq!(ledger.apply_line(&credit), Outcome::Applied);
        }
        let before = ledger.balance("a");
        assert_eq!(ledger.apply_line(&credit), Outcome::Discarded);
        assert_eq!(ledger.balance("a"), before);
        assert_eq!((ledger.applied(), ledger.discarded()), (7, 1));
        // The account still works, both ways.
        assert_eq!(
            ledger.apply_line(&line(&[b"a", b"debit", MAX28])),
            Outcome::Applied
        );
        assert_eq!(ledger.apply_line(b"a credit 1"), Outcome::Applied);
        assert_eq!(
            ledger.balance("a"),
            Some(dec("59999999999999999999999999995"))
        );
        // And negative overflow is discarded the same way.
        let debit = line(&[b"b", b"debit", MAX28]);
        for _ in 0..7 {
            assert_eq!(ledger.apply_line(&debit), Outcome::Applied);
        }
        assert_eq!(ledger.apply_line(&debit), Outcome::Discarded);
    }

    #[test]
    fn a_sum_that_decimal_would_round_is_discarded() {
        // rust_decimal's checked_add rounds this instead of failing: the exact
        // sum 9999999999999999999999999999.1 needs 29 significant digits.
        let big = dec("9999999999999999999999999999");
        let rounded = big
            .checked_add(dec("0.1"))
            .expect("Decimal rounds, no None");
        assert_eq!(rounded.scale(), 0, "{rounded}");
        assert_eq!(add_exact(big, dec("0.1")), None);

        let mut ledger = Ledger::new(PathBuf::from("x"));
        assert_eq!(
            ledger.apply_line(&line(&[b"a", b"credit", MAX28])),
            Outcome::Applied
        );
        assert_eq!(ledger.apply_line(b"a credit 0.1"), Outcome::Discarded);
        assert_eq!(ledger.apply_line(b"a debit $0.01"), Outcome::Discarded);
        assert_eq!(ledger.balance("a"), Some(big));
        assert_eq!(ledger.render_log(), b"a $9999999999999999999999999999.00\n");
    }

    #[test]
    fn a_sum_that_needs_no_extra_scale_is_exact_not_overflow() {
        // The balance carries 27 trailing zeros of scale; the sum only fits
        // without them, and is still exact.
        let mut ledger = Ledger::new(PathBuf::from("x"));
        assert_eq!(
            ledger.apply_line(b"a credit 5.000000000000000000000000000"),
            Outcome::Applied
        );
        assert_eq!(
            ledger.apply_line(b"a credit 100000000000000000000"),
            Outcome::Applied
        );
        assert_eq!(ledger.balance("a"), Some(dec("100000000000000000005")));
        // A huge integer balance plus zero cents is exact too.
        let credit = line(&[b"b", b"credit", MAX28]);
        for _ in 0..7 {
            ledger.apply_line(&credit);
        }
        assert_eq!(ledger.apply_line(b"b credit 0.00"), Outcome::Applied);
        assert_eq!(ledger.apply_line(b"b credit 0.50"), Outcome::Discarded);
        assert_eq!(
            ledger.balance("b"),
            Some(dec("69999999999999999999999999993"))
        );
    }

    #[test]
    fn add_exact_agrees_with_decimal_when_decimal_is_exact() {
        for (a, b, sum) in [
            ("1.5", "2.25", "3.75"),
            ("-1", "0.001", "-0.999"),
            ("0.5", "0.5", "1.0"),
            (
                "79228162514264337593543950335",
                "-1",
                "79228162514264337593543950334",
            ),
            (
                "7922816251426433759354395033.5",
                "0.5",
                "7922816251426433759354395034",
            ),
        ] {
            assert_eq!(add_exact(dec(a), dec(b)), Some(dec(sum)), "{a} + {b}");
        }
        assert_eq!(
            add_exact(dec("79228162514264337593543950335"), dec("1")),
            None
        );
        assert_eq!(
            add_exact(dec("-79228162514264337593543950335"), dec("-1")),
            None
        );
        assert_eq!(
            add_exact(dec("7922816251426433759354395033.5"), dec("0.1")),
            None
        );
    }

    // ----- the log --------------------------------------------------------------

    #[test]
    fn log_rounds_half_away_from_zero() {
        for (amount, shown) in [
            ("0.005", "0.01"),
            ("0.0049999", "0.00"),
            ("2.675", "2.68"), // 2.67 in binary floating point
            ("1.995", "2.00"),
            ("1.994999", "1.99"),
            ("0.125", "0.13"), // not banker's rounding (0.12)
            ("12.3", "12.30"),
            ("7", "7.00"),
        ] {
            let credit = format!("a credit {amount}\n");
            assert_eq!(log_after(&[credit.as_bytes()]), format!("a ${shown}\n"));
            let debit = format!("a debit {amount}\n");
            let negative = if shown == "0.00" {
                shown.to_string()
            } else {
                format!("-{shown}")
            };
            assert_eq!(log_after(&[debit.as_bytes()]), format!("a ${negative}\n"));
        }
    }

    #[test]
    fn log_never_shows_minus_zero() {
        assert_eq!(log_after(&[b"a debit 0.004\n"]), "a $0.00\n");
        assert_eq!(log_after(&[b"a debit 0.00\n"]), "a $0.00\n");
        assert_eq!(
            log_after(&[b"a credit 1\n", b"a debit 1.00\n"]),
            "a $0.00\n"
        );
        assert_eq!(log_after(&[b"a debit 0.005\n"]), "a $-0.01\n");
    }

    #[test]
    fn log_is_sorted_in_byte_order() {
        let log = log_after(&[
            "émile credit 1\n".as_bytes(),
            b"alice credit 1\n",
            b"Zoe credit 1\n",
            b"_x credit 1\n",
            b"Marcus credit 1\n",
            b"Marc credit 1\n",
            "Émile credit 1\n".as_bytes(),
            b"Bob credit 1\n",
            b"0 credit 1\n",
            "名 credit 1\n".as_bytes(),
            b"~ credit 1\n",
        ]);
        let names: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            names,
            [
                "0", "Bob", "Marc", "Marcus", "Zoe", "_x", "alice", "~", "Émile", "émile", "名"
            ]
        );
    }

    #[test]
    fn no_accounts_empty_log() {
        assert!(ledger_after(&[]).render_log().is_empty());
    }

    /// Any `Decimal` mantissa.
    fn mantissa() -> impl Strategy<Value = i128> {
        -(MAX_MANTISSA as i128)..=(MAX_MANTISSA as i128)
    }

    /// Mantissas within 10^6 of the 96-bit limit, either sign, and small
    /// ones: their sums cross the limit or come back from it.
    fn near_limit() -> impl Strategy<Value = i128> {
        let limit = MAX_MANTISSA as i128;
        prop_oneof![
            (limit - 1_000_000)..=limit,
            -limit..=(-limit + 1_000_000),
            -1_000_000i128..=1_000_000,
        ]
    }

    proptest! {
        #[test]
        fn rendering_rounds_half_away_from_zero(
            magnitude in 0u128..=MAX_MANTISSA,
            negative in any::<bool>(),
            scale in 0u32..=28,
        ) {
            let mantissa = if negative { -(magnitude as i128) } else { magnitude as i128 };
            let balance = Decimal::from_i128_with_scale(mantissa, scale);
            let mut ledger = Ledger::new(PathBuf::from("x"));
            ledger.accounts.get_or_insert_with(b"a", || Balance::from_decimal(balance));

            // Independent integer rounding: floor((2|m| + d) / 2d) at d = 10^(s-2).
            let cents: u128 = if scale <= 2 {
                magnitude * 10u128.pow(2 - scale)
            } else {
                let d = 10u128.pow(scale - 2);
                (2 * magnitude + d) / (2 * d)
            };
            let sign = if negative && cents != 0 { "-" } else { "" };
            let expected = format!("a ${sign}{}.{:02}\n", cents / 100, cents % 100);
            prop_assert_eq!(String::from_utf8(ledger.render_log()).unwrap(), expected);
        }

        #[test]
        fn balance_add_is_add_exact(
            (ma, sa, mb, sb) in prop_oneof![
                // Anywhere in range.
                (mantissa(), 0u32..=28, mantissa(), 0u32..=28),
                // The fast path's own case: one scale, sums near the limit.
                (0u32..=28).prop_flat_map(|s| (near_limit(), Just(s), near_limit(), Just(s))),
                // Sums within 2 of the limit, either sign, one scale.
                (0..=MAX_MANTISSA as i128, any::<bool>(), -2i128..=2, 0u32..=28).prop_map(
                    |(a, negative, off, s)| {
                        let limit = MAX_MANTISSA as i128;
                        let (a, b) = (a, (limit - a + off).min(limit));
                        if negative { (-a, s, -b, s) } else { (a, s, b, s) }
                    }
                ),
                // Money-sized amounts at scales 0 to 3.
                (-10i128.pow(12)..10i128.pow(12), 0u32..4, -10i128.pow(12)..10i128.pow(12), 0u32..4),
            ],
        ) {
            let before = Balance::new(ma, sa);
            let mut balance = before;
            let added = balance.add(mb, sb);
            let a = Decimal::from_i128_with_scale(ma, sa);
            let b = Decimal::from_i128_with_scale(mb, sb);
            match add_exact(a, b) {
                Some(sum) => {
                    prop_assert!(added);
                    prop_assert_eq!(balance, Balance::from_decimal(sum), "{} + {}", a, b);
                }
                None => {
                    prop_assert!(!added);
                    prop_assert_eq!(balance, before, "a refused sum changed the balance");
                }
            }
        }

        #[test]
        fn add_exact_is_exact_or_refuses(
            ma in -(MAX_MANTISSA as i128)..=(MAX_MANTISSA as i128),
            sa in 0u32..=28,
            mb in -(MAX_MANTISSA as i128)..=(MAX_MANTISSA as i128),
            sb in 0u32..=28,
        ) {
            let a = Decimal::from_i128_with_scale(ma, sa);
            let b = Decimal::from_i128_with_scale(mb, sb);
            match add_exact(a, b) {
                // Exact: undoing the sum gives back each operand exactly.
                Some(sum) => {
                    prop_assert_eq!(add_exact(sum, -b), Some(a));
                    prop_assert_eq!(add_exact(sum, -a), Some(b));
                }
                // Refused: then no Decimal holds the sum, so Decimal's own
                // checked_add either fails or loses digits.
                None => {
                    if let Some(rounded) = a.checked_add(b) {
                        prop_assert_ne!(add_exact(rounded, -b), Some(a));
                    }
                }
            }
        }
    }
}
