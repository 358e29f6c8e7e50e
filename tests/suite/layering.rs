//! The layer order of `src/`: no module refers to a module above it.
//!
//! Bottom first: the core (errors, backends, tensor I/O, init, SIMD levels and math, the routing
//! helper, the linear op, the copy-free reshape, then `nn`: the residual block, norms, the MLP
//! and the mask constant), the positions, attention, the SSM, the LSTM, stacks, tasks, training,
//! decoding, models, the named presets, and last `internals` (the kernels' raw entry points for
//! tests and benches).
//! Every `crate::module` path in the code of a file (imports and inline paths; comments and doc
//! links are not code) must name its own module or one below it. Run it alone with `cargo test
//! --test suite layering`.

use std::path::{Path, PathBuf};

/// The modules of `src/`, bottom first.
const ORDER: [&str; 20] = [
    "error",
    "backend",
    "ndarray_io",
    "init",
    "simd",
    "dispatch",
    "linear",
    "reshape",
    "nn",
    "position",
    "attention",
    "ssm",
    "lstm",
    "stack",
    "data",
    "train",
    "decode",
    "model",
    "presets",
    "internals",
];

fn rank(module: &str) -> Option<usize> {
    ORDER.iter().position(|&m| m == module)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::<module>` names in the code of `text` (comment lines and trailing comments
/// dropped), with their line numbers.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let preceded_by_ident = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
            if !name.is_empty() && !preceded_by_ident {
                found.push((i + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn no_module_refers_to_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = Path::new(first).file_stem().unwrap().to_str().unwrap();
        if module == "lib" {
            continue; // the crate root declares and re-exports every module
        }
        let own = rank(module)
            .unwrap_or_else(|| panic!("src/{module}: add the module to ORDER in layering.rs"));
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in crate_paths(&text) {
            checked += 1;
            let Some(theirs) = rank(&target) else {
                continue; // a crate-root item (`crate::Result`, `crate::SeqError`, …)
            };
            if theirs > own {
                upward.push(format!(
                    "src/{}:{line} ({module}) → {target}",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        checked > 200,
        "only {checked} crate paths found: the scan is broken"
    );
    assert!(
        upward.is_empty(),
        "modules refer to modules above them:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_scan_finds_paths_and_skips_comments() {
    let text = "use crate::attention::MASKED;\n// use crate::model::X;\n/// [`Y`](crate::train::Y)\n\
                let x = crate::ssm::f(); // crate::decode\nfoo_crate::bar;";
    let names: Vec<String> = crate_paths(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["attention", "ssm"]);
}
