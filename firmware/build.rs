//! Links the LM3S6965 image with cortex-m-rt's linker script; nothing for other builds.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if std::env::var_os("CARGO_FEATURE_LM3S6965").is_some() && target.starts_with("thumbv7m") {
        // link.x (cortex-m-rt) includes memory.x and device.x, which the `lm3s6965`
        // crate puts on the linker's search path.
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
