//! Encryption of app secrets at rest, and the key file that holds its key.
//!
//! Each value is sealed with XChaCha20-Poly1305 under a fresh random 24-byte
//! nonce (large enough that random nonces never repeat in practice). The
//! associated data binds a ciphertext to its app and name, so rows copied to
//! another app or name in the database fail to decrypt instead of leaking.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::StoreError;

/// Length of the key, and so of the key file.
pub const KEY_LEN: usize = 32;
/// Length of an XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;

/// The cipher for secret values. Holds the key; deliberately shows nothing of
/// it when debug-printed.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox { .. }")
    }
}

/// A sealed value: what the database stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// Decryption failed: wrong key, or the ciphertext, nonce or its app/name was
/// changed. Carries nothing about the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenError;

impl SecretBox {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        SecretBox { cipher: XChaCha20Poly1305::new(Key::from_slice(key)) }
    }

    pub fn seal(&self, app_id: &str, name: &str, plaintext: &[u8]) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(app_id, name);
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            // Encryption fails only for inputs beyond 256 GiB.
            .expect("XChaCha20-Poly1305 encryption of a secret value");
        Sealed { nonce, ciphertext }
    }

    pub fn open(&self, app_id: &str, name: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, OpenError> {
        if nonce.len() != NONCE_LEN {
            return Err(OpenError);
        }
        let aad = associated_data(app_id, name);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad }).map_err(|_| OpenError)
    }
}

/// `app_id \0 name`: callers reject NUL in either, so this is unambiguous.
fn associated_data(app_id: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(app_id.len() + 1 + name.len());
    aad.extend_from_slice(app_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Reads the key file, or creates it with 32 random bytes and mode 0600.
///
/// Creation writes a private temporary file and hard-links it into place: the
/// link fails if the key file exists, so two servers starting at once agree on
/// one key, and neither can read a half-written file.
pub(super) fn load_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], StoreError> {
    let key_error = |message: String| StoreError::Key { path: path.to_path_buf(), message };
    match read_key(path) {
        Ok(key) => return Ok(key),
        Err(KeyRead::Missing) => {}
        Err(KeyRead::Bad(message)) => return Err(key_error(message)),
    }
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| key_error(format!("cannot create its directory: {e}")))?;
    }
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{file_name}.tmp.{}.{:016x}", std::process::id(), rand::random::<u64>()));
    let written = write_new_private(&temp, &key).and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    match written {
        Ok(()) => Ok(key),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path).map_err(|read| match read {
            KeyRead::Missing => key_error("vanished while being created".to_string()),
            KeyRead::Bad(message) => key_error(message),
        }),
        Err(e) => Err(key_error(format!("cannot create it: {e}"))),
    }
}

enum KeyRead {
    Missing,
    Bad(String),
}

fn read_key(path: &Path) -> Result<[u8; KEY_LEN], KeyRead> {
    let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeyRead::Missing),
        Err(e) => return Err(KeyRead::Bad(format!("cannot open it: {e}"))),
    };
    let meta = file.metadata().map_err(|e| KeyRead::Bad(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(KeyRead::Bad("not a regular file".to_string()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyRead::Bad(format!(
            "mode {mode:04o} gives group or others access; it must be 0600 (chmod 600 the file)"
        )));
    }
    if meta.size() != KEY_LEN as u64 {
        return Err(KeyRead::Bad(format!("must be exactly {KEY_LEN} bytes, found {}", meta.size())));
    }
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key).map_err(|e| KeyRead::Bad(format!("cannot read it: {e}")))?;
    Ok(key)
}

fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    // The umask cannot widen 0600, but be explicit in case the file system ignores `mode`.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> [u8; KEY_LEN] {
        [byte; KEY_LEN]
    }

    #[test]
    fn seal_open_round_trip() {
        let secret_box = SecretBox::new(&key(7));
        let sealed = secret_box.seal("app", "password", b"hunter2");
        assert_ne!(sealed.ciphertext, b"hunter2");
        assert_eq!(secret_box.open("app", "password", &sealed.nonce, &sealed.ciphertext).unwrap(), b"hunter2");
    }

    #[test]
    fn nonces_differ_per_value() {
        let secret_box = SecretBox::new(&key(7));
        let a = secret_box.seal("app", "password", b"same");
        let b = secret_box.seal("app", "password", b"same");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn ciphertext_bound_to_app_and_name() {
        let secret_box = SecretBox::new(&key(7));
        let sealed = secret_box.seal("app", "password", b"hunter2");
        assert_eq!(secret_box.open("other", "password", &sealed.nonce, &sealed.ciphertext), Err(OpenError));
        assert_eq!(secret_box.open("app", "token", &sealed.nonce, &sealed.ciphertext), Err(OpenError));
        assert_eq!(secret_box.open("app\0pass", "word", &sealed.nonce, &sealed.ciphertext), Err(OpenError));
    }

    #[test]
    fn wrong_key_or_tampering_fails() {
        let sealed = SecretBox::new(&key(7)).seal("app", "password", b"hunter2");
        assert_eq!(SecretBox::new(&key(8)).open("app", "password", &sealed.nonce, &sealed.ciphertext), Err(OpenError));
        let secret_box = SecretBox::new(&key(7));
        let mut tampered = sealed.ciphertext.clone();
        tampered[0] ^= 1;
        assert_eq!(secret_box.open("app", "password", &sealed.nonce, &tampered), Err(OpenError));
        assert_eq!(secret_box.open("app", "password", &sealed.nonce[..12], &sealed.ciphertext), Err(OpenError));
    }

    #[test]
    fn debug_hides_the_key() {
        let text = format!("{:?}", SecretBox::new(&key(0xab)));
        assert_eq!(text, "SecretBox { .. }");
    }

    #[test]
    fn key_file_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/store.key");
        let first = load_or_create_key(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert_eq!(load_or_create_key(&path).unwrap(), first);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn key_file_readable_by_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        fs::write(&path, key(1)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&path).unwrap_err();
        assert!(matches!(err, StoreError::Key { .. }), "{err}");
        assert!(err.to_string().contains("0644"), "{err}");
    }

    #[test]
    fn key_file_of_wrong_length_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        write_new_private(&path, &[1u8; 31]).unwrap();
        let err = load_or_create_key(&path).unwrap_err();
        assert!(err.to_string().contains("exactly 32 bytes"), "{err}");
    }
}
