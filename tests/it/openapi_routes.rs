//! Every route the server answers is documented in docs/openapi.yaml, with its method.

use eventmesh::http::router::ROUTES;

#[test]
fn every_route_is_in_the_openapi_file() {
    // Proves the OpenAPI document lists each (path, method) of the router's table.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml"))
        .expect("read openapi");
    let lines: Vec<&str> = doc.lines().collect();
    for route in ROUTES {
        let (method, path) = (route.method, route.path);
        let key = format!("  {path}:");
        let at = lines
            .iter()
            .position(|l| *l == key)
            .unwrap_or_else(|| panic!("{path} is not a path in docs/openapi.yaml"));
        // The operations of a path are the lines indented deeper, up to the next path.
        let op = format!("    {}:", method.to_ascii_lowercase());
        let has = lines[at + 1..]
            .iter()
            .take_while(|l| {
                let next_path = l.starts_with("  /");
                let top_level = !l.is_empty() && !l.starts_with(' ');
                !next_path && !top_level
            })
            .any(|l| *l == op);
        assert!(has, "{method} {path} is not documented");
    }
    assert!(doc.contains("openapi: 3.1"));
}

#[test]
fn every_path_in_the_openapi_file_is_a_route() {
    // Proves the other direction: the document promises no path the table lacks.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml"))
        .expect("read openapi");
    let in_paths = doc
        .lines()
        .skip_while(|l| *l != "paths:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '));
    let documented: Vec<&str> = in_paths
        .filter_map(|l| {
            l.strip_prefix("  /")
                .map(|_| l.trim().trim_end_matches(':'))
        })
        .collect();
    assert!(documented.len() >= ROUTES.len() / 2, "{documented:?}");
    for path in documented {
        assert!(
            ROUTES.iter().any(|r| r.path == path),
            "{path} is documented but the route table has no such route"
        );
    }
}
