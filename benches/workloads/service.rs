//! The workloads through the gRPC service, as a client would send them. Responses are decoded into
//! slim messages that read only the outcome (prost skips the other fields), which is enough to check
//! every answer and keeps the load generator, which shares the machine, from competing for the CPU
//! more than a client must.

use anyhow::{Context, bail};
use http::uri::PathAndQuery;
use idminter::pb;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use crate::data::{Counts, Entry, Expect, Ident};
use crate::workload::Workload;

/// MintIdsResponse, reading only each answer's outcome.
#[derive(Clone, PartialEq, prost::Message)]
struct MintIdsOutcomes {
    #[prost(message, repeated, tag = "1")]
    ids: Vec<MintedOutcome>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MintedOutcome {
    #[prost(int32, tag = "3")]
    outcome: i32,
}

/// LookupIdsResponse, reading only whether each identifier was found.
#[derive(Clone, PartialEq, prost::Message)]
struct LookupFound {
    #[prost(message, repeated, tag = "1")]
    results: Vec<LookupResultFound>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LookupResultFound {
    #[prost(string, optional, tag = "2")]
    canonical_id: Option<String>,
}

/// One client: its own HTTP/2 connection.
pub struct ServiceClient {
    grpc: Grpc<Channel>,
    /// `Bearer TOKEN`, for a server that checks tokens.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl ServiceClient {
    /// # Errors
    /// The token cannot be sent as metadata.
    pub fn new(channel: Channel, token: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            grpc: Grpc::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            authorization: token.map(|t| format!("Bearer {t}").parse()).transpose()?,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// Sends one call and checks every answer.
    ///
    /// # Errors
    /// The call failed, or an answer is not the expected one.
    pub async fn call(&mut self, workload: Workload, batch: Vec<Entry>) -> anyhow::Result<()> {
        self.grpc.ready().await.context("connection")?;
        match workload {
            Workload::Lookup => {
                let n = batch.len();
                let request = pb::LookupIdsRequest {
                    source_identifiers: batch.into_iter().map(|e| to_pb(e.ident)).collect(),
                };
                let request = self.request(request);
                let response: LookupFound = self
                    .grpc
                    .unary(
                        request,
                        PathAndQuery::from_static("/idminter.v1.IdMinter/LookupIds"),
                        ProstCodec::<pb::LookupIdsRequest, LookupFound>::default(),
                    )
                    .await?
                    .into_inner();
                let found = response
                    .results
                    .iter()
                    .filter(|r| r.canonical_id.is_some())
                    .count();
                if response.results.len() != n || found != n {
                    bail!(
                        "LookupIds found {found} of {n} (answers: {})",
                        response.results.len()
                    );
                }
            }
            _ => {
                let expected = Counts::of(&batch);
                let request = pb::MintIdsRequest {
                    items: batch
                        .into_iter()
                        .map(|e| pb::MintItem {
                            source_identifier: Some(to_pb(e.ident)),
                            predecessor: e.predecessor.map(to_pb),
                        })
                        .collect(),
                };
                let request = self.request(request);
                let response: MintIdsOutcomes = self
                    .grpc
                    .unary(
                        request,
                        PathAndQuery::from_static("/idminter.v1.IdMinter/MintIds"),
                        ProstCodec::<pb::MintIdsRequest, MintIdsOutcomes>::default(),
                    )
                    .await?
                    .into_inner();
                let mut got = Counts::default();
                for m in &response.ids {
                    got.add(match pb::MintOutcome::try_from(m.outcome) {
                        Ok(pb::MintOutcome::Existing) => Expect::Existing,
                        Ok(pb::MintOutcome::Minted) => Expect::Minted,
                        Ok(pb::MintOutcome::Inherited) => Expect::Inherited,
                        _ => bail!("MintIds answered outcome {}", m.outcome),
                    });
                }
                if got != expected {
                    bail!("MintIds answered {got:?}, expected {expected:?}");
                }
            }
        }
        Ok(())
    }
}

fn to_pb(ident: Ident) -> pb::SourceIdentifier {
    pb::SourceIdentifier {
        identifier_type: ident.identifier_type.to_owned(),
        ontology_type: ident.ontology_type.to_owned(),
        value: ident.value,
    }
}
