//! Which vector instruction set the crate's CPU kernels use, and how to cap it.
//!
//! The fused selective-scan kernel is compiled three times on x86-64 — for the baseline target
//! (SSE2, plain multiply-add), for AVX2 + FMA and for AVX-512F + FMA — and picks the widest one
//! the CPU runs. The paths round differently (fused multiply-add, lane counts), so a run can
//! differ in the last bits between machines; each path is tested against an f64 reference with
//! the same stated bound (see `tests/suite/simd_levels.rs`).
//!
//! The level can be capped, so that one machine tests and benchmarks every path it can run:
//! - for the whole process, with the environment variable `SEQLAYERS_SIMD` = `scalar`, `avx2`
//!   or `avx512` (read once; an unknown value is ignored, see [`env_cap`]);
//! - for the calling thread, with [`with_max_level`] (what the tests use: they run in parallel
//!   threads, so a process-wide switch would race).
//!
//! A kernel reads [`SimdLevel::active`] once on the calling thread and hands it to its worker
//! threads, so a cap applies to the whole call.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, SeqError};

/// A vector instruction set of the CPU kernels, ordered from narrowest to widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// The build target's baseline (SSE2 on x86-64; the only level on other architectures).
    Scalar,
    /// AVX2 + FMA, 8 lanes of `f32`.
    Avx2,
    /// AVX-512F + FMA, 16 lanes of `f32`.
    Avx512,
}

impl SimdLevel {
    /// Every level, narrowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512];

    /// The widest level this CPU supports (std caches the CPUID query).
    pub fn detected() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::arch::is_x86_feature_detected!("fma");
            if fma && std::arch::is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if fma && std::arch::is_x86_feature_detected!("avx2") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Scalar
    }

    /// The levels this CPU can run, narrowest first (always starts with [`SimdLevel::Scalar`]).
    pub fn available() -> Vec<SimdLevel> {
        let top = SimdLevel::detected();
        SimdLevel::ALL.into_iter().filter(|&l| l <= top).collect()
    }

    /// The level a kernel called now on this thread uses: the detected level, capped by
    /// `SEQLAYERS_SIMD` and by an enclosing [`with_max_level`].
    pub fn active() -> SimdLevel {
        let mut level = SimdLevel::detected();
        if let Some(cap) = env_cap().ok().flatten() {
            level = level.min(cap);
        }
        if let Some(cap) = THREAD_CAP.with(Cell::get) {
            level = level.min(cap);
        }
        level
    }

    /// How many kernel calls (one per work item: a scan task, an LSTM batch row) ran the variant
    /// compiled for this level in this process so far. The count is taken inside the branch
    /// that calls the variant, so it shows which code ran, not which level was asked for: a
    /// test reads it before and after a call made under [`with_max_level`].
    pub fn runs(self) -> u64 {
        RUNS[self as usize].load(Ordering::Relaxed)
    }

    /// The name used by `SEQLAYERS_SIMD` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimdLevel {
    type Err = SeqError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "baseline" | "none" => Ok(SimdLevel::Scalar),
            "avx2" => Ok(SimdLevel::Avx2),
            "avx512" | "avx-512" | "avx512f" => Ok(SimdLevel::Avx512),
            other => Err(SeqError::InvalidConfig(format!(
                "unknown SIMD level `{other}`; use scalar, avx2 or avx512"
            ))),
        }
    }
}

/// The process-wide cap from `SEQLAYERS_SIMD`: `Ok(None)` when unset, an error naming the valid
/// values when set to something else (the kernels then ignore it; call this to report it).
pub fn env_cap() -> Result<Option<SimdLevel>> {
    static CAP: OnceLock<std::result::Result<Option<SimdLevel>, String>> = OnceLock::new();
    CAP.get_or_init(|| match std::env::var("SEQLAYERS_SIMD") {
        Ok(v) if !v.trim().is_empty() => v
            .parse::<SimdLevel>()
            .map(Some)
            .map_err(|e| format!("SEQLAYERS_SIMD: {e}")),
        _ => Ok(None),
    })
    .clone()
    .map_err(SeqError::InvalidConfig)
}

/// A line for the head of test and benchmark output: the level the kernels run at on this
/// thread now, the CPU's widest level, and the `SEQLAYERS_SIMD` cap (or why it is ignored).
///
/// ```
/// let line = seqlayers::simd::report();
/// assert!(line.starts_with("seqlayers SIMD level: "));
/// ```
pub fn report() -> String {
    let cap = match env_cap() {
        Ok(None) => "SEQLAYERS_SIMD unset".to_string(),
        Ok(Some(level)) => format!("capped by SEQLAYERS_SIMD={level}"),
        Err(e) => format!("{e} (ignored)"),
    };
    format!(
        "seqlayers SIMD level: {} (CPU supports {}; {cap})",
        SimdLevel::active(),
        SimdLevel::detected()
    )
}

/// Kernel calls per level, indexed by `SimdLevel as usize` (see [`SimdLevel::runs`]).
static RUNS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Counts one kernel call at `level` (called by [`call_at_level`] in the branch it takes).
#[doc(hidden)]
#[inline]
pub fn count_run(level: SimdLevel) {
    RUNS[level as usize].fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    static THREAD_CAP: Cell<Option<SimdLevel>> = const { Cell::new(None) };
}

/// Runs `f` with the kernels on this thread capped at `level` (restored afterwards, also when
/// `f` panics). Nested calls take the narrower cap.
pub fn with_max_level<R>(level: SimdLevel, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<SimdLevel>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_CAP.with(|c| c.set(self.0));
        }
    }
    let previous = THREAD_CAP.with(Cell::get);
    let _restore = Restore(previous);
    let capped = previous.map_or(level, |p| p.min(level));
    THREAD_CAP.with(|c| c.set(Some(capped)));
    f()
}

/// The body of a kernel entry point that picks its variant by level: returns the AVX-512 or
/// AVX2 call (functions compiled with `#[target_feature]`) when `$level` asks for it, and
/// evaluates to the baseline call otherwise. Shared by the CPU kernels (scan, LSTM, attention).
macro_rules! call_at_level {
    ($level:ident, avx512: $avx512:expr, avx2: $avx2:expr, baseline: $baseline:expr) => {{
        #[cfg(target_arch = "x86_64")]
        match $level {
            // SAFETY: `level` never exceeds `SimdLevel::detected()`, so the CPU supports the
            // features each variant was compiled for.
            $crate::simd::SimdLevel::Avx512 => {
                $crate::simd::count_run($crate::simd::SimdLevel::Avx512);
                return unsafe { $avx512 };
            }
            $crate::simd::SimdLevel::Avx2 => {
                $crate::simd::count_run($crate::simd::SimdLevel::Avx2);
                return unsafe { $avx2 };
            }
            $crate::simd::SimdLevel::Scalar => {}
        }
        let _ = $level;
        $crate::simd::count_run($crate::simd::SimdLevel::Scalar);
        $baseline
    }};
}
pub(crate) use call_at_level;

/// Defines a kernel entry `$name(level, …)` and its three variants, each running
/// `$body::<[generics,] M>(…)` with `M` the multiply-add of its build: the baseline target
/// (`$generic`, [`Plain`]), AVX2 + FMA (`$avx2`) and AVX-512F + FMA (`$avx512`), both [`Fused`].
/// `$name` picks the variant with [`call_at_level`]. The one "compile per SIMD level" macro of
/// the crate (the scan's tasks, the LSTM's rows, the attention's blocks). Optional generic parameters go before the
/// argument list: `simd_variants!(f, f_generic, f_avx2, f_avx512, f_body, <K: Coeffs> (k: K) -> R)`.
macro_rules! simd_variants {
    ($name:ident, $generic:ident, $avx2:ident, $avx512:ident, $body:ident,
     $(<$($g:ident : $gb:path),*>)? ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        fn $generic $(<$($g: $gb),*>)? ($($arg: $ty),*) -> $ret {
            $body::<$($($g,)*)? $crate::simd::Plain>($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx2 $(<$($g: $gb),*>)? ($($arg: $ty),*) -> $ret {
            $body::<$($($g,)*)? $crate::simd::Fused>($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn $avx512 $(<$($g: $gb),*>)? ($($arg: $ty),*) -> $ret {
            $body::<$($($g,)*)? $crate::simd::Fused>($($arg),*)
        }

        /// Runs the variant for `level` (read once on the calling thread, see [`crate::simd`]).
        fn $name $(<$($g: $gb),*>)? (level: $crate::simd::SimdLevel, $($arg: $ty),*) -> $ret {
            $crate::simd::call_at_level!(level,
                avx512: $avx512($($arg),*),
                avx2: $avx2($($arg),*),
                baseline: $generic($($arg),*))
        }
    };
}
pub(crate) use simd_variants;

// ---- SIMD math shared by the CPU kernels (scan, LSTM, attention, GELU), compiled once per
// level by each kernel's variants. ----

/// How the kernel forms `a·b + c`: a plain multiply-add for the baseline build, a fused
/// multiply-add (one instruction, one rounding) in the code compiled with the FMA feature.
/// (`f32::mul_add` without hardware FMA is a slow libm call, hence the choice per build.)
pub(crate) trait MulAdd: Copy {
    /// `a·b + c`.
    fn madd(a: f32, b: f32, c: f32) -> f32;
}

/// `a·b + c` with two roundings.
#[derive(Clone, Copy)]
pub(crate) struct Plain;

/// `a·b + c` as one FMA instruction.
#[derive(Clone, Copy)]
pub(crate) struct Fused;

impl MulAdd for Plain {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

impl MulAdd for Fused {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// Fast `exp` for the kernel: Cody–Waite reduction `x = k ln2 + r`, `|r| ≤ ln2/2`, and the
/// degree-7 Taylor polynomial of `e^r` (truncation `< 6e-9` relative). Branch-free so the loop
/// over `N` vectorizes; inputs are clamped to `[−87.3, 88.7]` (no infinities, no denormals).
#[inline(always)]
pub(crate) fn fast_exp<M: MulAdd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.7);
    let shifted = M::madd(x, LOG2E, MAGIC);
    let k = shifted - MAGIC;
    let ki = shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let r = M::madd(-k, LN2_LO, M::madd(-k, LN2_HI, x));
    let mut p = 1.0 / 5040.0;
    p = M::madd(p, r, 1.0 / 720.0);
    p = M::madd(p, r, 1.0 / 120.0);
    p = M::madd(p, r, 1.0 / 24.0);
    p = M::madd(p, r, 1.0 / 6.0);
    p = M::madd(p, r, 0.5);
    p = M::madd(p, r, 1.0);
    p = M::madd(p, r, 1.0);
    let scale = f32::from_bits(((ki + 127) as u32) << 23);
    p * scale
}

/// Width of the per-lane accumulators used for sums over `N` (one AVX-512 vector).
pub(crate) const LANES: usize = 16;

/// Tree sum of lane accumulators (a depth-4 chain instead of a 16-long one).
#[inline(always)]
pub(crate) fn hsum(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes [`report`] to the terminal at the start of `cargo test` (the library's unit tests
    /// run first). `std::io::stderr()` is not captured by the test harness, unlike `eprintln!`.
    #[test]
    fn a_report_the_simd_level() {
        use std::io::Write;
        let line = report();
        assert!(line.contains(SimdLevel::active().name()));
        let _ = writeln!(std::io::stderr(), "\n{line}\n");
    }

    #[test]
    fn fast_exp_matches_std_exp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = fast_exp::<Plain>(x) as f64;
            worst = worst.max((got - want).abs() / want);
            x += 0.013;
        }
        assert!(worst < 4e-7, "fast_exp relative error {worst:e}");
        assert_eq!(fast_exp::<Plain>(0.0), 1.0);
        // Clamped, finite and tiny far below the f32 range.
        assert!(fast_exp::<Plain>(-1e4) > 0.0 && fast_exp::<Plain>(-1e4) < 1.3e-38);
    }

    #[test]
    fn thread_cap_is_scoped_and_nested() {
        let top = SimdLevel::active();
        with_max_level(SimdLevel::Scalar, || {
            assert_eq!(SimdLevel::active(), SimdLevel::Scalar);
            with_max_level(SimdLevel::Avx512, || {
                assert_eq!(SimdLevel::active(), SimdLevel::Scalar)
            });
        });
        assert_eq!(SimdLevel::active(), top);
        assert_eq!(SimdLevel::available()[0], SimdLevel::Scalar);
        for level in SimdLevel::ALL {
            assert_eq!(level.name().parse::<SimdLevel>().unwrap(), level);
        }
        assert!("sse9".parse::<SimdLevel>().is_err());
    }
}
