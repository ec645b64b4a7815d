pub struct Config {
    pub first: Option<Box<crate::Backend>>,
}
