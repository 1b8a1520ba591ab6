//! The report (design §8): its types and its JSON, Markdown and JUnit writers.
mod html;
mod json;
mod junit;
mod markdown;
mod model;

pub use html::{esc as html_escape, to_html, STYLE as HTML_STYLE};
pub use json::{schema_json, write_atomic, JsonWriter};
pub use junit::to_junit;
pub use markdown::to_markdown;
pub use model::*;
