//! Painted labels that must not overprint each other: each one takes the first free place among
//! those offered, or is left out (the caller says where the words can be read instead).

use egui::Rect;
use std::collections::BTreeMap;

/// Height of the bands the taken places are filed under, so a label is only checked against its
/// neighbours'.
const BAND_PX: f32 = 11.0;

/// Where the labels drawn so far went, and what else they must keep clear of.
#[derive(Default)]
pub struct LabelPlaces {
    /// Each taken place under every band it reaches into.
    taken: BTreeMap<i32, Vec<Rect>>,
}

fn bands(rect: Rect) -> std::ops::RangeInclusive<i32> {
    (rect.min.y / BAND_PX).floor() as i32..=(rect.max.y / BAND_PX).floor() as i32
}

impl LabelPlaces {
    /// Keeps labels off `rect` (a node's circle).
    pub fn block(&mut self, rect: Rect) {
        for band in bands(rect) {
            self.taken.entry(band).or_default().push(rect);
        }
    }

    fn is_free(&self, rect: Rect) -> bool {
        // Labels may touch: only a real overlap counts.
        let rect = rect.shrink(0.5);
        bands(rect).all(|band| {
            self.taken
                .get(&band)
                .is_none_or(|taken| !taken.iter().any(|other| other.intersects(rect)))
        })
    }

    /// The first of `candidates` that overlaps nothing taken, now taken; `None` if all do.
    pub fn place(&mut self, candidates: impl IntoIterator<Item = Rect>) -> Option<Rect> {
        let place = candidates.into_iter().find(|rect| self.is_free(*rect))?;
        self.block(place);
        Some(place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui::{pos2, vec2};

    const LINE: f32 = 11.0;

    fn label_at(x: f32, y: f32, width: f32) -> Rect {
        Rect::from_min_size(pos2(x, y), vec2(width, LINE))
    }

    /// At `wanted` or up to two lines below, as the diagram offers.
    fn at_or_below(wanted: Rect) -> impl Iterator<Item = Rect> {
        (0..=2).map(move |below| wanted.translate(vec2(0.0, below as f32 * LINE)))
    }

    #[test]
    fn labels_at_one_moment_stack_and_the_fourth_is_left_out() {
        let mut places = LabelPlaces::default();
        // One lane's "commit 18" reaching into the next lane's, at the same height.
        let first = places.place(at_or_below(label_at(100.0, 50.0, 60.0)));
        let second = places.place(at_or_below(label_at(140.0, 50.0, 60.0)));
        let third = places.place(at_or_below(label_at(120.0, 52.0, 40.0)));
        let fourth = places.place(at_or_below(label_at(100.0, 50.0, 100.0)));
        assert_eq!(first, Some(label_at(100.0, 50.0, 60.0)));
        assert_eq!(second, Some(label_at(140.0, 50.0 + LINE, 60.0)));
        assert_eq!(third, Some(label_at(120.0, 52.0 + 2.0 * LINE, 40.0)));
        assert_eq!(
            fourth, None,
            "three lines down is no longer beside its mark"
        );
    }

    #[test]
    fn labels_side_by_side_or_a_line_apart_stay_where_they_were_wanted() {
        let mut places = LabelPlaces::default();
        let left = label_at(0.0, 50.0, 60.0);
        let right = label_at(70.0, 50.0, 60.0);
        let below = label_at(0.0, 50.0 + LINE, 60.0);
        assert_eq!(places.place([left]), Some(left));
        assert_eq!(places.place([right]), Some(right));
        assert_eq!(places.place([below]), Some(below));
    }

    #[test]
    fn a_blocked_area_taller_than_a_band_keeps_labels_off_all_of_it() {
        let mut places = LabelPlaces::default();
        // A node's circle, 70 px across.
        places.block(Rect::from_center_size(pos2(200.0, 200.0), vec2(70.0, 70.0)));
        assert_eq!(places.place([label_at(190.0, 215.0, 40.0)]), None);
        let clear = label_at(120.0, 160.0, 20.0);
        assert_eq!(places.place([clear]), Some(clear));
        let beside = label_at(240.0, 200.0, 40.0);
        assert_eq!(
            places.place([label_at(210.0, 200.0, 40.0), beside]),
            Some(beside)
        );
    }
}
