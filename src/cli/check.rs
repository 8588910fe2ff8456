//! Output of diagnose and repair: one line (or one JSON event) per finding, a summary,
//! and exit 1 when something is (still) wrong.

use serde_json::json;

use super::output::{Mode, Output};
use crate::client::Client;
use crate::diagnose::{self, kind_name, Finding, Options, Problem};
use crate::Result;

/// Runs diagnose and prints what it found.
pub fn diagnose(client: &Client, opts: &Options, out: &Output) -> Result<i32> {
    let report = diagnose::diagnose(client, opts)?;
    for f in &report.findings {
        show(out, f, "finding");
    }
    let problems = report.problems().count();
    summary(
        out,
        &format!(
            "Checked {} entries against version {}: {}",
            report.checked,
            report.version,
            match problems {
                0 => "no problems".to_string(),
                1 => "1 problem (`chainup repair` fixes it)".to_string(),
                n => format!("{n} problems (`chainup repair` fixes them)"),
            }
        ),
    );
    Ok(if problems == 0 { 0 } else { 1 })
}

/// Runs repair and prints what it found, did and could not do.
pub fn repair(client: &Client, opts: &Options, g: &super::Global, out: &Output) -> Result<i32> {
    let done = diagnose::repair(client, opts)?;
    for f in &done.found.findings {
        show(out, f, "finding");
    }
    for f in &done.unfixed {
        show(out, f, "not-fixed");
    }
    let a = &done.applied;
    summary(out, &format!(
        "Repaired version {}: {} problems found, {} files and {} directories installed, {} removed, {} not fixed",
        done.found.version,
        done.found.problems().count(),
        a.files,
        a.dirs,
        a.deleted,
        done.unfixed.len()
    ));
    // swupd runs its helper after every repair, with the boot manager.
    let mut changed = a.changed.clone();
    changed.force_boot("always after repair, as swupd");
    let v = done.found.version;
    super::post::run(client, g, out, "repair", (Some(v), v), &changed)?;
    Ok(if done.unfixed.is_empty() { 0 } else { 1 })
}

/// The closing line; findings are the result, so `--quiet` keeps them and drops this.
fn summary(out: &Output, text: &str) {
    if out.mode() != Mode::Quiet {
        out.result(text);
    }
}

/// One finding as a line or as its own JSON event of type `event`.
fn show(out: &Output, f: &Finding, event: &str) {
    let mut value = json!({
        "type": event,
        "kind": f.kind(),
        "path": f.path,
        "problem": f.is_problem(),
        "msg": f.message(),
    });
    if let Problem::Mismatch {
        expected, actual, ..
    }
    | Problem::LocalChange { expected, actual } = &f.problem
    {
        value["expected"] = json!(expected.to_hex());
        value["actual"] = json!(actual.to_hex());
    }
    if let Some((expected, found)) = f.type_differs() {
        value["expected_type"] = json!(kind_name(expected));
        value["actual_type"] = json!(kind_name(found));
    }
    if !f.details.is_empty() {
        value["details"] = json!(f.details);
    }
    let text = if event == "not-fixed" {
        format!("Not fixed: {}", f.message())
    } else {
        f.message()
    };
    out.record(&text, value);
}
