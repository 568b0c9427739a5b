//! The minter or the output unavailable: nothing is deleted, the batch is kept invisible (and so
//! out of the dead-letter queue), `/healthz` says why, and everything is delivered on recovery.

use std::collections::BTreeSet;

use crate::helpers::Proxy;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn while_the_minter_is_down_nothing_is_deleted_and_nothing_is_lost() {
    // Arrange: the minter behind a proxy we can cut; an input queue that dead-letters after two
    // receives, so that an adapter letting its batch go back to the queue would lose good
    // documents to the dead-letter queue. A 10 s visibility, extended every 5 s: an extension
    // that comes seconds late on a loaded machine still comes in time.
    let minter = MinterUnderTest::start().await;
    let proxy = Proxy::start(minter.process.grpc_addr).await;
    proxy.cut();
    let aws = Aws::new();
    let (input, dlq) = aws.queue_with_dlq("in", 2).await;
    let output = aws.queue("out").await;
    let values: Vec<String> = (0..15).map(|i| format!("m{i}")).collect();
    let bodies: Vec<String> = values.iter().map(|v| work(v).to_string()).collect();
    input.send_all(&bodies).await;

    // Act: the adapter takes a batch of 10 while the minter is unreachable.
    let minter_url = format!("http://{}", proxy.addr);
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--visibility-timeout", "10s"]);
    let adapter = AdapterProcess::start(&args);
    let why = adapter
        .wait_until_unhealthy_because("minter unavailable")
        .await;
    assert!(
        why.contains(&minter_url),
        "/healthz names the minter: {why}"
    );

    // Assert, during the outage: the batch stays in hand past its first 10 s of visibility. The
    // second extension is logged 10 s after the receive, when the batch would have been visible
    // again without the first; until then and after it, no message was deleted (15 in all) and
    // none of the batch became visible (5 visible: the ones never received).
    let started = std::time::Instant::now();
    while adapter.count_log("visibility extended") < 2 {
        let (visible, in_flight) = input.counts().await;
        assert!(
            visible == 5 && in_flight == 10,
            "the batch is in hand: ({visible}, {in_flight}); /healthz: {why}"
        );
        assert!(
            started.elapsed() < DEADLINE,
            "the visibility was extended only {} times",
            adapter.count_log("visibility extended")
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(input.counts().await, (5, 10), "nothing deleted or returned");
    assert_eq!(
        dlq.counts().await,
        (0, 0),
        "no good document is dead-lettered"
    );
    assert!(output.receive_once(0).await.is_empty());
    // The metrics show the backlog: the depth of what waits, and an age that keeps growing.
    eventually("queue depth 5", || async {
        adapter.metric("idminter_adapter_queue_depth").await == Some(5.0)
    })
    .await;
    eventually("oldest message age above 2 s", || async {
        adapter
            .metric("idminter_adapter_oldest_message_age_seconds")
            .await
            .is_some_and(|age| age > 2.0)
    })
    .await;

    // Act: the minter comes back.
    proxy.restore();

    // Assert: everything is delivered, once each, and the input is emptied.
    let published = output.receive(15).await;
    let got: BTreeSet<&str> = published.iter().map(|m| value_of(&m.json)).collect();
    let expected: BTreeSet<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(got, expected);
    adapter.wait_until_healthy().await;
    input.wait_until_empty().await;
    assert_eq!(dlq.counts().await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn while_the_output_is_unavailable_nothing_is_deleted_and_nothing_is_lost() {
    // Arrange: a batch of five for an output queue that is gone.
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    output.delete_queue().await;
    let bodies: Vec<String> = (0..5).map(|i| work(&format!("o{i}")).to_string()).collect();
    input.send_all(&bodies).await;

    // Act
    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--visibility-timeout", "2s"]);
    let adapter = AdapterProcess::start(&args);
    let why = adapter
        .wait_until_unhealthy_because("output unavailable")
        .await;

    // Assert: /healthz names the output and the error; nothing is deleted.
    assert!(why.contains(&output.url), "{why}");
    assert_eq!(
        input.counts().await,
        (0, 5),
        "all five are in hand, none deleted"
    );

    // Act: the output is restored.
    output.recreate().await;

    // Assert
    let published = output.receive(5).await;
    let got: BTreeSet<&str> = published.iter().map(|m| value_of(&m.json)).collect();
    assert_eq!(got, BTreeSet::from(["o0", "o1", "o2", "o3", "o4"]));
    adapter.wait_until_healthy().await;
    input.wait_until_empty().await;
}
