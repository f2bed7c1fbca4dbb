//! Who is calling: the presented key (header, bearer or query) and what it may do.

use http::{HeaderMap, StatusCode};

use crate::http::app::App;
use crate::http::request::{bearer, header_str, query_param};
use crate::http::response::{flow_unavailable, forbidden, not_found, unauthorized, Reply};
use crate::store::meta::Scope;
use crate::store::{KeyAuth, Store};

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

/// The workspace a listing covers: a key's own, or the one the admin names with
/// `workspaceId` (none: all). A workspace key may not read another one.
pub fn readable_workspace(caller: &Caller, query: Option<&str>) -> Result<Option<String>, Reply> {
    let ws = caller
        .workspace()
        .map(str::to_owned)
        .or_else(|| query_param(query, "workspaceId"));
    if let Some(w) = &ws {
        caller.may_read(w, "workspace")?;
    }
    Ok(ws)
}

/// The flow `id` if `caller` may read it (404 otherwise, for other workspaces too).
pub fn readable_flow(
    app: &App,
    caller: &Caller,
    id: &str,
) -> Result<std::sync::Arc<crate::store::Flow>, Reply> {
    let Some(flow) = app.store.flow(id) else {
        // A quarantined flow answers 503 to whoever may read it, 404 to anyone else.
        // One whose flow file cannot be read has no workspace to check: only the
        // admin learns of it.
        let record = app.store.flow_record(id);
        let reason = app.store.flow_unavailable(id);
        return Err(match (record, reason) {
            (Some(record), Some(reason)) => match caller.may_read(&record.workspace_id, "flow") {
                Ok(()) => flow_unavailable(id, &reason),
                Err(reply) => reply,
            },
            (None, Some(reason)) if *caller == Caller::Admin => flow_unavailable(id, &reason),
            _ => not_found("flow"),
        });
    };
    let ws = flow.record().workspace_id.clone();
    caller.may_read(&ws, "flow")?;
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::AUTHORIZATION;

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
}
