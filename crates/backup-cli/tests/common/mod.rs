//! Running the real `backupctl` binary as a user does, shared by the CLI test files.

#![allow(dead_code)] // each test file uses its own part of it

use std::process::{Command, Output};

use anyhow::{Result, ensure};

/// `backupctl`, to be given its arguments, with only what they say: no kubeconfig or S3
/// endpoint is inherited from the environment.
pub fn backupctl_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backupctl"));
    command
        .env_remove("KUBECONFIG")
        .env_remove("AWS_ENDPOINT_URL");
    command
}

/// Runs `backupctl` with `args` (see [`backupctl_command`]).
pub fn backupctl(args: &[&str]) -> Output {
    backupctl_command()
        .args(args)
        .output()
        .expect("backupctl runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and requires success, returning stdout.
pub fn run_ok(args: &[&str]) -> Result<String> {
    let out = backupctl(args);
    ensure!(
        out.status.success(),
        "backupctl {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        stdout(&out),
        stderr(&out)
    );
    Ok(stdout(&out))
}

/// Runs and requires failure, returning stderr.
pub fn run_fails(args: &[&str]) -> Result<String> {
    let out = backupctl(args);
    ensure!(
        !out.status.success(),
        "backupctl {} should have failed but exited {}:\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        stdout(&out),
        stderr(&out)
    );
    Ok(stderr(&out))
}
