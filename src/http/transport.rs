//! One accepted connection made ready for hyper: the TLS handshake (when on) and the
//! choice of HTTP/1.1 or HTTP/2, each under a deadline, so that a silent or dripping
//! client is closed before it gets to hyper at all.
//!
//! - Over TLS, ALPN decides: `h2` is HTTP/2, anything else (or nothing) HTTP/1.1.
//! - On plaintext, the first bytes decide: the HTTP/2 connection preface (h2c with
//!   prior knowledge) or anything else (HTTP/1.1). Those bytes are read here and handed
//!   back to hyper first (`Conn`), as if unread.
//!
//! (hyper-util's auto builder can sniff too, but with no deadline on it: a client that
//! sent one byte and stopped would hold its connection for ever.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// What every HTTP/2 connection starts with (RFC 9113, 3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A connection ready for hyper: plaintext (with the bytes read to choose the protocol
/// given back first) or TLS.
#[derive(Debug)]
pub enum Conn {
    Plain {
        stream: TcpStream,
        prefix: Vec<u8>,
        at: usize,
    },
    Tls(Box<TlsStream<TcpStream>>),
}

/// Runs the TLS handshake (with `acceptor`) within `handshake`, then chooses the
/// protocol within `first_bytes`. `None`: the client left, failed the handshake or was
/// too slow; the connection is dropped.
pub async fn open(
    mut stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    handshake: Duration,
    first_bytes: Duration,
) -> Option<(Conn, Protocol)> {
    if let Some(acceptor) = acceptor {
        let tls = tokio::time::timeout(handshake, acceptor.accept(stream))
            .await
            .ok()?
            .ok()?;
        let protocol = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        return Some((Conn::Tls(Box::new(tls)), protocol));
    }
    let (protocol, prefix) = tokio::time::timeout(first_bytes, sniff(&mut stream))
        .await
        .ok()??;
    Some((
        Conn::Plain {
            stream,
            prefix,
            at: 0,
        },
        protocol,
    ))
}

/// Reads until the bytes either stop matching the HTTP/2 preface (HTTP/1.1) or are the
/// whole of it (HTTP/2). `None` if the client closes first.
async fn sniff(stream: &mut TcpStream) -> Option<(Protocol, Vec<u8>)> {
    let mut seen = Vec::with_capacity(H2_PREFACE.len());
    loop {
        let mut chunk = [0u8; 24];
        let want = H2_PREFACE.len() - seen.len();
        let n = stream.read(&mut chunk[..want]).await.ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&seen) {
            return Some((Protocol::Http1, seen));
        }
        if seen.len() == H2_PREFACE.len() {
            return Some((Protocol::Http2, seen));
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain { stream, prefix, at } => {
                if *at < prefix.len() {
                    let n = (prefix.len() - *at).min(buf.remaining());
                    buf.put_slice(&prefix[*at..*at + n]);
                    *at += n;
                    return Poll::Ready(Ok(()));
                }
                Pin::new(stream).poll_read(cx, buf)
            }
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain { stream, .. } => Pin::new(stream).poll_write(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain { stream, .. } => Pin::new(stream).poll_write_vectored(cx, bufs),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain { stream, .. } => stream.is_write_vectored(),
            Conn::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain { stream, .. } => Pin::new(stream).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain { stream, .. } => Pin::new(stream).poll_shutdown(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
