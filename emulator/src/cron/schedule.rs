//! Fires the worker's `scheduled` handler: on the minute for each matching
//! configured cron while `pyflare dev` runs, or on demand from
//! `/cdn-cgi/handler/scheduled`. Minutes come from pyflare's one clock, so
//! moving the clock forward fires the minutes it skips; minutes that passed
//! while pyflare was stopped are not replayed, as on Cloudflare.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::{Cron, from_unix_minutes};
use crate::config::{ConfigError, WorkerConfig};
use crate::host::supervisor::Supervisor;
use crate::host::{ScheduledEvent, ScheduledOutcome};
use crate::logging;
use pyflare_bindings::{Delivered, Delivery, EventSink, Task, TaskContext};

/// How often the timer looks at the clock, in milliseconds.
const TICK_MS: u64 = 200;
/// At most this many skipped minutes are fired after a jump of the clock.
const MAX_CATCH_UP_MINUTES: i64 = 366 * 24 * 60;

/// Parses `triggers.crons` from the config; any invalid expression fails.
pub fn crons_from_config(config: &WorkerConfig) -> Result<Vec<Cron>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        file: config.file.clone(),
        message,
    };
    let Some(triggers) = config.rest.get("triggers") else {
        return Ok(vec![]);
    };
    let Some(crons) = triggers.get("crons") else {
        return Ok(vec![]);
    };
    let list = crons
        .as_array()
        .ok_or_else(|| invalid("`triggers.crons`: expected an array of cron expressions".into()))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let text = item
            .as_str()
            .ok_or_else(|| invalid(format!("`triggers.crons[{i}]`: expected a string")))?;
        out.push(Cron::parse(text).map_err(|e| invalid(format!("`triggers.crons[{i}]`: {e}")))?);
    }
    Ok(out)
}

/// The cron timer, a background task (see `crate::tasks`): on each minute
/// of the clock, fires every cron that matches it through the task's event
/// sink, until the task is stopped.
pub fn timer(mut cx: TaskContext, crons: Arc<RwLock<Vec<Cron>>>) -> Task {
    Box::pin(async move {
        let mut last = cx.clock.now_ms().div_euclid(60_000);
        loop {
            if cx.pause(TICK_MS).await {
                return;
            }
            let now = cx.clock.now_ms().div_euclid(60_000);
            if now <= last {
                continue;
            }
            // The list changes when a reload changes the config.
            let crons: Vec<Cron> = crons.read().unwrap_or_else(|p| p.into_inner()).clone();
            for minute in (last + 1).max(now - MAX_CATCH_UP_MINUTES)..=now {
                let at = from_unix_minutes(minute);
                for cron in crons.iter().filter(|c| c.matches(&at)) {
                    let events = cx.events.clone();
                    let source = cron.source.clone();
                    tokio::spawn(async move {
                        fire(&*events, source, minute * 60_000).await;
                    });
                }
            }
            last = now;
        }
    })
}

/// Fires one cron minute and logs one line: cron, outcome, duration.
async fn fire(events: &dyn EventSink, cron: String, scheduled_time_ms: i64) {
    let started = Instant::now();
    let delivered = events
        .deliver(Delivery::Scheduled {
            cron: cron.clone(),
            scheduled_time_ms,
        })
        .await;
    let ms = started.elapsed().as_millis();
    match delivered {
        Delivered::Ok { .. } => logging::info(&format!("cron \"{cron}\" ok ({ms}ms)")),
        Delivered::Failed {
            outcome, message, ..
        } => logging::error(&format!("cron \"{cron}\" {outcome} ({ms}ms):\n{message}")),
        Delivered::Undelivered(why) => tracing::debug!("cron \"{cron}\" not run: {why}"),
    }
}

/// Runs `scheduled` once and logs one line: cron, outcome, duration.
pub async fn run_once(
    supervisor: &Supervisor,
    cron: &str,
    scheduled_time: i64,
) -> ScheduledOutcome {
    let started = Instant::now();
    let event = ScheduledEvent {
        cron: cron.to_owned(),
        scheduled_time,
    };
    let outcome = supervisor.dispatch(event).await;
    let ms = started.elapsed().as_millis();
    if outcome.is_ok() {
        logging::info(&format!("cron \"{cron}\" ok ({ms}ms)"));
    } else {
        logging::error(&format!(
            "cron \"{cron}\" {} ({ms}ms):\n{}",
            outcome.as_str(),
            outcome.detail()
        ));
    }
    outcome
}
