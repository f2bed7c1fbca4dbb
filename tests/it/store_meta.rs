//! Metadata of the flow store: workspaces, API keys, flows. Durable, atomic, hashed keys.

use crate::common;

use std::sync::Arc;

use common::store::{clock, config_on, sim_store, ADMIN};
use eventmesh::log::storage::{CrashMode, FaultKind, OpKind, SimStorage};
use eventmesh::log::ManualClock;
use eventmesh::store::meta::{RateLimit, Scope, SignatureScheme};
use eventmesh::store::{FlowPatch, KeyRefusal, NewFlow, NewKey, Store, StoreConfig, StoreError};

#[test]
fn a_default_workspace_always_exists_and_the_admin_key_is_checked() {
    // Proves first start makes the default workspace and stores only the admin key's hash.
    let sim = SimStorage::new();
    let store = sim_store(&sim, &clock());
    assert_eq!(store.workspaces()[0].name, "default");
    assert!(store.is_admin(ADMIN));
    assert!(!store.is_admin("test-admin-key-0123456789abcdeX"));
    assert!(
        store.generated_admin_key().is_none(),
        "a given key is not generated"
    );
}

#[test]
fn first_start_without_an_admin_key_generates_one_that_works_after_restart() {
    // Proves the generated ek_admin_ key is shown once and keeps working after a reopen.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(dir.path())).expect("open");
    let key = store.generated_admin_key().expect("generated").to_owned();
    assert!(key.starts_with("ek_admin_"));
    drop(store);
    let store = Store::open(StoreConfig::new(dir.path())).expect("reopen");
    assert!(store.generated_admin_key().is_none());
    assert!(store.is_admin(&key));
}

#[test]
fn a_second_store_on_one_data_directory_is_refused() {
    // Proves the data directory lock.
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = Store::open(StoreConfig::new(dir.path())).expect("open");
    let err = Store::open(StoreConfig::new(dir.path())).expect_err("second open");
    assert!(err.to_string().contains("lock"), "{err}");
}

#[test]
fn keys_authenticate_until_revoked_or_expired_and_rotation_keeps_the_old_one_for_the_grace() {
    // Proves key lifecycle: scopes, workspace, revocation, expiry, rotation grace.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let ws = store.create_workspace("acme").expect("workspace");
    let (rec, key) = store
        .create_key(NewKey {
            workspace_id: Some(ws.id.clone()),
            name: "ci".into(),
            scopes: Some(vec![Scope::Ingest, Scope::Read]),
            expires_at_ms: Some(clock.now_ms_for_test() + 60_000),
            ..NewKey::default()
        })
        .expect("key");
    assert!(key.starts_with("pk_live_"));
    let auth = store.authenticate(&key).expect("valid");
    assert_eq!(
        (auth.workspace_id.as_str(), auth.scopes.len()),
        (ws.id.as_str(), 2)
    );
    assert_eq!(
        store.authenticate("pk_live_000000000000_nope"),
        Err(KeyRefusal::Unknown)
    );
    assert_eq!(
        store.authenticate(&format!("{key}x")),
        Err(KeyRefusal::Unknown)
    );

    let (_, new_key) = store.rotate_key(&rec.id, 30).expect("rotate");
    assert_ne!(new_key, key);
    assert!(store.authenticate(&new_key).is_ok());
    assert!(
        store.authenticate(&key).is_ok(),
        "the old key works during the grace"
    );
    clock.advance(31_000);
    assert_eq!(
        store.authenticate(&key),
        Err(KeyRefusal::Unknown),
        "grace over"
    );
    assert!(store.authenticate(&new_key).is_ok());
    clock.advance(30_000);
    assert_eq!(store.authenticate(&new_key), Err(KeyRefusal::Expired));

    let (rec2, key2) = store
        .create_key(NewKey {
            name: "other".into(),
            ..NewKey::default()
        })
        .expect("key");
    assert_eq!(
        store.authenticate(&key2).expect("valid").scopes,
        vec![Scope::Ingest]
    );
    store.revoke_key(&rec2.id).expect("revoke");
    assert_eq!(store.authenticate(&key2), Err(KeyRefusal::Revoked));
}

trait NowForTest {
    fn now_ms_for_test(&self) -> i64;
}
impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> i64 {
        use eventmesh::log::Clock;
        self.now_ms()
    }
}

#[test]
fn no_issued_key_can_be_found_in_the_data_directory() {
    // Proves keys are stored only as hashes: a byte search of every file finds nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        admin_key: Some(ADMIN.into()),
        ..StoreConfig::new(dir.path())
    };
    let store = Store::open(config).expect("open");
    let (rec, key) = store
        .create_key(NewKey {
            name: "k".into(),
            ..NewKey::default()
        })
        .expect("key");
    let (_, rotated) = store.rotate_key(&rec.id, 60).expect("rotate");
    store
        .create_flow(NewFlow {
            name: "f".into(),
            ..NewFlow::default()
        })
        .expect("flow");
    drop(store);
    let mut files = vec![dir.path().to_path_buf()];
    let mut checked = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(
                std::fs::read_dir(&p)
                    .expect("read dir")
                    .map(|e| e.expect("entry").path()),
            );
            continue;
        }
        let bytes = std::fs::read(&p).expect("read");
        for secret in [&key, &rotated, &ADMIN.to_owned()] {
            let secret_part = secret.rsplit('_').next().expect("part");
            assert!(
                !bytes
                    .windows(secret_part.len())
                    .any(|w| w == secret_part.as_bytes()),
                "{} holds a key",
                p.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "checked {checked} files");
}

#[test]
fn flows_get_unguessable_webhook_ids_defaults_and_survive_a_restart() {
    // Proves flow creation defaults, validation, and that the registry is durable.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let (flow, secret) = store
        .create_flow(NewFlow {
            name: "payments".into(),
            scheme: Some(SignatureScheme::Standard),
            ..NewFlow::default()
        })
        .expect("flow");
    assert!(secret.as_deref().is_some_and(|s| s.starts_with("whsec_")));
    assert_eq!(flow.webhook_id.len(), 3 + 32, "128-bit webhook id");
    assert_eq!(
        flow.rate_limit,
        Some(RateLimit {
            per_second: 100,
            burst: 100
        })
    );
    assert_eq!(flow.dedup_window_seconds, 86_400);
    assert!(store.flow_by_webhook(&flow.webhook_id).is_some());
    for bad in [
        NewFlow {
            name: String::new(),
            ..NewFlow::default()
        },
        NewFlow {
            name: "x".into(),
            dedup_window_seconds: Some(0),
            ..NewFlow::default()
        },
        NewFlow {
            name: "x".into(),
            rate_limit: Some(Some(RateLimit {
                per_second: 0,
                burst: 1,
            })),
            ..NewFlow::default()
        },
        NewFlow {
            name: "x".into(),
            workspace_id: Some("ws_nope".into()),
            ..NewFlow::default()
        },
        NewFlow {
            name: "x".into(),
            dedup_key_pointer: Some("no-slash".into()),
            ..NewFlow::default()
        },
    ] {
        assert!(store.create_flow(bad).is_err());
    }
    let off = store
        .update_flow(
            &flow.id,
            FlowPatch {
                rate_limit: Some(None),
                ..FlowPatch::default()
            },
        )
        .expect("patch");
    assert_eq!(off.rate_limit, None);
    drop(store);
    let store = sim_store(&sim, &clock);
    let records = store.flow_records(None);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].rate_limit, None);
    assert_eq!(records[0].signature.secret, secret);
}

#[test]
fn a_new_signature_secret_keeps_the_old_one_for_a_day() {
    // Proves secret rotation records the previous secret with a 24 h deadline.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let (flow, old) = store
        .create_flow(NewFlow {
            name: "gh".into(),
            scheme: Some(SignatureScheme::Github),
            secret: Some("s1".into()),
            ..NewFlow::default()
        })
        .expect("flow");
    let updated = store
        .update_flow(
            &flow.id,
            FlowPatch {
                secret: Some("s2".into()),
                ..FlowPatch::default()
            },
        )
        .expect("patch");
    assert_eq!(updated.signature.secret.as_deref(), Some("s2"));
    let prev = updated.signature.previous.expect("previous");
    assert_eq!(Some(prev.secret), old);
    assert_eq!(prev.valid_until_ms, 1_700_000_000_000 + 24 * 3600 * 1000);
}

#[test]
fn a_deleted_flow_leaves_the_registry_at_once_and_its_files_after() {
    // Proves delete: the webhook stops resolving, the files go, and it stays gone after restart.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || StoreConfig {
        admin_key: Some(ADMIN.into()),
        ..StoreConfig::new(dir.path())
    };
    let store = Store::open(config()).expect("open");
    let (flow, _) = store
        .create_flow(NewFlow {
            name: "gone".into(),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow_dir = dir.path().join("flows").join(&flow.id);
    assert!(flow_dir.exists());
    store.delete_flow(&flow.id).expect("delete");
    assert!(store.flow_by_webhook(&flow.webhook_id).is_none());
    assert!(!flow_dir.exists());
    assert!(matches!(
        store.delete_flow(&flow.id),
        Err(StoreError::NotFound { .. })
    ));
    drop(store);
    let store = Store::open(config()).expect("reopen");
    assert!(store.flow_records(None).is_empty());
    assert!(store.deleted_flows_pending().is_empty());
}

#[test]
fn a_crash_at_any_step_of_a_metadata_write_leaves_the_old_or_the_new_document() {
    // Proves metadata atomicity: a fault at each step of temp-write, sync, rename or
    // directory sync, then power loss (torn), reopens to exactly the before or the after
    // state; and an acknowledged change always survives.
    let before = vec!["default".to_owned(), "before".to_owned()];
    let after = vec![
        "default".to_owned(),
        "before".to_owned(),
        "after".to_owned(),
    ];
    for op in [
        OpKind::Create,
        OpKind::Append,
        OpKind::SyncData,
        OpKind::Rename,
        OpKind::SyncDir,
    ] {
        for fault in [true, false] {
            let sim = SimStorage::new();
            let clock = clock();
            let store = sim_store(&sim, &clock);
            store.create_workspace("before").expect("workspace");
            if fault {
                sim.fail(op, 1, FaultKind::Eio, false);
            }
            let result = store.create_workspace("after");
            assert_eq!(result.is_err(), fault, "{op:?}");
            sim.crash(CrashMode::Torn {
                seed: op as u64 + 17,
            });
            drop(store);
            let store =
                Store::open(config_on(Arc::new(sim.clone()), Arc::clone(&clock))).expect("reopen");
            let names: Vec<String> = store.workspaces().into_iter().map(|w| w.name).collect();
            if fault {
                assert!(names == before || names == after, "{op:?}: {names:?}");
            } else {
                assert_eq!(names, after, "acknowledged change lost ({op:?})");
            }
        }
    }
}
