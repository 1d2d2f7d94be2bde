//! Signed envelopes and the set of keys a verifier trusts.
//!
//! A [`Signed<T>`] carries the canonical payload bytes (compact JSON of `T`, as the
//! signer produced them), the signer's [`KeyId`] and an Ed25519 signature over
//! `"promos-license-system/1/" + T::CONTEXT + "\0" + payload`. The context keeps a
//! signature made for one kind of document from being accepted as another.
//!
//! The only way to obtain a [`Verified<T>`] is [`TrustedKeys::verify`]. Verifying
//! checks the bytes that were signed, then decodes them; nothing is re-encoded, so
//! an older verifier accepts documents from a newer signer that added fields.

use crate::key::{KeyId, PublicKey, SigningKeyPair};
use ed25519_dalek::{Signature, Verifier};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

const DOMAIN: &[u8] = b"promos-license-system/1/";

/// A document type that can be signed.
pub trait SignedPayload: Serialize + DeserializeOwned {
    /// Distinguishes the kinds of signed documents from each other.
    const CONTEXT: &'static str;

    /// The signing key id the document names itself, if it names one; it must
    /// match the envelope's.
    fn embedded_key_id(&self) -> Option<KeyId> {
        None
    }
}

fn signed_message(context: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + context.len() + 1 + payload.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(context.as_bytes());
    m.push(0);
    m.extend_from_slice(payload);
    m
}

/// A payload, the id of the key that signed it and the signature. Not yet trusted.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T> {
    payload: Vec<u8>,
    key_id: KeyId,
    signature: Vec<u8>,
    #[serde(skip)]
    _kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            payload: self.payload.clone(),
            key_id: self.key_id,
            signature: self.signature.clone(),
            _kind: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload
            && self.key_id == other.key_id
            && self.signature == other.signature
    }
}
impl<T> Eq for Signed<T> {}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("payload_len", &self.payload.len())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl<T: SignedPayload> Signed<T> {
    /// Signs the canonical encoding of `value`.
    pub fn sign(value: &T, key: &SigningKeyPair) -> Self {
        Self::sign_bytes(Self::canonical_payload(value), key)
    }

    /// The bytes [`Signed::sign`] signs for `value`: whoever knows the value
    /// can rebuild the payload of its envelope (the compact check receipt
    /// leaves out what the asking daemon sent itself).
    pub fn canonical_payload(value: &T) -> Vec<u8> {
        // Serializing plain data structs to JSON cannot fail: no maps with
        // non-string keys, no floats.
        serde_json::to_vec(value).unwrap_or_default()
    }

    fn sign_bytes(payload: Vec<u8>, key: &SigningKeyPair) -> Self {
        let signature = key.sign_raw(&signed_message(T::CONTEXT, &payload)).to_vec();
        Signed {
            payload,
            key_id: key.key_id(),
            signature,
            _kind: PhantomData,
        }
    }
}

impl<T> Signed<T> {
    /// Reassembles an envelope from its parts (the license file format; the
    /// server's store, which keeps a grant's parts apart). Not trusted until
    /// verified, like any envelope.
    pub fn from_parts(payload: Vec<u8>, key_id: KeyId, signature: Vec<u8>) -> Self {
        Signed {
            payload,
            key_id,
            signature,
            _kind: PhantomData,
        }
    }
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// Why a signed document was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("signed by key {0}, which this installation does not trust; update the trusted keys")]
    UnknownKey(KeyId),
    #[error("signed by key {0}, which has been retired; fetch a newly signed document")]
    RetiredKey(KeyId),
    #[error("the signature does not match the document: it was altered or damaged")]
    BadSignature,
    #[error("the document names key {inner} but was signed by key {outer}")]
    KeyIdMismatch { inner: KeyId, outer: KeyId },
    #[error("the signed document could not be read: {0}")]
    Malformed(String),
}

/// A document whose signature was checked against a trusted key.
#[derive(Clone)]
pub struct Verified<T> {
    value: T,
    signed: Signed<T>,
}

impl<T> Verified<T> {
    /// The envelope it was verified from, to store or pass on unchanged.
    pub fn signed(&self) -> &Signed<T> {
        &self.signed
    }
    pub fn key_id(&self) -> KeyId {
        self.signed.key_id
    }
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("key_id", &self.signed.key_id)
            .field("value", &self.value)
            .finish()
    }
}

#[derive(Clone, Debug)]
struct TrustedKey {
    public: PublicKey,
    retired: bool,
}

/// The public keys a verifier trusts, by key id.
///
/// Rotation: the server starts signing with a new key after every verifier has it
/// in this set; documents signed by the old key stay valid until the old key is
/// marked retired, which happens once they have all been replaced.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, TrustedKey>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut set = Self::new();
        for k in keys {
            set.insert(k);
        }
        set
    }

    /// Trusts `key` (again, if it was retired).
    pub fn insert(&mut self, public: PublicKey) {
        self.keys.insert(
            public.key_id(),
            TrustedKey {
                public,
                retired: false,
            },
        );
    }

    /// Keeps the key known but stops accepting its signatures. Returns false if the
    /// key id is unknown.
    pub fn retire(&mut self, id: &KeyId) -> bool {
        match self.keys.get_mut(id) {
            Some(k) => {
                k.retired = true;
                true
            }
            None => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.values().all(|k| k.retired)
    }

    /// The ids of the keys currently accepted.
    pub fn active_ids(&self) -> Vec<KeyId> {
        self.keys
            .iter()
            .filter(|(_, k)| !k.retired)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Checks the signature, then decodes the payload.
    pub fn verify<T: SignedPayload>(&self, signed: &Signed<T>) -> Result<Verified<T>, VerifyError> {
        let trusted = self
            .keys
            .get(&signed.key_id)
            .ok_or(VerifyError::UnknownKey(signed.key_id))?;
        if trusted.retired {
            return Err(VerifyError::RetiredKey(signed.key_id));
        }
        let sig_bytes: [u8; 64] = signed
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| VerifyError::BadSignature)?;
        let signature = Signature::from_bytes(&sig_bytes);
        trusted
            .public
            .verifying_key()
            .verify(&signed_message(T::CONTEXT, &signed.payload), &signature)
            .map_err(|_| VerifyError::BadSignature)?;
        let value: T = serde_json::from_slice(&signed.payload)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if let Some(inner) = value.embedded_key_id() {
            if inner != signed.key_id {
                return Err(VerifyError::KeyIdMismatch {
                    inner,
                    outer: signed.key_id,
                });
            }
        }
        Ok(Verified {
            value,
            signed: signed.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Note {
        text: String,
    }
    impl SignedPayload for Note {
        const CONTEXT: &'static str = "test-note";
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct OtherNote {
        text: String,
    }
    impl SignedPayload for OtherNote {
        const CONTEXT: &'static str = "other-note";
    }

    fn note() -> Note {
        Note {
            text: "hello".into(),
        }
    }

    #[test]
    fn sign_then_verify() {
        let key = SigningKeyPair::generate();
        let trusted = TrustedKeys::with([key.public()]);
        let signed = Signed::sign(&note(), &key);
        let verified = trusted.verify(&signed).expect("valid");
        assert_eq!(*verified, note());
        assert_eq!(verified.key_id(), key.key_id());
    }

    #[test]
    fn every_byte_change_of_payload_or_signature_is_rejected() {
        let key = SigningKeyPair::generate();
        let trusted = TrustedKeys::with([key.public()]);
        let signed = Signed::sign(&note(), &key);
        for i in 0..signed.payload.len() {
            let mut bad = signed.clone();
            bad.payload[i] ^= 0x01;
            assert!(trusted.verify(&bad).is_err(), "payload byte {i}");
        }
        for i in 0..64 {
            let mut bad = signed.clone();
            bad.signature[i] ^= 0x80;
            assert_eq!(
                trusted.verify(&bad).err(),
                Some(VerifyError::BadSignature),
                "sig {i}"
            );
        }
        let mut short = signed.clone();
        short.signature.pop();
        assert_eq!(
            trusted.verify(&short).err(),
            Some(VerifyError::BadSignature)
        );
        let mut truncated = signed.clone();
        truncated.payload.pop();
        assert!(trusted.verify(&truncated).is_err());
    }

    #[test]
    fn unknown_and_retired_keys_are_rejected_and_rotation_works() {
        let old = SigningKeyPair::generate();
        let new = SigningKeyPair::generate();
        let stranger = SigningKeyPair::generate();
        let mut trusted = TrustedKeys::with([old.public()]);

        let by_old = Signed::sign(&note(), &old);
        let by_new = Signed::sign(&note(), &new);
        let by_stranger = Signed::sign(&note(), &stranger);
        assert_eq!(
            trusted.verify(&by_stranger).err(),
            Some(VerifyError::UnknownKey(stranger.key_id()))
        );
        assert!(trusted.verify(&by_new).is_err());

        // Rotation: the new key joins; old documents stay valid.
        trusted.insert(new.public());
        assert!(trusted.verify(&by_old).is_ok());
        assert!(trusted.verify(&by_new).is_ok());

        // Retirement: old documents stop being accepted.
        assert!(trusted.retire(&old.key_id()));
        assert_eq!(
            trusted.verify(&by_old).err(),
            Some(VerifyError::RetiredKey(old.key_id()))
        );
        assert!(trusted.verify(&by_new).is_ok());
        assert_eq!(trusted.active_ids(), vec![new.key_id()]);
        assert!(!trusted.retire(&stranger.key_id()));
    }

    #[test]
    fn a_signature_for_one_kind_of_document_is_not_valid_for_another() {
        let key = SigningKeyPair::generate();
        let trusted = TrustedKeys::with([key.public()]);
        let signed = Signed::sign(&note(), &key);
        let forged: Signed<OtherNote> = Signed::from_parts(
            signed.payload.clone(),
            signed.key_id,
            signed.signature.clone(),
        );
        assert_eq!(
            trusted.verify(&forged).err(),
            Some(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_key_id_swapped_to_another_trusted_key_fails() {
        let a = SigningKeyPair::generate();
        let b = SigningKeyPair::generate();
        let trusted = TrustedKeys::with([a.public(), b.public()]);
        let mut signed = Signed::sign(&note(), &a);
        signed.key_id = b.key_id();
        assert_eq!(
            trusted.verify(&signed).err(),
            Some(VerifyError::BadSignature)
        );
    }
}
