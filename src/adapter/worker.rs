//! The processing loop: receive a batch, identify its documents with one MintIds call, publish the
//! identified documents, and delete each input message only after its output was accepted.
//!
//! The rules that keep it at-least-once and losing nothing:
//! - A document that cannot be identified (not JSON, a malformed identifier, rejected by the
//!   minter, refused by the output) is logged with its message id and left undeleted: its
//!   visibility runs out and the queue's redrive policy moves it to the dead-letter queue after
//!   maxReceiveCount receives. When the minter rejects a batch, its documents are minted one by one
//!   to find the culprits, so they do not hold back their batch-mates.
//! - While the minter or the output is unavailable, the batch is kept in hand (nothing deleted)
//!   and retried after capped exponential backoff, with `/healthz` saying why. Keeping it, rather
//!   than letting it return to the queue, keeps good documents from being counted towards
//!   maxReceiveCount and dead-lettered during an outage.
//! - The messages in work are kept invisible: their visibility is extended each time half the
//!   visibility timeout has passed, for as long as the batch is in work.
//! - On shutdown no new batch is received; the batch in work is finished, or, when it is waiting
//!   on an unavailable dependency, handed back to the queue (visibility 0) for another consumer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::adapter::backoff::Backoff;
use crate::adapter::document::{Document, Mint, SourceKey};
use crate::adapter::minter::{MintError, MintIds};
use crate::adapter::monitor::{Dependency, MessageResult, Monitor};
use crate::adapter::output::Output;
use crate::adapter::queue::{MAX_BATCH_ENTRIES, Queue, Received};

/// Shutdown was requested while the worker waited to retry.
#[derive(Debug)]
struct Stopped;

/// The receive-identify-publish-delete loop. It reaches the network only through its three
/// boundaries ([`Queue`], the [`Output`]'s sink, [`MintIds`]), so that its rules are tested
/// against in-memory ones (`adapter::memory`) as well as against SQS and a real minter.
pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub output: Output,
    pub minter: Arc<dyn MintIds>,
    pub monitor: Monitor,
    pub max_messages: u8,
    pub wait: Duration,
    /// `None`: the queue's own, read at start.
    pub visibility: Option<Duration>,
    pub max_backoff: Duration,
}

/// The messages of the batch in work that are neither done (deleted) nor given up (poison): the
/// ones whose visibility is extended, and handed back on shutdown.
struct InWork(Mutex<Vec<Received>>);

impl InWork {
    fn snapshot(&self) -> Vec<Received> {
        self.lock().clone()
    }

    fn remove(&self, message_id: &str) {
        self.lock().retain(|m| m.message_id != message_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        // Each update is one `retain`; a panicking holder cannot leave it half-done.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Worker {
    /// Runs until `stop` is cancelled and the batch in work is finished or handed back.
    pub async fn run_until_stopped(&self, stop: &CancellationToken) {
        let Ok(visibility) = self.resolve_visibility(stop).await else {
            return;
        };
        tracing::info!(?visibility, "receiving");
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            // A receive cut short by shutdown may leave messages received but unseen: they
            // return to the queue when their visibility runs out.
            let received = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                received = self.queue.receive(self.max_messages, self.wait, visibility) => received,
            };
            match received {
                Ok(messages) => {
                    self.monitor.available(Dependency::InputQueue);
                    backoff.reset();
                    self.monitor
                        .received(messages.iter().filter_map(|m| m.sent));
                    if !messages.is_empty() {
                        self.handle_batch(messages, visibility, stop).await;
                    }
                }
                Err(reason) => {
                    self.monitor.unavailable(Dependency::InputQueue, &reason);
                    if pause(&mut backoff, stop).await.is_err() {
                        break;
                    }
                }
            }
        }
    }

    async fn resolve_visibility(&self, stop: &CancellationToken) -> Result<Duration, Stopped> {
        if let Some(visibility) = self.visibility {
            return Ok(visibility);
        }
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            match self.queue.visibility_timeout().await {
                Ok(visibility) if visibility >= Duration::from_secs(1) => {
                    self.monitor.available(Dependency::InputQueue);
                    return Ok(visibility);
                }
                Ok(visibility) => {
                    // A queue with visibility 0 would hand our messages to every other
                    // consumer at once; work with one second and say so.
                    tracing::warn!(
                        ?visibility,
                        "the input queue's visibility timeout is below 1s: using 1s; set --visibility-timeout"
                    );
                    return Ok(Duration::from_secs(1));
                }
                Err(reason) => {
                    self.monitor.unavailable(Dependency::InputQueue, &reason);
                    pause(&mut backoff, stop).await?;
                }
            }
        }
    }

    #[tracing::instrument(name = "Identifying a batch", skip_all, fields(messages = messages.len()))]
    async fn handle_batch(
        &self,
        messages: Vec<Received>,
        visibility: Duration,
        stop: &CancellationToken,
    ) {
        let in_work = InWork(Mutex::new(messages.clone()));
        let finished = tokio::select! {
            finished = self.process(messages, &in_work, stop) => finished,
            never = self.keep_invisible(&in_work, visibility) => match never {},
        };
        if finished.is_err() {
            self.release(&in_work).await;
        }
    }

    async fn process(
        &self,
        messages: Vec<Received>,
        in_work: &InWork,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut parsed = Vec::with_capacity(messages.len());
        for message in messages {
            match Document::parse(&message.body) {
                Ok(document) => parsed.push((message, document)),
                Err(e) => self.poison(&message, &e.to_string(), in_work),
            }
        }
        let identified = self.identify(parsed, in_work, stop).await?;
        self.publish_and_delete(identified, in_work, stop).await
    }

    /// One MintIds call for the whole batch; when the minter rejects it, one call per document.
    async fn identify(
        &self,
        documents: Vec<(Received, Document)>,
        in_work: &InWork,
        stop: &CancellationToken,
    ) -> Result<Vec<(Received, String)>, Stopped> {
        let mut identified = Vec::with_capacity(documents.len());
        let all: Vec<&Mint> = documents.iter().flat_map(|(_, d)| d.mints()).collect();
        match self.mint(&all, stop).await? {
            Ok(ids) => {
                for (message, document) in documents {
                    self.write(message, document, &ids, &mut identified, in_work);
                }
            }
            Err(rejection) if documents.len() == 1 => {
                for (message, _) in &documents {
                    self.poison(message, &rejection, in_work);
                }
            }
            Err(rejection) => {
                tracing::info!(%rejection, "the minter rejected the batch: minting its documents one by one");
                let mut documents = documents;
                // Documents naming predecessors last: a predecessor minted by a batch-mate is
                // then there when they are minted.
                documents.sort_by_key(|(_, d)| d.has_predecessors());
                for (message, document) in documents {
                    let mints: Vec<&Mint> = document.mints().iter().collect();
                    match self.mint(&mints, stop).await? {
                        Ok(ids) => self.write(message, document, &ids, &mut identified, in_work),
                        Err(rejection) => self.poison(&message, &rejection, in_work),
                    }
                }
            }
        }
        Ok(identified)
    }

    /// Mints, retrying while the minter is unavailable. The inner error is the minter's rejection.
    async fn mint(
        &self,
        mints: &[&Mint],
        stop: &CancellationToken,
    ) -> Result<Result<HashMap<SourceKey, String>, String>, Stopped> {
        if mints.is_empty() {
            return Ok(Ok(HashMap::new()));
        }
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            match self.minter.mint(mints).await {
                Ok(ids) => {
                    self.monitor.available(Dependency::Minter);
                    return Ok(Ok(ids));
                }
                Err(MintError::Rejected(why)) => {
                    self.monitor.available(Dependency::Minter);
                    return Ok(Err(format!("the minter rejected it: {why}")));
                }
                Err(MintError::Unavailable(why)) => {
                    self.monitor.unavailable(Dependency::Minter, &why);
                    pause(&mut backoff, stop).await?;
                }
            }
        }
    }

    fn write(
        &self,
        message: Received,
        document: Document,
        ids: &HashMap<SourceKey, String>,
        identified: &mut Vec<(Received, String)>,
        in_work: &InWork,
    ) {
        match document.identify(ids) {
            Ok(body) => identified.push((message, body)),
            Err(e) => self.poison(&message, &e.to_string(), in_work),
        }
    }

    /// Publishes, deletes what the output accepted, and retries the rest while the output is
    /// unavailable.
    async fn publish_and_delete(
        &self,
        mut pending: Vec<(Received, String)>,
        in_work: &InWork,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut backoff = Backoff::new(self.max_backoff);
        while !pending.is_empty() {
            let bodies: Vec<&str> = pending.iter().map(|(_, body)| body.as_str()).collect();
            let published = self.output.publish(&bodies).await;
            for (i, why) in &published.refused {
                if let Some((message, _)) = pending.get(*i) {
                    let reason = format!("the output refused the identified document: {why}");
                    self.poison(message, &reason, in_work);
                }
            }
            let accepted: Vec<&Received> = published
                .accepted
                .iter()
                .filter_map(|&i| pending.get(i).map(|(m, _)| m))
                .collect();
            self.monitor.count(MessageResult::Published, accepted.len());
            match &published.unavailable {
                None => self.monitor.available(Dependency::Output),
                Some(why) => self.monitor.unavailable(Dependency::Output, why),
            }
            self.delete(&accepted, in_work, stop).await?;
            let retry: HashSet<usize> = published.retry.into_iter().collect();
            pending = pending
                .into_iter()
                .enumerate()
                .filter(|(i, _)| retry.contains(i))
                .map(|(_, p)| p)
                .collect();
            if !pending.is_empty() {
                pause(&mut backoff, stop).await?;
            }
        }
        Ok(())
    }

    /// Deletes messages whose output was accepted, retrying while the queue is unavailable. A
    /// message the queue refuses to delete (its receipt handle expired, say) will be received
    /// again and published again: delivery is at least once.
    async fn delete(
        &self,
        messages: &[&Received],
        in_work: &InWork,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        for chunk in messages.chunks(MAX_BATCH_ENTRIES) {
            let mut backoff = Backoff::new(self.max_backoff);
            loop {
                match self.queue.delete(chunk).await {
                    Ok(failures) => {
                        self.monitor.available(Dependency::InputQueue);
                        for failure in failures {
                            tracing::warn!(message_id = %failure.message_id, reason = %failure.reason,
                                "published but not deleted: it will be delivered again");
                        }
                        for message in chunk {
                            in_work.remove(&message.message_id);
                        }
                        break;
                    }
                    Err(reason) => {
                        self.monitor.unavailable(Dependency::InputQueue, &reason);
                        pause(&mut backoff, stop).await?;
                    }
                }
            }
        }
        Ok(())
    }

    fn poison(&self, message: &Received, reason: &str, in_work: &InWork) {
        tracing::warn!(
            message_id = %message.message_id,
            receive_count = message.receive_count,
            reason,
            "document cannot be identified: left undeleted for the queue's redrive policy"
        );
        self.monitor.count(MessageResult::Poison, 1);
        in_work.remove(&message.message_id);
    }

    /// Extends the visibility of the messages in work each time half the timeout has passed.
    /// Never returns; dropped when the batch is done.
    async fn keep_invisible(
        &self,
        in_work: &InWork,
        visibility: Duration,
    ) -> std::convert::Infallible {
        let period = visibility / 2;
        loop {
            tokio::time::sleep(period).await;
            let messages = in_work.snapshot();
            for chunk in messages.chunks(MAX_BATCH_ENTRIES) {
                let chunk: Vec<&Received> = chunk.iter().collect();
                match self.queue.change_visibility(&chunk, visibility).await {
                    Ok(failures) => {
                        for failure in failures {
                            tracing::warn!(message_id = %failure.message_id, reason = %failure.reason,
                                "could not extend the visibility: another consumer may receive it too");
                        }
                        tracing::debug!(messages = chunk.len(), ?visibility, "visibility extended");
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "could not extend the visibility of the batch in work");
                    }
                }
            }
        }
    }

    /// Hands the messages still in work back to the queue at once (visibility 0).
    async fn release(&self, in_work: &InWork) {
        let messages = in_work.snapshot();
        for chunk in messages.chunks(MAX_BATCH_ENTRIES) {
            let chunk: Vec<&Received> = chunk.iter().collect();
            match self.queue.change_visibility(&chunk, Duration::ZERO).await {
                Ok(_) => {
                    self.monitor.count(MessageResult::Released, chunk.len());
                    tracing::info!(
                        messages = chunk.len(),
                        "shutting down: handed the unfinished messages back to the queue"
                    );
                }
                Err(reason) => {
                    tracing::warn!(%reason, "shutting down: could not hand messages back; they return when their visibility runs out");
                }
            }
        }
    }
}

/// Waits the next backoff step, or returns early when shutdown is requested.
async fn pause(backoff: &mut Backoff, stop: &CancellationToken) -> Result<(), Stopped> {
    let delay = backoff.next_delay();
    tokio::select! {
        () = stop.cancelled() => Err(Stopped),
        () = tokio::time::sleep(delay) => Ok(()),
    }
}

/// The worker's rules against the in-memory queue, output and minter, on tokio's paused clock:
/// backoff waits and visibility timeouts pass at once, in order. `tests/adapter` checks the same
/// worker against moto and a real minter.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::memory::{Event, Journal, MemoryMinter, MemoryQueue, MemorySink};
    use serde_json::{Value, json};
    use tokio::sync::watch;

    /// The worker and its in-memory surroundings.
    struct Setup {
        journal: Journal,
        queue: Arc<MemoryQueue>,
        sink: Arc<MemorySink>,
        minter: Arc<MemoryMinter>,
        health: watch::Receiver<Option<String>>,
        worker: Worker,
    }

    fn setup(
        queue: impl FnOnce(Journal) -> MemoryQueue,
        sink: impl FnOnce(Journal) -> MemorySink,
        visibility: Duration,
    ) -> Setup {
        let journal = Journal::new();
        let queue = Arc::new(queue(journal.clone()));
        let sink = Arc::new(sink(journal.clone()));
        let minter = Arc::new(MemoryMinter::new(journal.clone()));
        let (monitor, health) = Monitor::new();
        let worker = Worker {
            queue: queue.clone(),
            output: Output::new(sink.clone()),
            minter: minter.clone(),
            monitor,
            max_messages: 10,
            wait: Duration::from_secs(20),
            visibility: Some(visibility),
            max_backoff: Duration::from_secs(1),
        };
        Setup {
            journal,
            queue,
            sink,
            minter,
            health,
            worker,
        }
    }

    fn plain() -> Setup {
        setup(MemoryQueue::new, MemorySink::new, Duration::from_secs(30))
    }

    impl Setup {
        /// Runs the worker until `done` holds for the journal.
        async fn run_until(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
            let stop = CancellationToken::new();
            tokio::select! {
                () = self.worker.run_until_stopped(&stop) => panic!("the worker stopped by itself"),
                () = self.journal.until(what, done) => {}
            }
        }
    }

    fn work(value: &str) -> Value {
        json!({
            "type": "Identifiable",
            "sourceIdentifier": {
                "identifierType": {"id": "sierra-system-number"},
                "ontologyType": "Work",
                "value": value
            }
        })
    }

    fn work_inheriting(value: &str, predecessor: &str) -> Value {
        let mut doc = work(value);
        doc["predecessorIdentifier"] = work(predecessor)["sourceIdentifier"].clone();
        doc
    }

    /// The value of the published document's identifier, if `event` is a publication.
    fn published_value(event: &Event) -> Option<String> {
        let Event::Published(body) = event else {
            return None;
        };
        let doc: Value = serde_json::from_str(body).expect("published JSON");
        doc["sourceIdentifier"]["value"].as_str().map(str::to_owned)
    }

    fn count(events: &[Event], wanted: &Event) -> usize {
        events.iter().filter(|e| *e == wanted).count()
    }

    fn deleted(message_id: &str) -> Event {
        Event::Deleted(message_id.to_owned())
    }

    fn publications_of(events: &[Event], value: &str) -> usize {
        events
            .iter()
            .filter(|e| published_value(e).as_deref() == Some(value))
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_deleted_only_after_its_identified_document_was_published() {
        // Arrange: the output fails its first three calls.
        let s = plain();
        s.sink.fail_calls(3);
        let messages: Vec<(String, &str)> = ["a", "b", "c"]
            .into_iter()
            .map(|v| (s.queue.send(&work(v).to_string()), v))
            .collect();
        let stop = CancellationToken::new();
        let run = s.worker.run_until_stopped(&stop);
        tokio::pin!(run);

        // Act 1: the output is down.
        let mut health = s.health.clone();
        tokio::select! {
            () = &mut run => panic!("the worker stopped by itself"),
            said = health.wait_for(|h| h.as_deref().is_some_and(|h| h.contains("output unavailable"))) => {
                said.expect("the monitor is alive");
            }
        }
        // Assert 1
        let events = s.journal.events();
        assert!(
            !events.iter().any(|e| matches!(e, Event::Deleted(_))),
            "nothing is deleted while the output is down: {events:#?}"
        );

        // Act 2: the output is back.
        tokio::select! {
            () = &mut run => panic!("the worker stopped by itself"),
            () = s.journal.until("every message deleted", |events| {
                messages.iter().all(|(id, _)| events.contains(&deleted(id)))
            }) => {}
        }

        // Assert 2
        let events = s.journal.events();
        for (id, value) in &messages {
            let published_at = events
                .iter()
                .position(|e| published_value(e).as_deref() == Some(*value))
                .expect("published");
            let deleted_at = events.iter().position(|e| *e == deleted(id));
            assert!(
                deleted_at > Some(published_at),
                "{value}: deleted before it was published: {events:#?}"
            );
            assert_eq!(
                publications_of(&events, value),
                1,
                "{value}: published once"
            );
        }
        for event in &events {
            if let Event::Published(body) = event {
                let doc: Value = serde_json::from_str(body).expect("JSON");
                assert_eq!(doc["type"], "Identified", "{body}");
                assert!(doc["canonicalId"].is_string(), "{body}");
            }
        }
        assert_eq!(*s.health.borrow(), None, "healthy again");
    }

    #[tokio::test(start_paused = true)]
    async fn documents_that_cannot_be_identified_go_to_the_dead_letter_queue_and_their_batch_mates_pass()
     {
        // Arrange: the minter rejects the batch for the document naming a predecessor never minted.
        let s = setup(
            |journal| MemoryQueue::new(journal).with_max_receive_count(3),
            MemorySink::new,
            Duration::from_secs(2),
        );
        let not_json = s.queue.send("{not json");
        let orphan = s
            .queue
            .send(&work_inheriting("orphan", "never-minted").to_string());
        let good = s.queue.send(&work("good").to_string());

        // Act
        s.run_until(
            "both poison messages dead-lettered, the good one deleted",
            |events| {
                events.contains(&deleted(&good))
                    && events.contains(&Event::DeadLettered(not_json.clone()))
                    && events.contains(&Event::DeadLettered(orphan.clone()))
            },
        )
        .await;

        // Assert
        let events = s.journal.events();
        for poison in [&not_json, &orphan] {
            let receives: Vec<u32> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Received {
                        message_id,
                        receive_count,
                    } if message_id == poison => Some(*receive_count),
                    _ => None,
                })
                .collect();
            assert_eq!(
                receives,
                [1, 2, 3],
                "{poison}: received maxReceiveCount times"
            );
            assert_eq!(
                count(&events, &deleted(poison)),
                0,
                "{poison} is never deleted"
            );
        }
        assert_eq!(publications_of(&events, "orphan"), 0);
        assert_eq!(publications_of(&events, "good"), 1);
        let calls: Vec<&Vec<String>> = events
            .iter()
            .filter_map(|e| match e {
                Event::MintCall(values) => Some(values),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls[..3],
            [
                &vec!["orphan".to_owned(), "good".to_owned()],
                &vec!["good".to_owned()],
                &vec!["orphan".to_owned()]
            ],
            "one call for the batch; once rejected, one per document, predecessors last"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_batch_in_work_stays_invisible_while_the_minter_is_unavailable() {
        // Arrange: retries outlast the 2 s visibility timeout several times over.
        let s = setup(MemoryQueue::new, MemorySink::new, Duration::from_secs(2));
        s.minter.fail_calls(10);
        let id = s.queue.send(&work("a").to_string());

        // Act
        s.run_until("the message deleted", |events| {
            events.contains(&deleted(&id))
        })
        .await;

        // Assert
        let events = s.journal.events();
        let extended = Event::Visibility {
            message_id: id.clone(),
            visibility: Duration::from_secs(2),
        };
        assert!(count(&events, &extended) >= 2, "{events:#?}");
        let receives = events
            .iter()
            .filter(|e| matches!(e, Event::Received { .. }))
            .count();
        assert_eq!(receives, 1, "never received twice: {events:#?}");
        assert_eq!(publications_of(&events, "a"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn on_shutdown_a_batch_waiting_for_the_minter_is_handed_back_to_the_queue() {
        // Arrange
        let s = plain();
        s.minter.fail_calls(usize::MAX);
        let ids = [
            s.queue.send(&work("a").to_string()),
            s.queue.send(&work("b").to_string()),
        ];
        let stop = CancellationToken::new();
        let mut health = s.health.clone();

        // Act: stop once the worker says the minter is unavailable.
        let ((), said) = tokio::join!(s.worker.run_until_stopped(&stop), async {
            let said = health
                .wait_for(|h| {
                    h.as_deref()
                        .is_some_and(|h| h.contains("minter unavailable"))
                })
                .await
                .map(|h| h.clone());
            stop.cancel();
            said
        });

        // Assert
        assert!(said.is_ok());
        let events = s.journal.events();
        for id in &ids {
            let handed_back = Event::Visibility {
                message_id: id.clone(),
                visibility: Duration::ZERO,
            };
            assert_eq!(count(&events, &handed_back), 1, "{id}: {events:#?}");
            assert_eq!(count(&events, &deleted(id)), 0);
        }
        assert!(!events.iter().any(|e| matches!(e, Event::Published(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_document_is_published_once_while_the_queue_refuses_to_delete_it() {
        // Arrange
        let s = plain();
        s.queue.fail_deletes(3);
        let id = s.queue.send(&work("a").to_string());

        // Act
        s.run_until("the message deleted", |events| {
            events.contains(&deleted(&id))
        })
        .await;

        // Assert
        assert_eq!(publications_of(&s.journal.events(), "a"), 1);
        assert_eq!(*s.health.borrow(), None, "healthy again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_document_the_output_refuses_does_not_hold_back_its_batch_mates() {
        // Arrange: the output refuses any call carrying a document over 1000 bytes, as a whole.
        let s = setup(
            |journal| MemoryQueue::new(journal).with_max_receive_count(2),
            |journal| MemorySink::new(journal).refusing_documents_over(1000),
            Duration::from_secs(30),
        );
        let mut large = work("large");
        large["padding"] = json!("x".repeat(2000));
        let mut small = Vec::new();
        for value in ["s1", "s2", "s3"] {
            small.push(s.queue.send(&work(value).to_string()));
        }
        let large_id = s.queue.send(&large.to_string());
        small.push(s.queue.send(&work("s4").to_string()));

        // Act
        s.run_until(
            "the small ones deleted, the large one dead-lettered",
            |events| {
                small.iter().all(|id| events.contains(&deleted(id)))
                    && events.contains(&Event::DeadLettered(large_id.clone()))
            },
        )
        .await;

        // Assert
        let events = s.journal.events();
        assert_eq!(publications_of(&events, "large"), 0);
        for value in ["s1", "s2", "s3", "s4"] {
            assert_eq!(publications_of(&events, value), 1, "{value}");
        }
    }
}
