//! `netledger`: exact per-flow packet and byte accounting with eBPF.

mod advice;
mod cli;
mod demo;
mod down;
mod exports;
mod report;
mod reset;
mod run;
mod settings;
mod signals;
mod socket;
mod status;
mod top;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.verbose {
        // libbpf's own chatter (verifier logs) only with --verbose; our errors say what to do.
        netledger::quiet_libbpf();
    }
    let res = match cli.command {
        Command::Watch(args) => watch::run(args),
        Command::Reset(args) => reset::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => {
            netledger_lab::bench::report::run(netledger_lab::bench::report::BenchCli {
                quick: args.quick,
                rounds: args.rounds,
                json: args.json,
                plot: args.plot,
                only: args.only,
            })
        }
        Command::Run(args) => settings::resolve(args)
            .and_then(|(settings, opts)| run::run(settings, opts, cli.verbose)),
        Command::Down(args) => down::run(args.ifaces, &args.db),
        Command::Status(args) => status::run(args),
        Command::Report(args) => report::run(args),
        Command::Top(args) => top::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "netledger",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netledger: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error, its causes and the fix on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    if let Some(fix) = e
        .chain()
        .find_map(|c| c.downcast_ref::<netledger::Error>())
        .and_then(advice::advice)
    {
        s.push_str("; ");
        s.push_str(&fix);
    }
    s.replace('\n', " ")
}
