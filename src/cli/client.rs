//! A small HTTP/1.1 client on hyper for the operator commands and `bench http`, over
//! plain TCP (`http://`) or TLS (`https://`, rustls). A TLS server's certificate is
//! checked against `EVENTMESH_CACERT` (a PEM file) when set, else the system's roots.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad URL {0:?}: http://host:port/... or https://host:port/... is supported")]
    Url(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP error: {0}")]
    Http(String),
    #[error("the server answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("{0}")]
    Usage(String),
}

/// Where a URL points: `host:port`, the host name (for TLS), and whether it is https.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: String,
    pub host: String,
    pub tls: bool,
}

/// The endpoint and the path-and-query of an http or https URL.
pub fn split_url(url: &str) -> Result<(Endpoint, String), ClientError> {
    let uri: Uri = url.parse().map_err(|_| ClientError::Url(url.into()))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(ClientError::Url(url.into())),
    };
    let auth = uri
        .authority()
        .ok_or_else(|| ClientError::Url(url.into()))?;
    let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((
        Endpoint {
            addr: format!("{}:{port}", auth.host()),
            host,
            tls,
        },
        path,
    ))
}

/// A byte stream the client speaks HTTP on: TCP or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// The PEM file `--cacert` named, for every connection of this process.
static CACERT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Trusts the certificates of `path` (a PEM file) for https:// servers, instead of the
/// system's roots.
pub fn trust(path: &std::path::Path) {
    let _ = CACERT.set(path.to_path_buf());
}

/// The roots a TLS server's certificate is checked against.
fn tls_roots() -> Result<rustls::RootCertStore, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let named = CACERT
        .get()
        .map(|p| p.as_os_str().to_owned())
        .or_else(|| std::env::var_os("EVENTMESH_CACERT"));
    if let Some(path) = named {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&path)
            .map_err(|e| ClientError::Tls(format!("EVENTMESH_CACERT: {e}")))?;
        for cert in certs {
            let cert = cert.map_err(|e| ClientError::Tls(format!("EVENTMESH_CACERT: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("EVENTMESH_CACERT: {e}")))?;
        }
        return Ok(roots);
    }
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(ClientError::Tls(
            "no trusted root certificates (set EVENTMESH_CACERT to the server's PEM)".into(),
        ));
    }
    Ok(roots)
}

async fn connect_tls(
    stream: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(tls_roots()?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| ClientError::Tls(format!("{host}: {e}")))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| ClientError::Tls(format!("{host}: {e}")))
}

/// One keep-alive connection.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("host", &self.host).finish()
    }
}

impl Conn {
    pub async fn open(endpoint: &Endpoint) -> Result<Self, ClientError> {
        let addr = endpoint.addr.as_str();
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.into(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let io: Box<dyn Io> = if endpoint.tls {
            Box::new(connect_tls(stream, &endpoint.host).await?)
        } else {
            Box::new(stream)
        };
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.into(),
        })
    }

    /// Sends a request; returns the status, headers and whole body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        let response = self.start(method, path, headers, body).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok((status, headers, body))
    }

    /// Sends a request and returns the response with its body still streaming.
    pub async fn start(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        self.sender
            .ready()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let mut req = Request::builder().method(method).uri(path);
        if let Some(h) = req.headers_mut() {
            if let Ok(v) = HeaderValue::from_str(&self.host) {
                h.insert(http::header::HOST, v);
            }
            for (n, v) in headers {
                h.insert(n.clone(), v.clone());
            }
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        self.sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }
}

/// A header pair from text, or an error naming it.
pub fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ClientError> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ClientError::Http(format!("bad header {name}")))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| ClientError::Http(format!("bad value for {name}")))?;
    Ok((n, v))
}
