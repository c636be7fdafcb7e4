//! The vitals benchmark program (being built).

fn main() {}
