//! Who is calling: the presented key (header, bearer or query) and what it may do.

use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};

use crate::http::response::{forbidden, unauthorized, Reply};
use crate::store::meta::Scope;
use crate::store::{KeyAuth, Store};

/// Longest query string looked at for keys, in bytes.
pub const QUERY_BYTES_MAX: usize = 8192;

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Decodes `%XX` and `+` in a query value; `None` if it is not valid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of query parameter `name`, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let query = query.filter(|q| q.len() <= QUERY_BYTES_MAX)?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v)).flatten()
    })
}

/// The key a webhook sender presented: `X-API-Key`, `Authorization: Bearer`, or the
/// `api_key` / `access_token` query parameter (for senders that cannot set headers).
pub fn presented_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    header_str(headers, "x-api-key")
        .or_else(|| bearer(headers))
        .map(str::to_owned)
        .or_else(|| query_param(query, "api_key"))
        .or_else(|| query_param(query, "access_token"))
        .filter(|k| !k.is_empty())
}

/// An authenticated `/api` caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Key(KeyAuth),
}

/// The `/api` caller from `Authorization: Bearer` or `X-API-Key`, or a 401 reply.
/// The one answer for a webhook id that is unknown, or not visible to the caller.
pub fn webhook_not_found() -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "webhook_not_found",
        "no flow has this webhook",
    )
}

pub fn api_caller(store: &Store, headers: &HeaderMap) -> Result<Caller, Reply> {
    let presented = bearer(headers)
        .or_else(|| header_str(headers, "x-api-key"))
        .ok_or_else(unauthorized)?;
    if store.is_admin(presented) {
        return Ok(Caller::Admin);
    }
    store
        .authenticate(presented)
        .map(Caller::Key)
        .map_err(|_| unauthorized())
}

impl Caller {
    /// Admin only (key and workspace management, flow changes).
    pub fn require_admin(&self) -> Result<(), Reply> {
        match self {
            Self::Admin => Ok(()),
            Self::Key(_) => Err(forbidden("this call needs the admin key")),
        }
    }

    /// May read the flows of `workspace_id`: the admin, or a key of that workspace with
    /// scope `read`. Another workspace's key gets 404 (it must not learn the flow exists).
    pub fn may_read(&self, workspace_id: &str, what: &str) -> Result<(), Reply> {
        match self {
            Self::Admin => Ok(()),
            Self::Key(k) if k.workspace_id != workspace_id => {
                Err(crate::http::response::not_found(what))
            }
            Self::Key(k) if !k.scopes.contains(&Scope::Read) => {
                Err(forbidden("this key lacks the read scope"))
            }
            Self::Key(_) => Ok(()),
        }
    }

    /// May use the playground on a flow of `workspace_id`: the admin or any key of it.
    /// The playground appends real (test-flagged) events, so it needs what a sender
    /// needs: the admin key, or a key with scope `ingest` in the flow's workspace. A
    /// flow of another workspace answers exactly as an unknown webhook does.
    pub fn may_test(&self, workspace_id: &str) -> Result<(), Reply> {
        match self {
            Self::Admin => Ok(()),
            Self::Key(k) if k.workspace_id != workspace_id => Err(webhook_not_found()),
            Self::Key(k) if !k.scopes.contains(&Scope::Ingest) => Err(Reply::error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the playground needs the admin key or a key with scope ingest",
            )),
            Self::Key(_) => Ok(()),
        }
    }

    /// The workspace a key is limited to (`None` for the admin).
    pub fn workspace(&self) -> Option<&str> {
        match self {
            Self::Admin => None,
            Self::Key(k) => Some(&k.workspace_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_header_bearer_or_query_in_that_order() {
        let mut h = HeaderMap::new();
        assert_eq!(
            presented_key(&h, Some("api_key=pk_q%5F1&x=1")),
            Some("pk_q_1".into())
        );
        assert_eq!(
            presented_key(&h, Some("access_token=tok")),
            Some("tok".into())
        );
        h.insert(AUTHORIZATION, "Bearer pk_b".parse().expect("value"));
        assert_eq!(presented_key(&h, Some("api_key=pk_q")), Some("pk_b".into()));
        h.insert("x-api-key", "pk_h".parse().expect("value"));
        assert_eq!(presented_key(&h, None), Some("pk_h".into()));
    }

    #[test]
    fn percent_decoding_refuses_bad_escapes_and_bad_utf8() {
        assert_eq!(percent_decode("a%20b+c"), Some("a b c".into()));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), Some("%4".into()));
    }
}
