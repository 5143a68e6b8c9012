//! Runs files through a fuzz target outside the fuzzer: `replay <target> <file>...`, to
//! reproduce a crash with its backtrace or to check a corpus.
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let Some((_, target)) = simpul_fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = simpul_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: replay <{}> <file>...", names.join("|"));
        return ExitCode::from(2);
    };
    for path in args {
        match std::fs::read(&path) {
            Ok(data) => {
                eprintln!("replay {name}: {path}");
                target(&data);
            }
            Err(e) => {
                eprintln!("replay: cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
