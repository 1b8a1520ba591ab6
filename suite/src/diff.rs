//! `diff`: two implementations, the same calls, every difference grouped and blamed.
pub mod answer;
pub mod engine;
pub mod group;
pub mod render;
