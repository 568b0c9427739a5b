//! Documents that cannot be identified: isolated from their batch-mates, logged, left undeleted,
//! and moved to the dead-letter queue by the queue's redrive policy (which moto honours: it moves
//! a message on the receive after its maxReceiveCount-th).

use std::collections::{BTreeSet, HashMap};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn poison_documents_go_to_the_dead_letter_queue_and_their_batch_mates_pass() {
    // Arrange: one batch of three good works and four poison documents, one of each kind.
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let (input, dlq) = aws.queue_with_dlq("in", 2).await;
    let output = aws.queue("out").await;
    let good: Vec<String> = ["g1", "g2", "g3"]
        .iter()
        .map(|v| work(v).to_string())
        .collect();
    let poison = [
        ("not JSON", "<work>b1</work>".to_owned()),
        (
            "malformed sourceIdentifier",
            json!({"sourceIdentifier": {"identifierType": "sierra-system-number", "ontologyType": "Work", "value": "b9"}})
                .to_string(),
        ),
        (
            // The minter answers INVALID_ARGUMENT for the whole batch.
            "empty value",
            json!({"sourceIdentifier": sid("sierra-system-number", "Work", "")}).to_string(),
        ),
        (
            // The minter answers FAILED_PRECONDITION for the whole batch.
            "predecessor never minted",
            json!({
                "sourceIdentifier": sid("folio-instance", "Work", "f9"),
                "predecessorIdentifier": sid("sierra-system-number", "Work", "never-minted")
            })
            .to_string(),
        ),
    ];
    let mut bodies = good.clone();
    bodies.extend(poison.iter().map(|(_, body)| body.clone()));
    let ids = input.send_all(&bodies).await;
    let poison_ids = &ids[good.len()..];

    // Act
    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--visibility-timeout", "1s"]);
    let mut adapter = AdapterProcess::start(&args);

    // Assert: the good ones pass, identified, despite their batch-mates.
    let published = output.receive(3).await;
    let values: BTreeSet<&str> = published.iter().map(|m| value_of(&m.json)).collect();
    assert_eq!(values, BTreeSet::from(["g1", "g2", "g3"]));
    assert!(
        published
            .iter()
            .all(|m| is_canonical(m.json["canonicalId"].as_str().unwrap_or("")))
    );

    // The poison ones end in the dead-letter queue, unchanged, and nowhere else.
    let dead = dlq.receive(poison.len()).await;
    let dead: BTreeSet<&str> = dead.iter().map(|m| m.body.as_str()).collect();
    let expected: BTreeSet<&str> = poison.iter().map(|(_, body)| body.as_str()).collect();
    assert_eq!(dead, expected);
    input.wait_until_empty().await;
    assert!(
        output.receive_once(0).await.is_empty(),
        "nothing else was published"
    );

    // Each was logged with its message id and a reason.
    for ((kind, _), id) in poison.iter().zip(poison_ids) {
        let line = adapter.wait_for_log(&format!("\"message_id\":\"{id}\""));
        assert!(
            line.contains("cannot be identified") && line.contains("\"reason\""),
            "{kind}: {line}"
        );
    }
    assert!(
        adapter
            .metric(r#"idminter_adapter_messages_total{result="poison"}"#)
            .await
            .is_some_and(|n| n >= poison.len() as f64)
    );
    assert_eq!(
        adapter.healthz().await.0,
        200,
        "poison is not unavailability"
    );
    assert!(
        minter
            .lookup(&[pb_sid("folio-instance", "Work", "f9")])
            .await[0]
            .is_none(),
        "a rejected document mints nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_too_large_for_the_output_goes_to_the_dead_letter_queue_and_its_batch_mates_pass()
 {
    // Arrange: an output queue that takes messages of up to 1024 bytes (SQS's smallest
    // MaximumMessageSize), and one batch of three small works and a document that fits in those
    // 1024 bytes as sent but not once its canonicalId is added. SQS (and moto) refuse such a
    // SendMessageBatch as a whole (InvalidParameterValue), which is no outage of the output.
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let (input, dlq) = aws.queue_with_dlq("in", 2).await;
    let output = aws
        .queue_with(
            "out",
            HashMap::from([(QueueAttributeName::MaximumMessageSize, "1024".to_owned())]),
        )
        .await;
    let mut large = json!({
        "type": "Identifiable",
        "sourceIdentifier": sid("sierra-system-number", "Work", "big"),
        "padding": ""
    });
    let padding = 1024 - large.to_string().len();
    large["padding"] = json!("x".repeat(padding));
    let large = large.to_string();
    assert_eq!(large.len(), 1024, "the input fits the output's limit");
    let mut bodies: Vec<String> = ["s1", "s2", "s3"]
        .iter()
        .map(|v| work(v).to_string())
        .collect();
    bodies.insert(1, large.clone());
    let ids = input.send_all(&bodies).await;

    // Act
    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--visibility-timeout", "1s"]);
    let mut adapter = AdapterProcess::start(&args);

    // Assert: the small ones pass; the large one is logged with its message id and the reason,
    // and ends in the dead-letter queue, unchanged.
    let published = output.receive(3).await;
    let values: BTreeSet<&str> = published.iter().map(|m| value_of(&m.json)).collect();
    assert_eq!(values, BTreeSet::from(["s1", "s2", "s3"]));
    let line = adapter.wait_for_log(&format!("\"message_id\":\"{}\"", ids[1]));
    assert!(
        line.contains("cannot be identified") && line.contains("1024 bytes"),
        "{line}"
    );
    let dead = dlq.receive(1).await;
    assert_eq!(dead[0].body, large);
    input.wait_until_empty().await;
    assert!(
        output.receive_once(0).await.is_empty(),
        "nothing else was published"
    );
    assert_eq!(
        adapter.healthz().await.0,
        200,
        "a document too large is not the output unavailable"
    );
    assert_eq!(
        adapter
            .metric(r#"idminter_adapter_messages_total{result="published"}"#)
            .await,
        Some(3.0)
    );
}

fn is_canonical(id: &str) -> bool {
    crate::helpers::is_canonical(id)
}
