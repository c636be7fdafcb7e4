//! The route table: every route the API answers, the one source that request metrics, `Allow` headers, the OpenAPI check and the tests read.

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone the monitor is visible to (the dashboard, its login and session).
    Visible,
    /// The `viewer` role or higher.
    Viewer,
    /// The `admin` role.
    Admin,
}

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST` or `PUT`.
    pub method: &'static str,
    /// The path template; `{name}` (or any `{…}`) stands for one non-empty segment.
    pub path: &'static str,
    /// `METHOD path`: the label the route is counted under in the request metrics.
    pub label: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Described in `/admin/monitor/openapi.json` (the dashboard's own files are not).
    pub documented: bool,
}

macro_rules! route {
    ($method:literal $path:literal, $access:ident) => {
        route!($method $path, $access, true)
    };
    ($method:literal $path:literal, $access:ident, $documented:literal) => {
        Route {
            method: $method,
            path: $path,
            label: concat!($method, " ", $path),
            access: Access::$access,
            documented: $documented,
        }
    };
}

/// Every route the API answers; anything else counts as `unmatched`.
pub const ROUTES: &[Route] = &[
    route!("GET" "/admin/monitor/system", Viewer),
    route!("GET" "/admin/monitor/health", Viewer),
    route!("GET" "/admin/monitor/alerts", Viewer),
    route!("GET" "/admin/monitor/alerts/stream", Viewer),
    route!("GET" "/admin/monitor/history", Viewer),
    route!("GET" "/admin/monitor/events", Viewer),
    route!("GET" "/admin/monitor/gpu", Viewer),
    route!("GET" "/admin/monitor/gpu/stream", Viewer),
    route!("GET" "/admin/monitor/sections/{name}", Viewer),
    route!("GET" "/admin/monitor/sections/{name}/stream", Viewer),
    route!("GET" "/admin/monitor/stream", Viewer),
    route!("GET" "/admin/monitor/metrics", Viewer),
    route!("POST" "/admin/monitor/metrics/reset", Admin),
    route!("GET" "/admin/monitor/errors", Viewer),
    route!("GET" "/admin/monitor/openapi.json", Viewer),
    route!("GET" "/admin/monitor/session", Visible),
    route!("POST" "/admin/monitor/login", Visible),
    route!("POST" "/admin/monitor/logout", Visible),
    route!("GET" "/admin/monitor/collectors", Viewer),
    route!("GET" "/admin/monitor/collectors/{name}", Viewer),
    route!("PUT" "/admin/monitor/collectors/{name}", Admin),
    route!("GET" "/admin/monitor/", Visible),
    route!("GET" "/admin/monitor/assets/{file}", Visible, false),
    route!("GET" "/metrics", Viewer),
    route!("GET" "/", Visible, false),
];

/// True when `path` fits a route template (`{…}` matches one non-empty segment).
pub fn fits(template: &str, path: &str) -> bool {
    let (t, p) = (template.split('/'), path.split('/'));
    t.clone().count() == p.clone().count()
        && t.zip(p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

/// The route `method` and `path` are served by, if any.
pub fn find(method: &str, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.method == method && fits(r.path, path))
}

/// The methods served at `path`, for a 405's `Allow` header.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    ROUTES
        .iter()
        .filter(|r| fits(r.path, path))
        .map(|r| r.method)
        .collect()
}

/// A path that fits `template`, with `value` for each parameter: what a test requests.
pub fn example_path(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { value } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the one-source rule: the OpenAPI description documents exactly the table's routes.
    #[test]
    fn openapi_documents_exactly_the_table() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::api::OPENAPI).expect("openapi.json parses");
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<String> = paths
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .into_iter()
                    .flat_map(|o| o.keys())
                    .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                    .map(move |m| format!("{} {path}", m.to_uppercase()))
            })
            .collect();
        let mut table: Vec<String> = ROUTES
            .iter()
            .filter(|r| r.documented)
            .map(|r| r.label.to_owned())
            .collect();
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
    }

    /// Guards labels: each is `METHOD path` of its own route, and no two routes overlap.
    #[test]
    fn labels_are_unique_and_consistent() {
        for r in ROUTES {
            assert_eq!(r.label, format!("{} {}", r.method, r.path));
            assert_eq!(
                find(r.method, &example_path(r.path, "x")),
                Some(r),
                "{}",
                r.label
            );
        }
    }
}
