//! [`Route`]: which upstream a request path goes to, and the URL (the cache key) it
//! maps to.

use crate::error::{Error, Result};
use crate::origin::UrlOrigin;

/// Requests whose path starts with a prefix go to one upstream: `GET /prefix/rest?q`
/// is read through the cache under the key `UPSTREAM/rest?q`.
///
/// ```
/// use readthrough::Route;
/// let route = Route::parse("/pypi/=https://pypi.org/")?;
/// assert_eq!(route.prefix(), "/pypi/");
/// assert_eq!(route.url_of("/pypi/simple/?x=1").as_deref(), Some("https://pypi.org/simple/?x=1"));
/// assert_eq!(route.url_of("/other/simple/"), None);
/// assert!(Route::parse("pypi=https://pypi.org").is_err());
/// # Ok::<(), readthrough::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    prefix: String,
    /// The upstream URL without a trailing `/`.
    upstream: String,
    cache_credentials: bool,
}

impl Route {
    /// Sends paths under `prefix` (which starts with `/`; a missing trailing `/` is
    /// added) to `upstream`, an `http://`, `https://` or `s3://` URL.
    ///
    /// # Errors
    /// [`Error::InvalidRoute`] for a prefix that does not start with `/`, and an
    /// upstream that is not a URL the cache can fetch or that has a query or fragment.
    pub fn new(prefix: &str, upstream: &str) -> Result<Self> {
        let text = format!("{prefix}={upstream}");
        let invalid = |reason| Error::InvalidRoute {
            route: text.clone(),
            reason,
        };
        if !prefix.starts_with('/') {
            return Err(invalid("the path prefix must start with /"));
        }
        if upstream.contains(['?', '#']) {
            return Err(invalid(
                "the upstream URL must not have a query or fragment",
            ));
        }
        UrlOrigin::check(upstream)
            .map_err(|_| invalid("the upstream must be an http://, https:// or s3:// URL"))?;
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Route {
            prefix,
            upstream: upstream.trim_end_matches('/').to_owned(),
            cache_credentials: false,
        })
    }

    /// Parses `PREFIX=URL`, as `readthrough serve --route` takes it.
    ///
    /// # Errors
    /// [`Error::InvalidRoute`] when there is no `=`, and as [`Route::new`].
    pub fn parse(text: &str) -> Result<Self> {
        let (prefix, upstream) = text.split_once('=').ok_or_else(|| Error::InvalidRoute {
            route: text.to_owned(),
            reason: "expected PREFIX=URL, such as /pypi/=https://pypi.org",
        })?;
        Route::new(prefix, upstream)
    }

    /// Requests with credentials (`Authorization`, `Cookie`) on this route are sent
    /// upstream with them and their responses cached, each under a key of its own
    /// that includes a SHA-256 digest of the credentials: a copy is only ever served
    /// to a request with the same credentials. Without this (the default) such
    /// requests are passed through upstream and nothing of them is cached or served
    /// from the cache.
    #[must_use]
    pub fn cache_credentials(mut self) -> Self {
        self.cache_credentials = true;
        self
    }

    /// The path prefix, ending with `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether responses to requests with credentials are cached (per credentials).
    pub fn caches_credentials(&self) -> bool {
        self.cache_credentials
    }

    /// The upstream URL of `path_and_query`, if it is under this route's prefix and
    /// its path has no `.` or `..` segment (plain or percent-encoded, between `/` or
    /// `\`): URL parsers resolve those, which would let a request leave the
    /// upstream's base path.
    pub fn url_of(&self, path_and_query: &str) -> Option<String> {
        let rest = path_and_query.strip_prefix(&self.prefix)?;
        let path = rest.split_once('?').map_or(rest, |(path, _)| path);
        let dotted = path.split(['/', '\\']).any(|segment| {
            let segment = segment.to_ascii_lowercase().replace("%2e", ".");
            segment == "." || segment == ".."
        });
        (!dotted).then(|| format!("{}/{rest}", self.upstream))
    }

    /// Whether the upstream is an object store (`s3://`) rather than HTTP.
    pub(crate) fn is_object_store(&self) -> bool {
        self.upstream.starts_with("s3://")
    }
}

/// The route for `path`: the one with the longest matching prefix.
pub(crate) fn route_for<'a>(routes: &'a [Route], path: &str) -> Option<&'a Route> {
    routes
        .iter()
        .filter(|route| path.starts_with(&route.prefix))
        .max_by_key(|route| route.prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_the_query_is_kept() {
        let routes = [
            Route::parse("/=http://a.example").unwrap(),
            Route::parse("/hub=https://b.example/base/").unwrap(),
        ];
        let url = |path| route_for(&routes, path).and_then(|r| r.url_of(path));
        assert_eq!(url("/x?y=1").as_deref(), Some("http://a.example/x?y=1"));
        assert_eq!(
            url("/hub/m/f").as_deref(),
            Some("https://b.example/base/m/f")
        );
        assert_eq!(url("/hubx").as_deref(), Some("http://a.example/hubx"));
    }

    #[test]
    fn dot_segments_never_map() {
        let route = Route::parse("/hub/=https://b.example/base").unwrap();
        for path in [
            "/hub/../x",
            "/hub/a/%2E%2e/x",
            "/hub/a\\..\\x",
            "/hub/.",
            "/hub/a/..",
        ] {
            assert_eq!(route.url_of(path), None, "{path}");
        }
        assert!(route.url_of("/hub/a..b/.c?x=../y").is_some());
    }

    #[test]
    fn bad_routes_say_why() {
        for (text, why) in [
            ("nothing", "PREFIX=URL"),
            ("x=http://a", "start with /"),
            ("/=ftp://a", "http://"),
            ("/=http://a/?q", "query"),
        ] {
            let err = Route::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
