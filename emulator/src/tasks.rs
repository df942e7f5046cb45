//! Runs the background tasks of `pyflare dev`: each open binding's (see
//! `pyflare_bindings::tasks`) and pyflare's own cron timer, all on the one
//! clock, all delivering their events through the supervisor, and all
//! stopped at shutdown; a binding's tasks also stop when a reload replaces
//! the binding.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::host::supervisor::Dispatcher;
use crate::host::{
    BindingEvent, BindingMap, BindingOutcome, ScheduledEvent, ScheduledOutcome, Undelivered,
};
use pyflare_bindings::{Clock, Delivered, Delivery, EventSink, Task, TaskContext};

#[async_trait::async_trait]
impl EventSink for Dispatcher {
    async fn deliver(&self, event: Delivery) -> Delivered {
        let (outcome, result) = match event {
            Delivery::Scheduled {
                cron,
                scheduled_time_ms,
            } => {
                let outcome = self
                    .dispatch(ScheduledEvent {
                        cron,
                        scheduled_time: scheduled_time_ms,
                    })
                    .await;
                let result = serde_json::json!({ "no_retry": outcome.no_retry() });
                (outcome, result)
            }
            Delivery::Binding {
                binding,
                handler,
                payload,
            } => {
                let event = BindingEvent {
                    binding,
                    handler,
                    payload,
                };
                let BindingOutcome { outcome, result } = self.dispatch(event).await;
                (outcome, result)
            }
        };
        match outcome {
            ScheduledOutcome::Ok { .. } => Delivered::Ok { result },
            ScheduledOutcome::Undelivered(Undelivered::ShuttingDown) => {
                Delivered::Undelivered("pyflare is stopping".into())
            }
            // The handler never ran: a queue batch is not a failed attempt.
            ScheduledOutcome::Undelivered(Undelivered::LoadFailed(_)) => {
                Delivered::Undelivered("the worker failed to load".into())
            }
            failed => Delivered::Failed {
                outcome: failed.as_str().to_owned(),
                message: failed.detail(),
                result,
            },
        }
    }
}

/// How long stopped tasks may take to return at shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The running tasks and the signals that stop them.
#[derive(Debug)]
pub struct BackgroundTasks {
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventSink>,
    /// Stops pyflare's own tasks, at shutdown.
    shutdown: watch::Sender<bool>,
    /// Stops the tasks of the bindings now open (replaced on reload).
    bindings: Mutex<watch::Sender<bool>>,
    running: Mutex<JoinSet<()>>,
}

impl BackgroundTasks {
    pub fn new(clock: Arc<dyn Clock>, events: Arc<dyn EventSink>) -> Self {
        Self {
            clock,
            events,
            shutdown: watch::channel(false).0,
            bindings: Mutex::new(watch::channel(false).0),
            running: Mutex::new(JoinSet::new()),
        }
    }

    fn context(&self, stop: watch::Receiver<bool>) -> TaskContext {
        TaskContext {
            clock: self.clock.clone(),
            events: self.events.clone(),
            stop,
        }
    }

    fn spawn(&self, task: Task) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while running.try_join_next().is_some() {}
        running.spawn(task);
    }

    /// Starts a task of pyflare's own, stopped at shutdown.
    pub fn spawn_own(&self, make: impl FnOnce(TaskContext) -> Task) {
        self.spawn(make(self.context(self.shutdown.subscribe())));
    }

    /// Starts the tasks of `bindings`, stopping those of the bindings they
    /// replace.
    pub fn replace_bindings(&self, bindings: &BindingMap) {
        let stop = watch::channel(false).0;
        let old = std::mem::replace(
            &mut *self.bindings.lock().unwrap_or_else(|p| p.into_inner()),
            stop.clone(),
        );
        let _ = old.send(true);
        let cx = self.context(stop.subscribe());
        for binding in bindings.values() {
            for task in binding.tasks(&cx) {
                self.spawn(task);
            }
        }
    }

    /// Stops every task and waits (briefly) for them to return.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        let _ = self
            .bindings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(true);
        let mut running =
            std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        let all = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_TIMEOUT, all).await.is_err() {
            running.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyflare_bindings::{Binding, BodyStream, ManualClock, Reply, WireError};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Records what the tasks deliver.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Delivery>>);

    #[async_trait::async_trait]
    impl EventSink for Recorder {
        async fn deliver(&self, event: Delivery) -> Delivered {
            self.0.lock().unwrap().push(event);
            Delivered::Ok {
                result: serde_json::Value::Null,
            }
        }
    }

    /// A binding whose one task delivers an event on each minute of the
    /// clock, and says when it has returned.
    #[derive(Debug)]
    struct Ticker {
        name: &'static str,
        returned: Arc<AtomicBool>,
    }

    #[async_trait::async_trait]
    impl Binding for Ticker {
        fn name(&self) -> &str {
            self.name
        }
        fn kind(&self) -> &'static str {
            "ticker"
        }
        fn describe(&self) -> String {
            self.name.into()
        }
        async fn call(
            &self,
            _: &str,
            _: serde_json::Value,
            _: Option<BodyStream>,
        ) -> Result<Reply, WireError> {
            Ok(Reply::json(serde_json::Value::Null))
        }
        fn tasks(&self, cx: &TaskContext) -> Vec<Task> {
            let mut cx = cx.clone();
            let (name, returned) = (self.name, self.returned.clone());
            let mut minute = cx.clock.now_ms() / 60_000;
            vec![Box::pin(async move {
                while !cx.pause(1).await {
                    let now = cx.clock.now_ms() / 60_000;
                    if now > minute {
                        minute = now;
                        let event = Delivery::Scheduled {
                            cron: name.into(),
                            scheduled_time_ms: now * 60_000,
                        };
                        cx.events.deliver(event).await;
                    }
                }
                returned.store(true, Ordering::SeqCst);
            })]
        }
    }

    fn bindings(name: &'static str) -> (BindingMap, Arc<AtomicBool>) {
        let returned = Arc::new(AtomicBool::new(false));
        let binding = Arc::new(Ticker {
            name,
            returned: returned.clone(),
        });
        let map = BindingMap::from([(name.to_owned(), binding as Arc<dyn Binding>)]);
        (map, returned)
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..500 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("timed out");
    }

    #[tokio::test]
    async fn binding_tasks_run_on_the_clock_stop_when_replaced_and_at_shutdown() {
        let clock = Arc::new(ManualClock::new(0));
        let recorder = Arc::new(Recorder::default());
        let tasks = BackgroundTasks::new(clock.clone(), recorder.clone());
        let (first, first_returned) = bindings("FIRST");
        tasks.replace_bindings(&first);
        clock.advance(60_000);
        until(|| recorder.0.lock().unwrap().len() == 1).await;
        assert_eq!(
            recorder.0.lock().unwrap()[0],
            Delivery::Scheduled {
                cron: "FIRST".into(),
                scheduled_time_ms: 60_000
            }
        );

        // A reload's bindings replace the first ones: their task stops.
        let (second, second_returned) = bindings("SECOND");
        tasks.replace_bindings(&second);
        until(|| first_returned.load(Ordering::SeqCst)).await;
        clock.advance(60_000);
        until(|| recorder.0.lock().unwrap().len() == 2).await;
        assert_eq!(
            recorder.0.lock().unwrap()[1],
            Delivery::Scheduled {
                cron: "SECOND".into(),
                scheduled_time_ms: 120_000
            }
        );

        tasks.stop().await;
        assert!(second_returned.load(Ordering::SeqCst));
    }
}
