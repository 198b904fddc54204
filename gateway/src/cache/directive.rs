//! What a client asks of the cache (request headers) and what the gateway tells it (`x-sluice-cache`).

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// Request header to steer the cache (`bypass` or `refresh`), and response header reporting the outcome
/// (`hit`, `miss` or `bypass`).
pub const CACHE_HEADER: &str = "x-sluice-cache";

/// How one request may use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheDirective {
    /// Look up, and store on a miss.
    #[default]
    Use,
    /// Skip the lookup but store the fresh answer (`x-sluice-cache: refresh`, `Cache-Control: no-cache`).
    Refresh,
    /// Neither look up nor store (`x-sluice-cache: bypass`, `Cache-Control: no-store`).
    Bypass,
}

impl CacheDirective {
    /// Reads `x-sluice-cache` and `Cache-Control`; the most restrictive directive wins, unknown values are
    /// ignored.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut directive = CacheDirective::Use;
        let mut consider = |token: &str| {
            let asked =
                if token.eq_ignore_ascii_case("bypass") || token.eq_ignore_ascii_case("no-store") {
                    CacheDirective::Bypass
                } else if token.eq_ignore_ascii_case("refresh")
                    || token.eq_ignore_ascii_case("no-cache")
                {
                    CacheDirective::Refresh
                } else {
                    CacheDirective::Use
                };
            directive = directive.max(asked);
        };
        for name in [CACHE_HEADER, CACHE_CONTROL.as_str()] {
            for value in headers.get_all(name) {
                for token in value.to_str().unwrap_or_default().split(',') {
                    consider(token.trim());
                }
            }
        }
        directive
    }

    /// Whether to look the request up.
    pub fn reads(self) -> bool {
        self == CacheDirective::Use
    }

    /// Whether to store the answer.
    pub fn writes(self) -> bool {
        self != CacheDirective::Bypass
    }

    fn rank(self) -> u8 {
        match self {
            CacheDirective::Use => 0,
            CacheDirective::Refresh => 1,
            CacheDirective::Bypass => 2,
        }
    }

    fn max(self, other: Self) -> Self {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// The cache outcome reported in the `x-sluice-cache` response header (and in metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Bypass,
}

impl CacheStatus {
    /// Header value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn directive(headers: &[(&'static str, &'static str)]) -> CacheDirective {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        CacheDirective::from_headers(&map)
    }

    #[test]
    fn headers_map_to_directives() {
        let cases: &[(&[(&'static str, &'static str)], CacheDirective)] = &[
            (&[], CacheDirective::Use),
            (&[("x-sluice-cache", "bypass")], CacheDirective::Bypass),
            (&[("x-sluice-cache", "Refresh")], CacheDirective::Refresh),
            (&[("x-sluice-cache", "sometimes")], CacheDirective::Use),
            (
                &[("cache-control", "max-age=0, no-cache")],
                CacheDirective::Refresh,
            ),
            (&[("cache-control", "no-store")], CacheDirective::Bypass),
            (
                &[("cache-control", "no-cache"), ("x-sluice-cache", "bypass")],
                CacheDirective::Bypass,
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(directive(headers), *expected, "{headers:?}");
        }
        assert!(CacheDirective::Use.reads() && CacheDirective::Use.writes());
        assert!(!CacheDirective::Refresh.reads() && CacheDirective::Refresh.writes());
        assert!(!CacheDirective::Bypass.reads() && !CacheDirective::Bypass.writes());
        assert_eq!(CacheStatus::Hit.as_str(), "hit");
    }
}
