//! Crash safety of state files: a writer SIGKILLed at random instants never
//! leaves a torn or empty file behind.

use std::process::Command;
use std::time::Duration;

fn checksum(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn writer_killed_mid_write_never_leaves_a_torn_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.json");
    let mut generations = Vec::new();
    for round in 0..40u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atomic_writer"))
            .arg(&path)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + (round * 37) % 60));
        child.kill().unwrap();
        child.wait().unwrap();
        let Ok(bytes) = std::fs::read(&path) else {
            assert!(generations.is_empty(), "file vanished after round {round}");
            continue;
        };
        assert!(!bytes.is_empty(), "empty file after round {round}");
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("torn file after round {round}: {e} ({} bytes)", bytes.len())
        });
        let payload = doc["payload"].as_str().unwrap();
        assert_eq!(payload.len() as u64, doc["len"].as_u64().unwrap());
        assert_eq!(checksum(payload), doc["sum"].as_u64().unwrap());
        generations.push(doc["generation"].as_u64().unwrap());
    }
    // The kills landed while writes were in progress, not only between runs.
    assert!(
        generations.len() >= 30,
        "too few completed writes: {generations:?}"
    );
    assert!(generations.iter().any(|g| *g > 0), "{generations:?}");
    // Volume::open clears the temporaries a killed writer leaves.
    bramble_core::atomic::remove_stale_temporaries(dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
