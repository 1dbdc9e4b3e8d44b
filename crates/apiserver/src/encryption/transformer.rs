//! Value transformers: the bytes a value becomes in the store and back, with upstream's
//! envelopes. A resource's transformers are an ordered list; each has a prefix
//! (`k8s:enc:<provider>:v1:<key name>:`, empty for identity) and a cipher.
//!
//! Writes use the first transformer. Reads try, in order, every transformer whose prefix the
//! value starts with; the first that decrypts wins, and the value is *stale* when that was not
//! the first one (it should be rewritten). Identity refuses values that start with `k8s:enc:`.
//!
//! Layouts after the prefix (byte-identical to upstream's):
//! - aescbc: 16-byte random IV ‖ AES-CBC(plaintext ‖ PKCS#7 padding); no MAC.
//! - aesgcm: 12-byte random nonce ‖ AES-GCM ciphertext ‖ 16-byte tag; the storage key is the
//!   additional authenticated data, so a value copied to another key does not decrypt.
//! - secretbox: 24-byte random nonce ‖ NaCl secretbox (XSalsa20-Poly1305, tag first).

use aes::cipher::block_padding::{NoPadding, Pkcs7};
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use rand::RngCore;

/// The prefix of every encrypted value.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";
const AES_BLOCK: usize = 16;
const GCM_NONCE: usize = 12;
const SECRETBOX_NONCE: usize = 24;

/// Why a value could not be transformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("the stored data was shorter than the required size")]
    TooShort,
    #[error("the stored data is not a multiple of the block size")]
    InvalidBlockSize,
    #[error("invalid PKCS7 data (empty or not padded)")]
    InvalidPkcs7Data,
    #[error("invalid padding on input")]
    InvalidPkcs7Padding,
    #[error("{provider} decryption with key {key} failed: the data is not authentic")]
    NotAuthentic { provider: &'static str, key: String },
    #[error("{provider} encryption with key {key} failed")]
    Encrypt { provider: &'static str, key: String },
    #[error("identity transformer tried to read encrypted data")]
    IdentityReadsEncrypted,
    #[error("the provided value does not match any of the supported transformers")]
    NoMatch,
}

/// An AES key of any of the sizes `aes.NewCipher` accepts.
#[derive(Clone)]
enum AesKey {
    A128([u8; 16]),
    A192([u8; 24]),
    A256([u8; 32]),
}

impl AesKey {
    fn new(bytes: &[u8]) -> Option<AesKey> {
        Some(match bytes.len() {
            16 => AesKey::A128(bytes.try_into().ok()?),
            24 => AesKey::A192(bytes.try_into().ok()?),
            32 => AesKey::A256(bytes.try_into().ok()?),
            _ => return None,
        })
    }
}

#[derive(Clone)]
enum Cipher {
    AesCbc(AesKey),
    AesGcm(AesKey),
    Secretbox([u8; 32]),
    Identity,
}

/// The provider types kubelab implements (upstream's names in the configuration file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    AesCbc,
    AesGcm,
    Secretbox,
    Identity,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::AesCbc => "aescbc",
            ProviderKind::AesGcm => "aesgcm",
            ProviderKind::Secretbox => "secretbox",
            ProviderKind::Identity => "identity",
        }
    }

    /// The key lengths the provider accepts (upstream's validation).
    pub fn key_sizes(self) -> &'static [usize] {
        match self {
            ProviderKind::AesCbc | ProviderKind::AesGcm => &[16, 24, 32],
            ProviderKind::Secretbox => &[32],
            ProviderKind::Identity => &[],
        }
    }
}

/// One transformer of a resource's list: a prefix and what follows it.
#[derive(Clone)]
pub struct PrefixTransformer {
    prefix: Vec<u8>,
    kind: ProviderKind,
    key_name: String,
    cipher: Cipher,
}

impl std::fmt::Debug for PrefixTransformer {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixTransformer")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish()
    }
}

impl PrefixTransformer {
    /// A keyed provider's transformer for one key; `None` when the key's length does not fit
    /// the provider (validation reports that first).
    pub fn keyed(kind: ProviderKind, key_name: &str, key: &[u8]) -> Option<PrefixTransformer> {
        let cipher = match kind {
            ProviderKind::AesCbc => Cipher::AesCbc(AesKey::new(key)?),
            ProviderKind::AesGcm => Cipher::AesGcm(AesKey::new(key)?),
            ProviderKind::Secretbox => Cipher::Secretbox(key.try_into().ok()?),
            ProviderKind::Identity => return None,
        };
        Some(PrefixTransformer {
            prefix: format!("k8s:enc:{}:v1:{key_name}:", kind.name()).into_bytes(),
            kind,
            key_name: key_name.to_owned(),
            cipher,
        })
    }

    pub fn identity() -> PrefixTransformer {
        PrefixTransformer {
            prefix: Vec::new(),
            kind: ProviderKind::Identity,
            key_name: String::new(),
            cipher: Cipher::Identity,
        }
    }

    /// The envelope prefix (`k8s:enc:aescbc:v1:key1:`; empty for identity).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The key's name (empty for identity).
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    fn seal(&self, plaintext: &[u8], storage_key: &str) -> Result<Vec<u8>, TransformError> {
        let nonce_len = match self.cipher {
            Cipher::AesCbc(_) => AES_BLOCK,
            Cipher::AesGcm(_) => GCM_NONCE,
            Cipher::Secretbox(_) => SECRETBOX_NONCE,
            Cipher::Identity => 0,
        };
        let mut nonce = vec![0u8; nonce_len];
        rand::rng().fill_bytes(&mut nonce);
        self.seal_with_nonce(plaintext, storage_key, &nonce)
    }

    /// The bytes after the prefix, with the given IV/nonce (random in [`Self::seal`]).
    fn seal_with_nonce(
        &self,
        plaintext: &[u8],
        storage_key: &str,
        nonce: &[u8],
    ) -> Result<Vec<u8>, TransformError> {
        let failed = || TransformError::Encrypt {
            provider: self.kind.name(),
            key: self.key_name.clone(),
        };
        let body = match &self.cipher {
            Cipher::Identity => return Ok(plaintext.to_vec()),
            Cipher::AesCbc(key) => {
                let iv = nonce.into();
                match key {
                    AesKey::A128(k) => cbc::Encryptor::<aes::Aes128>::new(k.into(), iv)
                        .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
                    AesKey::A192(k) => cbc::Encryptor::<aes::Aes192>::new(k.into(), iv)
                        .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
                    AesKey::A256(k) => cbc::Encryptor::<aes::Aes256>::new(k.into(), iv)
                        .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
                }
            }
            Cipher::AesGcm(key) => {
                let payload = Payload {
                    msg: plaintext,
                    aad: storage_key.as_bytes(),
                };
                let nonce = aes_gcm::Nonce::from_slice(nonce);
                match key {
                    AesKey::A128(k) => aes_gcm::Aes128Gcm::new(k.into()).encrypt(nonce, payload),
                    AesKey::A192(k) => {
                        aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new(k.into())
                            .encrypt(nonce, payload)
                    }
                    AesKey::A256(k) => aes_gcm::Aes256Gcm::new(k.into()).encrypt(nonce, payload),
                }
                .map_err(|_| failed())?
            }
            Cipher::Secretbox(k) => crypto_secretbox::XSalsa20Poly1305::new(k.into())
                .encrypt(crypto_secretbox::Nonce::from_slice(nonce), plaintext)
                .map_err(|_| failed())?,
        };
        let mut out = Vec::with_capacity(self.prefix.len() + nonce.len() + body.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypt the bytes after the prefix.
    fn open(&self, data: &[u8], storage_key: &str) -> Result<Vec<u8>, TransformError> {
        let not_authentic = || TransformError::NotAuthentic {
            provider: self.kind.name(),
            key: self.key_name.clone(),
        };
        match &self.cipher {
            Cipher::Identity => {
                if data.starts_with(ENCRYPTED_PREFIX) {
                    return Err(TransformError::IdentityReadsEncrypted);
                }
                Ok(data.to_vec())
            }
            Cipher::AesCbc(key) => {
                if data.len() < AES_BLOCK {
                    return Err(TransformError::TooShort);
                }
                let (iv, body) = data.split_at(AES_BLOCK);
                if body.len() % AES_BLOCK != 0 {
                    return Err(TransformError::InvalidBlockSize);
                }
                let iv = iv.into();
                // Unpadded first, then upstream's own PKCS#7 checks (a pad may not be longer
                // than the data, every pad byte equals the pad length).
                let mut plain = match key {
                    AesKey::A128(k) => cbc::Decryptor::<aes::Aes128>::new(k.into(), iv)
                        .decrypt_padded_vec_mut::<NoPadding>(body),
                    AesKey::A192(k) => cbc::Decryptor::<aes::Aes192>::new(k.into(), iv)
                        .decrypt_padded_vec_mut::<NoPadding>(body),
                    AesKey::A256(k) => cbc::Decryptor::<aes::Aes256>::new(k.into(), iv)
                        .decrypt_padded_vec_mut::<NoPadding>(body),
                }
                .map_err(|_| TransformError::InvalidBlockSize)?;
                let Some(&pad) = plain.last() else {
                    return Err(TransformError::InvalidPkcs7Data);
                };
                let pad = pad as usize;
                if pad == 0 || pad > plain.len() {
                    return Err(TransformError::InvalidPkcs7Data);
                }
                let size = plain.len() - pad;
                if plain[size..].iter().any(|&b| b as usize != pad) {
                    return Err(TransformError::InvalidPkcs7Padding);
                }
                plain.truncate(size);
                Ok(plain)
            }
            Cipher::AesGcm(key) => {
                if data.len() < GCM_NONCE {
                    return Err(TransformError::TooShort);
                }
                let (nonce, body) = data.split_at(GCM_NONCE);
                let nonce = aes_gcm::Nonce::from_slice(nonce);
                let payload = Payload {
                    msg: body,
                    aad: storage_key.as_bytes(),
                };
                match key {
                    AesKey::A128(k) => aes_gcm::Aes128Gcm::new(k.into()).decrypt(nonce, payload),
                    AesKey::A192(k) => {
                        aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new(k.into())
                            .decrypt(nonce, payload)
                    }
                    AesKey::A256(k) => aes_gcm::Aes256Gcm::new(k.into()).decrypt(nonce, payload),
                }
                .map_err(|_| not_authentic())
            }
            Cipher::Secretbox(k) => {
                if data.len() < SECRETBOX_NONCE {
                    return Err(TransformError::TooShort);
                }
                let (nonce, body) = data.split_at(SECRETBOX_NONCE);
                crypto_secretbox::XSalsa20Poly1305::new(k.into())
                    .decrypt(crypto_secretbox::Nonce::from_slice(nonce), body)
                    .map_err(|_| not_authentic())
            }
        }
    }
}

/// A resource's ordered transformers (providers in configuration order, each provider's keys
/// in order). Never empty.
#[derive(Clone, Debug)]
pub struct Transformers {
    list: Vec<PrefixTransformer>,
}

/// A value read back from the store.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// Not read by the write transformer: rewriting it would change its envelope.
    pub stale: bool,
}

impl Transformers {
    pub fn new(list: Vec<PrefixTransformer>) -> Option<Transformers> {
        (!list.is_empty()).then_some(Transformers { list })
    }

    pub fn list(&self) -> &[PrefixTransformer] {
        &self.list
    }

    /// The transformer writes use.
    pub fn writer(&self) -> &PrefixTransformer {
        &self.list[0]
    }

    /// The stored bytes of `plaintext` at `storage_key`.
    pub fn to_storage(
        &self,
        plaintext: &[u8],
        storage_key: &str,
    ) -> Result<Vec<u8>, TransformError> {
        self.writer().seal(plaintext, storage_key)
    }

    /// The plaintext of stored bytes: every transformer whose prefix matches is tried in
    /// order; identity's failures are skipped silently, others' errors are reported when none
    /// succeeds.
    pub fn from_storage(&self, data: &[u8], storage_key: &str) -> Result<Opened, TransformError> {
        let mut first_error = None;
        for (i, t) in self.list.iter().enumerate() {
            let Some(rest) = data.strip_prefix(t.prefix.as_slice()) else {
                continue;
            };
            match t.open(rest, storage_key) {
                Ok(plaintext) => {
                    return Ok(Opened {
                        plaintext,
                        stale: i != 0,
                    })
                }
                Err(_) if t.prefix.is_empty() => continue,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(TransformError::NoMatch))
    }

    /// Whether stored bytes were written by the write transformer (by their prefix: for
    /// identity, when no other transformer's prefix matches and they are not encrypted).
    pub fn written_by_writer(&self, data: &[u8]) -> bool {
        let writer = self.writer();
        if writer.prefix.is_empty() {
            !data.starts_with(ENCRYPTED_PREFIX)
        } else {
            data.starts_with(&writer.prefix)
        }
    }
}

/// The envelope of stored bytes, for reports: `aescbc:key1`, or `identity` for plaintext.
pub fn envelope_of(data: &[u8]) -> String {
    let Some(rest) = data.strip_prefix(ENCRYPTED_PREFIX) else {
        return "identity".into();
    };
    // <provider>:v1:<key name>:<binary>. Callers that know the configured keys match their
    // prefixes instead (a key name may contain ':').
    let text = String::from_utf8_lossy(&rest[..rest.len().min(128)]).into_owned();
    let mut fields = text.splitn(4, ':');
    match (fields.next(), fields.next(), fields.next()) {
        (Some(provider), Some(_version), Some(key)) => format!("{provider}:{key}"),
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY32: [u8; 32] = {
        let mut k = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            k[i] = i as u8;
            i += 1;
        }
        k
    };
    const PLAIN: &[u8] = br#"{"kind":"Secret"}"#;
    const STORAGE_KEY: &str = "/registry/core/secrets/default/s1";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn with_prefix(prefix: &str, body: &[u8]) -> Vec<u8> {
        let mut v = prefix.as_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    // Vectors made with an independent implementation (Python's `cryptography`): key
    // 00..1f (or 00..0f), IV 00..0f, GCM nonce a0..ab with the storage key as AAD.
    const CBC256: &str = "000102030405060708090a0b0c0d0e0f1e99f42a87db9ef8ab2a289efc82058d9b6df3c3b806157e27663d659124bb7a";
    const CBC128: &str = "000102030405060708090a0b0c0d0e0f94df35c9b979736106b2d20e6a3786e72f403092c183f595f88d341b9723ca6c";
    const GCM256: &str =
        "a0a1a2a3a4a5a6a7a8a9aaab9d3a17442baf20854036e2b0751fb4fc0d6c041694b041ca6ce247cfe61d6df883";
    const GCM128: &str =
        "a0a1a2a3a4a5a6a7a8a9aaabd1a453d210ed1130a82bd0633477c4422e98328bcf4be15430adb2dd6a11b69b86";

    #[test]
    fn aescbc_matches_known_vectors_byte_for_byte() {
        let t = PrefixTransformer::keyed(ProviderKind::AesCbc, "key1", &KEY32).unwrap();
        let sealed = t
            .seal_with_nonce(PLAIN, STORAGE_KEY, &hex(&CBC256[..32]))
            .unwrap();
        assert_eq!(sealed, with_prefix("k8s:enc:aescbc:v1:key1:", &hex(CBC256)));
        let list = Transformers::new(vec![t]).unwrap();
        assert_eq!(
            list.from_storage(&sealed, "/any/key").unwrap(),
            Opened {
                plaintext: PLAIN.to_vec(),
                stale: false
            }
        );
        let t128 = PrefixTransformer::keyed(ProviderKind::AesCbc, "k", &KEY32[..16]).unwrap();
        let list = Transformers::new(vec![t128]).unwrap();
        let stored = with_prefix("k8s:enc:aescbc:v1:k:", &hex(CBC128));
        assert_eq!(list.from_storage(&stored, "/x").unwrap().plaintext, PLAIN);
    }

    #[test]
    fn aescbc_aligned_plaintext_gets_a_full_block_of_padding() {
        let t = PrefixTransformer::keyed(ProviderKind::AesCbc, "key1", &KEY32).unwrap();
        let sealed = t.seal(b"0123456789abcdef", STORAGE_KEY).unwrap();
        let body = &sealed[t.prefix().len()..];
        assert_eq!(body.len(), 16 + 32, "IV, the block and a block of padding");
    }

    #[test]
    fn aescbc_rejects_bad_lengths_and_padding() {
        let t = PrefixTransformer::keyed(ProviderKind::AesCbc, "key1", &KEY32).unwrap();
        assert_eq!(t.open(&[0; 15], "k"), Err(TransformError::TooShort));
        assert_eq!(t.open(&[0; 20], "k"), Err(TransformError::InvalidBlockSize));
        assert_eq!(t.open(&[0; 16], "k"), Err(TransformError::InvalidPkcs7Data));
        // A wrong key decrypts to garbage: the padding check catches it (nearly always).
        let other = PrefixTransformer::keyed(ProviderKind::AesCbc, "key1", &[7; 32]).unwrap();
        let sealed = hex(CBC256);
        assert!(other.open(&sealed, "k").is_err());
    }

    #[test]
    fn aesgcm_matches_known_vectors_and_binds_the_storage_key() {
        let t = PrefixTransformer::keyed(ProviderKind::AesGcm, "key1", &KEY32).unwrap();
        let sealed = t
            .seal_with_nonce(PLAIN, STORAGE_KEY, &hex(&GCM256[..24]))
            .unwrap();
        assert_eq!(sealed, with_prefix("k8s:enc:aesgcm:v1:key1:", &hex(GCM256)));
        let list = Transformers::new(vec![t]).unwrap();
        assert_eq!(
            list.from_storage(&sealed, STORAGE_KEY).unwrap().plaintext,
            PLAIN
        );
        // The same bytes under another key do not authenticate.
        assert_eq!(
            list.from_storage(&sealed, "/registry/core/secrets/default/s2"),
            Err(TransformError::NotAuthentic {
                provider: "aesgcm",
                key: "key1".into()
            })
        );
        let t128 = PrefixTransformer::keyed(ProviderKind::AesGcm, "key1", &KEY32[..16]).unwrap();
        let list = Transformers::new(vec![t128]).unwrap();
        let stored = with_prefix("k8s:enc:aesgcm:v1:key1:", &hex(GCM128));
        assert_eq!(
            list.from_storage(&stored, STORAGE_KEY).unwrap().plaintext,
            PLAIN
        );
        let t192 = PrefixTransformer::keyed(ProviderKind::AesGcm, "k", &KEY32[..24]).unwrap();
        let list = Transformers::new(vec![t192]).unwrap();
        let sealed = list.to_storage(PLAIN, STORAGE_KEY).unwrap();
        assert_eq!(
            list.from_storage(&sealed, STORAGE_KEY).unwrap().plaintext,
            PLAIN
        );
    }

    #[test]
    fn secretbox_reads_the_nacl_vector() {
        // NaCl's tests/secretbox.c vector (key, nonce, message, tag-first box).
        let key = hex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389");
        let nonce = hex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37");
        let message = hex(concat!(
            "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a",
            "1ac728d45e6c61296cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057",
            "e2f6556ad6b1318a024a838f21af1fde048977eb48f59ffd4924ca1c60902e52f0a089bc76897040",
            "e082f937763848645e0705"
        ));
        let boxed = hex(concat!(
            "f3ffc7703f9400e52a7dfb4b3d3305d98e993b9f48681273c29650ba32fc76ce48332ea7164d96a4",
            "476fb8c531a1186ac0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738",
            "b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da99832b61ca01b6de",
            "56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74e355a5"
        ));
        let t = PrefixTransformer::keyed(ProviderKind::Secretbox, "key1", &key).unwrap();
        let mut expected = b"k8s:enc:secretbox:v1:key1:".to_vec();
        expected.extend_from_slice(&nonce);
        expected.extend_from_slice(&boxed);
        assert_eq!(t.seal_with_nonce(&message, "k", &nonce).unwrap(), expected);
        let list = Transformers::new(vec![t]).unwrap();
        assert_eq!(
            list.from_storage(&expected, "k").unwrap().plaintext,
            message
        );
        let mut tampered = expected.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(list.from_storage(&tampered, "k").is_err());
        assert!(PrefixTransformer::keyed(ProviderKind::Secretbox, "k", &key[..16]).is_none());
    }

    #[test]
    fn writes_use_the_first_and_reads_try_every_match_in_order() {
        let new = PrefixTransformer::keyed(ProviderKind::AesCbc, "new", &[1; 32]).unwrap();
        let old = PrefixTransformer::keyed(ProviderKind::AesCbc, "old", &[2; 32]).unwrap();
        let sb = PrefixTransformer::keyed(ProviderKind::Secretbox, "sb", &[3; 32]).unwrap();
        let before = Transformers::new(vec![old.clone(), PrefixTransformer::identity()]).unwrap();
        let during = Transformers::new(vec![
            new.clone(),
            old.clone(),
            sb.clone(),
            PrefixTransformer::identity(),
        ])
        .unwrap();
        let by_old = before.to_storage(PLAIN, "k").unwrap();
        assert!(by_old.starts_with(b"k8s:enc:aescbc:v1:old:"));
        assert_eq!(
            during.from_storage(&by_old, "k").unwrap(),
            Opened {
                plaintext: PLAIN.to_vec(),
                stale: true
            }
        );
        let by_new = during.to_storage(PLAIN, "k").unwrap();
        assert!(by_new.starts_with(b"k8s:enc:aescbc:v1:new:"));
        assert!(!during.from_storage(&by_new, "k").unwrap().stale);
        assert!(during.written_by_writer(&by_new) && !during.written_by_writer(&by_old));
        // The old list cannot read the new key's value.
        assert_eq!(
            before.from_storage(&by_new, "k"),
            Err(TransformError::NoMatch)
        );
        // Plaintext (written before encryption was enabled) is read by identity, stale.
        assert_eq!(
            during.from_storage(PLAIN, "k").unwrap(),
            Opened {
                plaintext: PLAIN.to_vec(),
                stale: true
            }
        );
        // Two entries with the same prefix: the second is tried when the first fails.
        let same_name_other_key =
            PrefixTransformer::keyed(ProviderKind::AesCbc, "old", &[9; 32]).unwrap();
        let dup = Transformers::new(vec![same_name_other_key, old.clone()]).unwrap();
        assert_eq!(dup.from_storage(&by_old, "k").unwrap().plaintext, PLAIN);
        // identity first: writes plaintext, still reads the encrypted values.
        let decrypting = Transformers::new(vec![PrefixTransformer::identity(), old]).unwrap();
        assert_eq!(decrypting.to_storage(PLAIN, "k").unwrap(), PLAIN);
        assert_eq!(
            decrypting.from_storage(&by_old, "k").unwrap(),
            Opened {
                plaintext: PLAIN.to_vec(),
                stale: true
            }
        );
        assert!(decrypting.written_by_writer(PLAIN));
        assert!(!decrypting.written_by_writer(&by_old));
    }

    #[test]
    fn identity_alone_refuses_encrypted_data_and_unknown_envelopes_do_not_match() {
        let identity = Transformers::new(vec![PrefixTransformer::identity()]).unwrap();
        assert_eq!(
            identity.from_storage(b"k8s:enc:aescbc:v1:key1:xxxx", "k"),
            Err(TransformError::NoMatch)
        );
        let cbc = Transformers::new(vec![PrefixTransformer::keyed(
            ProviderKind::AesCbc,
            "key1",
            &[1; 32],
        )
        .unwrap()])
        .unwrap();
        assert_eq!(
            cbc.from_storage(
                b"k8s:enc:aescbc:v1:key2:0123456789abcdef0123456789abcdef",
                "k"
            ),
            Err(TransformError::NoMatch)
        );
    }

    #[test]
    fn envelopes_are_named_for_reports() {
        assert_eq!(envelope_of(b"{}"), "identity");
        assert_eq!(
            envelope_of(b"k8s:enc:aescbc:v1:key1:\x00\x01"),
            "aescbc:key1"
        );
        assert_eq!(envelope_of(b"k8s:enc:kms:v2"), "unknown");
    }
}
