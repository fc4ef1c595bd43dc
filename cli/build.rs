//! Lists every module of the Python agent SDK for `clove-run demo` to carry inside the binary, so a
//! new SDK file can never be left out of the demo's copy.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let sdk = Path::new(&manifest).join("../bindings/python/clove_sdk");
    println!("cargo:rerun-if-changed={}", sdk.display());
    let mut names: Vec<String> = std::fs::read_dir(&sdk)
        .unwrap_or_else(|e| panic!("reading {}: {e}", sdk.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".py"))
        .collect();
    names.sort();
    let mut out = String::from("&[\n");
    for name in names {
        let path = sdk.join(&name);
        let _ = writeln!(out, "    (\"sdk/clove_sdk/{name}\", include_str!({:?})),", path.display().to_string());
    }
    out.push(']');
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("sdk_files.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}
