//! Flotilla desktop: watch a real Raft cluster live, and break it with a click.

pub mod app;
pub mod backend;
pub mod model;
pub mod recording;
pub mod ui;
