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
