//! A small HTTP/1.1 client on hyper for the operator commands and `bench http`.
//! Plain `http://` only (the server speaks plain HTTP; put TLS in front of it).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad URL {0:?}: only http://host:port/... is supported")]
    Url(String),
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

/// `host:port` and the path-and-query of an http URL.
pub fn split_url(url: &str) -> Result<(String, String), ClientError> {
    let uri: Uri = url.parse().map_err(|_| ClientError::Url(url.into()))?;
    if uri.scheme_str() != Some("http") {
        return Err(ClientError::Url(url.into()));
    }
    let auth = uri
        .authority()
        .ok_or_else(|| ClientError::Url(url.into()))?;
    let port = auth.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    Ok((format!("{}:{port}", auth.host()), path))
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
    pub async fn open(addr: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.into(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
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
