// Generated from openapi/openapi.json by clients/js/gen_types.py; do not edit.
// Line Auth BFF 0.1.0

export interface Address {
  countryCode?: string | null;
  houseLetter?: string | null;
  houseNumber?: string | null;
  postalCode?: string | null;
  postalPlace?: string | null;
  streetName?: string | null;
}

export interface Capabilities {
  hdVoice?: boolean | null;
  lte?: boolean | null;
  lteAdvanced?: boolean | null;
}

/** Telenor Mobile Device Info (`GET /mobile-device-info/v1/device`). */
export interface DeviceInfo {
  capabilities?: Capabilities | null;
  manufacturer?: string | null;
  model?: string | null;
  tac?: string | null;
}

export interface Name {
  familyName?: string | null;
  givenName?: string | null;
  middleName?: string | null;
}

/** RFC 9457 problem details. */
export interface Problem {
  detail?: string | null;
  status: number;
  title: string;
  type: "urn:line-auth-bff:problem:bad_request" | "urn:line-auth-bff:problem:invalid_request" | "urn:line-auth-bff:problem:not_found" | "urn:line-auth-bff:problem:method_not_allowed" | "urn:line-auth-bff:problem:unknown_app" | "urn:line-auth-bff:problem:bad_return_to" | "urn:line-auth-bff:problem:challenge_required" | "urn:line-auth-bff:problem:bad_client" | "urn:line-auth-bff:problem:bad_redirect_uri" | "urn:line-auth-bff:problem:not_authenticated" | "urn:line-auth-bff:problem:session_expired" | "urn:line-auth-bff:problem:csrf_header_missing" | "urn:line-auth-bff:problem:origin_not_allowed" | "urn:line-auth-bff:problem:https_required" | "urn:line-auth-bff:problem:path_not_allowed" | "urn:line-auth-bff:problem:rate_limited" | "urn:line-auth-bff:problem:busy" | "urn:line-auth-bff:problem:header_too_large" | "urn:line-auth-bff:problem:body_too_large" | "urn:line-auth-bff:problem:upstream_rate_limited" | "urn:line-auth-bff:problem:upstream_error" | "urn:line-auth-bff:problem:upstream_unreachable" | "urn:line-auth-bff:problem:upstream_timeout" | "urn:line-auth-bff:problem:store_unavailable" | "urn:line-auth-bff:problem:overloaded" | "urn:line-auth-bff:problem:not_ready" | "urn:line-auth-bff:problem:internal" | "urn:line-auth-bff:problem:admin_unauthorized" | "urn:line-auth-bff:problem:access_denied" | "urn:line-auth-bff:problem:telenor_error" | "urn:line-auth-bff:problem:login_expired" | "urn:line-auth-bff:problem:wrong_app" | "urn:line-auth-bff:problem:wrong_browser" | "urn:line-auth-bff:problem:telenor_unavailable" | "urn:line-auth-bff:problem:token_rejected" | "urn:line-auth-bff:problem:bad_callback";
}

export interface RevokeAllResponse {
  /** How many of the subscriber's sessions in this app ended */
  revoked: number;
}

export interface SessionStatus {
  authenticated: boolean;
  expires_at?: string | null;
  expires_in?: number | null;
  login_url?: string | null;
}

export interface StartRequest {
  /** How the login ends: `cookie`, the session cookie (the only mode; native apps use OAuth at `/oauth2/{app}/authorize`) */
  mode?: "cookie";
  return_to: string;
}

export interface StartResponse {
  authorization_url: string;
  /** ISO 8601 UTC time the login must finish by */
  expires_at: string;
}

/** RFC 6749 §5.1: the app's access token, a BFF session token. */
export interface TokenResponse {
  /** The BFF session token, for `Bearer` */
  access_token: string;
  expires_in: number;
  token_type: "Bearer";
}

/** Telenor Mobile User Info (`GET /user-info/v1/users`); unknown fields are passed through. */
export interface UserInfo {
  address?: Address | null;
  /** ISO 8601 date */
  birthDate?: string | null;
  emailAddress?: string | null;
  mobileNumber?: string | null;
  name?: Name | null;
}

/** The code at the end of a Problem's `type` URN. */
export type ProblemCode = "bad_request" | "invalid_request" | "not_found" | "method_not_allowed" | "unknown_app" | "bad_return_to" | "challenge_required" | "bad_client" | "bad_redirect_uri" | "not_authenticated" | "session_expired" | "csrf_header_missing" | "origin_not_allowed" | "https_required" | "path_not_allowed" | "rate_limited" | "busy" | "header_too_large" | "body_too_large" | "upstream_rate_limited" | "upstream_error" | "upstream_unreachable" | "upstream_timeout" | "store_unavailable" | "overloaded" | "not_ready" | "internal" | "admin_unauthorized" | "access_denied" | "telenor_error" | "login_expired" | "wrong_app" | "wrong_browser" | "telenor_unavailable" | "token_rejected" | "bad_callback";
