//! Redirected canonical IDs in the adapter: by default the record joins the one it was merged
//! into (the redirect target is written as `canonicalId`); `--redirects ignore` keeps the minted
//! ID.

use idminter::pb;
use idminter::pb::id_minter_client::IdMinterClient;
use serde_json::json;

use crate::support::*;

/// A minter where the concept `lc-subjects/Subject/dup` is redirected to `lc-subjects/Subject/kept`;
/// returns (duplicate's ID, kept ID).
async fn merged_concepts(minter: &MinterUnderTest) -> (String, String) {
    let mut client = IdMinterClient::new(minter.process.channel().await);
    let ids: Vec<String> = client
        .mint_ids(pb::MintIdsRequest {
            items: ["dup", "kept"]
                .map(|v| pb::MintItem {
                    source_identifier: Some(pb_sid("lc-subjects", "Subject", v)),
                    predecessor: None,
                })
                .to_vec(),
        })
        .await
        .expect("mint")
        .into_inner()
        .ids
        .into_iter()
        .map(|m| m.canonical_id)
        .collect();
    client
        .redirect_canonical_ids(pb::RedirectCanonicalIdsRequest {
            redirects: vec![pb::Redirect {
                canonical_id: ids[0].clone(),
                target_canonical_id: ids[1].clone(),
                reason: "duplicate concept".into(),
            }],
        })
        .await
        .expect("redirect");
    (ids[0].clone(), ids[1].clone())
}

/// A work citing the duplicate concept as its subject.
fn work_citing_the_duplicate(value: &str) -> serde_json::Value {
    json!({
        "type": "Identifiable",
        "sourceIdentifier": sid("sierra-system-number", "Work", value),
        "data": {"subjects": [{"id": {
            "type": "Identifiable",
            "sourceIdentifier": sid("lc-subjects", "Subject", "dup"),
            "identifiedType": "Subject"
        }}]}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_a_redirected_id_is_written_as_its_target_so_the_record_joins_the_merged_one() {
    let minter = MinterUnderTest::start().await;
    let (duplicate, kept) = merged_concepts(&minter).await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    input
        .send(&work_citing_the_duplicate("b1").to_string())
        .await;

    let minter_url = minter.url();
    let _adapter = AdapterProcess::start(&queue_to_queue(&input, &output, &minter_url));
    let docs = output.receive(1).await;

    let subject = id_at(&docs[0].json, "/data/subjects/0/id/canonicalId");
    assert_eq!(subject, kept);
    assert_ne!(subject, duplicate);
    assert_eq!(docs[0].json["data"]["subjects"][0]["id"]["type"], "Subject");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redirects_ignore_the_minted_id_is_kept() {
    let minter = MinterUnderTest::start().await;
    let (duplicate, _) = merged_concepts(&minter).await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    input
        .send(&work_citing_the_duplicate("b2").to_string())
        .await;

    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--redirects", "ignore"]);
    let _adapter = AdapterProcess::start(&args);
    let docs = output.receive(1).await;

    assert_eq!(
        id_at(&docs[0].json, "/data/subjects/0/id/canonicalId"),
        duplicate
    );
}
