//! The real file system's writable files: writes into reserved zeros go through a
//! shared map (`map_writes`), the rest through `pwrite`; every reader sees the same bytes.

use eventmesh::log::storage::{StdStorage, Storage};

fn read_all(storage: &StdStorage, path: &std::path::Path) -> Vec<u8> {
    let file = storage.open_read(path).expect("open read");
    let len = file.len().expect("len");
    let mut buf = vec![0u8; len as usize];
    let n = eventmesh::log::storage::read_full(&*file, 0, &mut buf).expect("read");
    buf.truncate(n);
    buf
}

#[test]
fn mapped_and_pwritten_bytes_read_back_the_same_through_truncates_and_reopens() {
    // Proves a segment written through its map (into preallocated zeros) reads back
    // through another descriptor before any sync, that a truncate under the map and the
    // `pwrite`s past the reserve after it land where they should, and that a reopened
    // file resumes at its logical end.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seg");
    let storage = StdStorage;
    let mut file = storage.create(&path).expect("create");
    file.map_writes();
    file.preallocate(8192).expect("reserve");
    file.append(b"hello").expect("append into the reserve");
    file.write_at(5, b", map")
        .expect("write_at into the reserve");
    assert_eq!(file.len(), 10);
    assert_eq!(file.allocated(), 8192);
    let on_disk = read_all(&storage, &path);
    assert_eq!(on_disk.len(), 8192, "the reserve is still there");
    assert_eq!(&on_disk[..10], b"hello, map");
    assert!(on_disk[10..].iter().all(|&b| b == 0));

    // Cut under the map, then append past the reserve (a pwrite that grows the file).
    file.truncate(5).expect("truncate");
    file.append(b" world").expect("append past the end");
    assert_eq!(read_all(&storage, &path), b"hello world");

    // A new reserve, mapped again, larger than the old map.
    file.preallocate(64 * 1024).expect("reserve again");
    let big = vec![7u8; 20_000];
    file.append(&big).expect("append into the new reserve");
    file.sync_data().expect("sync");
    let on_disk = read_all(&storage, &path);
    assert_eq!(on_disk.len(), 64 * 1024);
    assert_eq!(&on_disk[..11], b"hello world");
    assert_eq!(&on_disk[11..20_011], &big[..]);
    drop(file);

    let mut file = storage.open_append(&path).expect("reopen");
    file.resume_at(20_011);
    file.map_writes();
    file.append(b"!").expect("append after reopen");
    assert_eq!(read_all(&storage, &path)[20_011], b'!');
    file.truncate(20_012).expect("cut the reserve");
    let on_disk = read_all(&storage, &path);
    assert_eq!(on_disk.len(), 20_012);
    assert_eq!(&on_disk[..11], b"hello world");
}
