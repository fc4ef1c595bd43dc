//! `include/clove.h` is generated from this crate by the pinned cbindgen; this test fails when the
//! committed header is stale. `CLOVE_BLESS=1 cargo test -p clove-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml parses");
    let mut fresh = Vec::new();
    cbindgen::generate_with_config(crate_dir, config).expect("cbindgen generates the header").write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("the header is UTF-8");

    let header = crate_dir.join("../include/clove.h");
    if std::env::var_os("CLOVE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&header, &fresh).expect("include/clove.h is writable");
        return;
    }
    let committed = std::fs::read_to_string(&header).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/clove.h is stale: run `CLOVE_BLESS=1 cargo test -p clove-ffi --test header` \
         and commit the result"
    );
}
