//! The colours, in one place.

use egui::Color32;
use flotilla_shared::event::Role;

pub const BACKGROUND: Color32 = Color32::from_rgb(0x14, 0x17, 0x1f);
pub const EDGE: Color32 = Color32::from_rgb(0x3a, 0x41, 0x52);
pub const CUT: Color32 = Color32::from_rgb(0xe0, 0x4f, 0x4f);
pub const TEXT: Color32 = Color32::from_rgb(0xe8, 0xea, 0xf0);
pub const DIM_TEXT: Color32 = Color32::from_rgb(0x8a, 0x91, 0xa3);
pub const DEAD: Color32 = Color32::from_rgb(0x33, 0x36, 0x3e);
pub const TIMER: Color32 = Color32::from_rgb(0xf2, 0xc1, 0x4e);
pub const CROWN: Color32 = Color32::from_rgb(0xff, 0xd2, 0x3f);
pub const COMMIT_LINE: Color32 = Color32::from_rgb(0xff, 0xd2, 0x3f);
pub const GOOD: Color32 = Color32::from_rgb(0x4c, 0xc3, 0x8a);
pub const BAD: Color32 = Color32::from_rgb(0xe0, 0x4f, 0x4f);

pub fn role(role: Role) -> Color32 {
    match role {
        Role::Follower => Color32::from_rgb(0x3d, 0x6d, 0xb5),
        Role::PreCandidate => Color32::from_rgb(0xb5, 0x8a, 0x3d),
        Role::Candidate => Color32::from_rgb(0xe0, 0x94, 0x2b),
        Role::Leader => Color32::from_rgb(0x2f, 0xa3, 0x6b),
    }
}

/// A distinct colour per term, stable across frames; term 0 means "term not seen".
pub fn term(term: u64) -> Color32 {
    if term == 0 {
        return Color32::from_rgb(0x4a, 0x4f, 0x5c);
    }
    const TERMS: [Color32; 8] = [
        Color32::from_rgb(0x5b, 0x8d, 0xef),
        Color32::from_rgb(0x9b, 0x6b, 0xdf),
        Color32::from_rgb(0x3e, 0xb4, 0x89),
        Color32::from_rgb(0xe0, 0x7b, 0x39),
        Color32::from_rgb(0xd9, 0x5b, 0x8f),
        Color32::from_rgb(0x3a, 0xa6, 0xc2),
        Color32::from_rgb(0xb8, 0xa4, 0x3a),
        Color32::from_rgb(0x7c, 0x9a, 0x4b),
    ];
    TERMS[(term as usize - 1) % TERMS.len()]
}
