//! [`bin_path`]: where the workspace's own binaries were built.

use std::path::PathBuf;

/// The path of workspace binary `name` (e.g. `o2c-agent`), found next to the
/// running test executable: `target/<profile>/name`, searched upward from
/// `target/<profile>/deps/`.
///
/// Panics with the build command if the binary is missing: `cargo test` builds
/// a package's binaries only for that package's own integration tests, so run
/// the suite with `deploy/dev/test.sh` (it builds every binary first).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot locate the running test executable: {e}"));
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(&file))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "binary `{name}` not found near {}; build it with \
                 `cargo build --workspace --bins` (deploy/dev/test.sh does this)",
                exe.display()
            )
        })
}
