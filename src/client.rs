//! The client commands `idminter mint`, `lookup`, `resolve`, `redirect`, `withdraw`, `restore` and
//! `history`, for operators without grpcurl.
//! Input: arguments, or standard input when there are none; one entry per line, either
//! `type/ontology/value` (split at the first two slashes, so values may contain `/`) or a JSON
//! object `{"identifier_type":..,"ontology_type":..,"value":..,"predecessor":{..}}` (for
//! `resolve`, `withdraw`, `restore`, `history`: a canonical ID per line; for `redirect`:
//! `ID=TARGET`; the lifecycle commands also take JSON lines such as
//! `{"canonical_id":..,"target_canonical_id":..,"reason":..}`, whose reason overrides `--reason`).
//! Output: one JSON object per answer on standard output.
//! Exit code: 0, or the gRPC status code of the first failed call (3 INVALID_ARGUMENT,
//! 9 FAILED_PRECONDITION, 14 UNAVAILABLE, ...).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::auth::BearerToken;
use crate::pb;
use crate::pb::id_minter_client::IdMinterClient;

type Client = IdMinterClient<InterceptedService<Channel, BearerToken>>;

/// Flags shared by the client commands.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's gRPC URL; `https://` uses TLS.
    #[arg(long, env = "IDMINTER_ADDR", default_value = crate::config::DEFAULT_SERVER_URL)]
    pub addr: String,
    /// The token to send (`authorization: Bearer TOKEN`) to a server that checks tokens.
    #[arg(long, env = "IDMINTER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed an https:// server's certificate; default: the
    /// system's roots.
    #[arg(long, env = "IDMINTER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Entries per call when reading standard input.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Deadline of each call.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Entries; read from standard input, one per line, when none are given.
    pub entries: Vec<String>,
}

/// Flags of `redirect`, `withdraw` and `restore`.
#[derive(Debug, Clone, Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Why (1 to 1000 bytes), recorded with the change and in the event log; required unless every
    /// entry is a JSON line with its own `reason`.
    #[arg(long)]
    pub reason: Option<String>,
}

/// Which call to make.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    Mint,
    Lookup,
    Resolve,
    Redirect,
    Withdraw,
    Restore,
    History,
}

/// One input line of `redirect`, `withdraw` or `restore` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct ChangeLine {
    canonical_id: String,
    #[serde(default)]
    target_canonical_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// Parses one lifecycle line: JSON, or `ID=TARGET` for a redirect, or `ID`.
fn parse_change(line: &str, call: Call, reason: Option<&str>) -> Result<ChangeLine, String> {
    let mut change = if line.trim_start().starts_with('{') {
        serde_json::from_str::<ChangeLine>(line)
            .map_err(|e| format!("not a valid JSON entry: {e}"))?
    } else if let Call::Redirect = call {
        let (id, target) = line
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("`{line}` is neither ID=TARGET nor a JSON object"))?;
        ChangeLine {
            canonical_id: id.to_owned(),
            target_canonical_id: Some(target.to_owned()),
            reason: None,
        }
    } else {
        ChangeLine {
            canonical_id: line.trim().to_owned(),
            target_canonical_id: None,
            reason: None,
        }
    };
    if change.reason.is_none() {
        change.reason = Some(
            reason
                .ok_or("no reason: give --reason, or a `reason` in each JSON line")?
                .to_owned(),
        );
    }
    Ok(change)
}

/// A source identifier as the client commands read and print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identifier {
    identifier_type: String,
    ontology_type: String,
    value: String,
}

/// One input line of `mint` or `lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Entry {
    #[serde(flatten)]
    identifier: Identifier,
    #[serde(default)]
    predecessor: Option<Identifier>,
}

impl From<Identifier> for pb::SourceIdentifier {
    fn from(i: Identifier) -> Self {
        pb::SourceIdentifier {
            identifier_type: i.identifier_type,
            ontology_type: i.ontology_type,
            value: i.value,
        }
    }
}

fn printable(s: Option<pb::SourceIdentifier>) -> serde_json::Value {
    let s = s.unwrap_or_default();
    json!({"identifier_type": s.identifier_type, "ontology_type": s.ontology_type, "value": s.value})
}

/// Parses one line: JSON when it starts with `{`, else `type/ontology/value`.
fn parse_entry(line: &str) -> Result<Entry, String> {
    if line.trim_start().starts_with('{') {
        return serde_json::from_str(line).map_err(|e| format!("not a valid JSON entry: {e}"));
    }
    let mut parts = line.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(o), Some(v)) => Ok(Entry {
            identifier: Identifier {
                identifier_type: t.to_owned(),
                ontology_type: o.to_owned(),
                value: v.to_owned(),
            },
            predecessor: None,
        }),
        _ => Err(format!(
            "`{line}` is neither type/ontology/value nor a JSON object"
        )),
    }
}

/// Runs a client command.
pub async fn run(call: Call, args: ClientArgs) -> ExitCode {
    report(run_inner(call, args, None).await)
}

/// Runs `redirect`, `withdraw` or `restore`.
pub async fn run_change(call: Call, args: ChangeArgs) -> ExitCode {
    report(run_inner(call, args.client, args.reason).await)
}

fn report(result: Result<(), Status>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(status) => {
            eprintln!("error: {:?}: {}", status.code(), status.message());
            ExitCode::from(status.code() as u8)
        }
    }
}

async fn run_inner(call: Call, args: ClientArgs, reason: Option<String>) -> Result<(), Status> {
    let lines: Vec<String> = if args.entries.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(format!("reading standard input: {e}")))?
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect()
    } else {
        args.entries.clone()
    };
    let token = BearerToken::new(args.token.as_deref())
        .map_err(|e| Status::invalid_argument(format!("--token: {e}")))?;
    let channel = crate::tls::client_endpoint(&args.addr, args.tls_ca.as_deref())
        .map_err(|e| Status::invalid_argument(format!("--addr: {e:#}")))?
        .connect()
        .await
        .map_err(|e| {
            Status::unavailable(format!(
                "cannot connect to {}: {}",
                args.addr,
                crate::error::chain(&e)
            ))
        })?;
    let mut client = IdMinterClient::with_interceptor(channel, token);
    let mut out = std::io::stdout().lock();
    for (n, batch) in lines.chunks(args.batch_size as usize).enumerate() {
        let offset = n * args.batch_size as usize;
        let answers = match call {
            Call::Resolve => resolve(&mut client, batch, args.timeout).await?,
            Call::History => history(&mut client, batch, args.timeout).await?,
            Call::Redirect | Call::Withdraw | Call::Restore => {
                let changes = batch
                    .iter()
                    .enumerate()
                    .map(|(i, line)| {
                        parse_change(line, call, reason.as_deref()).map_err(|e| {
                            Status::invalid_argument(format!("line {}: {e}", offset + i + 1))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                change(&mut client, call, changes, args.timeout).await?
            }
            Call::Mint | Call::Lookup => {
                let entries = batch
                    .iter()
                    .enumerate()
                    .map(|(i, line)| {
                        parse_entry(line).map_err(|e| {
                            Status::invalid_argument(format!("line {}: {e}", offset + i + 1))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                match call {
                    Call::Mint => mint(&mut client, entries, args.timeout).await?,
                    _ => lookup(&mut client, entries, args.timeout).await?,
                }
            }
        };
        for answer in answers {
            writeln!(out, "{answer}")
                .map_err(|e| Status::internal(format!("writing output: {e}")))?;
        }
    }
    Ok(())
}

/// One call, the way every command makes it: `message` sent by `rpc` with the deadline, and each
/// answer that `answers` takes out of the response turned into a JSON line by `line`.
///
/// # Errors
/// The call's status.
async fn send<Req, Resp, T>(
    client: &mut Client,
    message: Req,
    timeout: Duration,
    rpc: impl AsyncFnOnce(&mut Client, tonic::Request<Req>) -> Result<tonic::Response<Resp>, Status>,
    answers: impl FnOnce(Resp) -> Vec<T>,
    line: impl FnMut(T) -> serde_json::Value,
) -> Result<Vec<serde_json::Value>, Status> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    let response = rpc(client, request).await?;
    Ok(answers(response.into_inner())
        .into_iter()
        .map(line)
        .collect())
}

async fn mint(
    client: &mut Client,
    entries: Vec<Entry>,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, Status> {
    let items = entries
        .into_iter()
        .map(|e| pb::MintItem {
            source_identifier: Some(e.identifier.into()),
            predecessor: e.predecessor.map(Into::into),
        })
        .collect();
    send(
        client,
        pb::MintIdsRequest { items },
        timeout,
        async |c, r| c.mint_ids(r).await,
        |r| r.ids,
        printable_minted,
    )
    .await
}

async fn lookup(
    client: &mut Client,
    entries: Vec<Entry>,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, Status> {
    let source_identifiers = entries.into_iter().map(|e| e.identifier.into()).collect();
    send(
        client,
        pb::LookupIdsRequest { source_identifiers },
        timeout,
        async |c, r| c.lookup_ids(r).await,
        |r| r.results,
        printable_lookup,
    )
    .await
}

async fn resolve(
    client: &mut Client,
    ids: &[String],
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, Status> {
    let canonical_ids = ids.iter().map(|s| s.trim().to_owned()).collect();
    send(
        client,
        pb::ResolveCanonicalIdsRequest { canonical_ids },
        timeout,
        async |c, r| c.resolve_canonical_ids(r).await,
        |r| r.resolutions,
        printable_resolution,
    )
    .await
}

async fn change(
    client: &mut Client,
    call: Call,
    changes: Vec<ChangeLine>,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, Status> {
    let resolutions = |r: pb::ChangeCanonicalIdsResponse| r.resolutions;
    match call {
        Call::Redirect => {
            let redirects = changes
                .into_iter()
                .map(|c| pb::Redirect {
                    canonical_id: c.canonical_id,
                    target_canonical_id: c.target_canonical_id.unwrap_or_default(),
                    reason: c.reason.unwrap_or_default(),
                })
                .collect();
            send(
                client,
                pb::RedirectCanonicalIdsRequest { redirects },
                timeout,
                async |c, r| c.redirect_canonical_ids(r).await,
                resolutions,
                printable_resolution,
            )
            .await
        }
        Call::Withdraw => {
            let withdrawals = changes
                .into_iter()
                .map(|c| pb::Withdrawal {
                    canonical_id: c.canonical_id,
                    reason: c.reason.unwrap_or_default(),
                })
                .collect();
            send(
                client,
                pb::WithdrawCanonicalIdsRequest { withdrawals },
                timeout,
                async |c, r| c.withdraw_canonical_ids(r).await,
                resolutions,
                printable_resolution,
            )
            .await
        }
        _ => {
            let restorations = changes
                .into_iter()
                .map(|c| pb::Restoration {
                    canonical_id: c.canonical_id,
                    reason: c.reason.unwrap_or_default(),
                })
                .collect();
            send(
                client,
                pb::RestoreCanonicalIdsRequest { restorations },
                timeout,
                async |c, r| c.restore_canonical_ids(r).await,
                resolutions,
                printable_resolution,
            )
            .await
        }
    }
}

async fn history(
    client: &mut Client,
    ids: &[String],
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, Status> {
    let canonical_ids = ids.iter().map(|s| s.trim().to_owned()).collect();
    send(
        client,
        pb::ListCanonicalIdEventsRequest { canonical_ids },
        timeout,
        async |c, r| c.list_canonical_id_events(r).await,
        |r| r.events,
        printable_event,
    )
    .await
}

/// A MintedId as a JSON line.
fn printable_minted(m: pb::MintedId) -> serde_json::Value {
    let outcome = m
        .outcome()
        .as_str_name()
        .trim_start_matches("MINT_OUTCOME_")
        .to_owned();
    let status = status_name(m.status());
    let mut v = printable(m.source_identifier);
    v["canonical_id"] = json!(m.canonical_id);
    v["outcome"] = json!(outcome);
    v["status"] = json!(status);
    if let Some(target) = m.redirect_target {
        v["redirect_target"] = json!(target);
    }
    v
}

/// A LookupResult as a JSON line: the status only where there is an ID.
fn printable_lookup(r: pb::LookupResult) -> serde_json::Value {
    let status = status_name(r.status());
    let mut v = printable(r.source_identifier);
    v["canonical_id"] = json!(r.canonical_id);
    if r.canonical_id.is_some() {
        v["status"] = json!(status);
    }
    if let Some(target) = r.redirect_target {
        v["redirect_target"] = json!(target);
    }
    v
}

/// A lifecycle event as a JSON line.
fn printable_event(e: pb::CanonicalIdEvent) -> serde_json::Value {
    let action = e
        .action()
        .as_str_name()
        .trim_start_matches("CANONICAL_ID_ACTION_")
        .to_lowercase();
    let mut v = json!({"canonical_id": e.canonical_id, "action": action});
    if let Some(target) = e.target_canonical_id {
        v["target_canonical_id"] = json!(target);
    }
    v["reason"] = json!(e.reason);
    v["changed_at"] = json!(rfc3339(e.changed_at));
    v["changed_by"] = json!(e.changed_by);
    v
}

/// `ACTIVE`, `REDIRECTED`, `WITHDRAWN` (`UNSPECIFIED` for no ID).
fn status_name(status: pb::IdStatus) -> String {
    status
        .as_str_name()
        .trim_start_matches("ID_STATUS_")
        .to_owned()
}

fn rfc3339(t: Option<prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A Resolution as a JSON line: the lifecycle fields only where there are some.
fn printable_resolution(r: pb::Resolution) -> serde_json::Value {
    let status = status_name(r.status());
    let sources: Vec<_> = r
        .source_identifiers
        .into_iter()
        .map(|s| printable(Some(s)))
        .collect();
    let known = !sources.is_empty();
    let mut v = json!({"canonical_id": r.canonical_id, "source_identifiers": sources});
    if known {
        v["status"] = json!(status);
    }
    if let Some(target) = r.redirect_target {
        v["redirect_target"] = json!(target);
    }
    if !r.reason.is_empty() {
        v["reason"] = json!(r.reason);
        v["changed_at"] = json!(rfc3339(r.changed_at));
        v["changed_by"] = json!(r.changed_by);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_line_splits_at_the_first_two_slashes() {
        let entry = parse_entry("lc-subjects/Concept/sh85/123").unwrap();
        assert_eq!(entry.identifier.identifier_type, "lc-subjects");
        assert_eq!(entry.identifier.value, "sh85/123");
    }

    #[test]
    fn a_json_line_may_name_a_predecessor() {
        let entry = parse_entry(
            r#"{"identifier_type":"folio","ontology_type":"Work","value":"f1","predecessor":{"identifier_type":"sierra","ontology_type":"Work","value":"b1"}}"#,
        )
        .unwrap();
        assert_eq!(entry.predecessor.unwrap().value, "b1");
    }

    #[test]
    fn a_redirect_line_is_id_equals_target_and_json_lines_may_carry_their_reason() {
        let line = parse_change("aaaaaaaa=bbbbbbbb", Call::Redirect, Some("merged")).unwrap();
        assert_eq!(line.target_canonical_id.as_deref(), Some("bbbbbbbb"));
        assert_eq!(line.reason.as_deref(), Some("merged"));
        let line = parse_change(
            r#"{"canonical_id":"aaaaaaaa","reason":"gone"}"#,
            Call::Withdraw,
            Some("default"),
        )
        .unwrap();
        assert_eq!(line.reason.as_deref(), Some("gone"));
        assert!(parse_change("aaaaaaaa", Call::Redirect, Some("x")).is_err());
        assert!(parse_change("aaaaaaaa", Call::Withdraw, None).is_err());
    }

    #[test]
    fn a_line_of_neither_form_is_refused() {
        assert!(parse_entry("just-a-value").is_err());
        assert!(parse_entry("{not json").is_err());
    }
}
