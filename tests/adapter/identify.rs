//! Identification end to end: identifiers at every depth, predecessors, the SNS envelope in and an
//! SNS topic out.

use serde_json::{Value, json};

use crate::support::*;

/// Applies what the contract says identification does, to build the expected document:
/// `canonicalId` added last, `type` replaced where it stands, `identifiedType` removed.
fn identified(mut doc: Value, ids: &[(&str, &str)]) -> Value {
    for (pointer, id) in ids {
        let object = if pointer.is_empty() {
            &mut doc
        } else {
            doc.pointer_mut(pointer).expect("pointer into the document")
        };
        let object = object.as_object_mut().expect("an object");
        object.insert("canonicalId".to_owned(), json!(id));
        if let Some(t) = object.shift_remove("identifiedType") {
            object.insert("type".to_owned(), t);
        } else if object.get("type") == Some(&json!("Identifiable")) {
            object.insert("type".to_owned(), json!("Identified"));
        }
    }
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_identifiers_get_canonical_ids_and_predecessors_pass_theirs_on() {
    // Arrange: a Sierra work and its FOLIO successor (root and nested item both name their
    // predecessors) in one batch; a max batch of 3 splits the 5 identifiers over two calls.
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    let sierra = work("b1");
    let folio = json!({
        "type": "Identifiable",
        "sourceIdentifier": sid("folio-instance", "Work", "f1"),
        "predecessorIdentifier": sid("sierra-system-number", "Work", "b1"),
        "data": {"items": [{"id": {
            "type": "Identifiable",
            "sourceIdentifier": sid("folio-item", "Item", "fi1"),
            "predecessorIdentifier": sid("sierra-system-number", "Item", "i-b1")
        }}]}
    });
    input
        .send_all(&[sierra.to_string(), folio.to_string()])
        .await;

    // Act
    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--mint-max-batch", "3", "--visibility-timeout", "10s"]);
    let adapter = AdapterProcess::start(&args);
    let mut docs = output.receive(2).await;
    docs.sort_by(|a, b| value_of(&a.json).cmp(value_of(&b.json)));

    // Assert
    let ids = minter
        .lookup(&[
            pb_sid("sierra-system-number", "Work", "b1"),
            pb_sid("lc-subjects", "Subject", "sh-b1"),
            pb_sid("sierra-system-number", "Item", "i-b1"),
            pb_sid("folio-instance", "Work", "f1"),
            pb_sid("folio-item", "Item", "fi1"),
        ])
        .await;
    let ids: Vec<String> = ids
        .into_iter()
        .map(|id| id.expect("every identifier was minted"))
        .collect();
    let (b1, sh, item, f1, fi1) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);
    // The raw bodies are compared, not parsed `Value`s (whose equality ignores key order): the
    // expected document is serialised with its keys in order (serde_json's preserve_order), and
    // so is the input, so key order is checked too.
    assert_eq!(
        docs[0].body,
        identified(
            sierra,
            &[
                ("", b1),
                ("/data/subjects/0/id", sh),
                ("/data/items/0/id", item)
            ]
        )
        .to_string(),
        "every identifiable object at every depth, and nothing else (key order included), is changed"
    );
    assert_eq!(
        docs[1].body,
        identified(folio, &[("", f1), ("/data/items/0/id", fi1)]).to_string()
    );
    assert_eq!(f1, b1, "the FOLIO work inherits the Sierra work's ID");
    assert_eq!(
        fi1, item,
        "the nested FOLIO item inherits the Sierra item's ID"
    );
    input.wait_until_empty().await;
    assert_eq!(
        adapter
            .metric(r#"idminter_adapter_messages_total{result="published"}"#)
            .await,
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sns_envelope_is_unwrapped_and_an_sns_topic_gets_the_identified_document() {
    // Arrange: topic -> input queue (in envelopes); adapter -> output topic -> output queue.
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let (input, collected) = (aws.queue("in").await, aws.queue("collected").await);
    let (input_topic, output_topic) = (aws.topic("works").await, aws.topic("identified").await);
    aws.subscribe(&input_topic, &input).await;
    aws.subscribe(&output_topic, &collected).await;
    let doc = work("b2");

    // Act
    aws.publish(&input_topic, &doc.to_string()).await;
    let minter_url = minter.url();
    let _adapter = AdapterProcess::start(&[
        "--queue-url",
        &input.url,
        "--output-topic-arn",
        &output_topic,
        "--minter-addr",
        &minter_url,
    ]);
    let received = collected.receive(1).await;

    // Assert: the output queue gets the topic's envelope, whose Message is the document alone.
    let envelope = &received[0].json;
    assert_eq!(envelope["Type"], "Notification", "{envelope}");
    assert_eq!(envelope["TopicArn"], output_topic);
    let published: Value = serde_json::from_str(
        envelope["Message"]
            .as_str()
            .expect("the Message is a string"),
    )
    .expect("the Message is JSON");
    let ids = minter
        .lookup(&[pb_sid("sierra-system-number", "Work", "b2")])
        .await;
    let id = ids[0].clone().expect("minted");
    assert_eq!(published["canonicalId"], id.as_str());
    assert_eq!(published["type"], "Identified");
    assert!(
        published.get("Type").is_none() && published.get("Message").is_none(),
        "the input envelope is not passed on: {published}"
    );
    input.wait_until_empty().await;
}
