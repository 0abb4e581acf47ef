//! Where benches put their data and find criterion's reports. Included by
//! several benches (`#[path]`), each using a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::SystemTime;

/// The target directory, found the way criterion finds it.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Where criterion writes its reports (`CRITERION_HOME`, else
/// `<target dir>/criterion`).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    target_dir().join("criterion")
}

/// One statistic (`"mean"`, `"median"`) of one benchmark in ns, from this
/// run only: a report older than `since` is an error, not a stale figure.
pub fn estimate_ns(
    group: &str,
    function: &str,
    since: SystemTime,
    statistic: &str,
) -> Result<f64, String> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|_| "not measured".to_string())?;
    if modified < since {
        return Err("not measured in this run".into());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    json[statistic]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no {statistic}.point_estimate", path.display()))
}
