//! The Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics (Telegraf,
//! older agents, a person with curl), and the negotiation that chooses between the two the way
//! Prometheus' own client libraries do.
//!
//! The exposition is encoded once, as OpenMetrics, and rewritten line by line: the formats
//! differ only in how families are described. A counter's family is named with its `_total`
//! in 0.0.4, an info family with its `_info` (a gauge there), `unknown` is `untyped`; `# UNIT`,
//! `_created` samples, exemplars and `# EOF` have no place in 0.0.4, and its help text escapes
//! only backslashes and line feeds.

/// The content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics before the text format. As client_golang
/// negotiates: the media ranges by preference (`q`, then the order given), the first that is
/// OpenMetrics (version 0.0.1 or 1.0.0, or none given) or `text/plain` decides; anything else
/// (no header, `*/*`, a protobuf request) gets the text format. A range of `q=0` refuses its
/// type (RFC 9110), so it decides nothing.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut ranges: Vec<(f32, bool)> = Vec::new();
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut quality = 1.0f32;
        let mut version_known = true;
        for parameter in parts {
            let Some((key, value)) = parameter.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim().to_ascii_lowercase().as_str() {
                "q" => quality = value.parse().unwrap_or(0.0),
                "version" => version_known = matches!(value, "0.0.1" | "1.0.0"),
                _ => {}
            }
        }
        let openmetrics = match media.as_str() {
            "application/openmetrics-text" if version_known => true,
            "text/plain" => false,
            _ => continue,
        };
        if quality > 0.0 {
            ranges.push((quality, openmetrics));
        }
    }
    // A stable sort keeps the header's order among ranges of one preference.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges.first().is_some_and(|(_, openmetrics)| *openmetrics)
}

/// How a family is described in each format.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    /// Histograms and summaries: their `_created` samples are dropped.
    Distribution,
    /// Its `_gcount` and `_gsum` are a histogram's `_count` and `_sum` in 0.0.4.
    GaugeHistogram,
    Other,
}

/// The OpenMetrics exposition `openmetrics` rewritten in the Prometheus text format 0.0.4.
pub fn to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The last `# HELP`, written once its family's `# TYPE` gives the name it goes under.
    let mut help: Option<(&str, &str)> = None;
    let mut kind = Kind::Other;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, family_type) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, text_type) = match family_type {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "stateset" => ("", "gauge"),
                "gaugehistogram" => ("", "histogram"),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            kind = match family_type {
                "counter" => Kind::Counter,
                "histogram" | "summary" => Kind::Distribution,
                "gaugehistogram" => Kind::GaugeHistogram,
                _ => Kind::Other,
            };
            if let Some((help_name, text)) = help.take() {
                if help_name == name {
                    out.push_str("# HELP ");
                    out.push_str(name);
                    out.push_str(suffix);
                    out.push(' ');
                    push_help(&mut out, text);
                    out.push('\n');
                }
            }
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(suffix);
            out.push(' ');
            out.push_str(text_type);
            out.push('\n');
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF`: OpenMetrics only.
        } else if !line.is_empty() {
            let sample = without_exemplar(line);
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            if matches!(kind, Kind::Counter | Kind::Distribution) && name.ends_with("_created") {
                continue;
            }
            // A gauge histogram's count and sum, as a 0.0.4 histogram names them.
            if kind == Kind::GaugeHistogram {
                for (from, to) in [("_gcount", "_count"), ("_gsum", "_sum")] {
                    if let Some(stem) = name.strip_suffix(from) {
                        out.push_str(stem);
                        out.push_str(to);
                        out.push_str(&sample[name.len()..]);
                        out.push('\n');
                    }
                }
                if name.ends_with("_gcount") || name.ends_with("_gsum") {
                    continue;
                }
            }
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

/// Help text, its OpenMetrics escapes (`\\`, `\n`, `\"`) made 0.0.4's (`\\`, `\n`).
fn push_help(out: &mut String, text: &str) {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some(next @ ('\\' | 'n')) => {
                out.push('\\');
                out.push(next);
            }
            // A lone backslash: escaped, so that 0.0.4 reads it as one.
            Some(other) => {
                out.push_str("\\\\");
                out.push(other);
            }
            None => out.push_str("\\\\"),
        }
    }
}

/// A sample line without its exemplar (` # {…} value`), found outside quoted label values.
fn without_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let (mut quoted, mut escaped) = (false, false);
    for (at, &byte) in bytes.iter().enumerate() {
        if quoted {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if byte == b'"' {
            quoted = true;
        } else if byte == b'#' && at > 0 && bytes[at - 1] == b' ' {
            return line[..at - 1].trim_end();
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_as_prometheus_client_libraries_do() {
        // What Prometheus 2.x sends by default.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(wants_openmetrics(Some("application/openmetrics-text")));
        assert!(wants_openmetrics(Some(
            "text/plain;q=0.5, application/openmetrics-text; version=1.0.0; q=0.9"
        )));
        // Prometheus told to prefer the text format, Telegraf, curl, no header.
        assert!(!wants_openmetrics(Some(
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain; version=0.0.4")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("")));
        // A protobuf request, an OpenMetrics version not spoken, a refusal.
        assert!(!wants_openmetrics(Some(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily"
        )));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;version=2.0.0"
        )));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
        // Garbage is no reason to fail.
        assert!(!wants_openmetrics(Some(";;,q=,=;version")));
    }

    #[test]
    fn families_are_described_as_the_text_format_names_them() {
        let openmetrics = "# HELP heartbeat_messages_produced Heartbeats sent.\n\
             # TYPE heartbeat_messages_produced counter\n\
             heartbeat_messages_produced_total{cluster=\"a # b\",partition=\"0\"} 3 # {id=\"x\"} 1.0\n\
             heartbeat_messages_produced_created{cluster=\"a\"} 1.7e9\n\
             # HELP heartbeat_build Build.\n\
             # TYPE heartbeat_build info\n\
             heartbeat_build_info{version=\"1\"} 1\n\
             # HELP heartbeat_rtt_seconds Round trip, \\\"quoted\\\" and a \\\\.\n\
             # TYPE heartbeat_rtt_seconds summary\n\
             # UNIT heartbeat_rtt_seconds seconds\n\
             heartbeat_rtt_seconds{quantile=\"0.5\"} 0.1\n\
             heartbeat_rtt_seconds_sum 1.0\n\
             heartbeat_rtt_seconds_count 10\n\
             # HELP heartbeat_odd Odd.\n\
             # TYPE heartbeat_odd unknown\n\
             heartbeat_odd 1\n\
             # EOF\n";
        assert_eq!(
            to_text(openmetrics),
            "# HELP heartbeat_messages_produced_total Heartbeats sent.\n\
             # TYPE heartbeat_messages_produced_total counter\n\
             heartbeat_messages_produced_total{cluster=\"a # b\",partition=\"0\"} 3\n\
             # HELP heartbeat_build_info Build.\n\
             # TYPE heartbeat_build_info gauge\n\
             heartbeat_build_info{version=\"1\"} 1\n\
             # HELP heartbeat_rtt_seconds Round trip, \"quoted\" and a \\\\.\n\
             # TYPE heartbeat_rtt_seconds summary\n\
             heartbeat_rtt_seconds{quantile=\"0.5\"} 0.1\n\
             heartbeat_rtt_seconds_sum 1.0\n\
             heartbeat_rtt_seconds_count 10\n\
             # HELP heartbeat_odd Odd.\n\
             # TYPE heartbeat_odd untyped\n\
             heartbeat_odd 1\n"
        );
    }

    #[test]
    fn a_gauge_histogram_is_a_histogram_with_a_count_and_sum() {
        let openmetrics = "# TYPE queue_bytes gaugehistogram\n\
             queue_bytes_bucket{le=\"+Inf\"} 3\n\
             queue_bytes_gcount 3\n\
             queue_bytes_gsum 42\n\
             # EOF\n";
        assert_eq!(
            to_text(openmetrics),
            "# TYPE queue_bytes histogram\n\
             queue_bytes_bucket{le=\"+Inf\"} 3\n\
             queue_bytes_count 3\n\
             queue_bytes_sum 42\n"
        );
    }
}
