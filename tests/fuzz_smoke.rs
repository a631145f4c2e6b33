//! A short, deterministic smoke run of the fuzz targets (`fuzz/`, run with cargo-fuzz for real
//! fuzzing): seeds, then byte-level mutations of them from a fixed-seed generator. A panic here
//! is a finding; the seed and the iteration name the input that found it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_edge::fuzzing;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 20_000;

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if v.is_empty() {
            0
        } else {
            rng.random_range(0..v.len())
        };
        match rng.random_range(0..5) {
            0 if !v.is_empty() => v[at] = rng.random(),
            1 => v.insert(at, rng.random()),
            2 if !v.is_empty() => {
                v.remove(at);
            }
            3 => {
                // Splice a piece of the input into itself (repeats, nesting).
                let end = rng.random_range(at..=v.len());
                let piece = v[at..end].to_vec();
                let to = rng.random_range(0..=v.len());
                v.splice(to..to, piece);
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn run(target: fn(&[u8]), seeds: &[&[u8]]) {
    let mut rng = StdRng::seed_from_u64(0x6d63_702d_6564_6765);
    for seed in seeds {
        target(seed);
    }
    for i in 0..ROUNDS {
        let input = mutate(&mut rng, seeds[i % seeds.len()]);
        let caught = std::panic::catch_unwind(|| target(&input));
        assert!(
            caught.is_ok(),
            "iteration {i}: input {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn envelope() {
    run(
        fuzzing::envelope,
        &[
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{"x":[1,{"y":null}]}}}"#,
            br#"{"jsonrpc":"2.0","id":"s","result":{"content":[{"type":"text","text":"\u00e9"}]}}"#,
            br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"no"}}"#,
            br#"[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]"#,
        ],
    );
}

#[test]
fn sse() {
    run(
        fuzzing::sse,
        &[
            b"event: message\ndata: {\"a\":1}\n\n",
            b"id: 1\r\ndata: x\r\ndata: y\r\n\r\n: comment\n\ndata: z\n\n",
            b"retry: 10\n\ndata\n\n",
        ],
    );
}

#[test]
fn sealed() {
    run(
        fuzzing::sealed,
        &[b"", b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", b"2025-11-25"],
    );
}

#[test]
fn config() {
    run(
        fuzzing::config,
        &[
            b"name: alpha\nupstream: { url: http://127.0.0.1:9/mcp, timeout: 5s }\nvisibility: [\"*\"]\n",
            b"name: b\nupstream:\n  url: http://127.0.0.1:9/mcp\n  headers: { x-k: \"${env:NOPE}\" }\naccess: { read: [r] }\ntools:\n  t: { deny: true }\nlimits: { per_user_rpm: 6, burst: 1, per_tool: { t: { per_user_rpm: 1 } } }\n",
        ],
    );
}

#[test]
fn audit_shape() {
    run(
        fuzzing::audit_shape,
        &[
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{"q":"secret","n":[1,{"k":null}]}}}"#,
            br#"{"params":{"arguments":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}"#,
        ],
    );
}
