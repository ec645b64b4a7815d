//! TLS termination: certificates from PEM files, chosen by SNI, reloaded in
//! place.
//!
//! One [`Terminator`] per lb holds the rustls configuration (TLS 1.3, and
//! 1.2 unless `--tls-min-version 1.3`; ALPN `h2` then `http/1.1`; session
//! tickets and a session cache for resumption) and a certificate store the
//! handshakes read through an `ArcSwap`. [`Terminator::reload`] reads every
//! file again and swaps the store only when all of them load: a renewed file
//! that is bad keeps the certificates in use, and open connections are
//! never touched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use crate::edge::client_io::ClientIo;
use crate::edge::tls_stream::TlsConn;

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The oldest protocol version clients may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    V1_2,
    V1_3,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            other => Err(format!(
                "{other:?} is not a TLS version weir offers (1.2 or 1.3)"
            )),
        }
    }
}

/// What the TLS listener serves.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// For clients that send no server name, or one no other certificate
    /// names; without it, the first of `by_name`.
    pub default: Option<CertFiles>,
    /// Certificates by server name (`example.com`, or `*.example.com`).
    pub by_name: Vec<(String, CertFiles)>,
    pub min_version: TlsVersion,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag}: {path}: {why}")]
    File {
        flag: String,
        path: String,
        why: String,
    },
    #[error("TLS needs a certificate: --tls-cert and --tls-key, or --tls NAME=CERT:KEY")]
    NoCertificate,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificates in use.
#[derive(Debug)]
struct Loaded {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// The files' modification times when last read.
type Stamps = Vec<(PathBuf, Option<SystemTime>)>;

/// The handshakes' view of the certificates, swapped whole on reload.
#[derive(Debug)]
struct Store(ArcSwap<Loaded>);

impl ResolvesServerCert for Store {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.0.load();
        let Some(name) = hello.server_name() else {
            return Some(loaded.default.clone());
        };
        let name = name.to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        let found = loaded
            .by_name
            .get(&name)
            .or_else(|| wildcard.and_then(|w| loaded.by_name.get(&w)));
        Some(found.unwrap_or(&loaded.default).clone())
    }
}

/// Accepts TLS on client connections with the lb's certificates.
pub struct Terminator {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    store: Arc<Store>,
    config: Arc<ServerConfig>,
    /// As of the last load, good or bad.
    read_at: std::sync::Mutex<Stamps>,
    /// Why the last reload failed: tried again until it loads (a pair
    /// caught half-renewed), reported once per reason.
    failing: std::sync::Mutex<Option<String>>,
}

impl Terminator {
    /// Loads every certificate; any file that does not load is an error
    /// naming its flag and path.
    pub fn new(settings: TlsSettings) -> Result<Terminator, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut read_at = Vec::new();
        let loaded = load_all(&settings, &provider, &mut read_at)?;
        let store = Arc::new(Store(ArcSwap::from_pointee(loaded)));
        let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(Terminator {
            settings,
            provider,
            store,
            config: Arc::new(config),
            read_at: std::sync::Mutex::new(read_at),
            failing: std::sync::Mutex::new(None),
        })
    }

    /// The handshake; the connection is served as [`ClientIo::Tls`].
    pub(crate) async fn accept(&self, stream: TcpStream) -> std::io::Result<ClientIo> {
        let tls = TlsConn::accept(self.config.clone(), stream).await?;
        Ok(ClientIo::Tls(Box::new(tls)))
    }

    /// Reads every file again and uses them if all load; otherwise keeps
    /// the certificates in use and says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut read_at = Vec::new();
        let loaded = load_all(&self.settings, &self.provider, &mut read_at);
        *self.read_at.lock().unwrap_or_else(|e| e.into_inner()) = read_at;
        self.store.0.store(Arc::new(loaded?));
        Ok(())
    }

    /// [`Terminator::reload`], logged (SIGHUP, a change on disk); whether
    /// the new certificates are in use.
    pub fn reload_or_keep(&self) -> bool {
        let reloaded = self.reload();
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match reloaded {
            Ok(()) => {
                tracing::info!("TLS certificates reloaded");
                *failing = None;
                true
            }
            Err(e) => {
                let why = e.to_string();
                if failing.as_deref() != Some(why.as_str()) {
                    tracing::warn!(error = %why, "TLS certificates not reloaded; the ones in use stay");
                }
                *failing = Some(why);
                false
            }
        }
    }

    /// When each certificate in use expires (its leaf's `notAfter`, Unix
    /// seconds), by the server name it is chosen for; `default` is the one
    /// from `--tls-cert`. Read from the certificates the handshakes use, so
    /// a renewal shows once it is loaded, not when the file changes.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        let loaded = self.store.0.load();
        let mut found: Vec<(String, i64)> = loaded
            .by_name
            .iter()
            .filter_map(|(name, key)| Some((name.clone(), not_after(key)?)))
            .collect();
        if self.settings.default.is_some() {
            found.extend(not_after(&loaded.default).map(|t| ("default".to_string(), t)));
        }
        found.sort();
        found
    }

    /// Whether the files should be read again: one changed on disk since
    /// it was last read (renewed in place, or a symlink swapped, as
    /// cert-manager does), or the last reload failed.
    pub fn due_for_reload(&self) -> bool {
        if self
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return true;
        }
        self.read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(path, stamp)| modified(path) != *stamp)
    }
}

fn load_all(
    settings: &TlsSettings,
    provider: &CryptoProvider,
    stamps: &mut Stamps,
) -> Result<Loaded, TlsError> {
    let mut by_name = HashMap::new();
    for (name, files) in &settings.by_name {
        let flag = format!("--tls {name}");
        let key = load_pair([flag.as_str(), flag.as_str()], files, provider, stamps)?;
        by_name.insert(name.to_ascii_lowercase(), Arc::new(key));
    }
    let default = match &settings.default {
        Some(files) => Arc::new(load_pair(
            ["--tls-cert", "--tls-key"],
            files,
            provider,
            stamps,
        )?),
        None => {
            let (first, _) = settings.by_name.first().ok_or(TlsError::NoCertificate)?;
            by_name[&first.to_ascii_lowercase()].clone()
        }
    };
    Ok(Loaded { default, by_name })
}

/// `flags`: what names the certificate file and the key file, for errors.
pub(crate) fn load_pair(
    [cert_flag, key_flag]: [&str; 2],
    files: &CertFiles,
    provider: &CryptoProvider,
    stamps: &mut Stamps,
) -> Result<CertifiedKey, TlsError> {
    let error = |path: &Path, why: String| TlsError::File {
        flag: if path == files.key {
            key_flag
        } else {
            cert_flag
        }
        .to_string(),
        path: path.display().to_string(),
        why,
    };
    stamps.push((files.cert.clone(), modified(&files.cert)));
    stamps.push((files.key.clone(), modified(&files.key)));
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error(&files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(error(&files.cert, "no PEM certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| error(&files.key, format!("no usable PEM private key: {e}")))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        let why = match e {
            rustls::Error::InconsistentKeys(_) => "the key does not match the certificate".into(),
            other => other.to_string(),
        };
        error(&files.key, why)
    })
}

/// The leaf certificate's `notAfter`, in Unix seconds.
fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.end_entity_cert().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
