//! The API reference page at `/api/v1/reference`: plain HTML rendered from the same
//! OpenAPI document that `/api/v1/openapi.json` serves, so it cannot go stale. No
//! scripts or assets from elsewhere.

use utoipa::openapi::OpenApi;
use utoipa::openapi::path::HttpMethod;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes text and shows `backticked` words as code, as the doc comments write them.
fn prose(s: &str) -> String {
    esc(s)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

fn method_name(m: &HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Head => "HEAD",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Trace => "TRACE",
    }
}

/// A JSON schema in a few words: `string`, `integer (1–65535)`, `array of PolicyPortInput`.
fn type_of(schema: &serde_json::Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    if let Some(one) = schema["oneOf"].as_array() {
        return one.iter().map(type_of).collect::<Vec<_>>().join(" or ");
    }
    let kind = match &schema["type"] {
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    };
    let kind = if schema["items"].is_object() {
        kind.replace("array", &format!("array of {}", type_of(&schema["items"])))
    } else {
        kind
    };
    match (schema["minimum"].as_i64(), schema["maximum"].as_i64()) {
        (Some(lo), Some(hi)) => format!("{kind} ({lo}–{hi})"),
        _ => kind,
    }
}

fn schema_section(name: &str, schema: &serde_json::Value) -> String {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut rows = String::new();
    if let Some(props) = schema["properties"].as_object() {
        for (field, prop) in props {
            rows.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(field),
                esc(&type_of(prop)),
                if required.contains(&field.as_str()) {
                    "yes"
                } else {
                    ""
                },
                prose(prop["description"].as_str().unwrap_or(""))
            ));
        }
    }
    format!(
        "<h3 id=\"{id}\"><code>{id}</code></h3>\n<table><thead><tr><th>Field</th><th>Type</th><th>Required</th><th>Meaning</th></tr></thead><tbody>{rows}</tbody></table>\n",
        id = esc(name)
    )
}

pub fn page(doc: &OpenApi) -> String {
    let mut rows = String::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            (HttpMethod::Get, &item.get),
            (HttpMethod::Post, &item.post),
            (HttpMethod::Put, &item.put),
            (HttpMethod::Delete, &item.delete),
            (HttpMethod::Patch, &item.patch),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let summary = op
                .summary
                .clone()
                .or_else(|| op.description.clone())
                .unwrap_or_default();
            let params = op
                .parameters
                .iter()
                .flatten()
                .map(|p| format!("<code>{}</code>", esc(&p.name)))
                .collect::<Vec<_>>()
                .join(" ");
            let body = op
                .request_body
                .as_ref()
                .and_then(|b| b.content.values().next())
                .and_then(|c| c.schema.as_ref())
                .map(|s| match s {
                    utoipa::openapi::RefOr::Ref(r) => {
                        r.ref_location.rsplit('/').next().unwrap_or("").to_owned()
                    }
                    _ => "JSON".to_owned(),
                })
                .unwrap_or_default();
            let statuses = op
                .responses
                .responses
                .keys()
                .map(|k| esc(k))
                .collect::<Vec<_>>()
                .join(" ");
            rows.push_str(&format!(
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>\n",
                method_name(&method),
                esc(path),
                prose(&summary),
                params,
                esc(&body),
                statuses
            ));
        }
    }
    let mut schemas = String::new();
    let value = serde_json::to_value(doc).unwrap_or_default();
    if let Some(all) = value["components"]["schemas"].as_object() {
        for (name, schema) in all {
            schemas.push_str(&schema_section(name, schema));
        }
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>API reference · Portcullis</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}}code{{font-size:.9em}}</style>
</head><body>
<h1>Portcullis API v1</h1>
<p>{desc}</p>
<p>Authenticate every call with <code>Authorization: Bearer pcu_…</code>, a personal API token
created on the <a href="/tokens">API tokens</a> page. The machine-readable document is
<a href="/api/v1/openapi.json"><code>/api/v1/openapi.json</code></a> (OpenAPI {version}).
Errors are <code>{{"error":{{"code","message","fields"}}}}</code>.</p>
<table><thead><tr><th>Method</th><th>Path</th><th>What it does</th><th>Parameters</th><th>Body</th><th>Statuses</th></tr></thead>
<tbody>
{rows}</tbody></table>
<h2>Schemas</h2>
{schemas}
</body></html>
"#,
        desc = prose(doc.info.description.as_deref().unwrap_or("")),
        version = "3.1",
    )
}
