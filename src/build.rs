//! Build script: `sqlx::migrate!` embeds `migrations/` at compile time, and
//! cargo does not know that folder is an input. Without this, a new migration
//! left binaries expecting the old schema until some Rust file changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
