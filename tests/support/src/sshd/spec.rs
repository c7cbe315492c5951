//! What a simulation starts: [`SimSpec`] (topology, ESC version, keys, logins, northbound).

use std::path::PathBuf;

use super::KeyType;

/// One node, or an HA pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One node named `esc`.
    Standalone,
    /// `esc-a` (starts as MASTER) and `esc-b` (starts as BACKUP).
    Ha,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct SimSpec {
    pub topology: Topology,
    /// ESC version of every node (`5.10.0.86` by default).
    pub esc_version: String,
    /// Client key pairs created and authorized on each node; the first is "the" key.
    pub key_types: Vec<KeyType>,
    /// Private keys in PEM (`ssh-keygen -m PEM`) instead of the OpenSSH format (RSA/ECDSA).
    pub pem_keys: bool,
    /// The account the client keys log in as: `escsim` by default (the same local account
    /// as the password user). `root` works too, but root's login shell runs this machine's
    /// `/root/.bashrc` (on the dev machines: pyenv, which starts a rehash job per session and
    /// serializes sessions on its lock), so it is slower and noisier.
    pub key_user: String,
    /// Also serve each node's northbound HTTP endpoint.
    pub northbound: bool,
    /// The simulator binary (see the module doc for the default).
    pub esc_sim_bin: Option<PathBuf>,
    /// Where to create the sim root; default: a fresh temporary directory, removed on drop.
    pub dir: Option<PathBuf>,
}

impl Default for SimSpec {
    fn default() -> Self {
        SimSpec {
            topology: Topology::Standalone,
            esc_version: "5.10.0.86".to_owned(),
            key_types: vec![KeyType::Ed25519],
            pem_keys: false,
            key_user: esc_sim::provision::TEST_USER.to_owned(),
            northbound: false,
            esc_sim_bin: None,
            dir: None,
        }
    }
}

impl SimSpec {
    pub fn standalone() -> Self {
        SimSpec::default()
    }

    pub fn ha() -> Self {
        SimSpec {
            topology: Topology::Ha,
            ..SimSpec::default()
        }
    }

    pub fn esc_version(mut self, v: &str) -> Self {
        self.esc_version = v.to_owned();
        self
    }

    pub fn key_types(mut self, k: &[KeyType]) -> Self {
        self.key_types = k.to_vec();
        self
    }

    pub fn northbound(mut self) -> Self {
        self.northbound = true;
        self
    }

    pub fn esc_sim_bin(mut self, p: impl Into<PathBuf>) -> Self {
        self.esc_sim_bin = Some(p.into());
        self
    }
}
