mod hash;

pub use hash::HashKey;

pub enum Strategy {
    Hash(crate::settings::Settings),
}
