use crate::Config;

pub struct Backend {
    pub config: Config,
}
