//! Writes the CustomResourceDefinitions generated from the Rust types to `crds/generated/` (and any
//! other directory given), or checks that the files there are current with `--check`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dirs = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                eprintln!("usage: crdgen [--check] [DIR ...]   (default DIR: crds/generated)");
                return ExitCode::SUCCESS;
            }
            dir => dirs.push(PathBuf::from(dir)),
        }
    }
    if dirs.is_empty() {
        dirs.push(sluice_crds::crdgen::default_dir());
    }
    let mut status = ExitCode::SUCCESS;
    for dir in dirs {
        let result = if check {
            sluice_crds::crdgen::check(&dir)
        } else {
            sluice_crds::crdgen::write(&dir)
        };
        if let Err(error) = result {
            eprintln!("crdgen: {error}");
            status = ExitCode::FAILURE;
        }
    }
    status
}
