use anyhow::Result;
use std::process::ExitCode;
pub fn run(_a: crate::DemoArgs) -> Result<ExitCode> {
    todo!()
}
