//! The `eventmesh` subcommands. `main.rs` calls `main()`; each subcommand lives in its own file.

mod admin;
mod bench;
mod bench_fsync;
mod bench_http;
mod check;
mod client;
mod ops;
mod repair;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::log::FsyncPolicy;

#[derive(Debug, Parser)]
#[command(
    name = "eventmesh",
    version,
    about = "A durable append-only event log with a webhook front door"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: webhooks, the API and the dashboard, on an embedded store.
    Serve(serve::ServeArgs),
    /// Verify every record checksum and index of a data directory or one partition; changes nothing.
    ///
    /// Exit 0: clean. Exit 1: corruption that recovery refuses. Exit 2: only a torn tail
    /// or derived data that recovery would repair. Exit 3: the directory could not be read.
    Check {
        /// A data directory, or one partition's directory.
        dir: PathBuf,
    },
    /// Make a damaged partition open again: keep every record before the first damage
    /// and move everything from there on into side files (`*.aside`) for inspection.
    ///
    /// Run it while the server is stopped (it takes the partition's lock), then restart.
    /// Exit 0: repaired, or nothing to repair. Exit 3: the partition could not be read.
    Repair {
        /// One partition's directory, such as <data>/flows/<flowId>/events.
        dir: PathBuf,
        /// Report what would be kept and set aside, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage flows on a running server.
    Flow {
        #[command(flatten)]
        server: ops::Server,
        #[command(subcommand)]
        cmd: ops::FlowCmd,
    },
    /// Manage API keys on a running server.
    Key {
        #[command(flatten)]
        server: ops::Server,
        #[command(subcommand)]
        cmd: ops::KeyCmd,
    },
    /// Manage workspaces on a running server.
    Workspace {
        #[command(flatten)]
        server: ops::Server,
        #[command(subcommand)]
        cmd: admin::WorkspaceCmd,
    },
    /// A flow's consumers on a running server: list, poll, commit, seek, delete.
    Consumer {
        #[command(flatten)]
        server: ops::Server,
        #[command(subcommand)]
        cmd: admin::ConsumerCmd,
    },
    /// Read stored events on a running server.
    Events {
        #[command(flatten)]
        server: ops::Server,
        #[command(subcommand)]
        cmd: admin::EventsCmd,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `eventmesh completions bash > /etc/bash_completion.d/eventmesh`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Send one JSON event to a webhook URL (with a key and, optionally, a signature).
    Send(ops::SendArgs),
    /// Follow a flow's live stream and print each event.
    Tail {
        #[command(flatten)]
        server: ops::Server,
        #[command(flatten)]
        args: ops::TailArgs,
    },
    /// Print a flow's events from an offset or a time as NDJSON.
    Replay {
        #[command(flatten)]
        server: ops::Server,
        #[command(flatten)]
        args: ops::ReplayArgs,
    },
    /// Measure the engine or the whole system; prints one JSON line last.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Append to one partition, then replay it and reopen it.
    Log(bench::LogArgs),
    /// The raw-file baseline: the same bytes with no framing (buffered writes, or
    /// write + fdatasync per event from each writer thread).
    Raw(bench::RawArgs),
    /// Time opening (recovering) an existing partition, e.g. after `kill -9` of `bench log --dir`.
    Open(bench::OpenArgs),
    /// Memory per key and speed of one flow's idempotency index.
    Dedup(bench::DedupArgs),
    /// Load a running server's webhook (closed loop, or open loop at --rate).
    Http(bench_http::HttpArgs),
    /// Durable appends spread over many files vs one group-committed journal, with no
    /// EventMesh code in the way (the study behind docs/design-journal.md).
    Fsync(bench_fsync::FsyncArgs),
}

/// Parses `--fsync` values: `always`, `never`, `interval=<ms>`.
pub(crate) fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    s.parse()
}

/// Runs one client command on a small runtime; a failure prints a readable message.
fn client_command(f: impl std::future::Future<Output = ops::CliResult>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eventmesh: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventmesh: {e}");
            ExitCode::from(admin::exit_code(&*e))
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Check { dir } => check::run(&dir),
        Command::Repair { dir, dry_run } => repair::run(&dir, dry_run),
        Command::Flow { server, cmd } => client_command(server.trusting(ops::flow(&server, cmd))),
        Command::Key { server, cmd } => client_command(server.trusting(ops::key(&server, cmd))),
        Command::Workspace { server, cmd } => {
            client_command(server.trusting(admin::workspace(&server, cmd)))
        }
        Command::Consumer { server, cmd } => {
            client_command(server.trusting(admin::consumer(&server, cmd)))
        }
        Command::Events { server, cmd } => {
            client_command(server.trusting(admin::events(&server, cmd)))
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "eventmesh", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Send(args) => client_command(ops::send(args)),
        Command::Tail { server, args } => client_command(server.trusting(ops::tail(&server, args))),
        Command::Replay { server, args } => {
            client_command(server.trusting(ops::replay(&server, args)))
        }
        Command::Bench { target } => {
            let result = match target {
                BenchTarget::Log(args) => bench::run_log(&args),
                BenchTarget::Raw(args) => bench::run_raw(&args),
                BenchTarget::Open(args) => bench::run_open(&args),
                BenchTarget::Dedup(args) => bench::run_dedup(&args),
                BenchTarget::Http(args) => bench_http::run(&args),
                BenchTarget::Fsync(args) => bench_fsync::run(&args),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("eventmesh bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
