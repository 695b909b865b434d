//! `flotilla`: opens the desktop with a local Raft cluster already running.
//! `flotilla node ...` runs one node server (the app starts its local nodes this way).

use anyhow::Context as _;
use clap::Parser;
use flotilla::app::FlotillaApp;
use flotilla::backend::{self, attach, docker, local, ClusterControl};
use flotilla::ui::Tempo;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "Watch a real Raft cluster live, and break it with a click.\n`flotilla node --help` shows the node server's flags."
)]
struct Args {
    /// Nodes in the local cluster: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Where the local nodes keep their data (default: the platform's data folder: ~/.local/share/flotilla
    /// or $XDG_DATA_HOME/flotilla on Linux, ~/Library/Application Support/Flotilla on macOS,
    /// %APPDATA%\Flotilla on Windows).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Remove the local cluster's data and start over.
    #[arg(long)]
    fresh: bool,
    /// Attach to running nodes instead (comma list of URLs); only admin-API actions are possible.
    #[arg(long, value_delimiter = ',', conflicts_with = "docker")]
    attach: Vec<String>,
    /// Run the nodes in Docker containers.
    #[arg(long)]
    docker: bool,
    /// Admin token of attached or Docker nodes.
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Slow the cluster down this many times so each message can be followed (1 = real speed).
    #[arg(long, default_value_t = Tempo::DEFAULT.factor)]
    tempo: u64,
    /// First port tried for the local nodes.
    #[arg(long, default_value_t = local::FIRST_PORT)]
    first_port: u16,
    /// Show a saved recording (`.ndjson.gz`) instead of a cluster; no nodes are started.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["attach", "docker"])]
    open: Option<PathBuf>,
    /// Close the window after this many seconds (for scripted runs and screenshots).
    #[arg(long)]
    close_after_secs: Option<f64>,
}

fn control(args: &Args, tempo: Tempo) -> anyhow::Result<Box<dyn ClusterControl>> {
    if !args.attach.is_empty() {
        return Ok(Box::new(attach::AttachedCluster::discover(
            &args.attach,
            args.admin_token.clone(),
        )?));
    }
    if args.docker {
        return Ok(docker::connect(&docker_options(args)));
    }
    let control = local::LocalControl::start(local::LocalOptions {
        nodes: args.nodes,
        data_root: args
            .data_dir
            .clone()
            .unwrap_or_else(local::default_data_root),
        fresh: args.fresh,
        program: local::NodeProgram::current_exe()?,
        timing: tempo.timing(),
        first_port: args.first_port,
    })?;
    eprintln!(
        "flotilla: node data and logs in {}",
        control.cluster_dir().display()
    );
    Ok(Box::new(control))
}

fn docker_options(args: &Args) -> docker::DockerOptions {
    docker::DockerOptions::from_env(args.nodes, args.admin_token.clone())
}

fn window_options() -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Flotilla — a Raft cluster you can watch and break")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([960.0, 640.0]),
        ..Default::default()
    }
}

/// The window on a recording alone: read first, so a bad file is a one-line error, not a window.
fn show_recording(path: PathBuf, close_after: Option<f64>) -> anyhow::Result<()> {
    let opened = flotilla::recording::open(&path)?;
    eframe::run_native(
        "Flotilla",
        window_options(),
        Box::new(move |creation| {
            creation.egui_ctx.set_visuals(egui::Visuals::dark());
            close_later(&creation.egui_ctx, close_after);
            // No backend: cluster actions are refused while a recording is shown.
            let (commands, _) = tokio::sync::mpsc::unbounded_channel();
            let mut app = FlotillaApp::detached(&opened.header.nodes, commands, false);
            app.show_recording(&path, opened);
            Ok(Box::new(app))
        }),
    )
    .map_err(|error| anyhow::anyhow!("the window could not open: {error}"))
    .context("is a display available (DISPLAY or WAYLAND_DISPLAY)?")
}

fn close_later(ctx: &egui::Context, close_after: Option<f64>) {
    if let Some(seconds) = close_after {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs_f64(seconds.max(0.0)));
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        });
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = args.open.clone() {
        return show_recording(path, args.close_after_secs);
    }
    if args.attach.is_empty() && args.nodes != 3 && args.nodes != 5 {
        anyhow::bail!("--nodes must be 3 or 5, not {}", args.nodes);
    }
    let tempo = Tempo {
        factor: args.tempo.clamp(1, 100),
    };
    let control = control(&args, tempo)?;
    // Local nodes while the compose cluster runs: the window says so and offers to watch it instead.
    let docker_offer = (args.attach.is_empty() && !args.docker).then(|| docker_options(&args));
    let close_after = args.close_after_secs;
    eframe::run_native(
        "Flotilla",
        window_options(),
        Box::new(move |creation| {
            creation.egui_ctx.set_visuals(egui::Visuals::dark());
            let ctx = creation.egui_ctx.clone();
            let waker: backend::Waker = Arc::new(move || ctx.request_repaint());
            let handle = backend::start_with(control, tempo.timing(), waker, docker_offer)?;
            close_later(&creation.egui_ctx, close_after);
            Ok(Box::new(FlotillaApp::new(handle, tempo)))
        }),
    )
    .map_err(|error| anyhow::anyhow!("the window could not open: {error}"))
    .context("is a display available (DISPLAY or WAYLAND_DISPLAY)?")
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let program = argv.next();
    let rest: Vec<_> = argv.collect();
    if rest.first().is_some_and(|first| first == "node") {
        return flotilla_node::cli::run_from_args(rest[1..].to_vec());
    }
    let args = Args::parse_from(program.into_iter().chain(rest));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flotilla: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
