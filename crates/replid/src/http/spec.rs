//! The route table's vocabulary: who may call a route ([`Access`]) and what it is
//! ([`Doc`]: what it takes and answers), shared by the router (`routes`) and the OpenAPI
//! document (`openapi`), so that neither module reads the other's.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::http::Method;
use axum::routing::MethodRouter;
use repli_core::Permission;
use repli_proto::ProblemCode;
use utoipa::ToSchema;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{Ref, RefOr};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, unauthenticated.
    Public,
    /// An authenticated user whose role has this permission (the policy table in repli-core).
    Requires(Permission),
    /// The same, for a web page: without a session, the browser is sent to the sign-in page.
    Page(Permission),
}

/// One route of the API, as the authorization matrix test sees it.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub doc: Doc,
}

type Collected = Vec<(String, RefOr<Schema>)>;

/// A named schema: its `$ref` name, its own schema and the schemas it refers to.
#[derive(Debug, Clone, Copy)]
pub struct Named {
    pub(crate) name: fn() -> Cow<'static, str>,
    pub(crate) schema: fn() -> RefOr<Schema>,
    pub(crate) deps: fn(&mut Collected),
}

impl Named {
    pub(crate) fn of<T: ToSchema>() -> Self {
        Named { name: T::name, schema: T::schema, deps: T::schemas }
    }

    pub(crate) fn reference(&self) -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name((self.name)()))
    }

    pub(crate) fn register(&self, into: &mut BTreeMap<String, RefOr<Schema>>) {
        into.entry((self.name)().into_owned()).or_insert_with(self.schema);
        let mut deps = Vec::new();
        (self.deps)(&mut deps);
        for (name, schema) in deps {
            into.entry(name).or_insert(schema);
        }
    }
}

/// What a route answers when it succeeds.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// A JSON document of this type.
    Json(Named),
    /// A JSON array of this type.
    List(Named),
    /// A JSON array of strings.
    Strings,
    /// A JSON object described elsewhere (this document itself).
    Object,
    /// An HTML page or document.
    Html,
    /// An HTML document or its Markdown twin.
    Document,
    /// A zip archive.
    Zip,
    /// The stylesheet.
    Css,
    /// Prometheus metrics in the OpenMetrics text format.
    Metrics,
    /// A redirection (`303 See Other`), for form posts.
    Redirect,
}

/// One route's documentation, next to its handler in the route table.
#[derive(Debug, Clone)]
pub struct Doc {
    pub(crate) summary: &'static str,
    pub(crate) query: Option<Named>,
    pub(crate) body: Option<Named>,
    pub(crate) status: u16,
    /// Another success status with the same answer (a replayed idempotent request).
    pub(crate) also: Option<u16>,
    pub(crate) answer: Answer,
    pub(crate) problems: &'static [ProblemCode],
    pub(crate) idempotency_key: bool,
    /// Also answers 503 with the same document (`/readyz`).
    pub(crate) unavailable: bool,
    /// Rules on valid-looking data that JSON Schema cannot state (a date relative to now, a
    /// rule across fields or on stored data), answered `422`: in the operation's description
    /// and its `x-repli-beyond-schema` extension.
    pub(crate) beyond_schema: &'static [&'static str],
}

impl Doc {
    /// An API route answering JSON.
    pub fn api<T: ToSchema>(summary: &'static str) -> Self {
        Doc::new(summary, Answer::Json(Named::of::<T>()))
    }

    /// An API route answering a JSON array.
    pub fn list<T: ToSchema>(summary: &'static str) -> Self {
        Doc::new(summary, Answer::List(Named::of::<T>()))
    }

    /// A route answering something else than JSON.
    pub fn answering(summary: &'static str, answer: Answer) -> Self {
        Doc::new(summary, answer)
    }

    /// A web page (HTML for a browser session; forms post and are redirected).
    pub fn page(summary: &'static str) -> Self {
        Doc::new(summary, Answer::Html)
    }

    /// A form post of a web page: redirected on success, the page again with its errors.
    pub fn form(summary: &'static str) -> Self {
        Doc { status: 303, ..Doc::new(summary, Answer::Redirect) }
    }

    fn new(summary: &'static str, answer: Answer) -> Self {
        Doc {
            summary,
            query: None,
            body: None,
            status: 200,
            also: None,
            answer,
            problems: &[],
            idempotency_key: false,
            unavailable: false,
            beyond_schema: &[],
        }
    }

    /// Takes a JSON body of this type.
    pub fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some(Named::of::<T>());
        self
    }

    /// Takes query parameters: the properties of this type.
    pub fn query<T: ToSchema>(mut self) -> Self {
        self.query = Some(Named::of::<T>());
        self
    }

    /// Answers this status on success (200 by default).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Also answers this success status (an idempotent replay answers 200 where a creation
    /// answers 201).
    pub fn also(mut self, status: u16) -> Self {
        self.also = Some(status);
        self
    }

    /// The problem codes this route may answer besides those of its kind.
    pub fn problems(mut self, problems: &'static [ProblemCode]) -> Self {
        self.problems = problems;
        self
    }

    /// Takes an optional `Idempotency-Key` header.
    pub fn idempotent(mut self) -> Self {
        self.idempotency_key = true;
        self
    }

    /// Refuses (`422`) valid-per-schema data by these rules, which the schema cannot state.
    pub fn beyond_schema(mut self, rules: &'static [&'static str]) -> Self {
        self.beyond_schema = rules;
        self
    }

    /// Answers 503 with its document when not ready.
    pub fn may_be_unavailable(mut self) -> Self {
        self.unavailable = true;
        self
    }
}

/// One route as an area declares it: method, path, access rule, handler, documentation.
pub type Route = (Method, &'static str, Access, MethodRouter<crate::AppState>, Doc);
