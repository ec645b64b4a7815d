//! Input a client sent that weir will not queue: the one error every check
//! of a submission's type and input returns (the type registry's and each
//! built-in handler's).

use thiserror::Error;

/// Input a client sent that weir will not queue.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// The task type is not registered; the message lists the known ones.
    #[error("unknown task type {name:?}; known types: {known}")]
    UnknownKind { name: String, known: String },
    /// The input does not have the shape the type needs.
    #[error("{0}")]
    Invalid(String),
    /// An option of the submission (`queue`, `timeout`, …) is out of its
    /// bounds; `option` names it.
    #[error("{message}")]
    Option {
        option: &'static str,
        message: String,
    },
}

impl InputError {
    pub fn option(option: &'static str, message: impl Into<String>) -> Self {
        InputError::Option {
            option,
            message: message.into(),
        }
    }
}
