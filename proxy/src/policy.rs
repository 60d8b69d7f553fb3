//! Turning an SSH `exec` command line into an argv and deciding whether the
//! whitelist allows it. Pure functions: no I/O, no shell.
//!
//! The line is split with POSIX word rules (quotes and backslashes group and
//! escape; `$`, backticks, `;`, `|`, `&`, `>` and the like are plain bytes),
//! and the argv is later handed to `execve`, never to a shell. So a
//! metacharacter can only ever end up inside one argument, where the
//! argument rules judge it like any other byte.
//!
//! Refused outright, whatever the rules say: a line that is not UTF-8, longer
//! than [`MAX_LINE`], or holds a control character other than tab (NUL,
//! newline, escape…);
//! an argument longer than [`MAX_ARG`]; an argument or option value that is
//! or walks through a `..` path segment.

use regex::{Regex, RegexBuilder};

use crate::config::CommandConfig;

/// Bytes in one command line.
pub const MAX_LINE: usize = 8192;
/// Bytes in one argument.
pub const MAX_ARG: usize = 1024;

/// Why a command line was refused; its `Display` is the one-line reason sent
/// to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the command line is not UTF-8")]
    NotUtf8,
    #[error("the command line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("the command line contains a control character")]
    ControlCharacter,
    #[error("the command line cannot be split: {0}")]
    Unsplittable(String),
    #[error("the command line is empty")]
    Empty,
    #[error("no command given; only whitelisted commands run here")]
    NoCommand,
    #[error("command not allowed")]
    NotAllowed,
    #[error("too many arguments (at most {0})")]
    TooManyArguments(usize),
    #[error("an argument is longer than {MAX_ARG} bytes")]
    ArgumentTooLong,
    #[error("flag {0} is not allowed")]
    FlagNotAllowed(String),
    #[error("flag {0} needs a value")]
    MissingValue(String),
    #[error("value of {0} is not allowed")]
    ValueNotAllowed(String),
    #[error("argument {0} is not allowed")]
    ArgumentNotAllowed(usize),
    #[error("argument {0} refers to a parent directory")]
    ParentDirectory(usize),
    #[error("rate limit exceeded, try again later")]
    RateLimited,
    #[error("too many commands running for this key (at most {0})")]
    TooManySessions(u32),
}

/// A whitelist entry that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the prefix cannot be split: {0}")]
    Prefix(String),
    #[error("the prefix is empty")]
    EmptyPrefix,
    #[error("{0:?} is not a flag (flags start with '-')")]
    NotAFlag(String),
    #[error("invalid pattern {pattern:?}: {source}")]
    Pattern { pattern: String, source: Box<regex::Error> },
}

/// One compiled whitelist entry.
#[derive(Debug, Clone)]
pub struct CommandRule {
    prefix: Vec<String>,
    max_args: usize,
    flags: Vec<String>,
    options: Vec<(String, Regex)>,
    positional: Option<Regex>,
}

/// Compiles a pattern that must match a whole value: a pattern written
/// without `^…$` would otherwise accept anything containing a match.
fn whole(pattern: &str) -> Result<Regex, PolicyError> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| PolicyError::Pattern { pattern: pattern.to_owned(), source: Box::new(e) })
}

/// A flag may be an exact `--name=value` literal; an option's name may not
/// hold the `=` that separates it from its value.
fn flag_name(name: &str, literal: bool) -> Result<String, PolicyError> {
    if name.len() < 2 || !name.starts_with('-') || (!literal && name.contains('=')) {
        return Err(PolicyError::NotAFlag(name.to_owned()));
    }
    Ok(name.to_owned())
}

impl CommandRule {
    pub fn compile(config: &CommandConfig) -> Result<CommandRule, PolicyError> {
        let prefix = shell_words::split(&config.prefix).map_err(|e| PolicyError::Prefix(e.to_string()))?;
        if prefix.is_empty() {
            return Err(PolicyError::EmptyPrefix);
        }
        let flags = config.flags.iter().map(|f| flag_name(f, true)).collect::<Result<_, _>>()?;
        let options = config
            .options
            .iter()
            .map(|(name, pattern)| Ok((flag_name(name, false)?, whole(pattern)?)))
            .collect::<Result<_, PolicyError>>()?;
        let positional = config.positional.as_deref().map(whole).transpose()?;
        Ok(CommandRule { prefix, max_args: config.max_args, flags, options, positional })
    }

    pub fn prefix(&self) -> &[String] {
        &self.prefix
    }

    /// Checks the arguments after the prefix.
    fn check_args(&self, args: &[String]) -> Result<(), Refusal> {
        if args.len() > self.max_args {
            return Err(Refusal::TooManyArguments(self.max_args));
        }
        let position = |i: usize| self.prefix.len() + i;
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg.starts_with('-') {
                if self.flags.iter().any(|f| f == arg) {
                    i += 1;
                    continue;
                }
                let (name, inline) = match arg.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (arg.as_str(), None),
                };
                let Some((_, pattern)) = self.options.iter().find(|(n, _)| n == name) else {
                    return Err(Refusal::FlagNotAllowed(shown(name)));
                };
                let value = match inline {
                    Some(value) => value,
                    None => {
                        i += 1;
                        args.get(i).ok_or_else(|| Refusal::MissingValue(shown(name)))?
                    }
                };
                if walks_up(value) {
                    return Err(Refusal::ParentDirectory(position(i)));
                }
                if !pattern.is_match(value) {
                    return Err(Refusal::ValueNotAllowed(shown(name)));
                }
            } else {
                if walks_up(arg) {
                    return Err(Refusal::ParentDirectory(position(i)));
                }
                match &self.positional {
                    Some(pattern) if pattern.is_match(arg) => {}
                    _ => return Err(Refusal::ArgumentNotAllowed(position(i))),
                }
            }
            i += 1;
        }
        Ok(())
    }
}

/// A flag name for a reason line: quoted, and cut short so that a client
/// cannot make the reply (or the audit line) arbitrarily long.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(40).collect();
    if cut.len() < name.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Whether a path-like value is `..` or has a `..` segment.
fn walks_up(value: &str) -> bool {
    value.split(['/', '\\']).any(|segment| segment == "..")
}

/// Splits a command line into an argv, refusing what no whitelist could
/// safely accept.
pub fn split(line: &[u8]) -> Result<Vec<String>, Refusal> {
    if line.len() > MAX_LINE {
        return Err(Refusal::LineTooLong);
    }
    let line = std::str::from_utf8(line).map_err(|_| Refusal::NotUtf8)?;
    // Tab is the one control character with a place in a command line: a
    // word separator, like space.
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Refusal::ControlCharacter);
    }
    let argv = shell_words::split(line).map_err(|e| Refusal::Unsplittable(e.to_string()))?;
    if argv.is_empty() {
        return Err(Refusal::Empty);
    }
    if argv.iter().any(|a| a.len() > MAX_ARG) {
        return Err(Refusal::ArgumentTooLong);
    }
    Ok(argv)
}

/// Splits `line` and finds the rule that allows it: the one with the longest
/// matching prefix, whose argument rules must then accept the rest.
pub fn authorize<'r>(rules: &'r [CommandRule], line: &[u8]) -> Result<(&'r CommandRule, Vec<String>), Refusal> {
    let argv = split(line)?;
    let rule = rules
        .iter()
        .filter(|r| argv.len() >= r.prefix.len() && argv[..r.prefix.len()] == r.prefix[..])
        .max_by_key(|r| r.prefix.len())
        .ok_or(Refusal::NotAllowed)?;
    rule.check_args(&argv[rule.prefix.len()..])?;
    Ok((rule, argv))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rule(
        prefix: &str,
        max_args: usize,
        flags: &[&str],
        options: &[(&str, &str)],
        positional: Option<&str>,
    ) -> CommandRule {
        CommandRule::compile(&CommandConfig {
            prefix: prefix.into(),
            max_args,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            positional: positional.map(str::to_owned),
        })
        .unwrap()
    }

    fn rules() -> Vec<CommandRule> {
        vec![
            rule(
                "php occ files:scan",
                3,
                &["--all", "--quiet", "-v"],
                &[("--path", "/[A-Za-z0-9_./-]+")],
                Some("[A-Za-z0-9_.@-]{1,64}"),
            ),
            rule("php occ status", 1, &["--output=json"], &[], None),
            rule("php occ", 0, &[], &[], None),
            rule("photoprism index", 1, &["--cleanup"], &[], None),
        ]
    }

    fn allowed(line: &str) -> Vec<String> {
        match authorize(&rules(), line.as_bytes()) {
            Ok((_, argv)) => argv,
            Err(e) => panic!("{line:?} refused: {e}"),
        }
    }

    fn refused(line: &[u8]) -> Refusal {
        match authorize(&rules(), line) {
            Ok((_, argv)) => panic!("{:?} allowed as {argv:?}", String::from_utf8_lossy(line)),
            Err(e) => e,
        }
    }

    #[test]
    fn allowed_commands_split_into_argv() {
        assert_eq!(allowed("php occ files:scan --all"), ["php", "occ", "files:scan", "--all"]);
        assert_eq!(allowed("php occ files:scan alice"), ["php", "occ", "files:scan", "alice"]);
        assert_eq!(
            allowed("php  occ\tfiles:scan --path=/alice/files"),
            ["php", "occ", "files:scan", "--path=/alice/files"]
        );
        assert_eq!(
            allowed("php occ files:scan --path /alice/files -v"),
            ["php", "occ", "files:scan", "--path", "/alice/files", "-v"]
        );
        assert_eq!(allowed("'php' \"occ\" files\\:scan"), ["php", "occ", "files:scan"]);
        assert_eq!(allowed("php occ status --output=json"), ["php", "occ", "status", "--output=json"]);
        assert_eq!(allowed("photoprism index --cleanup"), ["photoprism", "index", "--cleanup"]);
    }

    #[test]
    fn longest_prefix_wins() {
        // `php occ` alone allows no arguments, so `status` must be judged by
        // the `php occ status` entry.
        assert_eq!(allowed("php occ"), ["php", "occ"]);
        let rules = rules();
        let (rule, _) = authorize(&rules, b"php occ status").unwrap();
        assert_eq!(rule.prefix(), ["php", "occ", "status"]);
        assert_eq!(refused(b"php occ user:delete admin"), Refusal::TooManyArguments(0));
    }

    #[test]
    fn unknown_commands_and_partial_prefixes_are_refused() {
        assert_eq!(refused(b"rm -rf /"), Refusal::NotAllowed);
        assert_eq!(refused(b"php"), Refusal::NotAllowed);
        assert_eq!(refused(b"photoprism"), Refusal::NotAllowed);
        assert_eq!(refused(b"photoprismindex"), Refusal::NotAllowed);
        assert_eq!(refused(b"/usr/bin/php occ files:scan"), Refusal::NotAllowed);
        assert_eq!(refused(b"PHP occ files:scan"), Refusal::NotAllowed);
        assert_eq!(refused(b""), Refusal::Empty);
        assert_eq!(refused(b"   "), Refusal::Empty);
    }

    #[test]
    fn argument_rules() {
        assert_eq!(refused(b"php occ files:scan --all --all --all --all"), Refusal::TooManyArguments(3));
        assert_eq!(refused(b"php occ files:scan --force"), Refusal::FlagNotAllowed("\"--force\"".into()));
        assert_eq!(refused(b"php occ files:scan --path"), Refusal::MissingValue("\"--path\"".into()));
        assert_eq!(refused(b"php occ files:scan --path=relative"), Refusal::ValueNotAllowed("\"--path\"".into()));
        assert_eq!(refused(b"php occ files:scan --all=1"), Refusal::FlagNotAllowed("\"--all\"".into()));
        assert_eq!(refused(b"php occ status --output=xml"), Refusal::FlagNotAllowed("\"--output\"".into()));
        assert_eq!(refused(b"php occ status extra"), Refusal::ArgumentNotAllowed(3));
        // A value pattern must match the whole value, not a part of it.
        assert_eq!(refused(b"php occ files:scan --path=/ok;x"), Refusal::ValueNotAllowed("\"--path\"".into()));
    }

    /// Every entry is refused; metacharacters never get past the rules, and
    /// where they are split they stay inside one word.
    #[test]
    fn injection_corpus_is_refused() {
        let corpus: &[&[u8]] = &[
            b"php occ files:scan --all; rm -rf /",
            b"php occ files:scan --all;rm -rf /",
            b"php occ files:scan --all && rm -rf /",
            b"php occ files:scan --all || true",
            b"php occ files:scan --all | sh",
            b"php occ files:scan $(rm -rf /)",
            b"php occ files:scan `rm -rf /`",
            b"php occ files:scan --path=/$(id)",
            b"php occ files:scan --path=/`id`",
            b"php occ files:scan --all\nrm -rf /",
            b"php occ files:scan --all\rrm -rf /",
            b"php occ files:scan --all\0rm",
            b"php occ files:scan ../../etc/passwd",
            b"php occ files:scan --path=/data/../../etc",
            b"php occ files:scan --path /..",
            b"php occ files:scan ..",
            b"php occ files:scan 'alice; rm -rf /'",
            b"php occ files:scan \"alice\" \"; rm\"",
            b"php occ files:scan 'unterminated",
            b"php occ files:scan \"unterminated",
            b"php occ files:scan trailing\\",
            b"php occ files:scan > /etc/passwd",
            b"php occ files:scan alice>/tmp/x",
            b"php occ files:scan ${IFS}",
            b"php occ files:scan *",
            b"php occ files:scan ~root",
            b"php occ files:scan --all & sleep 100",
            b"php occ files:scan\x1b[2J",
            b"php occ files:scan \xff\xfe",
            b"rm -rf /",
            b"sh -c 'php occ files:scan'",
            b"bash",
            b"env php occ files:scan",
            b"php occ files:scan -- --all",
        ];
        for line in corpus {
            refused(line);
        }
    }

    #[test]
    fn control_characters_and_sizes() {
        assert_eq!(refused(b"php occ files:scan\0"), Refusal::ControlCharacter);
        assert_eq!(refused(b"php occ files:scan\n--all"), Refusal::ControlCharacter);
        assert_eq!(refused(b"php occ files:scan\t\x07"), Refusal::ControlCharacter);
        assert_eq!(refused(b"php occ files:scan \xc2\x85"), Refusal::ControlCharacter);
        let long_arg = format!("php occ files:scan {}", "a".repeat(MAX_ARG + 1));
        assert_eq!(refused(long_arg.as_bytes()), Refusal::ArgumentTooLong);
        let long_line = format!("php occ files:scan {}", "a ".repeat(MAX_LINE));
        assert_eq!(refused(long_line.as_bytes()), Refusal::LineTooLong);
        // A value long enough for the split but too long for the pattern.
        let long_user = format!("php occ files:scan {}", "a".repeat(65));
        assert_eq!(refused(long_user.as_bytes()), Refusal::ArgumentNotAllowed(3));
    }

    /// Metacharacters that a rule does allow are single inert arguments.
    #[test]
    fn allowed_metacharacters_stay_in_one_argument() {
        let permissive = [rule("echo", 4, &[], &[], Some(".*"))];
        let cases: &[(&str, &[&str])] = &[
            ("echo 'a; rm -rf /'", &["echo", "a; rm -rf /"]),
            ("echo \"$(id)\" '`id`'", &["echo", "$(id)", "`id`"]),
            ("echo a\\;b 'c|d' \"e&&f\"", &["echo", "a;b", "c|d", "e&&f"]),
            ("echo \"it's\" 'say \"hi\"'", &["echo", "it's", "say \"hi\""]),
            ("echo a;b", &["echo", "a;b"]),
            ("echo $(rm -rf /)", &["echo", "$(rm", "-rf", "/)"]),
        ];
        for (line, expected) in cases {
            match authorize(&permissive, line.as_bytes()) {
                Ok((_, argv)) => assert_eq!(&argv, expected, "{line:?}"),
                // `-rf` is not an allowed flag of `echo`.
                Err(e) => assert_eq!((*line, e), ("echo $(rm -rf /)", Refusal::FlagNotAllowed("\"-rf\"".into()))),
            }
        }
    }

    #[test]
    fn reasons_are_short_single_lines() {
        let flag = format!("php occ files:scan --{}", "x".repeat(500));
        let reason = refused(flag.as_bytes()).to_string();
        assert!(reason.len() < 80, "{reason}");
        assert!(!reason.contains('\n'));
    }

    #[test]
    fn bad_rules_do_not_compile() {
        let config = |prefix: &str, flags: &[&str], positional: Option<&str>| CommandConfig {
            prefix: prefix.into(),
            max_args: 1,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            options: BTreeMap::new(),
            positional: positional.map(str::to_owned),
        };
        assert!(matches!(CommandRule::compile(&config("", &[], None)), Err(PolicyError::EmptyPrefix)));
        assert!(matches!(CommandRule::compile(&config("'php", &[], None)), Err(PolicyError::Prefix(_))));
        assert!(matches!(CommandRule::compile(&config("php", &["all"], None)), Err(PolicyError::NotAFlag(_))));
        assert!(matches!(CommandRule::compile(&config("php", &[], Some("("))), Err(PolicyError::Pattern { .. })));
    }

    #[test]
    fn anchoring_cannot_be_escaped_by_alternation() {
        // Without the group, `a|.*` would become `^a|.*$` and match anything.
        let r = [rule("x", 1, &[], &[], Some("a|b"))];
        assert!(authorize(&r, b"x a").is_ok());
        assert_eq!(authorize(&r, b"x ab").unwrap_err(), Refusal::ArgumentNotAllowed(1));
        assert_eq!(authorize(&r, b"x za").unwrap_err(), Refusal::ArgumentNotAllowed(1));
    }

    /// A small deterministic fuzz: random lines built from shell-ish pieces
    /// are either refused or become an argv whose words all pass the rules.
    #[test]
    fn generated_lines_never_escape_the_rules() {
        let pieces = [
            "php",
            "occ",
            "files:scan",
            "--all",
            "--path=/a",
            "alice",
            ";",
            "&&",
            "|",
            "$(",
            ")",
            "`",
            "'",
            "\"",
            "\\",
            " ",
            "..",
            "/",
            "rm",
            "-rf",
            "#",
            "*",
            ">",
            "\u{0}",
            "\n",
            "é",
        ];
        let mut state: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let rules = rules();
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let line: String = (0..len).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
            if let Ok((rule, argv)) = authorize(&rules, line.as_bytes()) {
                assert_eq!(&argv[..rule.prefix().len()], rule.prefix());
                for word in &argv[rule.prefix().len()..] {
                    let value = word.split_once('=').map_or(word.as_str(), |(_, v)| v);
                    assert!(!walks_up(value) && !word.chars().any(char::is_control), "{line:?} → {argv:?}");
                    let ok = ["--all", "--quiet", "-v"].contains(&word.as_str())
                        || word.starts_with("--path=/")
                        || word.starts_with('/')
                        || word.chars().all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
                    assert!(ok, "{line:?} → {argv:?}");
                }
            }
        }
    }
}
