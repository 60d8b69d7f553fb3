//! Detached signatures: `signatures/KEYID.sig`, one per key.
//!
//! An entry is one line `ed25519 PUBLIC SIGNATURE` (both base64): carrying the
//! public key lets a reader check every signature, trusted or not, and name the
//! signer. What is signed is a fixed context string followed by the 32-byte
//! sha256 of `index.json`, so that a signature made for a bundle means nothing
//! anywhere else.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use super::keys::{key_id, SigningKeyFile};
use super::open::{assemble, open};
use super::{BundleError, ReadLimits, SIGNATURES_DIR};

/// Prefix of every signed message (format version 1).
const CONTEXT: &[u8] = b"proximity-bundle-v1\0";

/// One signature found in, or added to, a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSignature {
    pub key: VerifyingKey,
    pub signature: Signature,
}

impl BundleSignature {
    pub fn key_id(&self) -> String {
        key_id(&self.key)
    }

    pub fn entry_name(&self) -> String {
        format!("{SIGNATURES_DIR}/{}.sig", self.key_id())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        format!("ed25519 {} {}\n", BASE64.encode(self.key.as_bytes()), BASE64.encode(self.signature.to_bytes()))
            .into_bytes()
    }

    /// Parses entry `name` and checks that it is a valid signature of `digest`.
    pub fn parse_and_check(name: &str, data: &[u8], digest: &[u8; 32]) -> Result<BundleSignature, BundleError> {
        let bad = |reason: &str| BundleError::BadSignature { name: name.to_owned(), reason: reason.to_owned() };
        let text = std::str::from_utf8(data).map_err(|_| bad("not UTF-8 text"))?;
        let fields: Vec<&str> = text.strip_suffix('\n').unwrap_or(text).split(' ').collect();
        let ["ed25519", key, signature] = fields.as_slice() else {
            return Err(bad("expected one line `ed25519 PUBLIC-KEY SIGNATURE`"));
        };
        let key: [u8; 32] = decode(key).ok_or_else(|| bad("the public key is not 32 bytes of base64"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("the public key is not a valid ed25519 key"))?;
        let signature: [u8; 64] = decode(signature).ok_or_else(|| bad("the signature is not 64 bytes of base64"))?;
        let found = BundleSignature { key, signature: Signature::from_bytes(&signature) };
        if found.entry_name() != name {
            return Err(bad(&format!("the entry of key {} must be named `{}`", found.key_id(), found.entry_name())));
        }
        if found.to_bytes() != data {
            return Err(bad("not in canonical form"));
        }
        found
            .key
            .verify_strict(&signed_message(digest), &found.signature)
            .map_err(|_| bad("it does not match this bundle's index (tampered bundle or signature)"))?;
        Ok(found)
    }
}

/// What a signature covers: the context string, then the index digest.
pub fn signed_message(digest: &[u8; 32]) -> Vec<u8> {
    [CONTEXT, digest.as_slice()].concat()
}

/// The bundle with `key`'s signature added, or replaced if `key` had signed it
/// already. The bundle is checked first (digests, existing signatures), not its
/// trust: a publisher may co-sign what others signed.
pub fn sign(bundle: &[u8], key: &SigningKeyFile) -> Result<Vec<u8>, BundleError> {
    let mut opened = open(bundle, &ReadLimits::default())?;
    let signature = BundleSignature {
        key: *key.public_key().verifying_key(),
        signature: key.sign(&signed_message(&opened.digest)),
    };
    opened.signatures.retain(|existing| existing.key != signature.key);
    opened.signatures.push(signature);
    assemble(&opened.index_bytes, &opened.entries, &opened.signatures)
}

fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    BASE64.decode(text).ok()?.try_into().ok()
}
