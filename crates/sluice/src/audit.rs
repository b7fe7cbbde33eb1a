//! `sluice audit`: runs the audit and prints its report.

use std::path::Path;
use std::process::ExitCode;

pub async fn run(path: &Path, options: &sluice_audit::AuditOptions, json: bool) -> ExitCode {
    let Some(pipeline) = crate::load_pipeline(path) else {
        return ExitCode::from(2);
    };
    match sluice_audit::audit(&pipeline, options).await {
        Ok(report) => {
            if json {
                let mut out = serde_json::to_value(&report).expect("a report serializes");
                out["clean"] = report.clean().into();
                println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
            } else {
                print!("{report}");
            }
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sluice audit: {e}");
            ExitCode::from(2)
        }
    }
}
