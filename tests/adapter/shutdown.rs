//! SIGTERM: stop receiving, finish or hand back the batch in work, exit 0.

use std::time::{Duration, Instant};

use crate::helpers::Proxy;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_the_minter_is_down_hands_the_batch_back_and_exits_0() {
    // Arrange: a batch held while the minter is unreachable, with a visibility of a minute.
    let minter = MinterUnderTest::start().await;
    let proxy = Proxy::start(minter.process.grpc_addr).await;
    proxy.cut();
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    let bodies: Vec<String> = (0..3).map(|i| work(&format!("t{i}")).to_string()).collect();
    input.send_all(&bodies).await;
    let minter_url = format!("http://{}", proxy.addr);
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--visibility-timeout", "60s"]);
    let mut adapter = AdapterProcess::start(&args);
    adapter
        .wait_until_unhealthy_because("minter unavailable")
        .await;
    assert_eq!(input.counts().await, (0, 3));

    // Act
    adapter.terminate();
    let status = adapter.wait_for_exit();

    // Assert: a clean exit, and the batch is back in the queue at once, not in a minute.
    assert_eq!(status.code(), Some(0), "{}", adapter.log_lines().join("\n"));
    assert_eq!(input.counts().await, (3, 0));
    assert_eq!(adapter.count_log("handed the unfinished messages back"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_long_poll_exits_0_without_waiting_for_it() {
    // Arrange: an idle adapter in a 20 s long poll.
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let (input, output) = (aws.queue("in").await, aws.queue("out").await);
    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--wait-seconds", "20"]);
    let mut adapter = AdapterProcess::start(&args);
    adapter.wait_for_log("receiving");

    // Act
    let started = Instant::now();
    adapter.terminate();
    let status = adapter.wait_for_exit();

    // Assert
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    adapter.wait_for_log("stopped");
}
