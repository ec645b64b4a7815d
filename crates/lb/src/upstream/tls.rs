//! TLS to `https://` backends: the backend's certificate verified against
//! `--backend-ca` (or the system's roots), the URL's host sent as SNI, an
//! optional client certificate (mTLS), and ALPN offering HTTP/2 first.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::edge::tls::{CertFiles, TlsError};

/// How the lb authenticates `https://` backends and itself to them.
#[derive(Debug, Clone, Default)]
pub struct BackendTlsSettings {
    /// PEM certificates the backends' chains must lead to; the system's
    /// roots when `None`.
    pub ca: Option<PathBuf>,
    /// A client certificate and key for backends that require one.
    pub client_cert: Option<CertFiles>,
}

/// The connectors, built once at start.
#[derive(Clone)]
pub(crate) struct BackendTls {
    /// ALPN `h2`, `http/1.1`.
    any: TlsConnector,
    /// ALPN `http/1.1` only: for upgrades, which HTTP/2 does not carry here.
    http1: TlsConnector,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendTls")
    }
}

#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl BackendTls {
    /// Reads the files; an error names the flag and the file.
    pub fn load(settings: &BackendTlsSettings) -> Result<BackendTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca {
            Some(path) => {
                let error = |why: String| TlsError::File {
                    flag: "--backend-ca".into(),
                    path: path.display().to_string(),
                    why,
                };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect())
                    .map_err(|e| error(e.to_string()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(error("no PEM certificate in the file".into()));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match &settings.client_cert {
            Some(files) => {
                let key = crate::edge::tls::load_pair(
                    ["--backend-client-cert", "--backend-client-key"],
                    files,
                    &provider,
                    &mut Vec::new(),
                )?;
                builder.with_client_cert_resolver(Arc::new(ClientCert(Arc::new(key))))
            }
            None => builder.with_no_client_auth(),
        };
        let mut http1 = config.clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(BackendTls {
            any: TlsConnector::from(Arc::new(config)),
            http1: TlsConnector::from(Arc::new(http1)),
        })
    }

    /// A handshake with the backend at `host` over `stream`; true when it
    /// chose HTTP/2.
    pub async fn connect(
        &self,
        stream: TcpStream,
        host: &str,
        http1_only: bool,
    ) -> Result<(TlsStream<TcpStream>, bool), String> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| format!("{host:?} is not a server name: {e}"))?
            .to_owned();
        let connector = if http1_only { &self.http1 } else { &self.any };
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((tls, h2))
    }
}
