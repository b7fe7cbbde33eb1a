//! Markers against a lake on local disk: progress, sealing, and what the markers list.
use super::*;

const H: i64 = 3_600_000;
const NOW: i64 = 1_700_000_000_000;

#[test]
fn the_watermark_grows_with_offsets_and_replays_judge_alike() {
    let mut first = WatermarkHistory::default();
    assert_eq!(first.observe(10, 2 * H), 2 * H);
    assert_eq!(
        first.observe(11, H),
        2 * H,
        "an older window does not lower it"
    );
    assert_eq!(first.observe(12, 4 * H), 4 * H);
    assert_eq!(first.observe(13, 2 * H), 4 * H);
    assert_eq!(first.before(11), Some(2 * H));
    assert_eq!(first.before(13), Some(4 * H));
    assert_eq!(first.before(10), None);

    // A new owner starting at offset 11 with the first owner's history judges records
    // 11..=13 by the same watermark, then carries on.
    let mut next = first.clone();
    next.prune(11);
    assert_eq!(next.observe(11, H), 2 * H);
    assert_eq!(next.observe(12, 4 * H), 4 * H);
    assert_eq!(next.observe(13, 2 * H), 4 * H);
    assert_eq!(next.observe(14, 5 * H), 5 * H);
    assert_eq!(next.before(15), Some(5 * H));

    // Raising applies to later records only.
    next.raise(14, 9 * H);
    assert_eq!(next.before(14), Some(4 * H));
    assert_eq!(next.before(15), Some(9 * H));
    next.raise(20, 8 * H);
    assert_eq!(next.before(30), Some(9 * H), "never lowered");
}

#[test]
fn pruning_keeps_what_later_offsets_need() {
    let mut h = WatermarkHistory::default();
    h.observe(1, H);
    h.observe(5, 2 * H);
    h.observe(9, 3 * H);
    h.prune(7);
    assert_eq!(h.before(7), Some(2 * H));
    assert_eq!(h.before(10), Some(3 * H));
    h.prune(100);
    assert_eq!(h.steps.len(), 1);
}

fn progress(tp: &TopicPartition, watermark: Option<i64>, idle: bool) -> Progress {
    Progress {
        topic: tp.topic.to_string(),
        partition: tp.partition,
        landed_until: Some(1),
        idle,
        windows: BTreeMap::new(),
        history: WatermarkHistory {
            steps: watermark.map(|w| (0, w)).into_iter().collect(),
        },
        owner: "w".into(),
        epoch: 1,
        updated_ms: NOW,
    }
}

#[test]
fn windows_complete_where_every_busy_partition_has_passed() {
    let tps: Vec<_> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
    let mut all = HashMap::new();
    all.insert(tps[0].clone(), progress(&tps[0], Some(5 * H), false));
    all.insert(tps[1].clone(), progress(&tps[1], Some(3 * H), false));
    assert_eq!(
        complete_until(&tps, &all, 0, NOW),
        None,
        "partition 2 has no progress"
    );
    all.insert(tps[2].clone(), progress(&tps[2], Some(H), true));
    assert_eq!(
        complete_until(&tps, &all, 0, NOW),
        Some(3 * H),
        "idle 2 holds nothing"
    );
    assert_eq!(
        complete_until(&tps, &all, 600_000, NOW),
        Some(3 * H - 600_000)
    );
    all.insert(tps[1].clone(), progress(&tps[1], None, false));
    assert_eq!(
        complete_until(&tps, &all, 0, NOW),
        None,
        "busy without watermark"
    );
    for tp in &tps[..2] {
        all.insert(tp.clone(), progress(tp, Some(2 * H), true));
    }
    assert_eq!(
        complete_until(&tps, &all, 0, NOW),
        Some(2 * H),
        "all idle: furthest"
    );
    // Idleness its owners stopped refreshing (they died) holds windows open again.
    let later = NOW + IDLE_STALE_MS + 1;
    assert_eq!(complete_until(&tps, &all, 0, later), Some(H));
    assert_eq!(complete_until(&[], &all, 0, NOW), None);
}

#[test]
fn sealing_starts_after_the_pointer_and_stops_before_open_windows() {
    let g = Granularity::Hour;
    let starts = |ws: Vec<Window>| ws.iter().map(|w| w.start_ms / H).collect::<Vec<_>>();
    // Hours 2 and 3 are complete (end before 4h), hour 4 is not.
    assert_eq!(
        starts(windows_to_seal(None, 4 * H + 1, Some(2 * H), g)),
        [2, 3]
    );
    assert_eq!(starts(windows_to_seal(None, 4 * H, Some(2 * H), g)), [2]);
    assert!(windows_to_seal(None, 9 * H, None, g).is_empty());
    // After a pointer, empty windows are sealed too.
    assert_eq!(
        starts(windows_to_seal(Some(3 * H), 7 * H, None, g)),
        [2, 3, 4, 5]
    );
    assert_eq!(
        starts(windows_to_seal(Some(3 * H + 1), 7 * H, None, g)),
        [3, 4, 5]
    );
    let capped = windows_to_seal(Some(H), 5000 * H, None, g);
    assert_eq!(capped.len(), MAX_WINDOWS_PER_ROUND);
}

/// Names that sanitizing changes (`hum/x` is `hum~2Fx` in paths) get their marker in the
/// directory their files are in, and the marker lists those files.
#[tokio::test]
async fn markers_of_escaped_signal_names_sit_beside_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&sluice_config::Destination::Fs {
        root: dir.path().to_string_lossy().into(),
    })
    .await
    .unwrap();
    let w = Window::containing(10 * H, Granularity::Hour);
    let data = "hum~2Fx/1970/01/01/10/t-0-000000000001-000000000002.json";
    lake.land(data, "{}\n").await.unwrap();
    let sealer = Sealer {
        lake: lake.clone(),
        pipeline: "p".into(),
        path: PathTemplate::parse(
            "{signal}/{YYYY}/{MM}/{dd}/{hh}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}",
        )
        .unwrap(),
        granularity: Granularity::Hour,
        lateness_ms: 0,
        named_signals: vec![SignalName::sanitize("door/open").as_str().to_string()],
        topics: vec!["t".into()],
        idle_partition: std::time::Duration::from_secs(1),
        table_path: None,
    };
    let mut signals = BTreeSet::new();
    signals.insert(SignalName::sanitize("hum/x").as_str().to_string());
    signals.extend(sealer.named_signals.iter().cloned());
    let written = sealer
        .seal(
            w,
            &signals,
            &[TopicPartition::new("t", 0)],
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(written, 3, "two signal markers and the window's");
    let marker: serde_json::Value = serde_json::from_slice(
        &lake
            .read("hum~2Fx/1970/01/01/10/_SUCCESS")
            .await
            .expect("the marker beside the data"),
    )
    .unwrap();
    assert_eq!(marker["files"][0]["path"], data);
    assert!(lake
        .read("door~2Fopen/1970/01/01/10/_SUCCESS")
        .await
        .is_ok());
    let window: serde_json::Value =
        serde_json::from_slice(&lake.read(&window_marker_path(w)).await.unwrap()).unwrap();
    assert_eq!(window["files"].as_array().unwrap().len(), 1);
    let stray = lake.list("").await.unwrap();
    assert!(
        stray.iter().all(|f| !f.path.contains("~7E")),
        "nothing escaped twice: {stray:?}"
    );
}

#[test]
fn window_markers_sit_in_calendar_folders() {
    let t = 1_709_649_432_345; // 2024-03-05T14:37:12.345Z
    assert_eq!(
        window_marker_path(Window::containing(t, Granularity::Hour)),
        "_windows/2024/03/05/14/_SUCCESS"
    );
    assert_eq!(
        window_marker_path(Window::containing(t, Granularity::Day)),
        "_windows/2024/03/05/_SUCCESS"
    );
    assert_eq!(
        window_marker_path(Window::containing(t, Granularity::Minute)),
        "_windows/2024/03/05/14/37/_SUCCESS"
    );
}
