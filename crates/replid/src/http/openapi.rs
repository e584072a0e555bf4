//! The OpenAPI 3.1 document, generated from the route table ([`crate::http::routes`]) and the wire
//! types of `repli-proto` (their `ToSchema` derives): a route cannot exist without its entry,
//! and a type cannot change without its schema.
//!
//! Each route of the table carries a [`Doc`]: what it takes (query, JSON body), what it answers
//! and with which status, and the problem codes it may answer besides those every route of its
//! kind shares (401/403 behind a permission, 400/413/415/422 with a JSON body, 404 with path
//! parameters). A problem's status comes from [`ProblemCode::status`], the one table.

use std::collections::BTreeMap;

use axum::http::Method;
use repli_core::{Permission, Role};
use repli_proto::ProblemCode;
use repli_proto::api::Problem;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ComponentsBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::http::spec::{Access, Answer, Doc, Named, RouteSpec};

/// The problem codes a route answers, by status: those of its kind, then its own.
pub fn problems_of(spec: &RouteSpec) -> BTreeMap<u16, Vec<ProblemCode>> {
    use ProblemCode as C;
    let mut codes: Vec<ProblemCode> = Vec::new();
    if matches!(spec.access, Access::Requires(_)) {
        codes.extend([C::Unauthenticated, C::Forbidden]);
    }
    if spec.path.contains('{') {
        codes.push(C::NotFound);
    }
    if spec.path.starts_with("/api/v1/crises/{id}") {
        codes.push(C::CrisisNotFound);
    }
    if spec.doc.body.is_some() {
        codes.extend([
            C::MalformedJson,
            C::InvalidJsonField,
            C::PayloadTooLarge,
            C::UnsupportedMediaType,
            C::InvalidFields,
        ]);
    }
    if spec.doc.query.is_some() {
        codes.push(C::InvalidQuery);
    }
    if spec.doc.idempotency_key {
        codes.extend([C::InvalidIdempotencyKey, C::IdempotencyKeyReused]);
    }
    if spec.method != axum::http::Method::GET && is_api(spec) {
        // Any write: the storage may refuse it (nothing kept), and writes stop while the audit
        // chain does not verify.
        codes.extend([C::StorageFull, C::StorageUnavailable, C::AuditChainBroken]);
    }
    codes.extend(spec.doc.problems.iter().copied());
    let mut by_status: BTreeMap<u16, Vec<ProblemCode>> = BTreeMap::new();
    for c in codes {
        let list = by_status.entry(c.status()).or_default();
        if !list.contains(&c) {
            list.push(c);
        }
    }
    by_status
}

/// The API and the probes answer problem documents; pages answer French HTML.
fn is_api(spec: &RouteSpec) -> bool {
    spec.path.starts_with("/api/") || matches!(spec.path, "/healthz" | "/readyz" | "/metrics")
}

/// The roles whose permissions open a route.
fn roles(permission: Permission) -> Vec<&'static str> {
    Role::ALL.into_iter().filter(|r| permission.allowed(*r)).map(Role::as_str).collect()
}

fn http_method(m: &Method) -> Option<HttpMethod> {
    Some(match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => return None,
    })
}

/// `get_api_v1_crises_id_steps_step_done`.
fn operation_id(spec: &RouteSpec) -> String {
    let path: String =
        spec.path.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    let path: Vec<&str> = path.split('_').filter(|s| !s.is_empty()).collect();
    let path = if path.is_empty() { "root".to_owned() } else { path.join("_") };
    format!("{}_{path}", spec.method.as_str().to_ascii_lowercase())
}

fn tag(spec: &RouteSpec) -> &'static str {
    let rest = spec.path.strip_prefix("/api/v1/");
    match rest.and_then(|r| r.split('/').next()) {
        Some("crises") if spec.path.contains("/steps") || spec.path.contains("/credential-sheets") => "playbooks",
        Some("crises" | "sla") => "crises",
        Some("communes") => "communes",
        Some("inventory") => "inventory",
        Some("audit") => "audit",
        Some("users") => "users",
        Some("tasks" | "notifications") => "operations",
        Some("m365") => "m365",
        Some("me" | "openapi.json") => "service",
        None if spec.path == "/metrics" => "service",
        _ if !is_api(spec) => "web",
        _ => "service",
    }
}

fn problem_response(codes: &[ProblemCode]) -> utoipa::openapi::Response {
    let list: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
    ResponseBuilder::new()
        .description(format!("A problem document (RFC 9457); `code` is one of {}.", list.join(", ")))
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(RefOr::Ref(Ref::from_schema_name(Problem::name())))).build(),
        )
        .build()
}

fn success_response(doc: &Doc) -> utoipa::openapi::Response {
    let text = |ct: &str, desc: &str| {
        ResponseBuilder::new()
            .description(desc)
            .content(ct, ContentBuilder::new().schema(Some(String::schema())).build())
            .build()
    };
    match doc.answer {
        Answer::Json(named) => ResponseBuilder::new()
            .description(doc.summary)
            .content("application/json", ContentBuilder::new().schema(Some(named.reference())).build())
            .build(),
        Answer::List(named) => ResponseBuilder::new()
            .description(doc.summary)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(ArrayBuilder::new().items(named.reference()).build())).build(),
            )
            .build(),
        Answer::Strings => ResponseBuilder::new()
            .description(doc.summary)
            .content("application/json", ContentBuilder::new().schema(Some(Vec::<String>::schema())).build())
            .build(),
        Answer::Object => ResponseBuilder::new()
            .description(doc.summary)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))).build(),
            )
            .build(),
        Answer::Html => text("text/html", "An HTML page, in French."),
        Answer::Document => ResponseBuilder::new()
            .description("The document: HTML for print, or Markdown for `.md` names.")
            .content("text/html", ContentBuilder::new().schema(Some(String::schema())).build())
            .content("text/markdown", ContentBuilder::new().schema(Some(String::schema())).build())
            .build(),
        Answer::Zip => ResponseBuilder::new()
            .description("A zip archive.")
            .content(
                "application/zip",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).content_media_type("application/zip")))
                    .build(),
            )
            .build(),
        Answer::Css => text("text/css", "The stylesheet."),
        Answer::Metrics => text(repli_app::metrics::CONTENT_TYPE, "The metrics, read now."),
        Answer::Redirect => ResponseBuilder::new().description("Done: back to the page.").build(),
    }
}

/// Path parameters (`{id}`), in order.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn path_param_schema(name: &str) -> RefOr<Schema> {
    let description = match name {
        "id" => "The crisis id (`13005-2026-001`).",
        "insee" => "The commune's INSEE code.",
        "serial" => "The item's serial number or asset tag.",
        "step" => "The step's id in its playbook.",
        "uid" => "The user's id.",
        "nid" => "The notification's id, as listed.",
        "secret" => "A one-time password link's secret.",
        "action" => "A crisis action (`activate`, `reject`, `start_handback`…).",
        "kind" => "A legal clock: `cnil` or `complaint`.",
        "file" => "A document's file name, as listed.",
        _ => "",
    };
    ObjectBuilder::new().schema_type(Type::String).description(Some(description)).into()
}

/// The whole document for these routes.
pub fn document(specs: &[RouteSpec]) -> OpenApi {
    let mut schemas = BTreeMap::new();
    Named::of::<Problem>().register(&mut schemas);
    let mut paths: BTreeMap<&str, PathItem> = BTreeMap::new();
    for spec in specs {
        let Some(method) = http_method(&spec.method) else { continue };
        let doc = &spec.doc;
        let mut op =
            OperationBuilder::new().operation_id(Some(operation_id(spec))).summary(Some(doc.summary)).tag(tag(spec));
        let mut ext = ExtensionsBuilder::new();
        match spec.access {
            Access::Public => {
                op = op.description(Some("Public: no authentication.")).securities(Some(Vec::new()));
                ext = ext.add("x-repli-access", "public");
            }
            Access::Requires(p) | Access::Page(p) => {
                let roles = roles(p);
                let how = if matches!(spec.access, Access::Page(_)) {
                    op = op.security(SecurityRequirement::new("session", Vec::<String>::new()));
                    "a web session (cookie); without one, a redirection to `/connexion`"
                } else {
                    op = op
                        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                        .security(SecurityRequirement::new("session", Vec::<String>::new()));
                    "a bearer token, or a web session with its `X-CSRF-Token` on writes"
                };
                let mut text = format!("Permission `{}` ({}), through {how}.", p.as_str(), roles.join(", "));
                if !doc.beyond_schema.is_empty() {
                    text.push_str("\n\nRefused with `422` beyond what the schema states: ");
                    text.push_str(&doc.beyond_schema.join("; "));
                    text.push('.');
                }
                op = op.description(Some(text));
                ext = ext.add("x-repli-permission", p.as_str()).add("x-repli-roles", roles);
            }
        }
        if !doc.beyond_schema.is_empty() {
            ext = ext.add("x-repli-beyond-schema", doc.beyond_schema.to_vec());
        }
        op = op.extensions(Some(ext.build()));
        for name in path_params(spec.path) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(path_param_schema(name))),
            );
        }
        if let Some(query) = doc.query
            && let RefOr::T(Schema::Object(obj)) = (query.schema)()
        {
            let mut deps = Vec::new();
            (query.deps)(&mut deps);
            for (name, schema) in deps {
                schemas.entry(name).or_insert(schema);
            }
            for (name, schema) in obj.properties {
                let required = if obj.required.contains(&name) { Required::True } else { Required::False };
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Query)
                        .required(required)
                        .schema(Some(schema)),
                );
            }
        }
        if doc.idempotency_key {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(repli_proto::IDEMPOTENCY_HEADER)
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Makes a retried request safe: the same key with the same body answers the first \
                         result; with another body, `idempotency_key_reused`. 1 to 128 visible ASCII characters.",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(repli_app::crises::MAX_IDEMPOTENCY_KEY))
                            .pattern(Some(format!("^[!-~]{{1,{}}}$", repli_app::crises::MAX_IDEMPOTENCY_KEY))),
                    )),
            );
        }
        if let Some(body) = doc.body {
            body.register(&mut schemas);
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content("application/json", ContentBuilder::new().schema(Some(body.reference())).build())
                    .build(),
            ));
        }
        if let Answer::Json(named) | Answer::List(named) = doc.answer {
            named.register(&mut schemas);
        }
        op = op.response(doc.status.to_string(), success_response(doc));
        if let Some(also) = doc.also {
            op = op.response(also.to_string(), success_response(doc));
        }
        if doc.unavailable {
            op = op.response("503", success_response(doc));
        }
        if matches!(spec.access, Access::Page(_)) {
            op = op.response(
                "303",
                ResponseBuilder::new().description("No web session: a redirection to `/connexion`.").build(),
            );
            op = op.response("403", ResponseBuilder::new().description("Not open to this role: an HTML page.").build());
        }
        if is_api(spec) {
            for (status, codes) in problems_of(spec) {
                op = op.response(status.to_string(), problem_response(&codes));
            }
        }
        let item = PathItem::new(method, op.build());
        match paths.entry(spec.path) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge_operations(item),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(item);
            }
        }
    }
    let mut builder = PathsBuilder::new();
    for (path, item) in paths {
        builder = builder.path(path, item);
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token (`repli user add`, `POST /api/v1/users/{uid}/tokens`)."))
                    .build(),
            ),
        )
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "repli_session",
                "A web session from `/connexion`; API writes also need its `X-CSRF-Token` header.",
            ))),
        );
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    let tags = [
        ("crises", "Crises: requests, transitions, the SLA clock, the main courante, legal clocks."),
        ("playbooks", "Playbook runs and their steps; credential sheets."),
        ("inventory", "The equipment pool, loans and hand-back."),
        ("communes", "The communes and their conventions."),
        ("operations", "What ops have to do: manual tasks, notifications."),
        ("audit", "The signed audit log, for auditors."),
        ("users", "Accounts, tokens and web passwords (admins)."),
        ("m365", "The Microsoft 365 tenant."),
        ("service", "Health, readiness, the caller, this document."),
        ("web", "The French web pages (HTML, for a browser session); not for API clients."),
    ];
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Repli")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "replid's API: crisis kits lent by the Métropole Aix-Marseille-Provence to a commune hit \
                     by a cyberattack. Errors are RFC 9457 problem documents whose `detail` is French (a DGS may \
                     read it) and whose `code` is stable. Every answer carries `X-Request-Id`.",
                ))
                .build(),
        )
        .paths(builder.build())
        .components(Some(components.build()))
        .tags(Some(tags.map(|(name, desc)| TagBuilder::new().name(name).description(Some(desc)).build())))
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::http::routes::route_specs;

    fn doc() -> Value {
        serde_json::to_value(document(&route_specs())).expect("the document serializes")
    }

    #[test]
    fn every_route_of_the_table_is_documented_with_its_access_rule() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        for spec in route_specs() {
            let op = &doc["paths"][spec.path][spec.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} is missing from the document", spec.method, spec.path);
            match spec.access {
                Access::Public => assert_eq!(op["x-repli-access"], "public", "{}", spec.path),
                Access::Requires(p) | Access::Page(p) => {
                    assert_eq!(op["x-repli-permission"], p.as_str(), "{} {}", spec.method, spec.path);
                    let roles: Vec<&str> =
                        op["x-repli-roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
                    for role in Role::ALL {
                        assert_eq!(roles.contains(&role.as_str()), p.allowed(role), "{} {role}", spec.path);
                    }
                    assert!(!op["security"].as_array().unwrap().is_empty(), "{}", spec.path);
                }
            }
            if is_api(&spec) && matches!(spec.access, Access::Requires(_)) {
                for status in ["401", "403"] {
                    let r = &op["responses"][status]["content"]["application/problem+json"];
                    assert!(r.is_object(), "{} {} does not document {status}", spec.method, spec.path);
                }
            }
        }
        let ops: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(ops, route_specs().len(), "an operation without a route");
    }

    #[test]
    fn every_reference_resolves_and_every_schema_is_used() {
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r);
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = doc();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in &all {
            let name = r.strip_prefix("#/components/schemas/").expect("a schema reference");
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
        for name in schemas.keys() {
            assert!(all.iter().any(|r| r.ends_with(&format!("/{name}"))), "schema {name} is not used");
        }
    }

    #[test]
    fn every_problem_code_is_documented_on_some_route() {
        let specs = route_specs();
        let documented: Vec<ProblemCode> = specs.iter().flat_map(|s| problems_of(s).into_values().flatten()).collect();
        // Answered by the layers in front of every route, not by a route.
        let global = [ProblemCode::MethodNotAllowed, ProblemCode::UriTooLong, ProblemCode::HeadersTooLarge];
        for code in ProblemCode::ALL {
            if code == ProblemCode::Internal || global.contains(&code) {
                continue;
            }
            assert!(documented.contains(&code), "no route documents `{code}`");
        }
    }

    /// The limits the document states are the validators' own: a drift between a request
    /// type's schema and the rule the server applies fails here, not in production.
    #[test]
    fn documented_limits_are_the_validators() {
        use repli_core::text;
        let doc = doc();
        let prop = |schema: &str, path: &str| -> Value {
            let mut v = doc["components"]["schemas"][schema].clone();
            for p in path.split('.') {
                v = if p == "items" { v["items"].clone() } else { v["properties"][p].clone() };
            }
            assert!(v.is_object(), "{schema}.{path} is not documented");
            v
        };
        let num = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}")) as usize;
        // Strings: the documented maximum is accepted, one more character is refused.
        type Accepts = fn(&str) -> bool;
        let strings: &[(&str, &str, Accepts)] = &[
            ("Contact", "name", |s| text::name("f", s).is_ok()),
            ("AgentInput", "name", |s| text::name("f", s).is_ok()),
            ("AgentInput", "service", |s| text::free_text("f", s, text::NAME_MAX, false).is_ok()),
            ("WipeRequest", "method", |s| text::name("f", s).is_ok()),
            ("NewUserRequest", "name", |s| text::name("f", s).is_ok()),
            ("ImportFile", "source", |s| text::name("f", s).is_ok()),
            ("LogEntryRequest", "text", |s| text::free_text("f", s, text::NOTE_MAX, true).is_ok()),
            ("StepActionRequest", "reason", |s| text::free_text("f", s, text::NOTE_MAX, true).is_ok()),
            ("ReissueRequest", "reason", |s| text::free_text("f", s, text::NOTE_MAX, true).is_ok()),
            ("SuspendRequest", "reason", |s| text::free_text("f", s, text::SHORT_TEXT_MAX, true).is_ok()),
            ("WriteOffRequest", "reason", |s| text::free_text("f", s, text::SHORT_TEXT_MAX, true).is_ok()),
            ("ServiceRequest", "reason", |s| text::free_text("f", s, text::SHORT_TEXT_MAX, true).is_ok()),
            ("CrisisRequest", "delivery_address", |s| text::free_text("f", s, text::SHORT_TEXT_MAX, true).is_ok()),
            ("LendRequest", "serial", |s| repli_core::inventory::identifier("f", s).is_ok()),
            ("PasswordRequest", "login", |s| repli_app::accounts::login_errors(s).is_empty()),
            ("PasswordRequest", "password", |s| repli_app::accounts::password_errors(s).is_empty()),
            ("ExerciseRequest", "name", |s| text::free_text("f", s, repli_core::exercise::NAME_MAX, true).is_ok()),
            ("InjectSpec", "text", |s| text::free_text("f", s, repli_core::exercise::INJECT_MAX, true).is_ok()),
        ];
        for (schema, field, accepts) in strings {
            let max = num(&prop(schema, field), "maxLength");
            assert!(accepts(&"a".repeat(max)), "{schema}.{field}: {max} characters refused");
            assert!(!accepts(&"a".repeat(max + 1)), "{schema}.{field}: {} characters accepted", max + 1);
        }
        let phone = prop("Contact", "phone");
        assert_eq!(num(&phone, "maxLength"), text::PHONE_MAX);
        assert_eq!(num(&prop("Contact", "email"), "maxLength"), text::EMAIL_MAX);
        // Numbers and lists.
        let ints: &[(&str, &str, &str, usize)] = &[
            ("CrisisRequest", "agents", "maximum", repli_core::crisis::MAX_AGENTS as usize),
            ("ExerciseCommune", "agents", "maximum", repli_core::crisis::MAX_AGENTS as usize),
            ("KitNeeds", "laptop", "maximum", repli_core::inventory::MAX_LAPTOPS as usize),
            ("KitNeeds", "router", "maximum", repli_core::inventory::MAX_PER_KIND as usize),
            ("KitNeeds", "phone", "maximum", repli_core::inventory::MAX_PER_KIND as usize),
            ("KitNeeds", "printer", "maximum", repli_core::inventory::MAX_PER_KIND as usize),
            ("InjectSpec", "after_minutes", "maximum", repli_core::exercise::MAX_INJECT_MINUTES as usize),
            ("AgentsRequest", "agents", "maxItems", repli_core::inventory::MAX_AGENTS_LIST),
            ("ImportRequest", "files", "maxItems", repli_core::inventory::MAX_IMPORT_FILES),
            ("ExerciseRequest", "communes", "maxItems", repli_core::exercise::MAX_COMMUNES),
            ("ExerciseRequest", "recipients", "maxItems", repli_core::exercise::MAX_RECIPIENTS),
            ("ExerciseRequest", "injects", "maxItems", repli_core::exercise::MAX_INJECTS),
            ("NewUserRequest", "expires_days", "maximum", u16::MAX as usize),
        ];
        for (schema, field, key, expected) in ints {
            assert_eq!(num(&prop(schema, field), key), *expected, "{schema}.{field} {key}");
        }
    }

    #[test]
    fn operation_ids_are_unique_and_readable() {
        let specs = route_specs();
        let mut ids: Vec<String> = specs.iter().map(operation_id).collect();
        assert!(ids.contains(&"post_api_v1_crises_id_steps_step_retry".to_owned()), "{ids:?}");
        assert!(ids.contains(&"get_root".to_owned()));
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate operation ids");
    }
}
