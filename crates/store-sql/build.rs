//! `sqlx::migrate!` embeds the migration files; a new or edited one must
//! rebuild this crate even when no Rust source changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
