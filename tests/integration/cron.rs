//! Cron triggers through `pyflare dev`: the schedule fires on pyflare's
//! clock (moved forward by the test, never waited for), and
//! `/cdn-cgi/handler/scheduled` runs the handler on demand as wrangler's
//! endpoint does.

use crate::util::TestWorker;
use serde_json::{Value, json};
use std::time::Duration;

async fn runs(w: &TestWorker) -> Vec<Value> {
    w.get("/runs").await.json().await.unwrap()
}

async fn now_ms(w: &TestWorker) -> i64 {
    let res: Value = TestWorker::client()
        .post(w.url("/cdn-cgi/pyflare/clock/advance?seconds=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["now_ms"].as_i64().unwrap()
}

async fn wait_for_runs(w: &TestWorker, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..100 {
        let seen = runs(w).await;
        if pred(&seen) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runs(w).await
}

#[tokio::test]
async fn cron_fires_matching_schedules_as_the_clock_moves() {
    let w = TestWorker::start("cron_basic").await;
    assert!(
        w.output()
            .contains("cron triggers (on, UTC): * * * * *, 0 12 * * *, 59 23 LW * *")
    );
    // Jump to the next 12:00 UTC (today's before noon, else tomorrow's, so
    // that exactly one is crossed); the minutes in between fire too.
    let now = now_ms(&w).await;
    let day = 86_400_000;
    let mut noon = now.div_euclid(day) * day + 12 * 3_600_000;
    if noon <= now {
        noon += day;
    }
    let advance = (noon - now) / 1000 + 1;
    w.advance_clock(advance as u64).await;
    // Every minute boundary crossed fires "* * * * *" once.
    let crossed = ((now + advance * 1000).div_euclid(60_000) - now.div_euclid(60_000)) as usize;
    let seen = wait_for_runs(&w, |r| {
        r.iter().any(|run| run["cron"] == "0 12 * * *")
            && r.iter().filter(|run| run["cron"] == "* * * * *").count() >= crossed
    })
    .await;
    let noon_runs: Vec<&Value> = seen.iter().filter(|r| r["cron"] == "0 12 * * *").collect();
    assert_eq!(noon_runs.len(), 1, "{seen:?}");
    assert_eq!(
        noon_runs[0],
        &json!({"cron": "0 12 * * *", "scheduledTime": noon, "type": "scheduled", "env_arg": true})
    );
    let every_minute = seen.iter().filter(|r| r["cron"] == "* * * * *").count();
    // One more may fire if a real minute passes during the test.
    assert!(
        (crossed..=crossed + 1).contains(&every_minute),
        "{every_minute} per-minute runs for {crossed} minutes"
    );
    for run in &seen {
        assert_eq!(run["scheduledTime"].as_i64().unwrap() % 60_000, 0, "{run}");
    }
    assert!(
        w.wait_for_output("cron \"0 12 * * *\" ok (", Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn cron_no_crons_flag_turns_the_timer_off() {
    let w = TestWorker::start_with("cron_basic", &["--no-crons"]).await;
    w.advance_clock(3600).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(runs(&w).await, Vec::<Value>::new());
    // The endpoint still works.
    assert_eq!(
        w.get("/cdn-cgi/handler/scheduled?cron=manual")
            .await
            .text()
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(runs(&w).await.len(), 1);
}

#[tokio::test]
async fn cron_scheduled_endpoint_answers_as_wrangler() {
    let w = TestWorker::start_with("cron_basic", &["--no-crons"]).await;
    let res = w
        .get("/cdn-cgi/handler/scheduled?cron=*/5+*+*+*+*&time=1795554300000")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain;charset=UTF-8");
    assert_eq!(res.text().await.unwrap(), "ok");
    let res = w.get("/cdn-cgi/handler/scheduled").await;
    assert_eq!(res.text().await.unwrap(), "ok");
    let seen = runs(&w).await;
    assert_eq!(seen[0]["cron"], "*/5 * * * *");
    assert_eq!(seen[0]["scheduledTime"], 1795554300000i64);
    // Without ?cron= the controller's cron is empty, as in Miniflare.
    assert_eq!(seen[1]["cron"], "");

    let res = w.get("/cdn-cgi/handler/scheduled?cron=fail").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text().await.unwrap(), "exception");
    assert!(
        w.wait_for_output(
            "ValueError: scheduled handler failed",
            Duration::from_secs(5)
        )
        .await,
        "{}",
        w.output()
    );
    let res = w
        .get("/cdn-cgi/handler/scheduled?cron=fail&format=json")
        .await;
    assert_eq!(res.status(), 500);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"outcome": "exception", "noRetry": false})
    );
    let res = w
        .get("/cdn-cgi/handler/scheduled?cron=no-retry&format=json")
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"outcome": "exception", "noRetry": true})
    );
    let res = w
        .get("/cdn-cgi/handler/scheduled?cron=ok&format=json")
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"outcome": "ok", "noRetry": false})
    );
    // noRetry() says so after a success too (Miniflare 4.20260730).
    let res = w
        .get("/cdn-cgi/handler/scheduled?cron=no-retry-ok&format=json")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"outcome": "ok", "noRetry": true})
    );
    // A rejected waitUntil marks the run failed.
    let res = w
        .get("/cdn-cgi/handler/scheduled?cron=wait-until-fails")
        .await;
    assert_eq!(res.text().await.unwrap(), "exception");

    let res = w.get("/cdn-cgi/handler/foo").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.text().await.unwrap(),
        "\"/cdn-cgi/handler/foo\" is not a valid handler. Did you mean to use \"/cdn-cgi/handler/scheduled\" or \"/cdn-cgi/handler/email\"?"
    );
    // The worker still serves, and a failed schedule did not stop anything.
    assert_eq!(w.get("/").await.text().await.unwrap(), "cron fixture");
}

#[test]
fn cron_invalid_expression_fails_the_start() {
    let (code, stderr) = crate::util::dev_in(
        &[
            ("src/entry.py", ""),
            (
                "wrangler.jsonc",
                r#"{"name": "x", "main": "src/entry.py", "compatibility_date": "2026-06-01",
            "compatibility_flags": ["python_workers"], "triggers": {"crons": ["*/5 * * * *", "0 25 * * *"]}}"#,
            ),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.ends_with(
            "wrangler.jsonc: `triggers.crons[1]`: invalid cron expression \"0 25 * * *\": hour: 25 is out of range 0-23\n"
        ),
        "{stderr}"
    );
}

/// Polls `/` until the worker serves `version`.
async fn wait_for_version(w: &TestWorker, version: &str) {
    for _ in 0..400 {
        if w.get("/").await.text().await.unwrap() == version {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never served {version}:\n{}", w.output());
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test]
async fn cron_fired_as_a_reload_stops_its_host_runs_once_on_the_new_code() {
    // The race, made certain: the debug-build hook holds the scheduled
    // event after it has picked the serving host until a reload has
    // replaced and stopped that host. The event must then go to the new
    // host instead of failing with "host stopped".
    let project = crate::util::copy_fixture("cron_reload");
    let w = TestWorker::spawn(
        project.path(),
        tempfile::tempdir().unwrap(),
        &["--no-crons"],
        &[("PYFLARE_TEST_HOLD_EVENTS", "scheduled")],
    )
    .await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "v1");
    let fired = tokio::spawn({
        let url = w.url("/cdn-cgi/handler/scheduled?cron=during-reload&format=json");
        async move {
            let res = TestWorker::client().get(url).send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(project.path().join("src/version.py"), "VERSION = \"v2\"\n").unwrap();
    wait_for_version(&w, "v2").await;
    let (status, answer) = fired.await.unwrap();
    let output = w.output();
    assert_eq!(
        (status.as_u16(), answer),
        (200, json!({"outcome": "ok", "noRetry": false})),
        "{output}"
    );
    assert_eq!(
        count(&output, "scheduled ran: during-reload"),
        1,
        "{output}"
    );
    assert!(
        output.contains("scheduled ran: during-reload on v2"),
        "{output}"
    );
    assert!(!output.contains("host stopped"), "{output}");
}

#[tokio::test]
async fn cron_on_the_minute_during_a_reload_runs_once() {
    let project = crate::util::copy_fixture("cron_reload");
    let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[]).await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "v1");
    let before = now_ms(&w).await;
    // Save and cross a minute boundary at the same moment.
    std::fs::write(project.path().join("src/version.py"), "VERSION = \"v2\"\n").unwrap();
    w.advance_clock(60).await;
    wait_for_version(&w, "v2").await;
    assert!(
        w.wait_for_output("scheduled ran: * * * * *", Duration::from_secs(10))
            .await,
        "{}",
        w.output()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let crossed = (now_ms(&w).await.div_euclid(60_000) - before.div_euclid(60_000)) as usize;
    let output = w.output();
    let runs = count(&output, "scheduled ran: * * * * *");
    // One more may fire if a real minute passed just before `before`.
    assert!(
        (crossed..=crossed + 1).contains(&runs),
        "{runs} runs for {crossed} minutes:\n{output}"
    );
    assert!(!output.contains("host stopped"), "{output}");
    assert!(output.contains("cron \"* * * * *\" ok ("), "{output}");
}
