//! TLS for `https://` targets (rustls): the public roots (webpki-roots) and, for a private CA
//! or a self-signed test server, the certificates of `--cacert FILE`. ALPN offers `h2` for
//! single-packet and `http/1.1` otherwise; the server's choice is checked, never assumed.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use super::TransportError;
use crate::error::InputError;

/// A connection the request goes over: a TCP stream, or TLS over one (or over a gate).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Makes `ring` the process's TLS provider, for client libraries (reqwest) that ask for one;
/// idempotent.
pub fn install_default_provider() {
    // Fails only when a provider is installed already, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS client for `alpn` (`h2` or `http/1.1`), trusting the public roots and `cacert`.
pub fn connector(cacert: Option<&Path>, alpn: &[u8]) -> Result<TlsConnector, InputError> {
    Ok(TlsConnector::from(Arc::new(client_config(cacert, alpn)?)))
}

/// The configuration of [`connector`].
pub fn client_config(
    cacert: Option<&Path>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, InputError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = cacert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| {
                InputError::Invalid(format!(
                    "--cacert {}: not PEM certificates: {e}",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(InputError::Invalid(format!(
                "--cacert {}: no certificate in it",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| InputError::Invalid(format!("--cacert {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| InputError::Invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The name the server's certificate must carry: the URL's host (a name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TransportError> {
    ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).map_err(|e| {
        TransportError::Tls(format!(
            "'{host}' cannot be checked against a certificate: {e}"
        ))
    })
}

/// A TCP connection to `host:port` with `TCP_NODELAY` (what is written leaves at once, not
/// coalesced with what follows).
pub async fn tcp(host: &str, port: u16) -> Result<tokio::net::TcpStream, TransportError> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(TransportError::Connect)?;
    tcp.set_nodelay(true).map_err(TransportError::Io)?;
    Ok(tcp)
}

/// A connection to `host:port` ([`tcp`]), over TLS with `tls` (ALPN `alpn`, checked).
pub async fn open(
    host: &str,
    port: u16,
    tls: Option<&TlsConnector>,
    alpn: &[u8],
) -> Result<Box<dyn Io>, TransportError> {
    let tcp = tcp(host, port).await?;
    Ok(match tls {
        Some(connector) => Box::new(connect(connector, host, tcp, alpn).await?),
        None => Box::new(tcp),
    })
}

/// TLS over `io` to `host`, checking that the server chose `alpn`. A server that chooses no
/// protocol at all speaks HTTP/1.1 (RFC 7301 §3.2: ALPN is optional for the server): fine for
/// `http/1.1`, "no HTTP/2" for `h2`.
pub async fn connect<T: Io + 'static>(
    connector: &TlsConnector,
    host: &str,
    io: T,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<T>, TransportError> {
    let name = server_name(host)?;
    let tls = connector.connect(name, io).await.map_err(|e| {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls) => TransportError::Tls(rustls.to_string()),
            None if e.kind() == std::io::ErrorKind::InvalidData => {
                TransportError::Tls(e.to_string())
            }
            None => TransportError::Io(e),
        }
    })?;
    let chosen = tls.get_ref().1.alpn_protocol();
    match chosen {
        Some(p) if p == alpn => Ok(tls),
        None if alpn == b"http/1.1" => Ok(tls),
        None => Err(TransportError::NotH2(
            "it negotiated no protocol in ALPN: HTTP/1.1".to_owned(),
        )),
        Some(p) if alpn == b"h2" => Err(TransportError::NotH2(format!(
            "it chose {} in ALPN",
            String::from_utf8_lossy(p)
        ))),
        Some(p) => Err(TransportError::Tls(format!(
            "the server chose {} in ALPN, not {}",
            String::from_utf8_lossy(p),
            String::from_utf8_lossy(alpn)
        ))),
    }
}

/// TLS clients for an `https://` endpoint: one offering `http/1.1`, one `h2`, and the
/// configuration of the first for a client library (`stress --target`'s keep-alive client).
#[derive(Clone)]
pub struct Tls {
    pub http1: TlsConnector,
    pub h2: TlsConnector,
    pub config: rustls::ClientConfig,
}

impl Tls {
    /// Clients trusting the public roots and `cacert`'s certificates.
    pub fn new(cacert: Option<&Path>) -> Result<Self, InputError> {
        let config = client_config(cacert, b"http/1.1")?;
        Ok(Self {
            http1: TlsConnector::from(Arc::new(config.clone())),
            h2: connector(cacert, b"h2")?,
            config,
        })
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}
