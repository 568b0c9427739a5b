//! Generated protobuf and tonic code for `idminter.v1`, and nothing else.

tonic::include_proto!("idminter.v1");

/// The encoded file descriptor set of our protos, served by gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("idminter_descriptor");
