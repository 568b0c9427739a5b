//! The adapter killed with SIGKILL in the middle of its work and started again: every document is
//! delivered at least once, and every copy carries the canonical IDs minted the first time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_minting_and_before_publishing_the_restart_delivers_the_same_ids() {
    // Arrange: the output is gone, so the adapter mints the batch and then holds it.
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    output.delete_queue().await;
    let values: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let bodies: Vec<String> = values.iter().map(|v| work(v).to_string()).collect();
    input.send_all(&bodies).await;
    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--visibility-timeout", "2s"]);
    let mut first = AdapterProcess::start(&args);
    first
        .wait_until_unhealthy_because("output unavailable")
        .await;
    let works: Vec<_> = values
        .iter()
        .map(|v| pb_sid("sierra-system-number", "Work", v))
        .collect();
    let subjects: Vec<_> = values
        .iter()
        .map(|v| pb_sid("lc-subjects", "Subject", &format!("sh-{v}")))
        .collect();
    let work_ids = minter.lookup(&works).await;
    let subject_ids = minter.lookup(&subjects).await;
    assert!(
        work_ids.iter().chain(&subject_ids).all(Option::is_some),
        "the batch was minted before the kill"
    );

    // Act: SIGKILL mid-batch, the output comes back, a new adapter starts.
    first.kill();
    output.recreate().await;
    let _second = AdapterProcess::start(&args);

    // Assert: every document, with the IDs minted before the kill, at every depth.
    let published = output.receive(values.len()).await;
    let by_value: BTreeMap<&str, &serde_json::Value> = published
        .iter()
        .map(|m| (value_of(&m.json), &m.json))
        .collect();
    assert_eq!(by_value.len(), values.len(), "every document arrived");
    for (i, value) in values.iter().enumerate() {
        let doc = by_value[value.as_str()];
        assert_eq!(
            Some(id_at(doc, "/canonicalId")),
            work_ids[i].as_deref(),
            "{value}"
        );
        assert_eq!(
            Some(id_at(doc, "/data/subjects/0/id/canonicalId")),
            subject_ids[i].as_deref(),
            "{value}"
        );
    }
    input.wait_until_empty().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_publishing_the_restart_delivers_every_document_with_the_same_ids() {
    // Arrange: more documents than one batch.
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    let values: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let bodies: Vec<String> = values.iter().map(|v| work(v).to_string()).collect();
    input.send_all(&bodies).await;
    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--visibility-timeout", "2s"]);

    // Act: SIGKILL as soon as the first document is out, then start again.
    let mut first = AdapterProcess::start(&args);
    let mut published = output.receive(1).await;
    first.kill();
    let _second = AdapterProcess::start(&args);

    // Assert: every document at least once; every copy with the ID the minter holds.
    let started = Instant::now();
    let expected: BTreeSet<&str> = values.iter().map(String::as_str).collect();
    loop {
        let seen: BTreeSet<&str> = published.iter().map(|m| value_of(&m.json)).collect();
        if seen == expected {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "missing: {:?}",
            expected.difference(&seen).collect::<Vec<_>>()
        );
        published.extend(output.receive_once(1).await);
    }
    let works: Vec<_> = values
        .iter()
        .map(|v| pb_sid("sierra-system-number", "Work", v))
        .collect();
    let ids: BTreeMap<&str, String> = values
        .iter()
        .map(String::as_str)
        .zip(
            minter
                .lookup(&works)
                .await
                .into_iter()
                .map(|id| id.expect("minted")),
        )
        .collect();
    for message in &published {
        let value = value_of(&message.json);
        assert_eq!(
            id_at(&message.json, "/canonicalId"),
            ids[value],
            "a copy of {value}"
        );
    }
    input.wait_until_empty().await;
}
