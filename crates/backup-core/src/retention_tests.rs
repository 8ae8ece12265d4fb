use super::*;
use proptest::prelude::*;

const H: i64 = 3600;
const BASE: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(BASE + secs).unwrap()
}

fn c(name: &str, hours: i64, ok: bool) -> RetentionCandidate {
    RetentionCandidate {
        name: name.to_string(),
        created: at(hours * H),
        succeeded: ok,
        expires_at: None,
    }
}

fn keep(n: u32) -> RetentionPolicy {
    RetentionPolicy {
        keep_last: Some(KeepCount::new(n).unwrap()),
        ..RetentionPolicy::default()
    }
}

#[test]
fn keep_count_limits() {
    assert_eq!(KeepCount::default().get(), 20);
    assert_eq!(KeepCount::new(1).unwrap().get(), 1);
    assert_eq!(KeepCount::new(50).unwrap().get(), 50);
    for bad in [0u32, 51] {
        let e = KeepCount::new(bad).unwrap_err();
        assert!(
            matches!(e, RetentionError::KeepOutOfRange { value, max: 50, .. } if value == i64::from(bad))
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&bad.to_string()) && msg.contains("50"),
            "{msg}"
        );
    }
    // A spec's value is named as written, not as it would wrap or clamp.
    for written in [-1i64, -3, 1 << 40] {
        let msg = KeepCount::from_spec(written).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("keep count {written} ")), "{msg}");
    }
    assert_eq!(KeepCount::from_spec(7).unwrap().get(), 7);
    assert!(serde_json::from_str::<KeepCount>("51").is_err());
    assert!(serde_json::from_str::<KeepCount>("0").is_err());
    assert_eq!(serde_json::from_str::<KeepCount>("7").unwrap().get(), 7);
}

#[test]
fn default_policy_deletes_nothing() {
    let cs = vec![c("a", 0, true), c("b", 1, false)];
    assert!(plan_deletions(&cs, &RetentionPolicy::default(), at(100 * H)).is_empty());
}

#[test]
fn keep_n_deletes_oldest_successful() {
    let cs: Vec<_> = (0..5).map(|i| c(&format!("b{i}"), i, true)).collect();
    assert_eq!(
        plan_deletions(&cs, &keep(2), at(10 * H)),
        vec!["b0", "b1", "b2"]
    );
}

#[test]
fn keep_one() {
    let cs: Vec<_> = (0..4).map(|i| c(&format!("b{i}"), i, true)).collect();
    assert_eq!(
        plan_deletions(&cs, &keep(1), at(10 * H)),
        vec!["b0", "b1", "b2"]
    );
}

#[test]
fn failed_backups_count_toward_nothing() {
    // s0 f1 s2 f3 s4 f5, keep 2 => kept successes s2, s4.
    let cs = vec![
        c("s0", 0, true),
        c("f1", 1, false),
        c("s2", 2, true),
        c("f3", 3, false),
        c("s4", 4, true),
        c("f5", 5, false),
    ];
    // f1 is older than the oldest kept (s2) -> deleted; f3 and f5 are recent failures -> kept.
    assert_eq!(plan_deletions(&cs, &keep(2), at(10 * H)), vec!["s0", "f1"]);
}

#[test]
fn all_failed_capped_at_keep() {
    let cs: Vec<_> = (0..5).map(|i| c(&format!("f{i}"), i, false)).collect();
    assert_eq!(plan_deletions(&cs, &keep(3), at(10 * H)), vec!["f0", "f1"]);
}

#[test]
fn newest_successful_survives_ttl() {
    let mut cs = vec![c("old", 0, true), c("new", 1, true), c("failed", 2, false)];
    for x in &mut cs {
        x.expires_at = Some(at(5 * H));
    }
    let policy = RetentionPolicy {
        ttl_expiry: true,
        ..RetentionPolicy::default()
    };
    assert_eq!(
        plan_deletions(&cs, &policy, at(6 * H)),
        vec!["old", "failed"]
    );
    // Not yet expired: nothing.
    assert!(plan_deletions(&cs, &policy, at(4 * H)).is_empty());
}

#[test]
fn ttl_ignored_when_disabled() {
    let mut cs = vec![c("old", 0, true), c("new", 1, true)];
    cs[0].expires_at = Some(at(H));
    assert!(plan_deletions(&cs, &RetentionPolicy::default(), at(6 * H)).is_empty());
}

#[test]
fn clock_going_backwards_spares_future_backups() {
    // "future" was created after `now` and claims to be expired: clock skew, keep it.
    let mut cs = vec![
        c("s0", 0, true),
        c("future", 10, true),
        c("future-f", 11, false),
    ];
    cs[1].expires_at = Some(at(H));
    cs[2].expires_at = Some(at(H));
    let policy = RetentionPolicy {
        ttl_expiry: true,
        ..RetentionPolicy::default()
    };
    assert!(plan_deletions(&cs, &policy, at(5 * H)).is_empty());
}

#[test]
fn duplicate_created_times_are_deterministic() {
    let cs = vec![c("b", 0, true), c("a", 0, true), c("c", 0, true)];
    // Newer = greater (created, name): c, then b, then a.
    assert_eq!(plan_deletions(&cs, &keep(1), at(H)), vec!["a", "b"]);
    let rev: Vec<_> = cs.iter().rev().cloned().collect();
    assert_eq!(plan_deletions(&rev, &keep(1), at(H)), vec!["a", "b"]);
}

#[test]
fn gfs_keeps_one_per_bucket() {
    // Two backups per day for 5 days at 01:00 and 13:00 UTC-ish offsets from BASE.
    let mut cs = Vec::new();
    for day in 0..5 {
        cs.push(c(&format!("d{day}-a"), day * 24 + 3, true));
        cs.push(c(&format!("d{day}-b"), day * 24 + 4, true));
    }
    let policy = RetentionPolicy {
        gfs: Some(GfsPolicy {
            daily: 3,
            ..GfsPolicy::default()
        }),
        ..RetentionPolicy::default()
    };
    let del = plan_deletions(&cs, &policy, at(200 * H));
    // Newest of each of the 3 newest UTC days survive; everything else goes.
    let kept: Vec<_> = cs
        .iter()
        .map(|x| x.name.clone())
        .filter(|n| !del.contains(n))
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.contains(&"d4-b".to_string()));
    let days: BTreeSet<_> = kept
        .iter()
        .map(|n| bucket(cs.iter().find(|x| &x.name == n).unwrap().created, 1))
        .collect();
    assert_eq!(days.len(), 3);
}

#[test]
fn gfs_and_keep_last_union() {
    let cs: Vec<_> = (0..48).map(|i| c(&format!("h{i:02}"), i, true)).collect();
    let policy = RetentionPolicy {
        keep_last: Some(KeepCount::new(2).unwrap()),
        gfs: Some(GfsPolicy {
            hourly: 0,
            daily: 2,
            weekly: 0,
            monthly: 0,
        }),
        ttl_expiry: false,
    };
    let del = plan_deletions(&cs, &policy, at(100 * H));
    // 2 newest (h47, h46) + newest of two UTC days (h47 and one more) => 3 survivors.
    assert_eq!(48 - del.len(), 3, "{del:?}");
    assert!(!del.contains(&"h47".to_string()) && !del.contains(&"h46".to_string()));
}

#[test]
fn output_sorted_by_created_then_name() {
    let cs = vec![
        c("z", 0, true),
        c("a", 1, true),
        c("m", 0, true),
        c("n", 5, true),
    ];
    assert_eq!(plan_deletions(&cs, &keep(1), at(H)), vec!["m", "z", "a"]);
}

fn candidates() -> impl Strategy<Value = Vec<RetentionCandidate>> {
    proptest::collection::vec(
        (
            0i64..200,
            any::<bool>(),
            proptest::option::of(0i64..300),
            0u8..40,
        ),
        0..30,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (h, ok, exp, n))| RetentionCandidate {
                name: format!("b{n:02}-{i}"),
                created: at(h * H),
                succeeded: ok,
                expires_at: exp.map(|e| at(e * H)),
            })
            .collect()
    })
}

fn policy() -> impl Strategy<Value = RetentionPolicy> {
    (
        any::<bool>(),
        proptest::option::of(1u32..=50),
        proptest::option::of((0u32..5, 0u32..5, 0u32..3, 0u32..3)),
    )
        .prop_map(|(ttl, k, g)| RetentionPolicy {
            ttl_expiry: ttl,
            keep_last: k.map(|k| KeepCount::new(k).unwrap()),
            gfs: g.map(|(hourly, daily, weekly, monthly)| GfsPolicy {
                hourly,
                daily,
                weekly,
                monthly,
            }),
        })
}

proptest! {
    #[test]
    fn newest_successful_never_deleted(cs in candidates(), p in policy(), now in 0i64..300) {
        let del = plan_deletions(&cs, &p, at(now * H));
        if let Some(newest) = cs.iter().filter(|c| c.succeeded).max_by(|a, b| order(a, b)) {
            prop_assert!(!del.contains(&newest.name));
        }
    }

    #[test]
    fn output_is_subset_sorted_and_unique(cs in candidates(), p in policy(), now in 0i64..300) {
        let del = plan_deletions(&cs, &p, at(now * H));
        let names: BTreeSet<_> = cs.iter().map(|c| c.name.clone()).collect();
        prop_assert!(del.iter().all(|d| names.contains(d)));
        let unique: BTreeSet<_> = del.iter().collect();
        prop_assert_eq!(unique.len(), del.len());
        let keys: Vec<_> = del.iter().map(|d| cs.iter().filter(|c| &c.name == d).map(|c| (c.created, c.name.clone())).min().unwrap()).collect();
        prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn plan_is_idempotent(cs in candidates(), p in policy(), now in 0i64..300) {
        let now = at(now * H);
        let del: BTreeSet<_> = plan_deletions(&cs, &p, now).into_iter().collect();
        let rest: Vec<_> = cs.iter().filter(|c| !del.contains(&c.name)).cloned().collect();
        prop_assert!(plan_deletions(&rest, &p, now).is_empty());
    }

    #[test]
    fn future_backups_never_deleted_by_ttl(cs in candidates(), now in 0i64..300) {
        let p = RetentionPolicy { ttl_expiry: true, ..RetentionPolicy::default() };
        let now_ts = at(now * H);
        for d in plan_deletions(&cs, &p, now_ts) {
            let c = cs.iter().find(|c| c.name == d).unwrap();
            prop_assert!(c.created <= now_ts);
            prop_assert!(c.expires_at.is_some_and(|e| e <= now_ts));
        }
    }

    #[test]
    fn keep_n_keeps_at_least_n_successful(cs in candidates(), k in 1u32..10) {
        let p = keep(k);
        let del: BTreeSet<_> = plan_deletions(&cs, &p, at(0)).into_iter().collect();
        let ok_names: BTreeSet<_> = cs.iter().filter(|c| c.succeeded).map(|c| &c.name).collect();
        let kept = ok_names.iter().filter(|n| !del.contains(**n)).count();
        prop_assert!(kept >= ok_names.len().min(k as usize));
    }
}
