//! One module per subcommand family.

pub mod image;
pub mod layer;
