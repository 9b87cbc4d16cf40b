use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::TimeZone;

use super::*;

fn slot(minute: u32, attempt: u32) -> EffectSlot {
    EffectSlot {
        schedule_id: "nightly".into(),
        scheduled_for: Utc.with_ymd_and_hms(2026, 12, 7, 1, minute, 0).unwrap(),
        run_id: i64::from(minute * 10 + attempt),
        attempt,
    }
}

fn intent(key: &str) -> Intent {
    Intent::new(kind::COMMAND, key, format!("run {key}"))
}

#[tokio::test]
async fn a_dry_run_records_the_intent_and_performs_nothing() {
    let effects = Effects::dry_run();
    let ran = AtomicUsize::new(0);
    let done = effects
        .perform(intent("restart web"), async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    assert_eq!(done, Performed::NotPerformed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/file.csv");
    let written = effects.write_file(&path, b"a,b\n".to_vec()).await.unwrap();
    assert_eq!(written, Performed::NotPerformed);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(!dir.path().join("out").exists(), "nothing written");
    let records = effects.records();
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|record| record.status == EffectStatus::NotPerformed));
    assert_eq!(
        records[1].description,
        format!("write {} (4 bytes)", path.display())
    );
}

#[tokio::test]
async fn the_intent_is_logged_before_the_action_and_the_outcome_after() {
    let log = MemoryEffectLog::default();
    let effects = Effects::recorded(Arc::new(log.clone()), slot(0, 1));
    let seen_during = Mutex::new(None);
    effects
        .perform(intent("restart web"), async {
            *seen_during.lock().unwrap() = log.entry(&slot(0, 1), "restart web");
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    let during = seen_during.lock().unwrap().clone().expect("logged before");
    assert_eq!(during.status, "intended");
    let after = log.entry(&slot(0, 1), "restart web").unwrap();
    assert_eq!(after.status, "done");
    assert_eq!(log.events(), vec![(1, "intended"), (1, "done")]);
    assert_eq!(effects.records()[0].status, EffectStatus::Done);
}

#[tokio::test]
async fn a_retry_of_the_slot_skips_what_was_done_and_redoes_what_failed() {
    let log = Arc::new(MemoryEffectLog::default());
    let ran = AtomicUsize::new(0);
    let first = Effects::recorded(log.clone(), slot(0, 1));
    first
        .perform(intent("a"), async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    let failed = first
        .perform(intent("b"), async {
            ran.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>("disk full".to_string())
        })
        .await;
    assert!(matches!(failed, Err(PerformError::Failed(ref e)) if e == "disk full"));
    assert_eq!(first.records()[1].error.as_deref(), Some("disk full"));

    let retry = Effects::recorded(log.clone(), slot(0, 2));
    let again = retry
        .perform(intent("a"), async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    assert_eq!(again, Performed::DoneBefore);
    let redone = retry
        .perform(intent("b"), async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(7)
        })
        .await
        .unwrap();
    assert_eq!(redone, Performed::Done(7));
    assert_eq!(ran.load(Ordering::SeqCst), 3, "a once, b twice");
    let statuses: Vec<EffectStatus> = retry.records().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [EffectStatus::DoneBefore, EffectStatus::Done]);

    // The next slot is new work: performed again.
    let next = Effects::recorded(log, slot(5, 1));
    let done = next
        .perform(intent("a"), async { Ok::<_, String>(()) })
        .await
        .unwrap();
    assert_eq!(done, Performed::Done(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_threads_perform_through_the_same_log() {
    let log = Arc::new(MemoryEffectLog::default());
    let effects = Effects::recorded(log.clone(), slot(0, 1));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("packs/one.json");
    let (on_pool, on_thread) = {
        let effects = effects.clone();
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let on_pool = effects.write_file_blocking(&path, b"{}\n").unwrap();
            // A plain thread, outside the runtime, as a scoped worker is.
            let on_thread = std::thread::scope(|scope| {
                scope
                    .spawn(|| effects.write_file_blocking(&path, b"{}\n").unwrap())
                    .join()
                    .unwrap()
            });
            (on_pool, on_thread)
        })
        .await
        .unwrap()
    };
    assert_eq!(on_pool, Performed::Done(()));
    assert_eq!(on_thread, Performed::DoneBefore, "same key, same slot");
    assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
    assert_eq!(log.events().len(), 2);
}

#[tokio::test]
async fn a_file_with_other_content_is_another_effect() {
    let effects = Effects::in_memory();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.csv");
    effects.write_file(&path, b"1\n".to_vec()).await.unwrap();
    let second = effects.write_file(&path, b"2\n".to_vec()).await.unwrap();
    assert_eq!(second, Performed::Done(()));
    assert_eq!(std::fs::read(&path).unwrap(), b"2\n");
    let keys: Vec<String> = effects.records().into_iter().map(|r| r.key).collect();
    assert_ne!(keys[0], keys[1]);
    assert!(keys[0].starts_with(&format!("write:{}#", path.display())));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
}

#[test]
fn a_failed_build_keeps_the_old_folder() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pack");
    replace_dir_atomically(&target, |building| {
        std::fs::write(building.join("a.json"), "old")
    })
    .unwrap();
    let failed = replace_dir_atomically(&target, |building| {
        std::fs::write(building.join("a.json"), "new")?;
        Err(std::io::Error::other("signing failed"))
    });
    assert!(failed.is_err());
    assert_eq!(
        std::fs::read_to_string(target.join("a.json")).unwrap(),
        "old"
    );
    replace_dir_atomically(&target, |building| {
        std::fs::write(building.join("b.json"), "new")
    })
    .unwrap();
    assert!(!target.join("a.json").exists(), "replaced whole");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["pack"], "no hidden folders left behind");
}

#[test]
fn long_keys_stay_unique_and_bounded() {
    let a = Intent::new(kind::HTTP, "x".repeat(400) + "a", "");
    let b = Intent::new(kind::HTTP, "x".repeat(400) + "b", "");
    assert!(a.key.len() <= MAX_EFFECT_KEY_LEN);
    assert_ne!(a.key, b.key);
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(999), "999");
}
