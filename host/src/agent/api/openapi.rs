//! `GET /api/openapi.json`: the OpenAPI 3 document of every route, a
//! static file embedded in the binary. A test keeps it and the route table
//! ([`super::routes`]) in step: the same (method, path) pairs, both ways.

use axum::http::header;
use axum::response::IntoResponse;

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub(super) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, super::JSON_TYPE)], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                if methods.contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = super::super::routes()
            .into_iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn the_summary_schema_has_every_field() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>();
        let schemas = &doc["components"]["schemas"];
        let summary = serde_json::to_value(crate::agent::api::fake::fake_summary()).unwrap();
        assert_eq!(keys(&schemas["Summary"]["properties"]), keys(&summary));
        let repair = &summary["state_repairs"][0];
        assert_eq!(keys(&schemas["StateRepair"]["properties"]), keys(repair));
    }
}
