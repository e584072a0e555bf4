//! The engine's reliability harness in the test suite: real `replid` and Graph simulator
//! processes, replid SIGKILLed at random moments and restarted (10 rounds here; `repli-bench
//! crash --rounds 100` for the full figure in docs/PERFORMANCE.md).

use repli_tests::workspace_bin;

#[tokio::test]
async fn replid_killed_ten_times_still_provisions_exactly_once() {
    let bench = workspace_bin("repli-bench");
    let out = tokio::process::Command::new(&bench)
        .args(["crash", "--rounds", "10", "--agents", "8", "--json"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{v:#}");
    assert_eq!(v["kills"], 10, "{v:#}");
    for check in ["all_steps_succeeded", "exactly_expected_objects", "no_item_allocated_twice", "audit_verified"] {
        assert_eq!(v[check], true, "{check}: {v:#}");
    }
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v:#}");
}

/// The same with every commune in flight at once, two called off during provisioning and two
/// handed back: no crisis is left without the run its state calls for, and no cancelled or
/// closed kit keeps an enabled account.
#[tokio::test]
async fn replid_killed_during_cancellations_and_hand_backs_strands_nothing() {
    let bench = workspace_bin("repli-bench");
    let out = tokio::process::Command::new(&bench)
        .args(["crash", "--rounds", "10", "--agents", "4", "--mixed", "--json"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{v:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(v["kills"].as_u64().unwrap() >= 1, "{v:#}");
    for check in [
        "no_crisis_stranded",
        "cancelled_kits_wound_down",
        "all_steps_succeeded",
        "exactly_expected_objects",
        "no_item_allocated_twice",
        "audit_verified",
    ] {
        assert_eq!(v[check], true, "{check}: {v:#}");
    }
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v:#}");
}

/// kill -9 during the hand-back's export, three times, each after the running attempt wrote
/// an item: the export resumes where it stopped (nothing fetched again beyond what was in
/// flight), its archive verifies against the pinned audit key with every item of the
/// simulator exactly once, and the deletions run after it.
#[tokio::test]
async fn replid_killed_during_the_export_resumes_it_and_the_archive_is_exact() {
    let bench = workspace_bin("repli-bench");
    let out = tokio::process::Command::new(&bench)
        .args(["crash", "--export", "--rounds", "3", "--agents", "4", "--json"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{v:#}\n{}", String::from_utf8_lossy(&out.stderr));
    let e = &v["export"];
    assert_eq!(e["kills_during_export"], 3, "{v:#}");
    for check in ["archive_verified", "items_exactly_once", "deletions_ran"] {
        assert_eq!(e[check], true, "{check}: {v:#}");
    }
    assert_eq!(e["items"], e["manifest_entries"], "{v:#}");
    assert!(e["items"].as_u64().unwrap() > 100, "{v:#}");
    assert!(e["refetched"].as_u64().unwrap() <= e["refetch_bound"].as_u64().unwrap(), "{v:#}");
    for check in ["all_steps_succeeded", "audit_verified"] {
        assert_eq!(v[check], true, "{check}: {v:#}");
    }
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v:#}");
}
