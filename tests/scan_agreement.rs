//! Every scan kind agrees with the sequential reference, for every discretization.

mod scan_util;

use scan_util::{Dims, RawCase, max_rel_err, values};
use seqlayers::backend::{Cpu, CpuDevice};
use seqlayers::ssm::{Discretization, ScanKind, selective_scan};

const DISCS: [Discretization; 4] = [
    Discretization::ZeroOrderHold,
    Discretization::Simplified,
    Discretization::Generalized { alpha: 0.5 },
    Discretization::Generalized { alpha: 1.0 },
];

fn check(kind: ScanKind, dims: Dims, seed: u64, tol: f32) {
    let device = CpuDevice::default();
    let case = RawCase::new(dims, seed);
    for disc in DISCS {
        for (with_d, with_h0) in [(true, true), (false, false)] {
            let (y_ref, h_ref) = selective_scan::<Cpu>(
                ScanKind::Sequential,
                disc,
                case.input(&device, with_d, with_h0),
            )
            .unwrap();
            let (y, h) =
                selective_scan::<Cpu>(kind, disc, case.input(&device, with_d, with_h0)).unwrap();
            let ey = max_rel_err(&values(y), &values(y_ref));
            let eh = max_rel_err(&values(h), &values(h_ref));
            assert!(
                ey <= tol && eh <= tol,
                "{kind:?} {disc:?} {dims:?} d={with_d} h0={with_h0}: y err {ey:e}, h err {eh:e} > {tol:e}"
            );
        }
    }
}

const LENGTHS: [usize; 7] = [1, 2, 3, 17, 64, 1000, 4096];

fn dims_for(l: usize) -> Vec<Dims> {
    if l >= 1000 {
        vec![Dims {
            b: 1,
            l,
            e: 3,
            n: 4,
        }]
    } else {
        vec![
            Dims {
                b: 2,
                l,
                e: 3,
                n: 4,
            },
            Dims {
                b: 1,
                l,
                e: 5,
                n: 1,
            },
            Dims {
                b: 3,
                l,
                e: 1,
                n: 16,
            },
        ]
    }
}

#[test]
fn parallel_matches_sequential_all_lengths() {
    for l in LENGTHS {
        for dims in dims_for(l) {
            check(ScanKind::Parallel, dims, 7 + l as u64, 1e-5);
        }
    }
}

#[test]
fn fused_matches_sequential_all_lengths() {
    for l in LENGTHS {
        for dims in dims_for(l) {
            check(ScanKind::Fused, dims, 11 + l as u64, 1e-5);
        }
    }
}
