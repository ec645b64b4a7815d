//! Background services a worker runs beside its claim loop, one file each.

pub mod cleaner;
pub mod rescuer;
pub mod scheduler;
