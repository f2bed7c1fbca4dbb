//! Operator commands for the rest of the API: workspaces, consumers, one event.
//! Each prints the server's answer (`--json`: one line of JSON) and fails with the exit
//! code of what went wrong (`exit_code`).

use clap::Subcommand;
use http::{Method, StatusCode};
use serde_json::json;

use crate::cli::client::ClientError;
use crate::cli::ops::{CliResult, Server};

#[derive(Debug, Subcommand)]
pub enum WorkspaceCmd {
    /// Create a workspace; prints it.
    Create {
        /// 1 to 128 bytes.
        #[arg(long)]
        name: String,
    },
    /// List the workspaces.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ConsumerCmd {
    /// List a flow's consumers with their committed offsets and lag.
    List {
        /// The flow's id (fl_…).
        flow_id: String,
    },
    /// Read the next events from the consumer's committed offset (does not commit).
    Poll {
        /// The flow's id (fl_…).
        flow_id: String,
        /// The consumer's name (letters, digits, `.`, `_`, `-`; 1 to 128).
        name: String,
        /// Most events (1 to 1000).
        #[arg(long, default_value_t = 100)]
        max: u32,
        /// Wait up to this many milliseconds for an event when there is none (0 to 30000).
        #[arg(long, default_value_t = 0)]
        wait_ms: u32,
    },
    /// Commit an offset: the next offset to read (a poll's `nextOffset`).
    Commit {
        /// The flow's id (fl_…).
        flow_id: String,
        /// The consumer's name.
        name: String,
        /// The offset to commit.
        offset: u64,
    },
    /// Move the consumer: to `earliest`, `latest`, an offset, or an RFC 3339 time.
    Seek {
        /// The flow's id (fl_…).
        flow_id: String,
        /// The consumer's name.
        name: String,
        /// `earliest`, `latest`, an offset, or an RFC 3339 time.
        to: String,
    },
    /// Delete a consumer and its offset.
    Delete {
        /// The flow's id (fl_…).
        flow_id: String,
        /// The consumer's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Show one stored event (payload, type, the request it came in).
    Get {
        /// The flow's id (fl_…).
        flow_id: String,
        /// The event's offset.
        offset: u64,
    },
}

pub async fn workspace(server: &Server, cmd: WorkspaceCmd) -> CliResult {
    match cmd {
        WorkspaceCmd::Create { name } => {
            let v = server
                .call(
                    Method::POST,
                    "/api/workspaces",
                    Some(json!({ "name": name })),
                )
                .await?;
            server.print(&v, None);
        }
        WorkspaceCmd::List => {
            let v = server.call(Method::GET, "/api/workspaces", None).await?;
            server.print(&v, Some(("workspaces", &["id", "name", "createdAt"])));
        }
    }
    Ok(())
}

pub async fn consumer(server: &Server, cmd: ConsumerCmd) -> CliResult {
    let path = |flow: &str, name: &str, op: &str| format!("/api/flows/{flow}/consumers/{name}{op}");
    match cmd {
        ConsumerCmd::List { flow_id } => {
            let v = server
                .call(
                    Method::GET,
                    &format!("/api/flows/{flow_id}/consumers"),
                    None,
                )
                .await?;
            let columns = ["name", "committedOffset", "lag", "updatedAt"];
            server.print(&v, Some(("consumers", &columns)));
        }
        ConsumerCmd::Poll {
            flow_id,
            name,
            max,
            wait_ms,
        } => {
            let op = format!("/poll?max={max}&waitMs={wait_ms}");
            let v = server
                .call(Method::POST, &path(&flow_id, &name, &op), Some(json!({})))
                .await?;
            server.print(&v, None);
        }
        ConsumerCmd::Commit {
            flow_id,
            name,
            offset,
        } => {
            let body = json!({ "offset": offset });
            let v = server
                .call(Method::POST, &path(&flow_id, &name, "/commit"), Some(body))
                .await?;
            server.print(&v, None);
        }
        ConsumerCmd::Seek { flow_id, name, to } => {
            let body = match to.as_str() {
                "earliest" | "latest" => json!({ "to": to }),
                _ => match to.parse::<u64>() {
                    Ok(offset) => json!({ "offset": offset }),
                    Err(_) => json!({ "timestamp": to }),
                },
            };
            let v = server
                .call(Method::POST, &path(&flow_id, &name, "/seek"), Some(body))
                .await?;
            server.print(&v, None);
        }
        ConsumerCmd::Delete { flow_id, name } => {
            server
                .call(Method::DELETE, &path(&flow_id, &name, ""), None)
                .await?;
            server.print(&json!({ "deleted": name }), None);
        }
    }
    Ok(())
}

pub async fn events(server: &Server, cmd: EventsCmd) -> CliResult {
    match cmd {
        EventsCmd::Get { flow_id, offset } => {
            let v = server
                .call(
                    Method::GET,
                    &format!("/api/flows/{flow_id}/events/{offset}"),
                    None,
                )
                .await?;
            server.print(&v, None);
        }
    }
    Ok(())
}

/// Exit codes of the client commands: 2 bad usage (and a request the server refused
/// as invalid), 3 not found, 4 authentication or permission, 5 the server failed or
/// could not be reached, 1 anything else.
pub fn exit_code(e: &(dyn std::error::Error + 'static)) -> u8 {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Status { status, .. }) => match *status {
            StatusCode::NOT_FOUND => 3,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => 4,
            s if s.is_server_error() => 5,
            _ => 2,
        },
        Some(ClientError::Connect { .. } | ClientError::Http(_) | ClientError::Tls(_)) => 5,
        Some(ClientError::Url(_) | ClientError::Usage(_)) => 2,
        None => 1,
    }
}
