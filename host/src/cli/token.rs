//! `proximity token`: API tokens, kept (hashed) in the server's store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::serve::{open_store, ServeArgs, ServeConfig};

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// The server's configuration file (for its data directory).
    #[arg(long, env = "PROXIMITY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The server's data directory [default: from the configuration, else /var/lib/proximity].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once and only its hash is kept.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their values).
    #[command(alias = "list")]
    Ls,
    /// Revoke a token by name: it stops working at once.
    Revoke { name: String },
}

pub fn run(args: TokenArgs) -> Result<ExitCode> {
    let config =
        ServeConfig::load(&ServeArgs { config: args.config, data_dir: args.data_dir, ..ServeArgs::default() })?;
    let store = open_store(&config)?;
    match args.command {
        TokenCommand::Create { name } => {
            let (info, plaintext) = store.create_token(&name)?;
            eprintln!("created token `{}`; it is shown this once, keep it somewhere safe:", info.name);
            println!("{plaintext}");
        }
        TokenCommand::Ls => {
            println!("{:<24} {:<26} {:<26} REVOKED", "NAME", "CREATED", "LAST USED");
            for token in store.tokens()? {
                println!(
                    "{:<24} {:<26} {:<26} {}",
                    token.name,
                    token.created_at,
                    token.last_used_at.as_deref().unwrap_or("-"),
                    token.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
        TokenCommand::Revoke { name } => {
            if !store.revoke_token(&name)? {
                eprintln!("error: no live token named `{name}`");
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("revoked token `{name}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
