use crate::{Config as Settings};

pub struct State {
    pub config: Settings,
}
