//! `from_row!`: a struct and its `sqlx::FromRow`, each field read from the
//! column of its name. sqlx's derive does the same, but its proc-macro crate
//! compiles both database drivers (the bundled SQLite's C included) a
//! second time for the build host — the largest part of a first build this
//! saves.

/// `from_row! { RowType => struct Name { field: Type, … } }`
macro_rules! from_row {
    ($row:ty => $(#[$attr:meta])* $vis:vis struct $name:ident {
        $($(#[$field_attr:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$attr])* $vis struct $name {
            $($(#[$field_attr])* $field_vis $field: $ty),*
        }

        impl<'r> sqlx::FromRow<'r, $row> for $name {
            fn from_row(row: &'r $row) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),* })
            }
        }
    };
}
