//! The one route table. It drives dispatch (`router.rs` matches on `Handler`), the 405
//! answers and their `Allow` header, and the OpenAPI check (tests/it/openapi_routes.rs
//! reads `ROUTES`): a route is added in one place, or not at all.

use http::Method;

/// What a route does. `router::dispatch` has one arm per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Dashboard,
    Asset,
    Healthz,
    Readyz,
    Metrics,
    Ingest,
    IngestBatch,
    CreateWorkspace,
    ListWorkspaces,
    CreateKey,
    ListKeys,
    RotateKey,
    RevokeKey,
    CreateFlow,
    ListFlows,
    GetFlow,
    PatchFlow,
    DeleteFlow,
    FlowRequests,
    Playground,
    Events,
    Event,
    Poll,
    Commit,
    Seek,
    Consumers,
    DeleteConsumer,
    Stream,
    FlowAnalytics,
    WorkspaceAnalytics,
}

/// One route: its method, its path template (`{name}` matches one segment) and what
/// answers it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: Handler,
}

const fn route(method: &'static str, path: &'static str, handler: Handler) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

/// Every route the server answers. `docs/openapi.yaml` must list each one (a test checks
/// it both ways). Paths under `/api` need a key; the others authenticate themselves.
pub const ROUTES: &[Route] = &[
    route("GET", "/", Handler::Dashboard),
    route("GET", "/index.html", Handler::Dashboard),
    route("GET", "/assets/{file}", Handler::Asset),
    route("GET", "/healthz", Handler::Healthz),
    route("GET", "/readyz", Handler::Readyz),
    route("GET", "/metrics", Handler::Metrics),
    route("POST", "/webhooks/{webhookId}", Handler::Ingest),
    route("POST", "/webhooks/{webhookId}/batch", Handler::IngestBatch),
    route("POST", "/api/workspaces", Handler::CreateWorkspace),
    route("GET", "/api/workspaces", Handler::ListWorkspaces),
    route("POST", "/api/keys", Handler::CreateKey),
    route("GET", "/api/keys", Handler::ListKeys),
    route("POST", "/api/keys/{keyId}/rotate", Handler::RotateKey),
    route("DELETE", "/api/keys/{keyId}", Handler::RevokeKey),
    route("POST", "/api/flows", Handler::CreateFlow),
    route("GET", "/api/flows", Handler::ListFlows),
    route("GET", "/api/flows/{flowId}", Handler::GetFlow),
    route("PATCH", "/api/flows/{flowId}", Handler::PatchFlow),
    route("DELETE", "/api/flows/{flowId}", Handler::DeleteFlow),
    route("GET", "/api/flows/{flowId}/requests", Handler::FlowRequests),
    route("POST", "/api/playground/test", Handler::Playground),
    route("GET", "/api/flows/{flowId}/events", Handler::Events),
    route("GET", "/api/flows/{flowId}/events/{offset}", Handler::Event),
    route(
        "POST",
        "/api/flows/{flowId}/consumers/{name}/poll",
        Handler::Poll,
    ),
    route(
        "POST",
        "/api/flows/{flowId}/consumers/{name}/commit",
        Handler::Commit,
    ),
    route(
        "POST",
        "/api/flows/{flowId}/consumers/{name}/seek",
        Handler::Seek,
    ),
    route("GET", "/api/flows/{flowId}/consumers", Handler::Consumers),
    route(
        "DELETE",
        "/api/flows/{flowId}/consumers/{name}",
        Handler::DeleteConsumer,
    ),
    route("GET", "/api/flows/{flowId}/stream", Handler::Stream),
    route(
        "GET",
        "/api/flows/{flowId}/analytics",
        Handler::FlowAnalytics,
    ),
    route("GET", "/api/analytics", Handler::WorkspaceAnalytics),
];

/// What the table says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'p> {
    /// A route matches: its handler and the path's parameters, in template order.
    Found {
        handler: Handler,
        params: Vec<&'p str>,
    },
    /// The path is a route's, but not with this method: answer 405 with these in `Allow`.
    MethodNotAllowed {
        allow: Vec<&'static str>,
    },
    NotFound,
}

/// The parameters of `segments` under `template`, if it matches (a `{name}` takes one
/// segment, empty too: the handler then answers for an unknown id). Nothing is
/// allocated until a parameter is taken, so most templates cost no allocation.
fn matches<'p>(template: &str, segments: &[&'p str]) -> Option<Vec<&'p str>> {
    let mut parts = template.trim_start_matches('/').split('/');
    let mut params = Vec::new();
    for segment in segments {
        let part = parts.next()?;
        if part.starts_with('{') && part.ends_with('}') {
            params.push(*segment);
        } else if part != *segment {
            return None;
        }
    }
    parts.next().is_none().then_some(params)
}

/// Looks a request up: `segments` is the path without its leading `/`, split on `/`.
/// `HEAD` is answered where `GET` is for the dashboard's files only.
pub fn lookup<'p>(method: &Method, segments: &[&'p str]) -> Lookup<'p> {
    let mut allow = Vec::new();
    for r in ROUTES {
        let Some(params) = matches(r.path, segments) else {
            continue;
        };
        let head_of_file = method == Method::HEAD
            && r.method == "GET"
            && matches!(r.handler, Handler::Dashboard | Handler::Asset);
        if r.method == method.as_str() || head_of_file {
            return Lookup::Found {
                handler: r.handler,
                params,
            };
        }
        allow.push(r.method);
    }
    if allow.is_empty() {
        return Lookup::NotFound;
    }
    allow.sort_unstable();
    allow.dedup();
    Lookup::MethodNotAllowed { allow }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(path: &str) -> Vec<&str> {
        path.trim_start_matches('/').split('/').collect()
    }

    #[test]
    fn every_route_is_found_by_its_own_method_and_template() {
        // Proves the table has no shadowed route: each template, with sample
        // parameters, finds its own handler.
        for r in ROUTES {
            let path = r
                .path
                .split('/')
                .map(|p| if p.starts_with('{') { "x1" } else { p })
                .collect::<Vec<_>>()
                .join("/");
            let method = Method::from_bytes(r.method.as_bytes()).expect("method");
            match lookup(&method, &split(&path)) {
                Lookup::Found { handler, params } => {
                    assert_eq!(handler, r.handler, "{} {}", r.method, r.path);
                    assert_eq!(params.len(), r.path.matches('{').count());
                }
                other => panic!("{} {} gave {other:?}", r.method, r.path),
            }
        }
    }

    #[test]
    fn a_known_path_with_another_method_lists_the_table_s_methods() {
        assert_eq!(
            lookup(&Method::PUT, &split("/api/flows/fl_1")),
            Lookup::MethodNotAllowed {
                allow: vec!["DELETE", "GET", "PATCH"]
            }
        );
        assert_eq!(
            lookup(&Method::GET, &split("/webhooks/wh_1")),
            Lookup::MethodNotAllowed {
                allow: vec!["POST"]
            }
        );
        assert_eq!(lookup(&Method::GET, &split("/nowhere")), Lookup::NotFound);
        assert!(matches!(
            lookup(&Method::HEAD, &split("/")),
            Lookup::Found {
                handler: Handler::Dashboard,
                ..
            }
        ));
    }
}
