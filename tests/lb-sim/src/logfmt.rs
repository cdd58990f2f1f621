//! Timestamps in the formats the imitated programs print (UTC; the images carry no
//! time zone data), computed without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// UTC now as (year, month, day, hour, minute, second, millisecond).
fn now_parts() -> (i64, u32, u32, u32, u32, u32, u32) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    // Civil-from-days (Howard Hinnant's algorithm): days since 1970-01-01 to a date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis(),
    )
}

/// `date -Iseconds`, as the proxy image's entrypoint script prints it.
pub fn iso_seconds() -> String {
    let (y, mo, d, h, mi, s, _) = now_parts();
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+00:00")
}

/// An nginx error-log line: `2024/01/02 03:04:05 [notice] 1#1: <msg>`.
pub fn nginx(level: &str, msg: &str) {
    let (y, mo, d, h, mi, s, _) = now_parts();
    eprintln!(
        "{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{s:02} [{level}] {}#{}: {msg}",
        std::process::id(),
        std::process::id()
    );
}

/// An envoy log line: `[2024-01-02 03:04:05.678][1][info][main] [<source>] <msg>`.
pub fn envoy(level: &str, logger: &str, source: &str, msg: &str) {
    let (y, mo, d, h, mi, s, ms) = now_parts();
    eprintln!(
        "[{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}][{}][{level}][{logger}] [{source}] {msg}",
        std::process::id()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_have_the_imitated_shapes() {
        let iso = super::iso_seconds();
        assert_eq!(iso.len(), "2024-01-02T03:04:05+00:00".len(), "{iso}");
        assert!(iso.starts_with("20") && iso.ends_with("+00:00"), "{iso}");
        let y: i64 = iso[..4].parse().unwrap();
        assert!((2024..2100).contains(&y), "{iso}");
    }
}
