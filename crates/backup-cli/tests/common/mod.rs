//! Running the real `backupctl` binary as a user does, shared by the CLI test files.

use std::process::{Command, Output};

/// Runs `backupctl` with `args`, with no S3 endpoint inherited from the environment.
pub fn backupctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backupctl"))
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("backupctl runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
