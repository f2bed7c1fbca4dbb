//! The `eventmesh` binary: parses the command line and hands over to `cli`.

/// mimalloc, not glibc's malloc: the server frees on other threads what it allocated
/// (request buffers, records handed to the journal thread), which glibc pays for in
/// arena locks and chunk consolidation (measured in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eventmesh::cli::main()
}
