//! The `kairos` binary.
fn main() {}
