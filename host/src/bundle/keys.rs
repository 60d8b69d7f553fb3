//! Signing keys and trusted public keys, as small text files.
//!
//! - Public key (`NAME.pub`, the trust format): one line `ed25519 BASE64 NAME`,
//!   BASE64 being the 32-byte public key. Lines starting with `#` and blank
//!   lines are ignored; exactly one key per file.
//! - Signing key (`NAME.key`, mode 0600): one line
//!   `proximity-signing-key ed25519 BASE64 NAME`, BASE64 being the 32-byte seed.
//!
//! A key's id is the first 8 bytes of the sha256 of its public key, in hex: it
//! names the key's signature entry in a bundle (`signatures/KEYID.sig`).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::BundleError;

const PUBLIC_TAG: &str = "ed25519";
const SIGNING_TAG: &str = "proximity-signing-key";

/// A publisher's public key and the name it goes by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    name: String,
}

impl PublicKey {
    pub fn new(key: VerifyingKey, name: &str) -> Result<PublicKey, String> {
        check_key_name(name)?;
        Ok(PublicKey { key, name: name.to_owned() })
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> String {
        key_id(&self.key)
    }

    /// The file's text: `ed25519 BASE64 NAME` and a newline.
    pub fn to_line(&self) -> String {
        format!("{PUBLIC_TAG} {} {}\n", BASE64.encode(self.key.as_bytes()), self.name)
    }

    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let fields = single_line(text)?;
        let [tag, key, name] = fields.as_slice() else {
            return Err("expected one line `ed25519 BASE64 NAME`".into());
        };
        if *tag != PUBLIC_TAG {
            return Err(format!("unknown key type `{tag}` (expected `{PUBLIC_TAG}`)"));
        }
        let bytes = decode_32(key, "public key")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "the public key is not a valid ed25519 point")?;
        PublicKey::new(key, name)
    }

    pub fn load(path: &Path) -> Result<PublicKey, BundleError> {
        let text = fs::read_to_string(path).map_err(BundleError::io(path))?;
        PublicKey::parse(&text).map_err(|reason| BundleError::BadKeyFile { path: path.to_owned(), reason })
    }
}

/// A publisher's signing key. The secret is wiped from memory when dropped.
pub struct SigningKeyFile {
    key: SigningKey,
    name: String,
}

/// Shows the name and key id, never the secret.
impl std::fmt::Debug for SigningKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyFile").field("name", &self.name).field("key_id", &self.public_key().id()).finish()
    }
}

impl SigningKeyFile {
    /// A new key from the operating system's random source.
    pub fn generate(name: &str) -> Result<SigningKeyFile, BundleError> {
        check_key_name(name).map_err(|reason| BundleError::BadKeyFile { path: name.into(), reason })?;
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.try_fill_bytes(seed.as_mut()).map_err(|e| BundleError::Io {
            path: "the system random source".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(SigningKeyFile { key: SigningKey::from_bytes(&seed), name: name.to_owned() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey { key: self.key.verifying_key(), name: self.name.clone() }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> ed25519_dalek::Signature {
        self.key.sign(message)
    }

    /// Reads a signing key, refusing one that others can read (as ssh does).
    pub fn load(path: &Path) -> Result<SigningKeyFile, BundleError> {
        let bad = |reason: String| BundleError::BadKeyFile { path: path.to_owned(), reason };
        let mode = fs::metadata(path).map_err(BundleError::io(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!("permissions {:04o} are too open for a signing key (chmod 600)", mode & 0o7777)));
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(BundleError::io(path))?);
        let fields = single_line(&text).map_err(bad)?;
        let [tag, kind, seed, name] = fields.as_slice() else {
            return Err(bad(format!("expected one line `{SIGNING_TAG} {PUBLIC_TAG} BASE64 NAME`")));
        };
        if *tag != SIGNING_TAG || *kind != PUBLIC_TAG {
            return Err(bad(format!("not a signing key (expected `{SIGNING_TAG} {PUBLIC_TAG} …`)")));
        }
        let seed = Zeroizing::new(decode_32(seed, "signing key").map_err(bad)?);
        check_key_name(name).map_err(bad)?;
        Ok(SigningKeyFile { key: SigningKey::from_bytes(&seed), name: name.to_string() })
    }

    /// Writes `DIR/NAME.key` (0600) and `DIR/NAME.pub`, never replacing either.
    pub fn write_pair(&self, dir: &Path) -> Result<(PathBuf, PathBuf), BundleError> {
        fs::create_dir_all(dir).map_err(BundleError::io(dir))?;
        let secret_path = dir.join(format!("{}.key", self.name));
        let public_path = dir.join(format!("{}.pub", self.name));
        for path in [&secret_path, &public_path] {
            if path.symlink_metadata().is_ok() {
                return Err(BundleError::AlreadyExists { path: path.clone() });
            }
        }
        let secret = Zeroizing::new(format!(
            "{SIGNING_TAG} {PUBLIC_TAG} {} {}\n",
            BASE64.encode(self.key.as_bytes()),
            self.name
        ));
        write_new(&secret_path, secret.as_bytes(), 0o600)?;
        write_new(&public_path, self.public_key().to_line().as_bytes(), 0o644)?;
        Ok((secret_path, public_path))
    }
}

/// The first 8 bytes of sha256(public key), hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Key names end up in file names and in output: letters, digits, `.`, `_`,
/// `-` and `@`, at most 64, not starting with `.`.
pub fn check_key_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > 64 || name.starts_with('.') || !name.chars().all(ok_char) {
        return Err(format!(
            "`{name}` is not a key name (1-64 letters, digits, `.`, `_`, `-`, `@`; not starting with `.`)"
        ));
    }
    Ok(())
}

/// The fields of the one meaningful line of a key file.
fn single_line(text: &str) -> Result<Vec<&str>, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().ok_or("the file holds no key")?;
    if lines.next().is_some() {
        return Err("the file holds more than one line; one key per file".into());
    }
    Ok(line.split_ascii_whitespace().collect())
}

fn decode_32(text: &str, what: &str) -> Result<[u8; 32], String> {
    let bytes = Zeroizing::new(BASE64.decode(text).map_err(|e| format!("the {what} is not base64: {e}"))?);
    bytes.as_slice().try_into().map_err(|_| format!("the {what} is {} bytes, not 32", bytes.len()))
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), BundleError> {
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BundleError::AlreadyExists { path: path.to_owned() },
            _ => BundleError::Io { path: path.to_owned(), source: e },
        })?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(BundleError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_loads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKeyFile::generate("alice").unwrap();
        let (secret, public) = key.write_pair(dir.path()).unwrap();
        assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = SigningKeyFile::load(&secret).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(PublicKey::load(&public).unwrap(), key.public_key());
        assert_eq!(key.public_key().id().len(), 16);

        let again = SigningKeyFile::generate("alice").unwrap();
        assert!(matches!(again.write_pair(dir.path()), Err(BundleError::AlreadyExists { .. })));
        assert_eq!(SigningKeyFile::load(&secret).unwrap().public_key(), key.public_key());

        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(SigningKeyFile::load(&secret).unwrap_err().to_string().contains("too open"));
    }

    #[test]
    fn public_key_files_are_parsed_strictly() {
        let line = SigningKeyFile::generate("bob").unwrap().public_key().to_line();
        assert_eq!(PublicKey::parse(&format!("# bob's key\n\n{line}")).unwrap().name(), "bob");
        for bad in ["", "ed25519 AAAA bob", "rsa AAAA bob", &format!("{line}{line}"), &line.replace(" bob", " ../x")] {
            assert!(PublicKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(check_key_name("a/b").is_err() && check_key_name(".hidden").is_err());
    }
}
