mod rendered;
pub use rendered::*;
