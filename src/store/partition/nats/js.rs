//! The JetStream calls one flow's stream needs, as plain async functions over the
//! client: create or check the stream, publish one record or an atomic batch (with
//! the retries of docs/cluster.md, "Appends"), and read by sequence with a batched
//! direct get. Every answer is turned into a `PartitionError` here.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream;
use async_nats::{Client, HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;

use super::codec;
use super::{with_backoff, NATS_PUBLISH_RETRY_FOR, NATS_READ_BYTES_MAX, NATS_REQUEST_TIMEOUT};
use crate::log::{Record, Retention};
use crate::store::partition::PartitionError;

/// The names of one flow's stream.
#[derive(Debug, Clone)]
pub struct StreamNames {
    pub stream: String,
    pub subject: String,
}

/// What `ensure_stream` must find (or make).
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub replicas: usize,
    pub duplicate_window: Duration,
    pub retention: Retention,
    pub byte_limit: ByteLimit,
}

/// How a byte limit (`Retention::max_bytes`) reaches the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteLimit {
    /// As `max_bytes`, which JetStream reserves against each replica's `max_store`
    /// (a flow's own retention: the operator asked for that space).
    Reserved,
    /// As `max_msgs`, one message per `bytes_per_message` of the limit, with messages
    /// of at most `message_bytes_max` (`max_msg_size`): no space is reserved.
    AsMessages {
        bytes_per_message: u64,
        message_bytes_max: i32,
    },
}

fn failed(what: impl std::fmt::Display) -> PartitionError {
    PartitionError::Failed(Arc::new(std::io::Error::other(what.to_string())))
}

fn config_of(names: &StreamNames, spec: &StreamSpec) -> stream::Config {
    let max_age = spec
        .retention
        .max_age_ms
        .map_or(Duration::ZERO, |ms| Duration::from_millis(ms.max(0) as u64));
    // JetStream refuses a duplicate window longer than max_age (err 10052).
    let duplicate_window = match max_age {
        Duration::ZERO => spec.duplicate_window,
        age => spec.duplicate_window.min(age),
    };
    let bytes = spec
        .retention
        .max_bytes
        .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let (max_bytes, max_messages, max_message_size) = match spec.byte_limit {
        ByteLimit::Reserved => (bytes, -1, 0),
        ByteLimit::AsMessages {
            bytes_per_message,
            message_bytes_max,
        } => {
            let per = i64::try_from(bytes_per_message.max(1)).unwrap_or(i64::MAX);
            let messages = if bytes > 0 { (bytes / per).max(1) } else { -1 };
            (-1, messages, message_bytes_max)
        }
    };
    stream::Config {
        name: names.stream.clone(),
        subjects: vec![names.subject.clone()],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: spec.replicas,
        duplicate_window,
        max_age,
        max_bytes,
        max_messages,
        max_message_size,
        allow_direct: true,
        allow_atomic_publish: true,
        deny_delete: true,
        deny_purge: true,
        persist_mode: Some(stream::PersistenceMode::Default),
        ..Default::default()
    }
}

/// Checks what the server made of the stream's settings: JetStream turns a zero into
/// a default without saying so, and a different replica count is another promise.
fn check_config(got: &stream::Config, want: &stream::Config) -> Result<(), PartitionError> {
    let mut wrong = Vec::new();
    if got.num_replicas != want.num_replicas {
        wrong.push(format!(
            "num_replicas {} (want {})",
            got.num_replicas, want.num_replicas
        ));
    }
    if got.duplicate_window != want.duplicate_window {
        wrong.push(format!(
            "duplicate_window {:?} (want {:?})",
            got.duplicate_window, want.duplicate_window
        ));
    }
    if !got.allow_direct || !got.allow_atomic_publish {
        wrong.push("direct gets or atomic batches are off".into());
    }
    if matches!(got.persist_mode, Some(stream::PersistenceMode::Async)) {
        wrong.push("persist_mode is async (acks before storing)".into());
    }
    if got.retention != stream::RetentionPolicy::Limits {
        wrong.push("its retention is not limits".into());
    }
    match wrong.is_empty() {
        true => Ok(()),
        false => Err(failed(format!(
            "stream {} has settings EventMesh cannot keep its promises on: {}",
            want.name,
            wrong.join(", ")
        ))),
    }
}

/// The stream's state after a create or a check: its first and last sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    pub first_seq: u64,
    pub last_seq: u64,
}

impl From<&stream::State> for StreamState {
    fn from(s: &stream::State) -> Self {
        Self {
            first_seq: s.first_sequence,
            last_seq: s.last_sequence,
        }
    }
}

/// A JetStream API request (`$JS.API.…`) and its JSON answer: an error reply is
/// final unless it is 503 (no leader yet, err 10163 after a leader change); no
/// responders and timeouts are worth another try.
async fn api<T: serde::de::DeserializeOwned>(
    client: &Client,
    subject: String,
    body: &impl serde::Serialize,
) -> Result<T, Retry> {
    let body = serde_json::to_vec(body).map_err(|e| Retry::Final(failed(e)))?;
    let request = async_nats::Request::new()
        .payload(Bytes::from(body))
        .timeout(Some(NATS_REQUEST_TIMEOUT));
    let msg = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| Retry::Again(format!("{subject}: {e}")))?;
    #[derive(Deserialize)]
    struct MaybeError {
        error: Option<ApiError>,
    }
    let head: MaybeError = serde_json::from_slice(&msg.payload)
        .map_err(|e| Retry::Final(failed(format!("{subject}: an unreadable answer: {e}"))))?;
    if let Some(err) = head.error {
        return Err(match err.code {
            503 => Retry::Again(err.description),
            _ => Retry::Final(PartitionError::Failed(Arc::new(err))),
        });
    }
    serde_json::from_slice(&msg.payload)
        .map_err(|e| Retry::Final(failed(format!("{subject}: an unreadable answer: {e}"))))
}

/// The body of a request that needs none.
#[derive(serde::Serialize)]
struct Empty {}
static EMPTY: Empty = Empty {};

/// JetStream's "stream not found", from the meta leader (not a passing failure).
const ERR_STREAM_NOT_FOUND: u32 = 10059;
/// "stream name already in use with a different configuration".
const ERR_STREAM_NAME_IN_USE: u32 = 10058;
/// "no message found" for a sequence.
const ERR_NO_MESSAGE: u32 = 10037;

fn is_api_error(e: &PartitionError, err_code: u32) -> bool {
    match e {
        PartitionError::Failed(inner) => inner
            .downcast_ref::<ApiError>()
            .is_some_and(|a| a.err_code == err_code),
        _ => false,
    }
}

/// With `create`, makes the stream (or finds it made with the same settings);
/// without, it must exist. Either way its settings are read back and checked.
pub async fn ensure_stream(
    client: &Client,
    names: &StreamNames,
    spec: &StreamSpec,
    create: bool,
) -> Result<StreamState, PartitionError> {
    let want = config_of(names, spec);
    let created: Option<stream::Info> = if create {
        let subject = format!("$JS.API.STREAM.CREATE.{}", names.stream);
        match retrying(|| api(client, subject.clone(), &want)).await {
            // It exists with other limits (a retention pass changed them since): it is
            // checked as it stands, below.
            Err(e) if is_api_error(&e, ERR_STREAM_NAME_IN_USE) => None,
            other => Some(other?),
        }
    } else {
        None
    };
    let info: stream::Info = if let Some(info) = created {
        info
    } else {
        let subject = format!("$JS.API.STREAM.INFO.{}", names.stream);
        match retrying(|| api(client, subject.clone(), &EMPTY)).await {
            Err(e) if is_api_error(&e, ERR_STREAM_NOT_FOUND) => {
                return Err(PartitionError::Failed(Arc::new(
                    crate::log::LogError::Missing {
                        path: names.stream.clone().into(),
                        reason: "the flow's JetStream stream is gone; it is never recreated empty"
                            .into(),
                    },
                )))
            }
            other => other?,
        }
    };
    check_config(&info.config, &want)?;
    Ok(StreamState::from(&info.state))
}

/// The limits of a stream's config that retention sets: age, bytes and messages, with
/// every "no limit" (0 or -1, as JetStream may spell it) as `None`.
fn limits_of(config: &stream::Config) -> (Duration, Option<i64>, Option<i64>) {
    let set = |v: i64| (v > 0).then_some(v);
    (
        config.max_age,
        set(config.max_bytes),
        set(config.max_messages),
    )
}

/// Whether the stream (its config `held`) already has the limits of `want`.
pub fn holds_retention(held: &stream::Config, names: &StreamNames, want: &StreamSpec) -> bool {
    limits_of(held) == limits_of(&config_of(names, want))
}

/// Changes the stream's retention limits (the store's `apply_retention`), then reads
/// its state.
pub async fn set_retention(
    client: &Client,
    names: &StreamNames,
    spec: &StreamSpec,
) -> Result<StreamState, PartitionError> {
    let want = config_of(names, spec);
    let subject = format!("$JS.API.STREAM.UPDATE.{}", names.stream);
    let info: stream::Info = retrying(|| api(client, subject.clone(), &want)).await?;
    Ok(StreamState::from(&info.state))
}

/// The stream's state now (`STREAM.INFO`, answered by the leader).
pub async fn stream_state(
    client: &Client,
    names: &StreamNames,
) -> Result<StreamState, PartitionError> {
    let subject = format!("$JS.API.STREAM.INFO.{}", names.stream);
    let info: stream::Info = retrying(|| api(client, subject.clone(), &EMPTY)).await?;
    Ok(StreamState::from(&info.state))
}

/// The stream's state and the config it holds now (`STREAM.INFO`).
pub async fn stream_config(
    client: &Client,
    names: &StreamNames,
) -> Result<(StreamState, stream::Config), PartitionError> {
    let subject = format!("$JS.API.STREAM.INFO.{}", names.stream);
    let info: stream::Info = retrying(|| api(client, subject.clone(), &EMPTY)).await?;
    Ok((StreamState::from(&info.state), info.config))
}

/// Deletes the flow's stream (the flow was deleted). A stream already gone is fine.
pub async fn delete_stream(client: &Client, names: &StreamNames) -> Result<(), PartitionError> {
    let subject = format!("$JS.API.STREAM.DELETE.{}", names.stream);
    match retrying(|| api::<serde_json::Value>(client, subject.clone(), &EMPTY)).await {
        Err(e) if is_api_error(&e, ERR_STREAM_NOT_FOUND) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// One attempt's failure: worth another try within the budget, or final.
enum Retry {
    Again(String),
    Final(PartitionError),
}

/// Runs `attempt` until it succeeds, fails for good, or `NATS_PUBLISH_RETRY_FOR`
/// passes (then `Unreachable` with the last reason), backing off in between.
async fn retrying<T, F, Fut>(attempt: F) -> Result<T, PartitionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Retry>>,
{
    with_backoff(attempt, |e| matches!(e, Retry::Again(_)))
        .await
        .map_err(|e| match e {
            Retry::Final(e) => e,
            Retry::Again(why) => PartitionError::Unreachable(format!(
                "NATS JetStream did not answer within {} s: {why}",
                NATS_PUBLISH_RETRY_FOR.as_secs()
            )),
        })
}

/// A publish ack, or its error, as JetStream sends it.
#[derive(Debug, Deserialize)]
struct PubAck {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    error: Option<ApiError>,
}

/// A JetStream API error, kept whole so its words reach the operator.
#[derive(Debug, Deserialize, thiserror::Error)]
#[error("NATS JetStream answered {code} (err {err_code}): {description}")]
pub struct ApiError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u32,
    #[serde(default)]
    description: String,
}

/// JetStream error codes the append path acts on.
const ERR_ID_IN_PROCESS: u32 = 10158;
const ERR_BATCH_DUPLICATE_ID: u32 = 10201;

/// How a publish ended: the last sequence of what was stored, or "another writer
/// already stored one of these ids" (nothing new was stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Stored { last_seq: u64 },
    Duplicate { seq: Option<u64> },
}

fn read_ack(payload: &[u8], count: usize) -> Result<Published, Retry> {
    let ack: PubAck = serde_json::from_slice(payload)
        .map_err(|e| Retry::Final(failed(format!("an unreadable publish ack: {e}"))))?;
    if let Some(err) = ack.error {
        return Err(match (err.code, err.err_code) {
            (_, ERR_ID_IN_PROCESS) => Retry::Again(err.description),
            (_, ERR_BATCH_DUPLICATE_ID) => return Ok(Published::Duplicate { seq: None }),
            (503, _) => Retry::Again(err.description),
            _ => Retry::Final(failed(format!(
                "JetStream refused the append ({} err {}): {}",
                err.code, err.err_code, err.description
            ))),
        });
    }
    if ack.duplicate {
        return Ok(Published::Duplicate { seq: Some(ack.seq) });
    }
    if let Some(n) = ack.count {
        if n != count as u64 {
            return Err(Retry::Final(failed(format!(
                "JetStream stored {n} of a batch of {count}"
            ))));
        }
    }
    Ok(Published::Stored { last_seq: ack.seq })
}

/// Publishes one message (as a request, so its ack comes back) and reads the ack.
async fn publish_one(
    client: &Client,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Published, Retry> {
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(payload)
        .timeout(Some(NATS_REQUEST_TIMEOUT));
    match client.send_request(subject.to_owned(), request).await {
        Ok(msg) => read_ack(&msg.payload, 1),
        Err(e) => match e.kind() {
            async_nats::RequestErrorKind::TimedOut | async_nats::RequestErrorKind::NoResponders => {
                Err(Retry::Again(e.to_string()))
            }
            async_nats::RequestErrorKind::MaxPayloadExceeded => Err(Retry::Final(failed(e))),
            _ => Err(Retry::Again(e.to_string())),
        },
    }
}

/// Publishes `messages` as one atomic batch (all stored or none) and reads the
/// commit's ack. The server answers the first message (flow control) and the commit.
async fn publish_batch(
    client: &Client,
    subject: &str,
    messages: &[(HeaderMap, Bytes)],
) -> Result<Published, Retry> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Retry::Again(e.to_string()))?;
    let batch_id = nuid::next().to_string();
    let last = messages.len();
    for (i, (headers, payload)) in messages.iter().enumerate() {
        let mut headers = headers.clone();
        headers.insert("Nats-Batch-Id", batch_id.as_str());
        headers.insert("Nats-Batch-Sequence", (i + 1).to_string());
        if i + 1 == last {
            headers.insert("Nats-Batch-Commit", "1");
        }
        client
            .publish_with_reply_and_headers(
                subject.to_owned(),
                inbox.clone(),
                headers,
                payload.clone(),
            )
            .await
            .map_err(|e| Retry::Again(e.to_string()))?;
    }
    let deadline = tokio::time::Instant::now() + NATS_REQUEST_TIMEOUT;
    loop {
        let msg = match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => return Err(Retry::Again("the batch's reply inbox closed".into())),
            Err(_) => {
                return Err(Retry::Again(
                    "the batch's commit was not acked in time".into(),
                ))
            }
        };
        if msg.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(Retry::Again("no responders".into()));
        }
        if msg.payload.is_empty() {
            continue;
        }
        return read_ack(&msg.payload, messages.len());
    }
}

/// Appends `messages` (one, or an atomic batch), retrying passing failures with the
/// same ids for `NATS_PUBLISH_RETRY_FOR`.
pub async fn publish(
    client: &Client,
    subject: &str,
    messages: Vec<(HeaderMap, Bytes)>,
) -> Result<Published, PartitionError> {
    retrying(|| async {
        match messages.as_slice() {
            [(headers, payload)] => {
                publish_one(client, subject, headers.clone(), payload.clone()).await
            }
            _ => publish_batch(client, subject, &messages).await,
        }
    })
    .await
}

/// What a batched direct get found.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<Record>,
    /// The stream's last sequence as the answering replica knew it (the last
    /// message's `Nats-Sequence` + `Nats-Num-Pending`), when any message came back.
    pub end_seq: Option<u64>,
}

/// Reads up to `batch` messages from sequence `seq` with one batched direct get (any
/// replica may answer; it may be behind). Deleted or expired sequences are skipped.
pub async fn direct_get_batch(
    client: &Client,
    names: &StreamNames,
    seq: u64,
    batch: usize,
    max_bytes: usize,
) -> Result<Fetched, PartitionError> {
    retrying(|| async {
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Retry::Again(e.to_string()))?;
        let max_bytes = max_bytes.clamp(1, NATS_READ_BYTES_MAX);
        let body = serde_json::json!({"seq": seq, "batch": batch, "max_bytes": max_bytes});
        client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{}", names.stream),
                inbox,
                Bytes::from(body.to_string()),
            )
            .await
            .map_err(|e| Retry::Again(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + NATS_REQUEST_TIMEOUT;
        let mut out = Fetched::default();
        loop {
            let msg = match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => return Err(Retry::Again("the read's reply inbox closed".into())),
                Err(_) => return Err(Retry::Again("a direct get timed out".into())),
            };
            match msg.status.map(|s| s.as_u16()) {
                None | Some(200) => {}
                // End of batch.
                Some(204) => return Ok(out),
                // Nothing at or after `seq` on the replica that answered.
                Some(404) => return Ok(out),
                Some(503) => return Err(Retry::Again("no responders for direct get".into())),
                Some(code) => {
                    return Err(Retry::Final(failed(format!(
                        "direct get answered {code}: {}",
                        msg.description.unwrap_or_default()
                    ))))
                }
            }
            let headers = msg.headers.as_ref();
            let number = |name: &str| {
                headers
                    .and_then(|h| h.get(name))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
            };
            let Some(sequence) = number("Nats-Sequence") else {
                return Err(Retry::Final(failed(
                    "a direct get reply without Nats-Sequence",
                )));
            };
            if let Some(pending) = number("Nats-Num-Pending") {
                out.end_seq = Some(sequence + pending);
            }
            let record = codec::record_of(sequence, headers, msg.payload)
                .map_err(|e| Retry::Final(failed(e)))?;
            out.records.push(record);
        }
    })
    .await
}

/// Reads one message from the stream leader (`STREAM.MSG.GET`): for a sequence a
/// replica that is behind did not have. `None` when the leader has none there either.
pub async fn leader_get(
    client: &Client,
    names: &StreamNames,
    seq: u64,
) -> Result<Option<Record>, PartitionError> {
    #[derive(Deserialize)]
    struct Raw {
        seq: u64,
        #[serde(default)]
        hdrs: Option<String>,
        #[serde(default)]
        data: Option<String>,
    }
    #[derive(Deserialize)]
    struct Answer {
        message: Raw,
    }
    let subject = format!("$JS.API.STREAM.MSG.GET.{}", names.stream);
    let body = serde_json::json!({ "seq": seq });
    let got: Answer = match retrying(|| api(client, subject.clone(), &body)).await {
        Err(e) if is_api_error(&e, ERR_NO_MESSAGE) => return Ok(None),
        other => other?,
    };
    let decode = |b: Option<String>| -> Result<Vec<u8>, PartitionError> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b.unwrap_or_default())
            .map_err(|e| failed(format!("an unreadable STREAM.MSG.GET answer: {e}")))
    };
    let headers = codec::parse_header_block(&decode(got.message.hdrs)?);
    let payload = Bytes::from(decode(got.message.data)?);
    codec::record_of(got.message.seq, Some(&headers), payload)
        .map(Some)
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_read_as_stored_duplicate_retry_or_refused() {
        // Proves the append path's reading of each JetStream answer it was measured to
        // give: a stored ack, a duplicate (single and atomic batch), id in process
        // (retry), no leader (retry), and a refusal (final, with the server's words).
        assert_eq!(
            read_ack(br#"{"stream":"S","seq":7}"#, 1).ok(),
            Some(Published::Stored { last_seq: 7 })
        );
        assert_eq!(
            read_ack(br#"{"stream":"S","seq":9,"batch":"b","count":2}"#, 2).ok(),
            Some(Published::Stored { last_seq: 9 })
        );
        assert_eq!(
            read_ack(br#"{"stream":"S","seq":3,"duplicate":true}"#, 1).ok(),
            Some(Published::Duplicate { seq: Some(3) })
        );
        let dup_batch = br#"{"error":{"code":400,"err_code":10201,"description":"atomic publish batch contains duplicate message id"},"stream":"S","seq":0}"#;
        assert_eq!(
            read_ack(dup_batch, 2).ok(),
            Some(Published::Duplicate { seq: None })
        );
        let in_process = br#"{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}"#;
        assert!(matches!(read_ack(in_process, 1), Err(Retry::Again(_))));
        let no_leader = br#"{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}"#;
        assert!(matches!(read_ack(no_leader, 1), Err(Retry::Again(_))));
        let refused =
            br#"{"error":{"code":400,"err_code":10054,"description":"maximum messages exceeded"}}"#;
        match read_ack(refused, 1) {
            Err(Retry::Final(e)) => assert!(e.to_string().contains("maximum messages"), "{e}"),
            _ => panic!("a refusal is final"),
        }
        assert!(matches!(
            read_ack(br#"{"stream":"S","seq":9,"count":1}"#, 2),
            Err(Retry::Final(_))
        ));
    }
}
