//! Small text and unit helpers shared by the other modules.

use core::time::Duration;

/// The last `n` lines of `text`, ignoring leading and trailing blank space.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n").trim().to_string()
}

/// An argv as a person would type it: words quoted only where needed.
pub(crate) fn display_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.as_ref();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A duration as the WIT's `u32` milliseconds, saturating at ~49 days.
pub(crate) fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n\n", 2), "b\nc");
        assert_eq!(tail_lines("  \n", 5), "");
    }

    #[test]
    fn argv_quotes_only_where_needed() {
        assert_eq!(display_argv(&["echo", "a b", "", "it's"]), r"echo 'a b' '' 'it'\''s'");
    }

    #[test]
    fn duration_saturates() {
        assert_eq!(duration_ms(Duration::from_secs(3)), 3000);
        assert_eq!(duration_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
