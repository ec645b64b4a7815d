//! Embeds the migrations: `$OUT_DIR/migrations.rs` lists each dialect's
//! `migrations/<dialect>/<version>_<description>.sql` files, in version
//! order, for `src/migrations.rs`. A new or edited file rebuilds this crate
//! even when no Rust source changed.
use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut code = String::new();
    for (dialect, constant) in [("postgres", "POSTGRES"), ("sqlite", "SQLITE")] {
        let dir = Path::new(&manifest).join("migrations").join(dialect);
        let mut files: Vec<(i64, String, String)> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("a readable migrations directory").path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                // sqlx's naming: the version, `_`, the description (with `_`
                // for spaces); reversible (`.up.sql`) migrations are not used.
                let (version, rest) = name
                    .split_once('_')
                    .and_then(|(v, rest)| Some((v.parse::<i64>().ok()?, rest)))
                    .unwrap_or_else(|| panic!("{}: not <version>_<name>.sql", path.display()));
                let description = rest
                    .strip_suffix(".sql")
                    .filter(|d| !d.ends_with(".up") && !d.ends_with(".down"))
                    .unwrap_or_else(|| panic!("{}: not a simple .sql migration", path.display()));
                let path = path.to_str().expect("a UTF-8 path").to_owned();
                (version, description.replace('_', " "), path)
            })
            .collect();
        files.sort();
        let _ = writeln!(code, "pub(crate) const {constant}: &[Embedded] = &[");
        for (version, description, path) in files {
            let _ = writeln!(
                code,
                "    Embedded {{ version: {version}, description: {description:?}, sql: include_str!({path:?}) }},"
            );
        }
        code.push_str("];\n");
    }
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    fs::write(&out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
