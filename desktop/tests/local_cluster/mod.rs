//! Local clusters of real node processes for the desktop's tests, started by the desktop's own
//! control (`LocalControl`) on ports the test picks, in a data folder it owns.

#![allow(dead_code)] // each test file uses its own share of these

use flotilla::backend::local::{self, LocalControl, LocalOptions, NodeProgram};
use flotilla::ui::Tempo;
use std::path::Path;

/// The app's own binary, whose `node` subcommand is the node, as the window runs its nodes.
pub fn app_nodes() -> NodeProgram {
    NodeProgram {
        program: env!("CARGO_BIN_EXE_flotilla").into(),
        leading_args: vec!["node".into()],
    }
}

/// The node's own binary; with `window_snapshots`, at the window's snapshot threshold.
pub fn node_binary(window_snapshots: bool) -> NodeProgram {
    NodeProgram {
        program: flotilla_tests::node_binary().expect("the node binary"),
        leading_args: if window_snapshots {
            local::snapshot_args().into()
        } else {
            Vec::new()
        },
    }
}

/// `nodes` fresh nodes of `program` at `tempo` in `data`, listening from `first_port` on.
pub fn start(
    data: &Path,
    nodes: usize,
    program: NodeProgram,
    tempo: Tempo,
    first_port: u16,
) -> LocalControl {
    LocalControl::start(LocalOptions {
        nodes,
        data_root: data.to_path_buf(),
        fresh: true,
        program,
        timing: tempo.timing(),
        first_port,
    })
    .expect("the local cluster starts")
}
