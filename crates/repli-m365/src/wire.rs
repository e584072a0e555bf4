//! Graph's answers as Repli reads them: one type per answer, decoded by [`decode`].
//!
//! Names and optionality follow Graph's v1.0 schema (`$metadata`, CSDL): a property the schema
//! marks `Nullable="false"` is required, a nullable one is an `Option`, and so is a property
//! a `$select` or Graph's default property set leaves out of the answer. Fields Repli does not
//! read are not declared, and unknown fields are ignored, so Graph adding a property breaks
//! nothing; a required one missing, or of the wrong type, fails the call with
//! [`Error::Decode`] naming it.

use crate::{Error, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;

/// `body` as a `T`; a missing required field or a wrong type is an [`Error::Decode`] naming
/// `call` (`GET /domains/{id}`) under the operation `op`.
pub(crate) fn decode<T: DeserializeOwned>(op: &str, call: &str, body: Value) -> Result<T> {
    serde_json::from_value(body).map_err(|e| Error::Decode {
        op: op.to_string(),
        call: call.to_string(),
        detail: e.to_string(),
    })
}

/// One page of any collection (`GET /subscribedSkus`, `GET /users?…`,
/// `GET /domains/{id}/serviceConfigurationRecords`, …): its items and, when more follow, the
/// absolute URL of the next page.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// Graph's error body (`{"error": {"code", "message"}}`), on any call that failed.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: MainError,
}

/// The `error` of an [`ErrorBody`]; `innerError` and `details` are not read.
#[derive(Debug, Deserialize)]
pub(crate) struct MainError {
    pub code: String,
    pub message: String,
}

/// The token endpoint's answer to a client-credentials grant
/// (`POST {login}/{tenant}/oauth2/v2.0/token`, OAuth 2.0: snake_case, not Graph's camelCase).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    /// Seconds; RFC 6749 only recommends it.
    pub expires_in: Option<u64>,
}

/// The token endpoint's refusal (OAuth 2.0 error response).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenError {
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// `POST /$batch`: one answer per request, in any order.
#[derive(Debug, Deserialize)]
pub(crate) struct BatchResponse {
    pub responses: Vec<BatchItem>,
}

/// One request's answer in a [`BatchResponse`]; its body is decoded by whoever sent it.
#[derive(Debug, Deserialize)]
pub(crate) struct BatchItem {
    pub id: String,
    pub status: u16,
    /// Absent when the answer has no header worth returning.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Absent for an answer without a body (204).
    #[serde(default)]
    pub body: Value,
}

/// A domain: `POST /domains`, `GET /domains/{id}`, `POST /domains/{id}/verify`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Domain {
    /// `Managed` or `Federated`.
    pub authentication_type: String,
    pub is_verified: bool,
    pub supported_services: Vec<String>,
}

/// A DNS record Microsoft 365 asks for (`domainDnsRecord` and its derived types):
/// `GET /domains/{id}/verificationDnsRecords`, `GET /domains/{id}/serviceConfigurationRecords`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DomainDnsRecord {
    /// The owner name, fully qualified.
    pub label: String,
    pub ttl: u32,
    /// `Email`, `OfficeCommunicationsOnline`, …
    pub supported_service: String,
    /// Microsoft 365 works without it (Intune's CNAMEs, say); absent reads as required.
    #[serde(default)]
    pub is_optional: bool,
    /// What the derived type adds, by `recordType`.
    #[serde(flatten)]
    pub data: DnsRecordData,
}

/// The derived `domainDns…Record` types by their `recordType` (`Txt`, `Mx`, `CName`, `Srv`;
/// nullable in the schema, always set on the derived records: it is the discriminator read
/// here, so it is required). Any other type (`Unavailable`) is [`DnsRecordData::Other`].
#[derive(Debug, Deserialize)]
#[serde(tag = "recordType")]
pub(crate) enum DnsRecordData {
    #[serde(rename = "Txt", alias = "TXT", alias = "txt")]
    Txt { text: String },
    #[serde(rename = "Mx", alias = "MX", alias = "mx")]
    Mx {
        #[serde(rename = "mailExchange")]
        mail_exchange: String,
        preference: Option<u32>,
    },
    #[serde(rename = "CName", alias = "CNAME", alias = "Cname", alias = "cname")]
    CName {
        #[serde(rename = "canonicalName")]
        canonical_name: Option<String>,
    },
    #[serde(rename = "Srv", alias = "SRV", alias = "srv")]
    Srv {
        service: Option<String>,
        protocol: Option<String>,
        priority: Option<u32>,
        weight: Option<u32>,
        port: Option<u32>,
        #[serde(rename = "nameTarget")]
        name_target: Option<String>,
    },
    #[serde(other)]
    Other,
}

/// A licence plan of the tenant: `GET /subscribedSkus` (every property nullable in the
/// schema).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubscribedSku {
    pub sku_id: Option<String>,
    pub sku_part_number: Option<String>,
    /// `Enabled`, `Warning`, `Suspended`, `Deleted`, `LockedOut`.
    pub capability_status: Option<String>,
    pub consumed_units: Option<u64>,
    pub prepaid_units: Option<LicenseUnits>,
}

/// `licenseUnitsDetail` of a [`SubscribedSku`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LicenseUnits {
    pub enabled: Option<u64>,
}

/// A user as the kit's accounts are listed:
/// `GET /users?$filter=endswith(userPrincipalName,…)&$select=id,userPrincipalName,assignedLicenses,userType,onPremisesSyncEnabled,…`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct User {
    pub id: String,
    pub user_principal_name: Option<String>,
    pub assigned_licenses: Vec<AssignedLicense>,
    /// `Member` or `Guest`.
    pub user_type: Option<String>,
    /// `true` when synchronised from an on-premises directory, null for a cloud account.
    pub on_premises_sync_enabled: Option<bool>,
}

/// One licence of a [`User`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AssignedLicense {
    pub sku_id: Option<String>,
}

/// A directory object read for its id, and its name when it is a user: `POST /users` (in a
/// `$batch`), `GET /users/{upn}?$select=id`, `GET /directory/deletedItems/microsoft.graph.user`,
/// `GET /groups/{id}/members?$select=id,userPrincipalName[,userType]`,
/// `GET /domains/{id}/domainNameReferences`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryObject {
    pub id: String,
    /// Users only (a member may be a group or a service principal).
    pub user_principal_name: Option<String>,
    pub user_type: Option<String>,
}

/// A service principal: `GET /servicePrincipals?$filter=appId eq '…'` (the app itself, or
/// Microsoft Graph's, whose `appRoles` name each application permission).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServicePrincipal {
    pub id: String,
    #[serde(default)]
    pub app_roles: Vec<AppRole>,
}

/// `appRole`: `id` (Nullable="false") and its `value`, the permission's name.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppRole {
    pub id: String,
    pub value: Option<String>,
}

/// `GET /servicePrincipals/{id}/appRoleAssignments`: one application permission granted.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppRoleAssignment {
    pub app_role_id: String,
    pub resource_id: Option<String>,
}

/// `GET /roleManagement/directory/roleAssignments`: a directory role given to a principal at a
/// scope (`unifiedRoleAssignment`). A built-in role's `roleDefinitionId` is its template id;
/// `directoryScopeId` is `/` for the whole tenant, `/administrativeUnits/{id}` for a unit.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleAssignment {
    pub role_definition_id: String,
    pub directory_scope_id: Option<String>,
}

/// A Microsoft 365 group: `POST /groups`, `GET /groups?$filter=mailNickname eq '…'`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Group {
    pub id: String,
    pub mail: Option<String>,
}

/// A Team: `GET /groups/{id}/team`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Team {
    pub web_url: Option<String>,
}

/// The asynchronous creation of a Team (`teamsAsyncOperation`): `GET` of the `Location`
/// answered by `PUT /groups/{id}/team`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TeamsAsyncOperation {
    /// `notStarted`, `inProgress`, `succeeded`, `failed`, …
    pub status: String,
    pub error: Option<OperationError>,
}

/// Why a [`TeamsAsyncOperation`] failed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OperationError {
    pub code: Option<String>,
    pub message: Option<String>,
}

/// A channel of a Team: `GET /teams/{id}/channels`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Channel {
    pub display_name: String,
}

/// A channel with its id, as the export lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChannelRef {
    pub id: String,
    pub display_name: String,
}

/// Who wrote a chatMessage: a user or an application (none for a system event).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatFrom {
    pub user: Option<Identity>,
    pub application: Option<Identity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Identity {
    pub display_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ItemBody {
    pub content_type: Option<String>,
    pub content: Option<String>,
}

/// A channel message or reply: channel-list-messages, chatmessage-list-replies.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatMessage {
    pub id: String,
    pub created_date_time: Option<String>,
    pub deleted_date_time: Option<String>,
    pub subject: Option<String>,
    pub from: Option<ChatFrom>,
    pub body: Option<ItemBody>,
}

/// An online meeting: `POST /users/{id}/onlineMeetings/createOrGet`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OnlineMeeting {
    pub id: String,
    pub join_web_url: Option<String>,
}

/// A mail folder: user-list-mailfolders, mailfolder-list-childfolders.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MailFolder {
    pub id: String,
    pub display_name: Option<String>,
    #[serde(default)]
    pub child_folder_count: Option<u32>,
}

/// A message's headers as the export lists them (`$select=id,subject,lastModifiedDateTime`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageHead {
    pub id: String,
    pub subject: Option<String>,
    pub last_modified_date_time: Option<String>,
}

/// A driveItem from driveitem-delta: a file has the `file` facet, a deleted item `deleted`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DriveItem {
    pub id: String,
    pub name: Option<String>,
    pub size: Option<u64>,
    pub last_modified_date_time: Option<String>,
    pub parent_reference: Option<ItemReference>,
    pub file: Option<Value>,
    pub deleted: Option<Value>,
}

/// driveItem's `parentReference`: its drive, and its folder as `/drive/root:/A/B`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ItemReference {
    pub drive_id: Option<String>,
    pub path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RECORDS: &str = "GET /domains/{id}/serviceConfigurationRecords";

    #[test]
    fn unknown_fields_are_tolerated() {
        // Graph's answer to GET /domains/{id}, with a property this schema does not know.
        let body = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#domains/$entity",
            "id": "crise.example.fr", "authenticationType": "Managed", "availabilityStatus": null,
            "isAdminManaged": true, "isDefault": false, "isInitial": false, "isRoot": false, "isVerified": true,
            "supportedServices": ["Email", "OfficeCommunicationsOnline"], "passwordValidityPeriodInDays": 2147483647,
            "state": null, "somethingNew": {"nested": [1, 2]},
        });
        let d: Domain = decode("domain.get", "GET /domains/{id}", body).unwrap();
        assert!(d.is_verified);
        assert_eq!(d.authentication_type, "Managed");
        assert_eq!(d.supported_services, ["Email", "OfficeCommunicationsOnline"]);
        // A derived DNS record carries @odata.type, id and isOptional, none of them read.
        let r: DomainDnsRecord = decode(
            "domain.serviceConfigurationRecords",
            RECORDS,
            json!({"@odata.type": "#microsoft.graph.domainDnsMxRecord", "id": "mx", "isOptional": false,
                   "label": "crise.example.fr", "recordType": "Mx", "supportedService": "Email", "ttl": 3600,
                   "mailExchange": "crise-example-fr.mail.protection.outlook.com", "preference": 0, "extra": true}),
        )
        .unwrap();
        assert!(matches!(r.data, DnsRecordData::Mx { ref mail_exchange, preference: Some(0) }
            if mail_exchange == "crise-example-fr.mail.protection.outlook.com"));
    }

    #[test]
    fn a_missing_required_field_names_the_call() {
        let page = json!({"value": [
            {"label": "crise.example.fr", "supportedService": "Email", "ttl": 3600, "text": "v=spf1 -all"},
        ]});
        let err = decode::<Page<DomainDnsRecord>>("domain.serviceConfigurationRecords", RECORDS, page).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(RECORDS) && text.contains("missing field `recordType`"), "{text}");
        assert!(matches!(&err, Error::Decode { op, call, .. }
            if op == "domain.serviceConfigurationRecords" && call == RECORDS));
        assert!(!err.is_transient(), "a malformed answer is not retried");

        // A TXT record without its text (non-nullable on domainDnsTxtRecord).
        let txt = json!({"label": "a.fr", "supportedService": "Email", "ttl": 3600, "recordType": "Txt"});
        let text = decode::<DomainDnsRecord>("op", RECORDS, txt).unwrap_err().to_string();
        assert!(text.contains("missing field `text`"), "{text}");

        // A wrong type is refused the same way.
        let d = json!({"authenticationType": "Managed", "isVerified": "yes", "supportedServices": []});
        let text = decode::<Domain>("domain.get", "GET /domains/{id}", d).unwrap_err().to_string();
        assert!(text.contains("GET /domains/{id}") && text.contains("invalid type"), "{text}");

        // A created group without its id.
        let text = decode::<Group>("group.create", "POST /groups", json!({"mail": "x@a.fr"})).unwrap_err().to_string();
        assert!(text.starts_with("group.create: ") && text.contains("POST /groups") && text.contains("`id`"), "{text}");
    }

    #[test]
    fn pages_with_and_without_next_link() {
        let next = "https://graph.microsoft.com/v1.0/users?$skiptoken=X";
        let first: Page<DirectoryObject> = decode(
            "users.list",
            "GET /users",
            json!({"@odata.context": "…", "@odata.count": 3, "@odata.nextLink": next,
                   "value": [{"id": "1", "userPrincipalName": "a@b.fr"}, {"id": "2", "userPrincipalName": null}]}),
        )
        .unwrap();
        assert_eq!(first.next_link.as_deref(), Some(next));
        assert_eq!(first.value.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(first.value[0].user_principal_name.as_deref(), Some("a@b.fr"));
        assert_eq!(first.value[1].user_principal_name, None);

        let last: Page<DirectoryObject> = decode("users.list", "GET /users", json!({"value": [{"id": "3"}]})).unwrap();
        assert_eq!(last.next_link, None);
        assert_eq!(last.value.len(), 1);

        let empty: Page<DirectoryObject> = decode("users.list", "GET /users", json!({"value": []})).unwrap();
        assert!(empty.value.is_empty() && empty.next_link.is_none());

        // A collection without `value` is not a collection.
        let text = decode::<Page<DirectoryObject>>("users.list", "GET /users", json!({"@odata.count": 0}))
            .unwrap_err()
            .to_string();
        assert!(text.contains("GET /users") && text.contains("missing field `value`"), "{text}");
    }

    #[test]
    fn record_types_by_record_type() {
        let record = |extra: Value| {
            let mut r = json!({"label": "a.fr", "supportedService": "Email", "ttl": 3600});
            if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
                r.extend(extra.clone());
            }
            decode::<DomainDnsRecord>("op", RECORDS, r).unwrap().data
        };
        assert!(
            matches!(record(json!({"recordType": "Txt", "text": "MS=1"})), DnsRecordData::Txt { text } if text == "MS=1")
        );
        assert!(matches!(record(json!({"recordType": "TXT", "text": "MS=1"})), DnsRecordData::Txt { .. }));
        assert!(matches!(
            record(json!({"recordType": "CName", "canonicalName": "autodiscover.outlook.com"})),
            DnsRecordData::CName { canonical_name: Some(_) }
        ));
        assert!(matches!(
            record(json!({"recordType": "Srv", "service": "_sipfederationtls", "protocol": "_tcp", "port": 5061,
                          "priority": 100, "weight": 1, "nameTarget": "sipfed.online.lync.com"})),
            DnsRecordData::Srv { port: Some(5061), .. }
        ));
        assert!(matches!(record(json!({"recordType": "Unavailable", "description": "x"})), DnsRecordData::Other));
    }

    #[test]
    fn batch_answers() {
        let body = json!({"responses": [
            {"id": "c1", "status": 201, "headers": {"Location": "https://graph/x", "Content-Type": "application/json"},
             "body": {"id": "u1"}},
            {"id": "c0", "status": 204},
        ]});
        let b: BatchResponse = decode("accounts.create", "POST /$batch", body).unwrap();
        assert_eq!((b.responses[0].id.as_str(), b.responses[0].status), ("c1", 201));
        assert_eq!(b.responses[0].headers.get("Location").map(String::as_str), Some("https://graph/x"));
        assert_eq!(b.responses[0].body["id"], "u1");
        assert!(b.responses[1].headers.is_empty() && b.responses[1].body.is_null());
        let text = decode::<BatchResponse>("accounts.create", "POST /$batch", json!({"responses": [{"id": "c0"}]}))
            .unwrap_err()
            .to_string();
        assert!(text.contains("POST /$batch") && text.contains("missing field `status`"), "{text}");
    }

    #[test]
    fn token_answers() {
        let t: TokenResponse = decode(
            "token",
            "POST /{tenant}/oauth2/v2.0/token",
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "ey"}),
        )
        .unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_in), ("ey", Some(3599)));
        let text = decode::<TokenResponse>("token", "POST /{tenant}/oauth2/v2.0/token", json!({"expires_in": 1}))
            .unwrap_err()
            .to_string();
        assert!(text.contains("oauth2/v2.0/token") && text.contains("`access_token`"), "{text}");
    }
}
