//! Deterministic simulation of Herald's core: thousands of seeded worlds,
//! each a simulated XMPP server, broker and store with faults at random,
//! checked against docs/reliability.md after every step. See README.md.
//!
//! `HERALD_SIM_SEED=n cargo test --test simulation -- --nocapture replay`
//! replays one seed with its trace; `HERALD_SIM_SEEDS=n` sets how many
//! seeds the sweeps run (10,000 by default, in two halves run side by side).

mod broker;
mod cancels;
mod checks;
mod groups;
mod names;
mod receipts;
mod report_checks;
mod server;
mod store;
mod windows;
mod world;

use world::World;

const DEFAULT_SEEDS: u64 = 10_000;

fn seeds() -> u64 {
    std::env::var("HERALD_SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SEEDS)
}

/// Runs seeds `range`; panics with the replay command at the first failure.
fn sweep(range: std::ops::Range<u64>) {
    let mut steps = 0;
    for seed in range.clone() {
        let mut world = World::new(seed);
        match world.run() {
            Ok(n) => steps += n,
            Err(failure) => {
                let trace = world.trace.len();
                panic!(
                    "seed {seed} broke a guarantee after {trace} inputs: {failure}\n\
                     replay: HERALD_SIM_SEED={seed} cargo test --test simulation -- --nocapture replay"
                );
            }
        }
    }
    eprintln!("seeds {range:?}: {steps} steps, all guarantees held");
}

#[test]
fn first_half_of_the_seeds() {
    sweep(0..seeds() / 2);
}

#[test]
fn second_half_of_the_seeds() {
    sweep(seeds() / 2..seeds());
}

/// Replays `HERALD_SIM_SEED` and prints its trace (nothing without it).
#[test]
fn replay() {
    let Some(seed) = std::env::var("HERALD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let mut world = World::new(seed);
    let result = world.run();
    for line in &world.trace {
        println!("{line}");
    }
    if let Err(failure) = result {
        panic!("seed {seed}: {failure}");
    }
}
