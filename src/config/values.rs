//! The value parsers of the command lines (`--drain-timeout 0.5`, `PORT`,
//! `--max-clients N`): each turns one argument into a typed value or a
//! message that says what is wrong with it, for clap's `value_parser`.

use std::time::Duration;

/// A number of seconds, fractions allowed: `60`, `0.5`, `0`.
///
/// # Errors
/// Anything that is not a finite, non-negative number of at most a year.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;
    refuse_negative(text)?;
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!(
            "`{text}` is out of range (0 to {MAX_SECS} seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The shortest `--report-every` period (a shorter one would flood stdout
/// from a busy loop).
pub const MIN_REPORT_EVERY: Duration = Duration::from_millis(10);

/// `--report-every`: [`parse_secs`], 0 (off) or at least [`MIN_REPORT_EVERY`].
///
/// # Errors
/// As [`parse_secs`], or a period below the minimum.
pub fn parse_report_every(text: &str) -> Result<Duration, String> {
    let period = parse_secs(text)?;
    if !period.is_zero() && period < MIN_REPORT_EVERY {
        return Err(format!(
            "the period must be 0 (off) or at least {} seconds",
            MIN_REPORT_EVERY.as_secs_f64()
        ));
    }
    Ok(period)
}

/// `--udp-idle`: [`parse_secs`], more than 0 (a peer must outlive its own
/// datagram to be a client at all).
///
/// # Errors
/// As [`parse_secs`], or 0.
pub fn parse_udp_idle(text: &str) -> Result<Duration, String> {
    let idle = parse_secs(text)?;
    if idle < MIN_REPORT_EVERY {
        return Err(format!(
            "the idle time must be at least {} seconds",
            MIN_REPORT_EVERY.as_secs_f64()
        ));
    }
    Ok(idle)
}

/// A clear message for a negative number (pair with clap's
/// `allow_negative_numbers`, without which `-1` reads as an unknown flag).
///
/// # Errors
/// `text` starts with `-`.
pub fn refuse_negative(text: &str) -> Result<(), String> {
    if text.trim_start().starts_with('-') {
        return Err("negative numbers are not allowed".to_string());
    }
    Ok(())
}

/// A value parser for a whole number in `min..=max`, with clear messages
/// for a negative number, a non-number and a number out of range.
pub fn number_in(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |text| {
        refuse_negative(text)?;
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a whole number"))?;
        if !(min..=max).contains(&n) {
            return Err(format!("`{text}` is out of range ({min} to {max})"));
        }
        Ok(n)
    }
}

/// PORT: 0 to 65535.
///
/// # Errors
/// Not a whole number in range, or negative.
pub fn port_number(text: &str) -> Result<u16, String> {
    number_in(0, u64::from(u16::MAX))(text).map(|n| n as u16)
}
