//! Server counters and histograms, rendered in the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the request-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Upper bounds of the decode-batch-size histogram buckets.
pub const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug)]
struct State {
    responses: BTreeMap<(&'static str, u16), u64>,
    lists: u64,
    request_errors: u64,
    latency: Histogram,
    batch_sizes: Histogram,
}

/// What the server counts; shared by the handlers and the batch worker.
#[derive(Debug)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                responses: BTreeMap::new(),
                lists: 0,
                request_errors: 0,
                latency: Histogram::new(&LATENCY_BUCKETS),
                batch_sizes: Histogram::new(&BATCH_BUCKETS),
            }),
        }
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts one HTTP response of `endpoint` with `status`, answered in `seconds`.
    pub fn response(&self, endpoint: &'static str, status: u16, seconds: f64) {
        self.with(|s| {
            *s.responses.entry((endpoint, status)).or_default() += 1;
            if endpoint == "/rerank" {
                s.latency.observe(seconds);
            }
        });
    }

    /// Counts the outcome of reranking requests: `lists` served, `errors` refused.
    pub fn outcomes(&self, lists: u64, errors: u64) {
        self.with(|s| {
            s.lists += lists;
            s.request_errors += errors;
        });
    }

    /// Records one decode batch of `size` requests.
    pub fn batch(&self, size: usize) {
        self.with(|s| s.batch_sizes.observe(size as f64));
    }

    /// Decode batches run so far and the requests they held, for tests and logs.
    pub fn batches(&self) -> (u64, f64) {
        self.with(|s| (s.batch_sizes.count, s.batch_sizes.sum))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.with(|s| {
            let mut out = String::new();
            out.push_str(
                "# HELP glorank_http_responses_total HTTP responses by endpoint and status code.\n\
                 # TYPE glorank_http_responses_total counter\n",
            );
            for ((endpoint, status), n) in &s.responses {
                let _ = writeln!(
                    out,
                    "glorank_http_responses_total{{endpoint=\"{endpoint}\",code=\"{status}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP glorank_rerank_lists_total Reranking requests answered with a list.\n\
                 # TYPE glorank_rerank_lists_total counter\nglorank_rerank_lists_total {}",
                s.lists
            );
            let _ = writeln!(
                out,
                "# HELP glorank_rerank_errors_total Reranking requests refused (malformed, invalid \
                 or over a limit), counted per request inside batches.\n\
                 # TYPE glorank_rerank_errors_total counter\nglorank_rerank_errors_total {}",
                s.request_errors
            );
            s.latency.render(
                &mut out,
                "glorank_request_duration_seconds",
                "Latency of POST /rerank, from the request read to the answer.",
            );
            s.batch_sizes.render(
                &mut out,
                "glorank_batch_size",
                "Requests per decode batch formed by the dynamic batcher.",
            );
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_render() {
        let m = Metrics::default();
        m.response("/rerank", 200, 0.0015);
        m.response("/rerank", 200, 0.3);
        m.response("/rerank", 422, 0.0005);
        m.response("/health", 200, 0.0);
        m.batch(3);
        m.batch(40);
        m.outcomes(4, 1);
        let text = m.render();
        assert!(text.contains("glorank_http_responses_total{endpoint=\"/rerank\",code=\"200\"} 2"));
        assert!(text.contains("glorank_http_responses_total{endpoint=\"/health\",code=\"200\"} 1"));
        assert!(text.contains("glorank_request_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("glorank_request_duration_seconds_bucket{le=\"0.002\"} 2"));
        assert!(text.contains("glorank_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("glorank_request_duration_seconds_count 3"));
        assert!(text.contains("glorank_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("glorank_batch_size_bucket{le=\"64\"} 2"));
        assert!(text.contains("glorank_batch_size_sum 43"));
        assert!(text.contains("glorank_rerank_lists_total 4"));
        assert!(text.contains("glorank_rerank_errors_total 1"));
        assert_eq!(m.batches(), (2, 43.0));
    }
}
