//! Cluster pre-shared keys, static identity keys and the seeded Noise resolver.

use std::fmt;

use argon2::{Algorithm, Argon2, Version};
use hkdf::Hkdf;
use rand::{CryptoRng, Rng, SeedableRng, rngs::StdRng};
use sha2::Sha256;
use snow::{
    params::{CipherChoice, DHChoice, HashChoice},
    resolvers::{CryptoResolver, DefaultResolver},
    types::{Cipher, Dh, Hash, Random},
};

/// Length in bytes of a [`Psk`], an X25519 key and a session seed.
pub const KEY_LEN: usize = 32;

/// The Argon2id salt is this prefix followed by the cluster id, so every node
/// of one cluster derives the same key and two clusters with the same password
/// do not.
pub const PASSWORD_SALT_PREFIX: &[u8] = b"overlay/psk/v1:";

/// The HKDF `info` label for a key file; the HKDF salt is the cluster id.
pub const KEY_FILE_INFO: &[u8] = b"overlay noise psk v1";

/// The shortest key file [`Psk::from_key`] accepts (128 bits of entropy).
pub const MIN_KEY_FILE_LEN: usize = 16;

/// Errors of deriving a [`Psk`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PskError {
    /// The password is empty; an empty password would mean "no security"
    /// without saying so (use the unencrypted mode explicitly instead).
    #[error("the cluster password is empty")]
    EmptyPassword,
    /// The key file holds fewer than [`MIN_KEY_FILE_LEN`] bytes.
    #[error("the cluster key is {len} bytes, at least {MIN_KEY_FILE_LEN} are needed")]
    KeyTooShort {
        /// The length of the key that was given.
        len: usize,
    },
    /// Argon2 refused the parameters or the input.
    #[error("Argon2id: {0}")]
    Argon2(argon2::Error),
}

/// Argon2id cost parameters for [`Psk::from_password`].
///
/// The default is the production setting, m = 64 MiB, t = 3, p = 1 (about
/// 150 ms once at start-up). Every node of a cluster must use the same
/// parameters, or they derive different keys and cannot talk. Tests may use
/// [`PskParams::new`] with a small memory cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PskParams {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

impl PskParams {
    /// Memory cost in KiB, iterations and lanes, as Argon2 defines them.
    ///
    /// The values are checked when a key is derived
    /// ([`PskError::Argon2`] when Argon2 refuses them).
    pub const fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Self {
        Self {
            m_cost_kib,
            t_cost,
            p_cost,
        }
    }

    /// Memory cost in KiB.
    pub const fn m_cost_kib(&self) -> u32 {
        self.m_cost_kib
    }

    /// Number of iterations.
    pub const fn t_cost(&self) -> u32 {
        self.t_cost
    }

    /// Degree of parallelism (lanes).
    pub const fn p_cost(&self) -> u32 {
        self.p_cost
    }
}

impl Default for PskParams {
    fn default() -> Self {
        Self::new(64 * 1024, 3, 1)
    }
}

/// The cluster's 32-byte pre-shared key, mixed into every Noise handshake.
///
/// A peer that does not hold it cannot complete a handshake, so it cannot join
/// and cannot read or forge gossip. `Debug` does not print the key.
///
/// ```
/// use overlay_gossip::secure::{Psk, PskParams};
///
/// // Small Argon2 parameters keep the example fast; production uses the default.
/// let params = PskParams::new(64, 1, 1);
/// let a = Psk::from_password("correct horse", b"cluster-a", params)?;
/// let b = Psk::from_password("correct horse", b"cluster-a", params)?;
/// let other = Psk::from_password("correct horse", b"cluster-b", params)?;
/// assert_eq!(a, b);
/// assert_ne!(a, other);
/// # Ok::<(), overlay_gossip::secure::PskError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; KEY_LEN]);

impl Psk {
    /// Derives the key from a human-chosen password with Argon2id, salted
    /// with [`PASSWORD_SALT_PREFIX`] followed by `cluster_id`.
    ///
    /// # Errors
    /// [`PskError::EmptyPassword`] for an empty password, [`PskError::Argon2`]
    /// when Argon2 refuses the parameters.
    pub fn from_password(
        password: impl AsRef<[u8]>,
        cluster_id: impl AsRef<[u8]>,
        params: PskParams,
    ) -> Result<Self, PskError> {
        let password = password.as_ref();
        if password.is_empty() {
            return Err(PskError::EmptyPassword);
        }
        let params = argon2::Params::new(
            params.m_cost_kib,
            params.t_cost,
            params.p_cost,
            Some(KEY_LEN),
        )
        .map_err(PskError::Argon2)?;
        let mut salt = PASSWORD_SALT_PREFIX.to_vec();
        salt.extend_from_slice(cluster_id.as_ref());
        let mut key = [0u8; KEY_LEN];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password, &salt, &mut key)
            .map_err(PskError::Argon2)?;
        Ok(Self(key))
    }

    /// Derives the key from a key file (random bytes, e.g. a Kubernetes
    /// Secret) with HKDF-SHA256: salt `cluster_id`, info [`KEY_FILE_INFO`].
    /// Random keys need no stretching.
    ///
    /// # Errors
    /// [`PskError::KeyTooShort`] for fewer than [`MIN_KEY_FILE_LEN`] bytes.
    ///
    /// ```
    /// use overlay_gossip::secure::Psk;
    ///
    /// let psk = Psk::from_key([7u8; 32], b"cluster-a")?;
    /// assert_ne!(psk, Psk::from_key([7u8; 32], b"cluster-b")?);
    /// # Ok::<(), overlay_gossip::secure::PskError>(())
    /// ```
    pub fn from_key(key: impl AsRef<[u8]>, cluster_id: impl AsRef<[u8]>) -> Result<Self, PskError> {
        let key = key.as_ref();
        if key.len() < MIN_KEY_FILE_LEN {
            return Err(PskError::KeyTooShort { len: key.len() });
        }
        let mut out = [0u8; KEY_LEN];
        Hkdf::<Sha256>::new(Some(cluster_id.as_ref()), key)
            .expand(KEY_FILE_INFO, &mut out)
            // HKDF-SHA256 can produce up to 255 * 32 bytes; 32 always fits.
            .map_err(|_| PskError::KeyTooShort { len: key.len() })?;
        Ok(Self(out))
    }

    /// Wraps 32 bytes that already are a uniformly random key.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(..)")
    }
}

/// A peer's static X25519 key pair: its long-term identity in the Noise
/// handshakes. The public half is gossiped in the peer's record; the core
/// binds it to the `PeerId`.
///
/// ```
/// use overlay_gossip::secure::StaticKeypair;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(1);
/// let key = StaticKeypair::generate(&mut rng);
/// let again = StaticKeypair::from_secret(*key.secret_bytes());
/// assert_eq!(key.public(), again.public());
/// ```
#[derive(Clone)]
pub struct StaticKeypair {
    secret: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
}

impl StaticKeypair {
    /// Generates a new key pair from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut secret = [0u8; KEY_LEN];
        rng.fill_bytes(&mut secret);
        Self::from_secret(secret)
    }

    /// Rebuilds a key pair from its 32-byte secret (e.g. read from the
    /// node's state directory). Any 32 bytes are a valid X25519 secret.
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Self {
        let mut public = [0u8; KEY_LEN];
        if let Some(mut dh) = DefaultResolver.resolve_dh(&DHChoice::Curve25519) {
            dh.set(&secret);
            let pubkey = dh.pubkey();
            if pubkey.len() == KEY_LEN {
                public.copy_from_slice(pubkey);
            }
        }
        Self { secret, public }
    }

    /// The public key, the peer's identity.
    pub const fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The secret key, to persist the identity across restarts.
    pub const fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &Hex(&self.public))
            .finish_non_exhaustive()
    }
}

/// Lower-case hex for `Debug` output of public keys.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A snow resolver whose randomness (the ephemeral keys) comes from a seed
/// drawn from the caller's RNG, so a seeded simulation is deterministic. The
/// primitives are snow's pure-Rust defaults.
pub(crate) struct SeededResolver {
    seed: [u8; KEY_LEN],
}

impl SeededResolver {
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = [0u8; KEY_LEN];
        rng.fill_bytes(&mut seed);
        Self { seed }
    }
}

struct SnowRng(StdRng);

impl Random for SnowRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SnowRng(StdRng::from_seed(self.seed))))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: PskParams = PskParams::new(64, 1, 1);

    #[test]
    fn password_psk_depends_on_password_cluster_and_params() {
        let base = Psk::from_password("pw", "c1", FAST).unwrap();
        assert_eq!(base, Psk::from_password("pw", "c1", FAST).unwrap());
        assert_ne!(base, Psk::from_password("pw2", "c1", FAST).unwrap());
        assert_ne!(base, Psk::from_password("pw", "c2", FAST).unwrap());
        assert_ne!(
            base,
            Psk::from_password("pw", "c1", PskParams::new(64, 2, 1)).unwrap()
        );
    }

    #[test]
    fn password_psk_matches_argon2id_reference() {
        // The same computation spelled out with the argon2 crate, so a change
        // of salt layout or algorithm shows up here.
        let mut expected = [0u8; 32];
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            argon2::Params::new(64, 1, 1, Some(32)).unwrap(),
        )
        .hash_password_into(b"pw", b"overlay/psk/v1:c1", &mut expected)
        .unwrap();
        assert_eq!(
            Psk::from_password("pw", "c1", FAST).unwrap().as_bytes(),
            &expected
        );
    }

    #[test]
    fn empty_password_and_bad_params_are_refused() {
        assert!(matches!(
            Psk::from_password("", "c", FAST),
            Err(PskError::EmptyPassword)
        ));
        assert!(matches!(
            Psk::from_password("pw", "c", PskParams::new(1, 1, 1)),
            Err(PskError::Argon2(_))
        ));
    }

    #[test]
    fn key_file_psk_is_hkdf_sha256() {
        let mut expected = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"c1"), &[9u8; 32])
            .expand(b"overlay noise psk v1", &mut expected)
            .unwrap();
        assert_eq!(
            Psk::from_key([9u8; 32], "c1").unwrap().as_bytes(),
            &expected
        );
        assert!(matches!(
            Psk::from_key([9u8; 15], "c1"),
            Err(PskError::KeyTooShort { len: 15 })
        ));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let psk = Psk::from_bytes([0xab; 32]);
        assert_eq!(format!("{psk:?}"), "Psk(..)");
        let key = StaticKeypair::from_secret([0xcd; 32]);
        assert!(!format!("{key:?}").contains("cdcd"));
    }

    #[test]
    fn public_key_is_x25519_of_the_secret() {
        // RFC 7748 section 6.1, Alice's key pair.
        let secret: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let public: [u8; 32] = [
            0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e,
            0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e,
            0xaa, 0x9b, 0x4e, 0x6a,
        ];
        assert_eq!(StaticKeypair::from_secret(secret).public(), &public);
    }
}
