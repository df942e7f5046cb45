//! Alarms (<https://developers.cloudflare.com/durable-objects/api/alarms/>):
//! one per object, kept in the object's SQLite file (workerd's
//! `_cf_METADATA` table), fired on pyflare's clock by a background task that
//! delivers `alarm(alarmInfo)` to the object in the worker.
//!
//! A failed run is retried with exponential backoff from 2 s (2, 4, 8, 16,
//! 32, 64 s: Cloudflare's docs give the start and the 6 retries, not the
//! factor), up to 6 times. An alarm that came due while pyflare was
//! stopped fires once it starts. An alarm counts as set until its run
//! starts (`getAlarm` answers null during the run unless it sets another).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use super::store::ClassStore;
use crate::tasks::{Delivered, Delivery, Task, TaskContext};

/// Retries after the first failed run.
pub const MAX_RETRIES: u32 = 6;

/// The first retry's delay; each next one doubles it.
pub const FIRST_RETRY_MS: i64 = 2_000;

/// How often the timer looks at the clock when nothing wakes it (tests
/// move the clock forward without telling the task).
const POLL_MS: i64 = 100;

/// How long an object may sit idle before its instance is evicted (its
/// in-memory state dropped; storage stays): Cloudflare evicts after 70 to
/// 140 s without events
/// (<https://developers.cloudflare.com/durable-objects/reference/in-memory-state/>).
pub const EVICT_AFTER_MS: i64 = 70_000;

/// One object's alarm as the timer knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alarm {
    /// When it fires next; `None` while a run is under way (and nothing set
    /// another).
    pub at: Option<i64>,
    /// Failed runs so far of this alarm.
    pub retries: u32,
    /// A run is under way.
    pub running: bool,
}

/// The alarms of one class's objects.
#[derive(Debug, Default)]
pub struct Alarms {
    loaded: tokio::sync::OnceCell<()>,
    map: std::sync::Mutex<HashMap<String, Alarm>>,
    wake: tokio::sync::Notify,
    /// When each object with a live instance last had an event.
    active: std::sync::Mutex<HashMap<String, i64>>,
}

impl Alarms {
    /// Notes an event of object `id` at `now` (its instance is live).
    pub fn touch(&self, id: &str, now: i64) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), now);
    }

    /// Whether object `id` has a live instance, as far as pyflare knows.
    pub fn is_active(&self, id: &str) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Takes the objects idle since before `now - EVICT_AFTER_MS`.
    fn take_idle(&self, now: i64) -> Vec<String> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let idle: Vec<String> = active
            .iter()
            .filter(|(_, last)| now - **last >= EVICT_AFTER_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &idle {
            active.remove(id);
        }
        idle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Alarm>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every object's alarm from its file, once per process.
    pub async fn load(&self, store: &ClassStore) {
        self.loaded
            .get_or_init(async || {
                for id in store.ids() {
                    let object = store.object(&id).await;
                    if let Ok(Some(at)) = object.alarm().await {
                        self.lock().insert(
                            id,
                            Alarm {
                                at: Some(at),
                                ..Alarm::default()
                            },
                        );
                    }
                }
            })
            .await;
    }

    /// `getAlarm()`: when the alarm fires next, if set.
    pub fn get(&self, id: &str) -> Option<i64> {
        self.lock().get(id).and_then(|a| a.at)
    }

    /// `setAlarm()` (after the file has it).
    pub fn set(&self, id: &str, at: i64) {
        let mut map = self.lock();
        let alarm = map.entry(id.to_owned()).or_default();
        alarm.at = Some(at);
        alarm.retries = 0;
        drop(map);
        self.wake.notify_waiters();
    }

    /// `deleteAlarm()` (after the file dropped it).
    pub fn delete(&self, id: &str) {
        let mut map = self.lock();
        if let Some(alarm) = map.get_mut(id) {
            alarm.at = None;
            alarm.retries = 0;
            if !alarm.running {
                map.remove(id);
            }
        }
    }

    /// Takes the alarms due at `now`: (id, scheduled time, retries so far).
    fn take_due(&self, now: i64) -> Vec<(String, i64, u32)> {
        let mut due = Vec::new();
        for (id, alarm) in self.lock().iter_mut() {
            if let Some(at) = alarm.at.filter(|at| *at <= now && !alarm.running) {
                alarm.at = None;
                alarm.running = true;
                due.push((id.clone(), at, alarm.retries));
            }
        }
        due
    }

    /// How long until the next alarm, at most the poll interval.
    fn wait_ms(&self, now: i64) -> i64 {
        self.lock()
            .values()
            .filter(|a| !a.running)
            .filter_map(|a| a.at)
            .map(|at| (at - now).max(0))
            .min()
            .unwrap_or(POLL_MS)
            .min(POLL_MS)
    }
}

/// What a run left: the alarm's next time to store, or `None` to drop it.
fn after_run(alarm: &mut Alarm, ok: bool, now: i64) -> Option<i64> {
    alarm.running = false;
    if alarm.at.is_some() {
        // Set again during the run: that one stands.
        alarm.retries = 0;
        return alarm.at;
    }
    if ok || alarm.retries >= MAX_RETRIES {
        return None;
    }
    let delay = FIRST_RETRY_MS << alarm.retries;
    alarm.retries += 1;
    alarm.at = Some(now + delay);
    alarm.at
}

/// The timer task of a binding: fires the due alarms of its class's
/// objects through `binding`. Several bindings of one class share the
/// alarms; whichever task takes an alarm fires it.
pub fn task(binding: String, store: Arc<ClassStore>, mut cx: TaskContext) -> Task {
    Box::pin(async move {
        let alarms = store.alarms();
        alarms.load(&store).await;
        loop {
            let now = cx.clock.now_ms();
            for id in alarms.take_idle(now) {
                let (binding, events, alarms, clock) = (
                    binding.clone(),
                    cx.events.clone(),
                    alarms.clone(),
                    cx.clock.clone(),
                );
                tokio::spawn(async move {
                    let event = Delivery::Binding {
                        binding,
                        handler: "evict".into(),
                        payload: json!({ "id": id }),
                    };
                    let evicted = matches!(
                        events.deliver(event).await,
                        Delivered::Ok { result } if result["evicted"] == true
                    );
                    if !evicted {
                        // Busy after all: try again after another idle spell.
                        alarms.touch(&id, clock.now_ms());
                    }
                });
            }
            for (id, at, retries) in alarms.take_due(now) {
                let (binding, store, events, clock) = (
                    binding.clone(),
                    store.clone(),
                    cx.events.clone(),
                    cx.clock.clone(),
                );
                tokio::spawn(async move {
                    let event = Delivery::Binding {
                        binding,
                        handler: "alarm".into(),
                        payload: json!({
                            "id": id,
                            "retryCount": retries,
                            "isRetry": retries > 0,
                            "scheduledTime": at,
                        }),
                    };
                    store.alarms().touch(&id, clock.now_ms());
                    let delivered = events.deliver(event).await;
                    store.alarms().touch(&id, clock.now_ms());
                    if matches!(delivered, Delivered::Undelivered(_)) {
                        // pyflare is stopping: the file still has the alarm.
                        return;
                    }
                    let ok = matches!(delivered, Delivered::Ok { .. });
                    let alarms = store.alarms();
                    let (next, retries) = {
                        let mut map = alarms.lock();
                        let alarm = map.entry(id.clone()).or_default();
                        let next = after_run(alarm, ok, clock.now_ms());
                        let retries = alarm.retries;
                        if next.is_none() {
                            map.remove(&id);
                        }
                        (next, retries)
                    };
                    if let Delivered::Failed { message, .. } = &delivered {
                        // As workerd logs an alarm's uncaught exception.
                        let then = match next {
                            Some(_) if retries > 0 => format!(
                                "retry {retries} of {MAX_RETRIES} in {} s",
                                (FIRST_RETRY_MS << (retries - 1)) / 1000
                            ),
                            Some(_) => "it set another alarm".into(),
                            None => "no more retries".into(),
                        };
                        eprintln!(
                            "[pyflare] error: alarm of Durable Object {} failed ({then}):\n{message}",
                            store
                                .dir()
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                        );
                    }
                    let object = store.object(&id).await;
                    let _ = match next {
                        Some(at) => object.set_alarm(Some(at)).await,
                        None => object.set_alarm(None).await,
                    };
                    alarms.wake.notify_waiters();
                });
            }
            let wait = alarms.wait_ms(cx.clock.now_ms());
            let woken = alarms.wake.notified();
            tokio::select! {
                stop = cx.pause(u64::try_from(wait).unwrap_or(0).max(1)) => if stop { return },
                () = woken => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_runs_back_off_2_4_8_16_32_64_seconds_then_stop() {
        let mut alarm = Alarm::default();
        let mut delays = Vec::new();
        for _ in 0..7 {
            alarm.running = true;
            match after_run(&mut alarm, false, 1000) {
                Some(at) => {
                    delays.push(at - 1000);
                    alarm.at = None;
                }
                None => break,
            }
        }
        assert_eq!(delays, [2000, 4000, 8000, 16000, 32000, 64000]);
        assert_eq!(alarm.retries, 6);
    }

    #[test]
    fn a_success_drops_the_alarm_unless_the_run_set_another() {
        let mut alarm = Alarm {
            running: true,
            ..Alarm::default()
        };
        assert_eq!(after_run(&mut alarm, true, 5), None);
        let mut alarm = Alarm {
            at: Some(99),
            running: true,
            retries: 3,
        };
        assert_eq!(after_run(&mut alarm, false, 5), Some(99));
        assert_eq!(alarm.retries, 0);
    }
}
