use crate::{selection::HashKey as Key, Strategy};

pub struct Settings {
    pub key: Key,
    pub default: Option<Box<Strategy>>,
}
