//! Signature verification per scheme over a 256-byte body, with the headers a real
//! sender makes (`signature::sign`), and a wrong signature (the rejected path).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventmesh::http::signature::{sign, verify};
use eventmesh::store::meta::SignatureScheme;
use http::{HeaderMap, HeaderName, HeaderValue};

const NOW_S: i64 = 1_700_000_000;

fn headers(pairs: Vec<(String, String)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.insert(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(&v).expect("value"),
        );
    }
    map
}

fn signatures(c: &mut Criterion) {
    let body = format!(
        "{{\"event\":\"order.created\",\"pad\":\"{}\"}}",
        "x".repeat(222)
    );
    assert_eq!(body.len(), 256);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let schemes = [
        ("eventmesh", SignatureScheme::Eventmesh),
        ("github", SignatureScheme::Github),
        ("stripe", SignatureScheme::Stripe),
        ("standard", SignatureScheme::Standard),
        ("shopify", SignatureScheme::Shopify),
        ("slack", SignatureScheme::Slack),
    ];
    let mut group = c.benchmark_group("signature_verify_256B");
    group.throughput(Throughput::Elements(1));
    for (name, scheme) in schemes {
        let good = headers(sign(scheme, secret, body.as_bytes(), NOW_S, "msg_1"));
        assert!(verify(scheme, &[secret], &good, body.as_bytes(), NOW_S).is_ok());
        group.bench_function(format!("{name}/valid"), |b| {
            b.iter(|| verify(scheme, &[secret], &good, body.as_bytes(), NOW_S))
        });
        let bad = headers(sign(
            scheme,
            "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA",
            body.as_bytes(),
            NOW_S,
            "msg_1",
        ));
        assert!(verify(scheme, &[secret], &bad, body.as_bytes(), NOW_S).is_err());
        group.bench_function(format!("{name}/wrong"), |b| {
            b.iter(|| verify(scheme, &[secret], &bad, body.as_bytes(), NOW_S))
        });
    }
    group.finish();
}

criterion_group!(benches, signatures);
criterion_main!(benches);
