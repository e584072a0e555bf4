//! Request extractors whose rejections are problem documents.

use axum::Json;
use axum::extract::{FromRequest, Request};

use crate::http::error::ApiError;

/// JSON body extractor whose rejections are problem documents.
///
/// JSON has one kind of number: `2.0` is the integer `2` (JSON Schema's `integer` admits it),
/// so a whole number written with a fraction is read as that integer before the typed
/// request is; `2.5` where an integer is expected stays refused.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(mut value) = Json::<serde_json::Value>::from_request(req, state).await.map_err(ApiError::from)?;
        whole_numbers(&mut value);
        let bytes = serde_json::to_vec(&value).map_err(|e| ApiError(repli_app::AppError::Internal(e.to_string())))?;
        Json::<T>::from_bytes(&bytes).map(|Json(v)| ApiJson(v)).map_err(ApiError::from)
    }
}

/// Largest magnitude a float spells exactly as an integer.
const EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// Rewrites every whole number written as a float (`3.0`, `-1e2`) as an integer.
fn whole_numbers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT_FLOAT
            {
                // Exact: a whole float within 2^53 converts without loss.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *v = serde_json::Value::from(i);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_floats_read_as_integers_and_fractions_stay() {
        let mut v = serde_json::json!({"a": 0.0, "b": [-13264.0, 2.5], "c": {"d": 1e2}, "e": 7});
        whole_numbers(&mut v);
        assert_eq!(v, serde_json::json!({"a": 0, "b": [-13264, 2.5], "c": {"d": 100}, "e": 7}));
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            n: u16,
        }
        let mut v = serde_json::json!({"n": 3.0});
        whole_numbers(&mut v);
        assert!(serde_json::from_value::<T>(v).is_ok());
    }
}

/// Path parameters extractor whose rejections (`/users/abc/…` where a number is expected, bad
/// percent-encoding) are problem documents, not axum's English text.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(ApiError::from)
    }
}
