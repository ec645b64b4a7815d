mod selection;
mod settings;

pub use selection::Strategy;
