//! A small live chart: commit latency of submitted messages and commit throughput.

use crate::model::ClusterState;
use egui_plot::{Line, Plot, PlotPoints, Points};

/// Draws latency (ms) and throughput (entries/s) over the last minute before `now_ms`.
pub fn chart_ui(ui: &mut egui::Ui, state: &ClusterState, now_ms: u64) {
    let window_ms = 60_000;
    let since = now_ms.saturating_sub(window_ms);
    let seconds_ago = |at_ms: u64| -((now_ms.saturating_sub(at_ms)) as f64 / 1000.0);
    let latency: Vec<[f64; 2]> = state
        .submits
        .iter()
        .filter(|submit| submit.at_ms >= since && submit.outcome.is_ok())
        .map(|submit| [seconds_ago(submit.at_ms), submit.latency_ms])
        .collect();
    // Entries committed per second, one point per second.
    let mut per_second = vec![0u64; (window_ms / 1000) as usize];
    for (at_ms, entries) in state
        .commits
        .iter()
        .filter(|(at, _)| *at >= since && *at <= now_ms)
    {
        let slot = ((now_ms - at_ms) / 1000) as usize;
        if let Some(count) = per_second.get_mut(slot) {
            *count += entries;
        }
    }
    let throughput: Vec<[f64; 2]> = per_second
        .iter()
        .enumerate()
        .map(|(slot, count)| [-(slot as f64) - 0.5, *count as f64])
        .collect();
    let height = ui.available_height().clamp(80.0, 160.0);
    let width = (ui.available_width() / 2.0 - 6.0).max(120.0);
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.label("commit latency of submitted messages (ms)");
            Plot::new("latency")
                .height(height - 20.0)
                .width(width)
                .include_y(0.0)
                // Room for three digits from the first frame: the axis only widens a frame late,
                // and until then hides the labels that do not fit.
                .y_axis_min_width(30.0)
                .include_x(-60.0)
                .include_x(0.0)
                .allow_scroll(false)
                .show(ui, |plot| {
                    plot.points(Points::new("latency", PlotPoints::from(latency)).radius(3.0));
                });
        });
        ui.vertical(|ui| {
            ui.label("entries committed per second");
            Plot::new("throughput")
                .height(height - 20.0)
                .width(width)
                .include_y(0.0)
                // Room for three digits from the first frame: the axis only widens a frame late,
                // and until then hides the labels that do not fit.
                .y_axis_min_width(30.0)
                .include_x(-60.0)
                .include_x(0.0)
                .allow_scroll(false)
                .show(ui, |plot| {
                    plot.line(Line::new("commits/s", PlotPoints::from(throughput)));
                });
        });
    });
}
