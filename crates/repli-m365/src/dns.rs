//! The crisis zone: the records Graph asks for, written as a BIND fragment and published.

use crate::{BoxFut, DnsPublisher, DnsRecord, Error, Result};

/// Publication through an HTTP zone API (the Graph simulator's `PUT /_sim/dns/{zone}`).
#[derive(Debug, Clone)]
pub struct HttpDnsPublisher {
    base: String,
    http: reqwest::Client,
}

impl HttpDnsPublisher {
    pub fn new(base: &str) -> Self {
        HttpDnsPublisher { base: base.trim_end_matches('/').to_string(), http: reqwest::Client::new() }
    }
}

impl HttpDnsPublisher {
    /// Replaces the zone's records in the zone API, retried a few times.
    async fn put(&self, zone: &str, records: &[DnsRecord]) -> Result<bool> {
        let body: Vec<serde_json::Value> =
            records.iter().map(|r| serde_json::json!({"type": r.kind, "name": r.name, "value": r.value})).collect();
        let mut last = String::new();
        for attempt in 0..5u32 {
            match self.http.put(format!("{}/_sim/dns/{zone}", self.base)).json(&body).send().await {
                Ok(r) if r.status().is_success() => return Ok(true),
                Ok(r) => last = format!("zone API answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
        }
        Err(Error::Dns(last))
    }
}

impl DnsPublisher for HttpDnsPublisher {
    fn publish<'a>(&'a self, domain: &'a str, records: &'a [DnsRecord]) -> BoxFut<'a, Result<bool>> {
        Box::pin(self.put(domain, records))
    }

    fn remove<'a>(&'a self, domain: &'a str, _records: &'a [DnsRecord]) -> BoxFut<'a, Result<bool>> {
        Box::pin(self.put(domain, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone_fragment;

    #[test]
    fn zone_fragment_quotes_txt_and_comments_safely() {
        let records = vec![
            DnsRecord {
                name: "a.fr".into(),
                kind: "TXT".into(),
                ttl: 3600,
                value: "MS=ms1 \"x\"".into(),
                service: "Email".into(),
                optional: false,
            },
            DnsRecord {
                name: "a.fr".into(),
                kind: "MX".into(),
                ttl: 3600,
                value: "0 a-fr.mail.protection.outlook.com.".into(),
                service: "Email".into(),
                optional: false,
            },
        ];
        let z = zone_fragment("a.fr", "crise 1\n$ORIGIN evil.", &records);
        assert!(z.contains("a.fr. 3600 IN TXT \"MS=ms1 \\\"x\\\"\" ; Email"), "{z}");
        assert!(z.contains("a.fr. 3600 IN MX 0 a-fr.mail.protection.outlook.com. ; Email"), "{z}");
        assert!(z.contains("; $ORIGIN evil.") && z.matches("\n$ORIGIN").count() == 1, "{z}");
    }
}
