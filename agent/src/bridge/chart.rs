//! The floor view's picks-per-minute chart as inline SVG, drawn on the server from the
//! same numbers as `GET /v1/kpis`: one bar per minute, the highest minute labelled. Pure
//! text out; no charting dependency and nothing for the browser to fetch.

/// Width and height of the chart in SVG units (the page scales it).
pub const WIDTH: u32 = 600;
/// See [`WIDTH`].
pub const HEIGHT: u32 = 120;
const TOP: u32 = 16;
const BOTTOM: u32 = 14;

/// The SVG of `picks` (one value per minute, oldest first) for `site` (an id of
/// `A-Z a-z 0-9 - _`, so it needs no escaping; anything else is dropped).
pub fn picks_svg(site: &str, picks: &[u32]) -> String {
    let site: String = site
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let max = picks.iter().copied().max().unwrap_or(0);
    let n = picks.len().max(1) as u32;
    let slot = WIDTH / n;
    let plot = HEIGHT - TOP - BOTTOM;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         class=\"chart\" role=\"img\" aria-label=\"picks per minute at {site}\">\
         <title>picks per minute at {site}, last {n} minutes</title>\
         <line x1=\"0\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\" class=\"axis\"/>",
        base = HEIGHT - BOTTOM
    );
    for (i, &p) in picks.iter().enumerate() {
        if p == 0 {
            continue;
        }
        // Every non-zero minute shows at least one unit of height.
        let h = (u64::from(p) * u64::from(plot)).div_ceil(u64::from(max.max(1))) as u32;
        let x = i as u32 * slot;
        out += &format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{h}\" class=\"bar\"><title>{p}</title></rect>",
            HEIGHT - BOTTOM - h,
            slot.saturating_sub(1).max(1)
        );
    }
    out += &format!(
        "<text x=\"2\" y=\"12\" class=\"label\">max {max}/min</text>\
         <text x=\"2\" y=\"{}\" class=\"label\">-{n} min</text>\
         <text x=\"{}\" y=\"{}\" class=\"label\" text-anchor=\"end\">now</text></svg>",
        HEIGHT - 2,
        WIDTH - 2,
        HEIGHT - 2
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heights(svg: &str) -> Vec<u32> {
        svg.split("height=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn bars_are_as_high_as_their_minute_relative_to_the_busiest_one() {
        let svg = picks_svg("site1", &[0, 10, 5, 0, 1]);
        let plot = HEIGHT - TOP - BOTTOM;
        assert_eq!(heights(&svg), [plot, plot / 2, plot.div_ceil(10)]);
        assert!(svg.contains("max 10/min"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn an_empty_series_draws_only_the_axis_and_a_bad_site_id_cannot_inject_markup() {
        let svg = picks_svg("s\"><script>", &[0; 60]);
        assert!(heights(&svg).is_empty());
        assert!(!svg.contains("<script"), "{svg}");
        assert!(svg.contains("picks per minute at sscript"));
    }
}
