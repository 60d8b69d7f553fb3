//! Quoting an argv for a remote POSIX shell.
//!
//! SSH has no argv: an `exec` request carries one string, which the remote
//! user's login shell (`$SHELL -c STRING`) parses. To run a program with
//! exactly the arguments we mean, every argument is put in single quotes,
//! inside which a POSIX shell takes every byte literally; a `'` in the
//! argument ends the quoted part, is written as `\'`, and a new quoted part
//! starts (`'it'\''s'`). Every argument is quoted, even a "safe" looking one,
//! so that no argument can ever be read as a reserved word (`if`), an
//! assignment (`A=b`), a tilde (`~`) or a glob (`*`).
//!
//! The one thing that cannot be passed is NUL: a Unix argv is a list of C
//! strings, so no shell and no `execve` could carry it. Such an argument is
//! rejected with [`QuoteError::Nul`] rather than silently truncated.

/// Why an argv cannot be turned into a shell command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The argument at `index` contains a NUL byte, which no Unix argv can hold.
    #[error("argument {index} contains a NUL byte, which a command's arguments cannot carry")]
    Nul { index: usize },
    /// There is no program to run.
    #[error("the command is empty")]
    Empty,
}

/// `arg` as one word of a POSIX shell command line: `'...'`, with each `'`
/// written as `'\''`; the empty string is `''`.
///
/// A NUL in `arg` is copied as it is: [`command_line`] is the checked entry.
pub fn quote_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The command line that makes a POSIX shell (dash, bash, busybox sh) run
/// `argv[0]` with exactly the arguments `argv[1..]`: each argument quoted with
/// [`quote_arg`], separated by single spaces.
pub fn command_line(argv: &[String]) -> Result<String, QuoteError> {
    if argv.is_empty() {
        return Err(QuoteError::Empty);
    }
    let mut line = String::new();
    for (index, arg) in argv.iter().enumerate() {
        if arg.contains('\0') {
            return Err(QuoteError::Nul { index });
        }
        if index > 0 {
            line.push(' ');
        }
        line.push_str(&quote_arg(arg));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn quotes_simple_cases() {
        assert_eq!(quote_arg(""), "''");
        assert_eq!(quote_arg("abc"), "'abc'");
        assert_eq!(quote_arg("it's"), "'it'\\''s'");
        assert_eq!(quote_arg("'"), "''\\'''");
        assert_eq!(quote_arg("$HOME `id` \\ \n"), "'$HOME `id` \\ \n'");
        let argv = vec!["pct".to_string(), "exec".to_string(), "100".to_string(), "--".to_string(), "".to_string()];
        assert_eq!(command_line(&argv).unwrap(), "'pct' 'exec' '100' '--' ''");
    }

    #[test]
    fn rejects_nul_and_empty() {
        let argv = vec!["echo".to_string(), "a\0b".to_string()];
        assert_eq!(command_line(&argv), Err(QuoteError::Nul { index: 1 }));
        assert_eq!(command_line(&[]), Err(QuoteError::Empty));
    }

    /// The shells to prove the quoting against: `/bin/sh` (dash on Debian),
    /// and dash and bash by name where installed.
    fn shells() -> Vec<&'static str> {
        let mut shells = vec!["/bin/sh"];
        for candidate in ["/bin/dash", "/usr/bin/dash", "/bin/bash", "/usr/bin/bash"] {
            if Path::new(candidate).exists() {
                shells.push(candidate);
            }
        }
        shells
    }

    /// Runs the quoted line through `shell`: the line itself is what the shell
    /// parses, as the arguments of a function that prints each argument it
    /// got followed by a NUL (which no argument can contain).
    fn through_shell(shell: &str, argv: &[String]) -> Vec<Vec<u8>> {
        let line = command_line(argv).unwrap();
        let script = format!("show() {{ for a in \"$@\"; do printf '%s\\0' \"$a\"; done; }}; show {line}");
        let output = Command::new(shell).arg("-c").arg(&script).output().expect("run the shell");
        assert!(output.status.success(), "{shell} failed on {script:?}: {}", String::from_utf8_lossy(&output.stderr));
        let mut args: Vec<Vec<u8>> = output.stdout.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
        // The output ends with a NUL, so the split leaves one empty piece.
        assert_eq!(args.pop(), Some(Vec::new()), "{shell}: output must end with NUL");
        args
    }

    /// Characters that mean something to a shell, mixed into the generated
    /// strings far more often than they would turn up by chance.
    const NASTY: &[char] = &[
        '\'', '"', '\\', '$', '`', ' ', '\t', '\n', '\r', '-', '~', '*', '?', '[', ']', '{', '}', '(', ')', '<', '>',
        '|', '&', ';', '#', '=', '!', '%', '^', '\u{1}', '\u{7f}', '\u{1b}', 'é', '\u{a0}', '\u{2028}', '😀',
    ];

    fn arg() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            3 => proptest::sample::select(NASTY),
            2 => any::<char>(),
            1 => proptest::char::range('\u{1}', '\u{7f}'),
        ];
        proptest::collection::vec(c, 0..24)
            .prop_map(|chars| chars.into_iter().map(|c| if c == '\0' { '\u{1}' } else { c }).collect::<String>())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn argv_survives_the_shell(mut argv in proptest::collection::vec(arg(), 0..8), reserved in 0usize..6) {
            // Words a shell would treat specially if they stood unquoted.
            let special = ["if", "A=b", "~", "*", "!", "{"];
            argv.insert(argv.len() / 2, special[reserved].to_string());
            let expected: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
            for shell in shells() {
                prop_assert_eq!(&through_shell(shell, &argv), &expected, "shell {}", shell);
            }
        }
    }

    #[test]
    fn reserved_word_in_command_position_is_a_plain_word() {
        // Unquoted, `if` would start an if-statement; quoted, it is looked up
        // as a command (and not found).
        for shell in shells() {
            let line = command_line(&["if".to_string(), "true".to_string()]).unwrap();
            let output = Command::new(shell).arg("-c").arg(&line).output().unwrap();
            assert_eq!(output.status.code(), Some(127), "{shell}: {line}");
        }
    }
}
