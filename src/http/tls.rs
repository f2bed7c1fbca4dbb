//! TLS with rustls: the certificate and key from PEM files (reloaded on SIGHUP) or a
//! self-signed certificate for local trials; TLS 1.2 and 1.3 only; ALPN `h2` then
//! `http/1.1`.
//!
//! A reload builds a whole new server configuration and swaps it in: handshakes that
//! start afterwards use it, connections already open keep theirs (none is dropped). A
//! reload that fails (a missing file, a key that does not match) keeps the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

/// The self-signed certificate's file in the data directory (reused across starts, so
/// that a client trusts it once).
pub const SELF_SIGNED_CERT_FILE: &str = "tls/self-signed-cert.pem";
/// Its private key (mode 0600).
pub const SELF_SIGNED_KEY_FILE: &str = "tls/self-signed-key.pem";

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// `--tls-cert` and `--tls-key`: PEM files, reread on SIGHUP.
    Files { cert: PathBuf, key: PathBuf },
    /// `--tls-self-signed`: made once in the data directory, for `localhost`,
    /// `127.0.0.1`, `::1` and the listen host.
    SelfSigned { data_dir: PathBuf, host: String },
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The server's TLS state: where its certificate comes from and the configuration in force.
#[derive(Debug)]
pub struct Tls {
    source: TlsSource,
    current: RwLock<Loaded>,
}

#[derive(Debug, Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    fingerprint: String,
}

impl Tls {
    /// Loads (or, self-signed, makes) the certificate and builds the configuration.
    pub fn load(source: TlsSource) -> Result<Self, TlsError> {
        let loaded = load(&source)?;
        Ok(Self {
            source,
            current: RwLock::new(loaded),
        })
    }

    /// An acceptor for the next handshake, with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.read().config))
    }

    /// SHA-256 of the leaf certificate, as `AB:CD:…` (what `openssl x509 -fingerprint
    /// -sha256` prints).
    pub fn fingerprint(&self) -> String {
        self.current.read().fingerprint.clone()
    }

    /// Where the certificate in force lives.
    pub fn cert_path(&self) -> PathBuf {
        match &self.source {
            TlsSource::Files { cert, .. } => cert.clone(),
            TlsSource::SelfSigned { data_dir, .. } => data_dir.join(SELF_SIGNED_CERT_FILE),
        }
    }

    /// Rereads the files and swaps the new configuration in; on error the old one stays.
    /// Returns the new fingerprint.
    pub fn reload(&self) -> Result<String, TlsError> {
        let loaded = load(&self.source)?;
        let fingerprint = loaded.fingerprint.clone();
        *self.current.write() = loaded;
        Ok(fingerprint)
    }
}

fn load(source: &TlsSource) -> Result<Loaded, TlsError> {
    let (cert, key) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::SelfSigned { data_dir, host } => {
            let cert = data_dir.join(SELF_SIGNED_CERT_FILE);
            let key = data_dir.join(SELF_SIGNED_KEY_FILE);
            if !cert.exists() || !key.exists() {
                make_self_signed(&cert, &key, host)?;
            }
            (cert, key)
        }
    };
    let read_err = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| read_err(&cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&cert, e))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate { path: cert });
    };
    let fingerprint = fingerprint(leaf);
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| read_err(&key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint,
    })
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Makes a self-signed certificate and key, written whole (temp file, rename).
fn make_self_signed(cert: &Path, key: &Path, host: &str) -> Result<(), TlsError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if !host.is_empty() && !names.iter().any(|n| n == host) && host != "0.0.0.0" {
        names.push(host.to_string());
    }
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_whole(key, made.key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_whole(cert, made.cert.pem().as_bytes(), 0o644)
}

fn write_whole(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
