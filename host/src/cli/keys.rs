//! `proximity keys`: key pairs for the proxy-exec SSH proxies, and for signing recipe bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use crate::bundle::SigningKeyFile;
use crate::proxy::keys::{self, GenerateRequest, SecretOutcome};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a service's ED25519 key pair (OpenSSH format) and print its public key line,
    /// or with --signing a key pair for signing recipe bundles.
    Generate(GenerateArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["service", "signing"])))]
pub struct GenerateArgs {
    /// The service the proxy serves (e.g. nextcloud): names the files and the secrets.
    #[arg(long)]
    service: Option<String>,
    /// A bundle signing key named NAME: NAME.key (secret, 0600) and NAME.pub, the line
    /// operators put in their trusted-keys directory.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["docker_secret"])]
    signing: Option<String>,
    /// Where to write the pair [default: ./keys for a service; for a signing key
    /// $XDG_CONFIG_HOME/proximity/keys or ~/.config/proximity/keys].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Replace an existing key pair with a new one.
    #[arg(long)]
    force: bool,
    /// Also store the pair as Swarm secrets NAME_proxy_key and NAME_proxy_authorized_keys
    /// (existing ones are kept). With an existing key and no --force, that key is stored.
    #[arg(long)]
    docker_secret: bool,
    /// The Docker engine for --docker-secret: unix:///path/docker.sock or tcp://host:port.
    #[arg(long, env = "DOCKER_HOST", default_value = "unix:///var/run/docker.sock")]
    docker_host: String,
}

pub async fn run(command: KeysCommand) -> Result<ExitCode> {
    match command {
        KeysCommand::Generate(args) => generate(args).await,
    }
}

async fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let Some(service) = args.service else {
        let name = args.signing.expect("clap requires --service or --signing");
        return generate_signing(&name, args.dir, args.force);
    };
    let request = GenerateRequest {
        service,
        dir: args.dir.unwrap_or_else(|| PathBuf::from("keys")),
        force: args.force,
        docker_host: args.docker_secret.then_some(args.docker_host),
    };
    let generated = keys::generate(&request).await?;
    let files = &generated.files;
    if generated.reused {
        eprintln!("using the existing key {} (--force makes a new one)", files.private.display());
    } else {
        eprintln!("wrote {} (private, mode 0600) and {}", files.private.display(), files.public.display());
    }
    eprintln!("fingerprint {}", generated.key.fingerprint());
    println!("{}", generated.key.public_line());
    for outcome in generated.secrets {
        match outcome {
            SecretOutcome::Created { name, id } => eprintln!("created Docker secret {name} ({id})"),
            SecretOutcome::Existing { name, same_key: Some(true), .. } => {
                eprintln!("Docker secret {name} exists and holds this key: skipped")
            }
            SecretOutcome::Existing { name, same_key, .. } => {
                let holds = match same_key {
                    Some(_) => "holds a different key",
                    None => "was not made by proximity (its key is unknown)",
                };
                eprintln!(
                    "Docker secret {name} exists and {holds}: skipped (secrets cannot be changed; \
                     `docker secret rm {name}` and run again to store this key)"
                )
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn generate_signing(name: &str, dir: Option<PathBuf>, force: bool) -> Result<ExitCode> {
    let dir = match dir {
        Some(dir) => dir,
        None => super::recipe::config_dir()
            .context("no --dir given and neither XDG_CONFIG_HOME nor HOME is set")?
            .join("keys"),
    };
    let key = SigningKeyFile::generate(name)?;
    let (secret, public) = key.write_pair(&dir, force)?;
    println!("signing key: {} (keep it secret)", secret.display());
    println!(
        "public key:  {} (key {}; operators put it in their trusted-keys directory)",
        public.display(),
        key.public_key().id()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    #[test]
    fn the_generate_command_parses() {
        let cli = Cli::try_parse_from(["proximity", "keys", "generate", "--service", "nc", "--docker-secret"]).unwrap();
        let Command::Keys(KeysCommand::Generate(args)) = cli.command else { panic!("not keys generate") };
        assert_eq!((args.service.as_deref(), args.dir), (Some("nc"), None));
        assert!(args.docker_secret && !args.force);
        assert!(Cli::try_parse_from(["proximity", "keys", "generate"]).is_err(), "--service or --signing is required");
        let cli = Cli::try_parse_from(["proximity", "keys", "generate", "--signing", "me", "--dir", "k"]).unwrap();
        let Command::Keys(KeysCommand::Generate(args)) = cli.command else { panic!("not keys generate") };
        assert_eq!(args.signing.as_deref(), Some("me"));
        for both in [&["--service", "nc", "--signing", "me"][..], &["--signing", "me", "--docker-secret"]] {
            let argv = ["proximity", "keys", "generate"].iter().chain(both);
            assert!(Cli::try_parse_from(argv).is_err(), "{both:?}");
        }
    }
}
