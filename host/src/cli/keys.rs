//! `proximity keys`: key pairs for the proxy-exec SSH proxies.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::proxy::keys::{self, GenerateRequest, SecretOutcome};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a service's ED25519 key pair (OpenSSH format) and print its public key line.
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The service the proxy serves (e.g. nextcloud): names the files and the secrets.
    #[arg(long)]
    service: String,
    /// Where to write NAME (the private key, mode 0600) and NAME.pub.
    #[arg(long, default_value = "keys")]
    dir: PathBuf,
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
    // Issue 7 adds `--signing` here (a key for signed recipes), beside these.
}

pub async fn run(command: KeysCommand) -> Result<ExitCode> {
    match command {
        KeysCommand::Generate(args) => generate(args).await,
    }
}

async fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let request = GenerateRequest {
        service: args.service,
        dir: args.dir,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    #[test]
    fn the_generate_command_parses() {
        let cli = Cli::try_parse_from(["proximity", "keys", "generate", "--service", "nc", "--docker-secret"]).unwrap();
        let Command::Keys(KeysCommand::Generate(args)) = cli.command else { panic!("not keys generate") };
        assert_eq!((args.service.as_str(), args.dir.as_path()), ("nc", std::path::Path::new("keys")));
        assert!(args.docker_secret && !args.force);
        assert!(Cli::try_parse_from(["proximity", "keys", "generate"]).is_err(), "--service is required");
    }
}
