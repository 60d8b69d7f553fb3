//! The `proximity-proxy` binary: a thin wrapper over the library's entry
//! points.
//!
//! ```text
//! proximity-proxy serve --config proxy.toml
//! proximity-proxy forced-command --config proxy.toml --service NAME
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: proximity-proxy serve --config PATH\n       \
                     proximity-proxy forced-command --config PATH --service NAME";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Serve { config: PathBuf },
    ForcedCommand { config: PathBuf, service: String },
}

/// `--name VALUE` or `--name=VALUE` options, in any order, each once.
fn options(words: &[String], names: &[&str]) -> Option<Vec<String>> {
    let mut values: Vec<Option<String>> = vec![None; names.len()];
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (word.as_str(), None),
        };
        let slot = names.iter().position(|n| *n == name)?;
        let value = match inline {
            Some(value) => value,
            None => words.next()?.clone(),
        };
        if values[slot].replace(value).is_some() {
            return None;
        }
    }
    values.into_iter().collect()
}

fn parse(args: &[String]) -> Option<Mode> {
    let (mode, rest) = args.split_first()?;
    match mode.as_str() {
        "serve" => {
            let [config] = <[String; 1]>::try_from(options(rest, &["--config"])?).ok()?;
            Some(Mode::Serve { config: config.into() })
        }
        "forced-command" => {
            let [config, service] = <[String; 2]>::try_from(options(rest, &["--config", "--service"])?).ok()?;
            Some(Mode::ForcedCommand { config: config.into(), service })
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Some(Mode::Serve { config }) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            match proximity_proxy::run_server(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("proximity-proxy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        // No logger: stderr is the SSH client's.
        Some(Mode::ForcedCommand { config, service }) => {
            let status = proximity_proxy::run_forced_command(&config, &service);
            ExitCode::from(u8::try_from(status).unwrap_or(255))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Option<Mode> {
        parse(&line.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn command_lines() {
        assert_eq!(parsed("serve --config p.toml"), Some(Mode::Serve { config: "p.toml".into() }));
        assert_eq!(parsed("serve --config=p.toml"), Some(Mode::Serve { config: "p.toml".into() }));
        let forced = Some(Mode::ForcedCommand { config: "p.toml".into(), service: "nc".into() });
        assert_eq!(parsed("forced-command --config p.toml --service nc"), forced);
        assert_eq!(parsed("forced-command --service=nc --config p.toml"), forced);
        for wrong in ["", "serve", "serve --config", "serve --config a --config b", "serve --service x", "shell"] {
            assert_eq!(parsed(wrong), None, "{wrong}");
        }
        assert_eq!(parsed("forced-command --config p.toml"), None);
    }
}
