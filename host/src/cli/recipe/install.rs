//! `proximity recipe install | publish`: bundles into a catalog, local or remote.
//!
//! `install` writes into the data directory of a server on this host (what
//! `proximity serve` then serves); `publish` sends the bundle, or a URL to
//! fetch it from, to a running server. Both refuse what the server would
//! refuse, and ask before a new version gets more grants than the installed one.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use super::bundle::bundle_digest;
use crate::api::InstalledRecipe;
use crate::bundle::fetch::fetch_bundle;
use crate::bundle::{self, InstallError, InstallOptions, ReadLimits, RecipeInstaller, TrustPolicy};
use crate::cli::apps::ServerArgs;
use crate::cli::client::{BundleSource, ClientError, InstallQuery};
use crate::runtime::{Runtime, RuntimeConfig};

/// The operator's confirmations, shared by both commands.
#[derive(Args)]
pub struct Confirmations {
    /// Accept more grants than the installed version has. With `=DIGEST`, only
    /// for the bundle whose digest is DIGEST. Without this flag, a terminal asks.
    #[arg(long, value_name = "DIGEST", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    accept_grants: Option<String>,
    /// Accept the bundle although it is unsigned or no trusted key signed it. With
    /// `=DIGEST`, only if the bundle's digest is DIGEST.
    #[arg(long, value_name = "DIGEST", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    allow_untrusted: Option<String>,
}

#[derive(Args)]
pub struct InstallArgs {
    /// A bundle file, or an http(s):// URL to fetch it from.
    bundle: String,
    /// The server's data directory: the bundle goes into DATA_DIR/recipes.
    #[arg(long, env = "PROXIMITY_DATA_DIR", default_value = "/var/lib/proximity")]
    data_dir: PathBuf,
    /// Trusted publisher keys [default: DATA_DIR/trusted-keys].
    #[arg(long)]
    trusted_keys: Option<PathBuf>,
    #[command(flatten)]
    confirm: Confirmations,
}

#[derive(Args)]
pub struct PublishArgs {
    /// A bundle file to upload, or an http(s):// URL for the server to fetch.
    bundle: String,
    #[command(flatten)]
    confirm: Confirmations,
    #[command(flatten)]
    server: ServerArgs,
}

pub async fn install(args: InstallArgs) -> Result<()> {
    let bytes = read_bundle(&args.bundle).await?;
    let digest = bundle_digest(&bytes)?;
    let keys = args.trusted_keys.clone().unwrap_or_else(|| args.data_dir.join("trusted-keys"));
    let mut trust = if keys.is_dir() { TrustPolicy::from_dir(&keys)? } else { TrustPolicy::trust_nobody() };
    if let Some(allowed) = confirmed(&args.confirm.allow_untrusted, &digest) {
        trust = trust.allow_digest(&allowed);
    }
    let installer = RecipeInstaller::new(&args.data_dir, trust);
    let mut accept = confirmed(&args.confirm.accept_grants, &digest);
    let prepared = loop {
        let options = InstallOptions { accept_grants: accept.as_deref() };
        match installer.prepare(bytes.clone(), None, &options) {
            Ok(prepared) => break prepared,
            Err(InstallError::GrantsGrew { added, digest, id, version, installed }) if accept.is_none() => {
                if !ask_for_grants(&id, &installed, &version, &added)? {
                    bail!("not installed: the new grants were not accepted (or pass --accept-grants={digest})");
                }
                accept = Some(digest);
            }
            Err(err) => return Err(refused(&args.bundle, err, &keys)),
        }
    };
    // The server's own code cache: what is checked here is compiled once.
    let cache_dir = Some(args.data_dir.join("native"));
    let runtime = Runtime::new(RuntimeConfig { pooling: false, cache_dir, ..RuntimeConfig::default() })?;
    bundle::install::check_component(&runtime, &prepared).await?;
    let options = InstallOptions { accept_grants: accept.as_deref() };
    let installed = installer.commit(prepared, &options).map_err(|err| refused(&args.bundle, err, &keys))?;
    report(&installed, &installer.catalog_root().join(&installed.id).display().to_string());
    Ok(())
}

pub async fn publish(args: PublishArgs) -> Result<()> {
    let client = args.server.client()?;
    let (source, digest) = if is_url(&args.bundle) {
        (BundleSource::Url(args.bundle.clone()), None)
    } else {
        let bytes = bundle::read_bundle_file(args.bundle.as_ref(), &ReadLimits::default())?;
        let digest = bundle_digest(&bytes)?;
        (BundleSource::Bytes(bytes), Some(digest))
    };
    let for_url = |flag: &Option<String>, name: &str| -> Result<Option<String>> {
        match (flag.as_deref(), &digest) {
            (None, _) => Ok(None),
            (Some(""), Some(digest)) => Ok(Some(digest.clone())),
            (Some(""), None) => bail!("--{name} needs =DIGEST with a URL: the bundle is not here to compute it"),
            (Some(given), _) => Ok(Some(given.to_owned())),
        }
    };
    let mut query = InstallQuery {
        accept_grants: for_url(&args.confirm.accept_grants, "accept-grants")?,
        allow_untrusted: for_url(&args.confirm.allow_untrusted, "allow-untrusted")?,
    };
    let retry = match &source {
        BundleSource::Bytes(bytes) => BundleSource::Bytes(bytes.clone()),
        BundleSource::Url(url) => BundleSource::Url(url.clone()),
    };
    let mut result = client.install_recipe(source, &query).await;
    if let Err(err) = &result {
        if let Some(ClientError::Api { code, details, digest: named, .. }) = err.downcast_ref::<ClientError>() {
            // The bundle's own digest when the file is here; for a URL, the
            // one the server computed from what it fetched.
            let reviewed = digest.clone().or_else(|| named.clone());
            if let (true, Some(reviewed)) = (code == "grants-grew" && query.accept_grants.is_none(), reviewed) {
                let added: Vec<String> = details.iter().map(|d| d.problem.clone()).collect();
                if ask_for_grants(&args.bundle, "the installed version", "this bundle", &added)? {
                    query.accept_grants = Some(reviewed);
                    result = client.install_recipe(retry, &query).await;
                }
            }
        }
    }
    let installed = result?;
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(&installed)?);
        return Ok(());
    }
    report(&installed, client.base());
    Ok(())
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

async fn read_bundle(source: &str) -> Result<Vec<u8>> {
    let limit = ReadLimits::default().max_bundle_bytes;
    if is_url(source) {
        eprintln!("fetching {source}");
        return Ok(fetch_bundle(source, limit).await?);
    }
    Ok(bundle::read_bundle_file(source.as_ref(), &ReadLimits::default())?)
}

/// The digest a confirmation flag names: the bundle's own for a bare flag.
fn confirmed(flag: &Option<String>, digest: &str) -> Option<String> {
    flag.as_ref().map(|given| if given.is_empty() { digest.to_owned() } else { given.clone() })
}

fn refused(source: &str, err: InstallError, keys: &std::path::Path) -> anyhow::Error {
    let hint = match &err {
        InstallError::Bundle(
            bundle::BundleError::Unsigned { digest, .. } | bundle::BundleError::Untrusted { digest, .. },
        ) => {
            format!(
                "\nhint: put the publisher's public key in {}, or accept this very bundle with --allow-untrusted={digest}",
                keys.display()
            )
        }
        _ => String::new(),
    };
    anyhow::anyhow!("{source} is refused: {err}{hint}")
}

/// Shows what a new version may do beyond the installed one and asks; only
/// on a terminal (elsewhere the answer is no, and the flag says how).
fn ask_for_grants(what: &str, installed: &str, version: &str, added: &[String]) -> Result<bool> {
    let stdin = std::io::stdin();
    let mut stderr = std::io::stderr();
    writeln!(stderr, "{what} {version} asks for more than {installed} was granted:")?;
    for grant in added {
        writeln!(stderr, "  + {grant}")?;
    }
    if !stdin.is_terminal() {
        return Ok(false);
    }
    write!(stderr, "Grant these and install? [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).context("reading the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn report(installed: &InstalledRecipe, place: &str) {
    if installed.unchanged {
        println!("{} {} is already installed from this bundle ({place})", installed.id, installed.version);
        return;
    }
    match &installed.previous_version {
        Some(previous) => println!("{} {} installed in {place}, replacing {previous}", installed.id, installed.version),
        None => println!("{} {} installed in {place}", installed.id, installed.version),
    }
    println!("  digest: {}", installed.digest);
    if installed.signers.is_empty() {
        println!("  signed by: no trusted key (allowed for this digest)");
    } else {
        println!("  signed by: {}", installed.signers.join(", "));
    }
    for grant in &installed.grants {
        println!("  - {grant}");
    }
    for added in &installed.added_grants {
        println!("  + granted now: {added}");
    }
}
