//! The CPU limit: a host whose event loop does not answer a ping within
//! the worker's limit is running away and is killed.

use super::*;

/// Kills the host when its event loop stays blocked past the CPU limit.
pub(super) async fn watchdog(host: std::sync::Weak<Host>, cpu_limit: Duration) {
    let tick = (cpu_limit / 10).clamp(Duration::from_millis(10), Duration::from_millis(100));
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        let Some(host) = host.upgrade() else { return };
        if !host.is_alive() {
            return;
        }
        let mut ping = lock(&host.shared.ping);
        match ping.outstanding {
            Some((_, sent)) if sent.elapsed() > cpu_limit => {
                drop(ping);
                logging::error("Worker exceeded CPU time limit.");
                host.stop(ExitReason::CpuLimit);
                return;
            }
            Some(_) => {}
            None => {
                let seq = ping.next_seq;
                ping.next_seq += 1;
                ping.outstanding = Some((seq, Instant::now()));
                drop(ping);
                host.shared.send(&ToHost::Ping { seq });
            }
        }
    }
}
