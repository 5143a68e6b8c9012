//! The crypto ceiling of one core: how many exchanges per second the provider's mandatory
//! signature work alone allows — verify the request (`ParsedJws::parse` and
//! `VerifyingKey::verify`, as the exchange path's `verify_signature` does), sign the answer
//! (`SigningKey::sign`, as `sign_answer` does) — through `contracts::jws`, the aws-lc-rs code
//! the gateway runs. `cargo bench -p simpul-contracts --bench signatures` measures the same
//! pair with criterion beside josekit; this prints one figure, cheaply, for `bench/run.sh`.
//!
//! ```sh
//! cargo run --release -p simpul-gateway --example crypto_ceiling -- [SECONDS] [ES256|EdDSA]
//! ```
//!
//! Prints one JSON object: `verify_us`, `sign_us` (mean wall time per operation on this
//! thread; pin it with `taskset`), and `exchanges_per_s` = 1e6 / (`verify_us` + `sign_us`).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use contracts::envelope::{ANSWER_TYP, REQUEST_TYP};
use contracts::{Algorithm, ParsedJws, SigningKey};

/// A request of the size the demo federation's lookups send (as in the signatures bench).
const REQUEST: &str = r#"{"v":1,"id":"0b7e5a52-3f0c-4c52-9a43-5d2f4f1f6a01","iss":"ID:GOV:KEMLU","aud":"ID:GOV:DUKCAPIL","contract":"citizenship.status","version":"1","purpose":"consular-protection","iat":1796000000,"exp":1796000060,"query":{"nik":"3171011701900001"}}"#;

/// Its answer.
const ANSWER: &str = r#"{"v":1,"id":"0b7e5a52-3f0c-4c52-9a43-5d2f4f1f6a01","iss":"ID:GOV:DUKCAPIL","aud":"ID:GOV:KEMLU","contract":"citizenship.status","version":"1","iat":1796000000,"request_hash":"n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg","status":"ok","data":{"registered":true,"citizenship":"WNI","deceased":false}}"#;

/// Runs `op` until `time` has passed (checking the clock every 32 calls); the mean time per
/// call, in microseconds.
fn mean_us(time: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    loop {
        for _ in 0..32 {
            op();
        }
        calls += 32;
        let elapsed = start.elapsed();
        if elapsed >= time {
            return elapsed.as_secs_f64() * 1e6 / calls as f64;
        }
    }
}

fn run(seconds: f64, alg: Algorithm) -> Result<String, String> {
    let consumer = SigningKey::generate(alg, "ID:GOV:KEMLU").map_err(|e| e.to_string())?;
    let provider = SigningKey::generate(alg, "ID:GOV:DUKCAPIL").map_err(|e| e.to_string())?;
    let verifying = consumer.verifying_key().map_err(|e| e.to_string())?;
    let request = consumer
        .sign(REQUEST_TYP, REQUEST.as_bytes())
        .map_err(|e| e.to_string())?;
    let verify = || {
        let parsed =
            ParsedJws::parse(black_box(&request), REQUEST_TYP).map(|p| verifying.verify(&p));
        assert!(matches!(parsed, Ok(Ok(()))), "the request does not verify");
    };
    let sign = || {
        let jws = provider.sign(ANSWER_TYP, black_box(ANSWER.as_bytes()));
        black_box(jws.expect("signing failed"));
    };
    // Half the time each; a short warm-up first, not counted.
    let half = Duration::from_secs_f64(seconds / 2.0);
    mean_us(Duration::from_millis(100), verify);
    mean_us(Duration::from_millis(100), sign);
    let verify_us = mean_us(half, verify);
    let sign_us = mean_us(half, sign);
    Ok(format!(
        "{{\"alg\": \"{}\", \"seconds\": {seconds}, \"verify_us\": {verify_us:.1}, \"sign_us\": {sign_us:.1}, \"exchanges_per_s\": {:.0}}}",
        alg.as_str(),
        1e6 / (verify_us + sign_us)
    ))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let seconds = match args.next().map(|s| s.parse::<f64>()) {
        None => 4.0,
        Some(Ok(s)) if s > 0.0 && s.is_finite() => s,
        Some(_) => {
            eprintln!("crypto_ceiling: SECONDS must be a positive number");
            return ExitCode::from(2);
        }
    };
    let alg = match args.next().as_deref() {
        None | Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        Some(other) => {
            eprintln!("crypto_ceiling: `{other}`: the algorithm is ES256 or EdDSA");
            return ExitCode::from(2);
        }
    };
    match run(seconds, alg) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crypto_ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}
