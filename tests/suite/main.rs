//! The integration test suite, compiled as one binary (one link instead of ten keeps CI fast).

mod attention;
mod attention_cache;
mod attention_fused;
mod bad_inputs;
mod claims;
mod cli_inputs;
mod collective;
mod common;
mod conventions;
mod copying_quick;
mod decode;
mod determinism;
mod discretization;
mod experiments_quick;
/// The examples' experiment drivers (`examples/common`), mounted to run their quick versions.
#[path = "../../examples/common/mod.rs"]
mod harness;
mod layering;
mod linear_attention;
mod lstm;
mod mamba;
mod mamba_state;
mod nonlinear_qkv;
mod objective;
mod pig_latin;
mod position;
mod pretrained;
mod public_api;
mod reference_f64;
mod routing;
mod scan_agreement;
mod scan_grad;
mod scan_util;
mod sentiment_quick;
mod simd_dispatch;
mod simd_levels;
mod stack;
mod tiny_gpt;
mod tokenizer;
