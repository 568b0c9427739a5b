//! The client commands `idminter mint`, `lookup` and `resolve`, for operators without grpcurl.
//! Input: arguments, or standard input when there are none; one entry per line, either
//! `type/ontology/value` (split at the first two slashes, so values may contain `/`) or a JSON
//! object `{"identifier_type":..,"ontology_type":..,"value":..,"predecessor":{..}}` (for
//! `resolve`: a canonical ID per line). Output: one JSON object per answer on standard output.
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
    #[arg(long, env = "IDMINTER_ADDR", default_value = "http://127.0.0.1:50051")]
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

/// Which call to make.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    Mint,
    Lookup,
    Resolve,
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
    match run_inner(call, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(status) => {
            eprintln!("error: {:?}: {}", status.code(), status.message());
            ExitCode::from(status.code() as u8)
        }
    }
}

async fn run_inner(call: Call, args: ClientArgs) -> Result<(), Status> {
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
                error_chain(&e)
            ))
        })?;
    let mut client = IdMinterClient::with_interceptor(channel, token);
    let mut out = std::io::stdout().lock();
    for (n, batch) in lines.chunks(args.batch_size as usize).enumerate() {
        let offset = n * args.batch_size as usize;
        let answers = match call {
            Call::Resolve => resolve(&mut client, batch, args.timeout).await?,
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

/// An error with its causes on one line (a TLS failure says why only in a cause).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
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
    let response = client
        .mint_ids(request(pb::MintIdsRequest { items }, timeout))
        .await?;
    Ok(response
        .into_inner()
        .ids
        .into_iter()
        .map(|m| {
            let outcome = m
                .outcome()
                .as_str_name()
                .trim_start_matches("MINT_OUTCOME_")
                .to_owned();
            let mut v = printable(m.source_identifier);
            v["canonical_id"] = json!(m.canonical_id);
            v["outcome"] = json!(outcome);
            v
        })
        .collect())
}

async fn lookup(
    client: &mut Client,
    entries: Vec<Entry>,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, Status> {
    let source_identifiers = entries.into_iter().map(|e| e.identifier.into()).collect();
    let response = client
        .lookup_ids(request(
            pb::LookupIdsRequest { source_identifiers },
            timeout,
        ))
        .await?;
    Ok(response
        .into_inner()
        .results
        .into_iter()
        .map(|r| {
            let mut v = printable(r.source_identifier);
            v["canonical_id"] = json!(r.canonical_id);
            v
        })
        .collect())
}

async fn resolve(
    client: &mut Client,
    ids: &[String],
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, Status> {
    let canonical_ids = ids.iter().map(|s| s.trim().to_owned()).collect();
    let response = client
        .resolve_canonical_ids(request(
            pb::ResolveCanonicalIdsRequest { canonical_ids },
            timeout,
        ))
        .await?;
    Ok(response
        .into_inner()
        .resolutions
        .into_iter()
        .map(|r| {
            let sources: Vec<_> = r
                .source_identifiers
                .into_iter()
                .map(|s| printable(Some(s)))
                .collect();
            json!({"canonical_id": r.canonical_id, "source_identifiers": sources})
        })
        .collect())
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
    fn a_line_of_neither_form_is_refused() {
        assert!(parse_entry("just-a-value").is_err());
        assert!(parse_entry("{not json").is_err());
    }
}
