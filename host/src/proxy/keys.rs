//! The key pair a service's proxy accepts: ED25519 in OpenSSH format, written
//! to files (the private key 0600, never over an existing one unless asked)
//! and, for Swarm deployments, stored as Docker secrets.
//!
//! Secrets are named `NAME_proxy_key` (the private key, for Proximity) and
//! `NAME_proxy_authorized_keys` (the public key line, for the proxy). Both
//! carry labels naming the service and the key's fingerprint, so a later run
//! can tell whether an existing secret holds the same key (Docker never
//! returns a secret's data).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey};
use zeroize::Zeroize;

use super::docker::{Engine, EngineError, SwarmState};

/// The public key's comment: `proximity-proxy:NAME`.
pub const COMMENT_PREFIX: &str = "proximity-proxy:";
/// Labels on the Docker secrets.
pub const SERVICE_LABEL: &str = "proximity.proxy.service";
pub const FINGERPRINT_LABEL: &str = "proximity.proxy.fingerprint";
/// Docker allows 64 characters in a secret's name; the longest suffix is 22.
const MAX_SERVICE_NAME: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "bad service name `{name}`: {why} (letters, digits, `.`, `_` and `-`, starting with a letter or digit, \
         at most {MAX_SERVICE_NAME} characters)"
    )]
    BadServiceName { name: String, why: &'static str },
    #[error("{} already exists: pass --force to replace it with a new key", path.display())]
    Exists { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{} is not a usable proxy key: {why}", path.display())]
    BadKey { path: PathBuf, why: String },
    #[error("cannot encode the key in OpenSSH format: {0}")]
    Encode(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the Docker engine at {engine} is not in Swarm mode (node state: {state}), so it has no secrets: \
         run `docker swarm init` there, or leave out --docker-secret"
    )]
    NotSwarm { engine: String, state: String },
    #[error("the Docker engine at {engine} is a Swarm worker: secrets are created on a manager (--docker-host)")]
    NotManager { engine: String },
}

/// Checks that `name` can be a file name and part of a Docker secret's name.
pub fn validate_service_name(name: &str) -> Result<(), KeyError> {
    let bad = |why| Err(KeyError::BadServiceName { name: name.to_string(), why });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_SERVICE_NAME {
        return bad("it is too long");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("it must start with a letter or digit");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return bad("it holds a character that is not allowed");
    }
    Ok(())
}

/// One service's key pair.
pub struct ServiceKey {
    service: String,
    key: PrivateKey,
}

/// Shows the service and fingerprint, never the private key.
impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKey").field("service", &self.service).field("fingerprint", &self.fingerprint()).finish()
    }
}

impl ServiceKey {
    pub fn generate(service: &str) -> Result<ServiceKey, KeyError> {
        validate_service_name(service)?;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        seed.zeroize();
        key.set_comment(format!("{COMMENT_PREFIX}{service}"));
        Ok(ServiceKey { service: service.to_string(), key })
    }

    /// An existing private key file: unencrypted ED25519 only, as the proxy accepts nothing else.
    pub fn load(path: &Path, service: &str) -> Result<ServiceKey, KeyError> {
        validate_service_name(service)?;
        let text =
            fs::read_to_string(path).map_err(|source| KeyError::Io { action: "read", path: path.into(), source })?;
        let bad = |why: String| KeyError::BadKey { path: path.into(), why };
        let mut key =
            PrivateKey::from_openssh(text.as_bytes()).map_err(|e| bad(format!("not an OpenSSH key ({e})")))?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(bad(format!("it is {}, the proxy accepts only ED25519", key.algorithm())));
        }
        if key.is_encrypted() {
            return Err(bad("it is encrypted with a passphrase; Proximity needs it unencrypted".into()));
        }
        if key.comment().is_empty() {
            key.set_comment(format!("{COMMENT_PREFIX}{service}"));
        }
        Ok(ServiceKey { service: service.to_string(), key })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// `ssh-ed25519 AAAA… proximity-proxy:NAME`: one authorized_keys line.
    pub fn public_line(&self) -> String {
        let mut public = self.key.public_key().clone();
        if public.comment().is_empty() {
            public.set_comment(format!("{COMMENT_PREFIX}{}", self.service));
        }
        public.to_openssh().expect("an ED25519 public key always encodes")
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    pub fn private_openssh(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        self.key.to_openssh(LineEnding::LF).map_err(|e| KeyError::Encode(e.to_string()))
    }
}

/// Where a service's key pair lives: `DIR/NAME` and `DIR/NAME.pub`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFiles {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl KeyFiles {
    pub fn in_dir(dir: &Path, service: &str) -> KeyFiles {
        KeyFiles { private: dir.join(service), public: dir.join(format!("{service}.pub")) }
    }

    /// Writes both files. The private key appears whole or not at all, mode
    /// 0600; without `replace` an existing one is left alone ([`KeyError::Exists`]).
    pub fn write(&self, key: &ServiceKey, replace: bool) -> Result<(), KeyError> {
        let dir = self.private.parent().unwrap_or(Path::new("."));
        if !dir.as_os_str().is_empty() && !dir.exists() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| KeyError::Io {
                action: "create the directory",
                path: dir.into(),
                source,
            })?;
        }
        if !replace && self.private.exists() {
            return Err(KeyError::Exists { path: self.private.clone() });
        }
        let private = key.private_openssh()?;
        install_file(&self.private, private.as_bytes(), 0o600, replace)?;
        // The public half follows the private one, whatever was there before.
        install_file(&self.public, format!("{}\n", key.public_line()).as_bytes(), 0o644, true)
    }
}

/// Writes `contents` to a new temporary file beside `path`, then moves it
/// into place: by rename when replacing, else by hard link, which fails if
/// `path` appeared meanwhile. Readers never see a half-written key.
fn install_file(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<(), KeyError> {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
        move |source| KeyError::Io { action, path: path.to_path_buf(), source }
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{:016x}.tmp", rand::rng().next_u64()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .map_err(io("create", &temporary))?;
        // The umask may have narrowed the mode; it must be exactly `mode`.
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io("set the mode of", &temporary))?;
        file.write_all(contents).map_err(io("write", &temporary))?;
        file.sync_all().map_err(io("write", &temporary))?;
        if replace {
            fs::rename(&temporary, path).map_err(io("write", path))
        } else {
            fs::hard_link(&temporary, path).map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists { path: path.to_path_buf() },
                _ => KeyError::Io { action: "write", path: path.to_path_buf(), source },
            })
        }
    })();
    let _ = fs::remove_file(&temporary);
    written
}

/// The Docker secrets of `service`: (private key, authorized_keys line).
pub fn secret_names(service: &str) -> (String, String) {
    (format!("{service}_proxy_key"), format!("{service}_proxy_authorized_keys"))
}

/// What happened to one Docker secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretOutcome {
    Created {
        name: String,
        id: String,
    },
    /// Left as it was. `same_key` compares its fingerprint label with the
    /// key at hand (`None`: the secret has no such label).
    Existing {
        name: String,
        id: String,
        same_key: Option<bool>,
    },
}

/// Checks that `engine` is a Swarm manager, which alone keeps secrets.
pub async fn require_swarm_manager(engine: &Engine) -> Result<(), KeyError> {
    match engine.swarm_state().await? {
        SwarmState::Manager => Ok(()),
        SwarmState::Worker => Err(KeyError::NotManager { engine: engine.address().to_string() }),
        SwarmState::Inactive(state) => Err(KeyError::NotSwarm { engine: engine.address().to_string(), state }),
    }
}

/// Creates the two secrets of `key`'s service, skipping those that exist.
pub async fn create_docker_secrets(engine: &Engine, key: &ServiceKey) -> Result<Vec<SecretOutcome>, KeyError> {
    require_swarm_manager(engine).await?;
    let (private_name, public_name) = secret_names(key.service());
    let labels = BTreeMap::from([
        (SERVICE_LABEL.to_string(), key.service().to_string()),
        (FINGERPRINT_LABEL.to_string(), key.fingerprint()),
    ]);
    let private = key.private_openssh()?;
    let public = format!("{}\n", key.public_line());
    let mut outcomes = Vec::new();
    for (name, data) in [(private_name, private.as_bytes()), (public_name, public.as_bytes())] {
        let outcome = match engine.secret(&name).await? {
            Some(existing) => SecretOutcome::Existing {
                same_key: existing.spec.labels.get(FINGERPRINT_LABEL).map(|f| *f == key.fingerprint()),
                name,
                id: existing.id,
            },
            None => {
                let id = engine.create_secret(&name, data, &labels).await?;
                SecretOutcome::Created { name, id }
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// What `proximity keys generate` is asked to do.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub service: String,
    /// Where `NAME` and `NAME.pub` go.
    pub dir: PathBuf,
    /// Replace an existing key pair with a new one.
    pub force: bool,
    /// Also store the pair as Swarm secrets through this engine. With an
    /// existing key and no `force`, that key is stored rather than refused.
    pub docker_host: Option<String>,
}

/// What it did.
#[derive(Debug)]
pub struct Generated {
    pub key: ServiceKey,
    pub files: KeyFiles,
    /// The key was already in `files` and was used as it is.
    pub reused: bool,
    pub secrets: Vec<SecretOutcome>,
}

/// Makes (or, for secrets, reuses) the key pair, writes it, and creates the
/// secrets. The engine is checked first, so a refusal writes nothing.
pub async fn generate(request: &GenerateRequest) -> Result<Generated, KeyError> {
    validate_service_name(&request.service)?;
    let engine = match &request.docker_host {
        Some(address) => {
            let engine = Engine::connect(address)?;
            require_swarm_manager(&engine).await?;
            Some(engine)
        }
        None => None,
    };
    let files = KeyFiles::in_dir(&request.dir, &request.service);
    let reused = engine.is_some() && !request.force && files.private.exists();
    let key = if reused {
        ServiceKey::load(&files.private, &request.service)?
    } else {
        let key = ServiceKey::generate(&request.service)?;
        files.write(&key, request.force)?;
        key
    };
    let secrets = match &engine {
        Some(engine) => create_docker_secrets(engine, &key).await?,
        None => Vec::new(),
    };
    Ok(Generated { key, files, reused, secrets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_checked() {
        for good in ["nextcloud", "photo.prism", "nc_2", "a-b", &"x".repeat(40)] {
            validate_service_name(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("-x", "start with"),
            (".x", "start with"),
            ("a/b", "not allowed"),
            ("a b", "not allowed"),
            ("né", "not allowed"),
            (&"x".repeat(41), "too long"),
        ] {
            let error = validate_service_name(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_generated_key_is_ed25519_with_the_service_comment() {
        let key = ServiceKey::generate("nextcloud").unwrap();
        let line = key.public_line();
        assert!(line.starts_with("ssh-ed25519 AAAA") && line.ends_with(" proximity-proxy:nextcloud"), "{line}");
        let private = key.private_openssh().unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let parsed = PrivateKey::from_openssh(private.as_bytes()).unwrap();
        assert_eq!(parsed.public_key().to_openssh().unwrap(), line);
        assert!(key.fingerprint().starts_with("SHA256:"));
        assert_ne!(ServiceKey::generate("nextcloud").unwrap().fingerprint(), key.fingerprint(), "keys are random");
    }

    #[test]
    fn files_are_written_once_unless_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::in_dir(&dir.path().join("keys"), "nextcloud");
        let first = ServiceKey::generate("nextcloud").unwrap();
        files.write(&first, false).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.private), 0o600);
        assert_eq!(mode(&files.public), 0o644);
        assert_eq!(mode(files.private.parent().unwrap()), 0o700);
        assert_eq!(fs::read_to_string(&files.public).unwrap(), format!("{}\n", first.public_line()));

        let second = ServiceKey::generate("nextcloud").unwrap();
        let error = files.write(&second, false).unwrap_err();
        assert!(matches!(error, KeyError::Exists { .. }) && error.to_string().contains("--force"), "{error}");
        let loaded = ServiceKey::load(&files.private, "nextcloud").unwrap();
        assert_eq!(loaded.fingerprint(), first.fingerprint(), "the refused write changed nothing");

        files.write(&second, true).unwrap();
        assert_eq!(ServiceKey::load(&files.private, "nextcloud").unwrap().fingerprint(), second.fingerprint());
        assert_eq!(mode(&files.private), 0o600);
        let leftovers: Vec<_> = fs::read_dir(files.private.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn only_plain_ed25519_keys_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, "not a key").unwrap();
        let error = ServiceKey::load(&path, "nc").unwrap_err().to_string();
        assert!(error.contains("not an OpenSSH key"), "{error}");
        let missing = ServiceKey::load(&dir.path().join("none"), "nc").unwrap_err().to_string();
        assert!(missing.contains("cannot read"), "{missing}");
    }

    #[test]
    fn secret_names_follow_the_service() {
        assert_eq!(secret_names("nc"), ("nc_proxy_key".to_string(), "nc_proxy_authorized_keys".to_string()));
    }
}
